"""The shard state: a plaintext key-value map in enclave memory, its trie root, and its encrypted
form at rest.

`ShardState` owns one shard's state. In memory it is the committed map, an `Overlay` of pending
changes (with nested transactions, so a failing call can be undone) and a `Trie` (state version 1)
kept in step with both: `root()` folds in only the keys touched since the last `root()`, so its
cost follows the number of changes, not the size of the state.

At rest every entry is stored on its own in a `KVStore` namespace:

    db_key = HMAC-SHA256(k_mac, storage_key)                         (32 bytes)
    value  = AES-256-GCM(k_enc, SCALE((storage_key, value)), aad=db_key)

with `k_mac = HKDF-SHA256(state_key, info=MAC_LABEL)` and `k_enc = HKDF-SHA256(state_key,
info=ENC_LABEL)` (no salt; the 32-byte state key is uniformly random). Database keys reveal
neither account ids nor which pallet an entry belongs to, and binding the ciphertext to its
`db_key` stops entries being swapped. One more record, `ROOT_RECORD_KEY`, holds the sealed state
root of the last commit: `load` rebuilds the trie and refuses a state whose root differs, which
catches deleted, added and replayed (older but authentic) entries.

`commit(batch)` puts only the changed entries (and deletes removed ones) into a caller-supplied
`WriteBatch`, so the caller can write the state together with, say, the sidechain block that
produced it, atomically. The in-memory state advances when `commit` returns; a caller whose batch
then fails to write must reload the state.

Not thread-safe: one shard state is driven by one thread (block production or import).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator, Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from integritee.codec.scale import Bytes, ScaleDecodeError, Tuple, Vec
from integritee.crypto import aead
from integritee.storage.kv import KVView, WriteBatch
from integritee.storage.overlay import Overlay
from integritee.trie import EMPTY_ROOT, MAX_KEY_LENGTH, Trie

STATE_KEY_LEN = 32
DB_KEY_LEN = 32
MAC_LABEL = b"integritee/enclave/shard-state/v1/entry-key-mac"
ENC_LABEL = b"integritee/enclave/shard-state/v1/entry-encryption"
ROOT_RECORD_KEY = b"root"  # shorter than an entry key, so the two can never collide
ROOT_RECORD_AAD = b"integritee/enclave/shard-state/v1/root-record"

Entry = Tuple(Bytes, Bytes)
Snapshot = Vec(Entry)

_MISSING = object()


class StateError(ValueError):
    """A shard state operation that cannot be done (bad key, open transaction, bad snapshot)."""


class StateCorruptedError(StateError):
    """Persisted state that fails authentication or consistency checks."""


def _hkdf(state_key: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(state_key)


class StateCipher:
    """The two keys derived from a shard's state key, and the entry format at rest."""

    __slots__ = ("_enc", "_mac")

    def __init__(self, state_key: bytes) -> None:
        if not isinstance(state_key, bytes | bytearray) or len(state_key) != STATE_KEY_LEN:
            raise StateError(f"the state key must be {STATE_KEY_LEN} bytes")
        key = bytes(state_key)
        self._mac = _hkdf(key, MAC_LABEL)
        self._enc = _hkdf(key, ENC_LABEL)

    def db_key(self, storage_key: bytes) -> bytes:
        return hmac.new(self._mac, storage_key, hashlib.sha256).digest()

    def seal_entry(self, db_key: bytes, key: bytes, value: bytes) -> bytes:
        return aead.encrypt(self._enc, Entry.encode((key, value)), db_key)

    def open_entry(self, db_key: bytes, blob: bytes) -> tuple[bytes, bytes]:
        try:
            plain = aead.decrypt(self._enc, blob, db_key)
        except aead.AeadError as exc:
            raise StateCorruptedError(
                f"state entry 0x{db_key.hex()} fails authentication "
                "(tampered, moved, or another state key)"
            ) from exc
        try:
            key, value = Entry.decode(plain)
        except ScaleDecodeError as exc:
            raise StateCorruptedError(
                f"state entry 0x{db_key.hex()}: bad encoding ({exc})"
            ) from exc
        if not hmac.compare_digest(self.db_key(key), db_key):
            raise StateCorruptedError(f"state entry 0x{db_key.hex()} is stored under a wrong key")
        return key, value

    def seal_root(self, root: bytes) -> bytes:
        return aead.encrypt(self._enc, root, ROOT_RECORD_AAD)

    def open_root(self, blob: bytes) -> bytes:
        try:
            root = aead.decrypt(self._enc, blob, ROOT_RECORD_AAD)
        except aead.AeadError as exc:
            raise StateCorruptedError(
                "the state root record fails authentication (tampered or another state key)"
            ) from exc
        if len(root) != 32:
            raise StateCorruptedError(f"the state root record holds {len(root)} bytes, not 32")
        return root


