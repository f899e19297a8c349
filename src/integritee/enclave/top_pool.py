"""The trusted operation pool of one shard: ready and future queues, tags, limits, bans, watchers.

Every trusted call provides the tag (sender, nonce) and, when it is ahead of the sender's account
nonce, requires (sender, nonce - 1). Per sender the pool keeps a *base* (the account nonce it last
learned from the state) and a *ready run*: the calls with nonces `base, base + 1, ...` without a
gap. Everything else of that sender waits in the future queue until a block or a new call fills the
gap. This keeps every operation O(1) (per call moved) instead of re-scanning the pool.

Rules (the original's pool, see reference/trusted.md):
- refused: a hash already in the pool (`AlreadyImported`), a banned hash (`TemporarilyBanned`),
  a nonce below the account nonce (`Stale`), and a (sender, nonce) already taken
  (`TooLowPriority`) unless the newcomer has a higher priority, which then usurps the old call
  (`Usurped`). Trusted calls carry no tip, so all priorities are equal and the first call stays;
- limits: ready 8192 calls / 20 MiB, future 512 / 1 MiB; a new call beyond them is refused
  (`ImmediatelyDropped`, status Dropped). When the future queue is full, futures older than
  `future_lifetime` are dropped first, so that gaps nobody fills cannot block it for good.
  Moving calls between the queues (promotion, demotion) never drops anything, so a queue may
  briefly exceed its limit; only `submit` and `retract` add calls and they respect the limits,
  so the whole pool stays within the sum of both;
- `ready()` yields calls in execution order: highest priority first, FIFO (submission order)
  among equal priority, a sender's nonces ascending;
- statuses go to the call's watchers: Submitted, then Ready or Future; later Ready (promotion),
  Future (demotion when its predecessor turned out invalid), Retracted; the final ones
  InSidechainBlock(block), Invalid, Usurped and Dropped end the watch. After InSidechainBlock
  the call and its watchers are remembered (bounded, `keep_included`) so that `retract` can put
  a losing fork's calls back and tell their watchers; a watcher that ended its subscription
  ignores such late statuses or calls `unwatch`;
- invalid calls (rejected by the STF) are banned for 30 minutes (`ban_seconds`).

A refused submission raises `PoolError` and notifies nobody: the caller reports the error (its
`status` says which final status it amounts to). Signatures are not checked here: the caller
verifies them before `submit`.

Single-threaded by design (the enclave runs one asyncio loop); watchers are called synchronously
and must not re-enter the pool.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from integritee.codec.scale import EnumValue
from integritee.trusted.calls import TrustedCallSigned, TrustedOperation

log = logging.getLogger(__name__)

Watcher = Callable[[EnumValue], None]
AccountNonce = Callable[[bytes], int]

READY_COUNT = 8192
READY_BYTES = 20 * 1024 * 1024
FUTURE_COUNT = 512
FUTURE_BYTES = 1 * 1024 * 1024
BAN_SECONDS = 30 * 60.0
# A future call whose gap nobody fills would otherwise hold its slot forever: once the future
# queue is full, calls older than this are dropped to make room.
FUTURE_LIFETIME_SECONDS = 10 * 60.0
# How many included calls are remembered so that a losing fork's calls can be put back.
KEEP_INCLUDED = 16384

SUBMITTED = EnumValue("Submitted")
FUTURE = EnumValue("Future")
READY = EnumValue("Ready")
RETRACTED = EnumValue("Retracted")
USURPED = EnumValue("Usurped")
DROPPED = EnumValue("Dropped")
INVALID = EnumValue("Invalid")


def in_sidechain_block(block_hash: bytes) -> EnumValue:
    return EnumValue("InSidechainBlock", bytes(block_hash))


# kind -> (Substrate's author RPC error code, the final status the refusal amounts to)
_ERROR_KINDS: dict[str, tuple[int, EnumValue | None]] = {
    "Stale": (1010, INVALID),
    "TemporarilyBanned": (1012, INVALID),
    "AlreadyImported": (1013, None),
    "TooLowPriority": (1014, None),
    "ImmediatelyDropped": (1016, DROPPED),
}


class PoolError(Exception):
    """A refused submission. `kind` is one of AlreadyImported, TooLowPriority, Stale,
    TemporarilyBanned, ImmediatelyDropped; `code` is Substrate's author RPC error code for it and
    `status` the final TrustedOperationStatus it amounts to (None: a plain error)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message
        self.code, self.status = _ERROR_KINDS[kind]


