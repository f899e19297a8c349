"""The CLI's side of the trusted (enclave) interfaces: the worker's WSS JSON-RPC and indirect calls.

- `TrustedClient`: a synchronous facade over the shared `RpcClient` for the trusted RPC of a
  validateer (fingerprint, shard, shard vault, shielding key, getters, version). Results arrive
  as hex(SCALE(RpcReturnValue)); an `Error` status becomes a `WorkerError` carrying the enclave's
  message. The worker's certificate is self-signed from the enclave key: it is not verified (as the
  original CLI) unless the connection is given a pinned `ssl` context (see pinning below).
- Building operations: `account_info_getter`, `encrypt_operation` (RSA-OAEP of SCALE(top) with the
  enclave's shielding key) and `invoke_request` (the `EnclaveBridge.invoke` argument).
- `wait_for_processed_block`: after an `EnclaveBridge.invoke` is InBlock, scan the following
  parentchain blocks (at most `TIMEOUT_BLOCKS`) for the `EnclaveBridge.ProcessedParentchainBlock`
  event of the shard that names the invocation block. Blocks are read by number, so a confirmation
  that lands before a subscription would have started is not missed. The enclave confirms every
  block with traffic for its shard; `require_executed` tells an ignored invocation (a zero merkle
  root of executed calls) from an executed one.
- Direct invocation (`submit_and_watch`, `WatchedCall`): a signed `direct_call` goes to the
  worker's `author_submitAndWatchExtrinsic` (RSA-encrypted) or, over a pinned connection,
  `author_submitAndWatchTrustedOperation` (plain SCALE, no RSA); the reply is the top hash (the
  subscription id), then status notifications until a final one (`FINAL_STATUSES`), after which
  the worker ends the watch without a word: the client stops reading on a final status.
- Pinning (`pin_enclave`): the worker's certificate is self-signed with the enclave's ed25519
  signing key, which is also the account that registered the enclave in
  `Teerex.SovereignEnclaves`. Its key must be the signer of the entry whose URL is the one the
  CLI connects to; then the connection is made to accept that certificate only
  (`PinnedEnclave.ssl_context`), so whoever answers holds the registered enclave key, and the
  trusted operation may travel without RSA.

Every failure is a `CliError` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
import urllib.parse
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import base58
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from integritee.cli.context import CliError
from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import (
    H256,
    Bytes,
    EnumValue,
    Option,
    ScaleDecodeError,
    text,
    u128,
)
from integritee.crypto import Keypair
from integritee.crypto.shielding import ShieldingError, ShieldingPublicKey
from integritee.parentchain.primitives import AccountInfo, AccountInfoCodec
from integritee.rpc.client import RpcClient, Subscription, rpc_call
from integritee.rpc.errors import RpcConnectionError, RpcError
from integritee.trusted.calls import (
    Getter,
    TrustedOperation,
    sign_getter,
    trusted_operation_hash,
)
from integritee.trusted.rpc import DirectRequestStatus, Request, RpcReturnValue, ShardVault
from integritee.trusted.sidechain import SidechainHeaderCodec

if TYPE_CHECKING:
    from integritee.cli.chain_client import ChainClient
    from integritee.cli.tee_commands import RegisteredEnclave

log = logging.getLogger("integritee.cli")

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
DEFAULT_WATCH_TIMEOUT = 60.0
"""Seconds a direct call may take from submission to its final status."""
TIMEOUT_BLOCKS = 10
"""Blocks after the invocation block within which the enclave must confirm it (as the original)."""
# A stalled node produces no blocks: bound the wait in time too, generously for 6 s blocks.
_WALL_TIMEOUT_PER_BLOCK = 15.0
_POLL_INTERVAL = 0.1
HASH_LEN = 32


class WorkerError(CliError):
    """The worker answered with `DirectRequestStatus::Error`; `reason` is its message."""

    def __init__(self, method: str, reason: str) -> None:
        super().__init__(f"the worker refused {method}: {reason}")
        self.method = method
        self.reason = reason


def b58_hash(value: str, what: str) -> bytes:
    """A 32-byte identifier (MRENCLAVE, shard) from its base58 text."""
    try:
        raw = base58.b58decode(value.strip())
    except ValueError:
        raise CliError(f"{what} {value!r} is not base58") from None
    if len(raw) != HASH_LEN:
        raise CliError(f"{what} {value!r} decodes to {len(raw)} bytes, expected {HASH_LEN}")
    return raw


def to_b58(data: bytes) -> str:
    return base58.b58encode(bytes(data)).decode()


def decode_return_value(method: str, result: Any) -> bytes:
    """The `value` of a hex(SCALE(RpcReturnValue)) result; an Error status raises `WorkerError`."""
    if not isinstance(result, str):
        raise CliError(f"{method}: the worker sent {type(result).__name__}, expected a hex string")
    try:
        rv = RpcReturnValue.decode(from_hex(result))
    except (ValueError, ScaleDecodeError) as e:
        raise CliError(f"{method}: the worker sent an undecodable RpcReturnValue: {e}") from None
    value = bytes(rv["value"])
    status = rv["status"]
    if status.name == "Error":
        try:
            reason = text.decode(value)
        except (ValueError, ScaleDecodeError):
            reason = value.decode("utf-8", errors="replace")
        raise WorkerError(method, reason)
    return value


def parse_version(result: Any) -> str:
    """The result of `system_version`: the original sends an RpcReturnValue holding raw UTF-8
    (not a SCALE string); a bare string is accepted too."""
    if isinstance(result, str) and result.startswith("0x"):
        with contextlib.suppress(CliError):
            value = decode_return_value("system_version", result)
            return value.decode("utf-8", errors="replace")
    if isinstance(result, str):
        return result
    raise CliError(f"system_version: unexpected result {result!r:.100}")


def _decode(method: str, codec: Any, value: bytes) -> Any:
    try:
        return codec.decode(value)
    except (ValueError, ScaleDecodeError) as e:
        raise CliError(f"{method}: cannot decode the worker's value: {e}") from None


def account_info_getter(account: bytes, signer: Keypair) -> EnumValue:
    """`Getter::trusted(account_info(account))` signed by `signer` (a delegate if not `account`)."""
    return EnumValue("trusted", sign_getter(EnumValue("account_info", bytes(account)), signer))


GETTER_METHOD = "state_executeGetter"


def getter_params(shard: bytes, getter: EnumValue) -> list[str]:
    """The params of `state_executeGetter` (the getter is not encrypted, as the original)."""
    return [to_hex(Request.encode({"shard": bytes(shard), "cyphertext": Getter.encode(getter)}))]


def getter_result(value: bytes) -> bytes | None:
    """A getter's answer from the `value` of its RpcReturnValue (SCALE Option<Vec<u8>>)."""
    result = _decode(GETTER_METHOD, Option(Bytes), value)
    return None if result is None else bytes(result)


