"""verify_quote on real Intel quotes and collateral: accepted at the registration time with
values derived independently from raw bytes and DER, rejected for any tampering, wrong time,
wrong root, wrong FMSPC or a QE that is not Intel's; plus status mapping and timing."""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from pathlib import Path

import pytest
from cryptography import x509

from integritee.attestation import (
    AttestationError,
    CertificateError,
    CollateralError,
    ExpiredError,
    IdentityError,
    QeIdentity,
    QeTcbLevel,
    Quote,
    QuoteFormatError,
    SignatureError,
    TcbError,
    TcbInfo,
    TcbLevel,
    dev_root_certificate,
    intel_sgx_root_ca,
    load_crl,
    parse_quote,
    sgx_status,
    split_qe_identity_document,
    split_tcb_info_document,
    verify_qe_identity,
    verify_quote,
    verify_tcb_info,
)

FIXTURES = Path("/work/shared/fixtures/sgx-dcap")
QUOTE1 = (FIXTURES / "test1_dcap_quote.bin").read_bytes()
QUOTE2 = bytes.fromhex((FIXTURES / "test2_dcap_quote.hex").read_text().strip())
T1 = 1671606747
T2 = 1693475073
ROOT = intel_sgx_root_ca()


def _qe() -> QeIdentity:
    body, sig = split_qe_identity_document((FIXTURES / "qe_identity.json").read_bytes())
    return verify_qe_identity(
        body, sig, (FIXTURES / "qe_identity_issuer_chain.pem").read_bytes(), ROOT, T1
    )


def _tcb(name: str = "tcb_info.json", now: int = T1) -> TcbInfo:
    body, sig = split_tcb_info_document((FIXTURES / name).read_bytes())
    return verify_tcb_info(
        body, sig, (FIXTURES / "tcb_info_issuer_chain.pem").read_bytes(), ROOT, now
    )


QE = _qe()
TCB1 = _tcb()
TCB2 = _tcb("test2_tcb_info.json", 1694600000)


def verify1(quote: bytes | Quote = QUOTE1, **kw: object):  # type: ignore[no-untyped-def]
    args: dict[str, object] = {"qe_identity": QE, "tcb_info": TCB1, "trusted_root": ROOT, "now": T1}
    args.update(kw)
    return verify_quote(quote, **args)  # type: ignore[arg-type]


def _independent_fmspc(quote: bytes) -> bytes:
    """FMSPC straight from the PCK certificate's extension bytes, located by raw offsets."""
    auth_len = int.from_bytes(quote[1012:1014], "little")
    cert_off = 1014 + auth_len
    cert_len = int.from_bytes(quote[cert_off + 2 : cert_off + 6], "little")
    pem = quote[cert_off + 6 : cert_off + 6 + cert_len]
    leaf = x509.load_pem_x509_certificates(pem.rstrip(b"\x00"))[0]
    ext = leaf.extensions.get_extension_for_oid(
        x509.ObjectIdentifier("1.2.840.113741.1.13.1")
    ).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    marker = bytes.fromhex("060a2a864886f84d010d0104" + "0406")  # OID ...13.1.4, OCTET STRING(6)
    pos = ext.value.index(marker) + len(marker)
    return ext.value[pos : pos + 6]


def test_real_quote_verifies_at_registration_time() -> None:
    v = verify1()
    assert v.mrenclave == QUOTE1[112:144]
    assert v.mrsigner == QUOTE1[176:208]
    assert v.report_data == QUOTE1[368:432]
    assert v.debug is bool(QUOTE1[96] & 0x02) is True
    assert v.build_mode == "Debug"
    assert v.isv_prod_id == int.from_bytes(QUOTE1[304:306], "little")
    assert v.isv_svn == int.from_bytes(QUOTE1[306:308], "little")
    assert v.fmspc == _independent_fmspc(QUOTE1) == bytes.fromhex("00906EA10000")
    assert v.attestation_key == QUOTE1[500:564]
    # The platform's TCB (PCK: 17,17,2,4,1,128,7,0.., pcesvn 11) is exactly the first level of
    # tcb_info.json; the QE (isvsvn from the QE report) reaches qe_identity's first level.
    raw_levels = json.loads((FIXTURES / "tcb_info.json").read_bytes())["tcbInfo"]["tcbLevels"]
    assert [c["svn"] for c in raw_levels[0]["tcb"]["sgxtcbcomponents"]] == list(
        v.pck.tcb_components
    )
    assert raw_levels[0]["tcb"]["pcesvn"] == v.pcesvn == 11
    assert v.platform_tcb_status == raw_levels[0]["tcbStatus"] == "SWHardeningNeeded"
    assert int.from_bytes(QUOTE1[564 + 258 : 564 + 260], "little") >= 6
    assert v.qe_tcb_status == "UpToDate"
    assert v.tcb_status == "SWHardeningNeeded" and v.sgx_status == "Ok"
    assert v.verified_at == T1
    assert v.collateral_next_update == QE.next_update  # the QE identity expires first


