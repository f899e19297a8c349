"""Intel SGX DCAP quote version 3 (ECDSA-256 with P-256): byte layout, strict parsing, encoding.

Layout (all integers little endian), per Intel's "ECDSA Quote Library API", appendix A.4:

    header            48  version u16 | att key type u16 | tee type u32 | qe svn u16 | pce svn u16
                          | qe vendor id [16] | user data [20]
    ISV report body  384  (see `ReportBody`)
    sig data length    4  u32, must equal the number of remaining bytes
    ISV report sig    64  ECDSA r||s by the attestation key over header ++ ISV report body
    attestation key   64  raw P-256 point x||y
    QE report body   384
    QE report sig     64  ECDSA r||s by the PCK leaf key over the QE report body
    QE auth data       2 + n
    certification      2 (type) + 4 (size) + size; type 5 = PEM PCK certificate chain

Parsing checks every length and rejects trailing bytes; it does not verify anything (verify.py).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from integritee.attestation.errors import QuoteFormatError

QUOTE_VERSION_3 = 3
ATT_KEY_TYPE_ECDSA_P256 = 2
TEE_TYPE_SGX = 0
CERT_DATA_PCK_CHAIN_PEM = 5

HEADER_SIZE = 48
REPORT_BODY_SIZE = 384
SIGNATURE_SIZE = 64
ATTESTATION_KEY_SIZE = 64
REPORT_DATA_SIZE = 64
# Smallest signature data: two signatures, key, QE report, empty auth and certification data.
_MIN_SIG_DATA = SIGNATURE_SIZE * 2 + ATTESTATION_KEY_SIZE + REPORT_BODY_SIZE + 2 + 6
# A real quote is ~4.6 KB; the cap keeps a hostile peer from making us buffer megabytes.
MAX_QUOTE_SIZE = 64 * 1024

# Intel's quoting enclave vendor id (939A7233-F79C-4CA9-940A-0DB3957F0607).
INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")

SGX_FLAGS_INIT = 0x01
SGX_FLAGS_DEBUG = 0x02
SGX_FLAGS_MODE64BIT = 0x04
SGX_FLAGS_PROVISION_KEY = 0x10

_HEADER = struct.Struct("<HHIHH16s20s")


@dataclass(frozen=True)
class QuoteHeader:
    version: int
    attestation_key_type: int
    tee_type: int
    qe_svn: int
    pce_svn: int
    qe_vendor_id: bytes
    user_data: bytes

    def encode(self) -> bytes:
        _check_len("qe_vendor_id", self.qe_vendor_id, 16)
        _check_len("user_data", self.user_data, 20)
        return _HEADER.pack(
            self.version,
            self.attestation_key_type,
            self.tee_type,
            self.qe_svn,
            self.pce_svn,
            self.qe_vendor_id,
            self.user_data,
        )

    @classmethod
    def decode(cls, raw: bytes) -> QuoteHeader:
        _check_len("quote header", raw, HEADER_SIZE)
        version, key_type, tee_type, qe_svn, pce_svn, vendor, user = _HEADER.unpack(raw)
        return cls(version, key_type, tee_type, qe_svn, pce_svn, vendor, user)


@dataclass(frozen=True)
class ReportBody:
    """An SGX enclave report body (sgx_report_body_t), used for the ISV enclave and the QE."""

    cpusvn: bytes  # 16
    miscselect: int  # u32
    isv_ext_prod_id: bytes  # 16
    attributes: bytes  # 16: flags u64 LE ++ xfrm u64 LE
    mrenclave: bytes  # 32
    mrsigner: bytes  # 32
    config_id: bytes  # 64
    isv_prod_id: int
    isv_svn: int
    config_svn: int
    isv_family_id: bytes  # 16
    report_data: bytes  # 64
    raw: bytes  # the exact 384 bytes (signatures cover these, reserved fields included)

    @property
    def flags(self) -> int:
        return int.from_bytes(self.attributes[:8], "little")

    @property
    def xfrm(self) -> int:
        return int.from_bytes(self.attributes[8:], "little")

    @property
    def debug(self) -> bool:
        return bool(self.flags & SGX_FLAGS_DEBUG)

    @classmethod
    def decode(cls, raw: bytes) -> ReportBody:
        _check_len("report body", raw, REPORT_BODY_SIZE)
        isv_prod_id, isv_svn, config_svn = struct.unpack_from("<HHH", raw, 256)
        return cls(
            cpusvn=raw[0:16],
            miscselect=int.from_bytes(raw[16:20], "little"),
            isv_ext_prod_id=raw[32:48],
            attributes=raw[48:64],
            mrenclave=raw[64:96],
            mrsigner=raw[128:160],
            config_id=raw[192:256],
            isv_prod_id=isv_prod_id,
            isv_svn=isv_svn,
            config_svn=config_svn,
            isv_family_id=raw[304:320],
            report_data=raw[320:384],
            raw=bytes(raw),
        )

    @classmethod
    def build(
        cls,
        *,
        cpusvn: bytes,
        miscselect: int = 0,
        attributes: bytes,
        mrenclave: bytes,
        mrsigner: bytes,
        isv_prod_id: int,
        isv_svn: int,
        report_data: bytes,
        isv_ext_prod_id: bytes = bytes(16),
        config_id: bytes = bytes(64),
        config_svn: int = 0,
        isv_family_id: bytes = bytes(16),
    ) -> ReportBody:
        """Encode a report body with zeroed reserved fields (for the simulated quoting enclave)."""
        for name, value, size in (
            ("cpusvn", cpusvn, 16),
            ("attributes", attributes, 16),
            ("mrenclave", mrenclave, 32),
            ("mrsigner", mrsigner, 32),
            ("report_data", report_data, REPORT_DATA_SIZE),
            ("isv_ext_prod_id", isv_ext_prod_id, 16),
            ("config_id", config_id, 64),
            ("isv_family_id", isv_family_id, 16),
        ):
            _check_len(name, value, size)
        raw = (
            cpusvn
            + miscselect.to_bytes(4, "little")
            + bytes(12)
            + isv_ext_prod_id
            + attributes
            + mrenclave
            + bytes(32)
            + mrsigner
            + bytes(32)
            + config_id
            + struct.pack("<HHH", isv_prod_id, isv_svn, config_svn)
            + bytes(42)
            + isv_family_id
            + report_data
        )
        return cls.decode(raw)


@dataclass(frozen=True)
class QuoteSignatureData:
    isv_report_signature: bytes  # 64, r||s
    attestation_key: bytes  # 64, x||y
    qe_report: ReportBody
    qe_report_signature: bytes  # 64, r||s
    qe_auth_data: bytes
    certification_data_type: int
    certification_data: bytes

    def encode(self) -> bytes:
        _check_len("isv_report_signature", self.isv_report_signature, SIGNATURE_SIZE)
        _check_len("attestation_key", self.attestation_key, ATTESTATION_KEY_SIZE)
        _check_len("qe_report_signature", self.qe_report_signature, SIGNATURE_SIZE)
        if len(self.qe_auth_data) > 0xFFFF:
            raise QuoteFormatError("QE authentication data longer than 65535 bytes")
        return (
            self.isv_report_signature
            + self.attestation_key
            + self.qe_report.raw
            + self.qe_report_signature
            + struct.pack("<H", len(self.qe_auth_data))
            + self.qe_auth_data
            + struct.pack("<HI", self.certification_data_type, len(self.certification_data))
            + self.certification_data
        )


@dataclass(frozen=True)
class Quote:
    header: QuoteHeader
    report_body: ReportBody
    signature: QuoteSignatureData
    raw: bytes

    @property
    def signed_data(self) -> bytes:
        """What the attestation key signs: header ++ ISV report body (432 bytes)."""
        return self.raw[: HEADER_SIZE + REPORT_BODY_SIZE]

    @classmethod
    def assemble(
        cls, header: QuoteHeader, report_body: ReportBody, signature: QuoteSignatureData
    ) -> Quote:
        sig = signature.encode()
        raw = header.encode() + report_body.raw + struct.pack("<I", len(sig)) + sig
        return parse_quote(raw)


def parse_quote(data: bytes) -> Quote:
    """Parse a DCAP v3 ECDSA-P256 quote; raise QuoteFormatError on any deviation."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise QuoteFormatError(f"quote must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_QUOTE_SIZE:
        raise QuoteFormatError(f"quote of {len(data)} bytes exceeds {MAX_QUOTE_SIZE}")
    fixed = HEADER_SIZE + REPORT_BODY_SIZE + 4
    if len(data) < fixed:
        raise QuoteFormatError(f"quote of {len(data)} bytes is shorter than {fixed}")
    header = QuoteHeader.decode(data[:HEADER_SIZE])
    if header.version != QUOTE_VERSION_3:
        raise QuoteFormatError(f"unsupported quote version {header.version} (expected 3)")
    if header.attestation_key_type != ATT_KEY_TYPE_ECDSA_P256:
        raise QuoteFormatError(
            f"unsupported attestation key type {header.attestation_key_type} "
            "(expected 2 = ECDSA-256-with-P-256)"
        )
    if header.tee_type != TEE_TYPE_SGX:
        raise QuoteFormatError(f"unsupported TEE type 0x{header.tee_type:x} (expected 0 = SGX)")
    body = ReportBody.decode(data[HEADER_SIZE : HEADER_SIZE + REPORT_BODY_SIZE])
    (sig_len,) = struct.unpack_from("<I", data, HEADER_SIZE + REPORT_BODY_SIZE)
    rest = data[fixed:]
    if sig_len != len(rest):
        raise QuoteFormatError(
            f"signature data length field is {sig_len} but {len(rest)} bytes follow"
        )
    if sig_len < _MIN_SIG_DATA:
        raise QuoteFormatError(f"signature data of {sig_len} bytes is too short")
    pos = 0

    def take(n: int, what: str) -> bytes:
        nonlocal pos
        if pos + n > len(rest):
            raise QuoteFormatError(f"quote truncated in {what}")
        chunk = rest[pos : pos + n]
        pos += n
        return chunk

    isv_sig = take(SIGNATURE_SIZE, "ISV report signature")
    att_key = take(ATTESTATION_KEY_SIZE, "attestation key")
    qe_report = ReportBody.decode(take(REPORT_BODY_SIZE, "QE report"))
    qe_sig = take(SIGNATURE_SIZE, "QE report signature")
    (auth_len,) = struct.unpack("<H", take(2, "QE authentication data size"))
    auth = take(auth_len, "QE authentication data")
    cert_type, cert_len = struct.unpack("<HI", take(6, "certification data header"))
    cert_data = take(cert_len, "certification data")
    if pos != len(rest):
        raise QuoteFormatError(f"{len(rest) - pos} trailing bytes after certification data")
    if cert_type != CERT_DATA_PCK_CHAIN_PEM:
        raise QuoteFormatError(
            f"unsupported certification data type {cert_type} (expected 5 = PEM PCK chain)"
        )
    signature = QuoteSignatureData(
        isv_report_signature=isv_sig,
        attestation_key=att_key,
        qe_report=qe_report,
        qe_report_signature=qe_sig,
        qe_auth_data=auth,
        certification_data_type=cert_type,
        certification_data=cert_data,
    )
    return Quote(header=header, report_body=body, signature=signature, raw=data)


def _check_len(name: str, value: bytes, size: int) -> None:
    if not isinstance(value, bytes) or len(value) != size:
        got = len(value) if isinstance(value, bytes) else type(value).__name__
        raise QuoteFormatError(f"{name} must be {size} bytes, got {got}")