def account_info_of(raw: bytes | None) -> AccountInfo | None:
    if raw is None:
        return None
    info: AccountInfo = _decode("account_info", AccountInfoCodec, raw)
    return info


async def fetch_account_info(
    client: RpcClient,
    shard: bytes,
    account: bytes,
    signer: Keypair,
    timeout: float = DEFAULT_TIMEOUT,
) -> AccountInfo | None:
    """`TrustedClient.account_info` on an open asynchronous connection."""
    params = getter_params(shard, account_info_getter(account, signer))
    try:
        result = await client.request(GETTER_METHOD, params, timeout=timeout)
    except RpcError as e:
        raise CliError(f"the worker rejected {GETTER_METHOD}: {e.message}") from None
    except TimeoutError:
        raise CliError(f"{GETTER_METHOD}: no reply from the worker within {timeout} s") from None
    return account_info_of(getter_result(decode_return_value(GETTER_METHOD, result)))


def total_issuance_getter() -> EnumValue:
    return EnumValue("public", EnumValue("total_issuance"))


def encrypt_operation(key: ShieldingPublicKey, top: EnumValue) -> bytes:
    """RSA-OAEP ciphertext of SCALE(TrustedOperation), as `EnclaveBridge.invoke` carries it."""
    return key.encrypt(TrustedOperation.encode(top))


def invoke_request(shard: bytes, cyphertext: bytes) -> dict[str, str]:
    """The `request` argument of `EnclaveBridge.invoke` for substrate-interface."""
    return {"shard": to_hex(shard), "cyphertext": to_hex(cyphertext)}


