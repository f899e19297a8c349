"""AES-256-GCM with a fresh random 96-bit nonce per message.

Owns the symmetric encryption of the state key, sealed secrets and state diffs. Blob layout:
`nonce (12) ++ ciphertext (len(plaintext)) ++ tag (16)`, so a blob is exactly 28 bytes longer than
its plaintext. The associated data (`aad`) is authenticated but not stored: the decrypting side
must supply the same bytes.

Nonces come from `os.urandom`; with random 96-bit nonces one key must not encrypt more than about
2^32 messages (NIST SP 800-38D, collision bound). Callers that encrypt per block or per state diff
stay many orders of magnitude below that for a key's lifetime.

`AESGCM` objects are cached per key (bounded LRU): building one per call halves the throughput
for small messages. The cache holds key material in process memory, which the enclave process
already does anyway.
"""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from integritee.crypto.hashing import BytesLike

KEY_LEN = 32
NONCE_LEN = 12
TAG_LEN = 16
OVERHEAD = NONCE_LEN + TAG_LEN


class AeadError(ValueError):
    """A key, blob or associated data that fails AES-GCM (tampered, truncated, wrong key)."""


def generate_key() -> bytes:
    """A fresh random AES-256 key."""
    return os.urandom(KEY_LEN)


@lru_cache(maxsize=64)
def _cipher(key: bytes) -> AESGCM:
    return AESGCM(key)


def _key(key: Any) -> AESGCM:
    if isinstance(key, bytearray | memoryview):
        key = bytes(key)
    if not isinstance(key, bytes):
        raise AeadError(f"key must be bytes, got {type(key).__name__}")
    if len(key) != KEY_LEN:
        raise AeadError(f"key must be {KEY_LEN} bytes, got {len(key)}")
    return _cipher(key)


def _data(value: Any, what: str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    raise AeadError(f"{what} must be bytes, got {type(value).__name__}")


def encrypt(key: BytesLike, plaintext: BytesLike, aad: BytesLike = b"") -> bytes:
    """nonce(12) ++ ciphertext ++ tag(16) of `plaintext` under `key`, authenticating `aad`."""
    cipher = _key(key)
    nonce = os.urandom(NONCE_LEN)
    try:
        return nonce + cipher.encrypt(nonce, _data(plaintext, "plaintext"), _data(aad, "aad"))
    except OverflowError as exc:  # plaintext or aad beyond GCM's 2^31-byte limit in OpenSSL
        raise AeadError(f"message too large for AES-GCM: {exc}") from exc


def decrypt(key: BytesLike, blob: BytesLike, aad: BytesLike = b"") -> bytes:
    """Inverse of `encrypt`; raises `AeadError` unless key, blob and aad are all authentic."""
    cipher = _key(key)
    data = _data(blob, "blob")
    if len(data) < OVERHEAD:
        raise AeadError(f"blob of {len(data)} bytes is shorter than nonce + tag ({OVERHEAD})")
    try:
        return cipher.decrypt(data[:NONCE_LEN], data[NONCE_LEN:], _data(aad, "aad"))
    except InvalidTag as exc:
        raise AeadError("authentication failed: wrong key, wrong aad or tampered blob") from exc
    except OverflowError as exc:
        raise AeadError(f"message too large for AES-GCM: {exc}") from exc
