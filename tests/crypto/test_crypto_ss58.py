"""SS58: known addresses, cross-check with scalecodec, round trips, every kind of bad input."""

from __future__ import annotations

import hashlib
import time

import base58
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scalecodec.utils import ss58 as sc_ss58

from integritee.crypto.ss58 import (
    is_valid_ss58,
    ss58_decode,
    ss58_decode_with_prefix,
    ss58_encode,
)

ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
ALICE_42 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
INTEGRITEE_PREFIX = 13

prefixes = st.integers(0, 16383).filter(lambda p: p not in (46, 47))
accounts = st.binary(min_size=32, max_size=32)


def _raw_address(body: bytes, checksum: bytes | None = None) -> str:
    if checksum is None:
        checksum = hashlib.blake2b(b"SS58PRE" + body, digest_size=64).digest()[:2]
    return base58.b58encode(body + checksum).decode()


def test_alice_generic_substrate() -> None:
    assert ss58_encode(ALICE) == ALICE_42
    assert ss58_decode(ALICE_42) == ALICE
    assert ss58_decode_with_prefix(ALICE_42) == (ALICE, 42)


def test_alice_known_networks() -> None:
    assert ss58_encode(ALICE, 0) == "15oF4uVJwmo4TdGW7VfQxNLavjCXviqxT9S1MgbjMNHr6Sp5"
    assert ss58_encode(ALICE, 2) == "HNZata7iMYWmk5RvZRTiAsSDhV8366zq2YGb3tLH5Upf74F"


def test_alice_integritee_prefix_matches_scalecodec() -> None:
    address = ss58_encode(ALICE, INTEGRITEE_PREFIX)
    assert address == sc_ss58.ss58_encode(ALICE, ss58_format=INTEGRITEE_PREFIX)
    assert ss58_decode(address, expected_prefix=INTEGRITEE_PREFIX) == ALICE
    assert address != ALICE_42


def test_two_byte_prefix_matches_scalecodec() -> None:
    for prefix in (64, 69, 255, 256, 1284, 16383):
        address = ss58_encode(ALICE, prefix)
        assert address == sc_ss58.ss58_encode(ALICE, ss58_format=prefix)
        assert ss58_decode_with_prefix(address) == (ALICE, prefix)


@given(accounts, prefixes)
def test_roundtrip_and_scalecodec_agree(account: bytes, prefix: int) -> None:
    address = ss58_encode(account, prefix)
    assert ss58_decode_with_prefix(address) == (account, prefix)
    assert address == sc_ss58.ss58_encode(account, ss58_format=prefix)
    assert is_valid_ss58(address, prefix)


@pytest.mark.parametrize("prefix", [0, 13, 42, 63, 64, 1284, 16383])
def test_every_single_bit_flip_is_rejected(prefix: int) -> None:
    # Exhaustive rather than sampled: a random corruption passes a 2-byte checksum with
    # probability 2**-16, which would make a sampled property flaky.
    raw = base58.b58decode(ss58_encode(ALICE, prefix))
    for pos in range(len(raw)):
        for bit in range(8):
            tampered = bytearray(raw)
            tampered[pos] ^= 1 << bit
            with pytest.raises(ValueError):
                ss58_decode_with_prefix(base58.b58encode(bytes(tampered)).decode())


def test_bad_checksum_reason() -> None:
    body = bytes([42]) + ALICE
    with pytest.raises(ValueError, match="checksum"):
        ss58_decode(_raw_address(body, b"\x00\x00"))


def test_expected_prefix_mismatch() -> None:
    with pytest.raises(ValueError, match="prefix 42, expected 13"):
        ss58_decode(ALICE_42, expected_prefix=13)
    assert not is_valid_ss58(ALICE_42, 13)
    assert is_valid_ss58(ALICE_42)


@pytest.mark.parametrize("payload_len", [0, 1, 2, 4, 8, 20, 31, 33, 64])
def test_wrong_payload_length(payload_len: int) -> None:
    address = _raw_address(bytes([42]) + bytes(range(payload_len)))
    with pytest.raises(ValueError, match="payload|too short|too long"):
        ss58_decode(address)


@pytest.mark.parametrize("prefix", [46, 47])
def test_reserved_prefix_rejected(prefix: int) -> None:
    with pytest.raises(ValueError, match="reserved"):
        ss58_decode(_raw_address(bytes([prefix]) + ALICE))
    with pytest.raises(ValueError, match="reserved"):
        ss58_encode(ALICE, prefix)


def test_invalid_prefix_byte_rejected() -> None:
    with pytest.raises(ValueError, match="prefix byte"):
        ss58_decode(_raw_address(bytes([0x80, 0]) + ALICE))


@pytest.mark.parametrize(
    "address",
    [
        "",
        "0GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY",  # '0' is not base58
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQl",  # 'l' is not base58
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQä",
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQ",  # one digit short
        "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQYY",
        " " + ALICE_42,
        "1",
        "0x" + ALICE.hex(),
    ],
)
def test_garbage_addresses_rejected(address: str) -> None:
    with pytest.raises(ValueError):
        ss58_decode(address)
    assert not is_valid_ss58(address)


@pytest.mark.parametrize("value", [None, 42, b"5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"])
def test_non_string_rejected_with_value_error(value: object) -> None:
    with pytest.raises(ValueError, match="string"):
        ss58_decode(value)  # type: ignore[arg-type]


def test_huge_input_rejected_fast() -> None:
    start = time.perf_counter()
    with pytest.raises(ValueError, match="too long"):
        ss58_decode("5" * 1_000_000)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("prefix", [-1, 16384, 2**32, True, 1.0, "42"])
def test_encode_rejects_bad_prefix(prefix: object) -> None:
    with pytest.raises(ValueError):
        ss58_encode(ALICE, prefix)  # type: ignore[arg-type]


@pytest.mark.parametrize("payload", [b"", bytes(31), bytes(33), "d4" * 32, None])
def test_encode_rejects_bad_payload(payload: object) -> None:
    with pytest.raises(ValueError):
        ss58_encode(payload)  # type: ignore[arg-type]
