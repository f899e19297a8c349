"""Development PKI standing in for Intel's: root CA, PCK CA, TCB signing certificate, PCK
certificates with the SGX extension, signed QE identity / TCB info documents, CRLs.

Every key is derived from a seed (`derive_key`): the default seed gives the dev root that dev
chain specs trust, identical on every machine and in every process. Its certificate is pinned
below (`DEV_ROOT_CA_PEM`) rather than rebuilt, so its bytes never depend on the OpenSSL build;
`build_root_certificate` is the recipe it was made with (deterministic ECDSA, RFC 6979), and a
test checks the two agree. Other seeds give independent PKIs (tests: "a quote from another
root"). For development only: the keys are public by construction.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from functools import cached_property
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from integritee.attestation.pck import SGX_EXTENSION_OID, PckExtension

DEV_ROOT_SEED = b"integritee dev sgx root ca"

DEV_ROOT_CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIIB7zCCAZWgAwIBAgIQI9/LshsePKiqOpRjfQH29TAKBggqhkjOPQQDAjBVMSMw
IQYDVQQDDBpJbnRlZ3JpdGVlIERldiBTR1ggUm9vdCBDQTEuMCwGA1UECgwlSW50
ZWdyaXRlZSBkZXZlbG9wbWVudCBQS0kgKGluc2VjdXJlKTAgFw0yMDAxMDEwMDAw
MDBaGA8yMDk5MTIzMTIzNTk1OVowVTEjMCEGA1UEAwwaSW50ZWdyaXRlZSBEZXYg
U0dYIFJvb3QgQ0ExLjAsBgNVBAoMJUludGVncml0ZWUgZGV2ZWxvcG1lbnQgUEtJ
IChpbnNlY3VyZSkwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAATM/jqlUahNxgUw
gyF0jpWDGu3oy1v9AV27R8aAp6/cc0ZorNQS5YDnH3C+69rLHvema7ukBKHNrCLq
afuYOH85o0UwQzAdBgNVHQ4EFgQUknAixndxs6qoap8BgW/Mf4Ctqz4wEgYDVR0T
AQH/BAgwBgEB/wIBATAOBgNVHQ8BAf8EBAMCAQYwCgYIKoZIzj0EAwIDSAAwRQIh
ALz7B510XPcOnQg60trtw6UWSFshp6uEk2mCgiH2VjgRAiB9jJWBtd+4/p0S+N0O
RUuKA0DDvhqwWfKVVAtxI7DVxw==
-----END CERTIFICATE-----
"""

_P256_ORDER = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
NOT_BEFORE = _dt.datetime(2020, 1, 1, tzinfo=_dt.UTC)
NOT_AFTER = _dt.datetime(2099, 12, 31, 23, 59, 59, tzinfo=_dt.UTC)
_ORG = "Integritee development PKI (insecure)"


def derive_key(label: bytes) -> ec.EllipticCurvePrivateKey:
    """A P-256 key whose scalar is sha256(label) reduced into [1, n-1]."""
    scalar = int.from_bytes(hashlib.sha256(label).digest(), "big") % (_P256_ORDER - 1) + 1
    return ec.derive_private_key(scalar, ec.SECP256R1())


def raw_public_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    """x||y, 64 bytes, as the quote carries the attestation key."""
    numbers = key.public_key().public_numbers()
    return numbers.x.to_bytes(32, "big") + numbers.y.to_bytes(32, "big")


def sign_raw(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    """ECDSA-P256-SHA256 as raw r||s (64 bytes); deterministic when OpenSSL supports it."""
    try:
        der_sig = key.sign(data, ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    except UnsupportedAlgorithm:
        der_sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    r, s = decode_dss_signature(der_sig)
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _ORG),
        ]
    )


def _serial(label: bytes) -> int:
    return int.from_bytes(hashlib.sha256(b"serial/" + label).digest()[:16], "big") | 1


