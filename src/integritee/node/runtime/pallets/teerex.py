"""pallet_teerex (index 50): the registry of attested enclaves and the SGX collateral on chain.

Owns enclave registration (Skip for dev chains, DCAP with quote verification; IAS/EPID is retired
by Intel and is rejected here), unregistration of enclaves that stopped renewing, the quoting
enclave identity and the TCB info per FMSPC (Intel-signed JSON verified to the trusted root),
and the security flags. Other pallets ask `get_sovereign_enclave` / `ensure_sovereign_enclave`.

Project addition: `SgxTrustedRoot` holds the DER of the root CA that collateral and PCK chains
must chain to. The original compiles Intel's SGX root CA in; keeping it in storage lets a dev
chain trust the simulated quoting enclave's root. When the item is absent, Intel's root is used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from integritee.codec.scale import (
    Bytes,
    Enum,
    EnumValue,
    Field,
    Option,
    Variant,
    boolean,
    variant,
)

from ..framework import DispatchError, Pallet, ensure_root, ensure_signed
from ..primitives import AccountId, Moment
from ..tee_types import (
    DEFAULT_QUOTING_ENCLAVE,
    EnclaveInstanceAddress,
    Fmspc,
    MultiEnclave,
    SgxAttestationMethod,
    SgxQuotingEnclave,
    SgxStatus,
    SgxTcbInfoOnChain,
    attestation_proxied,
    attestation_timestamp,
    fingerprint,
    instance_signer,
    new_sgx_enclave,
    verify_examinee,
)
from . import timestamp as timestamp_mod

log = logging.getLogger("integritee.node.runtime.teerex")

SGX_RA_PROOF_MAX_LEN = 5000
MAX_URL_LEN = 256
MOMENTS_PER_DAY = 86_400_000
MAX_ATTESTATION_RENEWAL_PERIOD = 172_800_000  # 48 h

teerex = Pallet("Teerex", 50, "pallet_teerex")

SovereignEnclaves = teerex.map(
    "SovereignEnclaves", "Blake2_128Concat", AccountId, MultiEnclave, optional=True
)
ProxiedEnclaves = teerex.map(
    "ProxiedEnclaves", "Blake2_128Concat", EnclaveInstanceAddress, MultiEnclave, optional=True
)
SgxQuotingEnclaveRegistry = teerex.value(
    "SgxQuotingEnclaveRegistry", SgxQuotingEnclave, default=DEFAULT_QUOTING_ENCLAVE
)
SgxTcbInfo = teerex.map("SgxTcbInfo", "Blake2_128Concat", Fmspc, SgxTcbInfoOnChain, optional=True)
SgxAllowDebugMode = teerex.value("SgxAllowDebugMode", boolean, default=False)
AllowSkippingAttestation = teerex.value("AllowSkippingAttestation", boolean, default=False)
SgxTrustedRoot = teerex.value("SgxTrustedRoot", Bytes, optional=True)

teerex.constant("MomentsPerDay", Moment, MOMENTS_PER_DAY)
teerex.constant("MaxAttestationRenewalPeriod", Moment, MAX_ATTESTATION_RENEWAL_PERIOD)

_A = ("T::AccountId",)
teerex.event(
    "AddedSgxEnclave",
    0,
    ("registered_by", AccountId, *_A),
    ("worker_url", Option(Bytes), "Option<Vec<u8>>"),
    ("tcb_status", Option(SgxStatus), "Option<SgxStatus>"),
    ("attestation_method", SgxAttestationMethod, "SgxAttestationMethod"),
)
teerex.event("RemovedSovereignEnclave", 1, (None, AccountId, *_A))
teerex.event(
    "RemovedProxiedEnclave",
    2,
    (None, EnclaveInstanceAddress, "EnclaveInstanceAddress<T::AccountId>"),
)
teerex.event(
    "SgxTcbInfoRegistered",
    3,
    ("fmspc", Fmspc, "Fmspc"),
    ("on_chain_info", SgxTcbInfoOnChain, "SgxTcbInfoOnChain"),
)
teerex.event(
    "SgxQuotingEnclaveRegistered",
    4,
    ("quoting_enclave", SgxQuotingEnclave, "SgxQuotingEnclave"),
)
teerex.event(
    "UpdatedSecurityFlags",
    5,
    ("allow_skipping_attestation", boolean, "bool"),
    ("sgx_allow_debug_mode", boolean, "bool"),
)

# sgx_verify::Error, mirrored one to one by Teerex's own error variants after OtherSgxVerifyError.
SGX_VERIFY_ERRORS = (
    "CaVerificationFailed",
    "CertificateChainIsInvalid",
    "CertificateChainIsTooShort",
    "CpuSvnDecodingError",
    "CpuSvnLengthMismatch",
    "CpuSvnOidIsMissing",
    "DcapKeyTypeMismatch",
    "DcapQuoteDecodingError",
    "DcapQuoteIsTooLong",
    "DcapQuoteVersionMismatch",
    "DerEncodingError",
    "EnclaveIdentityDecodingError",
    "EnclaveIdentitySignatureIsInvalid",
    "FmspcDecodingError",
    "FmspcLengthMismatch",
    "FmspcOidIsMissing",
    "IntelExtensionAmbiguity",
    "IntelExtensionCertificateDecodingError",
    "IsvEnclaveReportSignatureIsInvalid",
    "KeyLengthIsInvalid",
    "LeafCertificateParsingError",
    "NetscapeDecodingError",
    "NetscapeDerError",
    "PceSvnDecodingError",
    "PceSvnLengthMismatch",
    "PceSvnOidIsMissing",
    "PckCertFormatMismatch",
    "PublicKeyIsInvalid",
    "QeHasRejectedEnclave",
    "QeReportHashMismatch",
    "QuoteBodyDecodingError",
    "QuoteBodyIsInvalid",
    "QuoteBodyMissing",
    "QuoteStatusMissing",
    "RsaSignatureIsInvalid",
    "SgxReportParsingError",
    "TcbInfoIsInvalid",
    "TimestampIsInvalid",
    "TimestampIsMissing",
)
SgxVerifyError = Enum("sgx_verify::Error", [variant(n, i) for i, n in enumerate(SGX_VERIFY_ERRORS)])

teerex.error(
    "EnclaveSignerDecodeError",
    "SenderIsNotAttestedEnclave",
    "RemoteAttestationVerificationFailed",
    "RemoteAttestationIsTooOld",
    "SgxModeIsNotAllowed",
    "EnclaveIsNotRegistered",
    "EnclaveUrlIsTooLong",
    "RaProofIsTooLong",
    "EmptyEnclaveRegistry",
    "CollateralIsInvalid",
    "UnregisterActiveEnclaveIsNotAllowed",
    "SkippingAttestationIsNotAllowed",
    "MissingTcbInfoForFmspc",
    "TcbInfoIsOutdated",
    "OtherSgxVerifyError",
    *SGX_VERIFY_ERRORS,
)
# The one error variant that carries a payload (the wrapped sgx_verify::Error), as in metadata.
_OTHER = next(i for i, v in enumerate(teerex.errors) if v.name == "OtherSgxVerifyError")
teerex.errors[_OTHER] = Variant(
    "OtherSgxVerifyError", _OTHER, (Field(None, SgxVerifyError, "sgx_verify::Error"),)
)


# ---------------------------------------------------------------------------------------------
# Functions other pallets and the chain spec use


def genesis_storage(
    state: Any, *, allow_skipping: bool, allow_debug: bool, trusted_root_der: bytes | None = None
) -> None:
    """Write Teerex's genesis: the two security flags and, for dev chains, a trusted root."""
    AllowSkippingAttestation.put(state, allow_skipping)
    SgxAllowDebugMode.put(state, allow_debug)
    if trusted_root_der is not None:
        SgxTrustedRoot.put(state, trusted_root_der)


