"""PCK certificates and chains: SGX extension decoding checked against raw DER byte patterns,
chain verification to Intel's root, CA constraints, CRLs, and the DER reader's strictness."""

from __future__ import annotations

import datetime as dt
import hashlib
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from integritee.attestation import (
    INTEL_SGX_ROOT_CA_PEM,
    CertificateError,
    DevPki,
    ExpiredError,
    PckExtension,
    RevokedError,
    SignatureError,
    der,
    dev_root_certificate,
    intel_sgx_root_ca,
    load_certificate,
    load_crl,
    load_pem_chain,
    parse_quote,
    pck_extension,
    verify_certificate_chain,
)
from integritee.attestation.pck import check_revocation, decode_pck_extension, verify_crl

FIXTURES = Path("/work/shared/fixtures/sgx-dcap")
QUOTE1 = (FIXTURES / "test1_dcap_quote.bin").read_bytes()
QUOTE2 = bytes.fromhex((FIXTURES / "test2_dcap_quote.hex").read_text().strip())
T1 = 1671606747
T2 = 1693475073
SGX_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")


def chain_of(quote: bytes) -> list[x509.Certificate]:
    return load_pem_chain(parse_quote(quote).signature.certification_data)


def raw_extension(cert: x509.Certificate) -> bytes:
    value = cert.extensions.get_extension_for_oid(SGX_OID).value
    assert isinstance(value, x509.UnrecognizedExtension)
    return value.value


def value_after_oid(ext: bytes, oid_der: bytes, tag: int, size: int) -> bytes:
    """Independent of the DER reader: find `OID` then a short-form TLV of `tag`."""
    pos = ext.index(oid_der) + len(oid_der)
    assert ext[pos] == tag and ext[pos + 1] == size
    return ext[pos + 2 : pos + 2 + size]


SGX_PREFIX = bytes.fromhex("2a864886f84d010d01")  # 1.2.840.113741.1.13.1


def test_intel_root_constant_is_the_fixture_root() -> None:
    fixture_root = x509.load_pem_x509_certificates(
        (FIXTURES / "tcb_info_issuer_chain.pem").read_bytes()
    )[-1]
    root = intel_sgx_root_ca()
    assert root == fixture_root == chain_of(QUOTE1)[-1]
    assert root.subject == root.issuer
    assert "Intel SGX Root CA" in root.subject.rfc4514_string()
    assert (
        hashlib.sha256(root.public_bytes(Encoding.DER)).hexdigest()
        == "44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3"
    )
    assert load_certificate(INTEL_SGX_ROOT_CA_PEM) == root
    assert load_certificate(root.public_bytes(Encoding.DER)) == root


def test_pck_extension_of_real_certificates_matches_raw_der() -> None:
    for quote, fmspc_hex in ((QUOTE1, "00906ea10000"), (QUOTE2, "00606a000000")):
        leaf = chain_of(quote)[0]
        ext = raw_extension(leaf)
        parsed = pck_extension(leaf)
        fmspc_oid = bytes([0x06, 0x0A]) + SGX_PREFIX + b"\x04"
        cpusvn_oid = bytes([0x06, 0x0B]) + SGX_PREFIX + b"\x02\x12"
        pceid_oid = bytes([0x06, 0x0A]) + SGX_PREFIX + b"\x03"
        assert parsed.fmspc == value_after_oid(ext, fmspc_oid, 0x04, 6)
        assert parsed.fmspc.hex() == fmspc_hex
        assert parsed.cpusvn == value_after_oid(ext, cpusvn_oid, 0x04, 16)
        assert parsed.pce_id == value_after_oid(ext, pceid_oid, 0x04, 2)
        # For TCB type 0 the component SVNs are the CPUSVN bytes.
        assert bytes(parsed.tcb_components) == parsed.cpusvn
        assert parsed.encode() == ext  # our encoder reproduces Intel's DER exactly


def test_pck_svns_of_the_two_platforms() -> None:
    p1 = pck_extension(chain_of(QUOTE1)[0])
    assert p1.cpusvn.hex() == "11110204018007000000000000000000"
    assert p1.pcesvn == 11 and p1.sgx_type == 0 and p1.platform_instance_id is None
    p2 = pck_extension(chain_of(QUOTE2)[0])
    assert p2.cpusvn.hex() == "0c0c0303ffff00000000000000000000"
    assert p2.pcesvn == 13 and p2.sgx_type == 1
    assert p2.dynamic_platform and p2.cached_keys and p2.smt_enabled


def test_real_pck_chains_verify_at_their_times() -> None:
    root = intel_sgx_root_ca()
    path = verify_certificate_chain(chain_of(QUOTE1), root, T1)
    assert [c.subject for c in path] == [c.subject for c in chain_of(QUOTE1)]
    # test2's PCK certificate was issued at exactly T2: validity bounds are inclusive.
    verify_certificate_chain(chain_of(QUOTE2), root, T2)
    with pytest.raises(ExpiredError, match="PCK Certificate"):
        verify_certificate_chain(chain_of(QUOTE2), root, T2 - 1)
    with pytest.raises(ExpiredError, match="PCK Certificate"):
        verify_certificate_chain(chain_of(QUOTE1), root, 1900000000)


