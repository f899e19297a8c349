"""Nibble paths: the trie's internal key form.

A nibble path is a `bytes` object holding one nibble (0..15) per byte, high nibble of each key byte
first. Keeping paths as `bytes` lets slicing, comparison and concatenation run in C, and the
conversions below go through `hexlify`/`translate` instead of per-nibble Python loops.
"""

from __future__ import annotations

from binascii import hexlify, unhexlify

_HEX_TO_NIBBLE = bytes.maketrans(b"0123456789abcdef", bytes(range(16)))
_NIBBLE_TO_HEX = bytes.maketrans(bytes(range(16)), b"0123456789abcdef")


def to_nibbles(key: bytes) -> bytes:
    """Split a byte key into its nibble path (two nibbles per byte, high nibble first)."""
    return hexlify(key).translate(_HEX_TO_NIBBLE)


def from_nibbles(path: bytes) -> bytes:
    """Join an even-length nibble path back into the byte key it came from."""
    if len(path) & 1:
        raise ValueError("a nibble path of odd length is not a byte key")
    return unhexlify(path.translate(_NIBBLE_TO_HEX))


def pack_partial(path: bytes) -> bytes:
    """Pack a node's partial key two nibbles a byte; an odd count leaves the first nibble alone
    in the low half of the first byte (Substrate's left padding)."""
    hexed = path.translate(_NIBBLE_TO_HEX)
    if len(path) & 1:
        hexed = b"0" + hexed
    return unhexlify(hexed)


def unpack_partial(packed: bytes, count: int) -> bytes | None:
    """Inverse of `pack_partial`; None when the padding half-byte of an odd count is not zero."""
    path = hexlify(packed).translate(_HEX_TO_NIBBLE)
    if count & 1:
        if path[0] != 0:
            return None
        return path[1:]
    return path


def common_prefix_length(a: bytes, b: bytes, b_start: int = 0) -> int:
    """Length of the longest common prefix of `a` and `b[b_start:]`."""
    n = min(len(a), len(b) - b_start)
    i = 0
    while i < n and a[i] == b[b_start + i]:
        i += 1
    return i
