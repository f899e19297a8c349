"""TLS for the enclave's servers: a self-signed certificate whose key is the enclave signing key.

The trusted WSS server presents it; because the key is the enclave's ed25519 key registered on
the parentchain, a client can pin it against the Teerex registry instead of trusting blindly.
"""

from __future__ import annotations

import datetime
import ssl
import tempfile
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from integritee.crypto.keys import Keypair


def self_signed_certificate(
    key: Keypair, common_name: str = "integritee-enclave"
) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM) for the ed25519 enclave key."""
    if key.crypto != "ed25519" or key.seed is None:
        raise ValueError("the enclave TLS key must be an ed25519 key with its seed")
    private = Ed25519PrivateKey.from_private_bytes(key.seed)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(int.from_bytes(key.public_key[:16], "big") >> 1)
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=365))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(private, None)
    )
    key_pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def server_context(key: Keypair) -> ssl.SSLContext:
    cert_pem, key_pem = self_signed_certificate(key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # ssl can only load key material from files; a private temp dir that is removed at once
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        cert_path.write_bytes(cert_pem)
        key_path.touch(mode=0o600)
        key_path.write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path)
    return context


def certificate_public_key(der: bytes) -> bytes:
    """The raw ed25519 public key of a peer certificate (to pin it against the registry)."""
    cert = x509.load_der_x509_certificate(der)
    return cert.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