def test_chain_without_the_root_certificate_also_verifies() -> None:
    verify_certificate_chain(chain_of(QUOTE1)[:2], intel_sgx_root_ca(), T1)


def test_chain_to_another_root_is_rejected() -> None:
    with pytest.raises(CertificateError, match="not the trusted root"):
        verify_certificate_chain(chain_of(QUOTE1), dev_root_certificate(), T1)
    with pytest.raises(CertificateError, match="issued by"):
        verify_certificate_chain(chain_of(QUOTE1)[:2], dev_root_certificate(), T1)


def test_root_impersonation_with_same_name_fails_on_signature() -> None:
    # A self-made root carrying Intel's subject name but another key.
    intel = intel_sgx_root_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    fake_root = (
        x509.CertificateBuilder()
        .subject_name(intel.subject)
        .issuer_name(intel.subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(dt.datetime(2018, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2049, 1, 1, tzinfo=dt.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="not the trusted root"):
        verify_certificate_chain(chain_of(QUOTE1), fake_root, T1)
    with pytest.raises(SignatureError):
        verify_certificate_chain(chain_of(QUOTE1)[:2], fake_root, T1)


def test_wrong_order_and_foreign_intermediate_rejected() -> None:
    c1, c2 = chain_of(QUOTE1), chain_of(QUOTE2)
    with pytest.raises(CertificateError):
        verify_certificate_chain([c1[1], c1[0], c1[2]], intel_sgx_root_ca(), T2)
    # test1's PCK leaf with test2's (Platform) CA: names differ.
    with pytest.raises(CertificateError, match="issued by"):
        verify_certificate_chain([c1[0], c2[1], c2[2]], intel_sgx_root_ca(), T2)


def test_max_intermediates_and_ca_constraints() -> None:
    root = intel_sgx_root_ca()
    with pytest.raises(CertificateError, match="intermediate"):
        verify_certificate_chain(chain_of(QUOTE1), root, T1, max_intermediates=0)
    # A leaf (CA:FALSE) cannot act as an issuer.
    pki = DevPki(b"constraints test")
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    pck = pki.issue_pck(leaf_key, _dummy_extension(), b"p")
    below_leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "below")]))
        .issuer_name(pck.subject)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(5)
        .not_valid_before(dt.datetime(2020, 1, 1, tzinfo=dt.UTC))
        .not_valid_after(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))
        .sign(leaf_key, hashes.SHA256())
    )
    with pytest.raises(CertificateError, match="not a CA"):
        verify_certificate_chain([below_leaf, pck, pki.pck_ca_cert], pki.root_cert, 1700000000)


def _dummy_extension() -> PckExtension:
    return PckExtension(
        ppid=bytes(16),
        tcb_components=tuple(range(16)),
        pcesvn=300,
        cpusvn=bytes(range(16)),
        pce_id=b"\x00\x00",
        fmspc=b"\x01\x02\x03\x04\x05\x06",
        sgx_type=1,
        platform_instance_id=b"\x07" * 16,
        dynamic_platform=False,
        cached_keys=True,
        smt_enabled=False,
    )


def test_pck_extension_roundtrip_including_optional_fields() -> None:
    ext = _dummy_extension()
    assert decode_pck_extension(ext.encode()) == ext


def test_pck_extension_missing_or_malformed() -> None:
    good = _dummy_extension().encode()
    with pytest.raises(der.DerError, match="trailing"):
        decode_pck_extension(good + b"\x00")
    with pytest.raises(der.DerError):
        decode_pck_extension(good[:-1])
    # Drop the FMSPC entry.
    items = der.read_all(der.read_single(good, der.TAG_SEQUENCE).value)
    without = [der.encode_tlv(t.tag, t.value) for i, t in enumerate(items) if i != 3]
    with pytest.raises(CertificateError, match="FMSPC"):
        decode_pck_extension(der.encode_sequence(*without))
    with pytest.raises(CertificateError, match="no SGX extension"):
        pck_extension(intel_sgx_root_ca())


def test_der_reader_strictness() -> None:
    with pytest.raises(der.DerError, match="non-minimal"):
        der.read_tlv(b"\x04\x81\x05hello", 0)
    with pytest.raises(der.DerError, match="indefinite"):
        der.read_tlv(b"\x30\x80\x00\x00", 0)
    with pytest.raises(der.DerError, match="longer than"):
        der.read_tlv(b"\x04\x05abc", 0)
    with pytest.raises(der.DerError, match="negative"):
        der.decode_unsigned(der.Tlv(der.TAG_INTEGER, b"\x80"))
    with pytest.raises(der.DerError, match="non-minimal"):
        der.decode_unsigned(der.Tlv(der.TAG_INTEGER, b"\x00\x05"))
    assert der.decode_unsigned(der.Tlv(der.TAG_INTEGER, b"\x00\x80")) == 128
    assert der.decode_oid(bytes.fromhex("2a864886f84d010d0104")) == "1.2.840.113741.1.13.1.4"
    assert der.encode_oid("1.2.840.113741.1.13.1.2.17")[2:] == SGX_PREFIX + b"\x02\x11"
    with pytest.raises(der.DerError, match="BOOLEAN"):
        der.decode_boolean(der.Tlv(der.TAG_BOOLEAN, b"\x01"))