class ShardState:
    """One shard's state: committed map + pending overlay + incrementally maintained trie."""

    def __init__(self, state_key: bytes, entries: Mapping[bytes, bytes] | None = None) -> None:
        self._cipher = StateCipher(state_key)
        self._base: dict[bytes, bytes] = {}
        self._trie = Trie({}, None, 1)
        if entries:
            for key, value in entries.items():
                _check_key(key)
                _check_value(value)
                self._base[bytes(key)] = bytes(value)
                self._trie.set(bytes(key), bytes(value))
        self._new_overlay()

    def _new_overlay(self) -> None:
        self._overlay = Overlay(self._base.get, self._trie.iter_prefix)
        self._dirty: set[bytes] = set()
        self._depth = 0

    # -- persistence ---------------------------------------------------------------------------

    @classmethod
    def load(cls, view: KVView, state_key: bytes, expected_root: bytes | None = None) -> ShardState:
        """Decrypt every entry of `view` and rebuild the trie; an empty view is an empty state.

        Raises `StateCorruptedError` for an entry that fails authentication, a missing or
        tampered root record, or a rebuilt root that differs from the recorded one (or from
        `expected_root` when given)."""
        cipher = StateCipher(state_key)
        entries: dict[bytes, bytes] = {}
        root_blob: bytes | None = None
        for db_key, blob in view.iter_prefix(b""):
            if db_key == ROOT_RECORD_KEY:
                root_blob = blob
                continue
            if len(db_key) != DB_KEY_LEN:
                raise StateCorruptedError(f"unexpected key 0x{db_key.hex()} in the state namespace")
            key, value = cipher.open_entry(db_key, blob)
            entries[key] = value
        if root_blob is None:
            if entries:
                raise StateCorruptedError(
                    f"{len(entries)} state entries but no root record (incomplete write?)"
                )
            recorded = EMPTY_ROOT
        else:
            recorded = cipher.open_root(root_blob)
        state = cls(state_key, entries)
        rebuilt = state.root()
        if rebuilt != recorded:
            raise StateCorruptedError(
                f"rebuilt state root 0x{rebuilt.hex()} differs from the recorded root "
                f"0x{recorded.hex()}: entries were removed, added or rolled back"
            )
        if expected_root is not None and rebuilt != expected_root:
            raise StateCorruptedError(
                f"state root 0x{rebuilt.hex()} is not the expected 0x{bytes(expected_root).hex()}"
            )
        return state

    def commit(self, batch: WriteBatch) -> bytes:
        """Fold the pending changes into the committed state and queue their encrypted form in
        `batch` (a batch of the state's namespace, e.g. `view.batch()`); returns the new root."""
        self._require_no_transaction("commit")
        root = self.root()
        cipher = self._cipher
        base = self._base
        for key, value in self._overlay.changes().items():
            old = base.get(key)
            if value == old:
                continue
            db_key = cipher.db_key(key)
            if value is None:
                batch.delete(db_key)
                del base[key]
            else:
                batch.put(db_key, cipher.seal_entry(db_key, key, value))
                base[key] = value
        batch.put(ROOT_RECORD_KEY, cipher.seal_root(root))
        self._new_overlay()
        return root

    def write_all(self, batch: WriteBatch) -> bytes:
        """Queue every committed entry and the root record (for a fresh namespace, e.g. after
        provisioning); pending changes must be committed first."""
        self._require_no_transaction("write_all")
        if self.has_changes():
            raise StateError("commit the pending changes before writing the whole state")
        cipher = self._cipher
        for key, value in self._base.items():
            db_key = cipher.db_key(key)
            batch.put(db_key, cipher.seal_entry(db_key, key, value))
        root = self.root()
        batch.put(ROOT_RECORD_KEY, cipher.seal_root(root))
        return root

    # -- reads and writes ----------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        return self._overlay.get(key)

    def __contains__(self, key: bytes) -> bool:
        return self._overlay.get(key) is not None

    def set(self, key: bytes, value: bytes) -> None:
        self._dirty.add(key)
        self._overlay.set(key, value)

    def delete(self, key: bytes) -> None:
        self._dirty.add(key)
        self._overlay.delete(key)

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) under `prefix` in key order, pending changes included."""
        # The trie holds the committed map plus pending changes synced by root(); every synced
        # key is also in the overlay's changes, which the overlay lays on top, so the merge is
        # exactly committed + pending.
        return self._overlay.iter_prefix(prefix)

    def items(self) -> dict[bytes, bytes]:
        """The whole current map (committed + pending)."""
        self._require_no_transaction("items")
        merged = dict(self._base)
        for key, value in self._changes().items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = value
        return merged

    def __len__(self) -> int:
        return len(self.items()) if self._changes() else len(self._base)

    # -- transactions (a failing call rolls back exactly its own writes) -----------------------

    def start_transaction(self) -> None:
        self._overlay.start_transaction()
        self._depth += 1

    def commit_transaction(self) -> None:
        if not self._depth:
            raise StateError("no open transaction to commit")
        self._overlay.commit_transaction()
        self._depth -= 1

    def rollback_transaction(self) -> None:
        if not self._depth:
            raise StateError("no open transaction to roll back")
        self._overlay.rollback_transaction()
        self._depth -= 1

    @property
    def in_transaction(self) -> bool:
        return self._depth > 0

    def _require_no_transaction(self, what: str) -> None:
        if self._depth:
            raise StateError(f"{what} with an open storage transaction")

    # -- pending changes -----------------------------------------------------------------------

    def _changes(self) -> dict[bytes, bytes | None]:
        return self._overlay.changes()

    def changes(self) -> dict[bytes, bytes | None]:
        """The pending changes that differ from the committed state (a state diff)."""
        self._require_no_transaction("changes")
        base = self._base
        return {k: v for k, v in self._changes().items() if v != base.get(k)}

    def committed(self, key: bytes) -> bytes | None:
        """The committed value of `key` (what a commit of the pending changes would replace)."""
        return self._base.get(bytes(key))

    def has_changes(self) -> bool:
        self._require_no_transaction("has_changes")
        base = self._base
        return any(v != base.get(k) for k, v in self._changes().items())

    def apply_changes(self, diff: Mapping[bytes, bytes | None]) -> None:
        """Stage a state diff (None deletes), e.g. one imported from a sidechain block."""
        self._require_no_transaction("apply_changes")
        for key, value in diff.items():
            _check_key(key)
            if value is None:
                self.delete(bytes(key))
            else:
                _check_value(value)
                self.set(bytes(key), bytes(value))

    def discard(self) -> None:
        """Drop every pending change; the trie returns to the committed root."""
        self._require_no_transaction("discard")
        base = self._base
        for key in set(self._changes()) | self._dirty:
            old = base.get(key)
            if old is None:
                self._trie.delete(key)
            else:
                self._trie.set(key, old)
        self._new_overlay()

    def root(self) -> bytes:
        """The state root over committed + pending state (state version 1)."""
        self._require_no_transaction("root")
        if self._dirty:
            changes = self._changes()
            base = self._base
            trie = self._trie
            for key in self._dirty:
                value = changes.get(key, _MISSING)
                if value is _MISSING:
                    value = base.get(key)
                if value is None:
                    trie.delete(key)
                else:
                    trie.set(key, value)  # type: ignore[arg-type]
            self._dirty = set()
        return self._trie.root()

    # -- snapshots (provisioning another enclave) ----------------------------------------------

    def export(self) -> bytes:
        """SCALE `Vec<(Vec<u8>, Vec<u8>)>` of the current map in key order (plaintext: it must
        only leave the enclave encrypted to an attested peer)."""
        return Snapshot.encode(sorted(self.items().items()))

    def import_(self, snapshot: bytes) -> None:
        """Stage the replacement of the whole state by `snapshot` (commit to persist)."""
        self._require_no_transaction("import")
        entries = decode_snapshot(snapshot)
        current = self.items()
        for key in current:
            if key not in entries:
                self.delete(key)
        for key, value in entries.items():
            if current.get(key) != value:
                self.set(key, value)

    @classmethod
    def from_snapshot(cls, state_key: bytes, snapshot: bytes) -> ShardState:
        """A state holding exactly `snapshot`, as committed (persist it with `write_all`)."""
        return cls(state_key, decode_snapshot(snapshot))


def decode_snapshot(snapshot: bytes) -> dict[bytes, bytes]:
    try:
        items = Snapshot.decode(snapshot)
    except ScaleDecodeError as exc:
        raise StateError(f"bad state snapshot: {exc}") from exc
    entries: dict[bytes, bytes] = {}
    for key, value in items:
        if key in entries:
            raise StateError(f"bad state snapshot: key 0x{key.hex()} appears twice")
        _check_key(key)
        entries[key] = value
    return entries


def _check_key(key: object) -> None:
    if not isinstance(key, bytes | bytearray):
        raise StateError(f"state keys are bytes, not {type(key).__name__}")
    if len(key) > MAX_KEY_LENGTH:
        raise StateError(f"state keys are limited to {MAX_KEY_LENGTH} bytes, got {len(key)}")


def _check_value(value: object) -> None:
    if not isinstance(value, bytes | bytearray):
        raise StateError(f"state values are bytes, not {type(value).__name__}")