def get_sovereign_enclave(state: Any, account: bytes) -> EnumValue | None:
    """The MultiEnclave registered by `account`, or None."""
    return SovereignEnclaves.get(state, account)  # type: ignore[no-any-return]


def ensure_sovereign_enclave(state: Any, account: bytes) -> EnumValue:
    """As the original's `get_sovereign_enclave`: the enclave, or EnclaveIsNotRegistered."""
    enclave = get_sovereign_enclave(state, account)
    if enclave is None:
        raise teerex.err("EnclaveIsNotRegistered")
    return enclave


def _now(ctx: Any) -> int:
    return int(timestamp_mod.Now.get(ctx.state))


def _add_enclave(ctx: Any, sender: bytes, enclave: EnumValue) -> None:
    if attestation_proxied(enclave):
        address = {
            "fingerprint": fingerprint(enclave),
            "registrar": sender,
            "signer": instance_signer(enclave),
        }
        ProxiedEnclaves.put(ctx.state, address, enclave)
    else:
        SovereignEnclaves.put(ctx.state, sender, enclave)


# ---------------------------------------------------------------------------------------------
# DCAP: the quote and collateral checks, delegated to integritee.attestation


@dataclass(frozen=True)
class DcapReport:
    """What a verified quote tells the pallet (sgx_verify's SgxVerifiedReport plus the TCB)."""

    mr_enclave: bytes
    mr_signer: bytes
    report_data: bytes
    debug: bool
    fmspc: bytes
    cpusvn: bytes
    pcesvn: int


