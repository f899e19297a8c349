"""ShardState: incremental root, transactions, encrypted persistence, tamper detection, snapshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.codec.scale import Bytes, Tuple, Vec
from integritee.crypto.keys import dev_keypair
from integritee.enclave.stf.runtime import Keys, Runtime
from integritee.enclave.stf.state import (
    ROOT_RECORD_KEY,
    ShardState,
    StateCorruptedError,
    StateError,
)
from integritee.storage.kv import KVStore
from integritee.trie import EMPTY_ROOT, trie_root

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[KVStore]:
    with KVStore.open(tmp_path / "db") as db:
        yield db


def _commit(state: ShardState, store: KVStore, ns: bytes = b"state:") -> bytes:
    view = store.prefixed(ns)
    batch = view.batch()
    root = state.commit(batch)
    batch.write()
    return root


def test_empty_state() -> None:
    state = ShardState(KEY)
    assert state.root() == EMPTY_ROOT
    assert state.changes() == {} and len(state) == 0
    with pytest.raises(StateError, match="32 bytes"):
        ShardState(b"short")


def test_root_matches_trie_root_and_pending_changes() -> None:
    state = ShardState(KEY, {b"a": b"1", b"b": b"2"})
    assert state.root() == trie_root({b"a": b"1", b"b": b"2"})
    state.set(b"c", b"3")
    state.delete(b"a")
    state.set(b"b", b"2")  # same as committed: no change
    assert state.get(b"c") == b"3" and state.get(b"a") is None and b"b" in state
    assert state.root() == trie_root({b"b": b"2", b"c": b"3"})
    assert state.changes() == {b"c": b"3", b"a": None}
    state.discard()
    assert state.root() == trie_root({b"a": b"1", b"b": b"2"})
    assert state.get(b"a") == b"1" and state.get(b"c") is None


def test_transactions_roll_back_only_their_writes() -> None:
    state = ShardState(KEY)
    state.set(b"x", b"1")
    state.start_transaction()
    state.set(b"x", b"2")
    state.set(b"y", b"3")
    with pytest.raises(StateError, match="open storage transaction"):
        state.root()
    state.start_transaction()
    state.delete(b"x")
    state.rollback_transaction()
    assert state.get(b"x") == b"2"
    state.rollback_transaction()
    assert state.get(b"x") == b"1" and state.get(b"y") is None
    assert state.root() == trie_root({b"x": b"1"})
    with pytest.raises(StateError, match="no open transaction"):
        state.rollback_transaction()


def test_iter_prefix_merges_committed_and_pending() -> None:
    state = ShardState(KEY, {b"p1": b"a", b"p2": b"b", b"q": b"c"})
    state.root()
    state.set(b"p3", b"d")
    state.delete(b"p1")
    assert list(state.iter_prefix(b"p")) == [(b"p2", b"b"), (b"p3", b"d")]
    state.root()  # synced into the trie: still the same view
    assert list(state.iter_prefix(b"p")) == [(b"p2", b"b"), (b"p3", b"d")]


_keys = st.binary(min_size=0, max_size=6)
_ops = st.lists(
    st.tuples(
        st.sampled_from(["set", "delete", "root", "begin", "commit_tx", "rollback", "discard"]),
        _keys,
        st.binary(max_size=40),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(_keys, st.binary(max_size=40), max_size=10), _ops)
def test_root_equals_trie_root_of_final_map(initial: dict[bytes, bytes], ops: list) -> None:
    state = ShardState(KEY, initial)
    model = dict(initial)
    committed = dict(initial)
    stack: list[dict[bytes, bytes]] = []
    for op, key, value in ops:
        if op == "set":
            state.set(key, value)
            model[key] = value
        elif op == "delete":
            state.delete(key)
            model.pop(key, None)
        elif op == "begin":
            state.start_transaction()
            stack.append(dict(model))
        elif op == "commit_tx" and stack:
            state.commit_transaction()
            stack.pop()
        elif op == "rollback" and stack:
            state.rollback_transaction()
            model = stack.pop()
        elif op == "root" and not stack:
            assert state.root() == trie_root(model)
        elif op == "discard" and not stack:
            state.discard()
            model = dict(committed)
    while stack:
        state.rollback_transaction()
        model = stack.pop()
    assert state.root() == trie_root(model)
    assert state.items() == model
    assert {k: v for k, v in state.changes().items()} == {
        k: model.get(k) for k in set(model) | set(committed) if model.get(k) != committed.get(k)
    }


def test_commit_load_round_trip(store: KVStore) -> None:
    state = ShardState(KEY)
    for i in range(50):
        state.set(b"key-%d" % i, b"value-%d" % i)
    root = _commit(state, store)
    assert root == trie_root({b"key-%d" % i: b"value-%d" % i for i in range(50)})
    loaded = ShardState.load(store.prefixed(b"state:"), KEY, expected_root=root)
    assert loaded.root() == root
    assert loaded.items() == state.items()
    # a second commit writes only the changes (+ the root record)
    loaded.set(b"key-1", b"new")
    loaded.delete(b"key-2")
    loaded.set(b"key-1000", b"x")
    batch = store.prefixed(b"state:").batch()
    root2 = loaded.commit(batch)
    assert len(batch) == 4
    batch.write()
    again = ShardState.load(store.prefixed(b"state:"), KEY, expected_root=root2)
    assert again.get(b"key-1") == b"new" and again.get(b"key-2") is None
    assert again.root() == root2 != root
    with pytest.raises(StateCorruptedError, match="not the expected"):
        ShardState.load(store.prefixed(b"state:"), KEY, expected_root=root)


def test_load_empty_namespace(store: KVStore) -> None:
    state = ShardState.load(store.prefixed(b"state:"), KEY)
    assert state.root() == EMPTY_ROOT


def _entries(store: KVStore) -> dict[bytes, bytes]:
    return dict(store.prefixed(b"state:").iter_prefix(b""))


def test_tampered_entries_are_detected(store: KVStore) -> None:
    state = ShardState(KEY, {b"alice": b"100", b"bob": b"200"})
    batch = store.prefixed(b"state:").batch()
    state.write_all(batch)
    batch.write()
    view = store.prefixed(b"state:")
    entries = _entries(store)
    db_keys = sorted(k for k in entries if k != ROOT_RECORD_KEY)
    first, second = db_keys

    flipped = bytearray(entries[first])
    flipped[20] ^= 0x01
    view.put(first, bytes(flipped))
    with pytest.raises(StateCorruptedError, match=f"0x{first.hex()} fails authentication"):
        ShardState.load(view, KEY)

    view.put(first, entries[second])  # an authentic blob moved under another key
    with pytest.raises(StateCorruptedError, match="fails authentication"):
        ShardState.load(view, KEY)

    view.put(first, entries[first])
    view.delete(second)  # a removed entry
    with pytest.raises(StateCorruptedError, match="differs from the recorded root"):
        ShardState.load(view, KEY)

    view.put(second, entries[second])
    assert ShardState.load(view, KEY).items() == {b"alice": b"100", b"bob": b"200"}
    with pytest.raises(StateCorruptedError, match="another state key"):
        ShardState.load(view, OTHER_KEY)

    view.put(ROOT_RECORD_KEY, entries[ROOT_RECORD_KEY][:-1] + b"\x00")
    with pytest.raises(StateCorruptedError, match="root record"):
        ShardState.load(view, KEY)
    view.delete(ROOT_RECORD_KEY)
    with pytest.raises(StateCorruptedError, match="no root record"):
        ShardState.load(view, KEY)

    view.put(ROOT_RECORD_KEY, entries[ROOT_RECORD_KEY])
    view.put(b"junk", b"x")
    with pytest.raises(StateCorruptedError, match="unexpected key"):
        ShardState.load(view, KEY)


def test_replayed_old_entry_is_detected(store: KVStore) -> None:
    state = ShardState(KEY, {b"alice": b"100"})
    view = store.prefixed(b"state:")
    batch = view.batch()
    state.write_all(batch)
    batch.write()
    (db_key,) = [k for k in _entries(store) if k != ROOT_RECORD_KEY]
    old_blob = view.get(db_key)
    state.set(b"alice", b"0")
    _commit(state, store)
    view.put(db_key, old_blob)  # authentic, but older than the root record
    with pytest.raises(StateCorruptedError, match="rolled back"):
        ShardState.load(view, KEY)


def test_raw_database_reveals_no_account_or_balance(tmp_path: Path) -> None:
    who = dev_keypair("Dave").public_key
    amount = 0x1234_5678_9ABC_DEF0_1357_9BDF
    state = ShardState(KEY)
    Runtime(state).force_set_balance(who, amount)
    account_key = Keys.account(who)
    encoded_info = state.get(account_key)
    assert encoded_info is not None and amount.to_bytes(16, "little") in encoded_info
    marker = b"plaintext-control-" + bytes(range(200, 232))
    with KVStore.open(tmp_path / "db") as db:
        view = db.prefixed(b"state:")
        batch = view.batch()
        state.commit(batch)
        batch.write()
        db.prefixed(b"other:").put(b"control", marker)  # proves the scan sees stored bytes
    raw = b"".join(p.read_bytes() for p in (tmp_path / "db").rglob("*") if p.is_file())
    assert marker in raw
    assert who not in raw
    assert amount.to_bytes(16, "little") not in raw
    assert account_key[32:48] not in raw  # the blake2_128 part of the storage key
    assert encoded_info not in raw
    with KVStore.open(tmp_path / "db") as db:
        loaded = ShardState.load(db.prefixed(b"state:"), KEY)
    assert Runtime(loaded).free_balance(who) == amount


def test_export_import_snapshot(store: KVStore) -> None:
    state = ShardState(KEY)
    for i in range(30):
        state.set(b"k%02d" % i, b"v%d" % i)
    state.set(b"empty", b"")
    root = state.root()
    snapshot = state.export()
    assert Vec(Tuple(Bytes, Bytes)).decode(snapshot)[0] == (b"empty", b"")
    copy = ShardState.from_snapshot(OTHER_KEY, snapshot)
    assert copy.root() == root and copy.items() == state.items()
    batch = store.prefixed(b"copy:").batch()
    assert copy.write_all(batch) == root
    batch.write()
    assert ShardState.load(store.prefixed(b"copy:"), OTHER_KEY).root() == root

    other = ShardState(KEY, {b"k00": b"different", b"stale": b"gone"})
    other.import_(snapshot)
    assert other.root() == root
    assert _commit(other, store) == root
    assert ShardState.load(store.prefixed(b"state:"), KEY).items() == state.items()

    with pytest.raises(StateError, match="bad state snapshot"):
        ShardState.from_snapshot(KEY, b"\x04\x00")
    duplicate = Vec(Tuple(Bytes, Bytes)).encode([(b"a", b"1"), (b"a", b"2")])
    with pytest.raises(StateError, match="appears twice"):
        ShardState.from_snapshot(KEY, duplicate)


def test_apply_changes_reproduces_the_root() -> None:
    base = {b"a": b"1", b"b": b"2", b"c": b"3"}
    producer = ShardState(KEY, base)
    importer = ShardState(OTHER_KEY, base)
    apriori = producer.root()
    producer.set(b"a", b"10")
    producer.delete(b"b")
    producer.set(b"d", b"4")
    diff = producer.changes()
    assert importer.root() == apriori
    importer.apply_changes(diff)
    assert importer.root() == producer.root()
    with pytest.raises(StateError):
        importer.apply_changes({"text": b"x"})  # type: ignore[dict-item]
