"""integritee-cli trusted commands without a node or validateer process.

Argument parsing and early refusals run the CLI in-process (click's runner). The worker side is
served from a thread over WSS with the enclave's self-signed certificate: the trusted RPC,
answering with the shared wire types (`integritee.trusted.rpc`) from a real dev shard state (the
STF's getters) and a real RSA shielding key. What the CLI encrypts is decrypted and decoded here
with the private key. Direct calls are executed at once by the real STF on that state and
watched with the worker's notification format (a sidechain block per call is only simulated).
A node's enclave registry (`Teerex.SovereignEnclaves`, read over HTTP JSON-RPC) is served from
another thread, so the CLI's pinning of the worker's TLS key is exercised both ways. (The
end-to-end runs against the validateer itself are in tests/demos.)
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from integritee.cli.benchmark import (
    PERCENTILES,
    TRANSFER_AMOUNT,
    TX_FEE,
    BenchmarkResult,
    Transaction,
    funding_amount,
    percentile,
    percentile_lines,
)
from integritee.cli.context import CliError
from integritee.cli.keystore import LocalKeystore
from integritee.cli.main import main
from integritee.cli.tee_commands import RegisteredEnclave
from integritee.cli.trusted_client import (
    ConfirmationError,
    DirectCallFailed,
    PinError,
    ProcessedBlock,
    TrustedClient,
    WorkerError,
    account_info_getter,
    b58_hash,
    certificate_ed25519_key,
    decode_return_value,
    decode_status_update,
    encrypt_operation,
    fetch_certificate,
    format_status,
    invoke_request,
    parse_version,
    pin_enclave,
    processed_block_of,
    registered_enclave_for,
    require_executed,
    same_endpoint,
    to_b58,
)
from integritee.cli.trusted_commands import TRUSTED_KEYSTORE_PATH
from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import H256, Bytes, EnumValue, Option, text
from integritee.crypto import Keypair, blake2_128, blake2_256, dev_keypair, ss58_encode, twox128
from integritee.crypto.shielding import ShieldingKey
from integritee.enclave.stf.executor import DEV_ENDOWMENTS, ENCLAVE_ACCOUNT_INITIAL_BALANCE, Stf
from integritee.enclave.stf.getters import GetterError, execute_getter
from integritee.enclave.stf.runtime import Runtime
from integritee.enclave.stf.state import ShardState
from integritee.enclave.tls import server_context
from integritee.parentchain.tee_types import MultiEnclave, new_sgx_enclave
from integritee.rpc.errors import INVALID_PARAMS, RpcError
from integritee.rpc.server import RpcServer, SubscriptionSink
from integritee.trusted.calls import (
    TrustedCallSigned,
    TrustedOperation,
    balance_transfer,
    balance_unshield,
    sign_call,
)
from integritee.trusted.rpc import (
    DirectRequestStatus,
    Request,
    RpcReturnValue,
    ShardVault,
    decode_request,
    error,
    ok,
)
from integritee.trusted.sidechain import SidechainHeaderCodec
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


DROPPER = dev_keypair("Dropper")
"""The mini enclave's pool drops every call of this account."""
FINAL_STATUS_DELAY = 0.005


def _status(status: EnumValue) -> str:
    return to_hex(DirectRequestStatus.encode(EnumValue("TrustedOperationStatus", status)))


