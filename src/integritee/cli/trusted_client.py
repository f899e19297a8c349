"""The CLI's side of the trusted (enclave) interfaces: the worker's WSS JSON-RPC and indirect calls.

- `TrustedClient`: a synchronous facade over the shared `RpcClient` for the trusted RPC of a
  validateer (fingerprint, shard, shard vault, shielding key, getters, version). Results arrive
  as hex(SCALE(RpcReturnValue)); an `Error` status becomes a `WorkerError` carrying the enclave's
  message. The worker's certificate is self-signed from the enclave key, so it is not verified
  (as the original CLI; pinning it is future work).
- Building operations: `account_info_getter`, `encrypt_operation` (RSA-OAEP of SCALE(top) with the
  enclave's shielding key) and `invoke_request` (the `EnclaveBridge.invoke` argument).
- `wait_for_processed_block`: after an `EnclaveBridge.invoke` is InBlock, scan the following
  parentchain blocks (at most `TIMEOUT_BLOCKS`) for the `EnclaveBridge.ProcessedParentchainBlock`
  event of the shard that names the invocation block. Blocks are read by number, so a confirmation
  that lands before a subscription would have started is not missed.

Every failure is a `CliError` with a one-line reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import base58

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
from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcConnectionError, RpcError
from integritee.trusted.calls import Getter, TrustedOperation, sign_getter
from integritee.trusted.rpc import Request, RpcReturnValue, ShardVault

if TYPE_CHECKING:
    from integritee.cli.chain_client import ChainClient

log = logging.getLogger("integritee.cli")

T = TypeVar("T")

DEFAULT_TIMEOUT = 30.0
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

    def __init__(self, url: str, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.url = url
        self.timeout = timeout
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
                # self-signed enclave certificate: not verified (see the module docstring)
                return await RpcClient.connect(self.url, ssl=False, timeout=self.timeout)

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
        method = "state_executeGetter"
        request = Request.encode({"shard": bytes(shard), "cyphertext": Getter.encode(getter)})
        value = self.return_value(method, [to_hex(request)])
        result = _decode(method, Option(Bytes), value)
        return None if result is None else bytes(result)

    def account_info(self, shard: bytes, account: bytes, signer: Keypair) -> AccountInfo | None:
        """The trusted `account_info` of `account`, signed by `signer`."""
        raw = self.execute_getter(shard, account_info_getter(account, signer))
        if raw is None:
            return None
        info: AccountInfo = _decode("account_info", AccountInfoCodec, raw)
        return info

    def total_issuance(self, shard: bytes) -> int:
        raw = self.execute_getter(shard, total_issuance_getter())
        return 0 if raw is None else int(_decode("total_issuance", u128, raw))


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
    """The enclave did not confirm the invocation block."""


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
