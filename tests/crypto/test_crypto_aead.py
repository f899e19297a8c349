"""AES-256-GCM: published vectors, blob layout, round trips, tampering and truncation."""

from __future__ import annotations

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.crypto import aead
from integritee.crypto.aead import AeadError, decrypt, encrypt, generate_key

KEY = bytes(range(32))

# McGrew & Viega, "The Galois/Counter Mode of Operation", test cases 13 and 14 (256-bit key).
ZERO_KEY = bytes(32)
ZERO_NONCE = bytes(12)
TC13_TAG = bytes.fromhex("530f8afbc74536b9a963b4f1c4cb738b")
TC14_CT = bytes.fromhex("cea7403d4d606b6e074ec5d3baf39d18")
TC14_TAG = bytes.fromhex("d0d1c8a799996bf0265b98b5d48ab919")


def test_published_vectors_decrypt() -> None:
    assert decrypt(ZERO_KEY, ZERO_NONCE + TC13_TAG) == b""
    assert decrypt(ZERO_KEY, ZERO_NONCE + TC14_CT + TC14_TAG) == bytes(16)


def test_blob_layout_matches_plain_aesgcm() -> None:
    blob = encrypt(KEY, b"hello", b"ctx")
    assert len(blob) == 12 + 5 + 16 == 5 + aead.OVERHEAD
    nonce, body = blob[:12], blob[12:]
    assert AESGCM(KEY).decrypt(nonce, body, b"ctx") == b"hello"
    # ... and the other direction: a blob built with AESGCM directly decrypts here.
    nonce = os.urandom(12)
    assert decrypt(KEY, nonce + AESGCM(KEY).encrypt(nonce, b"x" * 100, None)) == b"x" * 100


def test_generate_key() -> None:
    k1, k2 = generate_key(), generate_key()
    assert len(k1) == len(k2) == 32 and k1 != k2


def test_fresh_nonce_per_message() -> None:
    nonces = {encrypt(KEY, b"same")[:12] for _ in range(200)}
    assert len(nonces) == 200


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=3000), st.binary(max_size=64))
def test_round_trip(plaintext: bytes, aad: bytes) -> None:
    blob = encrypt(KEY, plaintext, aad)
    assert len(blob) == len(plaintext) + 28
    assert decrypt(KEY, blob, aad) == plaintext


def test_every_byte_tampered_fails() -> None:
    blob = encrypt(KEY, b"twenty bytes of data", b"aad")
    for pos in range(len(blob)):
        for bit in (0x01, 0x80):
            bad = bytearray(blob)
            bad[pos] ^= bit
            with pytest.raises(AeadError, match="authentication failed"):
                decrypt(KEY, bytes(bad), b"aad")


def test_every_truncation_fails() -> None:
    blob = encrypt(KEY, b"some plaintext", b"")
    for cut in range(len(blob)):
        with pytest.raises(AeadError):
            decrypt(KEY, blob[:cut])
    with pytest.raises(AeadError, match="shorter than nonce"):
        decrypt(KEY, b"\x00" * 27)
    with pytest.raises(AeadError):
        decrypt(KEY, blob + b"\x00")


def test_wrong_key_or_aad_fails() -> None:
    blob = encrypt(KEY, b"payload", b"label-a")
    with pytest.raises(AeadError):
        decrypt(generate_key(), blob, b"label-a")
    with pytest.raises(AeadError):
        decrypt(KEY, blob, b"label-b")
    with pytest.raises(AeadError):
        decrypt(KEY, blob)


@pytest.mark.parametrize("bad_key", [b"", b"\x00" * 16, b"\x00" * 31, b"\x00" * 33, b"\x00" * 24])
def test_bad_key_length(bad_key: bytes) -> None:
    with pytest.raises(AeadError, match="key must be 32 bytes"):
        encrypt(bad_key, b"x")
    with pytest.raises(AeadError, match="key must be 32 bytes"):
        decrypt(bad_key, b"\x00" * 40)


def test_bad_types() -> None:
    with pytest.raises(AeadError, match="key must be bytes"):
        encrypt("k" * 32, b"x")  # type: ignore[arg-type]
    with pytest.raises(AeadError, match="plaintext must be bytes"):
        encrypt(KEY, "text")  # type: ignore[arg-type]
    with pytest.raises(AeadError, match="aad must be bytes"):
        encrypt(KEY, b"x", None)  # type: ignore[arg-type]
    with pytest.raises(AeadError, match="blob must be bytes"):
        decrypt(KEY, None)  # type: ignore[arg-type]


def test_bytes_like_inputs() -> None:
    blob = encrypt(bytearray(KEY), bytearray(b"abc"), memoryview(b"ad"))
    assert decrypt(memoryview(KEY), bytearray(blob), b"ad") == b"abc"


def test_many_keys_do_not_mix_up_cached_ciphers() -> None:
    # More keys than the cipher cache holds: each blob must still open only under its own key.
    keys = [generate_key() for _ in range(100)]
    blobs = [encrypt(k, k[:4]) for k in keys]
    for k, blob in zip(keys, blobs, strict=True):
        assert decrypt(k, blob) == k[:4]
    with pytest.raises(AeadError):
        decrypt(keys[0], blobs[1])