def test_tcb_info_mapping_by_fmspc() -> None:
    v = verify1(tcb_info={TCB1.fmspc: TCB1, TCB2.fmspc: TCB2})
    assert v.fmspc == TCB1.fmspc
    with pytest.raises(CollateralError, match="no TCB info registered for FMSPC 00906ea10000"):
        verify1(tcb_info={TCB2.fmspc: TCB2})


@pytest.mark.parametrize(
    ("now", "message"),
    [
        (1900000000, "PCK Certificate"),  # long after: certificates expired
        (1653318424 - 1, "PCK Certificate"),  # one second before the PCK's notBefore
        (1653318424, "QE identity"),  # PCK valid, collateral not yet issued
        (QE.next_update + 1, "QE identity"),
    ],
)
def test_outside_validity_is_rejected(now: int, message: str) -> None:
    with pytest.raises(ExpiredError, match=message):
        verify1(now=now)


def test_collateral_time_check_can_be_left_to_the_caller() -> None:
    assert verify1(now=QE.next_update + 1, check_collateral_time=False).fmspc == TCB1.fmspc


# Offsets of the signed parts of a v3 quote (auth data is 32 bytes in both real quotes).
SIGNED_PARTS = {
    "header": (0, 48),
    "isv_report_body": (48, 432),
    "isv_signature": (436, 500),
    "attestation_key": (500, 564),
    "qe_report": (564, 948),
    "qe_report_signature": (948, 1012),
    "qe_auth_data": (1014, 1046),
}


