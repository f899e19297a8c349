"""The other validateers of the shard, as the untrusted side reaches them.

Who they are comes from the parentchain (`EnclaveBridge.ShardStatus(shard)` for the signers and
their last activity, `Teerex.SovereignEnclaves(signer).url` for their trusted WSS URL), read
without proof: nothing learned here is trusted. Blocks sent to a peer are verified by its enclave,
blocks fetched from a peer by ours, and MU-RA authenticates the provider by attestation.

- `broadcast`: `sidechain_importBlock` with our produced blocks to every peer, each over its own
  persistent connection and queue, so a slow or dead peer delays nobody else;
- `mu_ra_url` / `untrusted_url`: `author_getMuRaUrl` / `author_getUntrustedUrl` on a peer;
- `fetch_blocks`: the blocks after a hash from the first peer that has them
  (`sidechain_fetchBlocksFromPeer` on its untrusted port).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from dataclasses import dataclass, field

from integritee.codec.hexutil import to_hex
from integritee.codec.scale import ScaleDecodeError, encode_compact, text
from integritee.parentchain.tee_types import instance_url
from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcError
from integritee.trusted.rpc import RpcReturnValue

from .node_client import NodeClient
from .untrusted_rpc import fetch_blocks_from_peer

log = logging.getLogger("integritee.service.peers")

QUEUE_LIMIT = 256  # blocks waiting for one peer; beyond that the oldest are dropped (it will fetch)
REQUEST_TIMEOUT = 10.0


def insecure_tls() -> ssl.SSLContext:
    """TLS to a peer enclave's trusted port without certificate checks: the service trusts
    nothing it sends or receives there (the enclaves verify the blocks)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class Peer:
    signer: bytes
    trusted_url: str
    last_activity: int
    queue: asyncio.Queue[bytes] = field(default_factory=lambda: asyncio.Queue(QUEUE_LIMIT))
    task: asyncio.Task[None] | None = None
    client: RpcClient | None = None


class Peers:
    def __init__(self, shard: bytes, me: bytes) -> None:
        self.shard = shard
        self.me = me
        self.peers: dict[bytes, Peer] = {}
        self._tls = insecure_tls()

    # --- who
    async def refresh(self, node: NodeClient) -> None:
        """Re-read the shard's validateers and their URLs from the node."""
        meta = node.metadata
        assert meta is not None
        status_entry = meta.storage("EnclaveBridge", "ShardStatus")
        raw = await node.storage(status_entry.key(self.shard))
        statuses = [] if raw is None else status_entry.decode_value(raw)
        enclaves = meta.storage("Teerex", "SovereignEnclaves")
        seen: set[bytes] = set()
        for status in statuses:
            signer = bytes(status["signer"])
            if signer == self.me:
                continue
            raw_enclave = await node.storage(enclaves.key(signer))
            if raw_enclave is None:
                continue
            url = instance_url(enclaves.decode_value(raw_enclave))
            if url is None:
                continue
            seen.add(signer)
            peer = self.peers.get(signer)
            if peer is None:
                peer = Peer(signer, url.decode(errors="replace"), int(status["last_activity"]))
                self.peers[signer] = peer
                log.info("peer validateer 0x%s at %s", signer.hex()[:12], peer.trusted_url)
            else:
                peer.trusted_url = url.decode(errors="replace")
                peer.last_activity = int(status["last_activity"])
        for signer in [s for s in self.peers if s not in seen]:
            await self._drop(self.peers.pop(signer))

    def by_activity(self) -> list[Peer]:
        return sorted(self.peers.values(), key=lambda p: -p.last_activity)

    # --- block broadcast
    def broadcast(self, blocks: list[bytes]) -> None:
        for peer in self.peers.values():
            for block in blocks:
                if peer.queue.full():
                    peer.queue.get_nowait()
                peer.queue.put_nowait(block)
            if peer.task is None or peer.task.done():
                peer.task = asyncio.create_task(self._send_loop(peer), name="broadcast")

    async def _send_loop(self, peer: Peer) -> None:
        while not peer.queue.empty():
            batch = [peer.queue.get_nowait() for _ in range(peer.queue.qsize())]
            # SCALE Vec<SignedBlock> of blocks already encoded: length prefix + concatenation
            payload = to_hex(encode_compact(len(batch)) + b"".join(batch))
            try:
                client = await self._client(peer)
                await client.request("sidechain_importBlock", [payload], timeout=REQUEST_TIMEOUT)
            except RpcError as e:  # its enclave's verdict (e.g. queued for a gap): logged only
                log.debug("peer %s: %s", peer.trusted_url, e)
            except Exception as e:  # the peer fetches what it missed
                log.debug("block broadcast to %s failed: %s", peer.trusted_url, e)
                await self._close(peer)
                return

    async def _client(self, peer: Peer) -> RpcClient:
        if peer.client is None or peer.client.closed:
            peer.client = await RpcClient.connect(
                peer.trusted_url, self._tls, timeout=REQUEST_TIMEOUT
            )
        return peer.client

    # --- queries
    async def _text(self, peer: Peer, method: str) -> str:
        client = await self._client(peer)
        result = await client.request(method, [], timeout=REQUEST_TIMEOUT)
        try:
            value = RpcReturnValue.decode(bytes.fromhex(str(result).removeprefix("0x")))
            return str(text.decode(bytes(value["value"])))
        except (ValueError, ScaleDecodeError) as e:
            raise ValueError(f"{method} from {peer.trusted_url}: undecodable reply: {e}") from None

    async def mu_ra_url(self, peer: Peer) -> str:
        return await self._text(peer, "author_getMuRaUrl")

    async def untrusted_url(self, peer: Peer) -> str:
        return await self._text(peer, "author_getUntrustedUrl")

    async def fetch_blocks(self, from_hash: bytes, shard: bytes) -> list[bytes]:
        """The blocks after `from_hash` from the first peer that answers with some."""
        for peer in self.by_activity():
            try:
                url = await self.untrusted_url(peer)
                blocks = await fetch_blocks_from_peer(url, from_hash, None, shard)
            except Exception as e:
                log.info("fetching sidechain blocks from %s failed: %s", peer.trusted_url, e)
                await self._close(peer)
                continue
            if blocks:
                return blocks
        return []

    # --- shutdown
    async def _close(self, peer: Peer) -> None:
        if peer.client is not None:
            with contextlib.suppress(Exception):
                await peer.client.close()
            peer.client = None

    async def _drop(self, peer: Peer) -> None:
        if peer.task is not None:
            peer.task.cancel()
        await self._close(peer)

    async def close(self) -> None:
        for peer in list(self.peers.values()):
            await self._drop(peer)
        self.peers.clear()
