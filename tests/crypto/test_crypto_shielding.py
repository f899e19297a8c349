"""RSA-3072 shielding: the original's JSON and block format, round trips, every kind of bad input."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integritee.crypto.shielding import (
    MAX_CHUNK_LEN,
    MODULUS_LEN,
    ShieldingError,
    ShieldingKey,
    ShieldingPublicKey,
    ciphertext_len,
)

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
SGX_DEFAULT_E = 0x01000001  # sgx_crypto_helper's SGX_RSA3072_DEFAULT_E, bytes [1, 0, 0, 1]


@pytest.fixture(scope="module")
def key() -> ShieldingKey:
    return ShieldingKey.generate()


@pytest.fixture(scope="module")
def other_key() -> ShieldingKey:
    return ShieldingKey.generate()


def _private(key: ShieldingKey) -> rsa.RSAPrivateKey:
    loaded = serialization.load_der_private_key(key.to_bytes(), password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    return loaded


def test_chunk_limit_is_oaep_sha256_limit() -> None:
    assert MODULUS_LEN == 384
    assert MAX_CHUNK_LEN == 318 == 384 - 2 * 32 - 2


def test_public_key_json_exact_shape(key: ShieldingKey) -> None:
    text = key.public_key_json()
    obj = json.loads(text)
    assert list(obj) == ["n", "e"]
    assert len(obj["n"]) == 384 and len(obj["e"]) == 4
    assert all(type(b) is int and 0 <= b <= 255 for b in obj["n"] + obj["e"])
    numbers = _private(key).public_key().public_numbers()
    assert int.from_bytes(bytes(obj["n"]), "little") == numbers.n
    assert obj["n"] == list(numbers.n.to_bytes(384, "little"))
    assert obj["e"] == [1, 0, 1, 0]  # 65537 little-endian in 4 bytes
    # serde_json's compact form: no whitespace, n before e.
    expected = (
        '{"n":[' + ",".join(str(b) for b in numbers.n.to_bytes(384, "little")) + '],"e":[1,0,1,0]}'
    )
    assert text == expected


def test_public_key_bytes_is_sgx_layout(key: ShieldingKey) -> None:
    raw = key.public_key_bytes()
    obj = json.loads(key.public_key_json())
    assert raw == bytes(obj["n"]) + bytes(obj["e"])
    assert len(key.fingerprint) == 32
    assert key.fingerprint == key.public_key().fingerprint


def test_json_round_trip(key: ShieldingKey) -> None:
    pub = ShieldingPublicKey.from_json(key.public_key_json())
    assert pub == key.public_key()
    assert pub.to_json() == key.public_key_json()
    assert ShieldingPublicKey.from_json(key.public_key_json().encode()) == pub
    # Whitespace and field order do not matter to a JSON reader.
    obj = json.loads(key.public_key_json())
    spaced = json.dumps({"e": obj["e"], "n": obj["n"]}, indent=2)
    assert ShieldingPublicKey.from_json(spaced) == pub


@pytest.mark.parametrize(
    "n", [0, 1, 317, 318, 319, 635, 636, 637, 954, 1000, 318 * 5, 318 * 5 + 1, 2000]
)
def test_round_trip_and_length_edges(key: ShieldingKey, n: int) -> None:
    plaintext = os.urandom(n)
    ct = ShieldingPublicKey.from_json(key.public_key_json()).encrypt(plaintext)
    assert len(ct) == ciphertext_len(n) == 384 * max(1, math.ceil(n / 318))
    assert key.decrypt(ct) == plaintext


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.one_of(
        st.binary(min_size=0, max_size=2000),
        st.integers(1, 6).map(lambda k: b"\xab" * (318 * k)),
    )
)
def test_round_trip_property(key: ShieldingKey, plaintext: bytes) -> None:
    ct = key.encrypt(plaintext)
    assert len(ct) == 384 * max(1, math.ceil(len(plaintext) / 318))
    assert key.decrypt(ct) == plaintext


def test_empty_plaintext_is_one_block_of_empty_message(key: ShieldingKey) -> None:
    ct = key.encrypt(b"")
    assert len(ct) == 384
    # What the original's per-block decryption sees: one OAEP block holding zero bytes.
    assert _private(key).decrypt(ct, OAEP) == b""
    assert key.decrypt(ct) == b""


def test_encryption_is_randomized(key: ShieldingKey) -> None:
    assert key.encrypt(b"same") != key.encrypt(b"same")


def test_blocks_follow_chunks(key: ShieldingKey) -> None:
    plaintext = bytes(range(256)) * 3  # 768 bytes -> chunks of 318, 318, 132
    ct = key.encrypt(plaintext)
    priv = _private(key)
    blocks = [priv.decrypt(ct[i : i + 384], OAEP) for i in range(0, len(ct), 384)]
    assert [len(b) for b in blocks] == [318, 318, 132]
    assert b"".join(blocks) == plaintext


def test_cross_check_ciphertext_made_with_cryptography(key: ShieldingKey) -> None:
    # A client that knows only the JSON: rebuild the key from n/e little-endian, encrypt itself.
    obj = json.loads(key.public_key_json())
    n = int.from_bytes(bytes(obj["n"]), "little")
    e = int.from_bytes(bytes(obj["e"]), "little")
    pub = rsa.RSAPublicNumbers(e, n).public_key()
    plaintext = os.urandom(700)
    chunks = [plaintext[i : i + 318] for i in range(0, len(plaintext), 318)]
    ct = b"".join(pub.encrypt(c, OAEP) for c in chunks)
    assert key.decrypt(ct) == plaintext


def test_key_with_original_default_exponent(key: ShieldingKey) -> None:
    # Keys made by the original have e = 0x01000001; build one from our primes and check that its
    # JSON parses and its ciphertexts decrypt.
    priv = _private(key).private_numbers()
    p, q = priv.p, priv.q
    phi = (p - 1) * (q - 1)
    if math.gcd(SGX_DEFAULT_E, phi) != 1:
        pytest.skip("primes incompatible with e = 0x01000001 (probability < 1%)")
    d = pow(SGX_DEFAULT_E, -1, phi)
    numbers = rsa.RSAPrivateNumbers(
        p=p,
        q=q,
        d=d,
        dmp1=rsa.rsa_crt_dmp1(d, p),
        dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q),
        public_numbers=rsa.RSAPublicNumbers(SGX_DEFAULT_E, p * q),
    )
    sgx_style = ShieldingKey(numbers.private_key())
    obj = json.loads(sgx_style.public_key_json())
    assert obj["e"] == [1, 0, 0, 1]
    pub = ShieldingPublicKey.from_json(sgx_style.public_key_json())
    assert pub.e == SGX_DEFAULT_E
    assert sgx_style.decrypt(pub.encrypt(b"x" * 400)) == b"x" * 400


def test_short_exponent_json_accepted(key: ShieldingKey) -> None:
    # Newer Rust clients serialize e with BigUint::to_bytes_le: [1, 0, 1] for 65537.
    obj = json.loads(key.public_key_json())
    obj["e"] = [1, 0, 1]
    pub = ShieldingPublicKey.from_json(json.dumps(obj))
    assert pub.e == 65537
    assert pub.to_json() == key.public_key_json()


def test_decrypt_with_other_key_fails(key: ShieldingKey, other_key: ShieldingKey) -> None:
    ct = key.encrypt(b"secret trusted operation")
    with pytest.raises(ShieldingError, match="block 0 does not decrypt"):
        other_key.decrypt(ct)


def test_error_names_the_bad_block(key: ShieldingKey, other_key: ShieldingKey) -> None:
    ct = key.encrypt(b"a" * 318) + other_key.encrypt(b"b")
    with pytest.raises(ShieldingError, match="block 1 "):
        key.decrypt(ct)


@pytest.mark.parametrize("length", [0, 1, 100, 383, 385, 767, 769])
def test_bad_length_rejected(key: ShieldingKey, length: int) -> None:
    with pytest.raises(ShieldingError, match="empty|multiple of 384"):
        key.decrypt(os.urandom(length))


def test_truncated_ciphertext_rejected(key: ShieldingKey) -> None:
    ct = key.encrypt(b"x" * 500)
    for cut in (1, 383, 384 + 1, len(ct) - 1):
        with pytest.raises(ShieldingError):
            key.decrypt(ct[:cut])
    # As in the original, blocks carry no cross-block integrity: a prefix of whole blocks still
    # decrypts. Integrity of a trusted operation comes from its signature, not from this layer.
    assert key.decrypt(ct[:384]) == b"x" * 318


def test_garbage_and_out_of_range_blocks(key: ShieldingKey) -> None:
    n_le = json.loads(key.public_key_json())["n"]
    n = int.from_bytes(bytes(n_le), "little")
    for block in (
        os.urandom(384),
        b"\x00" * 384,
        b"\xff" * 384,  # > n
        n.to_bytes(384, "big"),  # == n
        (n - 1).to_bytes(384, "big"),
    ):
        with pytest.raises(ShieldingError):
            key.decrypt(block)


def test_every_tampered_byte_sample_fails(key: ShieldingKey) -> None:
    ct = bytearray(key.encrypt(b"tamper me"))
    for pos in (0, 1, 100, 200, 383):
        bad = bytearray(ct)
        bad[pos] ^= 0x01
        with pytest.raises(ShieldingError):
            key.decrypt(bytes(bad))


def test_non_bytes_inputs(key: ShieldingKey) -> None:
    with pytest.raises(ShieldingError, match="must be bytes"):
        key.decrypt("00" * 384)  # type: ignore[arg-type]
    with pytest.raises(ShieldingError, match="must be bytes"):
        key.encrypt(None)  # type: ignore[arg-type]
    assert key.decrypt(bytearray(key.encrypt(b"ok"))) == b"ok"
    assert key.decrypt(memoryview(key.encrypt(b"ok"))) == b"ok"


def _json_with(key: ShieldingKey, **fields: object) -> str:
    obj: dict[str, object] = json.loads(key.public_key_json())
    for name, value in fields.items():
        if value is None:
            del obj[name]
        else:
            obj[name] = value
    return json.dumps(obj)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda k: "not json", "not valid JSON"),
        (lambda k: "[1, 2]", "must be an object"),
        (lambda k: "", "not valid JSON"),
        (lambda k: _json_with(k, n=None), "'n' must be an array"),
        (lambda k: _json_with(k, e=None), "'e' must be an array"),
        (lambda k: _json_with(k, n="00ff"), "'n' must be an array"),
        (lambda k: _json_with(k, n=[1] * 383), "'n' has 383 bytes, expected 384"),
        (lambda k: _json_with(k, n=[1] * 385), "'n' has 385 bytes"),
        (lambda k: _json_with(k, e=[]), "'e' has 0 bytes, expected 1..4"),
        (lambda k: _json_with(k, e=[1, 0, 1, 0, 0]), "'e' has 5 bytes"),
        (lambda k: _json_with(k, e=[1, 0, 256, 0]), r"e\[2\] = 256"),
        (lambda k: _json_with(k, e=[1, 0, -1, 0]), r"e\[2\] = -1"),
        (lambda k: _json_with(k, e=[True, 0, 1, 0]), r"e\[0\] = True"),
        (lambda k: _json_with(k, e=[1.0, 0, 1, 0]), r"e\[0\] = 1.0"),
        (lambda k: _json_with(k, e=[2, 0, 1, 0]), "e must be odd"),
        (lambda k: _json_with(k, e=[1, 0, 0, 0]), "e must be >= 3"),
        (lambda k: _json_with(k, n=[255] * 383 + [0]), "3064 bits, expected 3072"),
        (lambda k: _json_with(k, n=[2] + [255] * 383), "modulus is even"),
        (lambda k: " " * 20000, "too long"),
        (lambda k: "[" * 5000 + "]" * 5000, "too long|not valid JSON"),
    ],
)
def test_bad_public_key_json(
    key: ShieldingKey, mutate: Callable[[ShieldingKey], str], message: str
) -> None:
    with pytest.raises(ShieldingError, match=message):
        ShieldingPublicKey.from_json(mutate(key))


def test_bad_public_key_json_types() -> None:
    with pytest.raises(ShieldingError, match="not UTF-8"):
        ShieldingPublicKey.from_json(b"\xff\xfe")
    with pytest.raises(ShieldingError, match="must be str"):
        ShieldingPublicKey.from_json(42)  # type: ignore[arg-type]


def test_private_key_serialization_round_trip(key: ShieldingKey) -> None:
    der = key.to_bytes()
    assert der[0] == 0x30  # DER SEQUENCE (PKCS#8 PrivateKeyInfo)
    restored = ShieldingKey.from_bytes(der)
    assert restored.public_key_json() == key.public_key_json()
    assert restored.decrypt(key.encrypt(b"persisted")) == b"persisted"


def test_private_key_from_bad_bytes() -> None:
    with pytest.raises(ShieldingError, match="invalid DER"):
        ShieldingKey.from_bytes(b"")
    with pytest.raises(ShieldingError, match="invalid DER"):
        ShieldingKey.from_bytes(os.urandom(1200))
    with pytest.raises(ShieldingError, match="must be bytes"):
        ShieldingKey.from_bytes("30820...")  # type: ignore[arg-type]
    ec_der = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ShieldingError, match="not RSA"):
        ShieldingKey.from_bytes(ec_der)
    small = rsa.generate_private_key(65537, 1024).private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(ShieldingError, match="RSA-3072"):
        ShieldingKey.from_bytes(small)


def test_repr_does_not_leak_private_material(key: ShieldingKey) -> None:
    text = repr(key)
    assert text.startswith("ShieldingKey(fingerprint=0x")
    assert str(_private(key).private_numbers().d)[:20] not in text


def test_ciphertext_len_helper() -> None:
    assert [ciphertext_len(n) for n in (0, 1, 318, 319, 636, 637)] == [
        384,
        384,
        384,
        768,
        768,
        1152,
    ]
    with pytest.raises(ShieldingError):
        ciphertext_len(-1)
