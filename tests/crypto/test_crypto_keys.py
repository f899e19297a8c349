"""Keys: Substrate/RFC vectors, SURI derivation, sign/verify properties, MultiSignature checks."""

from __future__ import annotations

import eth_keys
import pytest
import sr25519
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from hypothesis import given, settings
from hypothesis import strategies as st
from substrateinterface import Keypair as SiKeypair
from substrateinterface.key import DeriveJunction

from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import (
    DEV_NAMES,
    DEV_PHRASE,
    Junction,
    Keypair,
    SuriError,
    dev_keypair,
    generate_mnemonic,
    parse_suri,
    secp256k1_recover_compressed,
    validate_mnemonic,
    verify,
    verify_multi_signature,
)

ALICE_SR = "d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d"
BOB_SR = "8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48"
ALICE_ED = "88dc3417d5058ec4b4503e0c12ea1a0a89be200fe98922423d4334014fa6b0ee"
# sp_core's test seed (also RFC 8032 test 1).
TEST_SEED = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")

seeds = st.binary(min_size=32, max_size=32)
messages = st.binary(max_size=512)
cryptos = st.sampled_from(["sr25519", "ed25519"])


# -- known vectors --------------------------------------------------------------------------


def test_dev_accounts_known_keys() -> None:
    alice = dev_keypair("Alice")
    assert alice.public_key.hex() == ALICE_SR
    assert alice.ss58_address() == "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
    assert dev_keypair("Bob").public_key.hex() == BOB_SR
    assert dev_keypair("Alice", "ed25519").public_key.hex() == ALICE_ED
    assert Keypair.from_uri("//Alice").public_key.hex() == ALICE_SR
    assert Keypair.from_uri(DEV_PHRASE + "//Alice").public_key.hex() == ALICE_SR


def test_dev_keypairs_are_cached_and_distinct() -> None:
    pairs = [dev_keypair(name) for name in DEV_NAMES]
    assert len({p.public_key for p in pairs}) == len(DEV_NAMES)
    assert dev_keypair("Alice") is dev_keypair("Alice")
    assert DEV_NAMES == ("Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie")
    with pytest.raises(ValueError):
        dev_keypair("Al/ice")


def test_sr25519_substrate_vectors() -> None:
    assert Keypair.from_seed(TEST_SEED).public_key.hex() == (
        "44a996beb1eef7bdcab976ab6d2ca26104834164ecf28fb375600576fcc6eb0f"
    )
    assert Keypair.from_seed(b"12345678901234567890123456789012").public_key.hex() == (
        "741c08a06f41c596608f6774259bd9043304adfa5d3eea62760bd9be97634d63"
    )
    # sp_core derive_soft_known_pair_should_work: soft junction at the root.
    assert Keypair.from_uri(DEV_PHRASE + "/Alice").public_key.hex() == (
        "d6c71059dbbe9ad2b0ed3f289738b800836eb425544ce694825285b958ca755e"
    )
    assert Keypair.from_uri("/Alice") == Keypair.from_uri(DEV_PHRASE + "/Alice")


def test_ed25519_rfc8032_vector() -> None:
    pair = Keypair.from_seed(TEST_SEED, "ed25519")
    assert pair.public_key.hex() == (
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    )
    assert pair.sign(b"").hex() == (
        "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e"
        "39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
    )


# -- secret URIs ----------------------------------------------------------------------------


def test_soft_junction_sr25519() -> None:
    alice = dev_keypair("Alice")
    soft = Keypair.from_uri("//Alice/1")
    assert soft == alice.derive("/1")
    assert soft != alice
    assert soft != Keypair.from_uri("//Alice//1")
    assert soft != Keypair.from_uri("//Alice/2")
    # Soft derivation is public: the child key follows from the parent public key alone.
    chain_code = Junction.soft_of(1).chain_code
    _, public = sr25519.derive_pubkey((chain_code, alice.public_key), b"")
    assert soft.public_key == bytes(public)
    # Independent parser (substrate-interface) over the same schnorrkel bindings.
    assert soft.public_key == SiKeypair.create_from_uri("//Alice/1").public_key
    sig = soft.sign(b"soft")
    assert soft.verify(b"soft", sig)


