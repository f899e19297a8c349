"""DCAP v3 quote parsing: real Intel quotes decoded field by field against raw byte offsets,
and strict rejection of malformed input."""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.attestation import (
    AttestationError,
    QuoteFormatError,
    ReportBody,
    SimDcapProvider,
    parse_quote,
)

FIXTURES = Path("/work/shared/fixtures/sgx-dcap")
QUOTE1 = (FIXTURES / "test1_dcap_quote.bin").read_bytes()
QUOTE2 = bytes.fromhex((FIXTURES / "test2_dcap_quote.hex").read_text().strip())


def u16(data: bytes, offset: int) -> int:
    return int(struct.unpack_from("<H", data, offset)[0])


def test_real_quote_header_and_isv_report_match_raw_offsets() -> None:
    q = parse_quote(QUOTE1)
    assert (q.header.version, q.header.attestation_key_type, q.header.tee_type) == (3, 2, 0)
    assert q.header.qe_svn == u16(QUOTE1, 8)
    assert q.header.pce_svn == u16(QUOTE1, 10)
    assert q.header.qe_vendor_id.hex() == "939a7233f79c4ca9940a0db3957f0607"
    assert q.header.user_data == QUOTE1[28:48]
    body = q.report_body
    assert body.cpusvn == QUOTE1[48:64]
    assert body.mrenclave == QUOTE1[48 + 64 : 48 + 96]
    assert body.mrsigner == QUOTE1[48 + 128 : 48 + 160]
    assert body.isv_prod_id == u16(QUOTE1, 48 + 256)
    assert body.isv_svn == u16(QUOTE1, 48 + 258)
    assert body.report_data == QUOTE1[48 + 320 : 48 + 384]
    assert body.debug == bool(QUOTE1[48 + 48] & 0x02)
    assert body.raw == QUOTE1[48:432]
    assert q.signed_data == QUOTE1[:432]


def test_real_quote_signature_data_layout() -> None:
    q = parse_quote(QUOTE1)
    sig = q.signature
    assert struct.unpack_from("<I", QUOTE1, 432)[0] == len(QUOTE1) - 436
    assert sig.isv_report_signature == QUOTE1[436:500]
    assert sig.attestation_key == QUOTE1[500:564]
    assert sig.qe_report.raw == QUOTE1[564:948]
    assert sig.qe_report_signature == QUOTE1[948:1012]
    auth_len = u16(QUOTE1, 1012)
    assert sig.qe_auth_data == QUOTE1[1014 : 1014 + auth_len]
    cert_off = 1014 + auth_len
    assert sig.certification_data_type == u16(QUOTE1, cert_off) == 5
    cert_len = struct.unpack_from("<I", QUOTE1, cert_off + 2)[0]
    assert sig.certification_data == QUOTE1[cert_off + 6 :]
    assert len(sig.certification_data) == cert_len
    assert sig.certification_data.startswith(b"-----BEGIN CERTIFICATE-----")


def test_second_real_quote_parses_with_trailing_nul_in_chain() -> None:
    q = parse_quote(QUOTE2)
    assert q.signature.certification_data.endswith(b"-----END CERTIFICATE-----\n\x00")
    assert q.report_body.mrenclave == QUOTE2[112:144]
    assert not q.report_body.debug


def test_report_body_build_roundtrip() -> None:
    body = ReportBody.build(
        cpusvn=bytes(range(16)),
        miscselect=0x01020304,
        attributes=(0x07).to_bytes(8, "little") + (3).to_bytes(8, "little"),
        mrenclave=b"\xaa" * 32,
        mrsigner=b"\xbb" * 32,
        isv_prod_id=0x1234,
        isv_svn=0x5678,
        report_data=b"\xcc" * 64,
    )
    assert len(body.raw) == 384
    assert body.raw[16:20] == bytes([4, 3, 2, 1])
    assert body.raw[256:260] == bytes([0x34, 0x12, 0x78, 0x56])
    assert ReportBody.decode(body.raw) == body
    assert body.debug and body.flags == 7 and body.xfrm == 3


def _with(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value) :]


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda q: _with(q, 0, struct.pack("<H", 4)), "version 4"),
        (lambda q: _with(q, 2, struct.pack("<H", 3)), "attestation key type 3"),
        (lambda q: _with(q, 4, struct.pack("<I", 0x81)), "TEE type 0x81"),
        (lambda q: q + b"\x00", "length field"),
        (lambda q: q[:-1], "length field"),
        (lambda q: _with(q, 432, struct.pack("<I", len(q))), "length field"),
        (lambda q: q[:435], "shorter than 436"),
        (lambda q: b"", "shorter than 436"),
        (lambda q: q + bytes(70_000), "exceeds"),
    ],
)
def test_malformed_quotes_are_rejected_precisely(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(QuoteFormatError, match=message):
        parse_quote(mutate(QUOTE1))


def test_certification_data_type_and_inner_lengths() -> None:
    auth_len = u16(QUOTE1, 1012)
    cert_off = 1014 + auth_len
    with pytest.raises(QuoteFormatError, match="certification data type 4"):
        parse_quote(_with(QUOTE1, cert_off, struct.pack("<H", 4)))
    with pytest.raises(QuoteFormatError, match="truncated in certification data"):
        parse_quote(_with(QUOTE1, cert_off + 2, struct.pack("<I", 10_000)))
    with pytest.raises(QuoteFormatError, match="trailing bytes"):
        parse_quote(_with(QUOTE1, cert_off + 2, struct.pack("<I", 100)))
    # A longer QE auth data eats into the certification header.
    with pytest.raises(QuoteFormatError):
        parse_quote(_with(QUOTE1, 1012, struct.pack("<H", 0xFFFF)))


def test_every_truncation_is_a_format_error() -> None:
    quote = SimDcapProvider(b"\x01" * 32, b"\x02" * 32).quote(b"rd")
    for length in range(0, len(quote), 7):
        with pytest.raises(QuoteFormatError):
            parse_quote(quote[:length])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_never_crash(data: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_quote(data)


@settings(max_examples=200, deadline=None)
@given(st.integers(min_value=0, max_value=1100), st.binary(min_size=1, max_size=8))
def test_random_overwrites_of_a_real_quote_never_crash(offset: int, patch: bytes) -> None:
    with contextlib.suppress(AttestationError):
        parse_quote(_with(QUOTE1, offset, patch))


def test_non_bytes_input_rejected() -> None:
    with pytest.raises(QuoteFormatError, match="must be bytes"):
        parse_quote("not bytes")  # type: ignore[arg-type]
