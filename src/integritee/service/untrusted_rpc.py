"""The validateer's untrusted JSON-RPC (WS, port 2001): peers fetch sidechain blocks here.

Owns `sidechain_fetchBlocksFromPeer` on the serving side (`UntrustedRpc`), the client call a
validateer makes to a peer (`fetch_blocks_from_peer`), and the JSON form of a `SignedBlock` on
that wire.

Wire format (the original's, jsonrpsee + serde):
- params: `[[from_block_hash, until_block_hash | null, shard]]`, 32-byte values in hex; the
  older two-element form `[[from_block_hash, shard]]` is accepted as "no upper bound".
- result: the blocks ]from, until[ of the shard, oldest first, each a serde-JSON `SignedBlock`:
  `{"block": {"header": {"parent_hash": "0x..", "block_number": n, "shard_id": "0x..",
  "block_data_hash": "0x..", "next_finalization_block_number": n}, "block_data": {"timestamp": ms,
  "layer_one_head": "0x..", "block_author": "<ss58>", "signed_top_hashes": ["0x.."],
  "encrypted_state_diff": [bytes as numbers]}}, "signature": {"Ed25519": "<hex, no 0x>"}}`
  (H256 as 0x-hex, ed25519 public keys as SS58 with prefix 42, sp_core signatures as bare hex,
  MultiSignature externally tagged).
- The zero `from` hash returns every stored block; an unknown `from` hash returns `[]`; an
  unknown `until` hash means no upper bound.

Unlike the original, one reply is bounded (block count and size, `UntrustedRpc` arguments); the
client asks again from the last block it received until a reply is empty, which also works
against a server that sends everything at once.
"""

from __future__ import annotations

import asyncio
import logging
import ssl as ssl_module
from collections.abc import Mapping
from typing import Any

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import EnumValue, ScaleDecodeError, ScaleEncodeError
from integritee.crypto.ss58 import ss58_decode_with_prefix, ss58_encode
from integritee.rpc.client import RpcClient
from integritee.rpc.errors import INVALID_PARAMS, RpcError
from integritee.rpc.server import RpcServer
from integritee.service.sidechain_db import (
    DEFAULT_FETCH_LIMIT,
    ZERO_HASH,
    SidechainDb,
    SidechainDbError,
    stored_block_hash,
    stored_block_header,
)
from integritee.trusted.sidechain import SignedBlockCodec

log = logging.getLogger("integritee.service.untrusted_rpc")

METHOD_FETCH_BLOCKS = "sidechain_fetchBlocksFromPeer"
# jsonrpsee's CallError::Failed code: the call was well-formed but could not be executed.
CALL_EXECUTION_FAILED = -32000

MiB = 1024 * 1024
DEFAULT_MAX_RESULT_BYTES = 8 * MiB  # below RpcServer's default 15 MiB response limit
DEFAULT_CLIENT_MAX_BLOCKS = 100_000
SS58_PREFIX = 42  # sp_core's default, used by the original's serde form of ed25519 keys

_SIGNATURE_LENGTHS = {"Ed25519": 64, "Sr25519": 64, "Ecdsa": 65}
_U64_MAX = (1 << 64) - 1


class BlockJsonError(ValueError):
    """A JSON SignedBlock does not have the original's serde shape."""


class PeerFetchError(Exception):
    """A peer's reply to sidechain_fetchBlocksFromPeer is malformed or inconsistent."""


# -- the serde-JSON form of SignedBlock ---------------------------------------------------------


def signed_block_to_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """The serde-JSON form of a decoded SignedBlock (as `SignedBlockCodec` produces)."""
    header = value["block"]["header"]
    data = value["block"]["block_data"]
    signature = value["signature"]
    name, sig = (signature.name, signature.value) if isinstance(signature, EnumValue) else signature
    return {
        "block": {
            "header": {
                "parent_hash": to_hex(header["parent_hash"]),
                "block_number": int(header["block_number"]),
                "shard_id": to_hex(header["shard_id"]),
                "block_data_hash": to_hex(header["block_data_hash"]),
                "next_finalization_block_number": int(header["next_finalization_block_number"]),
            },
            "block_data": {
                "timestamp": int(data["timestamp"]),
                "layer_one_head": to_hex(data["layer_one_head"]),
                "block_author": ss58_encode(bytes(data["block_author"]), SS58_PREFIX),
                "signed_top_hashes": [to_hex(h) for h in data["signed_top_hashes"]],
                "encrypted_state_diff": list(bytes(data["encrypted_state_diff"])),
            },
        },
        "signature": {str(name): bytes(sig).hex()},
    }


