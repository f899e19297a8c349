"""The service's connection to its parentchain node: chain info, storage, proofs, submissions.

Calls are encoded from the node's own metadata (fetched over RPC; the service is untrusted anyway,
the enclave checks what matters with proofs). Submissions wait for inclusion or finality and fail
with the dispatch error when the extrinsic failed on chain.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.metadata_decode import RuntimeMetadata, decode_metadata_v14
from integritee.codec.scale import EnumValue
from integritee.crypto.hashing import blake2_128_concat, blake2_256, storage_prefix
from integritee.crypto.keys import Keypair
from integritee.parentchain.extrinsic import sign_and_encode
from integritee.parentchain.primitives import AccountInfo, AccountInfoCodec
from integritee.rpc.client import RpcClient
from integritee.teeio.messages import ChainInfo

log = logging.getLogger("integritee.service.node")


class SubmissionError(RuntimeError):
    pass


class NodeClient:
    def __init__(self, client: RpcClient, url: str) -> None:
        self.client = client
        self.url = url
        self.metadata: RuntimeMetadata | None = None
        self.chain: ChainInfo | None = None

    @classmethod
    async def connect(cls, url: str, timeout: float = 60) -> NodeClient:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            try:
                client = await RpcClient.connect(url, timeout=10)
                break
            except (OSError, TimeoutError, ConnectionError) as e:
                if asyncio.get_running_loop().time() > deadline:
                    raise ConnectionError(
                        f"cannot reach the parentchain node at {url}: {e}"
                    ) from None
                log.info("waiting for the parentchain node at %s", url)
                await asyncio.sleep(1)
        node = cls(client, url)
        await node.refresh()
        return node

    async def refresh(self) -> None:
        genesis = await self.client.request("chain_getBlockHash", [0])
        version = await self.client.request("state_getRuntimeVersion", [])
        self.chain = ChainInfo(
            from_hex(genesis), version["specVersion"], version["transactionVersion"]
        )
        self.metadata = decode_metadata_v14(
            from_hex(await self.client.request("state_getMetadata", []))
        )

    async def close(self) -> None:
        await self.client.close()

    async def rpc(self, method: str, params: list[Any] | None = None) -> Any:
        return await self.client.request(method, params or [])

    # --- reads
    async def account(self, who: bytes) -> AccountInfo:
        key = storage_prefix("System", "Account") + blake2_128_concat(who)
        raw = await self.rpc("state_getStorage", [to_hex(key)])
        return AccountInfo() if raw is None else AccountInfoCodec.decode(from_hex(raw))

    async def next_nonce(self, who: bytes) -> int:
        return int(await self.rpc("system_accountNextIndex", [to_hex(who)]))

    async def storage(self, key: bytes, at: bytes | None = None) -> bytes | None:
        raw = await self.rpc("state_getStorage", [to_hex(key), to_hex(at) if at else None])
        return None if raw is None else from_hex(raw)

    async def read_proof(self, keys: list[bytes], at: bytes) -> list[bytes]:
        result = await self.rpc("state_getReadProof", [[to_hex(k) for k in keys], to_hex(at)])
        return [from_hex(n) for n in result["proof"]]

    async def finalized_head(self) -> tuple[int, bytes]:
        h = from_hex(await self.rpc("chain_getFinalizedHead"))
        header = await self.rpc("chain_getHeader", [to_hex(h)])
        return int(header["number"], 16), h

    # --- calls and submissions
    def call(self, pallet: str, name: str, **args: Any) -> bytes:
        assert self.metadata is not None
        return self.metadata.call_codec.encode(EnumValue(pallet, EnumValue(name, args)))

    async def sign_and_submit(self, signer: Keypair, call: bytes, wait: str = "inBlock") -> bytes:
        assert self.chain is not None
        nonce = await self.next_nonce(signer.public_key)
        xt = sign_and_encode(
            call,
            signer,
            nonce=nonce,
            genesis_hash=self.chain.genesis_hash,
            spec_version=self.chain.spec_version,
            tx_version=self.chain.transaction_version,
        )
        return await self.submit(xt, wait)

    async def submit(self, xt: bytes, wait: str = "inBlock", timeout: float = 120) -> bytes:
        """Submit and wait for "inBlock" or "finalized"; returns the block hash. Raises on failure."""
        sub = await self.client.subscribe(
            "author_submitAndWatchExtrinsic", [to_hex(xt)], "author_unwatchExtrinsic"
        )
        try:
            async with asyncio.timeout(timeout):
                async for status in sub:
                    if isinstance(status, dict):
                        if "inBlock" in status and wait == "inBlock":
                            block = from_hex(status["inBlock"])
                            await self._check_success(xt, block)
                            return block
                        if "finalized" in status:
                            block = from_hex(status["finalized"])
                            await self._check_success(xt, block)
                            return block
                        if "usurped" in status or "dropped" in status:
                            raise SubmissionError(f"extrinsic {status}")
                    elif status in ("invalid", "dropped"):
                        raise SubmissionError(f"extrinsic {status}")
        finally:
            if sub.active:
                await sub.unsubscribe()
        raise SubmissionError("the node ended the watch without a final status")

    async def _check_success(self, xt: bytes, block: bytes) -> None:
        """Look the extrinsic up in its block's events and raise with the dispatch error if it failed."""
        assert self.metadata is not None
        body = await self.rpc("chain_getBlock", [to_hex(block)])
        extrinsics = [from_hex(x) for x in body["block"]["extrinsics"]]
        xt_hash = blake2_256(xt)
        index = next((i for i, x in enumerate(extrinsics) if blake2_256(x) == xt_hash), None)
        if index is None:
            raise SubmissionError("extrinsic not found in its block")
        raw = await self.storage(storage_prefix("System", "Events"), block)
        events = self.metadata.events_codec.decode(raw) if raw else []
        for record in events:
            phase = record["phase"]
            if phase.name == "ApplyExtrinsic" and phase.value == index:
                event = record["event"]
                if event.name == "System" and event.value.name == "ExtrinsicFailed":
                    raise SubmissionError(
                        f"extrinsic failed: {self.describe_error(event.value.value['dispatch_error'])}"
                    )

    def describe_error(self, error: EnumValue) -> str:
        if error.name == "Module" and self.metadata is not None:
            try:
                pallet, name = self.metadata.module_error(
                    error.value["index"], error.value["error"]
                )
                return f"{pallet}::{name}"
            except (KeyError, ValueError):
                pass
        if error.value is not None and hasattr(error.value, "name"):
            return f"{error.name}::{error.value.name}"
        return error.name
