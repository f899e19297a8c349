"""Two validateers of one shard as real processes: crashes, restarts and convergence, and a
validateer running modified enclave code that must stay out of the shard.

One fresh dev node (300 ms blocks) serves the module: the first validateer claims the shard (its
MRENCLAVE) on it, so no other module's validateer may have done so. `v1` starts first and becomes
primary; `v2` starts later, is provisioned by MU-RA from `v1`, claims its place in
`EnclaveBridge.ShardStatus` and from then on both author sidechain blocks in alternate Aura slots.

Funds and transfers go through `integritee-cli` pointed at one validateer's trusted port (as the
original's demo scripts); heads and blocks are read in-process (`chain_getHeader` on the trusted
port, `sidechain_fetchBlocksFromPeer` on the untrusted one). "Converged" means: both enclaves
report the same head and the same balances, each validateer's sidechain DB (what it serves to
peers) reaches its enclave's head, and every block number both DBs hold holds the identical block.

The crash test kills a service while its enclave is still taking blocks (SIGSTOP, then SIGKILL),
so the enclave commits blocks its dead service never stores: after the restart the enclave hands
them over again (`StoredChainStuck` if the DB stayed behind).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import base58
import pytest

import integritee
from integritee.cli.trusted_client import TrustedClient, decode_return_value
from integritee.codec.hexutil import to_hex
from integritee.crypto.keys import Keypair
from integritee.crypto.sealing import SimulationSealing, unseal_from_file
from integritee.enclave.keys import SIGNING_LABEL
from integritee.enclave.measurement import measure, trusted_files
from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcError
from integritee.service.node_client import NodeClient
from integritee.service.untrusted_rpc import fetch_blocks_from_peer
from integritee.trusted.sidechain import (
    SidechainHeaderCodec,
    SignedBlockCodec,
    SignedBlocks,
    block_hash,
    header_hash,
    make_signed_block,
)
from procs import BIN, NodeProcess, ValidateerProcess

pytestmark = pytest.mark.slow

SLOT_MS = 300
KEEP_BLOCKS = ["--sidechain-keep-blocks", "10000"]
START_TIMEOUT = 90.0
CONVERGE_TIMEOUT = 45.0
UNIT = 10**12
TX_FEE = UNIT // 100
SHIELD_AMOUNT = 5 * UNIT
SHIELDED = SHIELD_AMOUNT - SHIELD_AMOUNT // 571
BLOCK_REJECTED = -32021
# the package this test imports; the services inherit the environment, so they run it too
SRC = Path(integritee.__file__).parent
CLI = str(BIN / "integritee-cli")

T = TypeVar("T")


@dataclass
class Net:
    node: NodeProcess
    v1: ValidateerProcess
    v2: ValidateerProcess
    workdir: Path
    """The CLI's working directory (its keystores)."""
    shard: bytes = b""

    @property
    def shard_b58(self) -> str:
        return base58.b58encode(self.shard).decode()


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    node = NodeProcess(tmp_path_factory.mktemp("mvnode"), block_time_ms=300)
    v1 = ValidateerProcess(
        tmp_path_factory.mktemp("mv1"), 0, slot_duration_ms=SLOT_MS, run_flags=KEEP_BLOCKS
    )
    v2 = ValidateerProcess(
        tmp_path_factory.mktemp("mv2"), 0, slot_duration_ms=SLOT_MS, run_flags=KEEP_BLOCKS
    )
    try:
        node.start()
        v1.node_port = v2.node_port = node.rpc_port
        v1.start(timeout=START_TIMEOUT)
        net = Net(node, v1, v2, tmp_path_factory.mktemp("mvcli"))
        with TrustedClient(v1.trusted_url) as worker:
            net.shard = worker.shard()
        v2.start(timeout=START_TIMEOUT)
        yield net
    finally:
        v2.stop()
        v1.stop()
        node.stop()


# --------------------------------------------------------------------------------------------
# Helpers


