"""The Trie: the real Integritee-Kusama genesis vector, an independent reference root, incremental
updates, commit/reload, branch collapsing, lazy value migration, iteration and laziness."""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.codec.scale import encode_compact
from integritee.trie import (
    EMPTY_ROOT,
    MissingNodeError,
    Trie,
    TrieError,
    decode_node,
    ordered_trie_root,
    trie_root,
)

CHAIN_SPEC = (
    Path(__file__).resolve().parents[2]
    / ".."
    / "shared"
    / "fixtures"
    / "chain-specs"
    / "integritee-kusama.json"
)
INTEGRITEE_KUSAMA_GENESIS = "cdedc8eadbfa209d3f207bba541e57c3c58a667b05a2e1d1e86353c9000758da"


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


# ---------------------------------------------------------------------------------------------
# An independent, deliberately naive reference: builds the root recursively from the sorted set of
# (nibble tuple, value) pairs, straight from the encoding rules (no shared code with the trie).


def _ref_header(prefix: int, bits: int, count: int) -> bytes:
    max_value = 255 >> bits
    first = min(max_value - 1, count)
    if count == first:
        return bytes([prefix + first])
    out = [prefix + max_value]
    rem = count - first
    while rem > 0:
        if rem < 256:
            out.append(rem - 1)
            rem = 0
        else:
            out.append(255)
            rem -= 255
    return bytes(out)


def _ref_partial(nibbles: tuple[int, ...]) -> bytes:
    out = []
    if len(nibbles) % 2:
        out.append(nibbles[0])
        nibbles = nibbles[1:]
    for i in range(0, len(nibbles), 2):
        out.append(nibbles[i] * 16 + nibbles[i + 1])
    return bytes(out)


def _ref_node(entries: list[tuple[tuple[int, ...], bytes, bool]], depth: int) -> bytes:
    first = entries[0][0]
    end = depth
    while all(len(p) > end and p[end] == first[end] for p, _, _ in entries):
        end += 1
    partial = first[depth:end]
    here = [e for e in entries if len(e[0]) == end]
    below = [e for e in entries if len(e[0]) > end]
    value_part = b""
    hashed = False
    if here:
        _, value, hashed = here[0]
        value_part = blake2_256(value) if hashed else encode_compact(len(value)) + value
    if not below:
        prefix, bits = (0x20, 3) if hashed else (0x40, 2)
        return _ref_header(prefix, bits, len(partial)) + _ref_partial(partial) + value_part
    if not here:
        prefix, bits = 0x80, 2
    elif hashed:
        prefix, bits = 0x10, 4
    else:
        prefix, bits = 0xC0, 2
    bitmap = 0
    children = b""
    for nibble in range(16):
        group = [e for e in below if e[0][end] == nibble]
        if not group:
            continue
        bitmap |= 1 << nibble
        enc = _ref_node(group, end + 1)
        children += encode_compact(len(enc)) + enc if len(enc) < 32 else b"\x80" + blake2_256(enc)
    return (
        _ref_header(prefix, bits, len(partial))
        + _ref_partial(partial)
        + bitmap.to_bytes(2, "little")
        + value_part
        + children
    )


def reference_root(
    items: Mapping[bytes, bytes], version: int, inline_keys: frozenset[bytes] = frozenset()
) -> bytes:
    """Root of `items`; keys in `inline_keys` keep an inline value whatever the version."""
    entries = sorted(
        (
            tuple(n for b in k for n in (b >> 4, b & 15)),
            v,
            version == 1 and len(v) >= 33 and k not in inline_keys,
        )
        for k, v in items.items()
    )
    if not entries:
        return blake2_256(b"\x00")
    return blake2_256(_ref_node(entries, 0))


# ---------------------------------------------------------------------------------------------
# Real vector


def test_integritee_kusama_genesis_hash() -> None:
    spec = json.loads(CHAIN_SPEC.read_text())
    top = {
        bytes.fromhex(k.removeprefix("0x")): bytes.fromhex(v.removeprefix("0x"))
        for k, v in spec["genesis"]["raw"]["top"].items()
    }
    assert len(top) == 27
    state_root = trie_root(top, state_version=0)
    assert state_root == reference_root(top, 0)
    assert ordered_trie_root([]) == EMPTY_ROOT
    header = bytes(32) + encode_compact(0) + state_root + ordered_trie_root([]) + encode_compact(0)
    assert blake2_256(header).hex() == INTEGRITEE_KUSAMA_GENESIS
    # The same storage under state version 1 (the :code value is hashed) gives another root.
    assert trie_root(top, state_version=1) != state_root
    assert trie_root(top, state_version=1) == reference_root(top, 1)


