"""Node codec: Substrate's documented encodings, header boundaries, strict rejection, round trips."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.trie import EMPTY_ROOT, Node, Trie, TrieError, decode_node, encode_node
from integritee.trie.nibbles import from_nibbles, pack_partial, to_nibbles, unpack_partial
from integritee.trie.node import Child


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def test_empty_root() -> None:
    expected = "03170a2e7597b7b7e3d84c05391d139a62b157e78786d8c082f29dcf4c111314"
    assert EMPTY_ROOT.hex() == expected
    assert blake2_256(b"\x00") == EMPTY_ROOT
    assert decode_node(b"\x00") is None


def test_nibbles() -> None:
    assert to_nibbles(b"\xab\x0f") == bytes([0xA, 0xB, 0x0, 0xF])
    assert from_nibbles(bytes([0xA, 0xB, 0x0, 0xF])) == b"\xab\x0f"
    assert pack_partial(bytes([1, 2, 3])) == b"\x01\x23"
    assert pack_partial(bytes([1, 2])) == b"\x12"
    assert unpack_partial(b"\x01\x23", 3) == bytes([1, 2, 3])
    assert unpack_partial(b"\x11\x23", 3) is None
    with pytest.raises(ValueError):
        from_nibbles(b"\x01")


def _leaf(path: bytes, value: bytes) -> bytes:
    node = Node(path, None, value)
    return encode_node(node)


def test_single_leaf_encoding_from_sp_trie() -> None:
    # sp-trie's codec_trie_single_tuple: leaf 0x40 + 2 nibbles, key 0xaa, compact(1), 0xbb.
    trie = Trie({})
    trie.set(b"\xaa", b"\xbb")
    assert decode_node(bytes([0x42, 0xAA, 0x04, 0xBB])) is not None
    assert _leaf(to_nibbles(b"\xaa"), b"\xbb") == bytes([0x42, 0xAA, 0x04, 0xBB])
    assert trie.root() == blake2_256(bytes([0x42, 0xAA, 0x04, 0xBB]))


def test_two_disjoint_keys_from_sp_trie() -> None:
    # sp-trie's codec_trie_two_tuples_disjoint_keys: a valueless branch with two inline leaves.
    expected = bytes(
        [0x80, 0x12, 0x00, 0x14, 0x43, 0x03, 0x14, 0x04, 0xFF, 0x14, 0x43, 0x08, 0x19, 0x04, 0xFE]
    )
    trie = Trie({})
    trie.set(bytes([0x48, 0x19]), b"\xfe")
    trie.set(bytes([0x13, 0x14]), b"\xff")
    assert trie.root() == blake2_256(expected)
    node = decode_node(expected)
    assert node is not None and node.children is not None
    assert [i for i, c in enumerate(node.children) if c is not None] == [1, 4]
    assert isinstance(node.children[1], Node) and node.children[1].value == b"\xff"


@pytest.mark.parametrize(
    ("prefix", "count", "expected"),
    [
        (0x40, 0, "40"),
        (0x40, 62, "7e"),
        (0x40, 63, "7f00"),
        (0x40, 64, "7f01"),
        (0x40, 316, "7ffd"),
        (0x40, 317, "7ffe"),
        (0x40, 318, "7fff00"),
        (0x40, 572, "7ffffe"),
        (0x40, 573, "7fffff00"),
        (0x20, 30, "3e"),
        (0x20, 31, "3f00"),
        (0x20, 32, "3f01"),
    ],
)
def test_header_nibble_counts(prefix: int, count: int, expected: str) -> None:
    path = bytes(i % 16 for i in range(count))
    if prefix == 0x40:
        enc = encode_node(Node(path, None, b""))
    else:
        enc = encode_node(Node(path, None, None, b"\x11" * 32))
    head = bytes.fromhex(expected)
    assert enc[: len(head)] == head
    assert enc[len(head) : len(head) + (count + 1) // 2] == pack_partial(path)
    node = decode_node(enc)
    assert node is not None and node.partial == path


def test_branch_header_prefixes() -> None:
    child = Node(b"", None, b"\x01")
    child.enc = encode_node(child)
    assert child.enc == bytes([0x40, 0x04, 0x01])
    without = encode_node(Node(b"", [child] + [None] * 15))
    with_value = encode_node(Node(b"", [child] + [None] * 15, b"\x02"))
    hashed = encode_node(Node(bytes(15), [child] + [None] * 15, None, b"\x22" * 32))
    assert without == bytes([0x80, 0x01, 0x00, 0x0C, 0x40, 0x04, 0x01])
    assert with_value == bytes([0xC0, 0x01, 0x00, 0x04, 0x02, 0x0C, 0x40, 0x04, 0x01])
    # 4 prefix bits: 15 nibbles need the escape byte (15 = max, then 0).
    assert hashed[:2] == bytes([0x1F, 0x00])
    assert hashed[2:10] == bytes(8)
    assert hashed[10:12] == b"\x01\x00" and hashed[12:44] == b"\x22" * 32
    for enc in (without, with_value, hashed):
        node = decode_node(enc)
        assert node is not None
        node.enc = None
        assert encode_node(node) == enc


def test_hashed_child_reference() -> None:
    big = Node(b"", None, b"v" * 40)  # inline value: encoding >= 32 bytes, referenced by hash
    big.enc = encode_node(big)
    children: list[Child] = [None] * 16
    children[1] = big
    enc = encode_node(Node(b"", children))
    assert enc == bytes([0x80, 0x02, 0x00, 0x80]) + blake2_256(big.enc)
    node = decode_node(enc)
    assert node is not None and node.children is not None
    assert node.children[1] == blake2_256(big.enc)


BAD_NODES = {
    "empty input": b"",
    "empty node with trailing byte": b"\x00\x00",
    "reserved header 0x01": b"\x01",
    "reserved header 0x0f": b"\x0f\x00",
    "non-zero padding": bytes([0x41, 0x10, 0x00]),
    "truncated partial key": bytes([0x44, 0x12]),
    "truncated value": bytes([0x42, 0xAA, 0x08, 0x01]),
    "trailing bytes after leaf": bytes([0x42, 0xAA, 0x04, 0xBB, 0x00]),
    "non-canonical compact length": bytes([0x42, 0xAA, 0x05, 0x00, 0xBB]),
    "missing value length": bytes([0x42, 0xAA]),
    "truncated header extension": bytes([0x7F]),
    "partial key over 65535 nibbles": bytes([0x7F]) + b"\xff" * 258,
    "truncated value hash": bytes([0x20]) + b"\x11" * 31,
    "branch without children": bytes([0x80, 0x00, 0x00]),
    "truncated bitmap": bytes([0x80, 0x01]),
    "zero-length child": bytes([0x80, 0x01, 0x00, 0x00]),
    "33-byte child reference": bytes([0x80, 0x01, 0x00, 0x84]) + b"\x11" * 33,
    "truncated child hash": bytes([0x80, 0x01, 0x00, 0x80]) + b"\x11" * 31,
    "empty node as inline child": bytes([0x80, 0x01, 0x00, 0x04, 0x00]),
    "malformed inline child": bytes([0x80, 0x01, 0x00, 0x08, 0x42, 0xAA]),
    "missing second child": bytes([0x80, 0x03, 0x00, 0x0C, 0x40, 0x04, 0x01]),
    "branch value truncated": bytes([0xC0, 0x01, 0x00, 0x08, 0x01]),
}


@pytest.mark.parametrize("name", sorted(BAD_NODES))
def test_malformed_nodes_are_rejected(name: str) -> None:
    with pytest.raises(TrieError):
        decode_node(BAD_NODES[name])


@given(st.binary(max_size=80))
@settings(max_examples=400, deadline=None)
def test_decoding_arbitrary_bytes_never_crashes(data: bytes) -> None:
    try:
        node = decode_node(data)
    except TrieError:
        return
    if node is None:
        assert data == b"\x00"
        return
    # Whatever decodes is canonical: it re-encodes to the same bytes.
    node.enc = None
    assert encode_node(node) == data


keys = st.lists(st.sampled_from([0x00, 0x01, 0x10, 0x12, 0xAB, 0xFF]), max_size=4).map(bytes)
values = st.binary(max_size=70)


@given(st.dictionaries(keys, values, max_size=25), st.sampled_from([0, 1]))
@settings(max_examples=150, deadline=None)
def test_every_committed_node_round_trips(items: dict[bytes, bytes], version: int) -> None:
    trie = Trie({}, state_version=version)
    for k, v in items.items():
        trie.set(k, v)
    root, nodes = trie.commit()
    value_hashes = {blake2_256(v) for v in items.values() if version == 1 and len(v) >= 33}
    for h, enc in nodes.items():
        assert blake2_256(enc) == h
        if h in value_hashes and h != root:
            continue
        node = decode_node(enc)
        assert node is not None

        def clear(n: Node) -> None:
            n.enc = None
            for c in n.children or ():
                if isinstance(c, Node):
                    clear(c)
                    c.enc = encode_node(c)

        clear(node)
        assert encode_node(node) == enc
