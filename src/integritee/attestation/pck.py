"""X.509 side of DCAP: Intel's SGX root, PEM chains, chain verification, CRLs, PCK extension.

Owns:
- `INTEL_SGX_ROOT_CA_PEM`: Intel's real "Intel SGX Root CA" (self-signed, valid 2018-2049);
- `load_pem_chain` / `load_certificate` / `load_crl`: strict decoding of untrusted input;
- `verify_certificate_chain`: leaf-first chain -> trusted root, checking validity at `now`,
  issuer names and ECDSA signatures, CA basic constraints and path lengths, key usages, unknown
  critical extensions, and (optionally) revocation via CRLs;
- `PckExtension`: the SGX extension (OID 1.2.840.113741.1.13.1) of a PCK certificate -- PPID,
  TCB (16 component SVNs, PCESVN, CPUSVN), PCE-ID, FMSPC, SGX type, optional platform fields --
  decoded and encoded (the simulated quoting enclave issues PCK certificates with it).

Times are unix seconds; validity bounds are inclusive (Intel issues PCK certificates whose
notBefore equals the time of the quote).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtensionOID, NameOID

from integritee.attestation import der
from integritee.attestation.errors import (
    CertificateError,
    ExpiredError,
    RevokedError,
    SignatureError,
)

INTEL_SGX_ROOT_CA_PEM = b"""-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
"""

SGX_EXTENSION_OID = "1.2.840.113741.1.13.1"
OID_PPID = SGX_EXTENSION_OID + ".1"
OID_TCB = SGX_EXTENSION_OID + ".2"
OID_PCESVN = OID_TCB + ".17"
OID_CPUSVN = OID_TCB + ".18"
OID_PCE_ID = SGX_EXTENSION_OID + ".3"
OID_FMSPC = SGX_EXTENSION_OID + ".4"
OID_SGX_TYPE = SGX_EXTENSION_OID + ".5"
OID_PLATFORM_INSTANCE_ID = SGX_EXTENSION_OID + ".6"
OID_CONFIGURATION = SGX_EXTENSION_OID + ".7"
OID_DYNAMIC_PLATFORM = OID_CONFIGURATION + ".1"
OID_CACHED_KEYS = OID_CONFIGURATION + ".2"
OID_SMT_ENABLED = OID_CONFIGURATION + ".3"

MAX_CHAIN_LENGTH = 5
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)
_HANDLED_CRITICAL = {ExtensionOID.BASIC_CONSTRAINTS, ExtensionOID.KEY_USAGE}
_PEM_BLOCK = re.compile(rb"-----BEGIN CERTIFICATE-----(.*?)-----END CERTIFICATE-----", re.DOTALL)


@lru_cache(maxsize=1)
def intel_sgx_root_ca() -> x509.Certificate:
    """Intel's SGX Root CA, the trust anchor for real DCAP quotes and collateral."""
    return x509.load_pem_x509_certificate(INTEL_SGX_ROOT_CA_PEM)


