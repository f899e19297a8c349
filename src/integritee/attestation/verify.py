"""DCAP quote verification: one verifier for the Teerex pallet and for MU-RA peers.

`verify_quote` establishes, in order:
1. the PCK certificate chain in the quote (leaf, PCK CA, root) verifies to `trusted_root` at
   `now` (validity, names, signatures, CA constraints, CRLs when given);
2. the QE report is signed by the PCK leaf key;
3. the QE report data binds the attestation key: report_data[0:32] = sha256(attestation key ++
   QE authentication data), report_data[32:64] = 0;
4. header ++ ISV report body is signed by the attestation key;
5. the QE report matches the QE identity (mrsigner, isvprodid, miscselect and attributes under
   their masks) and its isvsvn reaches a QE TCB level that is not Revoked;
6. the TCB info is for the PCK certificate's FMSPC and PCE-ID, and the platform's TCB
   (16 component SVNs + PCESVN from the PCK certificate) reaches a level; the platform status is
   converged with the QE's; Revoked is rejected;
7. the collateral is current at `now` (unless `check_collateral_time=False`).

The result carries what Teerex stores (mrenclave, mrsigner, report data, build mode, status).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from integritee.attestation.collateral import (
    QeIdentity,
    TcbInfo,
    check_current,
    converge_tcb_status,
    match_qe_tcb_level,
    match_tcb_level,
)
from integritee.attestation.errors import (
    CertificateError,
    CollateralError,
    IdentityError,
    QuoteFormatError,
    SignatureError,
    TcbError,
)
from integritee.attestation.pck import (
    PckExtension,
    load_crl,
    load_pem_chain,
    pck_extension,
    verify_certificate_chain,
)
from integritee.attestation.quote import INTEL_QE_VENDOR_ID, Quote, parse_quote


@dataclass(frozen=True)
class VerifiedQuote:
    mrenclave: bytes
    mrsigner: bytes
    report_data: bytes  # 64
    isv_prod_id: int
    isv_svn: int
    debug: bool
    tcb_status: str  # platform status converged with the QE's
    platform_tcb_status: str
    qe_tcb_status: str
    advisory_ids: tuple[str, ...]
    fmspc: bytes  # 6
    pce_id: bytes  # 2
    cpusvn: bytes  # 16, from the PCK certificate
    pcesvn: int
    attestation_key: bytes  # 64, raw x||y
    verified_at: int  # `now` of the verification, unix seconds
    collateral_next_update: int  # earliest nextUpdate of the QE identity and TCB info
    pck_not_after: int
    pck: PckExtension
    quote: Quote

    @property
    def sgx_status(self) -> str:
        return sgx_status(self.tcb_status)

    @property
    def build_mode(self) -> str:
        """Teerex's SgxBuildMode variant name."""
        return "Debug" if self.debug else "Production"


def sgx_status(tcb_status: str) -> str:
    """Map an Intel TCB status to Teerex's `SgxStatus` variant name, as the pallets' primitives
    do: UpToDate and SWHardeningNeeded -> "Ok"; ConfigurationNeeded and
    ConfigurationAndSWHardeningNeeded -> "ConfigurationNeeded"; OutOfDate and
    OutOfDateConfigurationNeeded -> "GroupOutOfDate"; Revoked -> "GroupRevoked" (verify_quote
    never returns it); anything else -> "Invalid"."""
    return _SGX_STATUS.get(tcb_status, "Invalid")


_SGX_STATUS = {
    "UpToDate": "Ok",
    "SWHardeningNeeded": "Ok",
    "ConfigurationNeeded": "ConfigurationNeeded",
    "ConfigurationAndSWHardeningNeeded": "ConfigurationNeeded",
    "OutOfDate": "GroupOutOfDate",
    "OutOfDateConfigurationNeeded": "GroupOutOfDate",
    "Revoked": "GroupRevoked",
}