def encoded_block_to_json(encoded: bytes) -> dict[str, Any]:
    """The serde-JSON form of a SCALE(SignedBlock)."""
    value = SignedBlockCodec.decode(encoded)
    assert isinstance(value, dict)
    return signed_block_to_json(value)


def _member(obj: Any, key: str, path: str) -> Any:
    if not isinstance(obj, dict):
        raise BlockJsonError(f"{path} must be an object, got {type(obj).__name__}")
    if key not in obj:
        raise BlockJsonError(f"{path}.{key} is missing")
    return obj[key]


def _u64(value: Any, path: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64_MAX:
        raise BlockJsonError(f"{path} must be a u64, got {value!r:.40}")
    return value


def _h256(value: Any, path: str) -> bytes:
    try:
        return from_hex(value, 32)
    except ValueError as exc:
        raise BlockJsonError(f"{path}: {exc}") from None


def _public(value: Any, path: str) -> bytes:
    if isinstance(value, str) and value[:2] in ("0x", "0X"):
        return _h256(value, path)
    try:
        public, _prefix = ss58_decode_with_prefix(value)
    except ValueError as exc:
        raise BlockJsonError(f"{path}: {exc}") from None
    return public


def _byte_list(value: Any, path: str) -> bytes:
    if not isinstance(value, list):
        raise BlockJsonError(f"{path} must be an array of bytes, got {type(value).__name__}")
    if any(type(b) is not int for b in value):
        raise BlockJsonError(f"{path} must hold integers 0..255 only")
    try:
        return bytes(value)
    except ValueError:
        raise BlockJsonError(f"{path} must hold integers 0..255 only") from None


def signed_block_from_json(obj: Any) -> dict[str, Any]:
    """Parse the serde-JSON form into a SignedBlock value; `BlockJsonError` says what is wrong.

    Unknown members are ignored, as serde does by default.
    """
    block = _member(obj, "block", "block")
    header = _member(block, "header", "block")
    data = _member(block, "block_data", "block")
    hp, dp = "block.header", "block.block_data"
    hashes = _member(data, "signed_top_hashes", dp)
    if not isinstance(hashes, list):
        raise BlockJsonError(f"{dp}.signed_top_hashes must be an array")
    signature = _member(obj, "signature", "signed block")
    if not isinstance(signature, dict) or len(signature) != 1:
        raise BlockJsonError('signature must be an object with one member, e.g. {"Ed25519": ".."}')
    ((name, sig_hex),) = signature.items()
    if name not in _SIGNATURE_LENGTHS:
        raise BlockJsonError(f"unknown signature kind {name!r:.40}")
    try:
        sig = from_hex(sig_hex, _SIGNATURE_LENGTHS[name])
    except ValueError as exc:
        raise BlockJsonError(f"signature.{name}: {exc}") from None
    return {
        "block": {
            "header": {
                "parent_hash": _h256(_member(header, "parent_hash", hp), f"{hp}.parent_hash"),
                "block_number": _u64(_member(header, "block_number", hp), f"{hp}.block_number"),
                "shard_id": _h256(_member(header, "shard_id", hp), f"{hp}.shard_id"),
                "block_data_hash": _h256(
                    _member(header, "block_data_hash", hp), f"{hp}.block_data_hash"
                ),
                "next_finalization_block_number": _u64(
                    _member(header, "next_finalization_block_number", hp),
                    f"{hp}.next_finalization_block_number",
                ),
            },
            "block_data": {
                "timestamp": _u64(_member(data, "timestamp", dp), f"{dp}.timestamp"),
                "layer_one_head": _h256(
                    _member(data, "layer_one_head", dp), f"{dp}.layer_one_head"
                ),
                "block_author": _public(_member(data, "block_author", dp), f"{dp}.block_author"),
                "signed_top_hashes": [
                    _h256(h, f"{dp}.signed_top_hashes[{i}]") for i, h in enumerate(hashes)
                ],
                "encrypted_state_diff": _byte_list(
                    _member(data, "encrypted_state_diff", dp), f"{dp}.encrypted_state_diff"
                ),
            },
        },
        "signature": EnumValue(name, sig),
    }


def json_to_encoded_block(obj: Any) -> bytes:
    """SCALE(SignedBlock) of the serde-JSON form."""
    try:
        return SignedBlockCodec.encode(signed_block_from_json(obj))
    except ScaleEncodeError as exc:
        raise BlockJsonError(str(exc)) from None


def _json_size_bound(value: Mapping[str, Any]) -> int:
    # Upper bound of the compact JSON text without serializing it twice: each diff byte takes at
    # most 4 characters ("255,"), each top hash 69 ("0x" + 64 digits, quotes, comma); the fixed
    # members take well under 1 KiB.
    data = value["block"]["block_data"]
    return 4 * len(data["encrypted_state_diff"]) + 69 * len(data["signed_top_hashes"]) + 1024


# -- server ------------------------------------------------------------------------------------


def parse_fetch_params(params: Any) -> tuple[bytes, bytes | None, bytes]:
    """(from_hash, until_hash or None, shard) from `[[from, until|null, shard]]`.

    Raises `RpcError(INVALID_PARAMS)` with the precise reason.
    """

    def bad(reason: str) -> RpcError:
        return RpcError(INVALID_PARAMS, f"{METHOD_FETCH_BLOCKS}: {reason}")

    if not isinstance(params, list) or len(params) != 1:
        raise bad("params must be [[from_block_hash, until_block_hash|null, shard]]")
    inner = params[0]
    if not isinstance(inner, list) or len(inner) not in (2, 3):
        raise bad("the single param must be [from_block_hash, until_block_hash|null, shard]")
    if len(inner) == 2:
        from_value, until_value, shard_value = inner[0], None, inner[1]
    else:
        from_value, until_value, shard_value = inner

    def h256(value: Any, what: str) -> bytes:
        try:
            return from_hex(value, 32)
        except ValueError as exc:
            raise bad(f"{what}: {exc}") from None

    return (
        h256(from_value, "from_block_hash"),
        None if until_value is None else h256(until_value, "until_block_hash"),
        h256(shard_value, "shard"),
    )


class UntrustedRpc:
    """`sidechain_fetchBlocksFromPeer` served from a `SidechainDb`.

    One reply holds at most `max_blocks` blocks and about `max_result_bytes` of JSON (always at
    least one block); callers page by asking again from the last block received.
    """

    def __init__(
        self,
        db: SidechainDb,
        *,
        max_blocks: int = DEFAULT_FETCH_LIMIT,
        max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES,
    ) -> None:
        if max_blocks < 1:
            raise ValueError("max_blocks must be at least 1")
        self.db = db
        self.max_blocks = max_blocks
        self.max_result_bytes = max_result_bytes

    def register(self, server: RpcServer) -> None:
        """Add the method to `server` (`rpc_methods` is built into every RpcServer)."""
        server.add_method(METHOD_FETCH_BLOCKS, self.handle_fetch_blocks)

    async def handle_fetch_blocks(self, params: Any) -> list[dict[str, Any]]:
        from_hash, until_hash, shard = parse_fetch_params(params)
        log.debug(
            "fetch blocks from peer: from 0x%s until %s, shard 0x%s",
            from_hash.hex(),
            "-" if until_hash is None else "0x" + until_hash.hex(),
            shard.hex(),
        )
        try:
            # Reading and converting up to max_blocks blocks stays off the event loop.
            return await asyncio.to_thread(self.fetch_json, from_hash, until_hash, shard)
        except SidechainDbError as exc:
            log.error("fetch blocks from peer failed: %s", exc)
            raise RpcError(CALL_EXECUTION_FAILED, f"sidechain storage error: {exc}") from None

    def fetch_json(
        self, from_hash: bytes, until_hash: bytes | None, shard: bytes
    ) -> list[dict[str, Any]]:
        """The reply: serde-JSON blocks ]from, until[, oldest first, within the bounds."""
        out: list[dict[str, Any]] = []
        size = 2
        for encoded in self.db.iter_blocks_after(
            shard, from_hash, until_hash, limit=self.max_blocks
        ):
            try:
                value = SignedBlockCodec.decode(encoded)
            except ScaleDecodeError as exc:
                raise SidechainDbError(
                    f"stored block 0x{stored_block_hash(encoded).hex()} is corrupt: {exc}"
                ) from exc
            size += _json_size_bound(value)
            if out and size > self.max_result_bytes:
                break
            out.append(signed_block_to_json(value))
        return out


# -- client ------------------------------------------------------------------------------------


async def fetch_blocks_from_peer(
    untrusted_url: str,
    from_hash: bytes,
    until_hash: bytes | None,
    shard: bytes,
    *,
    timeout: float = 30.0,
    max_blocks: int = DEFAULT_CLIENT_MAX_BLOCKS,
    ssl: ssl_module.SSLContext | bool | None = None,
) -> list[bytes]:
    """Fetch the blocks ]from, until[ of `shard` from a peer's untrusted RPC, oldest first.

    Returns SCALE(SignedBlock)s (what the enclave imports). Pages until the peer has nothing
    more (at most `max_blocks` blocks). The reply's blocks must form one chain following
    `from_hash` (any start when `from_hash` is zero) in `shard`; otherwise `PeerFetchError`.
    The blocks' signatures and contents are for the enclave to verify. Connection problems
    raise `RpcConnectionError`/`TimeoutError`, error replies `RpcError`.
    """
    for what, value in (("from_hash", from_hash), ("shard", shard)):
        if len(value) != 32:
            raise ValueError(f"{what} must be 32 bytes")
    if until_hash is not None and len(until_hash) != 32:
        raise ValueError("until_hash must be 32 bytes")
    async with RpcClient.connect(untrusted_url, ssl, timeout=timeout) as client:
        return await fetch_blocks_with_client(
            client, from_hash, until_hash, shard, timeout=timeout, max_blocks=max_blocks
        )


async def fetch_blocks_with_client(
    client: RpcClient,
    from_hash: bytes,
    until_hash: bytes | None,
    shard: bytes,
    *,
    timeout: float = 30.0,
    max_blocks: int = DEFAULT_CLIENT_MAX_BLOCKS,
) -> list[bytes]:
    """`fetch_blocks_from_peer` over an open connection."""
    out: list[bytes] = []
    cursor = bytes(from_hash)
    last_number: int | None = None
    until_param = None if until_hash is None else to_hex(until_hash)
    while len(out) < max_blocks:
        reply = await client.request(
            METHOD_FETCH_BLOCKS, [[to_hex(cursor), until_param, to_hex(shard)]], timeout=timeout
        )
        if not isinstance(reply, list):
            raise PeerFetchError(f"the reply is a {type(reply).__name__}, not an array of blocks")
        if not reply:
            break
        for position, obj in enumerate(reply):
            try:
                encoded = json_to_encoded_block(obj)
            except BlockJsonError as exc:
                raise PeerFetchError(f"block {position} of the reply: {exc}") from None
            header = stored_block_header(encoded)
            number, parent = int(header["block_number"]), bytes(header["parent_hash"])
            if bytes(header["shard_id"]) != shard:
                raise PeerFetchError(f"block #{number} belongs to another shard")
            if until_hash is not None and stored_block_hash(encoded) == until_hash:
                raise PeerFetchError("the reply includes the until block")
            if cursor != ZERO_HASH and parent != cursor:
                raise PeerFetchError(
                    f"block #{number} has the parent 0x{parent.hex()}, expected 0x{cursor.hex()}"
                )
            if last_number is not None and number != last_number + 1:
                raise PeerFetchError(f"block #{number} does not follow #{last_number}")
            out.append(encoded)
            cursor, last_number = stored_block_hash(encoded), number
            if len(out) >= max_blocks:
                break
    return out
