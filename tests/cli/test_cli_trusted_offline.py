"""integritee-cli trusted commands without a node or validateer process.

Argument parsing and early refusals run the CLI in-process (click's runner). The worker side is
served from a thread over WSS with the enclave's self-signed certificate: the read-only methods
of the trusted RPC, answering with the shared wire types (`integritee.trusted.rpc`) from a real
dev shard state (the STF's getters) and a real RSA shielding key. What the CLI encrypts is
decrypted and decoded here with the private key. (The end-to-end runs against the validateer
itself are in tests/demos.)
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from integritee.cli.context import CliError
from integritee.cli.keystore import LocalKeystore
from integritee.cli.main import main
from integritee.cli.trusted_client import (
    ProcessedBlock,
    TrustedClient,
    WorkerError,
    account_info_getter,
    b58_hash,
    decode_return_value,
    encrypt_operation,
    invoke_request,
    parse_version,
    processed_block_of,
    to_b58,
)
from integritee.cli.trusted_commands import DIRECT_UNAVAILABLE, TRUSTED_KEYSTORE_PATH
from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import H256, Bytes, EnumValue, Option, text
from integritee.crypto import Keypair, dev_keypair, ss58_encode
from integritee.crypto.shielding import ShieldingKey
from integritee.enclave.stf.executor import DEV_ENDOWMENTS, ENCLAVE_ACCOUNT_INITIAL_BALANCE, Stf
from integritee.enclave.stf.getters import GetterError, execute_getter
from integritee.enclave.stf.state import ShardState
from integritee.enclave.tls import server_context
from integritee.rpc.server import RpcServer
from integritee.trusted.calls import (
    TrustedCallSigned,
    TrustedOperation,
    balance_transfer,
    balance_unshield,
    sign_call,
)
from integritee.trusted.rpc import (
    Request,
    RpcReturnValue,
    ShardVault,
    decode_request,
    error,
    ok,
)
from procs import free_port

UNIT = 10**12
MRENCLAVE = bytes(range(32))
MRENCLAVE_B58 = to_b58(MRENCLAVE)
OTHER_SHARD = b"\x42" * 32
ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")
ENCLAVE = Keypair.from_seed(b"\x11" * 32, "ed25519")
VAULT = Keypair.from_seed(b"\x22" * 32, "ed25519").public_key


def cli(*args: str, cwd: Path | None = None) -> Result:
    runner = CliRunner()
    if cwd is None:
        return runner.invoke(main, list(args), catch_exceptions=False)
    with contextlib.chdir(cwd):
        return runner.invoke(main, list(args), catch_exceptions=False)


def closed_port() -> str:
    return str(free_port())


# -- the worker side: read-only trusted RPC over a real dev shard state ----------------------


ORIGINAL_VERSION = "enclave-runtime: 0.16.0"


@dataclass
class MiniEnclave:
    """An enclave's identity, shielding key, dev shard state and vault, behind its read-only RPC."""

    shielding: ShieldingKey
    mrenclave: bytes = MRENCLAVE
    vault: bytes | None = VAULT
    state: ShardState = field(default_factory=lambda: ShardState(b"\x01" * 32))

    def __post_init__(self) -> None:
        Stf(self.mrenclave, dev=True).init_state(self.state, ENCLAVE.public_key)

    def register(self, server: RpcServer) -> None:
        m = server.add_method
        m("author_getShieldingKey", lambda p: ok(text.encode(self.shielding.public_key_json())))
        m("author_getFingerprint", lambda p: ok(H256.encode(self.mrenclave)))
        m("author_getShard", lambda p: ok(H256.encode(self.mrenclave)))
        m("author_getShardVault", self.shard_vault)
        m("state_executeGetter", self.execute_getter)
        # the original's form: an RpcReturnValue holding raw UTF-8
        m("system_version", lambda p: ok(ORIGINAL_VERSION.encode()))

    def shard_vault(self, params: Any) -> str:
        if self.vault is None:
            return error("shard vault not initialised")
        return ok(ShardVault.encode((self.vault, EnumValue("Integritee"))))

    def execute_getter(self, params: Any) -> str:
        request = decode_request(params)
        if request["shard"] != self.mrenclave:
            return error("unknown shard")
        try:
            result = execute_getter(self.state, request["cyphertext"], self.mrenclave)
        except GetterError as e:
            return error(str(e))
        return ok(Option(Bytes).encode(result))


class WorkerThread:
    """A trusted RPC server (WSS, self-signed enclave certificate) on its own event loop."""

    def __init__(self, enclave: MiniEnclave) -> None:
        self.enclave = enclave
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: RpcServer | None = None
        self.port = 0

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def start(self) -> WorkerThread:
        self.thread.start()

        async def start() -> int:
            self.server = RpcServer(name="trusted")
            self.enclave.register(self.server)
            return await self.server.start("127.0.0.1", 0, ssl_context=server_context(ENCLAVE))

        self.port = self._call(start())
        return self

    def stop(self) -> None:
        if self.server is not None:
            self._call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def shielding_key() -> ShieldingKey:
    return ShieldingKey.generate()