def verify_quote(
    quote: bytes | Quote,
    *,
    qe_identity: QeIdentity,
    tcb_info: TcbInfo | Mapping[bytes, TcbInfo],
    trusted_root: x509.Certificate,
    now: int,
    crls: Sequence[x509.CertificateRevocationList | bytes] | None = None,
    check_collateral_time: bool = True,
) -> VerifiedQuote:
    """Verify a DCAP v3 quote against verified collateral; `now` in unix seconds.

    `tcb_info` is either the TCB info of the quote's FMSPC or a mapping FMSPC -> TCB info (as
    Teerex stores it). `crls` (objects or PEM/DER/hex bytes) whose issuer is on the PCK chain are
    checked; others are ignored. Raises an `AttestationError` subclass on any failure."""
    # A Quote object is re-parsed from its bytes: only what the signatures cover is trusted.
    parsed = parse_quote(quote.raw if isinstance(quote, Quote) else quote)
    sig = parsed.signature

    # 1. PCK chain
    chain = load_pem_chain(sig.certification_data)
    crl_objects = [
        c if isinstance(c, x509.CertificateRevocationList) else load_crl(c) for c in crls or ()
    ]
    path = verify_certificate_chain(chain, trusted_root, now, crls=crl_objects, max_intermediates=1)
    if len(path) != 3:
        raise CertificateError("a PCK chain must be PCK certificate, PCK CA, root")
    pck_cert = path[0]
    pck = pck_extension(pck_cert)
    pck_key = pck_cert.public_key()
    assert isinstance(pck_key, ec.EllipticCurvePublicKey)  # checked by the chain verification

    # 2. QE report signed by the PCK key
    _verify_raw(pck_key, sig.qe_report_signature, sig.qe_report.raw, "QE report (by the PCK key)")

    # 3. the QE vouches for the attestation key
    expected = hashlib.sha256(sig.attestation_key + sig.qe_auth_data).digest()
    report_data = sig.qe_report.report_data
    if report_data[:32] != expected or report_data[32:] != bytes(32):
        raise SignatureError(
            "QE report data does not bind the attestation key and QE authentication data"
        )

    # 4. the quote signed by the attestation key
    try:
        att_key = ec.EllipticCurvePublicKey.from_encoded_point(
            ec.SECP256R1(), b"\x04" + sig.attestation_key
        )
    except ValueError:
        raise SignatureError("attestation key is not a valid P-256 point") from None
    _verify_raw(
        att_key, sig.isv_report_signature, parsed.signed_data, "quote (by the attestation key)"
    )

    if parsed.header.qe_vendor_id != INTEL_QE_VENDOR_ID:
        raise QuoteFormatError(f"unknown QE vendor id {parsed.header.qe_vendor_id.hex()}")

    # 5. the quoting enclave is the registered one, at an acceptable TCB
    qe_level_status = _check_qe(parsed, qe_identity)

    # 6. platform TCB
    info = _select_tcb_info(tcb_info, pck.fmspc)
    if info.id != "SGX":
        raise CollateralError(f"TCB info is for {info.id!r}, expected 'SGX'")
    if info.fmspc != pck.fmspc:
        raise CollateralError(
            f"TCB info is for FMSPC {info.fmspc.hex()}, the PCK certificate's is {pck.fmspc.hex()}"
        )
    if info.pce_id != pck.pce_id:
        raise CollateralError(
            f"TCB info is for PCE-ID {info.pce_id.hex()}, the PCK certificate's is "
            f"{pck.pce_id.hex()}"
        )
    level = match_tcb_level(info, pck.tcb_components, pck.pcesvn)
    if level.tcb_status == "Revoked":
        raise TcbError(f"platform TCB of FMSPC {pck.fmspc.hex()} is revoked")
    status = converge_tcb_status(level.tcb_status, qe_level_status)

    # 7. collateral freshness
    if check_collateral_time:
        check_current(qe_identity.issue_date, qe_identity.next_update, now, "QE identity")
        check_current(
            info.issue_date, info.next_update, now, f"TCB info of FMSPC {info.fmspc.hex()}"
        )

    body = parsed.report_body
    return VerifiedQuote(
        mrenclave=body.mrenclave,
        mrsigner=body.mrsigner,
        report_data=body.report_data,
        isv_prod_id=body.isv_prod_id,
        isv_svn=body.isv_svn,
        debug=body.debug,
        tcb_status=status,
        platform_tcb_status=level.tcb_status,
        qe_tcb_status=qe_level_status,
        advisory_ids=level.advisory_ids,
        fmspc=pck.fmspc,
        pce_id=pck.pce_id,
        cpusvn=pck.cpusvn,
        pcesvn=pck.pcesvn,
        attestation_key=sig.attestation_key,
        verified_at=now,
        collateral_next_update=min(qe_identity.next_update, info.next_update),
        pck_not_after=int(pck_cert.not_valid_after_utc.timestamp()),
        pck=pck,
        quote=parsed,
    )


def _verify_raw(key: ec.EllipticCurvePublicKey, signature: bytes, data: bytes, what: str) -> None:
    der_sig = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der_sig, data, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(f"signature of the {what} does not verify") from None


def _check_qe(quote: Quote, qe: QeIdentity) -> str:
    report = quote.signature.qe_report
    if qe.id != "QE":
        raise CollateralError(f"enclave identity is for {qe.id!r}, expected 'QE'")
    if report.mrsigner != qe.mrsigner:
        raise IdentityError(
            f"QE mrsigner {report.mrsigner.hex()} is not the registered {qe.mrsigner.hex()}"
        )
    if report.isv_prod_id != qe.isvprodid:
        raise IdentityError(
            f"QE isvprodid {report.isv_prod_id} is not the registered {qe.isvprodid}"
        )
    miscselect = report.raw[16:20]
    if _masked(miscselect, qe.miscselect_mask) != _masked(qe.miscselect, qe.miscselect_mask):
        raise IdentityError("QE miscselect does not match the registered QE identity")
    if _masked(report.attributes, qe.attributes_mask) != _masked(qe.attributes, qe.attributes_mask):
        raise IdentityError("QE attributes do not match the registered QE identity")
    level = match_qe_tcb_level(qe, report.isv_svn)
    if level.tcb_status == "Revoked":
        raise TcbError(f"quoting enclave TCB (isvsvn {report.isv_svn}) is revoked")
    return level.tcb_status


def _masked(value: bytes, mask: bytes) -> bytes:
    return bytes(v & m for v, m in zip(value, mask, strict=True))


def _select_tcb_info(tcb_info: TcbInfo | Mapping[bytes, TcbInfo], fmspc: bytes) -> TcbInfo:
    if isinstance(tcb_info, TcbInfo):
        return tcb_info
    info = tcb_info.get(fmspc)
    if info is None:
        raise CollateralError(f"no TCB info registered for FMSPC {fmspc.hex()}")
    return info
