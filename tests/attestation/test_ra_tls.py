"""RA-TLS certificates: round trips with Skip and sim-dcap evidence under the dev PKI, every
rejection reason (other MRENCLAVE, a quote replayed into a certificate for another key, corrupted
certificates, debug and Skip when not allowed, a quote from another PKI root, expiry, malformed
evidence), and a mutual TLS handshake with the RA contexts."""

from __future__ import annotations

import asyncio
import datetime
import hashlib

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from integritee.attestation import (
    METHOD_DCAP,
    DevPki,
    SimDcapProvider,
    SkipProvider,
    parse_quote,
    ra_tls,
)
from integritee.attestation.ra_tls import (
    RA_EVIDENCE_OID,
    PeerIdentity,
    RaIdentity,
    RaTlsError,
    RaVerifier,
    client_ssl_context,
    decode_evidence,
    encode_evidence,
    make_ra_certificate,
    peer_certificate,
    server_ssl_context,
    transport_ca_certificate,
    verify_ra_certificate,
)
from integritee.crypto.keys import Keypair
from integritee.enclave.tls import self_signed_certificate

NOW = 1_750_000_000  # inside the dev collateral's validity (2020..2099)
MRENCLAVE = hashlib.sha256(b"ra-tls test enclave").digest()
OTHER_MRENCLAVE = hashlib.sha256(b"ra-tls modified enclave").digest()
MRSIGNER = hashlib.sha256(b"ra-tls test signer").digest()
KEY = Keypair.from_seed(hashlib.sha256(b"enclave one").digest(), "ed25519")
OTHER_KEY = Keypair.from_seed(hashlib.sha256(b"enclave two").digest(), "ed25519")
DCAP = SimDcapProvider(MRENCLAVE, MRSIGNER)
QE_IDENTITY, TCB_INFO = DCAP.verified_collateral(NOW)


def der(cert_pem: bytes) -> bytes:
    return x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)


def verify(cert_der: bytes, **overrides: object) -> PeerIdentity:
    args: dict[str, object] = {
        "expected_mrenclave": MRENCLAVE,
        "trusted_root": DCAP.trusted_root(),
        "qe_identity": QE_IDENTITY,
        "tcb_info": TCB_INFO,
        "now": NOW,
        "allow_skip": False,
        "allow_debug": False,
    }
    args.update(overrides)
    return verify_ra_certificate(cert_der, **args)  # type: ignore[arg-type]


def rejected(cert_der: bytes, code: str, **overrides: object) -> RaTlsError:
    with pytest.raises(RaTlsError) as info:
        verify(cert_der, **overrides)
    assert info.value.code == code, str(info.value)
    return info.value


class ReplayProvider:
    """An attacker's 'provider': returns evidence captured from a genuine enclave."""

    name = "replay"

    def __init__(self, method: str, evidence: bytes) -> None:
        self.method = method
        self.evidence = evidence

    def quote(self, report_data: bytes) -> bytes:
        return self.evidence


def issue(
    public_key: Ed25519PrivateKey,
    extension_value: bytes | None,
    *,
    extra: x509.ExtensionType | None = None,
) -> bytes:
    """A leaf issued by the (public) transport CA, with arbitrary RA evidence bytes."""
    ca_key, ca_cert = ra_tls._transport_ca()
    start = datetime.datetime.fromtimestamp(NOW, datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "x")]))
        .issuer_name(ca_cert.subject)
        .public_key(public_key.public_key())
        .serial_number(7)
        .not_valid_before(start - datetime.timedelta(days=1))
        .not_valid_after(start + datetime.timedelta(days=1))
    )
    if extension_value is not None:
        builder = builder.add_extension(
            x509.UnrecognizedExtension(x509.ObjectIdentifier(RA_EVIDENCE_OID), extension_value),
            critical=False,
        )
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(ca_key, None).public_bytes(serialization.Encoding.DER)


@pytest.fixture(scope="module")
def dcap_cert() -> bytes:
    return der(make_ra_certificate(KEY, DCAP, now=NOW)[0])


# -- round trips -------------------------------------------------------------------------------


def test_dcap_round_trip(dcap_cert: bytes) -> None:
    peer = verify(dcap_cert)
    assert peer == PeerIdentity(KEY.public_key, MRENCLAVE, "Dcap", False, "UpToDate", MRSIGNER)