def trusted_root(state: Any) -> bytes:
    root = SgxTrustedRoot.get(state)
    if root is not None:
        return bytes(root)
    from integritee.attestation import INTEL_SGX_ROOT_CA_DER

    return bytes(INTEL_SGX_ROOT_CA_DER)


def _attestation_error(e: Exception, default: str) -> DispatchError:
    """Map an attestation failure to the closest Teerex error (the original's sgx_verify mapping)."""
    from integritee.attestation import errors as att

    if isinstance(e, att.ExpiredError):
        return teerex.err("CollateralIsInvalid")
    if isinstance(e, att.QuoteFormatError):
        return teerex.err("DcapQuoteDecodingError")
    if isinstance(e, att.IdentityError):
        return teerex.err("QeHasRejectedEnclave")
    if isinstance(e, att.CertificateError):
        return teerex.err("CertificateChainIsInvalid")
    if isinstance(e, att.SignatureError):
        return teerex.err(default)
    if isinstance(e, att.TcbError):
        return teerex.err("TcbInfoIsOutdated")
    if isinstance(e, att.CollateralError):
        return teerex.err("CollateralIsInvalid")
    return teerex.err("RemoteAttestationVerificationFailed")


def verify_dcap_quote(state: Any, quote: bytes, now_ms: int) -> DcapReport:
    """Verify a DCAP quote against the registered quoting enclave and the trusted root."""
    from integritee import attestation
    from integritee.attestation.errors import AttestationError

    qe = SgxQuotingEnclaveRegistry.get(state)
    try:
        v = attestation.verify_quote_on_chain(
            quote, quoting_enclave=qe, trusted_root=trusted_root(state), now_ms=now_ms
        )
    except AttestationError as e:
        raise _attestation_error(e, "IsvEnclaveReportSignatureIsInvalid") from None
    return DcapReport(
        mr_enclave=v.mrenclave,
        mr_signer=v.mrsigner,
        report_data=v.report_data,
        debug=v.debug,
        fmspc=v.fmspc,
        cpusvn=v.cpusvn,
        pcesvn=v.pcesvn,
    )


def verify_quoting_enclave(
    state: Any, identity: bytes, signature: bytes, chain: bytes, now_ms: int
) -> dict[str, Any]:
    """Intel-signed QE identity JSON -> the on-chain SgxQuotingEnclave."""
    from integritee import attestation
    from integritee.attestation.errors import AttestationError

    try:
        return attestation.quoting_enclave_on_chain(  # type: ignore[no-any-return]
            identity, signature, chain, trusted_root=trusted_root(state), now_ms=now_ms
        )
    except AttestationError as e:
        raise _attestation_error(e, "EnclaveIdentitySignatureIsInvalid") from None


