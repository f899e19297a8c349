"""Persistent byte key-value store on RocksDB (rocksdict in raw mode) with atomic write batches.

`KVStore` owns one RocksDB database. Keys and values are raw bytes. Every write goes through the
write-ahead log: once `put`, `delete` or `write(batch)` returned, the data survives the process
being killed (`kill -9`). Surviving a power cut as well needs `sync=True` (an fsync per write).

Namespacing: `store.prefixed(b"hdr:")` returns a view whose keys are stored under that prefix
and which offers the same operations (views of views nest). One database with key prefixes,
rather than RocksDB column families, keeps a single write batch able to touch every namespace
atomically: `batch.prefixed(b"hdr:")` writes into the same batch under a prefix. Sibling prefixes
must not be prefixes of one another (b"a" and b"ab" would mix up their iterations); `prefixed`
refuses such a pair, so give namespaces fixed-length or terminated names (b"hdr:", b"blk:").

Reads see the latest committed writes; an `iter_prefix` iteration sees the database as it was when
the iteration started (RocksDB iterators read from an implicit snapshot).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import rocksdict


class KVStoreError(Exception):
    """The database could not be opened or an operation failed (I/O error, lock held, ...)."""


class KVStoreClosedError(KVStoreError):
    """The store was used after `close()`."""


Key = bytes | bytearray | memoryview


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise TypeError(f"{what} must be bytes, not {type(value).__name__}")


class _Namespaces:
    """The child prefixes handed out by one store or view, to refuse overlapping siblings."""

    def __init__(self) -> None:
        self._prefixes: set[bytes] = set()
        self._lock = threading.Lock()

    def claim(self, prefix: bytes) -> None:
        if not prefix:
            raise ValueError("a namespace prefix must not be empty")
        with self._lock:
            if prefix in self._prefixes:
                return
            for other in self._prefixes:
                if other.startswith(prefix) or prefix.startswith(other):
                    raise ValueError(
                        f"namespace prefix {prefix!r} overlaps the existing prefix {other!r}"
                    )
            self._prefixes.add(prefix)


class WriteBatch:
    """Puts and deletes applied together, atomically, by `KVStore.write` (or on context exit).

    Obtain it from `store.batch()` or `view.batch()`; `batch.prefixed(p)` shares the same batch
    under an extra key prefix. A batch is written at most once.
    """

    def __init__(self, store: KVStore, prefix: bytes = b"", shared: _BatchState | None = None):
        self._store = store
        self._prefix = prefix
        self._state = shared if shared is not None else _BatchState()

    def put(self, key: Key, value: Key) -> None:
        self._state.check_open()
        self._state.batch.put(self._prefix + _as_bytes(key, "key"), _as_bytes(value, "value"))

    def delete(self, key: Key) -> None:
        self._state.check_open()
        self._state.batch.delete(self._prefix + _as_bytes(key, "key"))

    def prefixed(self, prefix: bytes) -> WriteBatch:
        """The same batch, with `prefix` added in front of every key."""
        return WriteBatch(self._store, self._prefix + _as_bytes(prefix, "prefix"), self._state)

    def __len__(self) -> int:
        return int(self._state.batch.len())

    @property
    def written(self) -> bool:
        return self._state.written

    def write(self) -> None:
        """Apply the batch to its store."""
        self._store.write(self)

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None and not self._state.written:
            self.write()
        else:
            # An exception inside the block discards everything queued.
            self._state.written = True


class _BatchState:
    def __init__(self) -> None:
        self.batch = rocksdict.WriteBatch(raw_mode=True)
        self.written = False

    def check_open(self) -> None:
        if self.written:
            raise RuntimeError("this write batch was already written or discarded")


class KVView:
    """Store operations under a key prefix (the root store is the view with the empty prefix)."""

    def __init__(self, root: KVStore, prefix: bytes) -> None:
        self._root = root
        self._prefix = prefix
        self._namespaces = _Namespaces()

    @property
    def prefix(self) -> bytes:
        return self._prefix

    def _db(self) -> rocksdict.Rdict:
        return self._root._require_open()

    def get(self, key: Key) -> bytes | None:
        full = self._prefix + _as_bytes(key, "key")
        db = self._db()
        try:
            value = db.get(full)
        except rocksdict.DbClosedError as exc:
            raise KVStoreClosedError("the store is closed") from exc
        except Exception as exc:
            raise KVStoreError(str(exc)) from exc
        return None if value is None else bytes(value)

    def get_many(self, keys: Iterable[Key]) -> list[bytes | None]:
        full: list[Any] = [self._prefix + _as_bytes(key, "key") for key in keys]
        if not full:
            return []
        db = self._db()
        try:
            values: list[Any] = db.get(full) or []
        except rocksdict.DbClosedError as exc:
            raise KVStoreClosedError("the store is closed") from exc
        except Exception as exc:
            raise KVStoreError(str(exc)) from exc
        return [None if value is None else bytes(value) for value in values]

    def __contains__(self, key: Key) -> bool:
        return self.get(key) is not None

    def put(self, key: Key, value: Key) -> None:
        db = self._db()
        full = self._prefix + _as_bytes(key, "key")
        data = _as_bytes(value, "value")
        try:
            db.put(full, data, self._root._write_options)
        except rocksdict.DbClosedError as exc:
            raise KVStoreClosedError("the store is closed") from exc
        except Exception as exc:
            raise KVStoreError(str(exc)) from exc

    def delete(self, key: Key) -> None:
        db = self._db()
        full = self._prefix + _as_bytes(key, "key")
        try:
            db.delete(full, self._root._write_options)
        except rocksdict.DbClosedError as exc:
            raise KVStoreClosedError("the store is closed") from exc
        except Exception as exc:
            raise KVStoreError(str(exc)) from exc

    def iter_prefix(self, prefix: Key = b"") -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs whose key starts with `prefix`, in ascending key order.

        Keys are relative to this view (its own prefix removed).
        """
        full = self._prefix + _as_bytes(prefix, "prefix")
        strip = len(self._prefix)
        db = self._db()
        # No iterate_upper_bound: rocksdict does not keep the bound's memory alive for the
        # iterator's lifetime (observed: iterations ended early); the prefix check ends the scan.
        try:
            iterator = db.iter()
        except rocksdict.DbClosedError as exc:
            raise KVStoreClosedError("the store is closed") from exc
        return self._iterate(iterator, full, strip)

    def _iterate(
        self, iterator: rocksdict.RdictIter, full: bytes, strip: int
    ) -> Iterator[tuple[bytes, bytes]]:
        try:
            iterator.seek(full)
            while iterator.valid():
                key = bytes(iterator.key())
                if not key.startswith(full):
                    break
                yield key[strip:], bytes(iterator.value())
                self._root._require_open()
                iterator.next()
            iterator.status()
        except KVStoreError:
            raise
        except rocksdict.DbClosedError as exc:
            raise KVStoreClosedError("the store is closed") from exc
        except Exception as exc:
            raise KVStoreError(str(exc)) from exc
        finally:
            # The iterator pins the database open; release it promptly.
            del iterator

    def batch(self) -> WriteBatch:
        """A new write batch whose keys go under this view's prefix."""
        self._db()
        return WriteBatch(self._root, self._prefix)

    def write(self, batch: WriteBatch) -> None:
        """Apply `batch` atomically (all of it or, on error, none of it)."""
        self._root.write(batch)

    def prefixed(self, prefix: Key) -> KVView:
        """A view of the keys under `prefix` (relative to this view)."""
        relative = _as_bytes(prefix, "prefix")
        self._namespaces.claim(relative)
        return KVView(self._root, self._prefix + relative)