class TrustedClient:
    """A connection to a validateer's trusted RPC (opened on first use; `close` it, or `with`)."""

    def __init__(
        self, url: str, timeout: float = DEFAULT_TIMEOUT, ssl: ssl.SSLContext | bool = False
    ) -> None:
        self.url = url
        self.timeout = timeout
        # False: the self-signed certificate is not checked; a pinned context accepts only it
        self.ssl = ssl
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: RpcClient | None = None

    def __enter__(self) -> TrustedClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(coro)

    def _connection(self) -> RpcClient:
        if self._client is None:
            log.debug("connecting to the worker at %s", self.url)

            async def open_() -> RpcClient:
                return await RpcClient.connect(self.url, ssl=self.ssl, timeout=self.timeout)

            try:
                self._client = self._run(open_())
            except (RpcConnectionError, OSError) as e:
                raise CliError(f"cannot connect to the worker at {self.url}: {e}") from None
            except TimeoutError:
                raise CliError(f"timed out connecting to the worker at {self.url}") from None
        return self._client

    def close(self) -> None:
        if self._loop is None:
            return
        if self._client is not None:
            with contextlib.suppress(Exception):
                self._run(self._client.close())
            self._client = None
        self._loop.close()
        self._loop = None

    # -- raw calls ---------------------------------------------------------------------------

    def request(self, method: str, params: list[Any] | None = None) -> Any:
        """The raw `result` of `method`; transport and JSON-RPC errors become `CliError`s."""
        client = self._connection()
        try:
            return self._run(client.request(method, params or [], timeout=self.timeout))
        except RpcError as e:
            raise CliError(f"the worker at {self.url} rejected {method}: {e.message}") from None
        except (RpcConnectionError, OSError) as e:
            raise CliError(f"connection to the worker at {self.url} failed: {e}") from None
        except TimeoutError:
            raise CliError(f"{method}: no reply from the worker at {self.url}") from None

    def return_value(self, method: str, params: list[Any] | None = None) -> bytes:
        return decode_return_value(method, self.request(method, params))

    # -- typed calls -------------------------------------------------------------------------

    def fingerprint(self) -> bytes:
        """The enclave's MRENCLAVE (`author_getFingerprint`)."""
        method = "author_getFingerprint"
        return bytes(_decode(method, H256, self.return_value(method)))

    def shard(self) -> bytes:
        method = "author_getShard"
        return bytes(_decode(method, H256, self.return_value(method)))

    def shard_vault(self) -> tuple[bytes, str]:
        """The shard vault account and the parentchain it lives on."""
        method = "author_getShardVault"
        account, parentchain = _decode(method, ShardVault, self.return_value(method))
        return bytes(account), parentchain.name

    def shielding_key(self) -> ShieldingPublicKey:
        method = "author_getShieldingKey"
        key_json = _decode(method, text, self.return_value(method))
        try:
            return ShieldingPublicKey.from_json(key_json)
        except ShieldingError as e:
            raise CliError(f"{method}: the worker sent an unusable shielding key: {e}") from None

    def version(self) -> str:
        return parse_version(self.request("system_version"))

    def execute_getter(self, shard: bytes, getter: EnumValue) -> bytes | None:
        """`state_executeGetter`: the SCALE-encoded answer, or None when the value is absent."""
        value = self.return_value(GETTER_METHOD, getter_params(shard, getter))
        return getter_result(value)

    def account_info(self, shard: bytes, account: bytes, signer: Keypair) -> AccountInfo | None:
        """The trusted `account_info` of `account`, signed by `signer`."""
        return account_info_of(self.execute_getter(shard, account_info_getter(account, signer)))

    def total_issuance(self, shard: bytes) -> int:
        raw = self.execute_getter(shard, total_issuance_getter())
        return 0 if raw is None else int(_decode("total_issuance", u128, raw))

    def sidechain_header(self) -> dict[str, Any]:
        """The worker's latest sidechain header (`chain_getHeader`)."""
        method = "chain_getHeader"
        header: dict[str, Any] = _decode(method, SidechainHeaderCodec, self.return_value(method))
        return header

    def submit_and_watch(
        self,
        submitter: DirectSubmitter,
        top: EnumValue,
        on_status: Callable[[bytes, EnumValue], None] | None = None,
        timeout: float = DEFAULT_WATCH_TIMEOUT,
    ) -> EnumValue:
        """Submit a direct call and follow it to its final status (returned); `on_status` sees
        every status as it arrives."""
        client = self._connection()

        async def watch() -> EnumValue:
            call = await submit_and_watch(client, submitter, top, self.timeout)
            return await call.wait_final(on_status, timeout)

        try:
            return self._run(watch())
        except (RpcConnectionError, OSError) as e:
            raise CliError(f"connection to the worker at {self.url} failed: {e}") from None