def test_ordered_trie_root_uses_compact_indices() -> None:
    values = [bytes([i]) * (i * 7 % 50) for i in range(70)]  # crosses the 1- and 2-byte compacts
    expected = trie_root({encode_compact(i): v for i, v in enumerate(values)})
    assert ordered_trie_root(values) == expected
    assert ordered_trie_root(values) == reference_root(
        {encode_compact(i): v for i, v in enumerate(values)}, 1
    )
    indexed = {encode_compact(i): v for i, v in enumerate(values)}
    assert ordered_trie_root(values, 0) == reference_root(indexed, 0) != ordered_trie_root(values)


# ---------------------------------------------------------------------------------------------
# Properties

keys = st.lists(st.sampled_from([0x00, 0x01, 0x10, 0x11, 0x1F, 0xF0, 0xFF]), max_size=5).map(bytes)
values = st.binary(max_size=60)
versions = st.sampled_from([0, 1])


@given(st.dictionaries(keys, values, max_size=30), versions, st.randoms(use_true_random=False))
@settings(max_examples=150, deadline=None)
def test_root_is_independent_of_insertion_order(
    items: dict[bytes, bytes], version: int, rnd: random.Random
) -> None:
    expected = reference_root(items, version)
    order = list(items.items())
    for _ in range(3):
        rnd.shuffle(order)
        trie = Trie({}, state_version=version)
        for k, v in order:
            trie.set(k, v)
        assert trie.root() == expected
    assert trie_root(items, version) == expected


ops = st.lists(st.tuples(keys, st.one_of(st.none(), values)), max_size=60)


@given(ops, versions)
@settings(max_examples=200, deadline=None)
def test_incremental_updates_match_one_shot_root(
    changes: list[tuple[bytes, bytes | None]], version: int
) -> None:
    store: dict[bytes, bytes] = {}
    trie = Trie(store, state_version=version)
    model: dict[bytes, bytes] = {}
    for i, (k, v) in enumerate(changes):
        if v is None:
            trie.delete(k)
            model.pop(k, None)
        else:
            trie.set(k, v)
            model[k] = v
        if i % 7 == 0:
            assert trie.root() == reference_root(model, version)
        if i % 11 == 0:
            root, nodes = trie.commit()
            store.update(nodes)
    assert trie.root() == reference_root(model, version)
    assert trie_root(model, version) == trie.root()
    for k in {k for k, _ in changes}:
        assert trie.get(k) == model.get(k)


@given(st.dictionaries(keys, values, max_size=30), ops, versions)
@settings(max_examples=150, deadline=None)
def test_commit_and_reload(
    items: dict[bytes, bytes], changes: list[tuple[bytes, bytes | None]], version: int
) -> None:
    store: dict[bytes, bytes] = {}
    trie = Trie(store, state_version=version)
    for k, v in items.items():
        trie.set(k, v)
    root1, nodes1 = trie.commit()
    store.update(nodes1)
    assert trie.commit() == (root1, {})  # nothing changed, nothing new
    for h, enc in nodes1.items():
        assert blake2_256(enc) == h
        assert len(enc) >= 32 or h == root1  # inline nodes are never stored on their own

    trie.apply(changes)
    model = dict(items)
    for k, change in changes:
        if change is None:
            model.pop(k, None)
        else:
            model[k] = change
    root2, nodes2 = trie.commit()
    store.update(nodes2)
    assert root2 == reference_root(model, version)

    for root, expected in ((root1, items), (root2, model)):
        reloaded = Trie(store, root, state_version=version)
        assert reloaded.root() == root
        for k in set(items) | set(model) | {b"\x42"}:
            assert reloaded.get(k) == expected.get(k)
        assert dict(reloaded.iter_prefix()) == expected


