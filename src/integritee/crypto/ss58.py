"""SS58 addresses: the base58 text form of 32-byte account ids with a network prefix.

Format: base58(prefix ++ account ++ checksum) where the prefix takes one byte (0..63) or two
bytes (64..16383) and the checksum is the first two bytes of blake2b-512("SS58PRE" ++ prefix ++
account). Only 32-byte payloads (AccountId32) are supported; the legacy short account-index
forms are not. Every malformed address raises ValueError with the reason.
"""

from __future__ import annotations

import hashlib

import base58

ACCOUNT_LEN = 32
CHECKSUM_LEN = 2
MAX_PREFIX = 16383
# Reserved by the SS58 registry; Substrate refuses to encode or decode them.
RESERVED_PREFIXES = frozenset({46, 47})
# 2 prefix bytes + 32 account bytes + 2 checksum bytes need at most 50 base58 digits; refusing
# longer text up front keeps base58's quadratic decoding away from hostile input.
_MAX_ADDRESS_CHARS = 50
_SS58PRE = b"SS58PRE"


def _checksum(body: bytes) -> bytes:
    return hashlib.blake2b(_SS58PRE + body, digest_size=64).digest()[:CHECKSUM_LEN]


def _check_prefix(prefix: int) -> None:
    if isinstance(prefix, bool) or not isinstance(prefix, int):
        raise ValueError(f"ss58 prefix must be an int, got {type(prefix).__name__}")
    if not 0 <= prefix <= MAX_PREFIX:
        raise ValueError(f"ss58 prefix {prefix} out of range 0..{MAX_PREFIX}")
    if prefix in RESERVED_PREFIXES:
        raise ValueError(f"ss58 prefix {prefix} is reserved")


def _encode_prefix(prefix: int) -> bytes:
    if prefix < 64:
        return bytes([prefix])
    # Two-byte form: the low six bits of the first byte and the top two bits of the second hold
    # bits 2..7 and 0..1 of the prefix; the rest of the second byte holds bits 8..13.
    return bytes(
        [
            ((prefix & 0b1111_1100) >> 2) | 0b0100_0000,
            (prefix >> 8) | ((prefix & 0b11) << 6),
        ]
    )


def ss58_encode(public_key: bytes, prefix: int = 42) -> str:
    """Encode a 32-byte account id (public key) as an SS58 address for network `prefix`."""
    if not isinstance(public_key, bytes | bytearray | memoryview):
        raise ValueError(f"ss58 payload must be bytes, got {type(public_key).__name__}")
    payload = bytes(public_key)
    if len(payload) != ACCOUNT_LEN:
        raise ValueError(f"ss58 payload must be {ACCOUNT_LEN} bytes, got {len(payload)}")
    _check_prefix(prefix)
    body = _encode_prefix(prefix) + payload
    return base58.b58encode(body + _checksum(body)).decode("ascii")


def ss58_decode_with_prefix(address: str) -> tuple[bytes, int]:
    """Decode an SS58 address to (32-byte account id, network prefix)."""
    if not isinstance(address, str):
        raise ValueError(f"ss58 address must be a string, got {type(address).__name__}")
    if not address:
        raise ValueError("empty ss58 address")
    if len(address) > _MAX_ADDRESS_CHARS:
        raise ValueError(f"ss58 address too long ({len(address)} characters)")
    try:
        raw = base58.b58decode(address)
    except ValueError:
        # UnicodeEncodeError (non-ASCII text) is a ValueError too.
        raise ValueError("ss58 address is not valid base58") from None

    first = raw[0]
    if first < 64:
        prefix, prefix_len = first, 1
    elif first < 128:
        if len(raw) < 2:
            raise ValueError("ss58 address too short")
        second = raw[1]
        lower = ((first << 2) | (second >> 6)) & 0xFF
        upper = second & 0b0011_1111
        prefix, prefix_len = lower | (upper << 8), 2
    else:
        raise ValueError(f"ss58 address has an invalid prefix byte 0x{first:02x}")

    if len(raw) != prefix_len + ACCOUNT_LEN + CHECKSUM_LEN:
        raise ValueError(
            f"ss58 address decodes to {len(raw) - prefix_len - CHECKSUM_LEN} payload bytes, "
            f"expected {ACCOUNT_LEN}"
        )
    if prefix in RESERVED_PREFIXES:
        raise ValueError(f"ss58 prefix {prefix} is reserved")
    body, checksum = raw[:-CHECKSUM_LEN], raw[-CHECKSUM_LEN:]
    if _checksum(body) != checksum:
        raise ValueError("ss58 address has a bad checksum")
    return body[prefix_len:], prefix


def ss58_decode(address: str, expected_prefix: int | None = None) -> bytes:
    """Decode an SS58 address to its 32-byte account id, optionally insisting on a prefix."""
    payload, prefix = ss58_decode_with_prefix(address)
    if expected_prefix is not None and prefix != expected_prefix:
        raise ValueError(f"ss58 address has prefix {prefix}, expected {expected_prefix}")
    return payload


def is_valid_ss58(address: str, expected_prefix: int | None = None) -> bool:
    try:
        ss58_decode(address, expected_prefix)
    except ValueError:
        return False
    return True