@pytest.mark.parametrize("part", sorted(SIGNED_PARTS))
def test_single_flipped_byte_in_each_signed_part_is_rejected(part: str) -> None:
    start, end = SIGNED_PARTS[part]
    assert QUOTE1[1012:1014] == b"\x20\x00"
    for pos in (start, (start + end) // 2, end - 1):
        tampered = QUOTE1[:pos] + bytes([QUOTE1[pos] ^ 0x01]) + QUOTE1[pos + 1 :]
        with pytest.raises(AttestationError):
            verify1(tampered)
    mid = (start + end) // 2 if part != "header" else 40  # user data: signed, not parsed
    tampered = QUOTE1[:mid] + bytes([QUOTE1[mid] ^ 0x01]) + QUOTE1[mid + 1 :]
    with pytest.raises(SignatureError):
        verify1(tampered)


def test_every_single_bit_flip_before_the_certificates_is_rejected() -> None:
    for pos in range(0, 1046 + 6):
        tampered = QUOTE1[:pos] + bytes([QUOTE1[pos] ^ 0x01]) + QUOTE1[pos + 1 :]
        with pytest.raises((SignatureError, QuoteFormatError)):
            verify1(tampered)


def test_tampered_pck_certificate_is_rejected() -> None:
    cert_start = 1052 + len(b"-----BEGIN CERTIFICATE-----\n")
    for pos in (cert_start + 100, cert_start + 400, cert_start + 800):
        char = QUOTE1[pos : pos + 1]
        repl = b"A" if char != b"A" else b"B"
        tampered = QUOTE1[:pos] + repl + QUOTE1[pos + 1 :]
        with pytest.raises((SignatureError, CertificateError)):
            verify1(tampered)


def test_chain_to_another_root_is_rejected() -> None:
    with pytest.raises(CertificateError, match="not the trusted root"):
        verify1(trusted_root=dev_root_certificate())


def test_tcb_info_of_another_fmspc_is_rejected() -> None:
    assert TCB2.fmspc != _independent_fmspc(QUOTE1)
    with pytest.raises(CollateralError, match="FMSPC 00606a000000"):
        verify1(tcb_info=TCB2)


def test_real_crls_accepted_when_not_revoked() -> None:
    crls = [(FIXTURES / "pck_crl.der").read_bytes(), (FIXTURES / "root_ca_crl.der").read_bytes()]
    assert verify1(crls=crls).fmspc == TCB1.fmspc
    assert verify1(crls=[load_crl(c) for c in crls]).fmspc == TCB1.fmspc
    # At the 1900000000 mark everything has expired anyway; at T2 the root CRL is stale.
    with pytest.raises(ExpiredError, match="CRL"):
        verify_quote(
            QUOTE2,
            qe_identity=QE,
            tcb_info=TCB2,
            trusted_root=ROOT,
            now=T2,
            crls=crls,
            check_collateral_time=False,
        )


def test_second_real_quote_with_its_real_tcb_info() -> None:
    v = verify_quote(
        QUOTE2,
        qe_identity=QE,
        tcb_info=TCB2,
        trusted_root=ROOT,
        now=T2,
        check_collateral_time=False,
    )
    assert v.fmspc == _independent_fmspc(QUOTE2) == bytes.fromhex("00606a000000")
    assert v.mrenclave == QUOTE2[112:144] and v.report_data == QUOTE2[368:432]
    assert v.debug is False and v.build_mode == "Production"
    # PCK TCB 0c0c0303ffff00.. misses level 0 (component 7 needs 1) and meets level 1.
    assert v.platform_tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert v.sgx_status == "ConfigurationNeeded"
    with pytest.raises(ExpiredError, match="PCK Certificate"):
        verify_quote(
            QUOTE2,
            qe_identity=QE,
            tcb_info=TCB2,
            trusted_root=ROOT,
            now=T2 - 1,
            check_collateral_time=False,
        )


def test_second_real_quote_with_readme_on_chain_level_is_group_out_of_date() -> None:
    level = TcbLevel(tuple(bytes.fromhex("0C0C0303FFFF00000000000000000000")), 13, 0, "OutOfDate")
    info = dataclasses.replace(TCB2, tcb_levels=(level,))
    v = verify_quote(
        QUOTE2,
        qe_identity=QE,
        tcb_info=info,
        trusted_root=ROOT,
        now=T2,
        check_collateral_time=False,
    )
    assert v.tcb_status == "OutOfDate"
    assert v.sgx_status == "GroupOutOfDate"


def test_qe_identity_mismatches_are_rejected() -> None:
    for change, message in (
        ({"mrsigner": b"\x00" * 32}, "mrsigner"),
        ({"isvprodid": 2}, "isvprodid"),
        ({"miscselect": b"\x01\x00\x00\x00"}, "miscselect"),
        ({"attributes": b"\x13" + bytes(15)}, "attributes"),
    ):
        with pytest.raises(IdentityError, match=message):
            verify1(qe_identity=dataclasses.replace(QE, **change))  # type: ignore[arg-type]
    # Outside the mask, attributes may differ (bit 2 is masked out by FB).
    assert verify1(qe_identity=dataclasses.replace(QE, attributes=b"\x15" + bytes(15)))
    with pytest.raises(CollateralError, match="'QVE'"):
        verify1(qe_identity=dataclasses.replace(QE, id="QVE"))


def test_qe_tcb_status_feeds_the_result() -> None:
    revoked = dataclasses.replace(QE, tcb_levels=(QeTcbLevel(0, 0, "Revoked"),))
    with pytest.raises(TcbError, match="revoked"):
        verify1(qe_identity=revoked)
    outdated = dataclasses.replace(QE, tcb_levels=(QeTcbLevel(0, 0, "OutOfDate"),))
    v = verify1(qe_identity=outdated)
    assert (v.platform_tcb_status, v.qe_tcb_status, v.tcb_status) == (
        "SWHardeningNeeded",
        "OutOfDate",
        "OutOfDate",
    )
    assert v.sgx_status == "GroupOutOfDate"
    too_new = dataclasses.replace(QE, tcb_levels=(QeTcbLevel(200, 0, "UpToDate"),))
    with pytest.raises(TcbError, match="below every QE TCB level"):
        verify1(qe_identity=too_new)


def test_platform_revoked_or_unmatched_is_rejected() -> None:
    revoked = dataclasses.replace(TCB1, tcb_levels=(TcbLevel((0,) * 16, 0, 0, "Revoked"),))
    with pytest.raises(TcbError, match="revoked"):
        verify1(tcb_info=revoked)
    unreachable = dataclasses.replace(TCB1, tcb_levels=(TcbLevel((255,) * 16, 0, 0, "UpToDate"),))
    with pytest.raises(TcbError, match="below every TCB level"):
        verify1(tcb_info=unreachable)
    with pytest.raises(CollateralError, match="PCE-ID"):
        verify1(tcb_info=dataclasses.replace(TCB1, pce_id=b"\x00\x01"))


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("UpToDate", "Ok"),
        ("SWHardeningNeeded", "Ok"),
        ("ConfigurationNeeded", "ConfigurationNeeded"),
        ("ConfigurationAndSWHardeningNeeded", "ConfigurationNeeded"),
        ("OutOfDate", "GroupOutOfDate"),
        ("OutOfDateConfigurationNeeded", "GroupOutOfDate"),
        ("Revoked", "GroupRevoked"),
        ("Unknown", "Invalid"),
        ("", "Invalid"),
    ],
)
def test_sgx_status_mapping(status: str, expected: str) -> None:
    assert sgx_status(status) == expected


def test_verification_time(capsys: pytest.CaptureFixture[str]) -> None:
    verify1()
    samples = []
    for _ in range(30):
        start = time.perf_counter()
        verify1()
        samples.append(time.perf_counter() - start)
    median_ms = statistics.median(samples) * 1000
    with capsys.disabled():
        print(f"\nverify_quote (real Intel quote, 3-cert chain): median {median_ms:.2f} ms")
    assert median_ms < 50


def test_now_in_milliseconds_is_a_caller_bug() -> None:
    with pytest.raises(ValueError, match="milliseconds"):
        verify1(now=T1 * 1000)
    with pytest.raises(TypeError):
        verify1(now=float(T1))


def test_quote_object_is_reverified_from_its_bytes() -> None:
    parsed = parse_quote(QUOTE1)
    forged = dataclasses.replace(
        parsed, report_body=dataclasses.replace(parsed.report_body, mrenclave=b"\x00" * 32)
    )
    assert verify1(forged).mrenclave == QUOTE1[112:144]