@given(st.dictionaries(keys, values, max_size=25), st.dictionaries(keys, values, max_size=10))
@settings(max_examples=200, deadline=None)
def test_insert_then_delete_restores_root(
    base: dict[bytes, bytes], extra: dict[bytes, bytes]
) -> None:
    store: dict[bytes, bytes] = {}
    trie = Trie(store)
    for k, v in base.items():
        trie.set(k, v)
    root, nodes = trie.commit()
    store.update(nodes)
    added = {k: v for k, v in extra.items() if k not in base}
    for k, v in added.items():
        trie.set(k, v)
    for k in added:
        trie.delete(k)
    assert trie.root() == root
    # Also when the insertions went through the store first.
    reloaded = Trie(store, root)
    for k, v in added.items():
        reloaded.set(k, v)
    root_with, nodes_with = reloaded.commit()
    store.update(nodes_with)
    reloaded = Trie(store, root_with)
    for k in added:
        reloaded.delete(k)
    assert reloaded.root() == root


def test_delete_absent_key_and_same_value_are_no_ops() -> None:
    store: dict[bytes, bytes] = {}
    trie = Trie(store)
    for i in range(50):
        trie.set(bytes([i, i]), bytes([i]) * 40)
    root, nodes = trie.commit()
    store.update(nodes)
    trie.delete(b"\x99\x99")
    trie.delete(b"\x01")
    trie.set(b"\x05\x05", bytes([5]) * 40)
    assert trie.commit() == (root, {})


def test_empty_value_is_stored_not_deleted() -> None:
    trie = Trie({})
    trie.set(b"k", b"")
    assert trie.get(b"k") == b""
    assert trie.root() != EMPTY_ROOT
    trie.delete(b"k")
    assert trie.root() == EMPTY_ROOT and trie.get(b"k") is None


def test_state_versions_agree_below_threshold_and_differ_above() -> None:
    small = {bytes([i]): bytes([i]) * 32 for i in range(40)}
    assert trie_root(small, 0) == trie_root(small, 1)
    large = {**small, b"\x00big": b"x" * 33}
    assert trie_root(large, 0) != trie_root(large, 1)


def test_version_1_stores_hashed_values() -> None:
    value = b"v" * 100
    trie = Trie({}, state_version=1)
    trie.set(b"key", value)
    root, nodes = trie.commit()
    assert nodes[blake2_256(value)] == value
    root_node = decode_node(nodes[root])
    assert root_node is not None and root_node.vhash == blake2_256(value)
    assert nodes[root][0] >> 5 == 1  # leaf with hashed value
    # Reading back through the store loads the value by its hash.
    reloaded = Trie(nodes, root)
    assert reloaded.get(b"key") == value
    # A store missing the value is reported precisely.
    del nodes[blake2_256(value)]
    with pytest.raises(MissingNodeError):
        Trie(nodes, root).get(b"key")


def test_old_inline_values_stay_inline_until_rewritten() -> None:
    """Substrate's lazy migration: a v0 node read by a v1 trie keeps its inline value."""
    items = {b"\x01" + bytes([i]): bytes([i]) * 50 for i in range(20)}
    store: dict[bytes, bytes] = {}
    v0 = Trie(store, state_version=0)
    for k, v in items.items():
        v0.set(k, v)
    root0, nodes = v0.commit()
    store.update(nodes)
    v1 = Trie(store, root0, state_version=1)
    v1.set(b"\x02", b"n" * 40)
    model = {**items, b"\x02": b"n" * 40}
    assert v1.root() == reference_root(model, 1, inline_keys=frozenset(items))
    v1.set(b"\x01\x03", items[b"\x01\x03"])  # rewriting migrates that value only
    assert v1.root() == reference_root(model, 1, inline_keys=frozenset(items) - {b"\x01\x03"})
    for k in items:
        v1.set(k, items[k])
    assert v1.root() == trie_root(model, 1)