@pytest.mark.parametrize(
    "path",
    ["//Alice", "//Alice/1", "/1//2/foo//bar", "//" + "x" * 40, "//0", "/18446744073709551615"],
)
def test_paths_agree_with_substrate_interface(path: str) -> None:
    ours = Keypair.from_uri(path)
    theirs = SiKeypair.create_from_uri(path)
    assert ours.public_key == theirs.public_key


def test_junction_chain_codes() -> None:
    assert Junction.hard_of("Alice").chain_code == b"\x14Alice" + bytes(26)
    assert Junction.hard_of(1).chain_code == (1).to_bytes(8, "little") + bytes(24)
    assert Junction.parse("+7", True).chain_code == Junction.hard_of(7).chain_code
    long_name = "x" * 40
    assert Junction.hard_of(long_name).chain_code == blake2_256(b"\xa0" + long_name.encode())
    assert (
        Junction.hard_of(long_name).chain_code
        == DeriveJunction.from_derive_path(long_name).chain_code
    )
    # Above u64::MAX a number is a string junction, as in Rust's `parse::<u64>` fallback.
    big = str(2**64)
    assert Junction.hard_of(big).chain_code == (b"\x50" + big.encode()).ljust(32, b"\x00")


@pytest.mark.parametrize("crypto", ["sr25519", "ed25519"])
def test_password(crypto: str) -> None:
    with_password = Keypair.from_uri("//Alice///password", crypto)
    assert with_password != dev_keypair("Alice", crypto)
    expected = Keypair.from_mnemonic(DEV_PHRASE, crypto, password="password").derive("//Alice")
    assert with_password == expected
    assert Keypair.from_uri("//Alice", crypto, password="password") == expected
    assert parse_suri("//Alice///password").password == "password"
    # A password may itself contain slashes; it runs to the end of the URI.
    assert parse_suri("//a///p/a//ss").password == "p/a//ss"


def test_ed25519_soft_derivation_refused() -> None:
    with pytest.raises(SuriError, match="soft"):
        Keypair.from_uri("//Alice/1", "ed25519")
    with pytest.raises(SuriError, match="soft"):
        dev_keypair("Alice", "ed25519").derive("/1")


def test_ed25519_hard_derivation() -> None:
    derived = Keypair.from_uri("//Alice//stash", "ed25519")
    assert derived == dev_keypair("Alice", "ed25519").derive("//stash")
    assert derived.seed is not None
    assert Keypair.from_seed(derived.seed, "ed25519") == derived


@pytest.mark.parametrize("crypto", ["sr25519", "ed25519"])
def test_hex_seed_uri(crypto: str) -> None:
    uri = "0x" + TEST_SEED.hex()
    assert Keypair.from_uri(uri, crypto) == Keypair.from_seed(TEST_SEED, crypto)
    assert Keypair.from_uri(uri + "//Alice", crypto) == Keypair.from_seed(TEST_SEED, crypto).derive(
        "//Alice"
    )
    # As in Substrate, a password does not change a hex seed.
    assert Keypair.from_uri(uri + "///pw", crypto) == Keypair.from_seed(TEST_SEED, crypto)


@pytest.mark.parametrize(
    "suri",
    [
        "0x1234",
        "0x" + "zz" * 32,
        "0x" + "00" * 33,
        "Alice",
        "bottom drive obey lake curtain smoke basket hold race lonely fit",
        "not a valid mnemonic at all",
        "//Alice//",
        "//Alice/",
        "/" * 5000,
    ],
)
def test_bad_suri_raises_suri_error(suri: str) -> None:
    with pytest.raises(SuriError):
        Keypair.from_uri(suri)


def test_empty_suri_is_the_dev_phrase_root() -> None:
    assert Keypair.from_uri("") == Keypair.from_mnemonic(DEV_PHRASE)


