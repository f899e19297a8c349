"""integritee-cli without a node: keystore format, account arguments, parameters, clean errors.

The keystore must be byte-compatible with Substrate's file keystore (file name = hex key type ++
hex public key, content = JSON string of the secret phrase); account resolution is checked
against known dev keys and against substrate-interface's own derivation.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import click
import pytest

from integritee.cli.accounts import AccountError, resolve_account_id, resolve_signer, ss58
from integritee.cli.chain_client import ChainEvent, describe_dispatch_error, header_hash
from integritee.cli.context import BALANCE, U128_MAX, CliConfig, CliError
from integritee.cli.keystore import SR25519_KEY_TYPE, KeystoreError, LocalKeystore
from integritee.crypto import DEV_PHRASE, Keypair, ss58_encode
from procs import free_port

CLI = str(Path(sys.executable).parent / "integritee-cli")
ALICE_PUBLIC = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
ALICE_SS58 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
# sr25519 root key of the dev phrase (no derivation), as sp-core and substrate-interface give it.
DEV_PHRASE_PUBLIC = bytes.fromhex(
    "46ebddef8cd9bb167dc30878d7113b7e168e6f0646beffd77d69d39bad76b47a"
)


def run_cli(*args: str, cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


# -- keystore ---------------------------------------------------------------------------------


def test_keystore_file_format(tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path / "ks")
    pair = store.generate()
    files = list((tmp_path / "ks").iterdir())
    assert len(files) == 1
    assert files[0].name == "73723235" + pair.public_key.hex()
    phrase = json.loads(files[0].read_text())
    assert isinstance(phrase, str) and len(phrase.split()) == 12
    assert Keypair.from_mnemonic(phrase).public_key == pair.public_key
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ks").stat().st_mode) == 0o700


def test_keystore_reads_a_substrate_key_file(tmp_path: Path) -> None:
    # What sc-keystore writes for `insert --suri "<dev phrase>//Alice" --key-type sr25`.
    (tmp_path / ("73723235" + ALICE_PUBLIC.hex())).write_text(json.dumps(DEV_PHRASE + "//Alice"))
    store = LocalKeystore.open(tmp_path)
    assert store.public_keys() == [ALICE_PUBLIC]
    pair = store.keypair(ALICE_PUBLIC)
    assert pair is not None and pair.public_key == ALICE_PUBLIC
    assert store.keypair(DEV_PHRASE_PUBLIC) is None
    assert store.public_keys(b"ed25") == []


def test_keystore_lists_in_creation_order_and_skips_foreign_files(tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path)
    created = [store.generate().public_key for _ in range(4)]
    (tmp_path / "README").write_text("not a key")
    (tmp_path / ("73723235" + "zz" * 32)).write_text('"x"')
    (tmp_path / ("65643235" + "11" * 32)).write_text('"x"')  # ed25 key
    assert store.public_keys() == created


def test_keystore_rejects_bad_key_files(tmp_path: Path) -> None:
    store = LocalKeystore.open(tmp_path)
    (tmp_path / ("73723235" + ALICE_PUBLIC.hex())).write_text("not json")
    with pytest.raises(KeystoreError, match="not a JSON string"):
        store.keypair(ALICE_PUBLIC)
    (tmp_path / ("73723235" + ALICE_PUBLIC.hex())).write_text(json.dumps("//Bob"))
    with pytest.raises(KeystoreError, match="another public key"):
        store.keypair(ALICE_PUBLIC)
    (tmp_path / ("73723235" + ALICE_PUBLIC.hex())).write_text(json.dumps(["//Alice"]))
    with pytest.raises(KeystoreError, match="not a JSON string"):
        store.keypair(ALICE_PUBLIC)
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    with pytest.raises(KeystoreError, match="not a directory"):
        LocalKeystore.open(not_a_dir)
    assert LocalKeystore.open(tmp_path / "missing").public_keys() == []


# -- account arguments ------------------------------------------------------------------------


def test_resolve_dev_seed_mnemonic_and_keystore(tmp_path: Path) -> None:
    assert resolve_signer("//Alice").public_key == ALICE_PUBLIC
    assert resolve_signer(DEV_PHRASE).public_key == DEV_PHRASE_PUBLIC
    assert resolve_signer(DEV_PHRASE + "//Alice").public_key == ALICE_PUBLIC
    seed = "0x" + "11" * 32
    assert resolve_signer(seed).public_key == Keypair.from_seed(b"\x11" * 32).public_key
    store = LocalKeystore.open(tmp_path)
    stored = store.generate()
    assert resolve_signer(ss58(stored.public_key), store) == stored
    # Any prefix names the same key.
    assert resolve_signer(ss58_encode(stored.public_key, 13), store) == stored
    with pytest.raises(AccountError, match="not in the keystore"):
        resolve_signer(ALICE_SS58, store)
    with pytest.raises(AccountError, match="no keystore"):
        resolve_signer(ALICE_SS58, None)


def test_resolve_account_id_forms() -> None:
    assert resolve_account_id("//Alice") == ALICE_PUBLIC
    assert resolve_account_id(ALICE_SS58) == ALICE_PUBLIC
    assert resolve_account_id(ss58_encode(ALICE_PUBLIC, 13)) == ALICE_PUBLIC
    assert resolve_account_id(ss58_encode(ALICE_PUBLIC, 2000)) == ALICE_PUBLIC
    # In non-signing positions a bare 0x value is the public key itself, not a seed.
    assert resolve_account_id("0x" + ALICE_PUBLIC.hex()) == ALICE_PUBLIC
    assert resolve_account_id(DEV_PHRASE) == DEV_PHRASE_PUBLIC


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "empty"),
        ("alice", "invalid account"),
        (ALICE_SS58[:-1] + "Z", "bad checksum"),
        ("0x1234", "32 bytes"),
        ("0x" + "zz" * 32, "hex"),
        ("//Alice/", "derivation path"),
    ],
)
def test_bad_accounts_are_rejected(text: str, reason: str) -> None:
    with pytest.raises(AccountError, match=reason):
        resolve_account_id(text)
    with pytest.raises(AccountError):
        resolve_signer(text)


def test_errors_do_not_repeat_secrets() -> None:
    bad_phrase = "bottom drive obey lake curtain smoke basket hold race lonely fit fit"
    with pytest.raises(AccountError) as info:
        resolve_signer(bad_phrase)
    assert "curtain" not in str(info.value)
    bad_seed = "0x" + "ab" * 31
    with pytest.raises(AccountError) as info:
        resolve_signer(bad_seed)
    assert "abab" not in str(info.value)


# -- parameters and helpers -------------------------------------------------------------------


def test_balance_param() -> None:
    assert BALANCE.convert("1000000000000", None, None) == 10**12
    assert BALANCE.convert("1_000", None, None) == 1000
    assert BALANCE.convert(str(U128_MAX), None, None) == U128_MAX
    for bad in ["-1", "1.5", "abc", "", str(U128_MAX + 1), "١٢"]:
        with pytest.raises(click.BadParameter):
            BALANCE.convert(bad, None, None)


def test_endpoints() -> None:
    assert CliConfig().node_endpoint == "ws://127.0.0.1:9944"
    assert CliConfig().worker_endpoint == "wss://127.0.0.1:2000"
    assert CliConfig(node_url="ws://example.org/", node_port=1).node_endpoint == (
        "ws://example.org:1"
    )
    with pytest.raises(CliError):
        _ = CliConfig(node_url="example.org").node_endpoint


def test_header_hash_of_a_known_header() -> None:
    # A header with no digest: blake2_256(parent ++ compact(1) ++ state ++ extrinsics ++ 0x00).
    header = {
        "parentHash": "0x" + "00" * 32,
        "number": "0x1",
        "stateRoot": "0x" + "11" * 32,
        "extrinsicsRoot": "0x" + "22" * 32,
        "digest": {"logs": []},
    }
    from integritee.crypto import blake2_256

    expected = blake2_256(bytes(32) + b"\x04" + b"\x11" * 32 + b"\x22" * 32 + b"\x00")
    assert header_hash(header) == "0x" + expected.hex()
    with pytest.raises(CliError, match="malformed"):
        header_hash({"number": "0x1"})


def test_dispatch_error_descriptions_and_event_phases() -> None:
    assert describe_dispatch_error({"Token": "FundsUnavailable"}) == "Token.FundsUnavailable"
    assert describe_dispatch_error("BadOrigin") == "BadOrigin"
    assert describe_dispatch_error({"Module": {"index": 10, "error": "0x02000000"}}) == (
        "Module(pallet 10, error 2)"
    )
    record = {
        "phase": "ApplyExtrinsic",
        "extrinsic_idx": 3,
        "module_id": "Balances",
        "event_id": "Transfer",
        "attributes": {},
    }
    event = ChainEvent.from_record(record)
    assert (event.phase, event.extrinsic_idx, event.qualified_name) == (
        "ApplyExtrinsic(3)",
        3,
        "Balances.Transfer",
    )
    final = ChainEvent.from_record({**record, "phase": "Finalization", "extrinsic_idx": None})
    assert (final.phase, final.extrinsic_idx) == ("Finalization", None)


# -- the program ------------------------------------------------------------------------------


def test_new_account_and_list_accounts(tmp_path: Path) -> None:
    first = run_cli("new-account", cwd=tmp_path)
    second = run_cli("new-account", cwd=tmp_path)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    created = [first.stdout.strip(), second.stdout.strip()]
    assert all(ss58_encode(resolve_account_id(a), 42) == a for a in created)
    listed = run_cli("list-accounts", cwd=tmp_path)
    assert listed.returncode == 0
    assert listed.stdout.splitlines() == created
    names = sorted(p.name for p in (tmp_path / "my_keystore").iterdir())
    assert names == sorted(SR25519_KEY_TYPE.hex() + resolve_account_id(a).hex() for a in created)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("list-accounts", cwd=empty).stdout == ""


def test_unreachable_node_is_a_clean_error(tmp_path: Path) -> None:
    port = str(free_port())
    for args in (["balance", "//Bob"], ["transfer", "//Alice", "//Bob", "1"], ["listen"]):
        result = run_cli("-p", port, *args, cwd=tmp_path)
        assert result.returncode == 1, result
        assert "cannot connect to the node at ws://127.0.0.1:" + port in result.stderr
        assert "Traceback" not in result.stderr
        assert result.stdout == ""


def test_bad_arguments_are_clean_errors(tmp_path: Path) -> None:
    port = str(free_port())
    bad_account = run_cli("-p", port, "balance", "not-an-account", cwd=tmp_path)
    assert bad_account.returncode == 1
    assert "Error: invalid account 'not-an-account'" in bad_account.stderr
    not_in_keystore = run_cli("-p", port, "transfer", ALICE_SS58, "//Bob", "1", cwd=tmp_path)
    assert not_in_keystore.returncode == 1
    assert "not in the keystore my_keystore" in not_in_keystore.stderr
    bad_amount = run_cli("-p", port, "transfer", "//Alice", "//Bob", "1.5", cwd=tmp_path)
    assert bad_amount.returncode == 2
    assert "not a non-negative integer" in bad_amount.stderr
    bad_url = run_cli("-u", "example.org", "balance", "//Bob", cwd=tmp_path)
    assert bad_url.returncode == 1 and "invalid URL" in bad_url.stderr
    for result in (bad_account, not_in_keystore, bad_amount, bad_url):
        assert "Traceback" not in result.stderr


def test_startup_does_not_import_substrate_interface() -> None:
    code = (
        "import sys, integritee.cli.main as m\n"
        "assert 'substrateinterface' not in sys.modules, 'imported eagerly'\n"
        "assert {'balance','transfer','faucet','listen','new-account','list-accounts',"
        "'print-metadata'} <= set(m.main.commands)\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=30)