def cli(net: Net, v: ValidateerProcess, *args: str) -> subprocess.CompletedProcess[str]:
    """`integritee-cli` against the node and the trusted port of `v`."""
    return subprocess.run(
        [CLI, "-p", str(net.node.rpc_port), "-U", "wss://127.0.0.1", "-P", str(v.trusted_port),
         *args],
        cwd=net.workdir, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def cli_ok(net: Net, v: ValidateerProcess, *args: str) -> str:
    result = cli(net, v, *args)
    assert result.returncode == 0 and "Traceback" not in result.stderr, (
        f"{args} via :{v.trusted_port}: exit {result.returncode}\n{result.stdout}\n"
        f"{result.stderr}\nvalidateer log:\n{v.log_tail()}"
    )
    return result.stdout.strip()


def balance(net: Net, v: ValidateerProcess, account: str) -> int:
    return int(cli_ok(net, v, "trusted", "--mrenclave", net.shard_b58, "balance", account))


def direct_transfer(net: Net, v: ValidateerProcess, amount: int) -> str:
    """A direct transfer //Charlie -> //BobIncognito through `v`; the block hash it was put in."""
    out = cli_ok(
        net, v, "trusted", "--mrenclave", net.shard_b58, "--direct",
        "transfer", "//Charlie", "//BobIncognito", str(amount),
    )  # fmt: skip
    last = out.splitlines()[-1]
    assert " is InSidechainBlock(0x" in last, out
    return last.rsplit("(", 1)[1].rstrip(")")


def head(v: ValidateerProcess) -> dict[str, Any]:
    """The validateer's sidechain head header (`chain_getHeader` on its trusted port)."""
    with TrustedClient(v.trusted_url, timeout=10) as worker:
        return worker.sidechain_header()


def head_number(v: ValidateerProcess) -> int:
    return int(head(v)["block_number"])


def stored(v: ValidateerProcess, shard: bytes) -> dict[int, bytes]:
    """Every block `v` stores (encoded), by number."""
    encoded = asyncio.run(fetch_blocks_from_peer(v.untrusted_url, bytes(32), None, shard))
    return {SignedBlockCodec.decode(raw)["block"]["header"]["block_number"]: raw for raw in encoded}


def author(raw: bytes) -> bytes:
    return bytes(SignedBlockCodec.decode(raw)["block"]["block_data"]["block_author"])


def signing_key(v: ValidateerProcess) -> Keypair:
    """The enclave's own signing key, unsealed with the simulated platform key (test-only)."""
    seed = unseal_from_file(
        SimulationSealing(v.sealing_key),
        v.data_dir / "sealed" / "signing_key.sealed",
        SIGNING_LABEL,
    )
    return Keypair.from_seed(seed, "ed25519")


def wait_for(read: Callable[[], T], accept: Callable[[T], bool], what: str, timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: last seen {value!r} after {timeout} s")
        time.sleep(0.5)


class StoredChainStuck(AssertionError):
    """A validateer's sidechain DB (what its untrusted port serves to peers) stays behind the
    head its enclave builds on."""


@dataclass
class Agreement:
    common: list[int]
    differing: list[int]


def agreement(net: Net) -> Agreement:
    a, b = stored(net.v1, net.shard), stored(net.v2, net.shard)
    common = sorted(set(a) & set(b))
    return Agreement(common, [n for n in common if a[n] != b[n]])


def wait_same_head(net: Net) -> dict[str, Any]:
    """Both enclaves report the same head header (polled: they import each other's blocks
    within a slot)."""
    found = wait_for(
        lambda: (head(net.v1), head(net.v2)),
        lambda pair: pair[0] == pair[1],
        "the enclaves' heads (v1, v2) should be the same block",
        CONVERGE_TIMEOUT,
    )
    return found[0]


def wait_balances(net: Net, expected: dict[str, int]) -> None:
    for account, value in expected.items():
        for v in (net.v1, net.v2):
            wait_for(
                lambda v=v, account=account: balance(net, v, account),  # type: ignore[misc]
                lambda seen, value=value: seen == value,  # type: ignore[misc]
                f"{account} on {v.work_dir.name} should be {value}",
                CONVERGE_TIMEOUT,
            )


def wait_stored_up_to_head(v: ValidateerProcess, shard: bytes, timeout: float = 15) -> None:
    """The DB of `v` holds the block its enclave reports as head (read just before)."""

    def gap() -> tuple[int, int]:
        number = head_number(v)
        return number, max(stored(v, shard), default=0)

    try:
        wait_for(gap, lambda g: g[1] >= g[0], f"{v.work_dir.name}: (head, last stored)", timeout)
    except AssertionError as e:
        skipped = [line for line in v.log().splitlines() if "not stored" in line]
        raise StoredChainStuck(
            f"{e}\nits service refuses every block since:\n" + "\n".join(skipped[:3])
        ) from None


def wait_agree(net: Net, beyond: int) -> Agreement:
    """Both hold identical blocks at every number both store, the highest of them beyond
    `beyond` (polled: a fork at the tip is resolved within a slot or two)."""
    return wait_for(
        lambda: agreement(net),
        lambda ag: bool(ag.common) and ag.common[-1] > beyond and not ag.differing,
        f"the two stored sidechains should agree beyond #{beyond}",
        CONVERGE_TIMEOUT,
    )


def wait_enclave_gone(v: ValidateerProcess) -> None:
    """After kill -9 of the service its enclave stops by itself; its ports must be free."""
    wait_for(v.enclave_running, lambda running: not running, "enclave still running", 15)


def shard_signers(net: Net) -> list[bytes]:
    async def read() -> list[bytes]:
        node = await NodeClient.connect(net.node.ws_url, timeout=20)
        try:
            assert node.metadata is not None
            entry = node.metadata.storage("EnclaveBridge", "ShardStatus")
            raw = await node.storage(entry.key(net.shard))
            return [] if raw is None else [bytes(s["signer"]) for s in entry.decode_value(raw)]
        finally:
            await node.close()

    return asyncio.run(read())


def registered_mrenclave(net: Net, signer: bytes) -> bytes | None:
    async def read() -> bytes | None:
        node = await NodeClient.connect(net.node.ws_url, timeout=20)
        try:
            assert node.metadata is not None
            entry = node.metadata.storage("Teerex", "SovereignEnclaves")
            raw = await node.storage(entry.key(signer))
            return None if raw is None else bytes(entry.decode_value(raw).value["mr_enclave"])
        finally:
            await node.close()

    return asyncio.run(read())


# --------------------------------------------------------------------------------------------
# Crash and restart


def slot_parity(survivor: ValidateerProcess, shard: bytes, key: bytes) -> int:
    """The parity of the slots `key` authors (two authorities: author = authorities[slot % 2])."""
    blocks = stored(survivor, shard)
    # its latest blocks (before the peer joined it authored every slot)
    slots = [
        SignedBlockCodec.decode(raw)["block"]["block_data"]["timestamp"] // SLOT_MS
        for _, raw in sorted(blocks.items())
        if author(raw) == key
    ][-3:]
    parities = {slot % 2 for slot in slots}
    assert len(parities) == 1, f"{survivor.work_dir.name} authored slots {sorted(slots)}"
    return parities.pop()


def crash(victim: ValidateerProcess, parity: int) -> None:
    """kill -9 the victim's service so that its enclave has taken a block the service never
    stored. A plain kill -9 does so most of the time: the enclave outlives its service by up to
    0.5 s (it polls its parent) and goes on importing the peer's blocks meanwhile; here the service
    hangs (SIGSTOP) from just before a survivor slot (parity `parity`) until the kill, so that it
    always happens."""
    now_ms = time.time() * 1000
    slot = int(now_ms // SLOT_MS) + 1
    if slot % 2 != parity:
        slot += 1
    time.sleep(max(0.0, (slot * SLOT_MS - 30 - now_ms) / 1000))
    assert victim.proc is not None and victim.proc.poll() is None
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        time.sleep(4 * SLOT_MS / 1000)
    finally:
        victim.kill()  # SIGKILL ends a stopped process too


def _crash_phase(
    net: Net, alive: ValidateerProcess, victim: ValidateerProcess, amounts: list[int]
) -> None:
    """Transfers through `alive` while `victim` is killed -9: all are confirmed and `alive` keeps
    producing; then `victim` restarts from its data dir."""
    alive_key = signing_key(alive).public_key
    parity = slot_parity(alive, net.shard, alive_key)
    with ThreadPoolExecutor(1) as pool:
        # the first transfer is in flight while the peer dies
        first = pool.submit(direct_transfer, net, alive, amounts[0])
        crash(victim, parity)
        first.result(timeout=90)
    wait_enclave_gone(victim)
    for amount in amounts[1:]:
        direct_transfer(net, alive, amount)

    # alone (the dead peer's slots stay empty) the survivor still advances in its own slots
    before = head_number(alive)
    time.sleep(8 * SLOT_MS / 1000)
    after = head_number(alive)
    assert after >= before + 2, f"{alive.work_dir.name} stalled at #{after} (from #{before})"

    victim.start(timeout=START_TIMEOUT)
    assert victim.is_initialized()


def test_kill_9_either_validateer_the_other_goes_on_and_they_converge(net: Net) -> None:
    v1_key, v2_key = signing_key(net.v1).public_key, signing_key(net.v2).public_key
    assert shard_signers(net) == [v1_key, v2_key]

    vault = cli_ok(net, net.v1, "trusted", "get-shard-vault")
    charlie = balance(net, net.v1, "//Charlie")
    bob = balance(net, net.v1, "//BobIncognito")
    cli_ok(net, net.v1, "transfer", "//Charlie", vault, str(SHIELD_AMOUNT))
    charlie += SHIELDED
    wait_balances(net, {"//Charlie": charlie, "//BobIncognito": bob})
    wait_same_head(net)

    sent: list[int] = []
    for alive, victim, amounts in (
        (net.v1, net.v2, [UNIT // 10, UNIT // 5, UNIT // 4]),
        (net.v2, net.v1, [UNIT // 3, UNIT // 2, UNIT // 7]),
    ):
        mark = head_number(alive)
        _crash_phase(net, alive, victim, amounts)
        sent += amounts
        # the enclaves agree: same head, same balances, every confirmed transfer exactly once
        converged = wait_same_head(net)["block_number"]
        assert converged > mark
        wait_balances(
            net,
            {
                "//Charlie": charlie - sum(sent) - TX_FEE * len(sent),
                "//BobIncognito": bob + sum(sent),
            },
        )
        # what they serve agrees too: each DB reaches its enclave's head, and the blocks both
        # store are the same
        for v in (victim, alive):
            wait_stored_up_to_head(v, net.shard)
        later = wait_agree(net, converged + 6)
        # both author again after the restart: the restarted one took up its Aura slots
        blocks = stored(alive, net.shard)
        recent = {author(blocks[n]) for n in later.common if n > converged}
        assert recent == {v1_key, v2_key}, (
            f"authors after the restart of {victim.work_dir.name}: "
            f"{sorted(a.hex()[:12] for a in recent)}"
        )

    assert shard_signers(net) == [v1_key, v2_key]


# --------------------------------------------------------------------------------------------
# Modified enclave code


def _modified_copy(root: Path) -> Path:
    """A copy of the package with one trusted file changed; returns the PYTHONPATH entry."""
    src = root / "src"
    shutil.copytree(SRC, src / "integritee", ignore=shutil.ignore_patterns("__pycache__"))
    app = src / "integritee" / "enclave" / "app.py"
    assert app in trusted_files(src / "integritee")
    with app.open("a") as f:
        f.write("# modified: not the code the shard's validateers run\n")
    return src


def _mrenclave_cmd(v: ValidateerProcess, env: dict[str, str]) -> bytes:
    result = subprocess.run(
        v.command("mrenclave"), env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    return bytes(base58.b58decode(result.stdout.strip()))


async def _send_foreign_block(net: Net, key: Keypair) -> str:
    """A block signed by `key`, extending v1's current head, sent to v1's sidechain_importBlock;
    the reason of the first rejection that is not a lost race with v1's slot loop."""
    async with RpcClient.connect(net.v1.trusted_url, ssl=False, timeout=10) as trusted:
        for _attempt in range(40):
            header = SidechainHeaderCodec.decode(
                decode_return_value("chain_getHeader", await trusted.request("chain_getHeader"))
            )
            parent = bytes(header["parent_hash"])
            found = await fetch_blocks_from_peer(
                net.v1.untrusted_url, parent, None, net.shard, max_blocks=1
            )
            served = SignedBlockCodec.decode(found[0]) if found else None
            if served is None or block_hash(served) != header_hash(header):
                await asyncio.sleep(0.05)  # the head is not stored yet, or moved on meanwhile
                continue
            block = make_signed_block(
                parent_hash=header_hash(header),
                number=header["block_number"] + 1,
                shard=net.shard,
                timestamp=int(time.time() * 1000) + SLOT_MS,
                layer_one_head=bytes(served["block"]["block_data"]["layer_one_head"]),
                author=key,
                top_hashes=[],
                encrypted_state_diff=os.urandom(64),
            )
            try:
                reply = await trusted.request(
                    "sidechain_importBlock", [to_hex(SignedBlocks.encode([block]))]
                )
            except RpcError as e:
                assert e.code == BLOCK_REJECTED, (e.code, e.message)
                if "does not extend" in e.message:  # the head moved meanwhile
                    continue
                return e.message
            # taken while v1 was producing (queued): judged at the next slot, try again
            assert reply == "ok", reply
            await asyncio.sleep(SLOT_MS / 1000)
    raise AssertionError("every foreign block lost the race with v1's slot loop")


def test_validateer_with_modified_enclave_code_is_refused(
    net: Net, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("modified")
    pythonpath = _modified_copy(root)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(pythonpath)}
    v3 = ValidateerProcess(root / "v3", net.node.rpc_port, slot_duration_ms=SLOT_MS)
    v3.work_dir.mkdir()

    # the enclave process really runs the copy: its self-measurement is the copy's
    original = measure(SRC)
    modified = measure(pythonpath / "integritee")
    assert modified != original
    with TrustedClient(net.v1.trusted_url) as worker:
        assert worker.fingerprint() == original == net.shard
    assert _mrenclave_cmd(v3, env) == modified
    plain = ValidateerProcess(root / "plain", net.node.rpc_port)
    assert _mrenclave_cmd(plain, dict(os.environ)) == original

    v1_key, v2_key = signing_key(net.v1).public_key, signing_key(net.v2).public_key
    start_number = head_number(net.v1)
    marks = (len(net.v1.log()), len(net.v2.log()))
    v3_key = signing_key(v3)  # made (and sealed) by the `mrenclave` run above
    log = open(v3.log_path, "ab")  # noqa: SIM115 - owned by the process for its lifetime
    try:
        v3.proc = subprocess.Popen(
            v3.command(
                "run", "--dev", "--attestation", "skip", "--slot-duration-ms", str(SLOT_MS),
                net.shard_b58,
            ),
            stdout=log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        # it finds the primary and asks for the shard by MU-RA; the providers refuse it
        v3.wait_for_log("on-boarding: provisioning from", timeout=60)
        v3.wait_for_log("failed attestation", timeout=30)
        assert f"peer MRENCLAVE {original.hex()} is not ours ({modified.hex()})" in v3.log()
        v3.wait_for_log("no peer could provision the shard; retrying", timeout=30)
        wait_for(
            lambda: net.v1.log()[marks[0] :] + net.v2.log()[marks[1] :],
            lambda text: "MU-RA refused" in text and "mrenclave" in text,
            "a provider should log the refusal",
            15,
        )
        refusals = net.v1.log()[marks[0] :] + net.v2.log()[marks[1] :]
        assert f"peer MRENCLAVE {modified.hex()} is not ours ({original.hex()})" in refusals
        assert "MU-RA provisioned shard" not in refusals

        # it registered itself (with its own, different MRENCLAVE) but is no shard validateer
        assert registered_mrenclave(net, v3_key.public_key) == modified
        assert v3.running and not v3.is_initialized()
        assert shard_signers(net) == [v1_key, v2_key]

        # a block it signs is refused by the shard's validateers
        reason = asyncio.run(_send_foreign_block(net, v3_key))
        assert "author is not a validateer of this shard" in reason, reason

        # the shard goes on without it, authored by v1 and v2 only
        time.sleep(6 * SLOT_MS / 1000)
        assert v3.running and not v3.is_initialized()
        assert "MU-RA provisioned shard" not in net.v1.log()[marks[0] :]
        blocks = stored(net.v1, net.shard)
        assert max(blocks) > start_number + 4, f"v1 stalled at #{max(blocks)}"
        authors = {author(raw) for n, raw in blocks.items() if n > start_number}
        assert authors == {v1_key, v2_key}
        assert shard_signers(net) == [v1_key, v2_key]
    finally:
        v3.stop()
        log.close()
