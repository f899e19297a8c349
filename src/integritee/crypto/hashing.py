"""Substrate hashing: blake2, twox (xxhash64) and the FRAME storage hashers.

Owns the hash functions that storage keys, account ids of ECDSA signers, extrinsic hashes and
block hashes are built from, and the table that maps the metadata names of storage hashers
(`Blake2_128Concat`, `Twox64Concat`, ...) to functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from functools import lru_cache

import xxhash

BytesLike = bytes | bytearray | memoryview
Hasher = Callable[[BytesLike], bytes]


def blake2_128(data: BytesLike) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest()


def blake2_256(data: BytesLike) -> bytes:
    return hashlib.blake2b(data, digest_size=32).digest()


def _xx64(data: BytesLike, seed: int) -> bytes:
    # Substrate writes each 64-bit xxhash word little-endian (xxhash's .digest() is big-endian).
    return xxhash.xxh64_intdigest(data, seed).to_bytes(8, "little")


def twox64(data: BytesLike) -> bytes:
    return _xx64(data, 0)


def twox128(data: BytesLike) -> bytes:
    return _xx64(data, 0) + _xx64(data, 1)


def twox256(data: BytesLike) -> bytes:
    return _xx64(data, 0) + _xx64(data, 1) + _xx64(data, 2) + _xx64(data, 3)


def blake2_128_concat(data: BytesLike) -> bytes:
    return blake2_128(data) + bytes(data)


def twox64_concat(data: BytesLike) -> bytes:
    return twox64(data) + bytes(data)


def identity(data: BytesLike) -> bytes:
    return bytes(data)


HASHERS: dict[str, Hasher] = {
    "Blake2_128": blake2_128,
    "Blake2_256": blake2_256,
    "Blake2_128Concat": blake2_128_concat,
    "Twox128": twox128,
    "Twox256": twox256,
    "Twox64Concat": twox64_concat,
    "Identity": identity,
}

# For the transparent hashers: how many hash bytes precede the raw key in a storage key, so a
# key found by iterating a map prefix can be decoded back to the map key.
CONCAT_HASH_LEN: dict[str, int] = {
    "Blake2_128Concat": 16,
    "Twox64Concat": 8,
    "Identity": 0,
}


@lru_cache(maxsize=4096)
def storage_prefix(pallet: str, item: str) -> bytes:
    """twox128(pallet) ++ twox128(item): the key of a plain storage value, the prefix of a map."""
    return twox128(pallet.encode()) + twox128(item.encode())
