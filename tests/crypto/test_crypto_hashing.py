"""Hashing: Substrate vectors, storage keys of well-known items, cross-checks, hasher table."""

from __future__ import annotations

import hashlib

import pytest
import xxhash
from hypothesis import given
from hypothesis import strategies as st
from substrateinterface.utils import hasher as si_hasher

from integritee.crypto import hashing
from integritee.crypto.hashing import (
    CONCAT_HASH_LEN,
    HASHERS,
    blake2_128,
    blake2_128_concat,
    blake2_256,
    identity,
    storage_prefix,
    twox64,
    twox64_concat,
    twox128,
    twox256,
)

ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")


def test_empty_input_vectors() -> None:
    assert twox64(b"").hex() == "99e9d85137db46ef"
    assert twox128(b"").hex() == "99e9d85137db46ef4bbea33613baafd5"
    assert blake2_128(b"").hex() == "cae66941d9efbd404e4d88758ea67670"
    assert blake2_256(b"").hex() == (
        "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8"
    )


def test_system_prefix_vectors() -> None:
    assert twox128(b"System").hex() == "26aa394eea5630e07c48ae0c9558cef7"
    assert storage_prefix("System", "Account").hex() == (
        "26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9"
    )


@pytest.mark.parametrize(
    ("pallet", "item", "key"),
    [
        ("Timestamp", "Now", "f0c365c3cf59d671eb72da0e7a4113c49f1f0515f462cdcf84e0f1d6045dfcbb"),
        ("Sudo", "Key", "5c0d1176a568c1f92944340dbfed9e9c530ebca703c85910e7164cb7d1c9e47b"),
        (
            "Balances",
            "TotalIssuance",
            "c2261276cc9d1f8598ea4b6a74b15c2f57c875e4cff74148e4628f264b974c80",
        ),
    ],
)
def test_well_known_storage_keys(pallet: str, item: str, key: str) -> None:
    assert storage_prefix(pallet, item).hex() == key


def test_system_account_key_of_alice() -> None:
    key = storage_prefix("System", "Account") + blake2_128_concat(ALICE)
    assert key.hex() == (
        "26aa394eea5630e07c48ae0c9558cef7b99d880ec681799c0cf30e8886371da9"
        "de1e86a9a8c739864cf3cc5ec2bea59f"
        "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
    )


def test_hasher_table_complete() -> None:
    assert set(HASHERS) == {
        "Blake2_128",
        "Blake2_256",
        "Blake2_128Concat",
        "Twox128",
        "Twox256",
        "Twox64Concat",
        "Identity",
    }
    assert HASHERS["Twox64Concat"] is twox64_concat
    assert HASHERS["Identity"] is identity


@given(st.binary(max_size=300))
def test_twox_is_little_endian_xxhash64_words(data: bytes) -> None:
    words = [xxhash.xxh64(data, seed=i).intdigest() for i in range(4)]
    assert twox256(data) == b"".join(w.to_bytes(8, "little") for w in words)
    assert twox128(data) == twox256(data)[:16]
    assert twox64(data) == twox256(data)[:8]


@given(st.binary(max_size=300))
def test_matches_substrate_interface(data: bytes) -> None:
    assert twox128(data) == bytes(si_hasher.xxh128(data))
    assert twox64(data) == bytes(si_hasher.xxh64(data))
    assert twox64_concat(data) == bytes(si_hasher.two_x64_concat(data))
    assert blake2_128_concat(data) == bytes.fromhex(si_hasher.blake2_128_concat(data).hex())
    assert blake2_256(data) == hashlib.blake2b(data, digest_size=32).digest()


@given(st.binary(max_size=200))
def test_transparent_hashers_end_with_the_key(data: bytes) -> None:
    for name, hash_len in CONCAT_HASH_LEN.items():
        hashed = HASHERS[name](data)
        assert len(hashed) == hash_len + len(data)
        assert hashed[hash_len:] == data


def test_accepts_bytes_like() -> None:
    for fn in HASHERS.values():
        assert fn(bytearray(b"abc")) == fn(memoryview(b"abc")) == fn(b"abc")


def test_storage_prefix_is_cached_and_pure() -> None:
    hashing.storage_prefix.cache_clear()
    first = storage_prefix("Teerex", "EnclaveRegistry")
    assert storage_prefix("Teerex", "EnclaveRegistry") is first
    assert first == twox128(b"Teerex") + twox128(b"EnclaveRegistry")