@pytest.fixture(scope="module")
def worker(shielding_key: ShieldingKey) -> Iterator[WorkerThread]:
    thread = WorkerThread(MiniEnclave(shielding_key)).start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def vaultless_worker(shielding_key: ShieldingKey) -> Iterator[WorkerThread]:
    thread = WorkerThread(MiniEnclave(shielding_key, vault=None)).start()
    try:
        yield thread
    finally:
        thread.stop()


def wcli(worker: WorkerThread, *args: str, cwd: Path | None = None) -> Result:
    return cli("-P", str(worker.port), *args, cwd=cwd)


def ok_out(result: Result) -> list[str]:
    assert result.exit_code == 0, (result.stdout, result.stderr)
    return result.stdout.splitlines()


def refused(result: Result, code: int = 1) -> str:
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    return result.stderr


# -- command registration and parameters ------------------------------------------------------


def test_commands_are_registered() -> None:
    top = cli("--help").stdout
    assert "shield-funds" in top and "trusted" in top
    sub = cli("trusted", "--help").stdout
    for name in (
        "new-account",
        "list-accounts",
        "transfer",
        "balance",
        "nonce",
        "unshield-funds",
        "get-fingerprint",
        "get-shard",
        "get-shard-vault",
        "get-total-issuance",
        "version",
    ):
        assert name in sub
    for flag in ("--mrenclave", "--shard", "--xt-signer", "--direct"):
        assert flag in sub


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("trusted", "-m", "not-base58!", "get-shard"), "is not base58"),
        (("trusted", "-m", to_b58(b"\x01" * 31), "get-shard"), "decodes to 31 bytes"),
        (("trusted", "-s", to_b58(b"\x01" * 33), "list-accounts"), "decodes to 33 bytes"),
        (("shield-funds", "//Alice", "//Bob", "10", "0OIl"), "is not base58"),
        (("shield-funds", "//Alice", "//Bob", "ten", MRENCLAVE_B58), "not a non-negative integer"),
        (("shield-funds", "//Alice", "//Bob", str(2**128), MRENCLAVE_B58), "does not fit a u128"),
        (("trusted", "-m", MRENCLAVE_B58, "transfer", "//A", "//B", "1.5"), "non-negative integer"),
    ],
)
def test_bad_parameters_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    assert message in refused(cli(*args), 2)


@pytest.mark.parametrize(
    "command",
    [
        ("transfer", "//Alice", "//Bob", "1"),
        ("unshield-funds", "//Alice", "//Ferdie", "1"),
        ("unshield-funds", "-e", "//Alice", "//Ferdie", "1"),
    ],
)
def test_direct_calls_are_refused_before_any_network(command: tuple[str, ...]) -> None:
    # nothing listens on these ports: the refusal must come first
    result = cli("-p", closed_port(), "-P", closed_port(), "trusted", "--direct", *command)
    assert f"Error: {DIRECT_UNAVAILABLE}" in refused(result)


def test_unreachable_worker_is_a_clean_error() -> None:
    stderr = refused(cli("-P", closed_port(), "trusted", "get-fingerprint"))
    assert "Error: cannot connect to the worker at wss://127.0.0.1:" in stderr


# -- the trusted keystore -----------------------------------------------------------------------


def test_new_and_list_accounts_use_the_shards_keystore(tmp_path: Path) -> None:
    (account,) = ok_out(cli("trusted", "-m", MRENCLAVE_B58, "new-account", cwd=tmp_path))
    store = LocalKeystore.open(tmp_path / TRUSTED_KEYSTORE_PATH / MRENCLAVE_B58)
    (public,) = store.public_keys()
    assert account == ss58_encode(public, 42)
    assert (store.path / ("73723235" + public.hex())).is_file()
    assert ok_out(cli("trusted", "-m", MRENCLAVE_B58, "list-accounts", cwd=tmp_path)) == [account]
    # -s names the shard (and so the keystore) even when -m is given
    other = ("trusted", "-m", MRENCLAVE_B58, "-s", to_b58(OTHER_SHARD))
    assert ok_out(cli(*other, "list-accounts", cwd=tmp_path)) == []
    (second,) = ok_out(cli(*other, "new-account", cwd=tmp_path))
    assert ok_out(cli(*other, "list-accounts", cwd=tmp_path)) == [second]
    assert (tmp_path / TRUSTED_KEYSTORE_PATH / to_b58(OTHER_SHARD)).is_dir()


