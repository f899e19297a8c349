"""RA-TLS: X.509 certificates that carry an enclave's attestation evidence, and their checks.

An RA certificate is an X.509 v3 certificate for the enclave's ed25519 key with one extra,
non-critical extension:

    OID 2.25.52991394467727902994658178161980011791.1   (RA_EVIDENCE_OID)

The arc 2.25.<UUID> is the registration-free OID arc of ITU-T X.667 / RFC 4122 section 4 (the
UUID 27ddc576-8a2e-49e9-81b5-c9b760c4f50f was drawn for this project); sub-arc 1 is this
extension. Its value is DER:

    RaEvidence ::= SEQUENCE {
        version   INTEGER (1),
        method    UTF8String,    -- Teerex SgxAttestationMethod: "Dcap" or "Skip"
        evidence  OCTET STRING } -- Dcap: the DCAP v3 quote; Skip: the 32-byte MRENCLAVE

For Dcap the quote's report_data[0..32] is the certificate's public key, so the quote cannot be
moved into a certificate for another key (report_data[32..64] is zero, exactly the quote Teerex
registers). Skip evidence is a bare claim and is accepted only where Teerex itself allows
skipping (dev chains).

Why the certificates are issued by a *public* transport CA rather than self-signed: in mutual
TLS the server must request the client's certificate, and Python's `ssl` module (OpenSSL without
a verify callback) then insists on verifying it against a trust store, which a self-signed
certificate of an unknown peer can never pass. So every RA certificate is signed by one fixed
"RA-TLS transport CA" whose private key is derived from a public label
(`TRANSPORT_CA_SEED_LABEL`): anybody can mint such certificates, and the chain confers no trust
at all. The trust comes from (1) the TLS handshake proving possession of the leaf private key and
(2) `verify_ra_certificate` checking the evidence in the leaf and its binding to that key, which
both sides run on `getpeercert(binary_form=True)` after the handshake.
"""

from __future__ import annotations

import datetime
import hashlib
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.x509.oid import NameOID

from integritee.attestation.collateral import QeIdentity, TcbInfo
from integritee.attestation.der import (
    TAG_OCTET_STRING,
    TAG_SEQUENCE,
    DerError,
    decode_unsigned,
    encode_sequence,
    encode_tlv,
    encode_unsigned,
    expect_tag,
    read_all,
    read_single,
)
from integritee.attestation.errors import AttestationError
from integritee.attestation.providers import METHOD_DCAP, METHOD_SKIP, AttestationProvider
from integritee.attestation.verify import verify_quote
from integritee.crypto.keys import Keypair

RA_EVIDENCE_OID = "2.25.52991394467727902994658178161980011791.1"
RA_EVIDENCE_VERSION = 1
TRANSPORT_CA_SEED_LABEL = b"integritee ra-tls transport ca v1 (public key material, no trust)"
TRANSPORT_CA_NAME = "Integritee RA-TLS transport CA (no trust)"
DEFAULT_CERT_LIFETIME = datetime.timedelta(days=365)
# Validateers' clocks differ; a certificate made a moment ago must already be valid for the peer.
CLOCK_SKEW = datetime.timedelta(days=1)
MAX_CERTIFICATE_SIZE = 64 * 1024  # a DCAP quote with its PCK chain is ~5 KB
_TAG_UTF8_STRING = 0x0C
_MAX_METHOD_LEN = 16

TcbInfoArg = TcbInfo | Mapping[bytes, TcbInfo]