@dataclass
class MiniEnclave:
    """An enclave's identity, shielding key, dev shard state and vault, behind its trusted RPC.

    Direct calls run through the real STF as they arrive; each executed call gets a simulated
    sidechain block of its own (`blocks`: block hash -> top hashes; `header` the latest)."""

    shielding: ShieldingKey
    mrenclave: bytes = MRENCLAVE
    vault: bytes | None = VAULT
    state: ShardState = field(default_factory=lambda: ShardState(b"\x01" * 32))
    methods_seen: list[str] = field(default_factory=list)
    blocks: dict[bytes, list[bytes]] = field(default_factory=dict)
    header: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        self.stf = Stf(self.mrenclave, dev=True)
        self.stf.init_state(self.state, ENCLAVE.public_key)

    def register(self, server: RpcServer) -> None:
        for method, unwatch in (
            ("author_submitAndWatchExtrinsic", "author_unwatchExtrinsic"),
            ("author_submitAndWatchTrustedOperation", "author_unwatchTrustedOperation"),
        ):
            server.add_subscription(
                method,
                unwatch,
                "author_submitAndWatchExtrinsic",
                self._watch(method),
                notification_extra={"error": None},
            )
        m = server.add_method
        m("chain_getHeader", self.get_header)
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

    def get_header(self, params: Any) -> str:
        if self.header is None:
            return error("no sidechain block yet")
        return ok(SidechainHeaderCodec.encode(self.header))

    def _watch(self, method: str) -> Any:
        async def handler(params: Any, sink: SubscriptionSink) -> None:
            self.methods_seen.append(method)
            request = decode_request(params)
            payload = bytes(request["cyphertext"])
            if method == "author_submitAndWatchExtrinsic":
                payload = self.shielding.decrypt(payload)
            if request["shard"] != self.mrenclave or payload[0] != 1:
                raise RpcError(INVALID_PARAMS, "unknown shard or not a direct call")
            tcs = TrustedCallSigned.decode(payload[1:])
            if not tcs.verify_signature(self.mrenclave, self.mrenclave):
                raise RpcError(INVALID_PARAMS, "bad signature")
            top_hash = blake2_256(payload)
            sink.set_id(to_hex(top_hash))
            sink.send(_status(EnumValue("Submitted")))
            if tcs.sender == DROPPER.public_key:
                final = EnumValue("Dropped")
            else:
                outcome = self.stf.execute(self.state, self.mrenclave, tcs)
                if outcome.rejected:
                    final = EnumValue("Invalid")
                else:
                    sink.send(_status(EnumValue("Ready")))
                    final = EnumValue("InSidechainBlock", self._block([top_hash]))

            def finish() -> None:
                sink.send(_status(final))
                sink.close()

            asyncio.get_running_loop().call_later(FINAL_STATUS_DELAY, finish)

        return handler

    def _block(self, top_hashes: list[bytes]) -> bytes:
        number = len(self.blocks) + 1
        parent = (
            bytes(32)
            if self.header is None
            else blake2_256(SidechainHeaderCodec.encode(self.header))
        )
        self.header = {
            "parent_hash": parent,
            "block_number": number,
            "shard_id": self.mrenclave,
            "block_data_hash": blake2_256(b"".join(top_hashes)),
            "next_finalization_block_number": (number // 50 + 1) * 50,
        }
        block_hash = blake2_256(SidechainHeaderCodec.encode(self.header))
        self.blocks[block_hash] = top_hashes
        return block_hash


class WorkerThread:
    """A trusted RPC server (WSS, self-signed enclave certificate) on its own event loop."""

    def __init__(self, enclave: Any, tls: bool = True, key: Keypair = ENCLAVE) -> None:
        self.enclave = enclave
        self.tls = tls
        self.key = key
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: RpcServer | None = None
        self.port = 0

    def _call(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(15)

    def start(self) -> WorkerThread:
        self.thread.start()

        async def start() -> int:
            self.server = RpcServer(name="trusted" if self.tls else "node")
            self.enclave.register(self.server)
            context = server_context(self.key) if self.tls else None
            return await self.server.start("127.0.0.1", 0, ssl_context=context)

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
        return f"{'wss' if self.tls else 'ws'}://127.0.0.1:{self.port}"


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
        "get-sidechain-header",
        "benchmark",
        "version",
    ):
        assert name in sub
    for flag in ("--mrenclave", "--shard", "--xt-signer", "--direct", "--rsa"):
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
        ("unshield-funds", "-e", "//Alice", "//Ferdie", "1"),
        ("benchmark", "1", "1"),
    ],
)
def test_direct_calls_without_a_worker_are_a_clean_error(command: tuple[str, ...]) -> None:
    result = cli("-p", closed_port(), "-P", closed_port(), "trusted", "--direct", *command)
    stderr = refused(result)
    assert "is not pinned (cannot read the TLS certificate of wss://127.0.0.1:" in stderr
    assert "Error: cannot connect to the worker at wss://127.0.0.1:" in stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("benchmark", "0"), "0 is not in the range 1<=x<=10000"),
        (("benchmark", "1", "1", "50", "10"), "MIN_WAIT_MS 50 exceeds MAX_WAIT_MS 10"),
        (("benchmark", "1", "-3"), "No such option '-3'"),
    ],
)
def test_bad_benchmark_parameters(args: tuple[str, ...], message: str) -> None:
    stderr = refused(cli("-P", closed_port(), "trusted", "-m", MRENCLAVE_B58, *args), 2)
    assert message in stderr


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


