"""Signing keys: sr25519 and ed25519 key pairs, Substrate secret URIs, signature checks.

Owns `Keypair` (creation from seeds, BIP39 mnemonics and secret URIs such as `//Alice`,
`<mnemonic>//hard/soft///password` or `0x<seed>//hard`), the dev accounts, and the signature
checks that the runtime and the enclave use for extrinsics and trusted calls, including the
Substrate `MultiSignature` variants.

Derivation follows sp_core: junction ids are SCALE-encoded (numbers as u64) and padded, or
blake2-256 hashed when longer than 32 bytes; sr25519 derives hard and soft junctions with
schnorrkel (via py-sr25519-bindings); ed25519 derives hard junctions only, as
blake2_256(SCALE("Ed25519HDKD") ++ seed ++ chain code). Mnemonics become mini-secrets through
py-bip39-bindings (the same code substrate-interface calls). Signature checks use the Rust
implementations Substrate itself uses: schnorrkel for sr25519 and ed25519-zebra (ZIP-215 rules)
for ed25519, so exactly the signatures a Substrate runtime accepts are accepted here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

import bip39
import ed25519_zebra
import nacl.signing
import sr25519

from integritee.crypto.hashing import BytesLike, blake2_256
from integritee.crypto.ss58 import ss58_encode

Crypto = Literal["sr25519", "ed25519"]
CRYPTOS: tuple[str, ...] = ("sr25519", "ed25519")

DEV_PHRASE = "bottom drive obey lake curtain smoke basket hold race lonely fit walk"
DEV_NAMES: tuple[str, ...] = ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")

PUBLIC_KEY_LEN = 32
SIGNATURE_LEN = 64
SEED_LEN = 32
SR25519_SECRET_LEN = 64
ECDSA_SIGNATURE_LEN = 65
MNEMONIC_WORD_COUNTS = (12, 15, 18, 21, 24)

_JUNCTION_ID_LEN = 32
_MAX_SURI_CHARS = 4096
_U64_MAX = 2**64 - 1
# sp_core's secret URI grammar: optional phrase (or 0x seed), then /soft and //hard junctions,
# then an optional ///password that runs to the end of the string.
_SURI_RE = re.compile(r"(?P<phrase>[\w ]+)?(?P<path>(//?[^/]+)*)(///(?P<password>.*))?")
_JUNCTION_RE = re.compile(r"/(/?[^/]+)")
# Rust's u64::from_str grammar; Python's int() would also take "1_0" and surrounding spaces.
_U64_RE = re.compile(r"\+?[0-9]+")
_ED25519_HDKD = b"\x2cEd25519HDKD"  # SCALE-encoded str: compact length 11, then the bytes


class SuriError(ValueError):
    """A secret URI, mnemonic, seed or derivation path that cannot produce a key."""


def _scale_compact_len(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


@dataclass(frozen=True, slots=True)
class Junction:
    """One step of a derivation path: a 32-byte chain code, hard (`//`) or soft (`/`)."""

    chain_code: bytes
    hard: bool

    @classmethod
    def parse(cls, text: str, hard: bool) -> Junction:
        if _U64_RE.fullmatch(text) and int(text) <= _U64_MAX:
            encoded = int(text).to_bytes(8, "little")
        else:
            raw = text.encode()
            encoded = _scale_compact_len(len(raw)) + raw
        if len(encoded) > _JUNCTION_ID_LEN:
            return cls(blake2_256(encoded), hard)
        return cls(encoded.ljust(_JUNCTION_ID_LEN, b"\x00"), hard)

    @classmethod
    def hard_of(cls, text: str | int) -> Junction:
        return cls.parse(str(text), True)

    @classmethod
    def soft_of(cls, text: str | int) -> Junction:
        return cls.parse(str(text), False)


def parse_path(path: str) -> list[Junction]:
    """Parse `//hard/soft/...` into junctions; the empty path gives no junctions."""
    junctions: list[Junction] = []
    pos = 0
    for m in _JUNCTION_RE.finditer(path):
        if m.start() != pos:
            break
        part = m.group(1)
        hard = part.startswith("/")
        junctions.append(Junction.parse(part[1:] if hard else part, hard))
        pos = m.end()
    if pos != len(path):
        raise SuriError(f"invalid derivation path {path!r}")
    return junctions


@dataclass(frozen=True, slots=True)
class Suri:
    """A parsed secret URI; `phrase` is a mnemonic or a `0x`-prefixed hex seed."""

    phrase: str
    junctions: tuple[Junction, ...]
    password: str | None

    def __repr__(self) -> str:
        return f"Suri(<secret>, {len(self.junctions)} junctions)"


def parse_suri(suri: str) -> Suri:
    if not isinstance(suri, str):
        raise SuriError(f"secret URI must be a string, got {type(suri).__name__}")
    if len(suri) > _MAX_SURI_CHARS:
        raise SuriError(f"secret URI too long ({len(suri)} characters)")
    m = _SURI_RE.fullmatch(suri)
    if m is None:
        raise SuriError("invalid secret URI")
    phrase = m.group("phrase")
    return Suri(
        phrase=DEV_PHRASE if phrase is None else phrase,
        junctions=tuple(parse_path(m.group("path"))),
        password=m.group("password"),
    )


def _check_crypto(crypto: str) -> None:
    if crypto not in CRYPTOS:
        raise ValueError(f"unsupported crypto {crypto!r}, expected one of {CRYPTOS}")


def _as_bytes(value: object, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{what} must be bytes, got {type(value).__name__}")
    raw = bytes(value)
    if length is not None and len(raw) != length:
        raise ValueError(f"{what} must be {length} bytes, got {len(raw)}")
    return raw


@dataclass(frozen=True, eq=False, slots=True)
class Keypair:
    """A signing key pair. Equality and hashing look at (crypto, public_key) only.

    `private_key` is what signs: the 64-byte schnorrkel secret (key ++ nonce) for sr25519, the
    32-byte RFC 8032 seed for ed25519. `seed` is the 32-byte seed the pair was expanded from when
    that is known: always for ed25519; for sr25519 only when created from a seed or mnemonic
    without derivation (the bindings do not expose derived mini-secrets).
    """

    crypto: str
    public_key: bytes
    private_key: bytes = field(repr=False)
    seed: bytes | None = field(default=None, repr=False)
    _signer: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        _check_crypto(self.crypto)
        _as_bytes(self.public_key, "public key", PUBLIC_KEY_LEN)
        secret_len = SR25519_SECRET_LEN if self.crypto == "sr25519" else SEED_LEN
        _as_bytes(self.private_key, f"{self.crypto} private key", secret_len)
        if self.seed is not None:
            _as_bytes(self.seed, "seed", SEED_LEN)
        if self.crypto == "ed25519":
            # Keeping the expanded libsodium key makes signing ~2x faster than re-expanding.
            signer = nacl.signing.SigningKey(self.private_key)
            if bytes(signer.verify_key) != self.public_key:
                raise ValueError("ed25519 public key does not match the private key")
            object.__setattr__(self, "_signer", signer)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Keypair):
            return NotImplemented
        return self.crypto == other.crypto and self.public_key == other.public_key

    def __hash__(self) -> int:
        return hash((self.crypto, self.public_key))

    # -- construction ---------------------------------------------------------------------

    @classmethod
    def from_seed(cls, seed: bytes, crypto: str = "sr25519") -> Keypair:
        """The pair Substrate's `Pair::from_seed` gives for a 32-byte seed (mini-secret)."""
        _check_crypto(crypto)
        raw = _as_bytes(seed, "seed", SEED_LEN)
        if crypto == "sr25519":
            public, secret = sr25519.pair_from_seed(raw)
            return cls("sr25519", bytes(public), bytes(secret), raw)
        signer = nacl.signing.SigningKey(raw)
        return cls("ed25519", bytes(signer.verify_key), raw, raw)

    @classmethod
    def from_private_key(cls, private_key: bytes, crypto: str = "sr25519") -> Keypair:
        """From a 64-byte sr25519 secret, or an ed25519 32-byte seed / 64-byte seed ++ public."""
        _check_crypto(crypto)
        if crypto == "sr25519":
            secret = _as_bytes(private_key, "sr25519 private key", SR25519_SECRET_LEN)
            try:
                public = sr25519.public_from_secret_key(secret)
            except ValueError as e:
                raise ValueError(f"invalid sr25519 private key: {e}") from None
            return cls("sr25519", bytes(public), secret)
        raw = _as_bytes(private_key, "ed25519 private key")
        if len(raw) == SEED_LEN:
            return cls.from_seed(raw, "ed25519")
        if len(raw) == 2 * SEED_LEN:
            kp = cls.from_seed(raw[:SEED_LEN], "ed25519")
            if kp.public_key != raw[SEED_LEN:]:
                raise ValueError("ed25519 private key: embedded public key does not match")
            return kp
        raise ValueError(f"ed25519 private key must be 32 or 64 bytes, got {len(raw)}")

    @classmethod
    def from_mnemonic(
        cls, mnemonic: str, crypto: str = "sr25519", *, password: str = ""
    ) -> Keypair:
        """From an English BIP39 phrase, as Substrate does (mini-secret from the entropy)."""
        _check_crypto(crypto)
        if not isinstance(mnemonic, str):
            raise SuriError(f"mnemonic must be a string, got {type(mnemonic).__name__}")
        try:
            mini_secret = bytes(bip39.bip39_to_mini_secret(mnemonic, password, "en"))
        except ValueError as e:
            raise SuriError(f"invalid mnemonic: {e}") from None
        return cls.from_seed(mini_secret, crypto)

    @classmethod
    def from_uri(
        cls, suri: str, crypto: str = "sr25519", *, password: str | None = None
    ) -> Keypair:
        """From a secret URI (`//Alice`, `<mnemonic>//hard/soft///pw`, `0x<seed>//hard`).

        `password` overrides one in the URI, like `Pair::from_string(suri, Some(pw))`. As in
        Substrate, a password only affects mnemonic phrases, not hex seeds.
        """
        _check_crypto(crypto)
        parsed = parse_suri(suri)
        pw = password if password is not None else parsed.password
        if parsed.phrase.startswith("0x"):
            try:
                seed = bytes.fromhex(parsed.phrase[2:])
            except ValueError:
                raise SuriError("secret URI seed is not valid hex") from None
            if len(seed) != SEED_LEN:
                raise SuriError(f"secret URI seed must be {SEED_LEN} bytes, got {len(seed)}")
            root = cls.from_seed(seed, crypto)
        else:
            root = cls.from_mnemonic(parsed.phrase, crypto, password=pw or "")
        return root.derive(parsed.junctions)

    # -- derivation -----------------------------------------------------------------------

    def derive(self, path: str | tuple[Junction, ...] | list[Junction]) -> Keypair:
        """The pair at `path` (a `//hard/soft` string or junctions) below this one."""
        junctions = parse_path(path) if isinstance(path, str) else list(path)
        if not junctions:
            return self
        if self.crypto == "ed25519":
            seed = self.seed
            if seed is None:  # pragma: no cover - ed25519 pairs always carry their seed
                raise SuriError("ed25519 key without seed cannot be derived")
            for j in junctions:
                if not j.hard:
                    raise SuriError("ed25519 supports only hard derivation (//), not soft (/)")
                seed = blake2_256(_ED25519_HDKD + seed + j.chain_code)
            return Keypair.from_seed(seed, "ed25519")
        public, secret = self.public_key, self.private_key
        for j in junctions:
            step = sr25519.hard_derive_keypair if j.hard else sr25519.derive_keypair
            _, public, secret = step((j.chain_code, public, secret), b"")
        return Keypair("sr25519", bytes(public), bytes(secret))

    # -- use ------------------------------------------------------------------------------

    def sign(self, message: BytesLike) -> bytes:
        data = _as_bytes(message, "message")
        if self.crypto == "sr25519":
            return bytes(sr25519.sign((self.public_key, self.private_key), data))
        return bytes(self._signer.sign(data).signature)

    def verify(self, message: BytesLike, signature: BytesLike) -> bool:
        return verify(self.crypto, message, signature, self.public_key)

    def ss58_address(self, prefix: int = 42) -> str:
        return ss58_encode(self.public_key, prefix)

    def __repr__(self) -> str:
        return f"Keypair({self.crypto}, 0x{self.public_key.hex()})"