def verify_tcb_info(
    state: Any, tcb_info: bytes, signature: bytes, chain: bytes, now_ms: int
) -> tuple[bytes, dict[str, Any]]:
    """Intel-signed TCB info JSON -> (fmspc, the on-chain SgxTcbInfoOnChain)."""
    from integritee import attestation
    from integritee.attestation.errors import AttestationError

    try:
        return attestation.tcb_info_on_chain(  # type: ignore[no-any-return]
            tcb_info, signature, chain, trusted_root=trusted_root(state), now_ms=now_ms
        )
    except AttestationError as e:
        raise _attestation_error(e, "TcbInfoIsInvalid") from None


# ---------------------------------------------------------------------------------------------
# Calls

_bytes = (Bytes, "Vec<u8>")
REGISTER_WEIGHT = 1_500_000_000


@teerex.call(
    0,
    weight=REGISTER_WEIGHT,
    proof=_bytes,
    worker_url=(Option(Bytes), "Option<Vec<u8>>"),
    attestation_method=(SgxAttestationMethod, "SgxAttestationMethod"),
)
def register_sgx_enclave(ctx, origin, proof: bytes, worker_url, attestation_method) -> None:
    """Register (or re-register) the sender's enclave with its attestation proof."""
    sender = ensure_signed(origin)
    if len(proof) > SGX_RA_PROOF_MAX_LEN:
        raise teerex.err("RaProofIsTooLong")
    if worker_url is not None and len(worker_url) > MAX_URL_LEN:
        raise teerex.err("EnclaveUrlIsTooLong")
    method = attestation_method.name
    proxied = bool((attestation_method.value or {}).get("proxied", False))
    now = _now(ctx)
    if method == "Skip":
        if not AllowSkippingAttestation.get(ctx.state):
            raise teerex.err("SkippingAttestationIsNotAllowed")
        # the proof stands for the MRENCLAVE if it is long enough to be one
        mr_enclave = bytes(proof[:32]) if len(proof) >= 32 else bytes(32)
        enclave = new_sgx_enclave(
            report_data=sender + bytes(32),
            mr_enclave=mr_enclave,
            mr_signer=bytes(32),
            timestamp=now,
            build_mode="Production",
            status="Invalid",
            attestation_method=EnumValue("Skip", {"proxied": proxied}),
        )
    elif method == "Dcap":
        report = verify_dcap_quote(ctx.state, bytes(proof), now)
        if not proxied and report.report_data[:32] != sender:
            raise teerex.err("SenderIsNotAttestedEnclave")
        on_chain = SgxTcbInfo.get(ctx.state, report.fmspc)
        if on_chain is None:
            raise teerex.err("MissingTcbInfoForFmspc")
        status = verify_examinee(on_chain, report.cpusvn, report.pcesvn)
        if status is None:
            raise teerex.err("TcbInfoIsOutdated")
        enclave = new_sgx_enclave(
            report_data=report.report_data,
            mr_enclave=report.mr_enclave,
            mr_signer=report.mr_signer,
            timestamp=now,
            build_mode="Debug" if report.debug else "Production",
            status=status,
            attestation_method=EnumValue("Dcap", {"proxied": proxied}),
        )
    else:
        # IAS (EPID) attestation reached end of life at Intel; its reports cannot be verified.
        raise teerex.err("RemoteAttestationVerificationFailed")
    sgx = enclave.value
    if not SgxAllowDebugMode.get(ctx.state) and sgx["build_mode"].name == "Debug":
        raise teerex.err("SgxModeIsNotAllowed")
    if worker_url is not None:
        sgx["url"] = bytes(worker_url)
    _add_enclave(ctx, sender, enclave)
    log.info("registered sgx enclave of %s (%s)", sender.hex(), method)
    ctx.deposit_event(
        teerex,
        "AddedSgxEnclave",
        {
            "registered_by": sender,
            "worker_url": worker_url,
            "tcb_status": sgx["status"],
            "attestation_method": sgx["attestation_method"],
        },
    )