# -- the enclave registry of a node, for pinning --------------------------------------------------

SOVEREIGN_ENCLAVES = twox128(b"Teerex") + twox128(b"SovereignEnclaves")
REGISTRY_BLOCK = "0x" + "ab" * 32


@dataclass
class MiniRegistry:
    """A node's `Teerex.SovereignEnclaves` over the storage RPC the CLI reads it with."""

    entries: dict[bytes, EnumValue] = field(default_factory=dict)

    def add(self, signer: bytes, url: str, mrenclave: bytes = MRENCLAVE) -> None:
        self.entries[signer] = new_sgx_enclave(
            report_data=signer + bytes(32),
            mr_enclave=mrenclave,
            mr_signer=bytes(32),
            timestamp=1_700_000_000_000,
            build_mode="Debug",
            status="Ok",
            attestation_method=EnumValue("Skip", {"proxied": False}),
            url=url.encode(),
        )

    def _key(self, signer: bytes) -> str:
        return to_hex(SOVEREIGN_ENCLAVES + blake2_128(signer) + signer)

    def register(self, server: RpcServer) -> None:
        server.add_method("chain_getBlockHash", lambda p: REGISTRY_BLOCK)
        server.add_method("state_getKeysPaged", self.keys_paged)
        server.add_method("state_queryStorageAt", self.query_storage_at)

    def keys_paged(self, params: Any) -> list[str]:
        prefix, count, start, block = params
        assert prefix == to_hex(SOVEREIGN_ENCLAVES) and block == REGISTRY_BLOCK
        keys = sorted(self._key(signer) for signer in self.entries)
        return [k for k in keys if start is None or k > start][:count]

    def query_storage_at(self, params: Any) -> list[dict[str, Any]]:
        keys, block = params
        values = {self._key(s): to_hex(MultiEnclave.encode(e)) for s, e in self.entries.items()}
        return [{"block": block, "changes": [[k, values.get(k)] for k in keys]}]


@pytest.fixture
def registry() -> Iterator[tuple[MiniRegistry, WorkerThread]]:
    mini = MiniRegistry()
    thread = WorkerThread(mini, tls=False).start()
    try:
        yield mini, thread
    finally:
        thread.stop()


@pytest.fixture(scope="module")
def direct_worker(shielding_key: ShieldingKey) -> Iterator[WorkerThread]:
    """A worker of its own: direct calls change its state."""
    thread = WorkerThread(MiniEnclave(shielding_key)).start()
    try:
        yield thread
    finally:
        thread.stop()


def state_of(worker: WorkerThread, account: bytes) -> tuple[int, int]:
    """(nonce, free balance) of `account` in the mini enclave's state."""
    runtime = Runtime(worker.enclave.state)
    return runtime.account_nonce(account), runtime.free_balance(account)


def with_node(registry: tuple[MiniRegistry, WorkerThread], worker: WorkerThread) -> tuple[str, ...]:
    return ("-p", str(registry[1].port), "-P", str(worker.port))


STATUS_RE = re.compile(r"Trusted call (0x[0-9a-f]{64}) is (\w+)(?:\((0x[0-9a-f]{64})\))?")


def statuses(lines: list[str]) -> list[tuple[str, str, str | None]]:
    out = []
    for line in lines:
        match = STATUS_RE.fullmatch(line)
        if match:
            out.append((match[1], match[2], match[3]))
    return out


# -- direct calls -----------------------------------------------------------------------------


