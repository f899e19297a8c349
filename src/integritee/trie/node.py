"""Trie nodes and their Substrate encoding (sp-trie's node codec: base 16, blake2_256).

Owns the in-memory `Node`, `encode_node` and the strict `decode_node`, for both state versions:

- header: prefix bits plus the partial key's nibble count (leaf `01`, branch `10`, branch with
  value `11`, leaf with hashed value `001`, branch with hashed value `0001`; `0x00` is the empty
  trie and every other `0000xxxx` byte is rejected);
- partial key packed two nibbles a byte, an odd count padded on the left with a zero half-byte;
- leaf = header ++ partial ++ value; branch = header ++ partial ++ u16-LE child bitmap ++ value (if
  any) ++ children in index order;
- a value is compact(len) ++ bytes, or (hashed-value headers) the 32-byte blake2_256 of the value;
- a child is compact(len) ++ encoding if that encoding is shorter than 32 bytes, else
  compact(32) ++ blake2_256(encoding).

Whether a value is stored inline or hashed is a property of the value as written, not of the node:
a state-version-0 node read by a version-1 trie keeps its inline value until the key is written
again (Substrate's lazy migration), so `Node` records the form (`vhash` is None or not).
"""

from __future__ import annotations

import hashlib
from typing import Union

from integritee.codec.scale import ScaleDecodeError, decode_compact, encode_compact
from integritee.trie.errors import TrieError
from integritee.trie.nibbles import pack_partial, unpack_partial

HASH_LENGTH = 32
EMPTY_NODE = b"\x00"
# Substrate's NIBBLE_SIZE_BOUND: its header cannot describe a longer partial key.
MAX_PARTIAL_NIBBLES = 0xFFFF
# Longest key whose leaf partial key can still be described in a header.
MAX_KEY_LENGTH = MAX_PARTIAL_NIBBLES // 2
# State version 1 stores values of at least this many bytes as their hash.
HASHED_VALUE_THRESHOLD = 33
_MAX_VALUE_LENGTH = 0xFFFFFFFF  # values are length-prefixed with Compact<u32>

_LEAF = 0x40
_BRANCH_NO_VALUE = 0x80
_BRANCH_WITH_VALUE = 0xC0
_LEAF_HASHED_VALUE = 0x20
_BRANCH_HASHED_VALUE = 0x10
_HASH_CHILD_PREFIX = b"\x80"  # compact(32)


