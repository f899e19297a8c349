"""The operator cannot read the state: after shielding, the data dir holds no plaintext account id
or balance of the shielded account (keys, state, light client and sidechain blocks included)."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from integritee.crypto.keys import Keypair
from procs import NodeProcess, ValidateerProcess

pytestmark = pytest.mark.slow

UNIT = 10**12
CLI = [str(Path(sys.executable).parent / "integritee-cli")]


@pytest.fixture(scope="module")
def network(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[NodeProcess, ValidateerProcess]]:
    node = NodeProcess(tmp_path_factory.mktemp("snode"), block_time_ms=300)
    validateer = ValidateerProcess(tmp_path_factory.mktemp("sworker"), node.rpc_port)
    try:
        node.start()
        validateer.start(timeout=120)
        yield node, validateer
    finally:
        validateer.stop()
        node.stop()


def cli(node: NodeProcess, v: ValidateerProcess, cwd: Path, *args: str) -> str:
    out = subprocess.run(
        [*CLI, "-p", str(node.rpc_port), "-P", str(v.trusted_port), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_shielded_account_is_not_readable_at_rest(
    network: tuple[NodeProcess, ValidateerProcess], tmp_path: Path
) -> None:
    node, v = network
    secret = Keypair.from_uri("//SecretIncognitoForGrep")
    vault = cli(node, v, tmp_path, "trusted", "get-shard-vault").splitlines()[-1].strip()
    cli(node, v, tmp_path, "transfer", "//Alice", vault, str(6 * UNIT))
    # the sender on L1 is //Alice; move the shielded funds to the secret account inside the enclave
    cli(
        node,
        v,
        tmp_path,
        "trusted",
        "transfer",
        "//Alice",
        "//SecretIncognitoForGrep",
        str(2 * UNIT),
    )
    deadline = time.monotonic() + 60
    balance = 0
    while time.monotonic() < deadline:
        balance = int(cli(node, v, tmp_path, "trusted", "balance", "//SecretIncognitoForGrep"))
        if balance:
            break
        time.sleep(0.5)
    assert balance == 2 * UNIT
    time.sleep(
        1.5
    )  # at least one sidechain block and one parentchain sync batch after the transfer
    blob = b"".join(p.read_bytes() for p in v.data_dir.rglob("*") if p.is_file())
    assert len(blob) > 10_000  # the state, blocks and keys are there, encrypted
    assert secret.public_key not in blob
    assert balance.to_bytes(16, "little") not in blob
    assert (6 * UNIT).to_bytes(16, "little") not in blob