def _sign(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    try:
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    except UnsupportedAlgorithm:
        return builder.sign(key, hashes.SHA256())


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _signer_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=True,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _builder(
    subject: str, issuer: x509.Name, key: ec.EllipticCurvePrivateKey, serial_label: bytes
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(_serial(serial_label))
        .not_valid_before(NOT_BEFORE)
        .not_valid_after(NOT_AFTER)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
    )


def build_root_certificate(seed: bytes = DEV_ROOT_SEED) -> x509.Certificate:
    """The recipe of the dev root CA (self-signed, path length 1)."""
    key = derive_key(seed)
    builder = (
        _builder("Integritee Dev SGX Root CA", _name("Integritee Dev SGX Root CA"), key, seed)
        .add_extension(x509.BasicConstraints(ca=True, path_length=1), True)
        .add_extension(_ca_usage(), True)
    )
    return _sign(builder, key)


def dev_root_certificate() -> x509.Certificate:
    """The pinned dev root CA of the default seed (what dev chain specs trust)."""
    return x509.load_pem_x509_certificate(DEV_ROOT_CA_PEM)


class DevPki:
    """Root CA, PCK CA and TCB signing certificate derived from `seed`."""

    def __init__(self, seed: bytes = DEV_ROOT_SEED) -> None:
        self.seed = seed
        self.root_key = derive_key(seed)
        self.pck_ca_key = derive_key(seed + b"/pck-ca")
        self.tcb_signing_key = derive_key(seed + b"/tcb-signing")

    @cached_property
    def root_cert(self) -> x509.Certificate:
        if self.seed == DEV_ROOT_SEED:
            pinned = dev_root_certificate()
            if pinned.public_key() != self.root_key.public_key():
                raise RuntimeError("pinned dev root certificate does not match the derived key")
            return pinned
        return build_root_certificate(self.seed)

    @cached_property
    def pck_ca_cert(self) -> x509.Certificate:
        builder = (
            _builder(
                "Integritee Dev SGX PCK Processor CA",
                self.root_cert.subject,
                self.pck_ca_key,
                self.seed + b"/pck-ca",
            )
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
            .add_extension(_ca_usage(), True)
        )
        return _sign(builder, self.root_key)

    @cached_property
    def tcb_signing_cert(self) -> x509.Certificate:
        builder = (
            _builder(
                "Integritee Dev SGX TCB Signing",
                self.root_cert.subject,
                self.tcb_signing_key,
                self.seed + b"/tcb-signing",
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(_signer_usage(), True)
        )
        return _sign(builder, self.root_key)

    def root_pem(self) -> bytes:
        return self.root_cert.public_bytes(Encoding.PEM)

    def issue_pck(
        self, key: ec.EllipticCurvePrivateKey, extension: PckExtension, label: bytes
    ) -> x509.Certificate:
        """A PCK certificate for `key` carrying the SGX extension, issued by the PCK CA."""
        builder = (
            _builder(
                "Integritee Dev SGX PCK Certificate",
                self.pck_ca_cert.subject,
                key,
                self.seed + b"/pck/" + label,
            )
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
            .add_extension(_signer_usage(), True)
            .add_extension(
                x509.UnrecognizedExtension(
                    x509.ObjectIdentifier(SGX_EXTENSION_OID), extension.encode()
                ),
                False,
            )
        )
        return _sign(builder, self.pck_ca_key)

    def pck_chain_pem(self, pck_cert: x509.Certificate) -> bytes:
        """Leaf, PCK CA, root: the certification data of a quote."""
        return b"".join(
            c.public_bytes(Encoding.PEM) for c in (pck_cert, self.pck_ca_cert, self.root_cert)
        )

    def collateral_chain_pem(self) -> bytes:
        """TCB signing certificate and root, as Intel's TCB-Info-Issuer-Chain."""
        return self.tcb_signing_cert.public_bytes(Encoding.PEM) + self.root_pem()

    def sign_collateral(self, body: Any, key: str) -> tuple[bytes, bytes, bytes, bytes]:
        """Serialize `body` compactly and sign it; return (body bytes, signature, chain PEM,
        full Intel-style document)."""
        body_bytes = json.dumps(body, separators=(",", ":")).encode()
        signature = sign_raw(self.tcb_signing_key, body_bytes)
        document = (
            b'{"'
            + key.encode()
            + b'":'
            + body_bytes
            + b',"signature":"'
            + signature.hex().encode()
            + b'"}'
        )
        return body_bytes, signature, self.collateral_chain_pem(), document

    def issue_crl(
        self,
        *,
        revoked_serials: Sequence[int] = (),
        issuer: str = "pck-ca",
        this_update: int = 1577836800,
        next_update: int = 4102444799,
    ) -> x509.CertificateRevocationList:
        """A CRL by the PCK CA (`issuer="pck-ca"`) or the root (`"root"`)."""
        cert, key = (
            (self.pck_ca_cert, self.pck_ca_key)
            if issuer == "pck-ca"
            else (self.root_cert, self.root_key)
        )
        when = _dt.datetime.fromtimestamp(this_update, _dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(cert.subject)
            .last_update(when)
            .next_update(_dt.datetime.fromtimestamp(next_update, _dt.UTC))
        )
        for serial in revoked_serials:
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        try:
            return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
        except UnsupportedAlgorithm:
            return builder.sign(key, hashes.SHA256())