def test_dcap_certificate_layout(dcap_cert: bytes) -> None:
    cert = x509.load_der_x509_certificate(dcap_cert)
    assert cert.issuer == transport_ca_certificate().subject
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(RA_EVIDENCE_OID))
    assert not ext.critical
    assert isinstance(ext.value, x509.UnrecognizedExtension)
    method, evidence = decode_evidence(ext.value.value)
    assert method == METHOD_DCAP
    quote = parse_quote(evidence)
    # Exactly the quote Teerex registers: the key, zero-padded.
    assert quote.report_body.report_data == KEY.public_key + bytes(32)
    assert quote.report_body.mrenclave == MRENCLAVE
    # The DER of the extension value: SEQUENCE { INTEGER 1, UTF8String "Dcap", OCTET STRING }
    assert ext.value.value[0] == 0x30 and b"\x02\x01\x01\x0c\x04Dcap\x04" in ext.value.value[:16]


def test_skip_round_trip() -> None:
    cert_pem, key_pem = make_ra_certificate(OTHER_KEY, SkipProvider(MRENCLAVE), now=NOW)
    peer = verify(der(cert_pem), allow_skip=True, qe_identity=None, tcb_info=None)
    assert peer == PeerIdentity(OTHER_KEY.public_key, MRENCLAVE, "Skip", False, None, None)
    # The key PEM is the certificate's key.
    private = serialization.load_pem_private_key(key_pem, None)
    assert isinstance(private, Ed25519PrivateKey)
    assert private.public_key().public_bytes_raw() == OTHER_KEY.public_key


def test_verifier_and_identity(dcap_cert: bytes) -> None:
    verifier = RaVerifier(
        MRENCLAVE, DCAP.trusted_root(), QE_IDENTITY, {TCB_INFO.fmspc: TCB_INFO}, clock=lambda: NOW
    )
    assert verifier(dcap_cert).public_key == KEY.public_key
    identity = RaIdentity.create(KEY, DCAP, now=NOW)
    assert verifier(identity.cert_der).mrenclave == MRENCLAVE
    assert "key_pem" not in repr(identity)
    # A wall clock beyond the certificate's lifetime rejects it.
    late = RaVerifier(MRENCLAVE, DCAP.trusted_root(), QE_IDENTITY, TCB_INFO, clock=lambda: 4e9)
    with pytest.raises(RaTlsError) as info:
        late(dcap_cert)
    assert info.value.code == "validity"


def test_evidence_codec_round_trip() -> None:
    for method, evidence in (("Dcap", bytes(range(256)) * 20), ("Skip", MRENCLAVE)):
        assert decode_evidence(encode_evidence(method, evidence)) == (method, evidence)


def test_make_requires_ed25519() -> None:
    with pytest.raises(ValueError, match="ed25519"):
        make_ra_certificate(Keypair.from_seed(bytes(32), "sr25519"), DCAP)


# -- rejections --------------------------------------------------------------------------------


def test_other_mrenclave_rejected(dcap_cert: bytes) -> None:
    error = rejected(dcap_cert, "mrenclave", expected_mrenclave=OTHER_MRENCLAVE)
    assert MRENCLAVE.hex() in str(error)
    modified = SimDcapProvider(OTHER_MRENCLAVE, MRSIGNER)
    rejected(der(make_ra_certificate(KEY, modified, now=NOW)[0]), "mrenclave")
    skip = der(make_ra_certificate(KEY, SkipProvider(OTHER_MRENCLAVE), now=NOW)[0])
    rejected(skip, "mrenclave", allow_skip=True)


def test_quote_replayed_for_another_key_fails_binding(dcap_cert: bytes) -> None:
    cert = x509.load_der_x509_certificate(dcap_cert)
    ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(RA_EVIDENCE_OID)).value
    assert isinstance(ext, x509.UnrecognizedExtension)
    stolen = ReplayProvider(*decode_evidence(ext.value))
    forged = der(make_ra_certificate(OTHER_KEY, stolen, now=NOW)[0])
    error = rejected(forged, "binding")
    assert OTHER_KEY.public_key.hex() in str(error)


def test_corrupted_certificate_fails_signature(dcap_cert: bytes) -> None:
    # Flip one byte of the quote's report body inside the signed certificate.
    offset = dcap_cert.index(MRENCLAVE)
    tampered = bytearray(dcap_cert)
    tampered[offset] ^= 0x01
    rejected(bytes(tampered), "signature")
    # A self-signed certificate (not issued by the transport CA).
    rejected(der(self_signed_certificate(KEY)[0]), "signature")


