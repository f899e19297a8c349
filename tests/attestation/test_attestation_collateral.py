"""Intel-signed QE identity and TCB info: splitting documents into the exact signed bytes,
signature and chain checks on the real collateral, validity windows, strict JSON decoding and
TCB level matching."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding

from integritee.attestation import (
    AttestationError,
    CertificateError,
    CollateralError,
    DevPki,
    ExpiredError,
    SignatureError,
    SimDcapProvider,
    TcbError,
    TcbInfo,
    TcbLevel,
    converge_tcb_status,
    dev_root_certificate,
    intel_sgx_root_ca,
    match_qe_tcb_level,
    match_tcb_level,
    parse_qe_identity,
    parse_tcb_info,
    split_qe_identity_document,
    split_signed_document,
    split_tcb_info_document,
    verify_qe_identity,
    verify_tcb_info,
)
from integritee.attestation.dev_pki import derive_key, sign_raw

FIXTURES = Path("/work/shared/fixtures/sgx-dcap")
T1 = 1671606747
QE_DOC = (FIXTURES / "qe_identity.json").read_bytes()
TCB_DOC = (FIXTURES / "tcb_info.json").read_bytes()
TCB2_DOC = (FIXTURES / "test2_tcb_info.json").read_bytes()
QE_CHAIN = (FIXTURES / "qe_identity_issuer_chain.pem").read_bytes()
TCB_CHAIN = (FIXTURES / "tcb_info_issuer_chain.pem").read_bytes()


def utc(text: str) -> int:
    return int(dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S%z").timestamp())


def test_split_returns_the_exact_raw_body_and_signature() -> None:
    body, sig = split_qe_identity_document(QE_DOC)
    # Independently: the body is the text between the first '{"enclaveIdentity":' and
    # ',"signature"' of the compact document.
    start = QE_DOC.index(b":") + 1
    end = QE_DOC.rindex(b',"signature"')
    assert body == QE_DOC[start:end]
    assert sig.hex() == json.loads(QE_DOC)["signature"]
    body2, sig2 = split_tcb_info_document(TCB_DOC)
    assert body2 == TCB_DOC[TCB_DOC.index(b":") + 1 : TCB_DOC.rindex(b',"signature"')]
    assert len(sig2) == 64


def test_split_tolerates_whitespace_and_member_order_but_keeps_body_bytes() -> None:
    body, sig = split_qe_identity_document(QE_DOC)
    reordered = (
        b'{ "signature" : "' + sig.hex().encode() + b'" ,\n "enclaveIdentity":' + body + b" }"
    )
    assert split_qe_identity_document(reordered) == (body, sig)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        (b"[]", "expected '{'"),
        (b'{"tcbInfo":{}}', "lacks"),
        (b'{"tcbInfo":{},"signature":"00"}', "64 bytes"),
        (b'{"tcbInfo":[],"signature":"' + b"00" * 64 + b'"}', "not a JSON object"),
        (b'{"tcbInfo":{},"signature":"zz"}', "not hex"),
        (b'{"tcbInfo":{},"signature":5}', "not a string"),
        (b'{"tcbInfo":{},"tcbInfo":{},"signature":"' + b"00" * 64 + b'"}', "duplicate"),
        (b'{"tcbInfo":{},"signature":"' + b"00" * 64 + b'"} x', "trailing"),
        (b'{"tcbInfo":{} "signature":"00"}', "expected '}'"),
        (b"\xff\xfe", "UTF-8"),
        (b'{"tcbInfo":' + b"[" * 50_000 + b"]" * 50_000 + b"}", "malformed"),
    ],
)
def test_split_rejects_malformed_documents(doc: bytes, message: str) -> None:
    with pytest.raises(CollateralError, match=message):
        split_signed_document(doc, "tcbInfo")


def test_real_qe_identity_verifies_and_decodes() -> None:
    body, sig = split_qe_identity_document(QE_DOC)
    qe = verify_qe_identity(body, sig, QE_CHAIN, intel_sgx_root_ca(), T1)
    raw = json.loads(QE_DOC)["enclaveIdentity"]
    assert qe.mrsigner.hex().upper() == raw["mrsigner"]
    assert qe.isvprodid == raw["isvprodid"] == 1
    assert qe.attributes_mask.hex().upper() == raw["attributesMask"]
    assert qe.issue_date == utc("2022-12-04T22:45:33+0000")
    assert qe.next_update == utc("2023-01-03T22:45:33+0000")
    assert [lv.isvsvn for lv in qe.tcb_levels] == [6, 5, 4, 2, 1]
    assert qe.tcb_levels[0].tcb_status == "UpToDate"
    assert qe.tcb_levels[1].advisory_ids == ("INTEL-SA-00477",)


def test_real_tcb_info_v3_verifies_and_decodes() -> None:
    body, sig = split_tcb_info_document(TCB_DOC)
    info = verify_tcb_info(body, sig, TCB_CHAIN, intel_sgx_root_ca(), T1)
    raw = json.loads(TCB_DOC)["tcbInfo"]
    assert info.version == 3 and info.id == "SGX"
    assert info.fmspc == bytes.fromhex(raw["fmspc"]) == bytes.fromhex("00906EA10000")
    assert len(info.tcb_levels) == len(raw["tcbLevels"])
    first = raw["tcbLevels"][0]
    assert info.tcb_levels[0].sgx_components == tuple(
        c["svn"] for c in first["tcb"]["sgxtcbcomponents"]
    )
    assert info.tcb_levels[0].pcesvn == first["tcb"]["pcesvn"]
    assert info.tcb_levels[0].tcb_status == first["tcbStatus"]
    assert info.next_update == utc("2023-04-16T12:45:32+0000")


def test_second_real_tcb_info_verifies_in_its_own_window() -> None:
    body, sig = split_tcb_info_document(TCB2_DOC)
    info = verify_tcb_info(
        body, sig, TCB_CHAIN, intel_sgx_root_ca(), utc("2023-09-20T00:00:00+0000")
    )
    assert info.fmspc.hex() == "00606a000000"
    with pytest.raises(ExpiredError, match="TCB info"):
        verify_tcb_info(body, sig, TCB_CHAIN, intel_sgx_root_ca(), T1)


@pytest.mark.parametrize(
    "now",
    [
        utc("2022-12-04T22:45:32+0000"),  # one second before issueDate
        utc("2023-01-03T22:45:34+0000"),  # one second after nextUpdate
        1900000000,  # after the TCB signing certificate expired too
    ],
)
def test_qe_identity_outside_its_validity_is_rejected(now: int) -> None:
    body, sig = split_qe_identity_document(QE_DOC)
    with pytest.raises(ExpiredError):
        verify_qe_identity(body, sig, QE_CHAIN, intel_sgx_root_ca(), now)


def test_flipped_byte_in_body_or_signature_is_rejected() -> None:
    for doc, verify, chain in (
        (QE_DOC, verify_qe_identity, QE_CHAIN),
        (TCB_DOC, verify_tcb_info, TCB_CHAIN),
    ):
        body, sig = split_signed_document(doc, "enclaveIdentity" if doc is QE_DOC else "tcbInfo")
        for pos in (0, 17, len(body) // 2, len(body) - 1):
            flipped = body[:pos] + bytes([body[pos] ^ 0x01]) + body[pos + 1 :]
            with pytest.raises(SignatureError):
                verify(flipped, sig, chain, intel_sgx_root_ca(), T1)  # type: ignore[operator]
        for pos in (0, 31, 32, 63):
            bad = sig[:pos] + bytes([sig[pos] ^ 0x80]) + sig[pos + 1 :]
            with pytest.raises(SignatureError):
                verify(body, bad, chain, intel_sgx_root_ca(), T1)  # type: ignore[operator]
        # A semantically equal re-serialization is not what Intel signed.
        reserialized = json.dumps(json.loads(body), separators=(", ", ": ")).encode()
        with pytest.raises(SignatureError):
            verify(reserialized, sig, chain, intel_sgx_root_ca(), T1)  # type: ignore[operator]


def test_collateral_chain_to_another_root_or_wrong_shape_is_rejected() -> None:
    body, sig = split_tcb_info_document(TCB_DOC)
    with pytest.raises(CertificateError, match="not the trusted root"):
        verify_tcb_info(body, sig, TCB_CHAIN, dev_root_certificate(), T1)
    with pytest.raises(SignatureError, match="64 raw bytes"):
        verify_tcb_info(body, sig.hex().encode(), TCB_CHAIN, intel_sgx_root_ca(), T1)
    with pytest.raises(CertificateError):
        verify_tcb_info(body, sig, b"", intel_sgx_root_ca(), T1)


def test_pck_key_cannot_sign_collateral() -> None:
    pki = DevPki(b"collateral signer test")
    provider = SimDcapProvider(b"\x01" * 32, b"\x02" * 32, pki=pki)
    body = provider.tcb_info_collateral()[0]
    pck_key = derive_key(pki.seed + b"/" + provider.platform_seed + b"/pck")
    # The PCK chain has an intermediate: rejected as a collateral chain.
    with pytest.raises(CertificateError, match="intermediate"):
        verify_tcb_info(
            body,
            sign_raw(pck_key, body),
            pki.pck_chain_pem(provider.pck_certificate),
            pki.root_cert,
            1700000000,
        )
    # Even a PCK-like certificate issued directly by the root is refused.
    direct = (
        x509.CertificateBuilder()
        .subject_name(provider.pck_certificate.subject)
        .issuer_name(pki.root_cert.subject)
        .public_key(pck_key.public_key())
        .serial_number(99)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        .add_extension(
            provider.pck_certificate.extensions.get_extension_for_oid(
                x509.ObjectIdentifier("1.2.840.113741.1.13.1")
            ).value,
            False,
        )
        .sign(pki.root_key, hashes.SHA256())
    )
    chain = direct.public_bytes(Encoding.PEM) + pki.root_pem()
    with pytest.raises(CertificateError, match="PCK certificate"):
        verify_tcb_info(body, sign_raw(pck_key, body), chain, pki.root_cert, 1700000000)


def test_dev_collateral_v2_and_v3_verify_with_the_dev_root() -> None:
    for version in (2, 3):
        provider = SimDcapProvider(b"\x01" * 32, b"\x02" * 32, tcb_info_version=version)
        body, sig, chain = provider.tcb_info_collateral()
        info = verify_tcb_info(body, sig, chain, dev_root_certificate(), 1700000000)
        assert info.version == version
        assert info.tcb_levels[0].sgx_components == provider.tcb_components
        if version == 2:
            assert b'"sgxtcbcomp01svn":17' in body
        else:
            assert b'"sgxtcbcomponents"' in body


def _qe_body(**changes: object) -> bytes:
    body = json.loads(split_qe_identity_document(QE_DOC)[0])
    for key, value in changes.items():
        if value is None:
            del body[key]
        else:
            body[key] = value
    return json.dumps(body).encode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"version": 1}, "version 1"),
        ({"id": "QVE"}, "'QVE'"),
        ({"mrsigner": "00"}, "32 bytes"),
        ({"mrsigner": "zz" * 32}, "not hex"),
        ({"isvprodid": -1}, "integer"),
        ({"isvprodid": True}, "integer"),
        ({"isvprodid": "1"}, "integer"),
        ({"issueDate": "yesterday"}, "ISO 8601"),
        ({"issueDate": "2022-12-04T22:45:33"}, "time zone"),
        ({"tcbLevels": []}, "non-empty"),
        (
            {
                "tcbLevels": [
                    {"tcb": {"isvsvn": 6}, "tcbDate": "2022-11-09T00:00:00Z", "tcbStatus": "Great"}
                ]
            },
            "unknown value",
        ),
        (
            {
                "tcbLevels": [
                    {"tcb": [], "tcbDate": "2022-11-09T00:00:00Z", "tcbStatus": "UpToDate"}
                ]
            },
            "object",
        ),
        ({"miscselectMask": None}, "lacks 'miscselectMask'"),
    ],
)
def test_qe_identity_field_validation(changes: dict[str, object], message: str) -> None:
    with pytest.raises(CollateralError, match=message):
        parse_qe_identity(_qe_body(**changes))


@pytest.mark.parametrize(
    "body",
    [
        b'{"version":2,"version":2}',
        b'{"a":NaN}',
        b"[1]",
        b"not json",
        b"\xc3\x28",
        b"[" * 100_000,
    ],
)
def test_strict_json(body: bytes) -> None:
    with pytest.raises(CollateralError):
        parse_tcb_info(body)


def test_tcb_info_field_validation() -> None:
    base = json.loads(split_tcb_info_document(TCB_DOC)[0])
    for mutate, message in (
        (lambda b: b.update(version=4), "version 4"),
        (lambda b: b.update(id="TDX"), "'TDX'"),
        (lambda b: b.update(fmspc="00906EA100"), "6 bytes"),
        (lambda b: b["tcbLevels"][0]["tcb"]["sgxtcbcomponents"].pop(), "16 components"),
        (lambda b: b["tcbLevels"][0]["tcb"]["sgxtcbcomponents"][0].update(svn=256), "0..255"),
        (lambda b: b["tcbLevels"][1].update(tcbStatus="Fine"), "unknown value"),
        (lambda b: b["tcbLevels"][1].update(advisoryIDs="x"), "advisoryIDs"),
    ):
        body = json.loads(json.dumps(base))
        mutate(body)
        with pytest.raises(CollateralError, match=message):
            parse_tcb_info(json.dumps(body).encode())


# -- TCB level matching --------------------------------------------------------------------------


def _info(*levels: TcbLevel) -> TcbInfo:
    return TcbInfo("SGX", 3, 0, 2**40, b"\x00" * 6, b"\x00\x00", 0, 1, levels)


def test_readme_level_for_test2_platform_is_out_of_date() -> None:
    # README: on-chain level cpusvn 0C0C0303FFFF00000000000000000000, pcesvn 13, OutOfDate.
    level = TcbLevel(tuple(bytes.fromhex("0C0C0303FFFF00000000000000000000")), 13, 0, "OutOfDate")
    platform = tuple(bytes.fromhex("0c0c0303ffff00000000000000000000"))  # test2's PCK TCB
    assert match_tcb_level(_info(level), platform, 13).tcb_status == "OutOfDate"
    assert match_tcb_level(_info(level), platform, 14).tcb_status == "OutOfDate"
    with pytest.raises(TcbError, match="below every TCB level"):
        match_tcb_level(_info(level), platform, 12)
    lower = tuple(bytes.fromhex("0c0b0303ffff00000000000000000000"))
    with pytest.raises(TcbError):
        match_tcb_level(_info(level), lower, 13)


def test_first_matching_level_wins_in_document_order() -> None:
    body, _ = split_tcb_info_document(TCB_DOC)
    info = parse_tcb_info(body)
    test1_platform = tuple(bytes.fromhex("11110204018007000000000000000000"))
    assert match_tcb_level(info, test1_platform, 11).tcb_status == "SWHardeningNeeded"
    assert match_tcb_level(info, test1_platform, 10).tcb_status == "OutOfDate"
    comp7_zero = test1_platform[:6] + (0,) * 10
    assert match_tcb_level(info, comp7_zero, 11).tcb_status == "ConfigurationAndSWHardeningNeeded"
    assert match_tcb_level(info, comp7_zero, 10).tcb_status == "OutOfDateConfigurationNeeded"


def test_qe_tcb_levels_and_convergence() -> None:
    qe = parse_qe_identity(split_qe_identity_document(QE_DOC)[0])
    assert match_qe_tcb_level(qe, 8).tcb_status == "UpToDate"
    assert match_qe_tcb_level(qe, 6).tcb_status == "UpToDate"
    assert match_qe_tcb_level(qe, 5).tcb_status == "OutOfDate"
    assert match_qe_tcb_level(qe, 3).isvsvn == 2
    with pytest.raises(TcbError):
        match_qe_tcb_level(qe, 0)
    assert converge_tcb_status("UpToDate", "UpToDate") == "UpToDate"
    assert converge_tcb_status("SWHardeningNeeded", "OutOfDate") == "OutOfDate"
    assert (
        converge_tcb_status("ConfigurationAndSWHardeningNeeded", "OutOfDate")
        == "OutOfDateConfigurationNeeded"
    )
    assert converge_tcb_status("OutOfDate", "OutOfDate") == "OutOfDate"
    assert converge_tcb_status("UpToDate", "Revoked") == "Revoked"


def test_all_collateral_errors_are_attestation_errors() -> None:
    for exc in (CollateralError, SignatureError, CertificateError, ExpiredError, TcbError):
        assert issubclass(exc, AttestationError)
