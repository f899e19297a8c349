"""SCALE codec: known vectors, strictness, and round trips of random values."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integritee.codec.scale import (
    H256,
    Bytes,
    Compact,
    Enum,
    EnumValue,
    Option,
    Result,
    ScaleDecodeError,
    ScaleEncodeError,
    Struct,
    Tuple,
    Vec,
    boolean,
    decode_compact,
    encode_compact,
    text,
    u8,
    u32,
    u128,
    unit,
    variant,
)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "04"),
        (63, "fc"),
        (64, "0101"),
        (16383, "fdff"),
        (16384, "02000100"),
        (2**30 - 1, "feffffff"),
        (2**30, "0300000040"),
        (2**32 - 1, "03ffffffff"),
        (2**64 - 1, "13ffffffffffffffff"),
        (2**128 - 1, "33ffffffffffffffffffffffffffffffff"),
    ],
)
def test_compact_vectors(value: int, encoded: str) -> None:
    assert encode_compact(value).hex() == encoded
    assert decode_compact(bytes.fromhex(encoded)) == (value, len(encoded) // 2)


@pytest.mark.parametrize(
    "encoded", ["0100", "02000000", "0300000000", "07000000000000000000", "01", "03ffff"]
)
def test_compact_rejects_non_canonical_and_truncated(encoded: str) -> None:
    with pytest.raises(ScaleDecodeError):
        decode_compact(bytes.fromhex(encoded))


Account = Struct(
    "test::Account", [("nonce", u32), ("free", u128), ("tags", Vec(text)), ("owner", Option(H256))]
)
Action = Enum(
    "test::Action",
    [
        variant("Noop", 0),
        variant("Pay", 3, ("to", H256), ("amount", Compact(u128))),
        variant("Raw", 7, (None, Bytes)),
        variant("Pair", 9, (None, u8), (None, boolean)),
    ],
)

accounts = st.fixed_dictionaries(
    {
        "nonce": st.integers(0, 2**32 - 1),
        "free": st.integers(0, 2**128 - 1),
        "tags": st.lists(st.text(max_size=5), max_size=4),
        "owner": st.none() | st.binary(min_size=32, max_size=32),
    }
)
actions = st.one_of(
    st.just(EnumValue("Noop", None)),
    st.builds(
        lambda to, amount: EnumValue("Pay", {"to": to, "amount": amount}),
        st.binary(min_size=32, max_size=32),
        st.integers(0, 2**128 - 1),
    ),
    st.builds(lambda b: EnumValue("Raw", b), st.binary(max_size=70)),
    st.builds(lambda a, b: EnumValue("Pair", (a, b)), st.integers(0, 255), st.booleans()),
)


@given(accounts)
def test_struct_round_trip(value: dict) -> None:
    assert Account.decode(Account.encode(value)) == value


@given(st.lists(actions, max_size=5))
def test_enum_round_trip(values: list) -> None:
    codec = Vec(Action)
    assert codec.decode(codec.encode(values)) == values


@given(st.binary(max_size=200))
def test_garbage_only_raises_decode_errors(data: bytes) -> None:
    for codec in (Account, Vec(Action), Tuple(u32, Bytes), Result(unit, text)):
        with contextlib.suppress(ScaleDecodeError):
            codec.decode(data)


def test_strict_decoding_and_encoding_errors() -> None:
    with pytest.raises(ScaleDecodeError, match="trailing"):
        u32.decode(bytes(5))
    with pytest.raises(ScaleDecodeError):
        Action.decode(b"\x05")  # unknown variant index
    with pytest.raises(ScaleDecodeError):
        boolean.decode(b"\x02")
    with pytest.raises(ScaleDecodeError):
        Vec(u32).decode(encode_compact(10**9) + bytes(8))  # a length far beyond the input
    with pytest.raises(ScaleEncodeError):
        u8.encode(256)
    with pytest.raises(ScaleEncodeError):
        Action.encode(EnumValue("Nope", None))
    with pytest.raises(ScaleEncodeError):
        Account.encode({"nonce": 1})


def test_option_bool_uses_the_standard_encoding() -> None:
    codec = Option(boolean)
    assert codec.encode(None) == b"\x00"
    assert codec.encode(True) == b"\x01\x01"
    assert codec.encode(False) == b"\x01\x00"
    assert codec.decode(b"\x01\x00") is False