class RaTlsError(AttestationError):
    """An RA certificate was rejected. `code` names the failed check, one of: "format", "key",
    "signature", "validity", "evidence", "method", "skip", "collateral", "quote", "binding",
    "debug", "mrenclave", "no-certificate"."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.reason = message


@dataclass(frozen=True)
class PeerIdentity:
    """What an accepted RA certificate proves about the peer that presented it."""

    public_key: bytes  # 32, ed25519: the certificate key (and, for Dcap, report_data[0..32])
    mrenclave: bytes  # 32
    method: str  # "Dcap" or "Skip"
    debug: bool  # Skip makes no build-mode claim: False (allow_skip is already the dev switch)
    tcb_status: str | None  # converged Intel TCB status; None for Skip (nothing was evaluated)
    mrsigner: bytes | None = None  # None for Skip


@dataclass(frozen=True)
class RaIdentity:
    """This enclave's RA certificate and its private key (PEM), as presented in MU-RA TLS."""

    cert_pem: bytes
    key_pem: bytes = field(repr=False)

    @classmethod
    def create(
        cls,
        key: Keypair,
        provider: AttestationProvider,
        *,
        now: int | None = None,
        lifetime: datetime.timedelta = DEFAULT_CERT_LIFETIME,
    ) -> RaIdentity:
        cert_pem, key_pem = make_ra_certificate(key, provider, now=now, lifetime=lifetime)
        return cls(cert_pem, key_pem)

    @property
    def cert_der(self) -> bytes:
        return x509.load_pem_x509_certificate(self.cert_pem).public_bytes(
            serialization.Encoding.DER
        )


# -- the transport CA ------------------------------------------------------------------------


@cache
def _transport_ca() -> tuple[Ed25519PrivateKey, x509.Certificate]:
    key = Ed25519PrivateKey.from_private_bytes(hashlib.sha256(TRANSPORT_CA_SEED_LABEL).digest())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, TRANSPORT_CA_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC))
        .not_valid_after(datetime.datetime(2099, 12, 31, 23, 59, 59, tzinfo=datetime.UTC))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, None)  # ed25519 signatures are deterministic: the same bytes everywhere
    )
    return key, cert


def transport_ca_certificate() -> x509.Certificate:
    """The public transport CA that issues every RA certificate (see the module docstring)."""
    return _transport_ca()[1]


def transport_ca_pem() -> bytes:
    return transport_ca_certificate().public_bytes(serialization.Encoding.PEM)


# -- evidence extension ----------------------------------------------------------------------


def encode_evidence(method: str, evidence: bytes) -> bytes:
    return encode_sequence(
        encode_unsigned(RA_EVIDENCE_VERSION),
        encode_tlv(_TAG_UTF8_STRING, method.encode("utf-8")),
        encode_tlv(TAG_OCTET_STRING, bytes(evidence)),
    )


def decode_evidence(value: bytes) -> tuple[str, bytes]:
    """(method, evidence) from the extension value; raises RaTlsError("evidence")."""
    try:
        items = read_all(read_single(value, TAG_SEQUENCE).value)
        if len(items) != 3:
            raise DerError(f"expected 3 elements, got {len(items)}")
        version = decode_unsigned(items[0])
        if version != RA_EVIDENCE_VERSION:
            raise RaTlsError("evidence", f"unsupported RA evidence version {version}")
        expect_tag(items[1], _TAG_UTF8_STRING)
        if len(items[1].value) > _MAX_METHOD_LEN:
            raise DerError("method name too long")
        method = items[1].value.decode("utf-8")
        expect_tag(items[2], TAG_OCTET_STRING)
    except DerError as exc:
        raise RaTlsError("evidence", f"malformed RA evidence extension: {exc}") from None
    except UnicodeDecodeError:
        raise RaTlsError("evidence", "RA evidence method is not UTF-8") from None
    return method, items[2].value


# -- making a certificate --------------------------------------------------------------------