def test_direct_transfer_over_the_pinned_connection(
    direct_worker: WorkerThread, registry: tuple[MiniRegistry, WorkerThread]
) -> None:
    mini, _ = registry
    mini.add(ENCLAVE.public_key, direct_worker.url)
    bob = dev_keypair("BobIncognito").public_key
    nonce, before = state_of(direct_worker, ALICE.public_key)
    bob_before = state_of(direct_worker, bob)[1]
    result = cli(*with_node(registry, direct_worker), "trusted", "--direct", "transfer",
                 "//Alice", "//BobIncognito", str(4 * UNIT))  # fmt: skip
    lines = ok_out(result)
    assert lines[0].startswith(
        f"send trusted call transfer from {ss58_encode(ALICE.public_key, 42)}"
    )
    assert f"nonce: {nonce}, signing using mrenclave: {MRENCLAVE_B58}" in lines[0]
    seen = statuses(lines)
    assert len(seen) == len(lines) - 1 == 3
    assert [name for _, name, _ in seen] == ["Submitted", "Ready", "InSidechainBlock"]
    top_hash = seen[0][0]
    assert {h for h, _, _ in seen} == {top_hash}
    block = from_hex(seen[2][2] or "")
    assert direct_worker.enclave.blocks[block] == [from_hex(top_hash)]
    # the fast path: plain SCALE over the connection pinned to the registered key
    assert direct_worker.enclave.methods_seen[-1] == "author_submitAndWatchTrustedOperation"
    assert "pinned the TLS key of " + direct_worker.url in result.stderr
    assert "no --mrenclave argument provided" not in result.stderr  # the registry's MRENCLAVE
    assert state_of(direct_worker, ALICE.public_key) == (nonce + 1, before - 4 * UNIT - TX_FEE)
    assert state_of(direct_worker, bob)[1] == bob_before + 4 * UNIT

    # --rsa keeps the pinned connection but encrypts the call
    result = cli(*with_node(registry, direct_worker), "trusted", "--direct", "--rsa",
                 "transfer", "//Alice", "//BobIncognito", "7")  # fmt: skip
    assert [n for _, n, _ in statuses(ok_out(result))][-1] == "InSidechainBlock"
    assert direct_worker.enclave.methods_seen[-1] == "author_submitAndWatchExtrinsic"
    assert state_of(direct_worker, bob)[1] == bob_before + 4 * UNIT + 7


def test_direct_calls_fall_back_to_rsa_when_the_key_is_not_pinned(
    direct_worker: WorkerThread, registry: tuple[MiniRegistry, WorkerThread]
) -> None:
    mini, node = registry
    transfer = ("trusted", "--direct", "transfer", "//Alice", "//CharlieIncognito", "1000")
    other_url = f"wss://127.0.0.1:{closed_port()}"
    cases = [
        (("-p", closed_port()), "cannot read the enclave registry from the node at ws://"),
        (
            ("-p", str(node.port)),
            f"the worker's TLS key 0x{ENCLAVE.public_key.hex()} is not a "
            "registered enclave (0 registered)",
        ),  # fmt: skip
    ]
    for node_args, reason in cases:
        result = cli(*node_args, "-P", str(direct_worker.port), *transfer)
        assert [n for _, n, _ in statuses(ok_out(result))][-1] == "InSidechainBlock"
        assert direct_worker.enclave.methods_seen[-1] == "author_submitAndWatchExtrinsic"
        assert "the worker's TLS key is not pinned (" + reason in result.stderr, result.stderr
        assert "direct calls are RSA-encrypted over an unverified connection" in result.stderr
    mini.add(ENCLAVE.public_key, other_url)
    result = cli("-p", str(node.port), "-P", str(direct_worker.port), *transfer)
    ok_out(result)
    assert f"is registered for '{other_url}', not for {direct_worker.url}" in result.stderr
    assert direct_worker.enclave.methods_seen[-1] == "author_submitAndWatchExtrinsic"


def test_registered_mrenclave_must_match_the_one_given(
    direct_worker: WorkerThread, registry: tuple[MiniRegistry, WorkerThread]
) -> None:
    registry[0].add(ENCLAVE.public_key, direct_worker.url)
    other = to_b58(OTHER_SHARD)
    result = cli(*with_node(registry, direct_worker), "trusted", "-m", other, "-s", MRENCLAVE_B58,
                 "--direct", "transfer", "//Alice", "//CharlieIncognito", "1000")  # fmt: skip
    stderr = refused(result)
    assert f"runs MRENCLAVE {MRENCLAVE_B58}, not {other}" in stderr
    # signed for another enclave: the worker refuses the signature
    assert "Error: the worker rejected the trusted call: bad signature" in stderr


@pytest.mark.parametrize(
    ("sender", "status", "reason"),
    [
        ("//Pauper", "Invalid", "the worker found it invalid"),
        ("//Dropper", "Dropped", "the worker's pool dropped it"),
    ],
)
def test_direct_call_that_is_not_executed_fails(
    direct_worker: WorkerThread, sender: str, status: str, reason: str
) -> None:
    result = cli("-p", closed_port(), "-P", str(direct_worker.port), "trusted", "--direct",
                 "transfer", sender, "//Bob", "1000")  # fmt: skip
    stderr = refused(result)
    seen = statuses(result.stdout.splitlines())
    assert [n for _, n, _ in seen] == ["Submitted", status]
    assert f"Error: trusted call {seen[0][0]} is {status}: {reason}" in stderr


