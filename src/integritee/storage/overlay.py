"""Pending state changes over a read-only backend, with nested transactions (node blocks, STF).

Writes go into one dict (reads hit it first, then the backend); each open transaction keeps an
undo journal so a failed extrinsic dispatch can roll back exactly its own changes. `changes()`
is what the block commits into the trie.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

_MISSING = object()


class Overlay:
    def __init__(
        self,
        backend_get: Callable[[bytes], bytes | None],
        backend_iter: Callable[[bytes], Iterator[tuple[bytes, bytes]]] | None = None,
    ) -> None:
        self._get = backend_get
        self._iter = backend_iter
        self._changes: dict[bytes, bytes | None] = {}
        self._journals: list[dict[bytes, object]] = []

    def get(self, key: bytes) -> bytes | None:
        v = self._changes.get(key, _MISSING)
        if v is _MISSING:
            return self._get(key)
        return v  # type: ignore[return-value]

    def _record(self, key: bytes) -> None:
        if self._journals:
            journal = self._journals[-1]
            if key not in journal:
                journal[key] = self._changes.get(key, _MISSING)

    def set(self, key: bytes, value: bytes) -> None:
        self._record(key)
        self._changes[key] = value

    def delete(self, key: bytes) -> None:
        self._record(key)
        self._changes[key] = None

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """Merged, key-ordered view of the backend and the pending changes under `prefix`."""
        merged: dict[bytes, bytes | None] = {}
        if self._iter is not None:
            merged.update(self._iter(prefix))
        merged.update((k, v) for k, v in self._changes.items() if k.startswith(prefix))
        for k in sorted(merged):
            value = merged[k]
            if value is not None:
                yield k, value

    # --- transactions
    def start_transaction(self) -> None:
        self._journals.append({})

    def commit_transaction(self) -> None:
        journal = self._journals.pop()
        if self._journals:
            outer = self._journals[-1]
            for k, old in journal.items():
                outer.setdefault(k, old)

    def rollback_transaction(self) -> None:
        journal = self._journals.pop()
        for k, old in journal.items():
            if old is _MISSING:
                self._changes.pop(k, None)
            else:
                self._changes[k] = old  # type: ignore[assignment]

    def changes(self) -> dict[bytes, bytes | None]:
        if self._journals:
            raise RuntimeError("open storage transaction at commit")
        return self._changes