def test_debug_enclave_only_when_allowed() -> None:
    debug = SimDcapProvider(MRENCLAVE, MRSIGNER, debug=True)
    cert = der(make_ra_certificate(KEY, debug, now=NOW)[0])
    rejected(cert, "debug")
    assert verify(cert, allow_debug=True).debug is True


def test_skip_only_when_allowed() -> None:
    cert = der(make_ra_certificate(KEY, SkipProvider(MRENCLAVE), now=NOW)[0])
    rejected(cert, "skip")


def test_quote_from_another_pki_root_rejected() -> None:
    rogue = SimDcapProvider(MRENCLAVE, MRSIGNER, pki=DevPki(b"someone else's root"))
    cert = der(make_ra_certificate(KEY, rogue, now=NOW)[0])
    error = rejected(cert, "quote")
    assert "CertificateError" in str(error) or "SignatureError" in str(error)
    # Even with the rogue's own collateral: the trust anchor decides.
    qe, info = rogue.verified_collateral(NOW)
    rejected(cert, "quote", qe_identity=qe, tcb_info=info)


def test_dcap_without_collateral_rejected(dcap_cert: bytes) -> None:
    rejected(dcap_cert, "collateral", qe_identity=None, tcb_info=None, allow_skip=True)


def test_validity_window(dcap_cert: bytes) -> None:
    assert verify(dcap_cert, now=NOW - 3600).public_key == KEY.public_key  # clock skew
    rejected(dcap_cert, "validity", now=NOW - 3 * 86400)
    rejected(dcap_cert, "validity", now=NOW + 366 * 86400)


def test_malformed_inputs() -> None:
    rejected(b"", "format")
    rejected(b"\x30\x03\x02\x01\x01", "format")
    rejected(b"\x00" * 70_000, "format")
    with pytest.raises(RaTlsError) as info:
        verify_ra_certificate(
            "not bytes",  # type: ignore[arg-type]
            expected_mrenclave=MRENCLAVE,
            trusted_root=None,
            qe_identity=None,
            tcb_info=None,
        )
    assert info.value.code == "format"

    ec_key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ec")])
    ec_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ec_key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1))
        .not_valid_after(datetime.datetime(2090, 1, 1))
        .sign(ec_key, hashes.SHA256())
    )
    rejected(ec_cert.public_bytes(serialization.Encoding.DER), "key")


@pytest.mark.parametrize(
    ("extension", "code", "fragment"),
    [
        (None, "evidence", "no RA evidence extension"),
        (b"\x04\x00", "evidence", "malformed"),
        (b"", "evidence", "malformed"),
        (encode_evidence("Dcap", b"x") + b"\x00", "evidence", "malformed"),
        (
            ra_tls.encode_sequence(ra_tls.encode_unsigned(2), b"\x0c\x04Skip", b"\x04\x00"),
            "evidence",
            "version 2",
        ),
        (encode_evidence("Ias", b"report"), "method", "'Ias'"),
        (encode_evidence("Skip", MRENCLAVE[:31]), "evidence", "32 bytes"),
        (encode_evidence("Dcap", b"not a quote"), "quote", "QuoteFormatError"),
        (encode_evidence("Dcap" * 5, b""), "evidence", "too long"),
    ],
)
def test_bad_evidence(extension: bytes | None, code: str, fragment: str) -> None:
    cert = issue(Ed25519PrivateKey.generate(), extension)
    error = rejected(cert, code, allow_skip=True)
    assert fragment in str(error)


# -- TLS -------------------------------------------------------------------------------------


async def test_mutual_tls_handshake_exchanges_ra_certificates() -> None:
    verifier = RaVerifier(MRENCLAVE, DCAP.trusted_root(), QE_IDENTITY, TCB_INFO)
    server_identity = RaIdentity.create(KEY, DCAP)
    client_identity = RaIdentity.create(OTHER_KEY, DCAP)
    seen: list[PeerIdentity] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(verifier(peer_certificate(writer.get_extra_info("ssl_object"))))
        writer.write(b"ok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(
        handle, "127.0.0.1", 0, ssl=server_ssl_context(server_identity)
    )
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client_ssl_context(client_identity)
        )
        assert await reader.read() == b"ok"
        server_peer = verifier(peer_certificate(writer.get_extra_info("ssl_object")))
        writer.close()
        assert server_peer.public_key == KEY.public_key
        assert [p.public_key for p in seen] == [OTHER_KEY.public_key]
    finally:
        server.close()
        await server.wait_closed()


def test_peer_certificate_requires_one() -> None:
    with pytest.raises(RaTlsError) as info:
        peer_certificate(None)
    assert info.value.code == "no-certificate"