def test_bad_types_and_crypto() -> None:
    with pytest.raises(SuriError):
        Keypair.from_uri(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unsupported crypto"):
        Keypair.from_uri("//Alice", "ecdsa")
    with pytest.raises(ValueError, match="32 bytes"):
        Keypair.from_seed(bytes(31))
    with pytest.raises(ValueError):
        Keypair.from_seed("00" * 32)  # type: ignore[arg-type]


# -- mnemonics, seeds and private keys -----------------------------------------------------


@pytest.mark.parametrize("words", [12, 15, 18, 21, 24])
def test_generate_mnemonic(words: int) -> None:
    phrase = generate_mnemonic(words)
    assert len(phrase.split()) == words
    assert validate_mnemonic(phrase)
    pair = Keypair.from_mnemonic(phrase)
    assert pair == Keypair.from_uri(phrase)
    assert pair.public_key == SiKeypair.create_from_mnemonic(phrase).public_key


def test_generate_mnemonic_rejects_word_count() -> None:
    with pytest.raises(ValueError, match="word count"):
        generate_mnemonic(13)
    assert generate_mnemonic() != generate_mnemonic()
    assert not validate_mnemonic("foo bar")


def test_mnemonic_root_keeps_seed() -> None:
    pair = Keypair.from_mnemonic(DEV_PHRASE)
    assert pair.seed is not None
    assert Keypair.from_seed(pair.seed) == pair
    assert Keypair.from_mnemonic(DEV_PHRASE, "ed25519").seed == pair.seed


@given(seeds)
@settings(max_examples=25)
def test_ed25519_seed_roundtrip(seed: bytes) -> None:
    pair = Keypair.from_seed(seed, "ed25519")
    assert pair.seed == seed
    assert pair.private_key == seed
    assert Keypair.from_seed(pair.seed, "ed25519").public_key == pair.public_key
    assert Keypair.from_private_key(seed + pair.public_key, "ed25519") == pair


@given(seeds)
@settings(max_examples=25)
def test_sr25519_private_key_roundtrip(seed: bytes) -> None:
    pair = Keypair.from_seed(seed)
    again = Keypair.from_private_key(pair.private_key)
    assert again == pair
    assert again.verify(b"m", pair.sign(b"m"))
    assert pair.verify(b"m", again.sign(b"m"))


def test_constructor_checks() -> None:
    alice = dev_keypair("Alice", "ed25519")
    bob = dev_keypair("Bob", "ed25519")
    with pytest.raises(ValueError, match="does not match"):
        Keypair("ed25519", bob.public_key, alice.private_key, alice.seed)
    with pytest.raises(ValueError, match="does not match"):
        Keypair.from_private_key(alice.private_key + bob.public_key, "ed25519")
    with pytest.raises(ValueError, match="64 bytes"):
        Keypair("sr25519", bytes(32), bytes(32))


def test_repr_and_equality_hide_secrets() -> None:
    pair = Keypair.from_seed(TEST_SEED)
    assert TEST_SEED.hex() not in repr(pair)
    assert pair.private_key.hex() not in repr(pair)
    assert "sr25519" in repr(pair)
    # Derived sr25519 secrets carry a random nonce; identity is the public key.
    a, b = Keypair.from_uri("//Alice"), Keypair.from_uri("//Alice")
    assert a == b and hash(a) == hash(b)
    assert Keypair.from_seed(TEST_SEED) != Keypair.from_seed(TEST_SEED, "ed25519")
    assert "9d61b19d" not in repr(parse_suri("0x" + TEST_SEED.hex()))


# -- signing and verification --------------------------------------------------------------


@given(cryptos, seeds, messages)
@settings(max_examples=60)
def test_sign_verify_roundtrip(crypto: str, seed: bytes, message: bytes) -> None:
    pair = Keypair.from_seed(seed, crypto)
    sig = pair.sign(message)
    assert len(sig) == 64
    assert pair.verify(message, sig)
    assert verify(crypto, message, sig, pair.public_key)
    assert verify(crypto, bytearray(message), memoryview(sig), bytearray(pair.public_key))
    variant = "Sr25519" if crypto == "sr25519" else "Ed25519"
    assert verify_multi_signature(variant, sig, message, pair.public_key)
    assert not verify_multi_signature(variant, sig, message + b"x", pair.public_key)


@given(cryptos, messages, st.integers(0, 64 * 8 - 1))
@settings(max_examples=60)
def test_tampered_signature_rejected(crypto: str, message: bytes, bit: int) -> None:
    pair = dev_keypair("Alice", crypto)
    sig = bytearray(pair.sign(message))
    sig[bit // 8] ^= 1 << (bit % 8)
    assert not pair.verify(message, bytes(sig))


@pytest.mark.parametrize("crypto", ["sr25519", "ed25519"])
def test_wrong_key_and_message_rejected(crypto: str) -> None:
    alice, bob = dev_keypair("Alice", crypto), dev_keypair("Bob", crypto)
    sig = alice.sign(b"payload")
    assert not bob.verify(b"payload", sig)
    assert not alice.verify(b"payloaD", sig)
    other = "ed25519" if crypto == "sr25519" else "sr25519"
    assert not verify(other, b"payload", sig, alice.public_key)


def test_signatures_verify_with_independent_libraries() -> None:
    alice = dev_keypair("Alice")
    sig = alice.sign(b"hello")
    assert SiKeypair(public_key=alice.public_key, ss58_format=42).verify(b"hello", sig)
    assert alice.verify(b"hello", SiKeypair.create_from_uri("//Alice").sign(b"hello"))

    ed = dev_keypair("Alice", "ed25519")
    public = Ed25519PublicKey.from_public_bytes(ed.public_key)
    public.verify(ed.sign(b"hello"), b"hello")
    with pytest.raises(InvalidSignature):
        public.verify(ed.sign(b"hello"), b"hellO")


GARBAGE: list[tuple[object, object, object]] = [
    (b"m", b"", bytes(32)),
    (b"m", bytes(63), bytes(32)),
    (b"m", bytes(65), bytes(32)),
    (b"m", bytes(64), bytes(31)),
    (b"m", bytes(64), bytes(33)),
    (b"m", bytes(64), bytes.fromhex(ALICE_ED)),
    (b"m", b"\xff" * 64, b"\xff" * 32),
    (b"m", b"\x80" * 64, b"\x01" * 32),
    (None, bytes(64), bytes(32)),
    ("m", bytes(64), bytes(32)),
    (b"m", "00" * 64, bytes(32)),
    (b"m", bytes(64), "00" * 32),
    (b"m", 64, 32),
    (b"m", None, None),
    (b"m", [0] * 64, [0] * 32),
]


@pytest.mark.parametrize("crypto", ["sr25519", "ed25519", "ecdsa", "", None])
@pytest.mark.parametrize(("message", "signature", "public"), GARBAGE)
def test_verify_garbage_returns_false(
    crypto: object, message: object, signature: object, public: object
) -> None:
    assert verify(crypto, message, signature, public) is False  # type: ignore[arg-type]


def test_ed25519_follows_zip215_like_substrate() -> None:
    # ed25519-zebra (Substrate's verifier) checks the cofactored equation, so for a small-order
    # public key such as all zeros a trivial signature verifies; libsodium would refuse it.
    # Nobody holds a secret for such a key; we keep Substrate's answer rather than a stricter one.
    assert verify("ed25519", b"m", bytes(64), bytes(32))
    assert not verify("sr25519", b"m", bytes(64), bytes(32))


def test_verify_garbage_with_valid_parts() -> None:
    alice = dev_keypair("Alice")
    sig = alice.sign(b"m")
    assert verify("sr25519", b"m", sig, alice.public_key)
    assert not verify("sr25519", b"m", sig[:63], alice.public_key)
    assert not verify("sr25519", b"m", sig + b"\x00", alice.public_key)
    assert not verify("sr25519", b"m", sig, alice.public_key[:31])
    assert not verify("sr25519", "m", sig, alice.public_key)  # type: ignore[arg-type]
    assert not verify("Sr25519", b"m", sig, alice.public_key)


# -- MultiSignature ------------------------------------------------------------------------

# sp_core ecdsa test_vector_should_work: seed TEST_SEED signs the empty message.
ECDSA_PUB = bytes.fromhex("028db55b05db86c0b1786ca49f095d76344c9e6056b2f02701a7e7f3c20aabfd91")
ECDSA_SIG = bytes.fromhex(
    "3dde91174bd9359027be59a428b8146513df80a2a3c7eda2194f64de04a69ab9"
    "7b753169e94db6ffd50921a2668a48b94ca11e3d32c1ff19cfe88890aa7e8f3c00"
)


def test_ecdsa_multisignature_substrate_vector() -> None:
    assert secp256k1_recover_compressed(ECDSA_SIG, blake2_256(b"")) == ECDSA_PUB
    signer = blake2_256(ECDSA_PUB)
    assert verify_multi_signature("Ecdsa", ECDSA_SIG, b"", signer)
    assert not verify_multi_signature("Ecdsa", ECDSA_SIG, b"x", signer)
    assert not verify_multi_signature("Ecdsa", ECDSA_SIG, b"", ECDSA_PUB[1:])
    # sp_io accepts Ethereum-style v = 27/28 as well.
    eth_style = ECDSA_SIG[:64] + bytes([27])
    assert verify_multi_signature("Ecdsa", eth_style, b"", signer)
    # The other recovery id recovers another key.
    assert not verify_multi_signature("Ecdsa", ECDSA_SIG[:64] + b"\x01", b"", signer)


@pytest.mark.parametrize(
    "signature",
    [
        ECDSA_SIG[:64] + b"\x04",
        ECDSA_SIG[:64] + b"\x1f",
        ECDSA_SIG[:64],
        ECDSA_SIG + b"\x00",
        bytes(65),
        b"\xff" * 65,
        bytes(32) + ECDSA_SIG[32:],
        ECDSA_SIG[:32] + bytes(32) + b"\x00",
        "00" * 65,
        None,
    ],
)
def test_ecdsa_garbage_returns_false(signature: object) -> None:
    signer = blake2_256(ECDSA_PUB)
    assert not verify_multi_signature("Ecdsa", signature, b"", signer)  # type: ignore[arg-type]


def test_ecdsa_recovery_edge_cases() -> None:
    assert secp256k1_recover_compressed(ECDSA_SIG, bytes(31)) is None
    # x = r + n must stay below the field prime; for this r it does not.
    assert secp256k1_recover_compressed(ECDSA_SIG[:64] + b"\x02", blake2_256(b"")) is None


@given(st.binary(min_size=32, max_size=32), messages)
@settings(max_examples=10, deadline=None)
def test_ecdsa_against_eth_keys(secret: bytes, message: bytes) -> None:
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    if not 0 < int.from_bytes(secret, "big") < order:
        return
    key = eth_keys.keys.PrivateKey(secret)
    sig = key.sign_msg_hash(blake2_256(message))
    raw = sig.r.to_bytes(32, "big") + sig.s.to_bytes(32, "big") + bytes([sig.v])
    compressed = key.public_key.to_compressed_bytes()
    assert secp256k1_recover_compressed(raw, blake2_256(message)) == compressed
    assert verify_multi_signature("Ecdsa", raw, message, blake2_256(compressed))
    assert not verify_multi_signature("Ecdsa", raw, message + b"!", blake2_256(compressed))


def test_unknown_multisignature_variant() -> None:
    alice = dev_keypair("Alice")
    sig = alice.sign(b"m")
    for variant in ("sr25519", "Eth", "", None):
        assert not verify_multi_signature(variant, sig, b"m", alice.public_key)  # type: ignore[arg-type]


def test_sr25519_signatures_are_randomized_but_valid() -> None:
    alice = dev_keypair("Alice")
    first, second = alice.sign(b"m"), alice.sign(b"m")
    assert first != second
    assert alice.verify(b"m", first) and alice.verify(b"m", second)
