"""The validateer as real processes: identity, registration, restart, crash recovery, secrecy at rest."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import base58
import pytest

from integritee.codec.hexutil import from_hex, to_hex
from integritee.crypto.hashing import blake2_128_concat, storage_prefix
from procs import NodeProcess, ValidateerProcess, rpc

pytestmark = pytest.mark.slow


def _sovereign_enclave(node: NodeProcess, account: bytes) -> bytes | None:
    key = storage_prefix("Teerex", "SovereignEnclaves") + blake2_128_concat(account)
    raw = rpc(node.http_url, "state_getStorage", [to_hex(key)])
    return None if raw is None else from_hex(raw)  # type: ignore[arg-type]


def _identity(v: ValidateerProcess) -> tuple[str, str]:
    mre = subprocess.run(
        v.command("mrenclave"), capture_output=True, text=True, timeout=60, check=True
    ).stdout.strip()
    key = subprocess.run(
        v.command("signing-key"), capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return mre, key.splitlines()[0]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    n = NodeProcess(tmp_path_factory.mktemp("vnode"), block_time_ms=200)
    try:
        n.start()
        yield n
    finally:
        n.stop()


def test_identity_registration_and_graceful_restart(node: NodeProcess, tmp_path: Path) -> None:
    v = ValidateerProcess(tmp_path / "w1", node.rpc_port, attestation="sim-dcap")
    try:
        mrenclave, signing_key = _identity(v)
        assert len(mrenclave) >= 43 and signing_key.startswith("0x")
        v.start(wait=False)
        v.wait_initialized()
        account = bytes.fromhex(signing_key[2:])
        registered = _sovereign_enclave(node, account)
        assert registered is not None
        assert v.log().count("registered the enclave on the parentchain (sim-dcap)") == 1
        assert v.stop() == 0  # SIGTERM: both processes stop cleanly
        assert not v.enclave_running()
        # same keys and MRENCLAVE after the restart; registration and shard are resumed, not redone
        assert _identity(v) == (mrenclave, signing_key)
        v.start()
        log = v.log()
        assert "light client resumed at #" in log
        assert "enclave already registered" in log
        assert "shard state loaded" in log
        assert log.count("primary of new shard") == 1
    finally:
        v.stop()


def test_kill9_mid_sync_resumes_from_the_last_sealed_batch(
    node: NodeProcess, tmp_path: Path
) -> None:
    node.wait_for_block(120, timeout=60)
    # its own shard: the first test's validateer is the primary of the default shard (its MRENCLAVE)
    shard = base58.b58encode(bytes(range(32))).decode()
    v = ValidateerProcess(tmp_path / "w2", node.rpc_port, sync_batch=10, run_flags=[shard])
    try:
        v.start(wait=False)
        v.wait_initialized()
        synced = (
            int(v.log().split("parentchain sync: #")[1].split()[0])
            if "parentchain sync: #" in v.log()
            else 0
        )
        assert synced >= 10
        # let the chain grow, then crash while the validateer catches up in small batches
        v.stop()
        target = node.best_number() + 60
        node.wait_for_block(target, timeout=60)
        offset = len(v.log())
        v.start(wait=False)
        v.wait_for_log("parentchain sync: #", timeout=60, after=offset)
        v.kill()
        deadline = time.monotonic() + 10
        while v.enclave_running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not v.enclave_running(), "the enclave must not outlive its killed service"
        before_restart = v.log()
        v.start()
        resumed_line = v.log()[len(before_restart) :].split("light client resumed at #")[1]
        resumed_at = int(resumed_line.split()[0])
        assert (
            resumed_at > synced
        )  # progress of the killed run survived, sync did not restart from genesis
        assert "shard state loaded" in v.log()[len(before_restart) :]
    finally:
        v.stop()
