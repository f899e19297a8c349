"""The enclave's direct-invocation JSON-RPC (trusted WSS, port 2000): the original's methods and encodings.

Results are hex(SCALE(RpcReturnValue)) as `integritee.trusted.rpc` declares them. Bad input
never raises out of a handler: it becomes an Error return value,
as the original does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import os
from typing import TYPE_CHECKING, Any

import base58

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import H256, Bytes, EnumValue, Option, ScaleDecodeError, Vec, text
from integritee.crypto.hashing import blake2_256
from integritee.crypto.shielding import ShieldingError
from integritee.rpc.errors import INVALID_PARAMS, RpcError
from integritee.rpc.server import RpcServer
from integritee.trusted.calls import TrustedCallSigned
from integritee.trusted.rpc import (
    DirectRequestStatus,
    RpcReturnValue,
    ShardVault,
    decode_request,
    error,
    ok,
)
from integritee.trusted.sidechain import SidechainHeaderCodec, SignedBlocks

from .sidechain import BlockImportError
from .top_pool import PoolError

if TYPE_CHECKING:
    from .app import Enclave

log = logging.getLogger("integritee.enclave.rpc")

VERSION = "0.16.0-python"
POOL_ERROR = -32020
BLOCK_REJECTED = -32021
# after these the watch of an operation ends (as the original)
FINAL_STATUSES = {"InSidechainBlock", "Finalized", "Invalid", "Usurped", "Dropped"}


class TrustedRpc:
    def __init__(self, enclave: Enclave) -> None:
        self.enclave = enclave

    def register(self, server: RpcServer) -> None:
        m = server.add_method
        m(
            "author_getShieldingKey",
            lambda p: ok(text.encode(self.enclave.keys.shielding.public_key_json())),
        )
        m("author_getFingerprint", lambda p: ok(H256.encode(self.enclave.mrenclave)))
        m("author_getShard", lambda p: ok(H256.encode(self.enclave.shard)))
        m(
            "author_getMuRaUrl",
            lambda p: ok(text.encode(self.enclave.urls.mu_ra if self.enclave.urls else "")),
        )
        m(
            "author_getUntrustedUrl",
            lambda p: ok(text.encode(self.enclave.urls.untrusted if self.enclave.urls else "")),
        )
        m("author_getShardVault", self.get_shard_vault)
        m("state_executeGetter", self.execute_getter)
        m("author_submitExtrinsic", self.submit_extrinsic)
        m("author_pendingExtrinsics", self.pending_extrinsics)
        m("chain_getHeader", self.get_header)
        m("sidechain_importBlock", self.import_block)
        for method in ("author_submitAndWatchExtrinsic", "author_submitAndWatchTrustedOperation"):
            server.add_subscription(
                method,
                "author_unwatchExtrinsic"
                if method == "author_submitAndWatchExtrinsic"
                else "author_unwatchTrustedOperation",
                "author_submitAndWatchExtrinsic",
                self._watch_handler(encrypted=method == "author_submitAndWatchExtrinsic"),
                notification_extra={"error": None},
            )
        m("system_version", lambda p: ok(f"enclave-runtime: {VERSION}".encode()))
        m("system_name", lambda p: "integritee-enclave")
        m("system_health", lambda p: ok(text.encode("healthy")))

    def get_shard_vault(self, params: Any) -> str:
        vault = self.enclave.shard_vault()
        if vault is None:
            return error("shard vault not initialised")
        return ok(ShardVault.encode((vault, EnumValue("Integritee"))))

    def execute_getter(self, params: Any) -> str:
        try:
            request = decode_request(params)
        except (ValueError, ScaleDecodeError) as e:
            return error(f"invalid request: {e}")
        try:
            result = self.enclave.execute_getter(request["shard"], request["cyphertext"])
        except ValueError as e:
            log.info("getter refused: %s", e)
            return error(str(e))
        return ok(Option(Bytes).encode(result))

    # --- direct invocation
    async def _operation(
        self, params: Any, encrypted: bool
    ) -> tuple[bytes, TrustedCallSigned, int]:
        """(top hash, signed call, encoded length) of a submitted operation; RpcError when refused."""
        try:
            request = decode_request(params)
        except (ValueError, ScaleDecodeError) as e:
            raise RpcError(INVALID_PARAMS, f"invalid request: {e}") from None
        if bytes(request["shard"]) != self.enclave.shard:
            raise RpcError(INVALID_PARAMS, "unknown shard")
        payload = bytes(request["cyphertext"])
        if encrypted:
            try:
                # RSA-3072 costs about a millisecond a block: off the event loop
                payload = await asyncio.get_running_loop().run_in_executor(
                    _decryptors(), self.enclave.keys.shielding.decrypt, payload
                )
            except ShieldingError as e:
                raise RpcError(INVALID_PARAMS, f"cannot decrypt the operation: {e}") from None
        if not payload or payload[0] not in (0, 1):
            raise RpcError(
                INVALID_PARAMS, "only trusted calls can be submitted (getters: state_executeGetter)"
            )
        try:
            tcs = TrustedCallSigned.decode(payload[1:])
        except (ScaleDecodeError, ValueError) as e:
            raise RpcError(INVALID_PARAMS, f"invalid trusted operation: {e}") from None
        if not tcs.verify_signature(self.enclave.mrenclave, self.enclave.shard):
            raise RpcError(INVALID_PARAMS, "bad signature")
        return blake2_256(payload), tcs, len(payload)

    def _watch_handler(self, encrypted: bool) -> Any:
        async def handler(params: Any, sink: Any) -> None:
            top_hash, tcs, size = await self._operation(params, encrypted)
            if top_hash in self.enclave.pool:
                raise RpcError(POOL_ERROR, "AlreadyImported: the operation is already in the pool")
            sink.set_id(to_hex(top_hash))

            def watcher(status: EnumValue) -> None:
                sink.send(
                    to_hex(DirectRequestStatus.encode(EnumValue("TrustedOperationStatus", status)))
                )
                if status.name in FINAL_STATUSES:
                    sink.close()

            self._submit(top_hash, tcs, size, watcher)

        return handler

    def _submit(self, top_hash: bytes, tcs: TrustedCallSigned, size: int, watcher: Any) -> None:
        try:
            self.enclave.submit_operation(top_hash, tcs, size, watcher)
        except PoolError as e:
            raise RpcError(POOL_ERROR, f"{e.kind}: {e.message}") from None

    async def submit_extrinsic(self, params: Any) -> str:
        try:
            top_hash, tcs, size = await self._operation(params, encrypted=True)
            self._submit(top_hash, tcs, size, None)
        except RpcError as e:
            return error(e.message)
        return to_hex(
            RpcReturnValue.encode(
                {
                    "value": H256.encode(top_hash),
                    "do_watch": False,
                    "status": EnumValue("TrustedOperationStatus", EnumValue("Submitted")),
                }
            )
        )

    def pending_extrinsics(self, params: Any) -> str:
        shards = params if isinstance(params, list) else []
        out = []
        for b58 in shards:
            try:
                shard = shard_from_base58(b58)
            except ValueError:
                return error("invalid shard")
            out.append(self.enclave.pool.pending() if shard == self.enclave.shard else [])
        return ok(Vec(Vec(Bytes)).encode(out))

    def get_header(self, params: Any) -> str:
        sidechain = self.enclave.sidechain
        if sidechain is None or sidechain.last_header is None:
            return error("no sidechain block yet")
        return ok(SidechainHeaderCodec.encode(sidechain.last_header))

    def import_block(self, params: Any) -> str:
        if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], str):
            raise ValueError("expected one hex-encoded Vec<SignedBlock>")
        try:
            blocks = SignedBlocks.decode(from_hex(params[0]))
        except ScaleDecodeError as e:
            raise ValueError(f"invalid blocks: {e}") from None
        try:
            self.enclave.import_sidechain_blocks(blocks)
        except (BlockImportError, ValueError) as e:
            log.warning("sidechain block rejected: %s", e)
            raise RpcError(BLOCK_REJECTED, f"block rejected: {e}") from None
        return "ok"


@functools.cache
def _decryptors() -> concurrent.futures.ThreadPoolExecutor:
    """One decryption thread per core: more threads only contend for the GIL they need back
    after every decryption (the RSA work itself runs without it)."""
    return concurrent.futures.ThreadPoolExecutor(
        max_workers=os.cpu_count() or 2, thread_name_prefix="rsa-decrypt"
    )


def shard_from_base58(value: str) -> bytes:
    raw = base58.b58decode(value)
    if len(raw) != 32:
        raise ValueError("a shard is 32 bytes")
    return raw