def generate_mnemonic(words: int = 12) -> str:
    """A fresh English BIP39 phrase of 12, 15, 18, 21 or 24 words."""
    if words not in MNEMONIC_WORD_COUNTS:
        raise ValueError(f"mnemonic word count must be one of {MNEMONIC_WORD_COUNTS}, got {words}")
    return str(bip39.bip39_generate(words, "en"))


def validate_mnemonic(mnemonic: str) -> bool:
    return isinstance(mnemonic, str) and bool(bip39.bip39_validate(mnemonic, "en"))


@cache
def dev_keypair(name: str, crypto: str = "sr25519") -> Keypair:
    """The well-known dev account `//<name>` (Alice..Ferdie, or any other junction name)."""
    if not isinstance(name, str) or not name or "/" in name:
        raise ValueError(f"invalid dev account name {name!r}")
    return Keypair.from_uri(f"//{name}", crypto)


# -- signature checks (never raise: untrusted input gives False) ------------------------------


def verify(crypto: str, message: BytesLike, signature: BytesLike, public_key: BytesLike) -> bool:
    """Check a 64-byte sr25519/ed25519 signature; any malformed input is just invalid."""
    if not (
        isinstance(message, bytes | bytearray | memoryview)
        and isinstance(signature, bytes | bytearray | memoryview)
        and isinstance(public_key, bytes | bytearray | memoryview)
    ):
        return False
    try:
        sig, pub = bytes(signature), bytes(public_key)
        if len(sig) != SIGNATURE_LEN or len(pub) != PUBLIC_KEY_LEN:
            return False
        if crypto == "sr25519":
            return bool(sr25519.verify(sig, bytes(message), pub))
        if crypto == "ed25519":
            return bool(ed25519_zebra.ed_verify(sig, bytes(message), pub))
    except Exception:
        # The bindings raise ValueError for points off the curve, unmarked signatures, etc.
        return False
    return False