# ---------------------------------------------------------------------------------------------
# Indirect invocation: waiting for the enclave's confirmation on the parentchain


@dataclass(frozen=True)
class ProcessedBlock:
    """An `EnclaveBridge.ProcessedParentchainBlock` event."""

    shard: bytes
    block_hash: bytes
    trusted_calls_merkle_root: bytes
    block_number: int

    def __str__(self) -> str:
        return (
            f"ProcessedParentchainBlock {{ shard: {to_hex(self.shard)}, block_hash: "
            f"{to_hex(self.block_hash)}, trusted_calls_merkle_root: "
            f"{to_hex(self.trusted_calls_merkle_root)}, block_number: {self.block_number} }}"
        )


def _hash_field(value: Any) -> bytes:
    if isinstance(value, str):
        return from_hex(value, HASH_LEN)
    return bytes(value)


def processed_block_of(attributes: Any) -> ProcessedBlock:
    """The event's fields from substrate-interface's decoding (a dict, or a positional list)."""
    if isinstance(attributes, dict):
        fields = [
            attributes["shard"],
            attributes["block_hash"],
            attributes["trusted_calls_merkle_root"],
            attributes["block_number"],
        ]
    else:
        fields = list(attributes)
    shard, block_hash, root, number = fields
    return ProcessedBlock(
        _hash_field(shard), _hash_field(block_hash), _hash_field(root), int(number)
    )


class ConfirmationError(CliError):
    """The enclave did not confirm the invocation block, or executed nothing from it."""


def require_executed(processed: ProcessedBlock) -> ProcessedBlock:
    """A confirmation whose merkle root of executed calls is the zero hash executed nothing:
    the enclave ignored the invocation (undecryptable, or the operation was rejected)."""
    if processed.trusted_calls_merkle_root == bytes(HASH_LEN):
        raise ConfirmationError(
            f"the enclave confirmed the invocation block #{processed.block_number} without "
            "executing any trusted call from it: the operation was rejected or could not be "
            "decrypted (see the validateer's log)"
        )
    return processed


def wait_for_processed_block(
    chain: ChainClient,
    shard: bytes,
    invocation_block: str,
    timeout_blocks: int = TIMEOUT_BLOCKS,
    on_event: Callable[[ProcessedBlock], None] | None = None,
    poll_interval: float = _POLL_INTERVAL,
) -> ProcessedBlock:
    """Wait until the enclave of `shard` confirms it processed `invocation_block`.

    Scans blocks number+1 .. number+timeout_blocks. A confirmation of a later block first means
    the enclave went past the invocation without executing anything from it (the operation was
    ignored or rejected): that fails at once instead of waiting out the timeout."""
    header = chain.rpc("chain_getHeader", [invocation_block])
    if not isinstance(header, dict) or "number" not in header:
        raise CliError(f"the node does not know the invocation block {invocation_block}")
    number = header["number"]
    invocation_number = int(number, 16) if isinstance(number, str) else int(number)
    expected = from_hex(invocation_block, HASH_LEN)
    deadline = time.monotonic() + _WALL_TIMEOUT_PER_BLOCK * timeout_blocks
    next_number = invocation_number + 1
    while next_number <= invocation_number + timeout_blocks:
        block_hash = chain.rpc("chain_getBlockHash", [next_number])
        if block_hash is None:
            if time.monotonic() > deadline:
                break
            time.sleep(poll_interval)
            continue
        for event in chain.events(block_hash):
            if event.qualified_name != "EnclaveBridge.ProcessedParentchainBlock":
                continue
            try:
                processed = processed_block_of(event.attributes)
            except (KeyError, TypeError, ValueError) as e:
                log.warning("undecodable ProcessedParentchainBlock event: %s", e)
                continue
            if processed.shard != bytes(shard):
                continue
            if on_event is not None:
                on_event(processed)
            if processed.block_hash == expected:
                return processed
            if processed.block_number > invocation_number:
                raise ConfirmationError(
                    f"the enclave confirmed parentchain block #{processed.block_number} without "
                    f"confirming the invocation block #{invocation_number} {invocation_block}: "
                    "the trusted operation was not executed (rejected or undecryptable; "
                    "see the validateer's log)"
                )
            if processed.block_number == invocation_number:
                raise ConfirmationError(
                    f"the enclave confirmed another block #{invocation_number} "
                    f"({to_hex(processed.block_hash)}) than the invocation block "
                    f"{invocation_block}: the parentchain forked"
                )
        next_number += 1
    raise ConfirmationError(
        f"confirmation timed out: the enclave did not confirm the invocation block "
        f"#{invocation_number} {invocation_block} within {timeout_blocks} blocks"
    )