def _ensure_stale(ctx: Any, enclave: EnumValue) -> None:
    oldest_acceptable = max(0, _now(ctx) - MAX_ATTESTATION_RENEWAL_PERIOD)
    if attestation_timestamp(enclave) >= oldest_acceptable:
        raise teerex.err("UnregisterActiveEnclaveIsNotAllowed")


@teerex.call(1, weight=200_000_000, enclave_signer=(AccountId, "T::AccountId"))
def unregister_sovereign_enclave(ctx, origin, enclave_signer: bytes) -> None:
    """Anyone may remove an enclave that has not renewed its attestation for 48 hours."""
    ensure_signed(origin)
    enclave = ensure_sovereign_enclave(ctx.state, enclave_signer)
    _ensure_stale(ctx, enclave)
    SovereignEnclaves.remove(ctx.state, enclave_signer)
    ctx.deposit_event(teerex, "RemovedSovereignEnclave", enclave_signer)


@teerex.call(
    2,
    weight=200_000_000,
    address=(EnclaveInstanceAddress, "EnclaveInstanceAddress<T::AccountId>"),
)
def unregister_proxied_enclave(ctx, origin, address) -> None:
    """Anyone may remove a proxied enclave that has not renewed its attestation for 48 hours."""
    ensure_signed(origin)
    enclave = ProxiedEnclaves.get(ctx.state, address)
    if enclave is None:
        raise teerex.err("EnclaveIsNotRegistered")
    _ensure_stale(ctx, enclave)
    ProxiedEnclaves.remove(ctx.state, address)
    ctx.deposit_event(teerex, "RemovedProxiedEnclave", address)


@teerex.call(
    3,
    weight=REGISTER_WEIGHT,
    enclave_identity=_bytes,
    signature=_bytes,
    certificate_chain=_bytes,
)
def register_quoting_enclave(ctx, origin, enclave_identity, signature, certificate_chain) -> None:
    """Register Intel's quoting enclave identity (global, any signed origin may submit it)."""
    ensure_signed(origin)
    qe = verify_quoting_enclave(
        ctx.state, bytes(enclave_identity), bytes(signature), bytes(certificate_chain), _now(ctx)
    )
    SgxQuotingEnclaveRegistry.put(ctx.state, qe)
    ctx.deposit_event(teerex, "SgxQuotingEnclaveRegistered", {"quoting_enclave": qe})


@teerex.call(4, weight=REGISTER_WEIGHT, tcb_info=_bytes, signature=_bytes, certificate_chain=_bytes)
def register_tcb_info(ctx, origin, tcb_info, signature, certificate_chain) -> None:
    """Register Intel's TCB info for one FMSPC (global, any signed origin may submit it)."""
    ensure_signed(origin)
    fmspc, on_chain = verify_tcb_info(
        ctx.state, bytes(tcb_info), bytes(signature), bytes(certificate_chain), _now(ctx)
    )
    SgxTcbInfo.put(ctx.state, fmspc, on_chain)
    ctx.deposit_event(teerex, "SgxTcbInfoRegistered", {"fmspc": fmspc, "on_chain_info": on_chain})


@teerex.call(
    5,
    weight=20_000_000,
    allow_skipping_attestation=(boolean, "bool"),
    sgx_allow_debug_mode=(boolean, "bool"),
)
def set_security_flags(ctx, origin, allow_skipping_attestation, sgx_allow_debug_mode) -> None:
    """Root sets whether Skip registrations and debug-mode enclaves are accepted."""
    ensure_root(origin)
    AllowSkippingAttestation.put(ctx.state, allow_skipping_attestation)
    SgxAllowDebugMode.put(ctx.state, sgx_allow_debug_mode)
    ctx.deposit_event(
        teerex,
        "UpdatedSecurityFlags",
        {
            "allow_skipping_attestation": allow_skipping_attestation,
            "sgx_allow_debug_mode": sgx_allow_debug_mode,
        },
    )
