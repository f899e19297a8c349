"""The node's p2p network: connections, gossip, block sync, and the defence against bad peers.

- Connections: TCP on the p2p port, authenticated by the handshake of `wire.py`. The node dials
  its boot nodes and the addresses peers tell it about (`Peers` messages) and redials them with
  a backoff, so a network heals after a node restarts. Two nodes keep one connection between
  them (the one opened by the smaller public key).
- Gossip: a new block (authored or imported) is pushed whole to every peer that has not seen
  it; so are pool transactions (batched every 100 ms), finality votes and justifications.
- Sync: a peer's `Status` and the blocks it pushes say how far its chain goes; the node requests
  missing blocks in ascending ranges (from its best block, or from its finalized block when
  that does not connect) and imports each only after full validation (`Node.import_block`).
  A pushed block whose parent is unknown waits as an orphan while its ancestry is fetched.
  "Major sync" (more than `MAJOR_SYNC_GAP` blocks behind) stops authoring and voting.
- Defence: each peer has a score; an invalid block, vote or justification, a malformed message,
  an oversized frame or flooding (token buckets on messages and bytes) bans it for
  `ban_seconds`: it is disconnected and refused, and not redialled. Lesser faults (unsolicited
  responses, invalid transactions, timeouts) cost points, forgiven at a point a second; at -100
  the peer is banned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair
from integritee.parentchain.finality import FinalityError

from ..blockchain import Block, ChainError, StaleBlock, decode_body
from ..finality_gadget import PRECOMMIT, PREVOTE, Vote, VoteError
from ..service import BadBlock, Node, UnknownBlock, UnknownParent
from ..txpool import PoolError
from .peer import Peer, PeerLimits
from .wire import (
    ASCENDING,
    DESCENDING,
    MAX_BLOCKS_PER_RESPONSE,
    MAX_HANDSHAKE_FRAME,
    MAX_PEERS_PER_MESSAGE,
    MAX_TXS_PER_MESSAGE,
    ROLE_AUTHORITY,
    ROLE_FULL,
    HandshakeError,
    Hello,
    PeerAddress,
    WireError,
    check_auth,
    decode_message,
    encode_message,
    frame,
    peer_id,
    read_frame,
    sign_auth,
)

log = logging.getLogger("integritee.node.p2p")
sync_log = logging.getLogger("integritee.node.sync")

BAN = 100
MAJOR_SYNC_GAP = 5
HANDSHAKE_TIMEOUT = 5.0
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
MAX_ORPHANS = 256
MAX_LEARNED_TARGETS = 64
MAX_PENDING_HANDSHAKES = 64


@dataclass
class NetworkConfig:
    node_key: Keypair
    listen_host: str = "127.0.0.1"
    port: int = 30333
    # A default port in use (another local node) is replaced by a free one instead of failing.
    port_fallback: bool = False
    bootnodes: list[PeerAddress] = field(default_factory=list)
    max_peers: int = 32
    ban_seconds: float = 120.0
    sync_batch: int = MAX_BLOCKS_PER_RESPONSE
    request_timeout: float = 10.0
    status_interval: float = 2.0
    limits: PeerLimits = field(default_factory=PeerLimits)


@dataclass
class _Target:
    address: PeerAddress
    persistent: bool
    next_attempt: float = 0.0
    backoff: float = 0.5
    dialing: bool = False


class Network:
    def __init__(self, node: Node, config: NetworkConfig) -> None:
        self.node = node
        self.config = config
        self.key = config.node_key
        self.local_id = self.key.public_key
        self.genesis = node.chain.genesis_hash
        self.roles = ROLE_AUTHORITY if node.config.authority is not None else ROLE_FULL
        self.peers: dict[bytes, Peer] = {}
        self.banned: dict[bytes, float] = {}
        self.targets: dict[tuple[str, int], _Target] = {}
        for addr in config.bootnodes:
            self.targets[(addr.host, addr.port)] = _Target(addr, persistent=True)
        self.port: int | None = None
        self._server: asyncio.Server | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._next_request = 1
        self._handshaking = 0
        self._sync_from: int | None = None
        self._orphans: OrderedDict[bytes, tuple[Block, bytes | None]] = OrderedDict()
        self._pending_justifications: OrderedDict[bytes, bytes] = OrderedDict()
        self._tx_queue: list[bytes] = []
        self._last_progress = 0.0
        self._last_status = 0.0
        self._progress_mark: tuple[float, int] = (time.monotonic(), node.chain.best_number)
        # counters for metrics
        self.bans = 0
        self.blocks_from_peers = 0
        self.messages_in = 0
        self.bytes_in = 0
        self.sync_started_at: int | None = None
        node.network = self
        node.sync_oracle = self.is_major_syncing
        node.import_listeners.append(self._on_block_imported)
        node.finalized_listeners.append(self._on_finalized)
        node.tx_listeners.append(self._tx_queue.append)
        node.finality.vote_listeners.append(self._on_local_vote)

    # --- public view (RPC, metrics)
    @property
    def peer_id(self) -> str:
        return peer_id(self.local_id)

    def listen_addresses(self) -> list[str]:
        if self.port is None:
            return []
        host = (
            "127.0.0.1" if self.config.listen_host in ("", "0.0.0.0") else self.config.listen_host
        )
        return [PeerAddress(host, self.port, self.local_id).multiaddr()]

    def sync_target(self) -> int:
        best = self.node.chain.best_number
        return max([best, *(p.best_number for p in self.peers.values())])

    def is_major_syncing(self) -> bool:
        return self.sync_target() > self.node.chain.best_number + MAJOR_SYNC_GAP

    def is_banned(self, public_key: bytes) -> bool:
        until = self.banned.get(public_key)
        if until is None:
            return False
        if until < time.monotonic():
            del self.banned[public_key]
            return False
        return True

    def peer_infos(self) -> list[dict[str, Any]]:
        return [
            {
                "peerId": p.peer_id,
                "roles": "AUTHORITY" if p.roles == ROLE_AUTHORITY else "FULL",
                "bestHash": "0x" + p.best_hash.hex(),
                "bestNumber": p.best_number,
            }
            for p in self.peers.values()
        ]

    # --- lifecycle
    async def start(self) -> int:
        host, port = self.config.listen_host, self.config.port
        try:
            self._server = await asyncio.start_server(self._on_inbound, host, port)
        except OSError as e:
            if not self.config.port_fallback:
                raise OSError(f"cannot listen for p2p connections on {host}:{port}: {e}") from e
            log.warning("p2p port %d is in use; listening on a free port instead", port)
            self._server = await asyncio.start_server(self._on_inbound, host, 0)
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("Local node identity is: %s", self.peer_id)
        for addr in self.listen_addresses():
            log.info("Listening for new connections on %s", addr)
        self._tasks = [
            asyncio.create_task(self._dial_loop(), name="p2p-dial"),
            asyncio.create_task(self._tick_loop(), name="p2p-tick"),
        ]
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for t in self._tasks:
            t.cancel()
        for p in list(self.peers.values()):
            self._drop(p, "shutting down", quiet=True)
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1)

    # --- connections
    async def _on_inbound(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self.peers) >= self.config.max_peers or self._handshaking >= MAX_PENDING_HANDSHAKES:
            writer.close()
            return
        self._handshaking += 1
        try:
            await self._handshake(reader, writer, inbound=True, expected=None)
        finally:
            self._handshaking -= 1

    async def _dial(self, target: _Target) -> None:
        addr = target.address
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(addr.host, addr.port), HANDSHAKE_TIMEOUT
            )
        except (OSError, TimeoutError) as e:
            log.debug("cannot dial %s: %s", addr.multiaddr(), e)
            self._backoff(target)
            return
        peer = await self._handshake(
            reader, writer, inbound=False, expected=addr.peer, target=target
        )
        if peer is None:
            self._backoff(target)
        else:
            target.backoff = 0.5
            if addr.peer is None:  # now we know who listens there
                target.address = PeerAddress(addr.host, addr.port, peer.id)

    def _backoff(self, target: _Target) -> None:
        target.next_attempt = time.monotonic() + target.backoff
        target.backoff = min(target.backoff * 2, 10.0)

    async def _handshake(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        inbound: bool,
        expected: bytes | None,
        target: _Target | None = None,
    ) -> Peer | None:
        peername = writer.get_extra_info("peername")
        host = str(peername[0]) if peername else "?"
        hello = Hello.new(self.genesis, self.key, self.port or 0, self.roles)
        try:
            writer.write(frame(hello.encode()))
            await writer.drain()
            remote = Hello.decode(
                await asyncio.wait_for(read_frame(reader, MAX_HANDSHAKE_FRAME), HANDSHAKE_TIMEOUT)
            )
            if remote.genesis != self.genesis:
                raise HandshakeError(
                    f"peer is on another chain (genesis 0x{remote.genesis.hex()[:16]}...)"
                )
            if remote.public_key == self.local_id:
                if target is not None and not target.persistent:
                    self.targets.pop((target.address.host, target.address.port), None)
                raise HandshakeError("connected to ourselves")
            if expected is not None and remote.public_key != expected:
                raise HandshakeError(
                    f"peer is {peer_id(remote.public_key)}, expected {peer_id(expected)}"
                )
            if self.is_banned(remote.public_key):
                raise HandshakeError("peer is banned")
            writer.write(frame(sign_auth(self.key, self.genesis, remote.nonce, remote.public_key)))
            await writer.drain()
            signature = await asyncio.wait_for(
                read_frame(reader, MAX_HANDSHAKE_FRAME), HANDSHAKE_TIMEOUT
            )
            check_auth(signature, self.genesis, hello.nonce, remote.public_key, self.local_id)
        except (WireError, HandshakeError) as e:
            log.info("handshake with %s failed: %s", host, e)
            writer.close()
            return None
        except (asyncio.IncompleteReadError, ConnectionError, OSError, TimeoutError) as e:
            log.debug("handshake with %s aborted: %r", host, e)
            writer.close()
            return None
        dialer = remote.public_key if inbound else self.local_id
        existing = self.peers.get(remote.public_key)
        if existing is not None:
            preferred = min(self.local_id, remote.public_key)
            if dialer == preferred and existing.dialer != preferred:
                self._drop(existing, "replaced by a second connection", quiet=True)
            else:
                writer.close()
                return None
        if len(self.peers) >= self.config.max_peers:
            writer.close()
            return None
        peer = Peer(
            remote.public_key,
            reader,
            writer,
            inbound=inbound,
            dialer=dialer,
            host=host,
            listen_port=remote.listen_port,
            roles=remote.roles,
            limits=self.config.limits,
        )
        self.peers[peer.id] = peer
        log.info(
            "Connected to peer %s (%s:%d, %s, %s)",
            peer.peer_id,
            host,
            remote.listen_port,
            "inbound" if inbound else "outbound",
            "authority" if remote.roles == ROLE_AUTHORITY else "full",
        )
        peer.tasks = [
            asyncio.create_task(peer.writer_loop(), name="p2p-write"),
            asyncio.create_task(self._read_loop(peer), name="p2p-read"),
        ]
        if inbound and remote.listen_port:
            self._learn(PeerAddress(host, remote.listen_port, remote.public_key))
        self._send(peer, "Status", self._status())
        self._send(peer, "Peers", {"peers": self._peer_addresses(exclude=peer.id)})
        pending = [tx.valid.xt.raw for tx in self.node.pool.ready.values()]
        self._send_txs(peer, pending)
        return peer

    def _drop(self, peer: Peer, reason: str, quiet: bool = False) -> None:
        if not quiet:
            log.info("Disconnecting peer %s: %s", peer.peer_id, reason)
        peer.close()
        for t in peer.tasks:
            if t is not asyncio.current_task():
                t.cancel()
        self._forget(peer)

    def _forget(self, peer: Peer) -> None:
        if self.peers.get(peer.id) is peer:
            del self.peers[peer.id]
            log.info("Disconnected from peer %s (%d peers)", peer.peer_id, len(self.peers))

    def misbehaved(self, peer: Peer, reason: str, penalty: int) -> None:
        peer.score -= penalty
        if peer.score > -BAN:
            log.info("peer %s: %s (score %d)", peer.peer_id, reason, peer.score)
            return
        self.ban(peer.id, reason)
        self._drop(peer, reason, quiet=True)

    def ban(self, public_key: bytes, reason: str) -> None:
        self.banned[public_key] = time.monotonic() + self.config.ban_seconds
        self.bans += 1
        log.warning(
            "Banned peer %s for %.0f s: %s", peer_id(public_key), self.config.ban_seconds, reason
        )

    def _learn(self, addr: PeerAddress) -> None:
        if addr.peer == self.local_id or (addr.host, addr.port) in self.targets:
            return
        learned = sum(1 for t in self.targets.values() if not t.persistent)
        if learned >= MAX_LEARNED_TARGETS:
            return
        self.targets[(addr.host, addr.port)] = _Target(addr, persistent=False)

    def _peer_addresses(self, exclude: bytes) -> list[dict[str, Any]]:
        out = []
        for p in self.peers.values():
            if p.id != exclude and p.listen_port:
                out.append({"host": p.host.encode(), "port": p.listen_port, "id": p.id})
        return out[:MAX_PEERS_PER_MESSAGE]

    # --- background loops
    async def _dial_loop(self) -> None:
        while True:
            now = time.monotonic()
            connected = set(self.peers)
            for target in list(self.targets.values()):
                peer = target.address.peer
                if target.dialing or now < target.next_attempt:
                    continue
                if peer is not None and (peer in connected or self.is_banned(peer)):
                    continue
                if len(self.peers) >= self.config.max_peers:
                    break
                target.dialing = True
                asyncio.create_task(self._dial_once(target))
            await asyncio.sleep(0.5)

    async def _dial_once(self, target: _Target) -> None:
        try:
            await self._dial(target)
        finally:
            target.dialing = False
            if target.address.peer is None:
                # An address without a known identity: dial it again only after a while.
                target.next_attempt = max(target.next_attempt, time.monotonic() + 5.0)

    async def _tick_loop(self) -> None:
        while True:
            await asyncio.sleep(0.1)
            try:
                self._tick()
            except Exception:
                log.exception("p2p housekeeping failed")

    def _tick(self) -> None:
        now = time.monotonic()
        if self._tx_queue:
            txs = list(self._tx_queue)
            self._tx_queue.clear()  # the same list object stays registered with the node
            for peer in list(self.peers.values()):
                self._send_txs(peer, txs)
        for peer in list(self.peers.values()):
            if peer.request is not None and peer.request[1] < now:
                purpose = peer.request[2]
                peer.request = None
                self.misbehaved(peer, f"{purpose} request timed out", 20)
        if now - self._last_status >= self.config.status_interval:
            self._last_status = now
            status = self._status()
            for peer in list(self.peers.values()):
                # Lesser faults are forgiven slowly (1 point a second); bans are not.
                peer.score = min(0, peer.score + int(self.config.status_interval))
                self._send(peer, "Status", status)
        self._maybe_sync()
        if self.is_major_syncing() and now - self._last_progress >= 1.0:
            self._log_progress(now)

    def _log_progress(self, now: float) -> None:
        chain = self.node.chain
        t0, n0 = self._progress_mark
        rate = (chain.best_number - n0) / max(1e-3, now - t0)
        self._progress_mark = (now, chain.best_number)
        self._last_progress = now
        sync_log.info(
            "Syncing %.1f bps, target=#%d (%d peers), best: #%d (0x%s), finalized #%d",
            rate,
            self.sync_target(),
            len(self.peers),
            chain.best_number,
            chain.best_hash.hex()[:16],
            chain.finalized_number,
        )

    # --- sending
    def _send(self, peer: Peer, name: str, fields: dict[str, Any]) -> None:
        if not peer.send(encode_message(name, fields)):
            self._drop(peer, "outbound queue full (peer too slow)")

    def _send_txs(self, peer: Peer, txs: Iterable[bytes]) -> None:
        fresh = [raw for raw in txs if peer.known_txs.add(blake2_256(raw))]
        for i in range(0, len(fresh), MAX_TXS_PER_MESSAGE):
            self._send(peer, "Transactions", {"extrinsics": fresh[i : i + MAX_TXS_PER_MESSAGE]})

    def _status(self) -> dict[str, Any]:
        chain = self.node.chain
        return {
            "best_number": chain.best_number,
            "best_hash": chain.best_hash,
            "finalized_number": chain.finalized_number,
            "finalized_hash": chain.finalized_hash,
        }

    def _block_data(self, block_hash: bytes) -> dict[str, Any] | None:
        chain = self.node.chain
        header = chain.maybe_header(block_hash)
        body = chain.body(block_hash)
        if header is None or body is None:
            return None
        return {
            "header": header,
            "body": Block(header, body).encode_body(),
            "justification": chain.justification(block_hash),
        }

    def _request(
        self, peer: Peer, start: tuple[str, Any], direction: int, count: int, purpose: str
    ) -> None:
        rid = self._next_request
        self._next_request = (self._next_request + 1) & 0xFFFFFFFF
        peer.request = (rid, time.monotonic() + self.config.request_timeout, purpose)
        self._send(
            peer,
            "BlockRequest",
            {"id": rid, "start": start, "direction": direction, "max": count},
        )

    # --- listeners on the node
    def _on_block_imported(self, block: Block, block_hash: bytes, is_best: bool) -> None:
        if self.is_major_syncing():
            return  # peers ahead of us have it; do not echo a bulk download
        data = None
        for peer in list(self.peers.values()):
            if peer.known_blocks.add(block_hash):
                if data is None:
                    data = self._block_data(block_hash)
                    if data is None:
                        return
                self._send(peer, "Block", {"block": data})

    def _on_finalized(self, header: Any, block_hash: bytes) -> None:
        if self._pending_justifications:
            # Justifications waiting for this finality (beyond an authority set change).
            waiting = list(self._pending_justifications.items())
            self._pending_justifications.clear()
            for h, j in waiting:
                if self.node.chain.maybe_header(h) is None:
                    self._pending_justifications[h] = j
                    continue
                with contextlib.suppress(Exception):
                    self.node.apply_justification(h, j)
        if self.is_major_syncing():
            return
        justification = self.node.chain.justification(block_hash)
        if justification is None:
            return
        msg = {"hash": block_hash, "number": header.number, "justification": justification}
        for peer in list(self.peers.values()):
            if peer.known_justifications.add(block_hash):
                self._send(peer, "Justification", msg)

    def _on_local_vote(self, vote: Vote) -> None:
        self._relay_vote(vote, source=None)

    def _relay_vote(self, vote: Vote, source: Peer | None) -> None:
        key = vote.encode()
        for peer in list(self.peers.values()):
            if peer is not source and peer.known_votes.add(key):
                self._send(peer, "Vote", {"vote": vote.__dict__})

    # --- receiving
    async def _read_loop(self, peer: Peer) -> None:
        try:
            while not peer.closed:
                data = await read_frame(peer.reader)
                self.messages_in += 1
                self.bytes_in += len(data) + 4
                if not peer.metered(len(data) + 4):
                    self.misbehaved(peer, "flooding (message rate exceeded)", BAN)
                    return
                await self._handle(peer, data)
        except WireError as e:
            self.misbehaved(peer, str(e), BAN)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("peer %s: message handling failed", peer.peer_id)
        finally:
            self._drop(peer, "connection closed", quiet=True)

    async def _handle(self, peer: Peer, data: bytes) -> None:
        name, d = decode_message(data)
        if name == "Status":
            peer.best_number = d["best_number"]
            peer.best_hash = d["best_hash"]
            peer.finalized_number = d["finalized_number"]
            self._maybe_sync()
        elif name == "Block":
            block, justification = self._decode_block(d["block"])
            block_hash = block.hash
            peer.known_blocks.add(block_hash)
            if block.header.number > peer.best_number:
                peer.best_number = block.header.number
                peer.best_hash = block_hash
            self._import_pushed(peer, block, justification)
        elif name == "BlockRequest":
            self._serve(peer, d)
        elif name == "BlockResponse":
            await self._on_response(peer, d)
        elif name == "Transactions":
            self._on_transactions(peer, d["extrinsics"])
        elif name == "Vote":
            vote = Vote(**d["vote"])
            if vote.kind not in (PREVOTE, PRECOMMIT):
                raise WireError(f"unknown vote kind {vote.kind}")
            peer.known_votes.add(vote.encode())
            try:
                new = self.node.finality.on_vote(vote)
            except VoteError as e:
                self.misbehaved(peer, f"invalid vote: {e}", BAN)
                return
            if new:
                self._relay_vote(vote, source=peer)
        elif name == "Justification":
            self._on_justification(peer, d["hash"], d["justification"])
        elif name == "Peers":
            for a in d["peers"]:
                try:
                    host = a["host"].decode()
                except UnicodeDecodeError:
                    raise WireError("peer address is not text") from None
                if a["port"]:
                    self._learn(PeerAddress(host, a["port"], a["id"]))

    def _decode_block(self, data: dict[str, Any]) -> tuple[Block, bytes | None]:
        try:
            extrinsics = decode_body(data["body"])
        except (ChainError, ValueError) as e:
            raise WireError(f"malformed block body: {e}") from None
        return Block(data["header"], extrinsics), data["justification"]

    def _import(self, peer: Peer, block: Block, justification: bytes | None) -> str:
        """Import a block from a peer: "ok", "unknown_parent", "stale" or "bad" (peer banned)."""
        try:
            outcome = self.node.import_block(block, justification)
        except UnknownParent:
            return "unknown_parent"
        except StaleBlock:
            return "stale"
        except BadBlock as e:
            self.misbehaved(peer, f"invalid block: {e}", BAN)
            return "bad"
        if outcome.status != "known":
            self.blocks_from_peers += 1
        pending = self._pending_justifications.pop(outcome.hash, None)
        if pending is not None:
            self._on_justification(peer, outcome.hash, pending)
        self._import_orphans(peer, outcome.hash)
        return "ok"

    def _import_pushed(self, peer: Peer, block: Block, justification: bytes | None) -> None:
        status = self._import(peer, block, justification)
        if status != "unknown_parent":
            return
        header = block.header
        self._orphans[block.hash] = (block, justification)
        while len(self._orphans) > MAX_ORPHANS:
            self._orphans.popitem(last=False)
        chain = self.node.chain
        if header.number > chain.best_number + 1:
            self._maybe_sync()
        elif peer.request is None:
            count = min(header.number - 1 - chain.finalized_number, self.config.sync_batch)
            if count > 0:
                self._request(peer, ("Hash", header.parent_hash), DESCENDING, count, "ancestry")

    def _import_orphans(self, peer: Peer, parent: bytes) -> None:
        queue = [parent]
        while queue and self._orphans:
            p = queue.pop()
            children = [h for h, (b, _j) in self._orphans.items() if b.header.parent_hash == p]
            for h in children:
                block, justification = self._orphans.pop(h)
                try:
                    self.node.import_block(block, justification)
                    queue.append(h)
                except BadBlock as e:
                    log.info("orphan block #%d rejected: %s", block.header.number, e)
                except Exception as e:
                    log.debug("orphan block #%d not imported: %s", block.header.number, e)

    def _serve(self, peer: Peer, d: dict[str, Any]) -> None:
        chain = self.node.chain
        count = min(d["max"], MAX_BLOCKS_PER_RESPONSE)
        kind, value = d["start"]
        h = value if kind == "Hash" else chain.hash_at(value)
        blocks: list[dict[str, Any]] = []
        size = 0
        while h is not None and len(blocks) < count and size < MAX_RESPONSE_BYTES:
            data = self._block_data(h)
            if data is None:
                break
            blocks.append(data)
            size += len(data["body"]) + 200
            header = data["header"]
            if d["direction"] == ASCENDING:
                nxt = chain.hash_at(header.number + 1)
                if nxt is None or chain.header(nxt).parent_hash != h:
                    break
                h = nxt
            else:
                if header.number == 0:
                    break
                h = header.parent_hash
        self._send(peer, "BlockResponse", {"id": d["id"], "blocks": blocks})

    async def _on_response(self, peer: Peer, d: dict[str, Any]) -> None:
        request = peer.request
        if request is None or request[0] != d["id"]:
            self.misbehaved(peer, "unsolicited block response", 20)
            return
        peer.request = None
        blocks = [self._decode_block(b) for b in d["blocks"]]
        if request[2] == "ancestry":
            blocks.reverse()
            for block, justification in blocks:
                peer.known_blocks.add(block.hash)
                status = self._import(peer, block, justification)
                if status == "bad" or peer.closed:
                    return
                await asyncio.sleep(0)
            return
        await self._on_sync_response(peer, blocks)

    async def _on_sync_response(self, peer: Peer, blocks: list[tuple[Block, bytes | None]]) -> None:
        chain = self.node.chain
        if not blocks:
            # It does not have what it claimed: stop asking it until it tells us more.
            peer.best_number = min(peer.best_number, chain.best_number)
            return
        if self.sync_started_at is None and self.is_major_syncing():
            self.sync_started_at = chain.best_number
        progress = False
        for i, (block, justification) in enumerate(blocks):
            peer.known_blocks.add(block.hash)
            if block.header.number > peer.best_number:
                peer.best_number = block.header.number
            status = self._import(peer, block, justification)
            if status == "bad" or peer.closed:
                return
            if status == "unknown_parent":
                start = block.header.number
                if i == 0 and start > chain.finalized_number + 1:
                    # Our best block is on another fork: fetch from the finalized block on.
                    self._sync_from = chain.finalized_number + 1
                else:
                    self.misbehaved(peer, "blocks that do not connect to our chain", 50)
                break
            if status == "stale":
                self._drop(peer, "its chain conflicts with our finalized chain")
                return
            progress = True
            await asyncio.sleep(0)
        if progress:
            self._sync_from = None
        now = time.monotonic()
        if self.sync_started_at is not None and now - self._last_progress >= 1.0:
            self._log_progress(now)
        if not self.is_major_syncing() and self.sync_started_at is not None:
            sync_log.info(
                "Caught up with the network at #%d (imported %d blocks)",
                chain.best_number,
                chain.best_number - self.sync_started_at,
            )
            self.sync_started_at = None
        self._maybe_sync()

    def _maybe_sync(self) -> None:
        peers = list(self.peers.values())
        if any(p.request is not None and p.request[2] == "sync" for p in peers):
            return
        best = self.node.chain.best_number
        candidates = [p for p in peers if p.best_number > best and p.request is None]
        if not candidates:
            return
        peer = max(candidates, key=lambda p: p.best_number)
        start = self._sync_from if self._sync_from is not None else best + 1
        self._request(peer, ("Number", start), ASCENDING, self.config.sync_batch, "sync")

    def _on_transactions(self, peer: Peer, extrinsics: list[bytes]) -> None:
        for raw in extrinsics:
            h = blake2_256(raw)
            peer.known_txs.add(h)
            if h in self.node.pool:
                continue
            try:
                self.node.submit(raw)
            except PoolError as e:
                if e.code == 1010:
                    self.misbehaved(peer, f"invalid transaction: {e.data}", 2)
                    if peer.closed:
                        return
            except Exception as e:  # a malformed extrinsic
                self.misbehaved(peer, f"malformed transaction: {e}", 10)
                if peer.closed:
                    return

    def _on_justification(self, peer: Peer, block_hash: bytes, justification: bytes) -> None:
        peer.known_justifications.add(block_hash)
        try:
            self.node.apply_justification(block_hash, justification)
        except FinalityError as e:
            self.misbehaved(peer, f"invalid justification: {e}", BAN)
        except UnknownBlock:
            self._pending_justifications[block_hash] = justification
            while len(self._pending_justifications) > 64:
                self._pending_justifications.popitem(last=False)
        except StaleBlock as e:
            log.info("ignoring a justification from %s: %s", peer.peer_id, e)