# ---------------------------------------------------------------------------------------------
# Direct invocation: submit a trusted call to the worker and follow its status

WATCH_ENCRYPTED = "author_submitAndWatchExtrinsic"
WATCH_PLAIN = "author_submitAndWatchTrustedOperation"
_UNWATCH = {
    WATCH_ENCRYPTED: "author_unwatchExtrinsic",
    WATCH_PLAIN: "author_unwatchTrustedOperation",
}
FINAL_STATUSES = frozenset(
    {"InSidechainBlock", "Finalized", "Invalid", "Usurped", "Dropped", "FinalityTimeout"}
)
"""After these the worker ends the watch (FinalityTimeout is final in Substrate's sense too)."""
FAILED_STATUSES = frozenset({"Invalid", "Usurped", "Dropped", "FinalityTimeout"})
"""Final statuses of a call that was not executed."""

_FAILURE_REASONS = {
    "Invalid": "the worker found it invalid (wrong nonce or signature, or unaffordable fee; "
    "see the validateer's log)",
    "Dropped": "the worker's pool dropped it (full, or its future queue overflowed)",
    "Usurped": "another call of the same account with the same nonce replaced it",
    "FinalityTimeout": "it did not become final in time",
}


def format_status(status: EnumValue) -> str:
    """A status as the original prints it (Rust's Debug): `Ready`, `InSidechainBlock(0x..)`."""
    if status.name == "InSidechainBlock":
        return f"InSidechainBlock({to_hex(bytes(status.value))})"
    return str(status.name)


def status_line(top_hash: bytes, status: EnumValue) -> str:
    return f"Trusted call {to_hex(top_hash)} is {format_status(status)}"


class DirectCallFailed(CliError):
    """A direct call ended in a final status other than inclusion."""

    def __init__(self, top_hash: bytes, status: EnumValue) -> None:
        reason = _FAILURE_REASONS.get(status.name, "it was not executed")
        super().__init__(f"trusted call {to_hex(top_hash)} is {format_status(status)}: {reason}")
        self.top_hash = top_hash
        self.status = status


def decode_status_update(result: Any) -> EnumValue:
    """The `TrustedOperationStatus` in a watch notification's hex(SCALE(DirectRequestStatus))."""
    if not isinstance(result, str):
        raise CliError(f"the worker sent a status update that is not a hex string: {result!r:.100}")
    try:
        status = DirectRequestStatus.decode(from_hex(result))
    except (ValueError, ScaleDecodeError) as e:
        raise CliError(
            f"the worker sent an undecodable status update {result!r:.100}: {e}"
        ) from None
    if status.name != "TrustedOperationStatus":
        raise CliError(f"the worker ended the watch with DirectRequestStatus::{status.name}")
    inner: EnumValue = status.value
    return inner


@dataclass(frozen=True)
class DirectSubmitter:
    """How direct calls reach a shard: RSA-encrypted with the enclave's shielding key, or, with
    no key (over a pinned connection only), as the plain SCALE of the operation."""

    shard: bytes
    shielding_key: ShieldingPublicKey | None = None

    @property
    def method(self) -> str:
        return WATCH_PLAIN if self.shielding_key is None else WATCH_ENCRYPTED

    def params(self, top: EnumValue) -> list[str]:
        payload = TrustedOperation.encode(top)
        if self.shielding_key is not None:
            payload = self.shielding_key.encrypt(payload)
        return [to_hex(Request.encode({"shard": bytes(self.shard), "cyphertext": payload}))]


