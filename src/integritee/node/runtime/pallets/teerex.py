"""pallet_teerex (index 50): the registry of attested enclaves and the SGX collateral on chain.

Owns enclave registration (Skip for dev chains, DCAP with quote verification; IAS/EPID is retired
by Intel and is rejected here), unregistration of enclaves that stopped renewing, the quoting
enclave identity and the TCB info per FMSPC (Intel-signed JSON verified to the trusted root),
and the security flags. Other pallets ask `get_sovereign_enclave` / `ensure_sovereign_enclave`.

Project additions to the original's storage: `SgxTrustedRoot` holds the root CA (DER or PEM)
that collateral and PCK chains must chain to; the original compiles Intel's SGX root CA in, and
keeping it in storage lets a dev chain trust the sim-dcap root (absent: Intel's root).
`SgxQeIdentityBody` / `SgxTcbInfoBody` keep the verified collateral JSON, because the one quote
verifier (`integritee.attestation.verify_quote`) needs it whole: the original's on-chain summaries
(kept too, for clients) drop the QE levels' status and the PCE-ID. Quotes are checked against
the chain's time (Timestamp.Now), including the currency of the collateral.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

from cryptography import x509

from integritee import attestation
from integritee.attestation import errors as att_errors
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
from integritee.parentchain.primitives import AccountId, Moment
from integritee.parentchain.tee_types import (
    DEFAULT_QUOTING_ENCLAVE,
    TCB_STATUSES,
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
)

from ..framework import DispatchError, Pallet, ensure_root, ensure_signed
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
# Project additions (after the original's items): the trust anchor, and the verified collateral
# documents the quote verifier needs in full (the original's on-chain summaries drop the QE
# levels' status and the PCE-ID).
SgxTrustedRoot = teerex.value("SgxTrustedRoot", Bytes, optional=True)
SgxQeIdentityBody = teerex.value("SgxQeIdentityBody", Bytes, optional=True)
SgxTcbInfoBody = teerex.map("SgxTcbInfoBody", "Blake2_128Concat", Fmspc, Bytes, optional=True)

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
    """Write Teerex's genesis: the two security flags and, for dev chains, a trusted root
    (certificate DER or PEM; None keeps Intel's SGX root CA)."""
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
# DCAP: quote and collateral checks by the project's one verifier (integritee.attestation)


class _StoredTcbInfos(Mapping[bytes, Any]):
    """FMSPC -> verified TCB info, read from storage when the verifier asks for the quote's."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self.missing: bytes | None = None

    def get(self, fmspc: bytes, default: Any = None) -> Any:  # type: ignore[override]
        body = SgxTcbInfoBody.get(self.state, fmspc)
        if body is None:
            self.missing = fmspc
            return default
        return attestation.parse_tcb_info(bytes(body))

    def __getitem__(self, fmspc: bytes) -> Any:
        info = self.get(fmspc)
        if info is None:
            raise KeyError(fmspc)
        return info

    def __iter__(self) -> Iterator[bytes]:
        return iter(())

    def __len__(self) -> int:
        return 0


def trusted_root(state: Any) -> x509.Certificate:
    """The root CA collateral and PCK chains must chain to (Intel's unless set at genesis)."""
    der = SgxTrustedRoot.get(state)
    if der is None:
        return attestation.intel_sgx_root_ca()
    return attestation.load_certificate(bytes(der))


# How each kind of attestation failure reads as a Teerex error, per what was being verified.
_ERRORS: dict[str, dict[type[Exception], str]] = {
    "quote": {
        att_errors.QuoteFormatError: "DcapQuoteDecodingError",
        att_errors.ExpiredError: "CollateralIsInvalid",
        att_errors.CertificateError: "CertificateChainIsInvalid",
        att_errors.SignatureError: "IsvEnclaveReportSignatureIsInvalid",
        att_errors.IdentityError: "QeHasRejectedEnclave",
        att_errors.TcbError: "TcbInfoIsOutdated",
        att_errors.CollateralError: "CollateralIsInvalid",
    },
    "qe": {
        att_errors.ExpiredError: "CollateralIsInvalid",
        att_errors.CertificateError: "CertificateChainIsInvalid",
        att_errors.SignatureError: "EnclaveIdentitySignatureIsInvalid",
        att_errors.CollateralError: "EnclaveIdentityDecodingError",
    },
    "tcb": {
        att_errors.ExpiredError: "CollateralIsInvalid",
        att_errors.CertificateError: "CertificateChainIsInvalid",
        att_errors.SignatureError: "TcbInfoIsInvalid",
        att_errors.CollateralError: "TcbInfoIsInvalid",
    },
}


# Failures on untrusted input; anything else is a bug and should surface as one.
_UNTRUSTED_FAILURES = (
    att_errors.AttestationError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    OverflowError,
)


def _attestation_error(e: Exception, what: str) -> DispatchError:
    for kind, name in _ERRORS[what].items():
        if isinstance(e, kind):
            log.info("%s rejected: %s", what, e)
            return teerex.err(name)
    # odd input the verifier did not classify still ends as a dispatch error, never a crash
    log.warning("%s verification failed unexpectedly: %r", what, e)
    return teerex.err("RemoteAttestationVerificationFailed")


def _secs(now_ms: int) -> int:
    return now_ms // 1000


def verify_dcap_quote(state: Any, quote: bytes, now_ms: int) -> attestation.VerifiedQuote:
    """Verify a DCAP quote against the registered QE identity and TCB info at `now_ms`."""
    qe_body = SgxQeIdentityBody.get(state)
    if qe_body is None:
        # as the original with its default (empty) quoting enclave: nothing is accepted
        raise teerex.err("QeHasRejectedEnclave")
    infos = _StoredTcbInfos(state)
    try:
        return attestation.verify_quote(
            bytes(quote),
            qe_identity=attestation.parse_qe_identity(bytes(qe_body)),
            tcb_info=infos,
            trusted_root=trusted_root(state),
            now=_secs(now_ms),
        )
    except _UNTRUSTED_FAILURES as e:
        if infos.missing is not None:
            raise teerex.err("MissingTcbInfoForFmspc") from None
        raise _attestation_error(e, "quote") from None


def _ms(secs: int) -> int:
    return secs * 1000


def quoting_enclave_on_chain(identity: attestation.QeIdentity) -> dict[str, Any]:
    """The original's `EnclaveIdentity::to_quoting_enclave` (every QE TCB level's isvsvn)."""
    return {
        "issue_date": _ms(identity.issue_date),
        "next_update": _ms(identity.next_update),
        "miscselect": identity.miscselect,
        "miscselect_mask": identity.miscselect_mask,
        "attributes": identity.attributes,
        "attributes_mask": identity.attributes_mask,
        "mrsigner": identity.mrsigner,
        "isvprodid": identity.isvprodid,
        "tcb": [{"isvsvn": level.isvsvn} for level in identity.tcb_levels],
    }


def _tcb_status(status: str) -> EnumValue:
    # teerex_primitives::TcbStatus has no plain ConfigurationNeeded; its SgxStatus is the same
    if status == "ConfigurationNeeded":
        status = "ConfigurationAndSWHardeningNeeded"
    return EnumValue(status if status in TCB_STATUSES else "Unknown")


def tcb_info_on_chain(info: attestation.TcbInfo) -> dict[str, Any]:
    """The original's `TcbInfo::to_chain_tcb_info` (levels in Intel's order)."""
    return {
        "issue_date": _ms(info.issue_date),
        "next_update": _ms(info.next_update),
        "tcb_levels": [
            {
                "cpusvn": bytes(level.sgx_components),
                "pcesvn": level.pcesvn,
                "tcb_status": _tcb_status(level.tcb_status),
            }
            for level in info.tcb_levels
        ],
    }


def verify_quoting_enclave(
    state: Any, identity: bytes, signature: bytes, chain: bytes, now_ms: int
) -> attestation.QeIdentity:
    """Verify Intel-signed QE identity JSON (signature, chain to the root, currency)."""
    try:
        return attestation.verify_qe_identity(
            identity, signature, chain, trusted_root(state), _secs(now_ms)
        )
    except _UNTRUSTED_FAILURES as e:
        raise _attestation_error(e, "qe") from None


def verify_tcb_info(
    state: Any, tcb_info: bytes, signature: bytes, chain: bytes, now_ms: int
) -> attestation.TcbInfo:
    """Verify Intel-signed TCB info JSON (signature, chain to the root, currency)."""
    try:
        return attestation.verify_tcb_info(
            tcb_info, signature, chain, trusted_root(state), _secs(now_ms)
        )
    except _UNTRUSTED_FAILURES as e:
        raise _attestation_error(e, "tcb") from None


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
        verified = verify_dcap_quote(ctx.state, bytes(proof), now)
        if not proxied and verified.report_data[:32] != sender:
            raise teerex.err("SenderIsNotAttestedEnclave")
        enclave = new_sgx_enclave(
            report_data=verified.report_data,
            mr_enclave=verified.mrenclave,
            mr_signer=verified.mrsigner,
            timestamp=now,
            build_mode=verified.build_mode,
            status=verified.sgx_status,
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
    identity = verify_quoting_enclave(
        ctx.state, bytes(enclave_identity), bytes(signature), bytes(certificate_chain), _now(ctx)
    )
    qe = quoting_enclave_on_chain(identity)
    SgxQuotingEnclaveRegistry.put(ctx.state, qe)
    SgxQeIdentityBody.put(ctx.state, bytes(enclave_identity))
    ctx.deposit_event(teerex, "SgxQuotingEnclaveRegistered", {"quoting_enclave": qe})


@teerex.call(4, weight=REGISTER_WEIGHT, tcb_info=_bytes, signature=_bytes, certificate_chain=_bytes)
def register_tcb_info(ctx, origin, tcb_info, signature, certificate_chain) -> None:
    """Register Intel's TCB info for one FMSPC (global, any signed origin may submit it)."""
    ensure_signed(origin)
    info = verify_tcb_info(
        ctx.state, bytes(tcb_info), bytes(signature), bytes(certificate_chain), _now(ctx)
    )
    on_chain = tcb_info_on_chain(info)
    SgxTcbInfo.put(ctx.state, info.fmspc, on_chain)
    SgxTcbInfoBody.put(ctx.state, info.fmspc, bytes(tcb_info))
    ctx.deposit_event(
        teerex, "SgxTcbInfoRegistered", {"fmspc": info.fmspc, "on_chain_info": on_chain}
    )


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