def make_ra_certificate(
    key: Keypair,
    provider: AttestationProvider,
    *,
    now: int | None = None,
    lifetime: datetime.timedelta = DEFAULT_CERT_LIFETIME,
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) of an RA certificate for the ed25519 `key`, with the
    provider's evidence for report_data = the key's public key. Validity: `now` (unix seconds,
    default the current time) minus a day of clock skew, to `now + lifetime`."""
    if key.crypto != "ed25519":
        raise ValueError(f"an RA certificate needs an ed25519 key, got {key.crypto}")
    private = Ed25519PrivateKey.from_private_bytes(key.private_key)
    public = private.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    evidence = provider.quote(public)
    ca_key, ca_cert = _transport_ca()
    start = datetime.datetime.fromtimestamp(time.time() if now is None else now, datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "integritee-enclave")]))
        .issuer_name(ca_cert.subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - CLOCK_SKEW)
        .not_valid_after(start + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.UnrecognizedExtension(
                x509.ObjectIdentifier(RA_EVIDENCE_OID), encode_evidence(provider.method, evidence)
            ),
            critical=False,  # OpenSSL aborts the handshake on unknown critical extensions
        )
        .sign(ca_key, None)
    )
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


# -- verifying a certificate -----------------------------------------------------------------


def verify_ra_certificate(
    cert_der: bytes,
    *,
    expected_mrenclave: bytes,
    trusted_root: x509.Certificate | None,
    qe_identity: QeIdentity | None,
    tcb_info: TcbInfoArg | None,
    now: int | None = None,
    allow_skip: bool = False,
    allow_debug: bool = False,
) -> PeerIdentity:
    """Check a peer's RA certificate (DER); `now` in unix seconds (default: the current time)
    for the certificate's validity and the DCAP verification. The collateral may be None when
    only Skip peers are expected; a Dcap certificate then fails with code "collateral"."""
    if len(expected_mrenclave) != 32:
        raise ValueError("expected_mrenclave must be 32 bytes")
    at = int(time.time()) if now is None else now
    cert = _parse_certificate(cert_der)
    public_key = _check_certificate(cert, at)
    method, evidence = decode_evidence(_evidence_extension(cert))

    if method == METHOD_SKIP:
        if not allow_skip:
            raise RaTlsError("skip", "peer uses the Skip attestation method, which is not allowed")
        if len(evidence) != 32:
            raise RaTlsError("evidence", f"Skip evidence must be 32 bytes, got {len(evidence)}")
        peer = PeerIdentity(public_key, evidence, METHOD_SKIP, False, None)
    elif method == METHOD_DCAP:
        if trusted_root is None or qe_identity is None or tcb_info is None:
            raise RaTlsError("collateral", "no DCAP collateral to verify the peer's quote with")
        try:
            verified = verify_quote(
                evidence,
                qe_identity=qe_identity,
                tcb_info=tcb_info,
                trusted_root=trusted_root,
                now=at,
            )
        except AttestationError as exc:
            raise RaTlsError("quote", f"{type(exc).__name__}: {exc}") from None
        if verified.report_data[:32] != public_key:
            raise RaTlsError(
                "binding",
                "the quote's report_data[0..32] is not the certificate's public key "
                f"({verified.report_data[:32].hex()} != {public_key.hex()})",
            )
        if verified.debug and not allow_debug:
            raise RaTlsError("debug", "peer enclave is a debug build, which is not allowed")
        peer = PeerIdentity(
            public_key,
            verified.mrenclave,
            METHOD_DCAP,
            verified.debug,
            verified.tcb_status,
            verified.mrsigner,
        )
    else:
        raise RaTlsError("method", f"unknown attestation method {method!r}")

    if peer.mrenclave != bytes(expected_mrenclave):
        raise RaTlsError(
            "mrenclave",
            f"peer MRENCLAVE {peer.mrenclave.hex()} is not ours ({bytes(expected_mrenclave).hex()})",
        )
    return peer


def _parse_certificate(cert_der: bytes) -> x509.Certificate:
    if not isinstance(cert_der, bytes | bytearray | memoryview):
        raise RaTlsError("format", f"certificate must be DER bytes, got {type(cert_der).__name__}")
    if len(cert_der) > MAX_CERTIFICATE_SIZE:
        raise RaTlsError("format", f"certificate of {len(cert_der)} bytes is too large")
    try:
        return x509.load_der_x509_certificate(bytes(cert_der))
    except ValueError as exc:
        raise RaTlsError("format", f"not a DER X.509 certificate: {exc}") from None


def _check_certificate(cert: x509.Certificate, now: int) -> bytes:
    """The certificate's raw ed25519 key, after the issuer signature and validity checks."""
    try:
        key = cert.public_key()
    except ValueError as exc:
        raise RaTlsError("key", f"unreadable certificate key: {exc}") from None
    if not isinstance(key, Ed25519PublicKey):
        raise RaTlsError("key", f"certificate key is {type(key).__name__}, not ed25519")
    # Catches corruption of any signed field; it proves nothing about who made it (public CA).
    try:
        cert.verify_directly_issued_by(transport_ca_certificate())
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise RaTlsError(
            "signature", f"certificate is not signed by the RA-TLS transport CA: {exc}"
        ) from None
    try:
        not_before = int(cert.not_valid_before_utc.timestamp())
        not_after = int(cert.not_valid_after_utc.timestamp())
    except ValueError as exc:  # pragma: no cover - cryptography rejects bad times on load
        raise RaTlsError("format", f"bad certificate validity: {exc}") from None
    if not not_before <= now <= not_after:
        raise RaTlsError(
            "validity", f"certificate valid from {not_before} to {not_after}, now is {now}"
        )
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def _evidence_extension(cert: x509.Certificate) -> bytes:
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(RA_EVIDENCE_OID))
    except x509.ExtensionNotFound:
        raise RaTlsError("evidence", "certificate has no RA evidence extension") from None
    except ValueError as exc:  # duplicate or malformed extensions
        raise RaTlsError("format", f"bad certificate extensions: {exc}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):  # pragma: no cover - private OID
        raise RaTlsError("evidence", "RA evidence extension has an unexpected type")
    return value.value


@dataclass(frozen=True)
class RaVerifier:
    """`verify_ra_certificate` with fixed parameters: the `verify_peer` callable of MU-RA.

    `clock` gives `now` (unix seconds) at each call."""

    expected_mrenclave: bytes
    trusted_root: x509.Certificate | None = None
    qe_identity: QeIdentity | None = None
    tcb_info: TcbInfoArg | None = None
    allow_skip: bool = False
    allow_debug: bool = False
    clock: Callable[[], float] = time.time

    def __call__(self, cert_der: bytes) -> PeerIdentity:
        return verify_ra_certificate(
            cert_der,
            expected_mrenclave=self.expected_mrenclave,
            trusted_root=self.trusted_root,
            qe_identity=self.qe_identity,
            tcb_info=self.tcb_info,
            now=int(self.clock()),
            allow_skip=self.allow_skip,
            allow_debug=self.allow_debug,
        )


# -- TLS contexts ----------------------------------------------------------------------------


def server_ssl_context(identity: RaIdentity) -> ssl.SSLContext:
    """Server side of MU-RA TLS: presents `identity`, requires a client certificate (checked
    against the public transport CA only; the caller verifies the RA evidence afterwards)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    _configure(context, identity)
    return context


def client_ssl_context(identity: RaIdentity) -> ssl.SSLContext:
    """Client side of MU-RA TLS: presents `identity`; no host name check (the peer is identified
    by its attestation, which the caller verifies after the handshake)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    _configure(context, identity)
    return context


def _configure(context: ssl.SSLContext, identity: RaIdentity) -> None:
    # Both ends are this code base; TLS 1.3 is the version with ed25519 certificates everywhere.
    context.minimum_version = ssl.TLSVersion.TLSv1_3
    context.verify_mode = ssl.CERT_REQUIRED
    context.load_verify_locations(cadata=transport_ca_pem().decode("ascii"))
    # ssl loads key material only from files: a private temp dir, removed at once
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(identity.cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(identity.key_pem)
        context.load_cert_chain(cert_path, key_path)


def peer_certificate(ssl_object: ssl.SSLObject | ssl.SSLSocket | None) -> bytes:
    """The DER certificate the TLS peer presented; RaTlsError("no-certificate") if none."""
    der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    if not der:
        raise RaTlsError("no-certificate", "the TLS peer presented no certificate")
    return der