@dataclass
class WatchedCall:
    """A submitted direct call: its top hash and the worker's status updates for it."""

    top_hash: bytes
    subscription: Subscription
    started: float
    """`time.monotonic()` before the submission was sent."""
    statuses: list[tuple[float, EnumValue]] = field(default_factory=list)
    """Every status received with the `time.monotonic()` it arrived at."""

    @property
    def final(self) -> EnumValue | None:
        if self.statuses and self.statuses[-1][1].name in FINAL_STATUSES:
            return self.statuses[-1][1]
        return None

    def time_of(self, name: str) -> float | None:
        """When the first status called `name` arrived."""
        return next((t for t, s in self.statuses if s.name == name), None)

    async def next_status(self, timeout: float | None) -> EnumValue:
        """The next status; a `CliError` if the watch ended or the connection was lost first."""
        if self.final is not None:
            raise CliError(f"trusted call {to_hex(self.top_hash)} already has a final status")
        try:
            result = await self.subscription.next(timeout)
        except StopAsyncIteration:
            raise CliError(
                f"the worker ended the watch of {to_hex(self.top_hash)} before a final status"
            ) from None
        except TimeoutError:
            raise CliError(
                f"no status update for trusted call {to_hex(self.top_hash)} within {timeout} s"
            ) from None
        except RpcConnectionError as e:
            raise CliError(
                f"the connection was lost while watching {to_hex(self.top_hash)}: {e}"
            ) from None
        status = decode_status_update(result)
        self.statuses.append((time.monotonic(), status))
        return status

    async def wait_for(
        self,
        accept: Callable[[EnumValue], bool],
        on_status: Callable[[bytes, EnumValue], None] | None = None,
        timeout: float = DEFAULT_WATCH_TIMEOUT,
    ) -> EnumValue:
        """Read statuses until one is accepted or final (returned either way)."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise CliError(
                    f"trusted call {to_hex(self.top_hash)} got no final status within {timeout} s"
                )
            status = await self.next_status(remaining)
            if on_status is not None:
                on_status(self.top_hash, status)
            if accept(status) or status.name in FINAL_STATUSES:
                return status

    async def wait_final(
        self,
        on_status: Callable[[bytes, EnumValue], None] | None = None,
        timeout: float = DEFAULT_WATCH_TIMEOUT,
    ) -> EnumValue:
        return await self.wait_for(lambda s: False, on_status, timeout)


async def submit_and_watch(
    client: RpcClient, submitter: DirectSubmitter, top: EnumValue, timeout: float = DEFAULT_TIMEOUT
) -> WatchedCall:
    """Send a direct call; the worker must answer with the operation's own hash."""
    if top.name != "direct_call":
        raise CliError(f"only direct calls can be watched, not {top.name}")
    expected = trusted_operation_hash(top)
    params = submitter.params(top)
    method = submitter.method
    started = time.monotonic()
    try:
        subscription = await client.subscribe(method, params, _UNWATCH[method], timeout)
    except RpcError as e:
        raise CliError(f"the worker rejected the trusted call: {e.message}") from None
    except TimeoutError:
        raise CliError(f"{method}: no reply from the worker within {timeout} s") from None
    sub_id = subscription.id
    try:
        top_hash = from_hex(sub_id, HASH_LEN) if isinstance(sub_id, str) else None
    except ValueError:
        top_hash = None
    if top_hash != expected:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe(timeout=5)
        raise CliError(
            f"{method}: the worker answered {sub_id!r:.80} instead of the call's hash "
            f"{to_hex(expected)}"
        )
    return WatchedCall(expected, subscription, started)


# ---------------------------------------------------------------------------------------------
# Pinning the worker's TLS key to the enclave registry

_PIN_TIMEOUT = 10.0


class PinError(CliError):
    """The worker's certificate could not be tied to a registered enclave."""


def certificate_ed25519_key(der: bytes) -> bytes:
    """The raw ed25519 public key of a DER certificate."""
    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError as e:
        raise PinError(f"the worker's TLS certificate is malformed: {e}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise PinError(
            f"the worker's TLS certificate has a {type(key).__name__} key, not the enclave's "
            "ed25519 key"
        )
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _host_port(url: str) -> tuple[str, str, int]:
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise PinError(f"invalid URL {url!r:.100}: {e}") from None
    scheme = parts.scheme.lower()
    if parts.hostname is None:
        raise PinError(f"URL {url!r:.100} names no host")
    default_port = {"wss": 443, "https": 443, "ws": 80, "http": 80}.get(scheme)
    if port is None and default_port is None:
        raise PinError(f"URL {url!r:.100} has no port")
    return scheme, parts.hostname.lower(), port if port is not None else int(default_port or 0)