def test_direct_unshield_through_the_enclave_bridge(direct_worker: WorkerThread) -> None:
    nonce, before = state_of(direct_worker, ALICE.public_key)
    result = cli("-p", closed_port(), "-P", str(direct_worker.port), "trusted", "--direct",
                 "unshield-funds", "-e", "//Alice", "//Ferdie", str(UNIT))  # fmt: skip
    lines = ok_out(result)
    assert lines[0].endswith(f": {UNIT} through enclave-bridge")
    assert [n for _, n, _ in statuses(lines)] == ["Submitted", "Ready", "InSidechainBlock"]
    assert state_of(direct_worker, ALICE.public_key) == (nonce + 1, before - UNIT - 3 * TX_FEE)


def test_get_sidechain_header() -> None:
    enclave = MiniEnclave(ShieldingKey.generate())
    thread = WorkerThread(enclave).start()
    try:
        stderr = refused(cli("-P", str(thread.port), "trusted", "get-sidechain-header"))
        assert "Error: the worker refused chain_getHeader: no sidechain block yet" in stderr
        enclave._block([b"" * 32])
        enclave._block([b"" * 32])
        (line,) = ok_out(cli("-P", str(thread.port), "trusted", "get-sidechain-header"))
        header = enclave.header
        assert header is not None
        assert line == (
            f"SidechainHeader {{ parent_hash: {to_hex(header['parent_hash'])}, block_number: 2, "
            f"shard_id: {to_hex(MRENCLAVE)}, block_data_hash: {to_hex(header['block_data_hash'])}"
            ", next_finalization_block_number: 50 }"
        )
        assert header["parent_hash"] in enclave.blocks
    finally:
        thread.stop()


class LyingEnclave:
    """Answers a watch with another hash than the operation's."""

    def register(self, server: RpcServer) -> None:
        async def handler(params: Any, sink: SubscriptionSink) -> None:
            sink.set_id(to_hex(b"f" * 32))
            sink.send(_status(EnumValue("Submitted")))

        server.add_subscription(
            "author_submitAndWatchExtrinsic", "author_unwatchExtrinsic",
            "author_submitAndWatchExtrinsic", handler,
        )  # fmt: skip
        server.add_method("state_executeGetter", lambda p: ok(Option(Bytes).encode(None)))
        key = ShieldingKey.generate()
        server.add_method(
            "author_getShieldingKey", lambda p: ok(text.encode(key.public_key_json()))
        )


def test_a_worker_answering_another_hash_is_refused() -> None:
    thread = WorkerThread(LyingEnclave()).start()
    try:
        result = cli("-p", closed_port(), "-P", str(thread.port), "trusted", "-m",
                     MRENCLAVE_B58, "--direct", "transfer", "//Alice", "//Bob", "1")  # fmt: skip
        stderr = refused(result)
        assert "author_submitAndWatchExtrinsic: the worker answered '0x6666" in stderr
        assert "instead of the call's hash 0x" in stderr
        assert "is Submitted" not in result.stdout
    finally:
        thread.stop()


# -- pinning ----------------------------------------------------------------------------------


def test_pinned_context_accepts_only_the_pinned_certificate(
    direct_worker: WorkerThread, registry: tuple[MiniRegistry, WorkerThread]
) -> None:
    mini, node = registry
    impostor_key = Keypair.from_seed(b"3" * 32, "ed25519")
    impostor = WorkerThread(MiniEnclave(ShieldingKey.generate()), key=impostor_key).start()
    try:
        der = fetch_certificate(direct_worker.url)
        assert certificate_ed25519_key(der) == ENCLAVE.public_key
        assert certificate_ed25519_key(fetch_certificate(impostor.url)) == impostor_key.public_key
        mini.add(ENCLAVE.public_key, direct_worker.url)
        pinned = pin_enclave(node.url, direct_worker.url, MRENCLAVE)
        assert (pinned.public_key, pinned.mrenclave, pinned.certificate) == (
            ENCLAVE.public_key, MRENCLAVE, der,
        )  # fmt: skip
        with TrustedClient(direct_worker.url, ssl=pinned.ssl_context()) as client:
            assert client.fingerprint() == MRENCLAVE
        # the impostor on the pinned URL's place: the handshake fails
        with (
            TrustedClient(impostor.url, ssl=pinned.ssl_context()) as client,
            pytest.raises(CliError, match="CERTIFICATE_VERIFY_FAILED"),
        ):
            client.fingerprint()
        # the impostor is not registered; registering it for another URL does not help
        with pytest.raises(PinError, match="is not a registered enclave"):
            pin_enclave(node.url, impostor.url)
        mini.add(impostor_key.public_key, direct_worker.url)
        with pytest.raises(PinError, match="is registered for 'wss://127.0.0.1:"):
            pin_enclave(node.url, impostor.url)
    finally:
        impostor.stop()