def test_account_missing_from_the_trusted_keystore(tmp_path: Path) -> None:
    dave = ss58_encode(dev_keypair("Dave").public_key, 42)
    result = cli("-P", closed_port(), "trusted", "-m", MRENCLAVE_B58, "balance", dave, cwd=tmp_path)
    assert "is not in the keystore" in refused(result)


# -- against the enclave's trusted RPC --------------------------------------------------------


def test_identity_commands(worker: WorkerThread) -> None:
    assert ok_out(wcli(worker, "trusted", "get-fingerprint")) == [MRENCLAVE_B58]
    assert ok_out(wcli(worker, "trusted", "get-fingerprint", "-x")) == [
        MRENCLAVE_B58,
        to_hex(MRENCLAVE),
    ]
    assert ok_out(wcli(worker, "trusted", "get-shard", "--hex")) == [
        MRENCLAVE_B58,
        to_hex(MRENCLAVE),
    ]
    assert ok_out(wcli(worker, "trusted", "get-shard-vault")) == [ss58_encode(VAULT, 42)]
    assert ok_out(wcli(worker, "trusted", "version")) == [ORIGINAL_VERSION]


def test_missing_shard_vault_is_reported(vaultless_worker: WorkerThread) -> None:
    stderr = refused(wcli(vaultless_worker, "trusted", "get-shard-vault"))
    assert "the worker refused author_getShardVault: shard vault not initialised" in stderr


def test_shield_funds_refuses_a_shard_with_a_vault(
    worker: WorkerThread, vaultless_worker: WorkerThread
) -> None:
    shield = ("shield-funds", "//Alice", "//AliceIncognito", str(UNIT))
    node = ("-p", closed_port())
    stderr = refused(wcli(worker, *node, *shield, MRENCLAVE_B58))
    assert f"Error: shard {MRENCLAVE_B58} has a shard vault ({ss58_encode(VAULT, 42)})" in stderr
    # past the check, the next step is the node (which is not there)
    for result in (
        wcli(worker, *node, *shield, MRENCLAVE_B58, "--force"),
        wcli(worker, *node, *shield, to_b58(OTHER_SHARD)),  # not the worker's shard
        wcli(vaultless_worker, *node, *shield, MRENCLAVE_B58),
    ):
        assert "cannot connect to the node at ws://127.0.0.1:" in refused(result)


def test_balance_nonce_and_issuance_from_trusted_getters(worker: WorkerThread) -> None:
    base = ("trusted", "-m", MRENCLAVE_B58)
    alice_endowment = dict(DEV_ENDOWMENTS)[ALICE.public_key]
    assert ok_out(wcli(worker, *base, "balance", "//Alice")) == [str(alice_endowment)]
    assert ok_out(wcli(worker, *base, "nonce", "//Alice")) == ["0"]
    assert ok_out(wcli(worker, *base, "balance", "//NobodyEver")) == ["0"]
    issuance = sum(amount for _, amount in DEV_ENDOWMENTS) + ENCLAVE_ACCOUNT_INITIAL_BALANCE
    assert ok_out(wcli(worker, *base, "get-total-issuance")) == [str(issuance)]
    # without -m the fingerprint is fetched from the worker first
    result = wcli(worker, "trusted", "balance", "//Alice")
    assert ok_out(result) == [str(alice_endowment)]
    assert "no --mrenclave argument provided" in result.stderr


def test_getter_signed_by_a_non_proxy_is_refused(worker: WorkerThread) -> None:
    result = wcli(
        worker, "trusted", "-m", MRENCLAVE_B58, "balance", "//Alice", "--session-proxy", "//Bob"
    )
    stderr = refused(result)
    assert "Error: the worker refused state_executeGetter: MissingPrivileges(0x" in stderr
    assert result.stdout == ""
    with TrustedClient(worker.url) as client:
        with pytest.raises(WorkerError) as info:
            client.account_info(MRENCLAVE, ALICE.public_key, BOB)
        assert info.value.method == "state_executeGetter"
        assert info.value.reason.startswith("MissingPrivileges")
        with pytest.raises(WorkerError, match="unknown shard"):
            client.account_info(OTHER_SHARD, ALICE.public_key, ALICE)


