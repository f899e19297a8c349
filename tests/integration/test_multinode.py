"""A local parentchain network of real node processes: two authorities and full nodes.

One test walks through the life of the network (each phase needs the one before):
1. Alice and Bob (authorities of `--chain local`) and a full node connect over p2p; blocks come
   from both authors and all three agree on the best and the finalized block;
2. a transfer submitted to the full node reaches an author, is included, and all nodes see it;
3. Bob stops: Alice goes on authoring in her slots, finality stalls (1 of 2 is not more than
   2/3), and resumes once Bob is back; nothing finalized before is ever different afterwards;
4. a node started after ~60 blocks syncs to the head (logging its progress, with the sync
   target in its metrics) and then follows.
"""

from __future__ import annotations

import signal
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from chain_rpc import (
    best,
    finalized,
    free_balance,
    hash_at,
    peers,
    same_heads,
    slot,
    transfer,
    wait,
)
from integritee.crypto.keys import Keypair
from procs import NodeProcess, ValidateerProcess

pytestmark = pytest.mark.slow

BLOCK_MS = 300
ALICE = Keypair.from_uri("//Alice")
DAVE = Keypair.from_uri("//Dave")
UNIT = 10**12


def slot_of(n: NodeProcess, number: int) -> int:
    return slot(n, str(hash_at(n, number)))


def agree(nodes: list[NodeProcess], timeout: float = 10) -> None:
    """All nodes show the same best and finalized block at one moment (retried: blocks move)."""
    wait(lambda: same_heads(nodes), timeout, "agreement on best and finalized heads", nodes)


def sync_target(n: NodeProcess) -> float | None:
    with urllib.request.urlopen(f"http://127.0.0.1:{n.prometheus_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith('substrate_block_height{status="sync_target"}'):
                return float(line.split()[-1])
    return None


def node(tmp: Path, name: str, *flags: str, bootnodes: tuple[NodeProcess, ...] = ()) -> NodeProcess:
    boot = [arg for b in bootnodes for arg in ("--bootnodes", b.p2p_address)]
    return NodeProcess(
        tmp / name,
        block_time_ms=BLOCK_MS,
        dev=False,
        extra=["--chain", "local", "--name", name, *flags, *boot],
    )


@pytest.fixture
def network(tmp_path: Path) -> Iterator[dict[str, NodeProcess]]:
    nodes: dict[str, NodeProcess] = {}
    try:
        yield nodes
    finally:
        for n in nodes.values():
            n.stop()


def test_local_network(tmp_path: Path, network: dict[str, NodeProcess]) -> None:
    alice = network["alice"] = node(tmp_path, "alice", "--alice")
    bob = network["bob"] = node(tmp_path, "bob", "--bob", bootnodes=(alice,))
    full = network["full"] = node(tmp_path, "full", bootnodes=(alice,))
    for n in (alice, bob, full):
        n.start(wait_blocks=0)
    trio = [alice, bob, full]

    # 1. blocks from both authors, finality, agreement.
    wait(lambda: finalized(full)[0] >= 8, 30, "finalized #8 on the full node", trio)
    agree(trio)
    authors = {slot_of(alice, k) % 2 for k in range(1, 9)}
    assert authors == {0, 1}, "blocks of both Alice (even slots) and Bob (odd slots)"
    assert peers(full) == 2

    # 2. a transfer sent to the full node is included and seen everywhere.
    before = free_balance(full, DAVE.public_key)
    transfer(full, ALICE, DAVE.public_key, UNIT)
    wait(
        lambda: all(free_balance(n, DAVE.public_key) == before + UNIT for n in trio),
        15,
        "the transfer on all nodes",
        trio,
    )
    agree(trio)

    # 3. Bob stops: blocks go on in Alice's slots, finality stalls, then resumes with Bob.
    bob.stop(signal.SIGTERM)
    time.sleep(1.0)  # votes in flight settle
    stalled_at = finalized(alice)
    start_best = best(alice)[0]
    wait(lambda: best(alice)[0] >= start_best + 6, 15, "Alice authoring alone", [alice, full])
    assert finalized(alice) == stalled_at and finalized(full) == stalled_at
    top = best(alice)[0]
    assert all(slot_of(alice, k) % 2 == 0 for k in range(start_best + 1, top + 1))
    history = {k: hash_at(alice, k) for k in range(1, stalled_at[0] + 1)}
    bob.start(wait_blocks=0)
    wait(lambda: finalized(full)[0] > top, 30, "finality resuming after Bob's return", trio)
    agree(trio)
    for n in trio:
        assert {k: hash_at(n, k) for k in history} == history, "a finalized block changed"

    # 4. a node started after ~60 blocks catches up and follows.
    wait(lambda: best(alice)[0] >= 60, 30, "block #60", trio)
    late = network["late"] = node(tmp_path, "late", bootnodes=(full,))
    late.start(wait_blocks=0)
    wait(lambda: best(late)[0] >= best(alice)[0] - 1, 30, "the late node syncing", [late, full])
    following = best(late)[0]
    wait(lambda: best(late)[0] >= following + 3, 10, "the late node following", [late])
    agree([alice, bob, full, late])
    target = sync_target(late)
    assert target is not None and target >= following
    text = late.log_path.read_text() if late.log_path else ""
    assert "Syncing" in text and "Caught up with the network" in text
    for k, h in history.items():
        assert hash_at(late, k) == h
    for n in network.values():
        assert "Traceback" not in (n.log_path.read_text() if n.log_path else "")


def test_validateer_on_its_own_full_node(tmp_path: Path, network: dict[str, NodeProcess]) -> None:
    """A validateer next to its own full node of a two-authority chain: it registers through
    that node (the extrinsic travels to the authors) and its light client follows the chain
    on the justifications the finality gadget produces (Alice's and Bob's precommits)."""
    alice = network["alice"] = node(tmp_path, "alice", "--alice")
    bob = network["bob"] = node(tmp_path, "bob", "--bob", bootnodes=(alice,))
    full = network["full"] = node(tmp_path, "full", bootnodes=(bob,))
    for n in (alice, bob, full):
        n.start(wait_blocks=0)
    wait(lambda: finalized(full)[0] >= 2, 30, "finality", [alice, bob, full])
    fin = finalized(full)[0]
    v = ValidateerProcess(tmp_path / "validateer", node_port=full.rpc_port)
    try:
        v.start(wait=True, timeout=90)
        log = v.log()
        assert "registered the enclave on the parentchain" in log
        synced = [
            int(line.split("parentchain sync: #")[1].split()[0])
            for line in log.splitlines()
            if "parentchain sync: #" in line
        ]
        # Its light client imported the chain up to a block finalized after the registration.
        assert synced and max(synced) > fin
        assert "Traceback" not in log
    finally:
        v.stop()