def test_certificate_key_must_be_ed25519() -> None:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-an-enclave")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    with pytest.raises(PinError, match="has a .*PublicKey key, not the enclave's ed25519 key"):
        certificate_ed25519_key(cert.public_bytes(serialization.Encoding.DER))
    with pytest.raises(PinError, match="certificate is malformed"):
        certificate_ed25519_key(b"0")


def test_endpoints_and_registry_matching() -> None:
    assert same_endpoint("wss://127.0.0.1:2000", "WSS://127.0.0.1:2000/")
    assert same_endpoint("wss://Localhost:443", "wss://localhost")
    assert not same_endpoint("wss://127.0.0.1:2000", "wss://127.0.0.1:2001")
    assert not same_endpoint("wss://127.0.0.1:2000", "ws://127.0.0.1:2000")
    assert not same_endpoint("wss://127.0.0.1:2000", "wss://localhost:2000")
    assert not same_endpoint("wss://127.0.0.1:99999", "wss://127.0.0.1:99999")
    assert not same_endpoint("127.0.0.1:2000", "127.0.0.1:2000")  # no scheme: no port known

    def entry(signer: bytes, url: bytes | None) -> RegisteredEnclave:
        return RegisteredEnclave(
            signer,
            new_sgx_enclave(
                report_data=bytes(64), mr_enclave=MRENCLAVE, mr_signer=bytes(32), timestamp=1,
                build_mode="Debug", status="Ok",
                attestation_method=EnumValue("Skip", {"proxied": False}), url=url,
            ),
        )  # fmt: skip

    me, other = b"" * 32, b"" * 32
    enclaves = [entry(other, b"wss://127.0.0.1:2000"), entry(me, None), entry(me, b"wss://h:2000")]
    assert registered_enclave_for(enclaves, me, "wss://H:2000/") is enclaves[2]
    with pytest.raises(PinError, match="registered for none, 'wss://h:2000', not for wss://"):
        registered_enclave_for(enclaves, me, "wss://127.0.0.1:2000")
    with pytest.raises(PinError, match=r"0x0303.* is not a registered enclave \(3 registered\)"):
        registered_enclave_for(enclaves, b"" * 32, "wss://h:2000")


def test_status_formats_and_updates() -> None:
    block = bytes(range(32))
    assert (
        format_status(EnumValue("InSidechainBlock", block)) == f"InSidechainBlock({to_hex(block)})"
    )
    assert format_status(EnumValue("Ready")) == "Ready"
    assert decode_status_update(_status(EnumValue("Dropped"))) == EnumValue("Dropped")
    with pytest.raises(CliError, match="ended the watch with DirectRequestStatus::Error"):
        decode_status_update(to_hex(DirectRequestStatus.encode(EnumValue("Error"))))
    with pytest.raises(CliError, match="undecodable status update"):
        decode_status_update("0x0111")
    with pytest.raises(CliError, match="not a hex string"):
        decode_status_update(None)
    failed = DirectCallFailed(b"" * 32, EnumValue("Usurped"))
    assert failed.message == (
        f"trusted call {to_hex(b'' * 32)} is Usurped: another call of the same account "
        "with the same nonce replaced it"
    )


# -- the benchmark ----------------------------------------------------------------------------


def test_percentiles_nearest_rank() -> None:
    values = list(range(1, 21))  # 1..20
    assert [percentile(values, p) for p in (5, 10, 50, 95, 100)] == [1, 2, 10, 19, 20]
    assert [percentile([7], p) for p in PERCENTILES] == [7] * 20
    assert percentile([1, 2, 3], 5) == 1 and percentile([1, 2, 3], 34) == 2
    with pytest.raises(ValueError):
        percentile([], 50)
    lines = percentile_lines([30, 10, 20, 40])
    assert lines[0] == "5 percent are done within 10 ms"
    assert lines[9] == "50 percent are done within 20 ms"
    assert lines[-1] == "100 percent are done within 40 ms"
    assert len(lines) == 20
    assert percentile_lines([]) == ["Missing measurement data"]


