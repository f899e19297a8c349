"""Transaction pool: validated extrinsics, ready and future queues, watchers, limits and bans.

Each transaction provides the tag (sender, nonce) and requires (sender, nonce - 1) when it is
ahead of the account's nonce. A transaction is ready when everything it requires is provided by
the state or by a ready transaction; the rest wait in the future queue until a block or a new
transaction fills the gap. Errors carry Substrate's JSON-RPC codes (1010-1016).
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .runtime.executive import InvalidTransaction, ValidTransaction

log = logging.getLogger("integritee.node.txpool")

Watcher = Callable[[Any], None]


class PoolError(Exception):
    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


def invalid_error(e: InvalidTransaction) -> PoolError:
    return PoolError(1010, "Invalid Transaction", e.message + (f": {e.detail}" if e.detail else ""))


@dataclass
class PoolTx:
    valid: ValidTransaction
    inserted_at: float
    size: int
    watchers: list[Watcher] = field(default_factory=list)

    @property
    def hash(self) -> bytes:
        return self.valid.xt.hash

    @property
    def sender(self) -> bytes:
        assert self.valid.xt.signer is not None
        return self.valid.xt.signer

    @property
    def nonce(self) -> int:
        return self.valid.xt.nonce


@dataclass
class PoolLimits:
    ready_count: int = 8192
    ready_bytes: int = 20 * 1024 * 1024
    future_count: int = 512
    future_bytes: int = 1 * 1024 * 1024
    ban_seconds: float = 1800.0


class TxPool:
    def __init__(self, limits: PoolLimits | None = None) -> None:
        self.limits = limits or PoolLimits()
        self.ready: OrderedDict[bytes, PoolTx] = OrderedDict()
        self.future: dict[bytes, PoolTx] = {}
        self.by_tag: dict[bytes, bytes] = {}  # provided tag -> tx hash (ready or future)
        self.banned: dict[bytes, float] = {}
        self.ready_bytes = 0
        self.future_bytes = 0

    # --- queries
    def __contains__(self, h: bytes) -> bool:
        return h in self.ready or h in self.future

    def __len__(self) -> int:
        return len(self.ready) + len(self.future)

    def pending(self) -> list[bytes]:
        return [t.valid.xt.raw for t in self.ready.values()] + [
            t.valid.xt.raw for t in self.future.values()
        ]

    def iter_ready(self) -> Iterator[PoolTx]:
        return iter(list(self.ready.values()))

    def is_banned(self, h: bytes) -> bool:
        until = self.banned.get(h)
        if until is None:
            return False
        if until < time.monotonic():
            del self.banned[h]
            return False
        return True

    def ban(self, h: bytes) -> None:
        self.banned[h] = time.monotonic() + self.limits.ban_seconds
        if len(self.banned) > 100_000:
            now = time.monotonic()
            self.banned = {k: v for k, v in self.banned.items() if v > now}

    # --- insertion
    def check_new(self, h: bytes) -> None:
        if h in self:
            raise PoolError(1013, "Transaction Already Imported")
        if self.is_banned(h):
            raise PoolError(1012, "Transaction is temporarily banned")

    def insert(
        self, valid: ValidTransaction, account_nonce: int, watcher: Watcher | None = None
    ) -> str:
        """Insert a validated transaction; returns "ready" or "future". Raises PoolError."""
        h = valid.xt.hash
        self.check_new(h)
        tx = PoolTx(valid, time.monotonic(), len(valid.xt.raw), [watcher] if watcher else [])
        tag = valid.provides[0]
        existing_hash = self.by_tag.get(tag)
        if existing_hash is not None:
            existing = self.ready.get(existing_hash) or self.future.get(existing_hash)
            assert existing is not None
            if valid.priority <= existing.valid.priority:
                raise PoolError(
                    1014, "Priority is too low", f"({valid.priority} vs {existing.valid.priority})"
                )
            self._remove(existing_hash)
            self._notify(existing, {"usurped": "0x" + h.hex()})
        is_ready = valid.xt.nonce == account_nonce or (
            valid.requires
            and valid.requires[0] in self.by_tag
            and self.by_tag[valid.requires[0]] in self.ready
        )
        if is_ready:
            if (
                len(self.ready) >= self.limits.ready_count
                or self.ready_bytes + tx.size > self.limits.ready_bytes
            ):
                raise PoolError(1016, "Immediately Dropped", "ready queue is full")
            self.ready[h] = tx
            self.ready_bytes += tx.size
            self.by_tag[tag] = h
            self._notify(tx, "ready")
            self._promote(tx.sender, tx.nonce + 1)
            return "ready"
        if (
            len(self.future) >= self.limits.future_count
            or self.future_bytes + tx.size > self.limits.future_bytes
        ):
            raise PoolError(1016, "Immediately Dropped", "future queue is full")
        self.future[h] = tx
        self.future_bytes += tx.size
        self.by_tag[tag] = h
        self._notify(tx, "future")
        return "future"

    def _promote(self, sender: bytes, nonce: int) -> None:
        """Move the sender's future transactions that are now contiguous into the ready queue."""
        while True:
            h = self.by_tag.get(sender + nonce.to_bytes(4, "little"))
            if h is None or h not in self.future:
                return
            tx = self.future.pop(h)
            self.future_bytes -= tx.size
            self.ready[h] = tx
            self.ready_bytes += tx.size
            self._notify(tx, "ready")
            nonce += 1

    def _remove(self, h: bytes) -> PoolTx | None:
        tx = self.ready.pop(h, None)
        if tx is not None:
            self.ready_bytes -= tx.size
        else:
            tx = self.future.pop(h, None)
            if tx is None:
                return None
            self.future_bytes -= tx.size
        tag = tx.valid.provides[0]
        if self.by_tag.get(tag) == h:
            del self.by_tag[tag]
        return tx

    def remove_invalid(self, h: bytes, reason: str) -> None:
        tx = self._remove(h)
        self.ban(h)
        if tx is not None:
            log.info("dropped invalid transaction 0x%s: %s", h.hex(), reason)
            self._notify(tx, "invalid", final=True)

    def watch(self, h: bytes, watcher: Watcher) -> bool:
        tx = self.ready.get(h) or self.future.get(h)
        if tx is None:
            return False
        tx.watchers.append(watcher)
        return True

    def unwatch(self, h: bytes, watcher: Watcher) -> None:
        tx = self.ready.get(h) or self.future.get(h)
        if tx is not None and watcher in tx.watchers:
            tx.watchers.remove(watcher)

    def _notify(self, tx: PoolTx, status: Any, final: bool = False) -> None:
        for w in list(tx.watchers):
            try:
                w(status)
            except Exception:  # a broken watcher must not break the pool
                log.exception("transaction watcher failed")
        if final:
            tx.watchers.clear()

    # --- block events
    def on_block(
        self,
        block_hash: bytes,
        included: list[bytes],
        account_nonce: Callable[[bytes], int],
    ) -> dict[bytes, list[Watcher]]:
        """Remove included transactions and prune stale ones; returns the watchers of included ones."""
        watchers: dict[bytes, list[Watcher]] = {}
        senders: set[bytes] = set()
        for h in included:
            tx = self._remove(h)
            if tx is not None:
                senders.add(tx.sender)
                watchers[h] = tx.watchers
                self._notify(tx, {"inBlock": "0x" + block_hash.hex()})
        # Transactions of these senders with nonces now used by the block are stale; futures may be ready.
        for sender in senders:
            current = account_nonce(sender)
            for pool in (self.ready, self.future):
                for h, tx in list(pool.items()):
                    if tx.sender == sender and tx.nonce < current:
                        self._remove(h)
                        self._notify(tx, "invalid", final=True)
            self._promote(sender, current)
        return watchers
