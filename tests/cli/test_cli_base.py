"""integritee-cli parentchain commands against a real dev node (one node for the module).

Each command runs as a subprocess in a temporary working directory, as a user or a demo script
would run it. Balances are compared exactly: fresh accounts start at zero, and nothing else in
the module moves Bob's or Dave's funds between a read and the write under test.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from integritee.cli.accounts import resolve_account_id, ss58
from procs import NodeProcess, rpc

CLI = str(Path(sys.executable).parent / "integritee-cli")
UNIT = 10**12
PREFUNDING = 1_000_000_000


def run_cli(
    node: NodeProcess, *args: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "-p", str(node.rpc_port), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def balance(node: NodeProcess, account: str, cwd: Path) -> int:
    out = ok(run_cli(node, "balance", account, cwd=cwd))
    lines = out.splitlines()
    assert len(lines) == 1, out
    return int(lines[0])


def test_transfer_increases_balance_exactly(dev_node: NodeProcess, tmp_path: Path) -> None:
    before = balance(dev_node, "//Bob", tmp_path)
    out = ok(run_cli(dev_node, "transfer", "//Alice", "//Bob", str(UNIT), cwd=tmp_path))
    assert balance(dev_node, "//Bob", tmp_path) == before + UNIT
    lines = out.splitlines()
    match = re.fullmatch(
        r"\[\+\] L1 extrinsic success\. extrinsic hash: (0x[0-9a-f]{64}) / "
        r"status: InBlock\((0x[0-9a-f]{64})\)",
        lines[0],
    )
    assert match, out
    block = rpc(dev_node.http_url, "chain_getBlock", [match.group(2)])
    assert isinstance(block, dict)
    assert len(block["block"]["extrinsics"]) >= 2  # timestamp + the transfer
    bob = ss58(resolve_account_id("//Bob"))
    assert lines[1] == f"balance for {bob} is now {before + UNIT}"


def test_balance_of_unknown_accounts_is_zero(dev_node: NodeProcess, tmp_path: Path) -> None:
    assert balance(dev_node, "//NeverUsedByAnyone", tmp_path) == 0
    assert balance(dev_node, "0x" + "07" * 32, tmp_path) == 0


def test_faucet_then_transfer_from_a_keystore_account(
    dev_node: NodeProcess, tmp_path: Path
) -> None:
    fresh = ok(run_cli(dev_node, "new-account", cwd=tmp_path)).strip()
    other = ss58(resolve_account_id("//FaucetTarget"), 13)
    out = ok(run_cli(dev_node, "faucet", fresh, other, cwd=tmp_path))
    assert out.count("Faucet drips to") == 2
    assert balance(dev_node, fresh, tmp_path) == PREFUNDING
    assert balance(dev_node, other, tmp_path) == PREFUNDING
    # The new key signs from the keystore; the recipient is fresh, so it gets exactly `amount`.
    ok(run_cli(dev_node, "transfer", fresh, "//KeystoreRecipient", "1000", cwd=tmp_path))
    assert balance(dev_node, "//KeystoreRecipient", tmp_path) == 1000
    assert balance(dev_node, fresh, tmp_path) < PREFUNDING - 1000  # paid the amount and a fee


def test_unfunded_sender_is_rejected_with_1010(dev_node: NodeProcess, tmp_path: Path) -> None:
    result = run_cli(dev_node, "transfer", "//Pauper", "//Bob", "1", cwd=tmp_path)
    assert result.returncode == 1
    assert "Inability to pay some fees" in result.stderr and "1010" in result.stderr
    assert "Traceback" not in result.stderr
    assert "extrinsic success" not in result.stdout


def test_failed_dispatch_is_reported(dev_node: NodeProcess, tmp_path: Path) -> None:
    before = balance(dev_node, "//Dave", tmp_path)
    result = run_cli(dev_node, "transfer", "//Dave", "//Alice", str(10**30), cwd=tmp_path)
    assert result.returncode == 1
    assert re.search(r"extrinsic 0x[0-9a-f]{64} failed in block 0x[0-9a-f]{64}: ", result.stderr)
    assert "FundsUnavailable" in result.stderr or "InsufficientBalance" in result.stderr
    assert "Traceback" not in result.stderr
    after = balance(dev_node, "//Dave", tmp_path)
    assert 0 < before - after < UNIT  # only the fee was paid


def test_listen_stops_after_blocks_with_real_hashes(dev_node: NodeProcess, tmp_path: Path) -> None:
    out = ok(run_cli(dev_node, "listen", "-b", "2", cwd=tmp_path, timeout=30))
    blocks = re.findall(r"^\[\+\] block #(\d+) (0x[0-9a-f]{64}): (\d+) events$", out, re.M)
    assert len(blocks) == 2, out
    for number, block_hash, _ in blocks:
        assert rpc(dev_node.http_url, "chain_getBlockHash", [int(number)]) == block_hash
    assert int(blocks[1][0]) == int(blocks[0][0]) + 1
    # Every dev block carries the timestamp inherent, so at least one event each.
    events = [line for line in out.splitlines() if line.startswith("decoded: phase ")]
    assert len(events) == sum(int(n) for _, _, n in blocks) >= 2
    assert "System.ExtrinsicSuccess" in events[0]


def test_listen_stops_after_events(dev_node: NodeProcess, tmp_path: Path) -> None:
    out = ok(run_cli(dev_node, "listen", "--exit-after", "1", cwd=tmp_path, timeout=30))
    assert len([x for x in out.splitlines() if x.startswith("decoded: ")]) == 1
    assert ok(run_cli(dev_node, "listen", "-b", "0", cwd=tmp_path)) == ""


@pytest.mark.parametrize("summary", [False, True])
def test_print_metadata(dev_node: NodeProcess, tmp_path: Path, summary: bool) -> None:
    args = ["print-metadata", "--summary"] if summary else ["print-metadata"]
    value = json.loads(ok(run_cli(dev_node, *args, cwd=tmp_path)))
    if summary:
        balances = value["Balances"]
        assert balances["index"] == 10
        assert any(c.startswith("transfer_allow_death(") for c in balances["calls"])
        assert balances["constants"]["ExistentialDeposit"] == 500
        assert "System.Account" not in value
        assert value["System"]["storage"][0].startswith("Account: AccountId32 -> AccountInfo")
    else:
        assert value[0] == "0x6d657461"  # b"meta"
        pallets = {p["name"]: p["index"] for p in value[1]["V14"]["pallets"]}
        assert pallets["Balances"] == 10 and pallets["System"] == 0


def test_listen_interrupted_exits_cleanly(dev_node: NodeProcess, tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [CLI, "-p", str(dev_node.rpc_port), "listen"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        # A background child may inherit an ignored SIGINT; a terminal user's Ctrl-C is not.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()  # the first block line: the subscription is live
        assert first.startswith("[+] block #"), first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    assert "interrupted" in err and "Traceback" not in err