def test_benchmark_result_lines() -> None:
    result = BenchmarkResult(2, 3, 1234, wait_for_confirmation=True)
    result.transactions = [Transaction(1.0, 1.01, 1.3), Transaction(2.0, 2.002, None)]
    assert result.latencies_ms() == [300]
    assert result.lines()[:2] == [
        "Finished benchmark with 2 clients and 3 transactions in 1234 ms",
        "5 percent are done within 300 ms",
    ]
    result.wait_for_confirmation = False
    assert result.latencies_ms() == [10, 2]
    assert result.confirmed_count == 1


@pytest.mark.parametrize("wait", [True, False])
def test_benchmark_against_the_stf(
    shielding_key: ShieldingKey,
    registry: tuple[MiniRegistry, WorkerThread],
    tmp_path: Path,
    wait: bool,
) -> None:
    thread = WorkerThread(MiniEnclave(shielding_key)).start()
    try:
        registry[0].add(ENCLAVE.public_key, thread.url)
        funder = ALICE.public_key
        funder_before = state_of(thread, funder)
        args = ["trusted", "benchmark", "3", "4", "0", "2", "//Alice", *(["-w"] if wait else [])]
        result = cli(*with_node(registry, thread), *args, cwd=tmp_path)
        lines = ok_out(result)
        assert lines[:4] == [
            f"Nonce for account {ss58_encode(funder, 42)}: {funder_before[0]}",
            "Initializing account 0",
            "Initializing account 1",
            "Initializing account 2",
        ]
        assert re.fullmatch(
            r"Finished benchmark with 3 clients and 4 transactions in \d+ ms", lines[4]
        ), lines[4]
        assert [line.split(" percent")[0] for line in lines[5:]] == [str(p) for p in PERCENTILES]
        latencies = [int(line.split()[-2]) for line in lines[5:]]
        assert latencies == sorted(latencies)
        assert "15 transactions" not in result.stderr and "12 transactions in" in result.stderr
        assert thread.enclave.methods_seen[-1] == "author_submitAndWatchTrustedOperation"
        # 3 fundings + 12 transfers, each in its own simulated block
        assert len(thread.enclave.blocks) == 15
        store = LocalKeystore.open(tmp_path / TRUSTED_KEYSTORE_PATH / MRENCLAVE_B58)
        clients = store.public_keys()
        assert len(clients) == 3
        funding = funding_amount(4)
        for account in clients:
            assert state_of(thread, account) == (4, funding - 4 * (TRANSFER_AMOUNT + TX_FEE))
        assert state_of(thread, funder) == (
            funder_before[0] + 3,
            funder_before[1] - 3 * (funding + TX_FEE),
        )
    finally:
        thread.stop()


def test_benchmark_failures_are_reported(shielding_key: ShieldingKey, tmp_path: Path) -> None:
    enclave = MiniEnclave(shielding_key)
    thread = WorkerThread(enclave).start()
    try:
        base = ("-p", closed_port(), "-P", str(thread.port), "trusted", "benchmark")
        stderr = refused(cli(*base, "2", "3", "0", "0", "//Pauper", cwd=tmp_path))
        assert (
            f"Error: the funder {ss58_encode(dev_keypair('Pauper').public_key, 42)} has 0 "
            "on the shard, the benchmark needs" in stderr
        )
        # the pool drops the funder's calls: the funding fails
        Runtime(enclave.state).force_set_balance(DROPPER.public_key, 10 * UNIT)
        stderr = refused(cli(*base, "1", "2", "0", "0", "//Dropper", cwd=tmp_path))
        assert re.search(
            r"Error: funding account 0 \(\w+\): trusted call 0x[0-9a-f]{64} is Dropped", stderr
        ), stderr
    finally:
        thread.stop()


def test_a_confirmation_without_executed_calls_is_an_ignored_invocation() -> None:
    executed = ProcessedBlock(MRENCLAVE, b"\x01" * 32, b"\x02" * 32, 7)
    assert require_executed(executed) is executed
    with pytest.raises(ConfirmationError, match="invocation block #7 without executing any"):
        require_executed(ProcessedBlock(MRENCLAVE, b"\x01" * 32, bytes(32), 7))
