"""Untrusted sidechain block storage of the validateer (`<data-dir>/sidechain_db`).

Owns the on-disk chain of sidechain blocks per shard that the enclave hands to the service
(blocks it produced or imported), the reads the untrusted RPC and the service need, and pruning.

Layout (the original's, byte for byte: SCALE-encoded keys at the root of a dedicated RocksDB):

| key                                        | value                                  |
|--------------------------------------------|----------------------------------------|
| SCALE(b"stored_shards")                    | SCALE(Vec<H256>) shards, in first-seen order |
| SCALE((b"last_sidechainblock", shard))     | SCALE(LastSidechainBlock {hash, number}) |
| shard ++ u64-LE number                     | block hash (32 bytes)                  |
| block hash (32 bytes)                      | SCALE(SignedBlock)                     |
| SCALE((b"finalized_sidechainblock", shard)) | u64-LE number (ours: last block confirmed on the parentchain) |

Rules (the original's, plus a parent-hash check): a block is stored only if it extends the last
stored block of its shard by exactly one (number == last + 1 and parent_hash == last hash). A
shard without blocks accepts any first block (number >= 1; block 1 must have the zero parent):
a validateer that joins late fetches a peer's pruned chain, which no longer starts at 1. All
writes of one `store_blocks` call go in one atomic batch; the in-memory view is updated only after
that batch is on disk.

Invariant: the stored blocks of a shard are the contiguous numbers [first, last] (stores extend
the top, pruning removes from the bottom in ascending order), so the first number is found by a
binary search over the (shard, number) index instead of an extra key.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Any

import base58
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from integritee.codec.scale import (
    H256,
    ScaleDecodeError,
    ScaleEncodeError,
    Struct,
    Vec,
    encode_compact,
    u64,
)
from integritee.crypto.hashing import blake2_256
from integritee.storage.kv import KVStore, KVView, WriteBatch
from integritee.trusted.sidechain import SidechainHeaderCodec, SignedBlockCodec

log = logging.getLogger("integritee.service.sidechain_db")

DB_DIR_NAME = "sidechain_db"
DEFAULT_KEEP_BLOCKS = 100
DEFAULT_PRUNE_INTERVAL_S = 2 * 60 * 60.0
DEFAULT_FETCH_LIMIT = 1000
ZERO_HASH = bytes(32)

# SCALE(SidechainHeader) has a fixed size and opens SCALE(SignedBlock): the block hash is the
# blake2 of the stored value's first HEADER_LEN bytes, without decoding the rest.
HEADER_LEN = 32 + 8 + 32 + 32 + 8

_PRUNE_CHUNK = 2_000
_READ_CHUNK = 128


def _scale_bytes(data: bytes) -> bytes:
    return encode_compact(len(data)) + data


STORED_SHARDS_KEY = _scale_bytes(b"stored_shards")
_LAST_BLOCK_PREFIX = _scale_bytes(b"last_sidechainblock")
_FINALIZED_PREFIX = _scale_bytes(b"finalized_sidechainblock")

LastSidechainBlockCodec = Struct(
    "its_storage::storage::LastSidechainBlock", [("hash", H256), ("number", u64)]
)
_ShardsCodec = Vec(H256)


def _last_key(shard: bytes) -> bytes:
    return _LAST_BLOCK_PREFIX + shard


def _finalized_key(shard: bytes) -> bytes:
    return _FINALIZED_PREFIX + shard


def _number_key(shard: bytes, number: int) -> bytes:
    return shard + number.to_bytes(8, "little")


def _check_hash(value: Any, what: str) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise TypeError(f"{what} must be 32 bytes, not {type(value).__name__}")
    data = bytes(value)
    if len(data) != 32:
        raise ValueError(f"{what} must be 32 bytes, got {len(data)}")
    return data


def stored_block_hash(encoded: bytes) -> bytes:
    """The hash of a SCALE(SignedBlock): blake2_256 of its leading SCALE(SidechainHeader)."""
    if len(encoded) < HEADER_LEN:
        raise ScaleDecodeError("a signed sidechain block is shorter than its header")
    return blake2_256(encoded[:HEADER_LEN])


def stored_block_header(encoded: bytes) -> dict[str, Any]:
    header, _ = SidechainHeaderCodec.decode_prefix(encoded)
    assert isinstance(header, dict)
    return header


class SidechainDbError(Exception):
    """The stored data is inconsistent (a missing index entry, an undecodable stored value)."""


@dataclass(frozen=True)
class LastBlock:
    hash: bytes
    number: int


class SkipReason(StrEnum):
    UNDECODABLE = "undecodable"  # not a SignedBlock (bytes) or not encodable (decoded value)
    ZERO_NUMBER = "zero_number"  # sidechain block numbers start at 1
    GENESIS_PARENT = "genesis_parent"  # block 1 whose parent is not the zero hash
    ALREADY_STORED = "already_stored"  # this very block is already the shard's last block
    STALE = "stale"  # number <= the shard's last number
    GAP = "gap"  # number > last + 1
    WRONG_PARENT = "wrong_parent"  # number == last + 1, but parent_hash != last hash


@dataclass(frozen=True)
class StoredBlock:
    index: int  # position in the `store_blocks` argument
    shard: bytes
    number: int
    hash: bytes


@dataclass(frozen=True)
class SkippedBlock:
    index: int
    reason: SkipReason
    detail: str
    shard: bytes | None = None
    number: int | None = None
    hash: bytes | None = None


@dataclass
class StoreResult:
    stored: list[StoredBlock] = field(default_factory=list)
    skipped: list[SkippedBlock] = field(default_factory=list)


@dataclass
class _Candidate:
    index: int
    encoded: bytes
    shard: bytes
    number: int
    parent: bytes
    hash: bytes


FinalizedSource = Callable[[bytes], int | None | Awaitable[int | None]]


class SidechainDb:
    """The sidechain block store. Thread-safe: writers (store, prune, mark) hold one lock."""

    def __init__(self, view: KVView, *, owned: KVStore | None = None) -> None:
        self._kv = view
        self._owned = owned
        self._lock = threading.RLock()
        self._shards: list[bytes] = []
        self._last: dict[bytes, LastBlock] = {}
        self._first: dict[bytes, int] = {}
        self._load()

    @classmethod
    def open(cls, path: str | Path, *, sync: bool = False) -> SidechainDb:
        """Open (or create) the database directory `path` (normally `<data-dir>/sidechain_db`)."""
        store = KVStore.open(path, sync=sync)
        try:
            return cls(store, owned=store)
        except BaseException:
            store.close()
            raise

    @classmethod
    def open_in(cls, data_dir: str | Path, *, sync: bool = False) -> SidechainDb:
        return cls.open(Path(data_dir) / DB_DIR_NAME, sync=sync)

    def close(self) -> None:
        if self._owned is not None:
            self._owned.close()

    def __enter__(self) -> SidechainDb:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- loading -------------------------------------------------------------------------------

    def _load(self) -> None:
        raw = self._kv.get(STORED_SHARDS_KEY)
        shards: list[bytes] = []
        if raw is not None:
            try:
                shards = [bytes(s) for s in _ShardsCodec.decode(raw)]
            except ScaleDecodeError as exc:
                raise SidechainDbError(f"the stored shard list is corrupt: {exc}") from exc
        for shard in shards:
            last_raw = self._kv.get(_last_key(shard))
            if last_raw is None:
                # A shard listed without a last block holds nothing usable; the original logs
                # the same condition and leaves the shard out of its in-memory view.
                log.error("sidechain DB: shard 0x%s is listed but has no last block", shard.hex())
                continue
            try:
                last = LastSidechainBlockCodec.decode(last_raw)
            except ScaleDecodeError as exc:
                raise SidechainDbError(
                    f"the last block record of shard 0x{shard.hex()} is corrupt: {exc}"
                ) from exc
            self._last[shard] = LastBlock(bytes(last["hash"]), int(last["number"]))
            self._first[shard] = self._find_first(shard, self._last[shard].number)
        self._shards = shards

    def _find_first(self, shard: bytes, last: int) -> int:
        """Lowest stored number of `shard` (stored numbers are the contiguous range up to last)."""
        lo, hi = 1, last
        while lo < hi:
            mid = (lo + hi) // 2
            if self._kv.get(_number_key(shard, mid)) is None:
                lo = mid + 1
            else:
                hi = mid
        return lo

    # -- reads ---------------------------------------------------------------------------------

    def shards(self) -> list[bytes]:
        """Shards with stored blocks, in the order they were first stored."""
        return [s for s in list(self._shards) if s in self._last]

    def last_block(self, shard: bytes) -> LastBlock | None:
        return self._last.get(_check_hash(shard, "shard"))

    def first_number(self, shard: bytes) -> int | None:
        """Number of the oldest block still stored for `shard` (None without blocks)."""
        return self._first.get(_check_hash(shard, "shard"))

    def block_count(self, shard: bytes) -> int:
        shard = _check_hash(shard, "shard")
        last, first = self._last.get(shard), self._first.get(shard)
        return 0 if last is None or first is None else last.number - first + 1

    def block_by_hash(self, block_hash: bytes) -> bytes | None:
        """SCALE(SignedBlock) of the block with this hash, if stored."""
        return self._kv.get(_check_hash(block_hash, "block hash"))

    def signed_block(self, block_hash: bytes) -> dict[str, Any] | None:
        """The decoded SignedBlock with this hash, if stored."""
        raw = self.block_by_hash(block_hash)
        if raw is None:
            return None
        value = SignedBlockCodec.decode(raw)
        assert isinstance(value, dict)
        return value

    def hash_by_number(self, shard: bytes, number: int) -> bytes | None:
        shard = _check_hash(shard, "shard")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 1 << 64:
            raise ValueError(f"a block number must be a u64, got {number!r}")
        return self._kv.get(_number_key(shard, number))

    def block_by_number(self, shard: bytes, number: int) -> bytes | None:
        block_hash = self.hash_by_number(shard, number)
        return None if block_hash is None else self._kv.get(block_hash)

    def _number_in_shard(self, shard: bytes, block_hash: bytes) -> int | None:
        """The number of a stored block of `shard` with this hash (None if not stored there)."""
        raw = self._kv.get(block_hash)
        if raw is None:
            return None
        try:
            header = stored_block_header(raw)
        except ScaleDecodeError as exc:
            raise SidechainDbError(f"stored block 0x{block_hash.hex()} is corrupt: {exc}") from exc
        number = int(header["block_number"])
        if bytes(header["shard_id"]) != shard:
            return None
        # The index check rules out a block that was stored and then replaced (it cannot be
        # with the storage rules, but the hash key alone would not prove it).
        if self._kv.get(_number_key(shard, number)) != block_hash:
            return None
        return number

    def block_range_after(
        self, shard: bytes, from_hash: bytes, until_hash: bytes | None = None
    ) -> tuple[int, int] | None:
        """The inclusive number range ]from, until[ of stored blocks, or None when empty.

        The zero `from_hash` means "from the oldest stored block". An unknown `from_hash` (not
        stored in this shard) gives None, as in the original (otherwise a peer would get blocks
        that do not extend its chain). An unknown `until_hash` means no upper bound.
        """
        shard = _check_hash(shard, "shard")
        from_hash = _check_hash(from_hash, "from hash")
        last, first = self._last.get(shard), self._first.get(shard)
        if last is None or first is None:
            return None
        if from_hash == ZERO_HASH:
            start = first
        else:
            from_number = self._number_in_shard(shard, from_hash)
            if from_number is None:
                return None
            start = from_number + 1
        end = last.number
        if until_hash is not None:
            until_hash = _check_hash(until_hash, "until hash")
            until_number = self._number_in_shard(shard, until_hash)
            if until_number is not None:
                end = min(end, until_number - 1)
        return (start, end) if start <= end else None

    def iter_blocks_after(
        self,
        shard: bytes,
        from_hash: bytes,
        until_hash: bytes | None = None,
        *,
        limit: int | None = None,
    ) -> Iterator[bytes]:
        """SCALE(SignedBlock)s after `from_hash` (exclusive) up to `until_hash` (exclusive),
        oldest first; see `block_range_after`. Stops early if pruning removes blocks meanwhile.
        """
        span = self.block_range_after(shard, from_hash, until_hash)
        if span is None:
            return
        start, end = span
        if limit is not None:
            if limit < 0:
                raise ValueError("limit must not be negative")
            end = min(end, start + limit - 1)
        number = start
        while number <= end:
            stop = min(end, number + _READ_CHUNK - 1)
            hashes = self._kv.get_many(_number_key(shard, n) for n in range(number, stop + 1))
            present: list[bytes] = []
            for block_hash in hashes:
                if block_hash is None:
                    break
                present.append(block_hash)
            for raw in self._kv.get_many(present):
                if raw is None:
                    return
                yield raw
            if len(present) < len(hashes):
                return  # pruned while we were reading
            number = stop + 1

    def blocks_after(
        self,
        shard: bytes,
        from_hash: bytes,
        until_hash: bytes | None = None,
        *,
        limit: int = DEFAULT_FETCH_LIMIT,
    ) -> list[bytes]:
        """Like `iter_blocks_after`, at most `limit` blocks (ask again from the last one)."""
        return list(self.iter_blocks_after(shard, from_hash, until_hash, limit=limit))

    def finalized_number(self, shard: bytes) -> int | None:
        """The last block number of `shard` confirmed on the parentchain (`mark_finalized`)."""
        raw = self._kv.get(_finalized_key(_check_hash(shard, "shard")))
        return None if raw is None else int.from_bytes(raw, "little")

    # -- writes --------------------------------------------------------------------------------

    def mark_finalized(self, shard: bytes, number: int) -> None:
        """Remember that block `number` of `shard` is confirmed on the parentchain.

        Pruning keeps that block and every later one; the metric
        `..._sidechain_last_finalized_block_number{shard}` reports it. Never moves backwards.
        """
        shard = _check_hash(shard, "shard")
        if not isinstance(number, int) or isinstance(number, bool) or not 0 <= number < 1 << 64:
            raise ValueError(f"a block number must be a u64, got {number!r}")
        with self._lock:
            current = self.finalized_number(shard)
            if current is None or number > current:
                self._kv.put(_finalized_key(shard), number.to_bytes(8, "little"))

    def store_blocks(self, blocks: Iterable[bytes | bytearray | dict[str, Any]]) -> StoreResult:
        """Store the blocks that extend their shard's chain, in order; one atomic batch.

        Items are SCALE(SignedBlock) bytes or decoded SignedBlock values. Blocks that break the
        rules are skipped (reported, with the reason), the others are stored: a block may
        extend one stored earlier in the same call. Raises `KVStoreError` when the write fails,
        in which case nothing was stored.
        """
        result = StoreResult()
        candidates: list[_Candidate] = []
        for index, item in enumerate(blocks):
            candidate = self._candidate(index, item, result)
            if candidate is not None:
                candidates.append(candidate)
        with self._lock:
            last = dict(self._last)
            new_shards: list[bytes] = []
            accepted: list[_Candidate] = []
            for c in candidates:
                skip = self._check_extends(c, last.get(c.shard))
                if skip is not None:
                    result.skipped.append(skip)
                    continue
                if c.shard not in last and c.shard not in new_shards:
                    new_shards.append(c.shard)
                last[c.shard] = LastBlock(c.hash, c.number)
                accepted.append(c)
            if accepted:
                self._write_accepted(accepted, last, new_shards)
            for c in accepted:
                result.stored.append(StoredBlock(c.index, c.shard, c.number, c.hash))
                self._first.setdefault(c.shard, c.number)
            self._last = last
            self._shards = self._shards + [s for s in new_shards if s not in self._shards]
        result.skipped.sort(key=lambda s: s.index)
        if result.stored:
            tops = {s.shard: s.number for s in result.stored}
            log.debug(
                "sidechain DB: stored %d block(s) (%s)",
                len(result.stored),
                ", ".join(f"0x{k.hex()[:8]}..#{v}" for k, v in tops.items()),
            )
        for s in result.skipped:
            log.warning("sidechain DB: block %d not stored (%s): %s", s.index, s.reason, s.detail)
        return result

    def _candidate(self, index: int, item: Any, result: StoreResult) -> _Candidate | None:
        try:
            if isinstance(item, bytes | bytearray | memoryview):
                encoded = bytes(item)
                value = SignedBlockCodec.decode(encoded)
            else:
                encoded = SignedBlockCodec.encode(item)
                value = SignedBlockCodec.decode(encoded)
        except (ScaleDecodeError, ScaleEncodeError, TypeError, KeyError, ValueError) as exc:
            kind = type(exc).__name__
            result.skipped.append(
                SkippedBlock(index, SkipReason.UNDECODABLE, f"not a SignedBlock: {kind}: {exc}")
            )
            return None
        header = value["block"]["header"]
        shard, number = bytes(header["shard_id"]), int(header["block_number"])
        block_hash = blake2_256(encoded[:HEADER_LEN])
        parent = bytes(header["parent_hash"])
        if number == 0:
            result.skipped.append(
                SkippedBlock(
                    index, SkipReason.ZERO_NUMBER, "block number 0", shard, number, block_hash
                )
            )
            return None
        if number == 1 and parent != ZERO_HASH:
            result.skipped.append(
                SkippedBlock(
                    index,
                    SkipReason.GENESIS_PARENT,
                    f"block 1 has the parent 0x{parent.hex()}, not the zero hash",
                    shard,
                    number,
                    block_hash,
                )
            )
            return None
        return _Candidate(index, encoded, shard, number, parent, block_hash)

    @staticmethod
    def _check_extends(c: _Candidate, last: LastBlock | None) -> SkippedBlock | None:
        if last is None:
            return None

        def skip(reason: SkipReason, detail: str) -> SkippedBlock:
            return SkippedBlock(c.index, reason, detail, c.shard, c.number, c.hash)

        if c.hash == last.hash:
            return skip(SkipReason.ALREADY_STORED, f"block #{c.number} is already stored")
        if c.number <= last.number:
            return skip(SkipReason.STALE, f"block #{c.number} is not after #{last.number}")
        if c.number > last.number + 1:
            return skip(SkipReason.GAP, f"block #{c.number} does not follow #{last.number}")
        if c.parent != last.hash:
            return skip(
                SkipReason.WRONG_PARENT,
                f"block #{c.number} has the parent 0x{c.parent.hex()}, "
                f"the stored #{last.number} is 0x{last.hash.hex()}",
            )
        return None

    def _write_accepted(
        self, accepted: list[_Candidate], last: dict[bytes, LastBlock], new_shards: list[bytes]
    ) -> None:
        batch: WriteBatch = self._kv.batch()
        for c in accepted:
            batch.put(c.hash, c.encoded)
            batch.put(_number_key(c.shard, c.number), c.hash)
        for shard in {c.shard for c in accepted}:
            top = last[shard]
            batch.put(
                _last_key(shard),
                LastSidechainBlockCodec.encode({"hash": top.hash, "number": top.number}),
            )
        if new_shards:
            all_shards = self._shards + [s for s in new_shards if s not in self._shards]
            batch.put(STORED_SHARDS_KEY, _ShardsCodec.encode(all_shards))
        self._kv.write(batch)

    def truncate_above(self, shard: bytes, number: int) -> int:
        """Drop the stored blocks of `shard` above `number` (the enclave switched to a fork);
        returns how many were dropped. One atomic batch."""
        with self._lock:
            last = self._last.get(shard)
            if last is None or last.number <= number:
                return 0
            first = self._first.get(shard, 1)
            batch: WriteBatch = self._kv.batch()
            dropped = 0
            for n in range(max(number + 1, first), last.number + 1):
                block_hash = self._kv.get(_number_key(shard, n))
                if block_hash is not None:
                    batch.delete(block_hash)
                    batch.delete(_number_key(shard, n))
                    dropped += 1
            keep_hash = self._kv.get(_number_key(shard, number)) if number >= first else None
            if keep_hash is None:
                batch.delete(_last_key(shard))
            else:
                batch.put(
                    _last_key(shard),
                    LastSidechainBlockCodec.encode({"hash": keep_hash, "number": number}),
                )
            self._kv.write(batch)
            if keep_hash is None:
                self._last.pop(shard, None)
                self._first.pop(shard, None)
            else:
                self._last[shard] = LastBlock(bytes(keep_hash), number)
        log.info("sidechain DB: dropped %d block(s) above #%d (fork switch)", dropped, number)
        return dropped

    # -- pruning -------------------------------------------------------------------------------

    def prune(
        self,
        shard: bytes,
        keep_newest: int = DEFAULT_KEEP_BLOCKS,
        keep_from_number: int | None = None,
    ) -> int:
        """Delete old blocks of `shard`; returns how many were deleted.

        Kept: the newest `keep_newest` blocks (at least 1: the last block always stays) and,
        when `keep_from_number` is given (the last block confirmed on the parentchain), that
        block and every later one. Deletion runs oldest first in atomic chunks, so an
        interruption leaves a contiguous chain.
        """
        shard = _check_hash(shard, "shard")
        if not isinstance(keep_newest, int) or keep_newest < 1:
            raise ValueError(f"keep_newest must be at least 1, got {keep_newest!r}")
        deleted = 0
        while True:
            with self._lock:
                last, first = self._last.get(shard), self._first.get(shard)
                if last is None or first is None:
                    return deleted
                keep_from = last.number - keep_newest + 1
                if keep_from_number is not None:
                    keep_from = min(keep_from, keep_from_number)
                stop = min(keep_from, first + _PRUNE_CHUNK)  # exclusive
                if first >= stop:
                    return deleted
                numbers = range(first, stop)
                hashes = self._kv.get_many(_number_key(shard, n) for n in numbers)
                batch = self._kv.batch()
                for n, block_hash in zip(numbers, hashes, strict=True):
                    if block_hash is not None:
                        batch.delete(block_hash)
                    batch.delete(_number_key(shard, n))
                self._kv.write(batch)
                self._first[shard] = stop
                deleted += len(numbers)

    def prune_all(
        self, keep_newest: int = DEFAULT_KEEP_BLOCKS, *, keep_finalized: bool = True
    ) -> dict[bytes, int]:
        """`prune` every shard, keeping its blocks from `finalized_number` on when known."""
        out: dict[bytes, int] = {}
        for shard in self.shards():
            keep_from = self.finalized_number(shard) if keep_finalized else None
            out[shard] = self.prune(shard, keep_newest, keep_from)
        return out

    async def prune_periodically(
        self,
        interval: float = DEFAULT_PRUNE_INTERVAL_S,
        keep_newest: int = DEFAULT_KEEP_BLOCKS,
        finalized: FinalizedSource | None = None,
    ) -> None:
        """Prune every `interval` seconds until cancelled (first round after one interval).

        `finalized(shard)` (sync or async) gives the last block number confirmed on the
        parentchain, or None; without it the numbers recorded by `mark_finalized` are used.
        A failing round is logged and the next one runs on schedule.
        """
        if interval <= 0:
            raise ValueError("the pruning interval must be positive")
        while True:
            await asyncio.sleep(interval)
            try:
                await self.prune_once(keep_newest, finalized)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("sidechain DB: pruning failed", exc_info=True)

    async def prune_once(
        self, keep_newest: int = DEFAULT_KEEP_BLOCKS, finalized: FinalizedSource | None = None
    ) -> dict[bytes, int]:
        """One pruning round over all shards, the deletions in a worker thread."""
        out: dict[bytes, int] = {}
        for shard in self.shards():
            if finalized is None:
                keep_from = self.finalized_number(shard)
            else:
                answer = finalized(shard)
                keep_from = await answer if inspect.isawaitable(answer) else answer
            out[shard] = await asyncio.to_thread(self.prune, shard, keep_newest, keep_from)
            if out[shard]:
                log.info(
                    "sidechain DB: pruned %d block(s) of shard 0x%s (kept from #%s)",
                    out[shard],
                    shard.hex(),
                    self.first_number(shard),
                )
        return out


def start_pruning(
    db: SidechainDb,
    interval: float = DEFAULT_PRUNE_INTERVAL_S,
    keep_newest: int = DEFAULT_KEEP_BLOCKS,
    finalized: FinalizedSource | None = None,
) -> asyncio.Task[None]:
    """Run `db.prune_periodically` as a task (cancel it on shutdown)."""
    task = asyncio.get_running_loop().create_task(
        db.prune_periodically(interval, keep_newest, finalized), name="sidechain-db-pruning"
    )
    return task


# -- Prometheus --------------------------------------------------------------------------------

BLOCK_HEIGHT_METRIC = "integritee_worker_enclave_sidechain_block_height"
LAST_FINALIZED_METRIC = "integritee_worker_enclave_sidechain_last_finalized_block_number"


class SidechainDbCollector(Collector):
    """The original's sidechain gauges, read from the DB at each scrape (never stale).

    - `integritee_worker_enclave_sidechain_block_height`: the highest stored block number
      (the enclave stores every block it produces or imports); 0 before the first block.
    - `integritee_worker_enclave_sidechain_last_finalized_block_number{shard}`: the number
      recorded by `mark_finalized` (the parentchain's LatestSidechainBlockConfirmation), per
      shard, labelled with the shard in base58 as the original does.
    """

    def __init__(self, db: SidechainDb, *, block_height: bool = True) -> None:
        self._db = db
        self._block_height = block_height

    def _families(self) -> tuple[GaugeMetricFamily | None, GaugeMetricFamily]:
        height = (
            GaugeMetricFamily(BLOCK_HEIGHT_METRIC, "Enclave sidechain block height")
            if self._block_height
            else None
        )
        finalized = GaugeMetricFamily(
            LAST_FINALIZED_METRIC,
            "Enclave sidechain last finalized block number (on L1)",
            labels=["shard"],
        )
        return height, finalized

    def describe(self) -> Iterator[Metric]:
        height, finalized = self._families()
        if height is not None:
            yield height
        yield finalized

    def collect(self) -> Iterator[Metric]:
        height, finalized = self._families()
        top = 0
        for shard in self._db.shards():
            last = self._db.last_block(shard)
            if last is not None:
                top = max(top, last.number)
            number = self._db.finalized_number(shard)
            if number is not None:
                finalized.add_metric([base58.b58encode(shard).decode()], number)
        if height is not None:
            height.add_metric([], top)
            yield height
        yield finalized


def register_sidechain_metrics(
    db: SidechainDb, registry: CollectorRegistry, *, block_height: bool = True
) -> SidechainDbCollector:
    """Register the sidechain gauges on `registry` (`block_height=False` when the registry
    already has its own `..._sidechain_block_height`: a duplicate name raises ValueError)."""
    collector = SidechainDbCollector(db, block_height=block_height)
    registry.register(collector)
    return collector