def test_unknown_root_and_missing_nodes() -> None:
    with pytest.raises(MissingNodeError):
        Trie({}, b"\x11" * 32)
    with pytest.raises(TrieError):
        Trie({}, b"\x11" * 31)
    store: dict[bytes, bytes] = {}
    trie = Trie(store)
    for i in range(200):
        trie.set(bytes([i]) * 3, bytes([i]) * 40)
    root, nodes = trie.commit()
    child_hashes = [h for h in nodes if h != root]
    broken = {h: e for h, e in nodes.items() if h != child_hashes[0]}
    reloaded = Trie(broken, root)
    with pytest.raises(MissingNodeError):
        for i in range(200):
            reloaded.get(bytes([i]) * 3)
    assert Trie({}, EMPTY_ROOT).root() == EMPTY_ROOT


def test_key_length_limit() -> None:
    with pytest.raises(TrieError):
        Trie({}).set(b"k" * 32768, b"v")
    trie = Trie({})
    trie.set(b"k" * 32767, b"v")  # the longest key a header can describe
    assert trie.get(b"k" * 32767) == b"v"
    root, nodes = trie.commit()
    assert Trie(nodes, root).get(b"k" * 32767) == b"v"


class CountingStore(dict[bytes, bytes]):
    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.reads = 0

    def get(self, key: bytes, default: bytes | None = None) -> bytes | None:  # type: ignore[override]
        self.reads += 1
        return super().get(key, default)


def test_work_follows_changes_not_state_size() -> None:
    rnd = random.Random(7)
    items = {rnd.randbytes(32): rnd.randbytes(40) for _ in range(3000)}
    store = CountingStore()
    trie = Trie(store)
    for k, v in items.items():
        trie.set(k, v)
    root, nodes = trie.commit()
    store.update(nodes)

    reloaded = Trie(store, root)
    key = next(iter(items))
    store.reads = 0
    assert reloaded.get(key) == items[key]
    assert store.reads <= 6  # one path, loaded lazily
    reloaded.set(key, b"changed" * 10)
    new_root, new_nodes = reloaded.commit()
    assert store.reads <= 6
    # Only the changed path (root .. leaf) is new, plus the new hashed value.
    assert 2 <= len(new_nodes) <= 7
    assert new_root == trie_root({**items, key: b"changed" * 10})


def test_iter_prefix_on_small_trie() -> None:
    items = {b"": b"e", b"a": b"1", b"ab": b"2", b"abc": b"3", b"b": b"4", b"ba": b"5"}
    trie = Trie({})
    for k, v in items.items():
        trie.set(k, v)
    assert list(trie.iter_prefix()) == sorted(items.items())
    assert list(trie.iter_prefix(b"a")) == [(b"a", b"1"), (b"ab", b"2"), (b"abc", b"3")]
    assert list(trie.iter_keys(b"a", start_after=b"a")) == [b"ab", b"abc"]
    assert list(trie.iter_keys(start_after=b"abc")) == [b"b", b"ba"]
    assert list(trie.iter_keys(b"c")) == []
    assert list(Trie({}).iter_prefix()) == []


@given(
    st.dictionaries(keys, values, max_size=30),
    keys,
    st.one_of(st.none(), keys),
    versions,
)
@settings(max_examples=200, deadline=None)
def test_iter_prefix_matches_sorted_filter(
    items: dict[bytes, bytes], prefix: bytes, start_after: bytes | None, version: int
) -> None:
    store: dict[bytes, bytes] = {}
    trie = Trie(store, state_version=version)
    for k, v in items.items():
        trie.set(k, v)
    root, nodes = trie.commit()
    store.update(nodes)
    expected = sorted(
        (k, v)
        for k, v in items.items()
        if k.startswith(prefix) and (start_after is None or k > start_after)
    )
    assert list(trie.iter_prefix(prefix, start_after)) == expected
    assert list(Trie(store, root).iter_prefix(prefix, start_after)) == expected
    assert list(Trie(store, root).iter_keys(prefix, start_after)) == [k for k, _ in expected]


def test_iteration_only_loads_the_requested_range() -> None:
    rnd = random.Random(3)
    items = {rnd.randbytes(32): b"v" for _ in range(2000)}
    items.update({b"\xaa\xbb" + bytes([i]): b"w" for i in range(10)})
    store = CountingStore()
    trie = Trie(store)
    for k, v in items.items():
        trie.set(k, v)
    root, nodes = trie.commit()
    store.update(nodes)
    store.reads = 0
    got = list(Trie(store, root).iter_prefix(b"\xaa\xbb"))
    assert len(got) == 10
    assert store.reads < 10