def test_pem_chain_strictness() -> None:
    pem = parse_quote(QUOTE1).signature.certification_data
    assert len(load_pem_chain(pem + b"\x00\x00")) == 3
    with pytest.raises(CertificateError, match="between PEM"):
        load_pem_chain(pem.replace(b"-----\n-----BEGIN", b"-----\nxx\n-----BEGIN", 1))
    with pytest.raises(CertificateError, match="after the last"):
        load_pem_chain(pem + b"junk")
    with pytest.raises(CertificateError, match="no PEM"):
        load_pem_chain(b"\n")
    with pytest.raises(CertificateError, match="base64"):
        load_pem_chain(b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError, match="malformed certificate"):
        load_pem_chain(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(CertificateError, match="more than 5"):
        load_pem_chain(pem * 2)


# -- CRLs --------------------------------------------------------------------------------------


def test_crl_fixtures_are_hex_der_and_load() -> None:
    pck_crl = load_crl((FIXTURES / "pck_crl.der").read_bytes())
    root_crl = load_crl((FIXTURES / "root_ca_crl.der").read_bytes())
    assert "PCK Platform CA" in pck_crl.issuer.rfc4514_string()
    assert len(list(pck_crl)) == 3
    assert root_crl.issuer == intel_sgx_root_ca().subject
    assert len(list(root_crl)) == 0
    # PEM and DER encodings load to the same CRL.
    assert load_crl(root_crl.public_bytes(Encoding.PEM)) == root_crl
    assert load_crl(root_crl.public_bytes(Encoding.DER)) == root_crl
    with pytest.raises(CertificateError):
        load_crl(b"zz not a crl")


def test_real_crls_verify_against_their_issuers() -> None:
    root = intel_sgx_root_ca()
    root_crl = load_crl((FIXTURES / "root_ca_crl.der").read_bytes())
    verify_crl(root_crl, root, T1)
    # The PCK CRL is the Platform CA's (the CA of test2's chain); it was current in Nov 2022.
    platform_ca = chain_of(QUOTE2)[1]
    pck_crl = load_crl((FIXTURES / "pck_crl.der").read_bytes())
    verify_crl(pck_crl, platform_ca, 1667000000)
    with pytest.raises(ExpiredError, match="CRL"):
        verify_crl(pck_crl, platform_ca, T1)
    # pck_crl_issuer_chain.pem holds the Processor CA, which did not sign this CRL.
    processor_ca = load_pem_chain((FIXTURES / "pck_crl_issuer_chain.pem").read_bytes())[0]
    with pytest.raises(CertificateError, match="not issued by"):
        verify_crl(pck_crl, processor_ca, 1667000000)


def test_real_chain_with_crls_when_not_revoked() -> None:
    crls = [
        load_crl((FIXTURES / "pck_crl.der").read_bytes()),
        load_crl((FIXTURES / "root_ca_crl.der").read_bytes()),
    ]
    # The root CRL covers the Processor CA; the Platform CA's CRL does not apply to test1.
    verify_certificate_chain(chain_of(QUOTE1), intel_sgx_root_ca(), T1, crls=crls)


def test_revoked_certificates_are_rejected() -> None:
    pki = DevPki(b"crl test")
    key = ec.generate_private_key(ec.SECP256R1())
    pck = pki.issue_pck(key, _dummy_extension(), b"revoked")
    chain = [pck, pki.pck_ca_cert, pki.root_cert]
    now = 1700000000
    ok_crl = pki.issue_crl(revoked_serials=[pck.serial_number + 2])
    verify_certificate_chain(chain, pki.root_cert, now, crls=[ok_crl])
    bad_crl = pki.issue_crl(revoked_serials=[pck.serial_number])
    with pytest.raises(RevokedError, match="revoked"):
        verify_certificate_chain(chain, pki.root_cert, now, crls=[bad_crl])
    ca_revoked = pki.issue_crl(issuer="root", revoked_serials=[pki.pck_ca_cert.serial_number])
    with pytest.raises(RevokedError, match="PCK Processor CA"):
        verify_certificate_chain(chain, pki.root_cert, now, crls=[ca_revoked])
    stale = pki.issue_crl(this_update=1600000000, next_update=1600000001)
    with pytest.raises(ExpiredError, match="CRL"):
        check_revocation(chain, [stale], now)
    # A CRL with the PCK CA's name but signed by another PKI's key.
    forged = DevPki(b"crl test")
    forged.pck_ca_key = ec.generate_private_key(ec.SECP256R1())
    with pytest.raises(SignatureError, match="CRL"):
        check_revocation(chain, [forged.issue_crl()], now)