def blake2_256(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


EMPTY_ROOT = blake2_256(EMPTY_NODE)

Child = Union["Node", bytes, None]
"""A branch slot: empty, a loaded node, or the 32-byte hash of a node still in the store."""


class Node:
    """A leaf (`children is None`) or a branch (`children` is a list of 16 slots).

    `value` is the value bytes (None: a branch without value, or a hashed value not loaded yet);
    `vhash` is set when the value is stored hashed. `enc`/`hash` cache the encoding and its
    blake2_256 (None = not computed; `enc is None` marks a node changed since it was encoded).
    `new` marks nodes not yet handed out by `Trie.commit`, `vnew` hashed values likewise.
    """

    __slots__ = ("partial", "children", "value", "vhash", "vnew", "enc", "hash", "new")

    def __init__(
        self,
        partial: bytes,
        children: list[Child] | None = None,
        value: bytes | None = None,
        vhash: bytes | None = None,
    ) -> None:
        self.partial = partial
        self.children = children
        self.value = value
        self.vhash = vhash
        self.vnew = vhash is not None
        self.enc: bytes | None = None
        self.hash: bytes | None = None
        self.new = True

    @property
    def is_leaf(self) -> bool:
        return self.children is None

    @property
    def has_value(self) -> bool:
        return self.value is not None or self.vhash is not None

    def node_hash(self) -> bytes:
        """blake2_256 of the (already computed) encoding, cached."""
        h = self.hash
        if h is None:
            enc = self.enc
            if enc is None:
                raise TrieError("node is not encoded yet")
            h = self.hash = blake2_256(enc)
        return h

    def __repr__(self) -> str:
        kind = "Leaf" if self.children is None else "Branch"
        return f"{kind}(partial={self.partial.hex()}, value={self.value!r}, vhash={self.vhash!r})"


# ---------------------------------------------------------------------------------------------
# Encoding


def _header(prefix: int, prefix_bits: int, count: int) -> bytes:
    max_value = 255 >> prefix_bits
    if count < max_value:
        return bytes((prefix | count,))
    if count > MAX_PARTIAL_NIBBLES:
        raise TrieError(f"partial key of {count} nibbles is longer than a header can describe")
    out = bytearray((prefix | max_value,))
    rem = count - (max_value - 1)
    while rem >= 256:
        out.append(255)
        rem -= 255
    out.append(rem - 1)
    return bytes(out)


def _compact_len(n: int) -> bytes:
    return bytes((n << 2,)) if n < 64 else encode_compact(n)


def encode_node(node: Node) -> bytes:
    """The node's encoding. Node children must already be encoded (`enc` set)."""
    partial = node.partial
    count = len(partial)
    children = node.children
    vhash = node.vhash
    if children is None:
        if vhash is not None:
            return _header(_LEAF_HASHED_VALUE, 3, count) + pack_partial(partial) + vhash
        value = node.value
        if value is None:
            raise TrieError("leaf without value")
        return _header(_LEAF, 2, count) + pack_partial(partial) + _compact_len(len(value)) + value
    bitmap = 0
    parts = []
    for i, child in enumerate(children):
        if child is None:
            continue
        bitmap |= 1 << i
        if type(child) is bytes:
            parts.append(_HASH_CHILD_PREFIX + child)
            continue
        enc = child.enc  # type: ignore[union-attr]
        if enc is None:
            raise TrieError("child node is not encoded yet")
        if len(enc) < HASH_LENGTH:
            parts.append(bytes((len(enc) << 2,)) + enc)
        else:
            parts.append(_HASH_CHILD_PREFIX + child.node_hash())  # type: ignore[union-attr]
    if bitmap == 0:
        raise TrieError("branch without children")
    if vhash is not None:
        head = _header(_BRANCH_HASHED_VALUE, 4, count) + pack_partial(partial)
        value_part = vhash
    elif node.value is not None:
        head = _header(_BRANCH_WITH_VALUE, 2, count) + pack_partial(partial)
        value_part = _compact_len(len(node.value)) + node.value
    else:
        head = _header(_BRANCH_NO_VALUE, 2, count) + pack_partial(partial)
        value_part = b""
    return head + bitmap.to_bytes(2, "little") + value_part + b"".join(parts)


# ---------------------------------------------------------------------------------------------
# Decoding


def decode_node(data: bytes) -> Node | None:
    """Decode one node encoding strictly; None for the empty trie (`0x00`).

    Raises `TrieError` for anything Substrate would not produce: reserved header bytes, partial
    keys longer than 65535 nibbles, non-zero padding, a branch without children, non-canonical
    compacts, inline children of 0 or more than 32 bytes, truncation and trailing bytes.
    Inline children are decoded too; hashed children stay as their 32-byte hash.
    """
    data = bytes(data)
    if not data:
        raise TrieError("empty node encoding")
    if data[0] == 0:
        if len(data) != 1:
            raise TrieError("trailing bytes after the empty node")
        return None
    return _decode(data)


def _decode(data: bytes) -> Node:
    end = len(data)
    first = data[0]
    top = first >> 6
    if top == 1:
        is_leaf, value_kind, prefix_bits = True, 1, 2
    elif top == 2:
        is_leaf, value_kind, prefix_bits = False, 0, 2
    elif top == 3:
        is_leaf, value_kind, prefix_bits = False, 1, 2
    elif first >> 5 == 1:
        is_leaf, value_kind, prefix_bits = True, 2, 3
    elif first >> 4 == 1:
        is_leaf, value_kind, prefix_bits = False, 2, 4
    else:
        raise TrieError(f"reserved node header byte 0x{first:02x}")
    max_value = 255 >> prefix_bits
    count = first & max_value
    pos = 1
    if count == max_value:
        count -= 1
        while True:
            if pos >= end:
                raise TrieError("truncated node header")
            extra = data[pos]
            pos += 1
            if extra < 255:
                count += extra + 1
                break
            count += 255
            if count > MAX_PARTIAL_NIBBLES:
                break
        if count > MAX_PARTIAL_NIBBLES:
            raise TrieError("partial key longer than 65535 nibbles")
    nbytes = (count + 1) >> 1
    if pos + nbytes > end:
        raise TrieError("truncated partial key")
    partial = unpack_partial(data[pos : pos + nbytes], count)
    if partial is None:
        raise TrieError("non-zero padding in partial key")
    pos += nbytes

    children: list[Child] | None = None
    bitmap = 0
    if not is_leaf:
        if pos + 2 > end:
            raise TrieError("truncated child bitmap")
        bitmap = data[pos] | (data[pos + 1] << 8)
        pos += 2
        if bitmap == 0:
            raise TrieError("branch without children")

    value: bytes | None = None
    vhash: bytes | None = None
    if value_kind == 2:
        if pos + HASH_LENGTH > end:
            raise TrieError("truncated value hash")
        vhash = data[pos : pos + HASH_LENGTH]
        pos += HASH_LENGTH
    elif value_kind == 1:
        length, pos = _read_compact(data, pos)
        if length > _MAX_VALUE_LENGTH or pos + length > end:
            raise TrieError("truncated value")
        value = data[pos : pos + length]
        pos += length

    if bitmap:
        children = [None] * 16
        for i in range(16):
            if not bitmap >> i & 1:
                continue
            length, pos = _read_compact(data, pos)
            if pos + length > end:
                raise TrieError("truncated child reference")
            if length == HASH_LENGTH:
                children[i] = data[pos : pos + HASH_LENGTH]
            elif 0 < length < HASH_LENGTH:
                inline = data[pos : pos + length]
                if inline[0] == 0:
                    raise TrieError("empty node as an inline child")
                children[i] = _decode(inline)
            else:
                raise TrieError(f"invalid child reference length {length}")
            pos += length
    if pos != end:
        raise TrieError("trailing bytes after node")

    node = Node(partial, children, value, vhash)
    node.vnew = False
    node.new = False
    node.enc = data
    return node


def _read_compact(data: bytes, pos: int) -> tuple[int, int]:
    try:
        return decode_compact(data, pos)
    except ScaleDecodeError as e:
        raise TrieError(f"bad length prefix: {e}") from None
