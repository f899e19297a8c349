"""The enclave's direct-invocation JSON-RPC (trusted WSS, port 2000): the original's methods and encodings.

Results are hex(SCALE(RpcReturnValue)) as `integritee.trusted.rpc` declares them. Bad input
never raises out of a handler: it becomes an Error return value,
as the original does.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import logging
import os
from collections.abc import Callable
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
        # the shielding key is looked up per call: provisioning replaces it
        self._decryption = BatchDecryptor(lambda c: enclave.keys.shielding.decrypt(c))

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
                payload = await self._decryption.decrypt(payload)
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


class BatchDecryptor:
    """RSA decryption off the event loop, in batches: whatever arrived while the decryption
    threads were busy goes to a thread as one job, so the loop wakes once per batch instead of
    once per operation. One thread per core: more would only contend for the GIL that each needs
    back between decryptions (the RSA work itself runs without it)."""

    MAX_BATCH = 64

    def __init__(self, decrypt: Callable[[bytes], bytes]) -> None:
        self._decrypt = decrypt
        self._threads = os.cpu_count() or 2
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=self._threads, thread_name_prefix="rsa-decrypt"
        )
        self._waiting: collections.deque[tuple[bytes, asyncio.Future[bytes]]] = collections.deque()
        self._running = 0

    async def decrypt(self, ciphertext: bytes) -> bytes:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting.append((ciphertext, future))
        self._start()
        return await future

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        while self._waiting and self._running < self._threads:
            share = max(
                1, min(self.MAX_BATCH, len(self._waiting) // (self._threads - self._running))
            )
            batch = [self._waiting.popleft() for _ in range(min(share, len(self._waiting)))]
            self._running += 1
            job = loop.run_in_executor(self._pool, self._decrypt_all, [c for c, _ in batch])
            job.add_done_callback(lambda done, batch=batch: self._finish(done, batch))

    def _decrypt_all(self, ciphertexts: list[bytes]) -> list[bytes | Exception]:
        out: list[bytes | Exception] = []
        for ciphertext in ciphertexts:
            try:
                out.append(self._decrypt(ciphertext))
            except Exception as e:  # handed to the one caller it belongs to
                out.append(e)
        return out

    def _finish(
        self, done: asyncio.Future[list[bytes | Exception]], batch: list[tuple[bytes, Any]]
    ) -> None:
        self._running -= 1
        results: list[bytes | Exception]
        try:
            results = done.result()
        except Exception as e:
            results = [e] * len(batch)
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)
        self._start()


def shard_from_base58(value: str) -> bytes:
    raw = base58.b58decode(value)
    if len(raw) != 32:
        raise ValueError("a shard is 32 bytes")
    return raw