class KVStore(KVView):
    """A RocksDB database of raw byte keys and values. Thread-safe; use `KVStore.open`."""

    def __init__(self, db: rocksdict.Rdict, path: Path, sync: bool) -> None:
        super().__init__(self, b"")
        self._rdict: rocksdict.Rdict | None = db
        self._path = path
        # The WAL is on by default (never disabled here): a returned write survives a killed
        # process; `sync` adds an fsync per write for power loss.
        self._write_options = rocksdict.WriteOptions()
        self._write_options.sync = sync
        self._close_lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path, *, sync: bool = False) -> KVStore:
        """Open (creating it and its parent directories if needed) the database at `path`.

        `sync=True` fsyncs the log on every write: durable across power loss, much slower.
        """
        db_path = Path(path)
        db_path.mkdir(parents=True, exist_ok=True)
        options = rocksdict.Options(raw_mode=True)
        options.create_if_missing(True)
        try:
            db = rocksdict.Rdict(str(db_path), options)
        except Exception as exc:
            raise KVStoreError(f"cannot open the database at {db_path}: {exc}") from exc
        return cls(db, db_path, sync)

    @property
    def path(self) -> Path:
        return self._path

    @property
    def closed(self) -> bool:
        return self._rdict is None

    def _require_open(self) -> rocksdict.Rdict:
        db = self._rdict
        if db is None:
            raise KVStoreClosedError("the store is closed")
        return db

    def write(self, batch: WriteBatch) -> None:
        if batch._store is not self:
            raise ValueError("this write batch belongs to another store")
        state = batch._state
        state.check_open()
        db = self._require_open()
        try:
            db.write(state.batch, self._write_options)
        except rocksdict.DbClosedError as exc:
            raise KVStoreClosedError("the store is closed") from exc
        except Exception as exc:
            raise KVStoreError(str(exc)) from exc
        finally:
            # rocksdict consumes the batch even when the write fails.
            state.written = True

    def close(self) -> None:
        """Flush and close; idempotent. Later operations raise `KVStoreClosedError`."""
        with self._close_lock:
            db, self._rdict = self._rdict, None
            if db is not None:
                try:
                    db.close()
                except Exception as exc:
                    raise KVStoreError(f"closing {self._path} failed: {exc}") from exc

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