@dataclass(eq=False)
class PoolOp:
    """One trusted call in the pool (or remembered after its inclusion)."""

    hash: bytes
    tcs: TrustedCallSigned
    size: int
    priority: int
    direct: bool
    order: int  # submission order: FIFO among equal priority, kept when retracted
    submitted_at: float
    sender: bytes
    nonce: int
    watchers: list[Watcher] = field(default_factory=list)
    is_ready: bool = False
    future_since: float = 0.0

    def operation(self) -> EnumValue:
        """The TrustedOperation this call arrived in."""
        return self.tcs.into_trusted_operation(self.direct)

    def encode(self) -> bytes:
        """SCALE(TrustedOperation), as `author_pendingExtrinsics` returns it."""
        return TrustedOperation.encode(self.operation())


class _Sender:
    """One sender's calls: `ops` by nonce, the ready ones being exactly base .. base + run - 1."""

    __slots__ = ("base", "run", "ops", "future")

    def __init__(self, base: int) -> None:
        self.base = base
        self.run = 0
        self.ops: dict[int, PoolOp] = {}
        self.future: dict[int, PoolOp] = {}


class TopPool:
    """The operation pool of one shard (the enclave keeps one per shard)."""

    def __init__(
        self,
        *,
        ready_count: int = READY_COUNT,
        ready_bytes: int = READY_BYTES,
        future_count: int = FUTURE_COUNT,
        future_bytes: int = FUTURE_BYTES,
        ban_seconds: float = BAN_SECONDS,
        future_lifetime: float | None = FUTURE_LIFETIME_SECONDS,
        keep_included: int = KEEP_INCLUDED,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ready_limit = (ready_count, ready_bytes)
        self.future_limit = (future_count, future_bytes)
        self.ban_seconds = ban_seconds
        self.future_lifetime = future_lifetime
        self.keep_included = keep_included
        self.clock = clock
        self._ops: dict[bytes, PoolOp] = {}
        self._senders: dict[bytes, _Sender] = {}
        # insertion order of the future queue, oldest first (for the lifetime eviction)
        self._future_order: OrderedDict[bytes, None] = OrderedDict()
        # hash -> ban expiry; every ban lasts as long, so insertion order is expiry order
        self._banned: OrderedDict[bytes, float] = OrderedDict()
        self._included: OrderedDict[bytes, PoolOp] = OrderedDict()
        self._counter = itertools.count()
        self.ready_count = 0
        self.ready_bytes = 0
        self.future_count = 0
        self.future_bytes = 0

    # -- queries ---------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._ops)

    def __contains__(self, top_hash: object) -> bool:
        return top_hash in self._ops

    def get(self, top_hash: bytes) -> PoolOp | None:
        return self._ops.get(top_hash)

    def is_ready(self, top_hash: bytes) -> bool:
        op = self._ops.get(top_hash)
        return op is not None and op.is_ready

    def ready(self, limit: int | None = None) -> list[PoolOp]:
        """Ready calls in execution order, at most `limit`; the pool is left unchanged.

        A k-way merge of the senders' ready runs by (priority desc, submission order): only a
        run's head competes, so a sender's nonces come out ascending."""
        if limit is None:
            limit = self.ready_count
        heap: list[tuple[int, int, int, _Sender]] = []
        for s in self._senders.values():
            if s.run:
                head = s.ops[s.base]
                heap.append((-head.priority, head.order, s.base, s))
        heapq.heapify(heap)
        out: list[PoolOp] = []
        while heap and len(out) < limit:
            _, _, nonce, s = heap[0]
            out.append(s.ops[nonce])
            nonce += 1
            if nonce < s.base + s.run:
                nxt = s.ops[nonce]
                heapq.heapreplace(heap, (-nxt.priority, nxt.order, nonce, s))
            else:
                heapq.heappop(heap)
        return out

    def future(self) -> list[PoolOp]:
        """Future calls, oldest first."""
        return [self._ops[h] for h in self._future_order]

    def pending(self) -> list[bytes]:
        """Encoded operations (ready in execution order, then future), for author_pendingExtrinsics."""
        return [op.encode() for op in self.ready()] + [op.encode() for op in self.future()]

    def is_banned(self, top_hash: bytes) -> bool:
        until = self._banned.get(top_hash)
        if until is None:
            return False
        if until <= self.clock():
            del self._banned[top_hash]
            return False
        return True

    @property
    def banned_count(self) -> int:
        self._expire_bans()
        return len(self._banned)

    # -- submission ------------------------------------------------------------------------------

    def submit(
        self,
        top_hash: bytes,
        tcs: TrustedCallSigned,
        encoded_len: int,
        account_nonce: int,
        watcher: Watcher | None = None,
        *,
        priority: int = 0,
        direct: bool = True,
    ) -> str:
        """Add a (signature-checked) call; returns "ready" or "future", raises `PoolError`.

        `account_nonce` is the sender's nonce in the current state; `direct` says which
        TrustedOperation variant carried it (for `pending`)."""
        if encoded_len < 0:
            raise ValueError(f"negative encoded length {encoded_len}")
        top_hash = bytes(top_hash)
        if top_hash in self._ops:
            raise PoolError("AlreadyImported", f"0x{top_hash.hex()} is already in the pool")
        if self.is_banned(top_hash):
            raise PoolError("TemporarilyBanned", f"0x{top_hash.hex()} is temporarily banned")
        sender_id = tcs.sender
        nonce = tcs.nonce
        if nonce < account_nonce:
            raise PoolError("Stale", f"nonce {nonce} is below the account nonce {account_nonce}")
        op = PoolOp(
            hash=top_hash,
            tcs=tcs,
            size=encoded_len,
            priority=priority,
            direct=direct,
            order=next(self._counter),
            submitted_at=self.clock(),
            sender=sender_id,
            nonce=nonce,
            watchers=[watcher] if watcher is not None else [],
        )
        self._make_room(op)
        s = self._senders.get(sender_id)
        if s is not None:
            self._learn_base(s, account_nonce)
        old = s.ops.get(nonce) if s is not None else None
        if old is not None and priority <= old.priority:
            raise PoolError(
                "TooLowPriority",
                f"(0x{sender_id.hex()}, {nonce}) is already taken by 0x{old.hash.hex()}"
                f" (priority {priority} vs {old.priority})",
            )
        return self._insert(op, s, old, account_nonce, SUBMITTED)

    def _learn_base(self, s: _Sender, account_nonce: int) -> None:
        """Move a sender's base up to the state's nonce when that loses nothing.

        Submissions never prune or demote: the state may already include a block whose calls the
        pool has not been told about (`on_executed`), and those must still be reported
        InSidechainBlock rather than Invalid. Only when the sender has no call below the new
        nonce (so its run is empty) is the base moved, letting a call at that nonce be ready."""
        if account_nonce <= s.base or s.run:
            return
        if any(n < account_nonce for n in s.future):
            return
        s.base = account_nonce
        self._promote(s)

    def _insert(
        self,
        op: PoolOp,
        s: _Sender | None,
        old: PoolOp | None,
        account_nonce: int,
        first: EnumValue,
    ) -> str:
        """Place `op` (its watchers hear `first`, then Ready or Future) after checking the
        limits; `old` is the call it usurps (same sender and nonce), if any."""
        if old is not None:
            goes_ready = old.is_ready  # the newcomer takes the old one's place
        elif s is None:
            goes_ready = op.nonce == account_nonce  # a new sender's base is the account nonce
        else:
            goes_ready = op.nonce == s.base + s.run
        self._check_limits(op, goes_ready, old)

        if s is None:
            s = _Sender(account_nonce)
            self._senders[op.sender] = s
        if old is not None:
            self._detach(old, s)
            if old.is_ready:
                self.ready_count -= 1
                self.ready_bytes -= old.size
            else:
                self._unfuture(old, s)
            self._notify(old, USURPED, final=True)
        self._ops[op.hash] = op
        s.ops[op.nonce] = op
        self._notify(op, first)
        if goes_ready:
            self._make_ready(op)
            if old is None:
                s.run += 1
            self._promote(s)
            return "ready"
        self._make_future(op, s)
        return "future"

    def _make_room(self, op: PoolOp) -> None:
        """When the future queue is full, drop its calls that outlived `future_lifetime`.

        Done before anything is looked up for `op`, since it may remove calls of its sender."""
        if self.future_lifetime is None:
            return
        max_count, max_bytes = self.future_limit
        if self.future_count + 1 > max_count or self.future_bytes + op.size > max_bytes:
            self._expire_futures()

    def _check_limits(self, op: PoolOp, ready: bool, old: PoolOp | None) -> None:
        freed_count = 1 if old is not None else 0
        freed_bytes = old.size if old is not None else 0
        if ready:
            count, size = self.ready_count, self.ready_bytes
            max_count, max_bytes = self.ready_limit
        else:
            count, size = self.future_count, self.future_bytes
            max_count, max_bytes = self.future_limit
        if count - freed_count + 1 > max_count or size - freed_bytes + op.size > max_bytes:
            queue = "ready" if ready else "future"
            raise PoolError(
                "ImmediatelyDropped",
                f"the {queue} queue is full ({count} calls, {size} bytes;"
                f" limits {max_count} calls, {max_bytes} bytes)",
            )

    # -- queue moves -----------------------------------------------------------------------------

    def _make_ready(self, op: PoolOp) -> None:
        op.is_ready = True
        self.ready_count += 1
        self.ready_bytes += op.size
        self._notify(op, READY)

    def _make_future(self, op: PoolOp, s: _Sender) -> None:
        op.is_ready = False
        op.future_since = self.clock()
        s.future[op.nonce] = op
        self._future_order[op.hash] = None
        self.future_count += 1
        self.future_bytes += op.size
        self._notify(op, FUTURE)

    def _unfuture(self, op: PoolOp, s: _Sender) -> None:
        del s.future[op.nonce]
        del self._future_order[op.hash]
        self.future_count -= 1
        self.future_bytes -= op.size

    def _promote(self, s: _Sender) -> None:
        """Move the future calls that continue the ready run into it."""
        while True:
            op = s.future.get(s.base + s.run)
            if op is None:
                return
            self._unfuture(op, s)
            self._make_ready(op)
            s.run += 1

    def _demote_after(self, s: _Sender, nonce: int) -> None:
        """Cut the ready run before `nonce`: the calls from there on lose their predecessor."""
        end = s.base + s.run
        s.run = max(0, nonce - s.base)
        for n in range(max(nonce, s.base), end):
            op = s.ops[n]
            self.ready_count -= 1
            self.ready_bytes -= op.size
            self._make_future(op, s)

    def _detach(self, op: PoolOp, s: _Sender) -> None:
        del self._ops[op.hash]
        del s.ops[op.nonce]

    def _remove(self, op: PoolOp, consumed: bool = False) -> None:
        """Take `op` out of the pool. `consumed`: its nonce was used by a block, so when it heads
        the ready run the run (and the base) just move on; otherwise the calls after it in the run
        lost their predecessor and wait in the future queue."""
        s = self._senders[op.sender]
        self._detach(op, s)
        if not op.is_ready:
            self._unfuture(op, s)
            return
        self.ready_count -= 1
        self.ready_bytes -= op.size
        if consumed and op.nonce == s.base:
            s.base += 1
            s.run -= 1
            return
        end = s.base + s.run
        s.run = op.nonce - s.base
        for n in range(op.nonce + 1, end):
            nxt = s.ops[n]
            self.ready_count -= 1
            self.ready_bytes -= nxt.size
            self._make_future(nxt, s)

    def _forget_if_empty(self, sender: bytes) -> None:
        s = self._senders.get(sender)
        if s is not None and not s.ops:
            del self._senders[sender]

    def _reconcile(self, s: _Sender, account_nonce: int) -> None:
        """Bring a sender in line with the state's nonce: calls below it are stale (Invalid), a
        lower nonce (a fork was reverted) demotes the run, and contiguous futures are promoted."""
        if account_nonce > s.base:
            end = s.base + s.run
            for n in range(s.base, min(account_nonce, end)):
                op = s.ops.pop(n)
                del self._ops[op.hash]
                self.ready_count -= 1
                self.ready_bytes -= op.size
                self._notify(op, INVALID, final=True)
            s.run = max(0, end - account_nonce)
            for n in [n for n in s.future if n < account_nonce]:
                op = s.future[n]
                self._unfuture(op, s)
                del s.ops[n]
                del self._ops[op.hash]
                self._notify(op, INVALID, final=True)
            s.base = account_nonce
        elif account_nonce < s.base:
            self._demote_after(s, s.base)
            s.base = account_nonce
        self._promote(s)

    def _expire_futures(self) -> None:
        assert self.future_lifetime is not None
        deadline = self.clock() - self.future_lifetime
        while self._future_order:
            h = next(iter(self._future_order))
            op = self._ops[h]
            if op.future_since > deadline:
                return
            self._remove(op)
            self._forget_if_empty(op.sender)
            log.info("dropped future trusted operation 0x%s: no predecessor in time", h.hex())
            self._notify(op, DROPPED, final=True)

    # -- block events ----------------------------------------------------------------------------

    def on_executed(
        self,
        included: Iterable[bytes],
        block_hash: bytes,
        account_nonce: AccountNonce,
        *,
        touched: Iterable[bytes] | None = None,
    ) -> list[bytes]:
        """A sidechain block (ours or a peer's) with these operation hashes was imported and the
        state now is its post-state: remove the included calls (InSidechainBlock(block_hash),
        final), prune what became stale (Invalid) and promote what became contiguous (Ready).

        The senders of the included calls are checked against the state (`account_nonce`). When
        the block holds calls the pool never saw, their senders are unknown and every sender is
        checked, unless the caller names the senders the block touched (`touched`, e.g. the
        author, who knows every call it executed). Returns the included hashes that were in the
        pool.

        The included calls are remembered with their watchers (see `retract`)."""
        status = in_sidechain_block(block_hash)
        senders: set[bytes] = set()
        found: list[bytes] = []
        unknown = False
        for h in included:
            h = bytes(h)
            op = self._ops.get(h)
            if op is None:
                unknown = True
                continue
            self._remove(op, consumed=True)
            senders.add(op.sender)
            found.append(h)
            self._notify(op, status)
            self._remember(op)
        if touched is not None:
            senders.update(touched)
        elif unknown:
            senders.update(self._senders)
        self._reconcile_senders(senders, account_nonce)
        return found

    def prune(self, account_nonce: AccountNonce, senders: Iterable[bytes] | None = None) -> None:
        """Check these senders (default: all) against the state's nonces: prune stale calls,
        promote contiguous ones. For state changes the pool learns about otherwise."""
        self._reconcile_senders(list(self._senders) if senders is None else senders, account_nonce)

    def _reconcile_senders(self, senders: Iterable[bytes], account_nonce: AccountNonce) -> None:
        for sender in senders:
            s = self._senders.get(sender)
            if s is None:
                continue
            self._reconcile(s, account_nonce(sender))
            if not s.ops:
                del self._senders[sender]

    def _remember(self, op: PoolOp) -> None:
        if self.keep_included <= 0:
            op.watchers = []
            return
        self._included[op.hash] = op
        self._included.move_to_end(op.hash)
        while len(self._included) > self.keep_included:
            self._included.popitem(last=False)

    def remove_invalid(self, top_hash: bytes, reason: str = "") -> bool:
        """Executing the call was rejected: remove it (Invalid) and ban its hash (also when it
        is not in the pool). Its successors in the ready run lose their predecessor and wait in
        the future queue. Returns whether it was in the pool.

        Not for a rejection because the nonce is *ahead* of the account's: such a call is still
        valid and `on_executed` settles it."""
        top_hash = bytes(top_hash)
        self.ban(top_hash)
        op = self._ops.get(top_hash)
        if op is None:
            return False
        self._remove(op)
        self._forget_if_empty(op.sender)
        log.info("removed invalid trusted operation 0x%s: %s", top_hash.hex(), reason)
        self._notify(op, INVALID, final=True)
        return True

    def ban(self, top_hash: bytes) -> None:
        self._expire_bans()
        self._banned[bytes(top_hash)] = self.clock() + self.ban_seconds
        self._banned.move_to_end(bytes(top_hash))

    def _expire_bans(self) -> None:
        now = self.clock()
        while self._banned:
            h, until = next(iter(self._banned.items()))
            if until > now:
                return
            del self._banned[h]

    def retract(self, top_hashes: Iterable[bytes], account_nonce: AccountNonce) -> list[bytes]:
        """Put back the calls of a block that lost a fork: each gets Retracted, then Ready or
        Future (or Invalid when stale, Usurped when its (sender, nonce) was taken meanwhile,
        Dropped beyond the limits). Only calls this pool saw included (the last `keep_included`)
        can come back; others are ignored. Returns the hashes put back.

        Call it with the state reverted to the common ancestor, before importing the winning
        branch (whose `on_executed` then reports the calls it includes)."""
        back: list[PoolOp] = []
        for h in top_hashes:
            op = self._included.pop(bytes(h), None)
            if op is not None and op.hash not in self._ops:
                back.append(op)
        by_sender: dict[bytes, list[PoolOp]] = {}
        for op in back:
            by_sender.setdefault(op.sender, []).append(op)
        put_back: list[bytes] = []
        for sender, ops in by_sender.items():
            current = account_nonce(sender)
            s = self._senders.get(sender)
            if s is not None:
                self._reconcile(s, current)
                self._forget_if_empty(sender)
            for op in sorted(ops, key=lambda o: o.nonce):
                op.is_ready = False
                try:
                    if op.nonce < current:
                        raise PoolError("Stale", f"nonce {op.nonce} is below {current}")
                    self._make_room(op)
                    s = self._senders.get(sender)
                    if s is not None and op.nonce in s.ops:
                        raise PoolError("TooLowPriority", "its (sender, nonce) was taken meanwhile")
                    self._insert(op, s, None, current, RETRACTED)
                except PoolError as exc:
                    final = USURPED if exc.kind == "TooLowPriority" else exc.status or DROPPED
                    self._notify(op, RETRACTED)
                    self._notify(op, final, final=True)
                    continue
                put_back.append(op.hash)
        return put_back

    # -- watchers --------------------------------------------------------------------------------

    def watch(self, top_hash: bytes, watcher: Watcher) -> bool:
        """Add a watcher to a call in the pool; False if it is not (any more) in the pool."""
        op = self._ops.get(bytes(top_hash))
        if op is None:
            return False
        op.watchers.append(watcher)
        return True

    def unwatch(self, top_hash: bytes, watcher: Watcher) -> None:
        """Detach a watcher (also from a remembered included call, see `retract`)."""
        op = self._ops.get(bytes(top_hash)) or self._included.get(bytes(top_hash))
        if op is None:
            return
        for i, w in enumerate(op.watchers):
            if w is watcher or w == watcher:
                del op.watchers[i]
                return

    def _notify(self, op: PoolOp, status: EnumValue, final: bool = False) -> None:
        watchers = op.watchers
        if final:
            op.watchers = []
        for w in list(watchers):
            try:
                w(status)
            except Exception:  # a broken subscriber must not break the pool
                log.exception("trusted operation watcher failed")