def verify_multi_signature(
    variant: str, signature: BytesLike, message: BytesLike, signer_account: BytesLike
) -> bool:
    """`MultiSignature::verify(message, signer)` of sp_runtime for variant "Ed25519",
    "Sr25519" or "Ecdsa".

    For Ed25519 and Sr25519 the account id is the public key. For Ecdsa (65-byte r ++ s ++ v)
    the compressed secp256k1 key is recovered from blake2_256(message) and its blake2_256 must
    equal the account id.
    """
    if variant == "Sr25519":
        return verify("sr25519", message, signature, signer_account)
    if variant == "Ed25519":
        return verify("ed25519", message, signature, signer_account)
    if variant == "Ecdsa":
        if not (
            isinstance(message, bytes | bytearray | memoryview)
            and isinstance(signer_account, bytes | bytearray | memoryview)
        ):
            return False
        recovered = secp256k1_recover_compressed(signature, blake2_256(message))
        return recovered is not None and blake2_256(recovered) == bytes(signer_account)
    return False


@cache
def _secp256k1() -> tuple[Any, Any, int]:
    # Imported on first use: only Ecdsa MultiSignatures need it, and the import is not free.
    from ecdsa import SECP256k1

    return SECP256k1.curve, SECP256k1.generator, SECP256k1.order