def test_indirect_payload_decrypts_to_the_signed_operation(
    worker: WorkerThread, shielding_key: ShieldingKey
) -> None:
    """What `trusted transfer` sends through EnclaveBridge.invoke, opened as the enclave does."""
    with TrustedClient(worker.url) as client:
        key = client.shielding_key()
        mrenclave = client.fingerprint()
    assert key.to_json() == shielding_key.public_key_json()
    call = balance_transfer(ALICE.public_key, BOB.public_key, 2 * UNIT)
    top = sign_call(call, ALICE, 3, mrenclave, mrenclave).into_trusted_operation(direct=False)
    cyphertext = encrypt_operation(key, top)
    assert len(cyphertext) % 384 == 0
    plain = shielding_key.decrypt(cyphertext)
    assert plain[0] == 0  # TrustedOperation::indirect_call
    decoded = TrustedOperation.decode(plain)
    tcs = decoded.value
    assert isinstance(tcs, TrustedCallSigned)
    assert tcs.call == call and tcs.nonce == 3 and tcs.delegate is None
    assert tcs.verify_signature(mrenclave, mrenclave)
    assert not tcs.verify_signature(mrenclave, OTHER_SHARD)
    assert TrustedCallSigned.decode(plain[1:]) == tcs
    # the extrinsic argument carries the shard and the ciphertext unchanged
    request = invoke_request(mrenclave, cyphertext)
    encoded = Request.encode(
        {"shard": from_hex(request["shard"]), "cyphertext": from_hex(request["cyphertext"])}
    )
    assert Request.decode(encoded) == {"shard": mrenclave, "cyphertext": cyphertext}


def test_unshield_call_names_the_shard() -> None:
    call = balance_unshield(ALICE.public_key, BOB.public_key, UNIT, OTHER_SHARD)
    tcs = sign_call(call, ALICE, 0, MRENCLAVE, OTHER_SHARD)
    assert tcs.call.value[3] == OTHER_SHARD
    assert tcs.verify_signature(MRENCLAVE, OTHER_SHARD)


def test_session_proxy_signature_names_the_delegate() -> None:
    getter = account_info_getter(ALICE.public_key, BOB)
    assert getter.name == "trusted"
    assert getter.value.delegate == BOB.public_key
    assert getter.value.verify_signature()
    own = account_info_getter(ALICE.public_key, ALICE)
    assert own.value.delegate is None and own.value.verify_signature()


# -- decoding helpers -------------------------------------------------------------------------


def test_return_values() -> None:
    assert decode_return_value("m", ok(b"\x01\x02")) == b"\x01\x02"
    with pytest.raises(WorkerError) as info:
        decode_return_value("m", error("no such thing"))
    assert info.value.reason == "no such thing"
    assert str(info.value) == "the worker refused m: no such thing"
    with pytest.raises(CliError, match="undecodable RpcReturnValue"):
        decode_return_value("m", "0x0102")
    with pytest.raises(CliError, match="undecodable RpcReturnValue"):
        decode_return_value("m", "zz")
    with pytest.raises(CliError, match="expected a hex string"):
        decode_return_value("m", 42)


def test_version_in_both_forms() -> None:
    original = ok(b"enclave-runtime: 0.16.0")  # raw UTF-8, not a SCALE string
    assert parse_version(original) == "enclave-runtime: 0.16.0"
    assert parse_version("0.16.0-python") == "0.16.0-python"
    assert parse_version("0xnot-a-return-value") == "0xnot-a-return-value"
    with pytest.raises(CliError):
        parse_version({"version": 1})


def test_processed_block_event_fields() -> None:
    h = [bytes([i]) * 32 for i in range(3)]
    as_dict = processed_block_of(
        {
            "shard": to_hex(h[0]),
            "block_hash": to_hex(h[1]),
            "trusted_calls_merkle_root": to_hex(h[2]),
            "block_number": 17,
        }
    )
    as_list = processed_block_of([to_hex(h[0]), to_hex(h[1]), to_hex(h[2]), 17])
    assert as_dict == as_list == ProcessedBlock(h[0], h[1], h[2], 17)
    assert str(as_dict) == (
        f"ProcessedParentchainBlock {{ shard: {to_hex(h[0])}, block_hash: {to_hex(h[1])}, "
        f"trusted_calls_merkle_root: {to_hex(h[2])}, block_number: 17 }}"
    )
    short = {
        "shard": "0x01",
        "block_hash": to_hex(h[1]),
        "trusted_calls_merkle_root": to_hex(h[2]),
        "block_number": 1,
    }
    with pytest.raises(ValueError, match="expected 32 bytes"):
        processed_block_of(short)
    with pytest.raises(KeyError):
        processed_block_of({"shard": to_hex(h[0])})


def test_b58_identifiers() -> None:
    assert b58_hash(MRENCLAVE_B58, "mrenclave") == MRENCLAVE
    assert b58_hash(f"  {MRENCLAVE_B58}\n", "mrenclave") == MRENCLAVE
    with pytest.raises(CliError, match="shard '0' is not base58"):
        b58_hash("0", "shard")
    with pytest.raises(CliError, match="decodes to 0 bytes"):
        b58_hash("", "shard")


def test_a_raw_error_string_is_shown_as_text() -> None:
    raw = RpcReturnValue.encode(
        {"value": b"plain words", "do_watch": False, "status": EnumValue("Error")}
    )
    with pytest.raises(WorkerError) as info:
        decode_return_value("m", to_hex(raw))
    assert info.value.reason == "plain words"
    assert text.decode(text.encode("scale words")) == "scale words"
