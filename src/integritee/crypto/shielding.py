"""RSA-3072 shielding key: what clients use to encrypt trusted operations to the enclave.

Owns `ShieldingKey` (the enclave's private key) and `ShieldingPublicKey` (what
`author_getShieldingKey` publishes and the CLI encrypts with), with the original's wire formats:

- Public key JSON, as serde serializes sgx_crypto_helper's `Rsa3072PubKey { n: [u8; 384],
  e: [u8; 4] }`: `{"n":[...384 byte values...],"e":[...4 byte values...]}`, both little-endian,
  no spaces. The original generates keys with e = 0x01000001 (bytes [1,0,0,1]); `cryptography`
  only generates e = 65537, so our keys publish [1,0,1,0]. Clients take e from the JSON, so
  both work; `from_json` accepts any valid e of 1..4 bytes.
- Ciphertext: RSA-OAEP with SHA-256 (MGF1-SHA-256, empty label). The plaintext is cut into chunks
  of at most 318 bytes (384 - 2*32 - 2, the OAEP-SHA-256 limit for a 3072-bit modulus); each chunk
  becomes one 384-byte block, blocks concatenated in order.

Empty plaintext: the original's `encrypt_buffer` computes ceil(0/318) = 0 blocks and returns an
empty ciphertext. We encrypt it as one block holding an empty OAEP message instead, so that every
ciphertext is non-empty and `decrypt` can insist on a positive multiple of 384 bytes (an empty
`Request.cyphertext` is then rejected as malformed rather than decoded as an empty payload). The
original decrypts our one-block form to the empty plaintext, so the two stay interoperable.

Decryption is CPU-bound: one private-key operation per 384-byte block, about 0.8 ms (~1250
blocks/s per core on the development VM; encryption is ~0.05 ms per block). It is deliberately
synchronous: callers batch it or run it in an executor. OpenSSL releases the GIL during the
operation, so a thread pool scales with the cores (measured 2 threads -> ~2350 blocks/s).
Every failure on untrusted input raises `ShieldingError`, never another exception type.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from integritee.crypto.hashing import BytesLike, blake2_256

KEY_BITS = 3072
MODULUS_LEN = KEY_BITS // 8  # 384: one ciphertext block
EXPONENT_LEN = 4  # SGX_RSA3072_PUB_EXP_SIZE
_SHA256_LEN = 32
MAX_CHUNK_LEN = MODULUS_LEN - 2 * _SHA256_LEN - 2  # 318: OAEP-SHA-256 plaintext limit
PUBLIC_EXPONENT = 65537
# A JSON public key is ~1.6 KiB; anything far larger is not one and is refused before parsing.
_MAX_JSON_CHARS = 16384


class ShieldingError(ValueError):
    """A shielding key, public key JSON or ciphertext that cannot be used."""


def _oaep() -> padding.OAEP:
    return padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


_OAEP = _oaep()


def ciphertext_len(plaintext_len: int) -> int:
    """Length of `encrypt`'s output for a plaintext of `plaintext_len` bytes (empty -> 1 block)."""
    if plaintext_len < 0:
        raise ShieldingError(f"negative plaintext length {plaintext_len}")
    blocks = max(1, -(-plaintext_len // MAX_CHUNK_LEN))
    return blocks * MODULUS_LEN


def _chunks(plaintext: bytes) -> list[bytes]:
    if not plaintext:
        return [b""]
    return [plaintext[i : i + MAX_CHUNK_LEN] for i in range(0, len(plaintext), MAX_CHUNK_LEN)]


def _as_bytes(data: Any, what: str) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, bytearray | memoryview):
        return bytes(data)
    raise ShieldingError(f"{what} must be bytes, got {type(data).__name__}")


def _byte_list(obj: dict[str, Any], field: str, min_len: int, max_len: int) -> bytes:
    value = obj.get(field)
    if not isinstance(value, list):
        raise ShieldingError(f"public key JSON: {field!r} must be an array of byte values")
    if not min_len <= len(value) <= max_len:
        expected = str(max_len) if min_len == max_len else f"{min_len}..{max_len}"
        raise ShieldingError(
            f"public key JSON: {field!r} has {len(value)} bytes, expected {expected}"
        )
    for i, b in enumerate(value):
        # bool is an int subclass; `true` is not a byte.
        if type(b) is not int or not 0 <= b <= 255:
            raise ShieldingError(f"public key JSON: {field}[{i}] = {b!r} is not a byte value")
    return bytes(value)


@dataclass(frozen=True)
class ShieldingPublicKey:
    """An RSA-3072 public key clients encrypt to (what `author_getShieldingKey` returns)."""

    _key: rsa.RSAPublicKey

    def __post_init__(self) -> None:
        if self._key.key_size != KEY_BITS:
            raise ShieldingError(f"shielding key must be RSA-{KEY_BITS}, got {self._key.key_size}")

    @property
    def n(self) -> int:
        return self._key.public_numbers().n

    @property
    def e(self) -> int:
        return self._key.public_numbers().e

    @classmethod
    def from_numbers(cls, n: int, e: int) -> ShieldingPublicKey:
        if n.bit_length() != KEY_BITS:
            raise ShieldingError(f"modulus has {n.bit_length()} bits, expected {KEY_BITS}")
        if n % 2 == 0:
            raise ShieldingError("modulus is even, not an RSA modulus")
        try:
            key = rsa.RSAPublicNumbers(e, n).public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ShieldingError(f"invalid RSA public key: {exc}") from exc
        return cls(key)

    @classmethod
    def from_json(cls, text: str | bytes) -> ShieldingPublicKey:
        """Parse the original's `{"n":[384 LE bytes],"e":[LE bytes]}` JSON."""
        if isinstance(text, bytes | bytearray):
            try:
                text = bytes(text).decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ShieldingError(f"public key JSON is not UTF-8: {exc}") from exc
        if not isinstance(text, str):
            raise ShieldingError(f"public key JSON must be str, got {type(text).__name__}")
        if len(text) > _MAX_JSON_CHARS:
            raise ShieldingError(f"public key JSON too long ({len(text)} chars)")
        try:
            obj = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ShieldingError(f"public key is not valid JSON: {exc}") from exc
        if not isinstance(obj, dict):
            raise ShieldingError("public key JSON must be an object with fields 'n' and 'e'")
        n = _byte_list(obj, "n", MODULUS_LEN, MODULUS_LEN)
        e = _byte_list(obj, "e", 1, EXPONENT_LEN)
        return cls.from_numbers(int.from_bytes(n, "little"), int.from_bytes(e, "little"))

    def to_json(self) -> str:
        """The original's JSON: n as 384 and e as 4 little-endian byte values, compact."""
        numbers = self._key.public_numbers()
        if numbers.e.bit_length() > 8 * EXPONENT_LEN:
            raise ShieldingError(f"public exponent {numbers.e} does not fit {EXPONENT_LEN} bytes")
        n = list(numbers.n.to_bytes(MODULUS_LEN, "little"))
        e = list(numbers.e.to_bytes(EXPONENT_LEN, "little"))
        return json.dumps({"n": n, "e": e}, separators=(",", ":"))

    def to_bytes(self) -> bytes:
        """The SGX `Rsa3072PubKey` layout: n (384, LE) ++ e (4, LE); 388 bytes."""
        numbers = self._key.public_numbers()
        return numbers.n.to_bytes(MODULUS_LEN, "little") + numbers.e.to_bytes(
            EXPONENT_LEN, "little"
        )

    @property
    def fingerprint(self) -> bytes:
        """blake2_256 of `to_bytes()`: a short, stable identifier for logs and comparisons."""
        return blake2_256(self.to_bytes())

    def encrypt(self, plaintext: BytesLike) -> bytes:
        """RSA-OAEP-SHA-256 in chunks of <= 318 bytes, 384 bytes per chunk, concatenated."""
        data = _as_bytes(plaintext, "plaintext")
        return b"".join(self._key.encrypt(chunk, _OAEP) for chunk in _chunks(data))

    def __repr__(self) -> str:
        return f"ShieldingPublicKey(fingerprint=0x{self.fingerprint.hex()})"


@dataclass(frozen=True, repr=False)
class ShieldingKey:
    """The enclave's RSA-3072 private shielding key."""

    _key: rsa.RSAPrivateKey

    def __post_init__(self) -> None:
        if self._key.key_size != KEY_BITS:
            raise ShieldingError(f"shielding key must be RSA-{KEY_BITS}, got {self._key.key_size}")

    @classmethod
    def generate(cls) -> ShieldingKey:
        return cls(rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_BITS))

    @classmethod
    def from_bytes(cls, data: BytesLike) -> ShieldingKey:
        """Load a DER PKCS#8 private key (as written by `to_bytes`); the key is fully checked."""
        raw = _as_bytes(data, "private key")
        try:
            key = serialization.load_der_private_key(raw, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
            raise ShieldingError(f"invalid DER private key: {exc}") from exc
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ShieldingError(f"private key is {type(key).__name__}, not RSA")
        return cls(key)

    def to_bytes(self) -> bytes:
        """DER PKCS#8, unencrypted: seal it before it leaves the enclave."""
        return self._key.private_bytes(
            encoding=serialization.Encoding.DER,
            format=serialization.PrivateFormat.PKCS8,
            encryption_algorithm=serialization.NoEncryption(),
        )

    def public_key(self) -> ShieldingPublicKey:
        return ShieldingPublicKey(self._key.public_key())

    def public_key_json(self) -> str:
        return self.public_key().to_json()

    def public_key_bytes(self) -> bytes:
        return self.public_key().to_bytes()

    @property
    def fingerprint(self) -> bytes:
        return self.public_key().fingerprint

    def encrypt(self, plaintext: BytesLike) -> bytes:
        return self.public_key().encrypt(plaintext)

    def decrypt(self, ciphertext: BytesLike) -> bytes:
        """Decrypt a concatenation of 384-byte OAEP blocks. CPU-heavy: ~1 ms per block."""
        data = _as_bytes(ciphertext, "ciphertext")
        if not data:
            raise ShieldingError("ciphertext is empty")
        if len(data) % MODULUS_LEN:
            raise ShieldingError(
                f"ciphertext length {len(data)} is not a multiple of {MODULUS_LEN}"
            )
        out = []
        for i in range(0, len(data), MODULUS_LEN):
            try:
                out.append(self._key.decrypt(data[i : i + MODULUS_LEN], _OAEP))
            except ValueError as exc:
                # OpenSSL reports every OAEP failure alike (wrong key, tampering, value >= n),
                # which is what keeps the padding check from becoming an oracle.
                raise ShieldingError(
                    f"ciphertext block {i // MODULUS_LEN} does not decrypt with this key"
                ) from exc
        return b"".join(out)

    def __repr__(self) -> str:
        return f"ShieldingKey(fingerprint=0x{self.fingerprint.hex()})"