def secp256k1_recover_compressed(signature: BytesLike, message_hash: BytesLike) -> bytes | None:
    """sp_io's `secp256k1_ecdsa_recover_compressed`: the 33-byte public key that made the
    65-byte signature r ++ s ++ v over the 32-byte hash, or None.

    v may be 0..3 or 27..30, as sp_io accepts. High-s signatures are accepted (recovery, like
    libsecp256k1's, does not normalize them).
    """
    if not (
        isinstance(signature, bytes | bytearray | memoryview)
        and isinstance(message_hash, bytes | bytearray | memoryview)
    ):
        return None
    sig, digest = bytes(signature), bytes(message_hash)
    if len(sig) != ECDSA_SIGNATURE_LEN or len(digest) != 32:
        return None
    v = sig[64] - 27 if sig[64] > 26 else sig[64]
    if not 0 <= v <= 3:
        return None
    curve, generator, n = _secp256k1()
    r = int.from_bytes(sig[:32], "big")
    s = int.from_bytes(sig[32:64], "big")
    if not (0 < r < n and 0 < s < n):
        return None
    x = r + n if v & 2 else r
    if x >= curve.p():
        return None
    from ecdsa.ellipticcurve import INFINITY, PointJacobi
    from ecdsa.errors import MalformedPointError

    try:
        big_r = PointJacobi.from_bytes(curve, bytes([2 | (v & 1)]) + x.to_bytes(32, "big"), order=n)
    except MalformedPointError:
        return None
    e = int.from_bytes(digest, "big") % n
    r_inv = pow(r, -1, n)
    q = big_r.mul_add(s * r_inv % n, generator, (-e * r_inv) % n)
    if q == INFINITY:
        return None
    return bytes(q.to_bytes("compressed"))