def same_endpoint(a: str, b: str) -> bool:
    """Two URLs name the same endpoint (scheme, host and port; case and a trailing slash aside)."""
    try:
        return _host_port(a) == _host_port(b)
    except PinError:
        return False


def fetch_certificate(url: str, timeout: float = _PIN_TIMEOUT) -> bytes:
    """The DER certificate the TLS server at `url` presents (not verified here)."""
    _scheme, host, port = _host_port(url)
    try:
        pem = ssl.get_server_certificate((host, port), timeout=timeout)
    except (OSError, ssl.SSLError) as e:
        raise PinError(f"cannot read the TLS certificate of {url}: {e}") from None
    return ssl.PEM_cert_to_DER_cert(pem)


@dataclass(frozen=True)
class PinnedEnclave:
    """A worker certificate whose key is a registered enclave's signer, for that enclave's URL."""

    url: str
    certificate: bytes
    """DER, exactly as the worker presented it."""
    public_key: bytes
    mrenclave: bytes

    def ssl_context(self) -> ssl.SSLContext:
        """A client context that accepts this certificate and nothing else: the handshake proves
        the peer holds the enclave key (the certificate is the only trust anchor; its host name
        is not checked, the registry's URL was)."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.check_hostname = False
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cadata=self.certificate)
        return context


def registered_enclave_for(
    enclaves: list[RegisteredEnclave], public_key: bytes, url: str
) -> RegisteredEnclave:
    """The registry entry of the enclave `public_key` serving at `url`; a `PinError` says why
    there is none."""
    mine = [e for e in enclaves if e.signer == public_key]
    if not mine:
        raise PinError(
            f"the worker's TLS key 0x{public_key.hex()} is not a registered enclave "
            f"({len(enclaves)} registered)"
        )
    for entry in mine:
        registered = entry.url
        if registered is not None and same_endpoint(registered.decode("utf-8", "replace"), url):
            return entry
    urls = ", ".join(
        repr(e.url.decode("utf-8", "replace")) if e.url is not None else "none" for e in mine
    )
    raise PinError(f"enclave 0x{public_key.hex()} is registered for {urls}, not for {url}")


class _NodeRpc:
    """Plain HTTP JSON-RPC to the node: what reading the registry needs, without the metadata a
    `ChainClient` loads."""

    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout

    def rpc(self, method: str, params: list[Any] | None = None, what: str = "request") -> Any:
        return rpc_call(self.url, method, params, self.timeout)


def pin_enclave(
    node_url: str, worker_url: str, mrenclave: bytes | None = None, timeout: float = _PIN_TIMEOUT
) -> PinnedEnclave:
    """Tie the worker's certificate to the enclave registry (see the module docstring); with
    `mrenclave`, the registered enclave must also run that code."""
    from integritee.cli.tee_commands import sovereign_enclaves

    der = fetch_certificate(worker_url, timeout)
    public_key = certificate_ed25519_key(der)
    try:
        # sovereign_enclaves only calls `rpc` of its chain argument
        enclaves = sovereign_enclaves(_NodeRpc(node_url, timeout))  # type: ignore[arg-type]
    except (RpcError, RpcConnectionError, TimeoutError, OSError) as e:
        raise PinError(
            f"cannot read the enclave registry from the node at {node_url}: {e}"
        ) from None
    entry = registered_enclave_for(enclaves, public_key, worker_url)
    if mrenclave is not None and entry.mrenclave != bytes(mrenclave):
        raise PinError(
            f"the enclave registered for {worker_url} runs MRENCLAVE {to_b58(entry.mrenclave)}, "
            f"not {to_b58(mrenclave)}"
        )
    return PinnedEnclave(worker_url, der, public_key, entry.mrenclave)


def format_sidechain_header(header: dict[str, Any]) -> str:
    """A sidechain header as the original prints it (Rust's Debug of `SidechainHeader`)."""
    return (
        f"SidechainHeader {{ parent_hash: {to_hex(header['parent_hash'])}, "
        f"block_number: {header['block_number']}, shard_id: {to_hex(header['shard_id'])}, "
        f"block_data_hash: {to_hex(header['block_data_hash'])}, "
        f"next_finalization_block_number: {header['next_finalization_block_number']} }}"
    )