def describe(cert: x509.Certificate) -> str:
    """A certificate's common name (or full subject), for error messages."""
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        value = names[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return cert.subject.rfc4514_string()


# -- decoding ----------------------------------------------------------------------------------


def load_pem_chain(data: bytes) -> list[x509.Certificate]:
    """Decode concatenated PEM certificates (leaf first). Only whitespace may appear between
    blocks; trailing NUL bytes (Intel's quoting library terminates the chain with one) are
    ignored."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CertificateError(f"certificate chain must be bytes, got {type(data).__name__}")
    text = bytes(data).rstrip(b"\x00")
    certs: list[x509.Certificate] = []
    pos = 0
    for match in _PEM_BLOCK.finditer(text):
        if text[pos : match.start()].strip():
            raise CertificateError("unexpected data between PEM certificates")
        body = b"".join(match.group(1).split())
        try:
            der_bytes = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise CertificateError("invalid base64 in PEM certificate") from None
        certs.append(_load_der(der_bytes))
        pos = match.end()
        if len(certs) > MAX_CHAIN_LENGTH:
            raise CertificateError(f"more than {MAX_CHAIN_LENGTH} certificates in chain")
    if text[pos:].strip():
        raise CertificateError("unexpected data after the last PEM certificate")
    if not certs:
        raise CertificateError("no PEM certificate found")
    return certs


def load_certificate(data: bytes) -> x509.Certificate:
    """One certificate, PEM or DER."""
    if bytes(data).lstrip().startswith(b"-----BEGIN"):
        certs = load_pem_chain(data)
        if len(certs) != 1:
            raise CertificateError(f"expected one certificate, got {len(certs)}")
        return certs[0]
    return _load_der(bytes(data))


def _load_der(data: bytes) -> x509.Certificate:
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CertificateError(f"malformed certificate: {exc}") from None


def load_crl(data: bytes) -> x509.CertificateRevocationList:
    """A CRL as PEM, DER, or hex text of DER (Intel's PCS serves the PCK CRL that way)."""
    raw = bytes(data).strip()
    try:
        if raw.startswith(b"-----BEGIN X509 CRL-----"):
            return x509.load_pem_x509_crl(raw)
        if raw[:1] != b"\x30":
            try:
                raw = bytes.fromhex(raw.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                raise CertificateError("CRL is neither PEM, DER nor hex-encoded DER") from None
        return x509.load_der_x509_crl(raw)
    except ValueError as exc:
        raise CertificateError(f"malformed CRL: {exc}") from None


# -- chain verification ------------------------------------------------------------------------


def verify_certificate_chain(
    chain: Sequence[x509.Certificate],
    trusted_root: x509.Certificate,
    now: int,
    *,
    crls: Sequence[x509.CertificateRevocationList] | None = None,
    max_intermediates: int | None = None,
) -> list[x509.Certificate]:
    """Verify a leaf-first chain up to `trusted_root`; return the full path leaf..root.

    The chain may or may not include the root; if it ends in a self-signed certificate, that
    certificate must be the trusted root (same subject and key). `max_intermediates` bounds the
    CA certificates between leaf and root (Intel: PCK chains have one, TCB signing chains none).
    CRLs whose issuer is not on the path do not apply and are ignored.
    """
    require_unix_seconds(now)
    if not chain:
        raise CertificateError("empty certificate chain")
    if len(chain) > MAX_CHAIN_LENGTH:
        raise CertificateError(f"more than {MAX_CHAIN_LENGTH} certificates in chain")
    certs = list(chain)
    last = certs[-1]
    if last.subject == last.issuer or _same_cert(last, trusted_root):
        if not _same_cert(last, trusted_root):
            raise CertificateError(
                f"chain ends in root '{describe(last)}', which is not the trusted root "
                f"'{describe(trusted_root)}'"
            )
        certs = certs[:-1]
    if not certs:
        raise CertificateError("chain holds only the root certificate, no leaf")
    if max_intermediates is not None and len(certs) - 1 > max_intermediates:
        raise CertificateError(
            f"chain has {len(certs) - 1} intermediate CA(s); at most {max_intermediates} allowed"
        )
    path = [*certs, trusted_root]
    for cert in path:
        _check_validity(cert, now)
        _check_extensions(cert)
        _check_key(cert)
    leaf = path[0]
    leaf_bc = _extension(leaf, x509.BasicConstraints)
    if leaf_bc is not None and leaf_bc.ca:
        raise CertificateError(f"leaf certificate '{describe(leaf)}' is a CA")
    leaf_ku = _extension(leaf, x509.KeyUsage)
    if leaf_ku is not None and not leaf_ku.digital_signature:
        raise CertificateError(f"leaf certificate '{describe(leaf)}' may not sign data")
    for depth in range(len(path) - 1):
        child, issuer = path[depth], path[depth + 1]
        if child.issuer != issuer.subject:
            raise CertificateError(
                f"'{describe(child)}' is issued by '{_issuer_cn(child)}', not by "
                f"'{describe(issuer)}'"
            )
        _check_ca(issuer, intermediates_below=depth)
        _check_signed_by(child, issuer)
    if crls:
        check_revocation(path, crls, now)
    return path


def require_unix_seconds(now: int) -> None:
    """Guard against the commonest caller bug: passing a Moment in milliseconds."""
    if not isinstance(now, int) or isinstance(now, bool):
        raise TypeError(f"now must be an int of unix seconds, got {type(now).__name__}")
    if not 0 <= now < 10**11:
        raise ValueError(f"now={now} is not plausible unix seconds (milliseconds passed?)")


def check_revocation(
    path: Sequence[x509.Certificate],
    crls: Sequence[x509.CertificateRevocationList],
    now: int,
) -> None:
    """Apply every CRL whose issuer is on `path`: verify its signature by that issuer, its
    thisUpdate/nextUpdate window at `now`, and that no certificate it covers is revoked."""
    for crl in crls:
        issuer = next((c for c in path if c.subject == crl.issuer), None)
        if issuer is None:
            continue
        verify_crl(crl, issuer, now)
        for cert in path:
            if cert.issuer != crl.issuer:
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise RevokedError(
                    f"certificate '{describe(cert)}' (serial {cert.serial_number:x}) is revoked"
                )


def verify_crl(crl: x509.CertificateRevocationList, issuer: x509.Certificate, now: int) -> None:
    """A CRL is authentic (signed by `issuer`, a CRL-signing CA) and current at `now`."""
    if crl.issuer != issuer.subject:
        raise CertificateError(f"CRL is not issued by '{describe(issuer)}'")
    ku = _extension(issuer, x509.KeyUsage)
    if ku is not None and not ku.crl_sign:
        raise CertificateError(f"'{describe(issuer)}' may not sign CRLs")
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, ValueError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise SignatureError(f"CRL signature by '{describe(issuer)}' does not verify")
    this_update = int(crl.last_update_utc.timestamp())
    next_update = crl.next_update_utc
    if now < this_update or (next_update is not None and now > int(next_update.timestamp())):
        raise ExpiredError(
            f"CRL of '{describe(issuer)}' is not current at {now} "
            f"(thisUpdate {this_update}, nextUpdate "
            f"{int(next_update.timestamp()) if next_update else 'none'})"
        )


def _same_cert(a: x509.Certificate, b: x509.Certificate) -> bool:
    return a.subject == b.subject and _spki(a) == _spki(b)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def _issuer_cn(cert: x509.Certificate) -> str:
    names = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    if names:
        value = names[0].value
        return value if isinstance(value, str) else value.decode("utf-8", "replace")
    return cert.issuer.rfc4514_string()


def _check_validity(cert: x509.Certificate, now: int) -> None:
    not_before = int(cert.not_valid_before_utc.timestamp())
    not_after = int(cert.not_valid_after_utc.timestamp())
    if not not_before <= now <= not_after:
        raise ExpiredError(
            f"certificate '{describe(cert)}' is not valid at {now} "
            f"(valid from {not_before} to {not_after})"
        )


def _check_extensions(cert: x509.Certificate) -> None:
    try:
        extensions = cert.extensions
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CertificateError(f"certificate '{describe(cert)}': bad extensions: {exc}") from None
    for ext in extensions:
        if ext.critical and ext.oid not in _HANDLED_CRITICAL:
            raise CertificateError(
                f"certificate '{describe(cert)}' has an unsupported critical extension "
                f"{ext.oid.dotted_string}"
            )


def _check_key(cert: x509.Certificate) -> None:
    try:
        key = cert.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertificateError(f"certificate '{describe(cert)}': bad public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise CertificateError(f"certificate '{describe(cert)}' does not have a P-256 key")


def _check_ca(issuer: x509.Certificate, intermediates_below: int) -> None:
    bc = _extension(issuer, x509.BasicConstraints)
    if bc is None or not bc.ca:
        raise CertificateError(f"'{describe(issuer)}' is not a CA but issues certificates")
    if bc.path_length is not None and intermediates_below > bc.path_length:
        raise CertificateError(f"path length constraint of '{describe(issuer)}' exceeded")
    ku = _extension(issuer, x509.KeyUsage)
    if ku is not None and not ku.key_cert_sign:
        raise CertificateError(f"'{describe(issuer)}' may not sign certificates")


def _check_signed_by(child: x509.Certificate, issuer: x509.Certificate) -> None:
    try:
        child.verify_directly_issued_by(issuer)
    except InvalidSignature:
        raise SignatureError(
            f"signature of '{describe(child)}' by '{describe(issuer)}' does not verify"
        ) from None
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CertificateError(
            f"cannot verify '{describe(child)}' against '{describe(issuer)}': {exc}"
        ) from None


def _extension(cert: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CertificateError(f"certificate '{describe(cert)}': bad extensions: {exc}") from None


# -- the SGX extension of PCK certificates -----------------------------------------------------


@dataclass(frozen=True)
class PckExtension:
    ppid: bytes  # 16
    tcb_components: tuple[int, ...]  # 16 SGX TCB component SVNs
    pcesvn: int
    cpusvn: bytes  # 16
    pce_id: bytes  # 2
    fmspc: bytes  # 6
    sgx_type: int  # 0 standard, 1 scalable, 2 scalable with integrity
    platform_instance_id: bytes | None = None
    dynamic_platform: bool | None = None
    cached_keys: bool | None = None
    smt_enabled: bool | None = None

    def encode(self) -> bytes:
        """DER of the extension value (what goes into the certificate)."""
        tcb_items = [
            der.encode_sequence(der.encode_oid(f"{OID_TCB}.{i + 1}"), der.encode_unsigned(svn))
            for i, svn in enumerate(self.tcb_components)
        ]
        tcb_items.append(
            der.encode_sequence(der.encode_oid(OID_PCESVN), der.encode_unsigned(self.pcesvn))
        )
        tcb_items.append(
            der.encode_sequence(
                der.encode_oid(OID_CPUSVN), der.encode_tlv(der.TAG_OCTET_STRING, self.cpusvn)
            )
        )

        def octets(oid: str, value: bytes) -> bytes:
            return der.encode_sequence(
                der.encode_oid(oid), der.encode_tlv(der.TAG_OCTET_STRING, value)
            )

        items = [
            octets(OID_PPID, self.ppid),
            der.encode_sequence(der.encode_oid(OID_TCB), der.encode_sequence(*tcb_items)),
            octets(OID_PCE_ID, self.pce_id),
            octets(OID_FMSPC, self.fmspc),
            der.encode_sequence(
                der.encode_oid(OID_SGX_TYPE),
                der.encode_unsigned(self.sgx_type, der.TAG_ENUMERATED),
            ),
        ]
        if self.platform_instance_id is not None:
            items.append(octets(OID_PLATFORM_INSTANCE_ID, self.platform_instance_id))
        flags = [
            (OID_DYNAMIC_PLATFORM, self.dynamic_platform),
            (OID_CACHED_KEYS, self.cached_keys),
            (OID_SMT_ENABLED, self.smt_enabled),
        ]
        config = [
            der.encode_sequence(
                der.encode_oid(oid), der.encode_tlv(der.TAG_BOOLEAN, b"\xff" if v else b"\x00")
            )
            for oid, v in flags
            if v is not None
        ]
        if config:
            items.append(
                der.encode_sequence(der.encode_oid(OID_CONFIGURATION), der.encode_sequence(*config))
            )
        return der.encode_sequence(*items)


def pck_extension(cert: x509.Certificate) -> PckExtension:
    """Decode the SGX extension of a PCK certificate."""
    try:
        ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(SGX_EXTENSION_OID))
    except x509.ExtensionNotFound:
        raise CertificateError(
            f"certificate '{describe(cert)}' has no SGX extension; not a PCK certificate"
        ) from None
    except (ValueError, x509.DuplicateExtension) as exc:
        raise CertificateError(f"certificate '{describe(cert)}': bad extensions: {exc}") from None
    value = ext.value
    if not isinstance(value, x509.UnrecognizedExtension):
        raise CertificateError("unexpected decoding of the SGX extension")
    try:
        return decode_pck_extension(value.value)
    except der.DerError as exc:
        raise CertificateError(f"malformed SGX extension: {exc}") from None


def decode_pck_extension(data: bytes) -> PckExtension:
    """Decode the DER value of the SGX extension; raises der.DerError or CertificateError."""
    top = _oid_map(der.read_single(data, der.TAG_SEQUENCE).value, depth=1)
    for oid, name in (
        (OID_PPID, "PPID"),
        (OID_TCB, "TCB"),
        (OID_PCE_ID, "PCE-ID"),
        (OID_FMSPC, "FMSPC"),
        (OID_SGX_TYPE, "SGX type"),
    ):
        if oid not in top:
            raise CertificateError(f"SGX extension lacks {name}")
    tcb_seq = top[OID_TCB]
    der.expect_tag(tcb_seq, der.TAG_SEQUENCE)
    tcb = _oid_map(tcb_seq.value, depth=2)
    components = []
    for i in range(1, 17):
        tlv = tcb.get(f"{OID_TCB}.{i}")
        if tlv is None:
            raise CertificateError(f"SGX extension lacks TCB component {i}")
        components.append(_bounded(der.decode_unsigned(tlv), 0xFF, f"TCB component {i}"))
    if OID_PCESVN not in tcb or OID_CPUSVN not in tcb:
        raise CertificateError("SGX extension lacks PCESVN or CPUSVN")
    pcesvn = _bounded(der.decode_unsigned(tcb[OID_PCESVN]), 0xFFFF, "PCESVN")
    cpusvn = _octets(tcb[OID_CPUSVN], 16, "CPUSVN")
    platform_instance_id = None
    if OID_PLATFORM_INSTANCE_ID in top:
        platform_instance_id = _octets(top[OID_PLATFORM_INSTANCE_ID], 16, "platform instance id")
    flags: dict[str, bool] = {}
    if OID_CONFIGURATION in top:
        cfg_seq = top[OID_CONFIGURATION]
        der.expect_tag(cfg_seq, der.TAG_SEQUENCE)
        for oid, tlv in _oid_map(cfg_seq.value, depth=2).items():
            flags[oid] = der.decode_boolean(tlv)
    return PckExtension(
        ppid=_octets(top[OID_PPID], 16, "PPID"),
        tcb_components=tuple(components),
        pcesvn=pcesvn,
        cpusvn=cpusvn,
        pce_id=_octets(top[OID_PCE_ID], 2, "PCE-ID"),
        fmspc=_octets(top[OID_FMSPC], 6, "FMSPC"),
        sgx_type=_bounded(der.decode_unsigned(top[OID_SGX_TYPE]), 2, "SGX type"),
        platform_instance_id=platform_instance_id,
        dynamic_platform=flags.get(OID_DYNAMIC_PLATFORM),
        cached_keys=flags.get(OID_CACHED_KEYS),
        smt_enabled=flags.get(OID_SMT_ENABLED),
    )


def _oid_map(content: bytes, depth: int) -> dict[str, der.Tlv]:
    """SEQUENCE OF SEQUENCE { OID, value } -> {oid: value}; duplicates rejected."""
    der.check_depth(depth)
    out: dict[str, der.Tlv] = {}
    for item in der.read_all(content):
        der.expect_tag(item, der.TAG_SEQUENCE)
        parts = der.read_all(item.value)
        if len(parts) != 2:
            raise der.DerError("SGX extension entry is not an (OID, value) pair")
        der.expect_tag(parts[0], der.TAG_OID)
        oid = der.decode_oid(parts[0].value)
        if oid in out:
            raise der.DerError(f"duplicate SGX extension entry {oid}")
        out[oid] = parts[1]
    return out


def _octets(tlv: der.Tlv, size: int, name: str) -> bytes:
    der.expect_tag(tlv, der.TAG_OCTET_STRING)
    if len(tlv.value) != size:
        raise CertificateError(f"{name} must be {size} bytes, got {len(tlv.value)}")
    return tlv.value


def _bounded(value: int, maximum: int, name: str) -> int:
    if value > maximum:
        raise CertificateError(f"{name} {value} out of range (max {maximum})")
    return value
