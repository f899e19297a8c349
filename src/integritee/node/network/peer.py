"""One connected, authenticated peer: its send queue, rate limits, score and what it knows.

Outbound messages go through a bounded queue drained by a writer task; a peer too slow to keep
up is disconnected rather than letting the queue grow. Inbound frames are metered by two token
buckets (messages and bytes per second); a peer that exceeds them floods and is banned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass

from .wire import frame, peer_id

log = logging.getLogger("integritee.node.p2p")


class LruSet:
    """A set remembering the last `capacity` items (what a peer has seen)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, item: bytes) -> bool:
        """Add; True when the item was not there."""
        if item in self._items:
            self._items.move_to_end(item)
            return False
        self._items[item] = None
        if len(self._items) > self.capacity:
            self._items.popitem(last=False)
        return True

    def __contains__(self, item: bytes) -> bool:
        return item in self._items

    def __len__(self) -> int:
        return len(self._items)


class TokenBucket:
    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = time.monotonic()

    def take(self, amount: float = 1.0) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < amount:
            return False
        self.tokens -= amount
        return True


@dataclass
class PeerLimits:
    outbound_queue: int = 2048
    messages_per_second: float = 500.0
    message_burst: float = 2000.0
    bytes_per_second: float = 64 * 1024 * 1024
    byte_burst: float = 128 * 1024 * 1024


class Peer:
    def __init__(
        self,
        public_key: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        inbound: bool,
        dialer: bytes,
        host: str,
        listen_port: int,
        roles: int,
        limits: PeerLimits,
    ) -> None:
        self.id = public_key
        self.reader = reader
        self.writer = writer
        self.inbound = inbound
        self.dialer = dialer  # who opened the connection (decides between duplicates)
        self.host = host
        self.listen_port = listen_port
        self.roles = roles
        self.best_number = 0
        self.best_hash = bytes(32)
        self.finalized_number = 0
        self.score = 0
        self.known_blocks = LruSet(4096)
        self.known_txs = LruSet(16384)
        self.known_votes = LruSet(4096)
        self.known_justifications = LruSet(1024)
        self.request: tuple[int, float, str] | None = None  # (id, deadline, purpose)
        self.outbox: asyncio.Queue[bytes | None] = asyncio.Queue(limits.outbound_queue)
        self.messages = TokenBucket(limits.messages_per_second, limits.message_burst)
        self.bytes = TokenBucket(limits.bytes_per_second, limits.byte_burst)
        self.closed = False
        self.tasks: list[asyncio.Task[None]] = []
        self.connected_at = time.monotonic()

    @property
    def peer_id(self) -> str:
        return peer_id(self.id)

    def __repr__(self) -> str:
        return f"Peer({self.peer_id[-8:]} {self.host}:{self.listen_port})"

    def send(self, payload: bytes) -> bool:
        """Queue a message; False (and the caller should drop the peer) when the queue is full."""
        if self.closed:
            return True
        try:
            self.outbox.put_nowait(payload)
        except asyncio.QueueFull:
            return False
        return True

    def metered(self, size: int) -> bool:
        """Account an inbound frame; False when the peer exceeds its rates."""
        return self.messages.take(1) and self.bytes.take(size)

    async def writer_loop(self) -> None:
        try:
            while True:
                item = await self.outbox.get()
                if item is None:
                    break
                self.writer.write(frame(item))
                await self.writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(Exception):
            self.writer.close()
