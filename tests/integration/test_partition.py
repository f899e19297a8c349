"""A network partition between the two authorities of `--chain local` heals to one chain.

Alice and Bob (real node processes, `--force-authoring` so that each side of the partition
authors alone, as it would with full nodes of its own) talk to each other only through a TCP
proxy run by this test. Both nodes listen on 127.0.0.2; the proxy listens on 127.0.0.1 at the
same ports. A node learns a peer's address from the connection's source host (the proxy's,
127.0.0.1) and the port the peer announces, so every address either node knows, its boot node
and the ones it learns, leads through the proxy: the proxy is the only link between them.

1. Bob's boot node is Alice behind the proxy: they connect, blocks come from both, finality
   (which needs both: 2 of 2 is the only count above 2/3) advances, both agree.
2. Partition: the proxy cuts every connection and hangs up on new ones. Each side authors in
   its own slots (Alice even, Bob odd), so the chains fork; finality stalls on both.
3. Heal: the proxy forwards again. The nodes redial on their own, converge to one best chain
   (longest chain), finality resumes past the partition, the blocks finalized before the
   partition are unchanged on both, and of the two forks at most one side's blocks are kept.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from chain_rpc import (
    best,
    finalized,
    free_balance,
    header,
    peers,
    same_heads,
    slot,
    transfer,
    wait,
)
from integritee.crypto.keys import Keypair
from procs import NodeProcess, rpc

pytestmark = pytest.mark.slow

BLOCK_MS = 400
# Blocks each side authors alone (one every 2 slots, ~10 s): long enough for the nodes' redial
# backoff to grow to seconds, so the heal also tests that a peer lost for a while is redialled.
PARTITION_BLOCKS = 12
NODE_HOST = "127.0.0.2"  # where the nodes listen; 127.0.0.1 at the same ports is the proxy
PROXY_HOST = "127.0.0.1"
CHARLIE = Keypair.from_uri("//Charlie")
EVE = Keypair.from_uri("//Eve")
DAVE = Keypair.from_uri("//Dave")
UNIT = 10**12


class PartitionProxy:
    """A TCP forwarder (threads) from PROXY_HOST:port to NODE_HOST:port for a set of ports.

    `partition()` closes every forwarded connection and makes the listeners hang up on each new
    one at once; `heal()` forwards again. It counts what it accepted, forwarded and refused.
    """

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.forwarding = True
        self.accepted = 0
        self.forwarded = 0
        self.refused = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listeners: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._stopped = threading.Event()

    def start(self) -> PartitionProxy:
        for port in self.ports:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((PROXY_HOST, port))
            s.listen(16)
            s.settimeout(0.2)
            self._listeners.append(s)
            self._spawn(self._accept_loop, s, port)
        return self

    def _spawn(self, target: Callable[..., None], *args: object) -> None:
        t = threading.Thread(target=target, args=args, daemon=True)
        t.start()
        self._threads.append(t)

    def _accept_loop(self, listener: socket.socket, port: int) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                forwarding = self.forwarding
            if not forwarding:
                self.refused += 1
                _close(client)
                continue
            try:
                # The source host is what the node records as the peer's host: keep it on the
                # proxy side so that learned addresses lead back through the proxy.
                upstream = socket.create_connection(
                    (NODE_HOST, port), timeout=2, source_address=(PROXY_HOST, 0)
                )
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                if not self.forwarding:  # partitioned while we were connecting
                    _close(client)
                    _close(upstream)
                    continue
                self.forwarded += 1
                self._conns.update((client, upstream))
            self._spawn(self._pump, client, upstream)
            self._spawn(self._pump, upstream, client)

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            with self._lock:
                self._conns.discard(src)
                self._conns.discard(dst)
            _close(src)
            _close(dst)

    def live_connections(self) -> int:
        with self._lock:
            return len(self._conns) // 2

    def partition(self) -> None:
        with self._lock:
            self.forwarding = False
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            _close(c)

    def heal(self) -> None:
        with self._lock:
            self.forwarding = True

    def stop(self) -> None:
        self._stopped.set()
        self.partition()
        for s in self._listeners:
            _close(s)
        for t in self._threads:
            t.join(timeout=2)


def _close(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


def canonical(n: NodeProcess, first: int, last: int) -> dict[int, str]:
    return {k: str(rpc(n.http_url, "chain_getBlockHash", [k])) for k in range(first, last + 1)}


def authority(tmp: Path, name: str, *flags: str) -> NodeProcess:
    n = NodeProcess(tmp / name, block_time_ms=BLOCK_MS, dev=False)
    n.extra = [
        "--chain",
        "local",
        "--name",
        name,
        "--force-authoring",
        "--listen-addr",
        f"/ip4/{NODE_HOST}/tcp/{n.p2p_port}",
        *flags,
    ]
    return n


def test_partition_heals_to_one_chain_without_reverting_finality(tmp_path: Path) -> None:
    alice = authority(tmp_path, "alice", "--alice")
    # Alice's peer id with the proxy's address: the proxy must carry her identity proof.
    via_proxy = f"/ip4/{PROXY_HOST}/tcp/{alice.p2p_port}/p2p/{alice.peer_public_key}"
    bob = authority(tmp_path, "bob", "--bob", "--bootnodes", via_proxy)
    pair = [alice, bob]
    proxy = PartitionProxy([alice.p2p_port, bob.p2p_port])
    try:
        proxy.start()
        alice.start(wait_blocks=0)
        bob.start(wait_blocks=0)

        # 1. Connected through the proxy, both author, finality advances, both agree.
        wait(lambda: finalized(bob)[0] >= 4, 40, "finality through the proxy", pair)
        wait(lambda: same_heads(pair), 10, "agreement before the partition", pair)
        assert peers(alice) == 1 and peers(bob) == 1
        assert proxy.forwarded >= 1 and proxy.live_connections() >= 1
        top = best(alice)[0]
        assert {slot(alice, h) % 2 for h in canonical(alice, 1, top).values()} == {0, 1}

        # 2. Partition.
        proxy.partition()
        wait(lambda: peers(alice) == 0 and peers(bob) == 0, 5, "both losing their peer", pair)
        time.sleep(2 * BLOCK_MS / 1000)  # a round in flight at the cut completes or dies
        fin_a, fin_b = finalized(alice), finalized(bob)
        start_a, start_b = best(alice)[0], best(bob)[0]
        # A transfer on each side: the losing side's must survive the reorganization (its
        # block is retracted, the transaction goes back to the pool and into the kept chain).
        dave = free_balance(alice, DAVE.public_key)
        transfer(alice, CHARLIE, DAVE.public_key, UNIT)
        transfer(bob, EVE, DAVE.public_key, 2 * UNIT)
        wait(
            lambda: (
                best(alice)[0] >= start_a + PARTITION_BLOCKS
                and best(bob)[0] >= start_b + PARTITION_BLOCKS
            ),
            PARTITION_BLOCKS * 2 * BLOCK_MS / 1000 + 15,
            "both sides authoring alone",
            pair,
        )
        assert finalized(alice) == fin_a and finalized(bob) == fin_b, "finality did not stall"
        assert free_balance(alice, DAVE.public_key) == dave + UNIT
        assert free_balance(bob, DAVE.public_key) == dave + 2 * UNIT
        assert peers(alice) == 0 and peers(bob) == 0, "a connection around the proxy"
        assert proxy.refused >= 1, "nobody tried to reconnect during the partition"
        fin_number = max(fin_a[0], fin_b[0])
        # What each side has finalized is the same chain (the finalized block of the one that
        # is behind is an ancestor of the other's), and is in both forks at its number.
        history = canonical(alice, 1, fin_number)
        assert canonical(bob, 1, fin_number) == history
        assert history[fin_a[0]] == fin_a[1] and history[fin_b[0]] == fin_b[1]
        top_a, top_b = best(alice)[0], best(bob)[0]
        fork_a = canonical(alice, 1, top_a)
        fork_b = canonical(bob, 1, top_b)
        fork_point = 0
        while fork_point < min(top_a, top_b) and fork_a[fork_point + 1] == fork_b[fork_point + 1]:
            fork_point += 1
        assert fork_point >= fin_number
        assert all(slot(alice, fork_a[k]) % 2 == 0 for k in range(fork_point + 1, top_a + 1))
        assert all(slot(bob, fork_b[k]) % 2 == 1 for k in range(fork_point + 1, top_b + 1))
        assert min(top_a, top_b) > fork_point, "no fork: a side did not author"

        # 3. Heal: the nodes reconnect by themselves and converge.
        healed_at = time.monotonic()
        proxy.heal()
        wait(lambda: peers(alice) == 1 and peers(bob) == 1, 20, "reconnection", pair)
        reconnect_s = time.monotonic() - healed_at
        partition_top = max(top_a, top_b)
        wait(
            lambda: finalized(alice)[0] > partition_top and finalized(bob)[0] > partition_top,
            30,
            "finality resuming past the partition",
            pair,
        )
        wait(lambda: same_heads(pair), 10, "agreement after healing", pair)
        for n in pair:
            assert canonical(n, 1, fin_number) == history, "a finalized block was reverted"
        wait(
            lambda: all(free_balance(n, DAVE.public_key) == dave + 3 * UNIT for n in pair),
            10,
            "both partition transfers in the kept chain",
            pair,
        )
        kept = canonical(alice, fork_point + 1, min(top_a, top_b))
        assert kept == canonical(bob, fork_point + 1, min(top_a, top_b))
        from_a = {k for k, h in kept.items() if h == fork_a[k]}
        from_b = {k for k, h in kept.items() if h == fork_b[k]}
        assert from_a | from_b == set(kept), "a partition height holds a block of neither side"
        assert not (from_a and from_b), "the kept chain mixes blocks of both sides"
        # The losing side switched by a reorganization and keeps its blocks, just not canonical.
        loser, lost = (bob, fork_b) if from_a else (alice, fork_a)
        assert loser.log_path is not None and " retracted)" in loser.log_path.read_text()
        for k in range(fork_point + 1, min(top_a, top_b) + 1):
            assert int(header(loser, lost[k])["number"], 16) == k
        for n in pair:
            text = n.log_path.read_text() if n.log_path else ""
            assert "Traceback" not in text and "Banned peer" not in text
        print(
            f"fork at #{fork_point}, finalized #{fin_number} before; alice #{top_a}, bob #{top_b}"
            f" in the partition; kept {'alice' if from_a else 'bob'}; reconnected in"
            f" {reconnect_s:.1f} s; proxy forwarded {proxy.forwarded}, refused {proxy.refused}"
        )
    finally:
        for n in pair:
            n.stop()
        proxy.stop()
