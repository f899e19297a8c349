"""Shared attestation layer: DCAP v3 quotes, Intel collateral, one verifier, providers.

Used by the parentchain's Teerex pallet (register_sgx_enclave / register_quoting_enclave /
register_tcb_info) and by the enclaves' mutual remote attestation. The trust anchor is always a
parameter: Intel's SGX root (`intel_sgx_root_ca()`) on real chains, the dev root
(`dev_root_certificate()`) for sim-dcap. Times are unix seconds.

Modules: quote (byte layout), pck (X.509, CRLs, PCK extension), collateral (QE identity, TCB
info), verify (verify_quote, sgx_status), dev_pki (deterministic dev PKI), providers (skip,
sim-dcap, gramine-dcap), errors, der.
"""

from __future__ import annotations

from integritee.attestation.collateral import (
    QeIdentity,
    QeTcbLevel,
    TcbInfo,
    TcbLevel,
    converge_tcb_status,
    match_qe_tcb_level,
    match_tcb_level,
    parse_qe_identity,
    parse_tcb_info,
    split_qe_identity_document,
    split_signed_document,
    split_tcb_info_document,
    verify_collateral_signature,
    verify_qe_identity,
    verify_tcb_info,
)
from integritee.attestation.dev_pki import (
    DEV_ROOT_CA_PEM,
    DevPki,
    dev_root_certificate,
)
from integritee.attestation.errors import (
    AttestationError,
    CertificateError,
    CollateralError,
    ExpiredError,
    IdentityError,
    ProviderError,
    QuoteFormatError,
    RevokedError,
    SignatureError,
    TcbError,
)
from integritee.attestation.pck import (
    INTEL_SGX_ROOT_CA_PEM,
    PckExtension,
    intel_sgx_root_ca,
    load_certificate,
    load_crl,
    load_pem_chain,
    pck_extension,
    verify_certificate_chain,
)
from integritee.attestation.providers import (
    METHOD_DCAP,
    METHOD_SKIP,
    AttestationProvider,
    GramineDcapProvider,
    SimDcapProvider,
    SkipProvider,
    create_provider,
)
from integritee.attestation.quote import (
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    ReportBody,
    parse_quote,
)
from integritee.attestation.verify import VerifiedQuote, sgx_status, verify_quote

__all__ = [
    "DEV_ROOT_CA_PEM",
    "INTEL_SGX_ROOT_CA_PEM",
    "METHOD_DCAP",
    "METHOD_SKIP",
    "AttestationError",
    "AttestationProvider",
    "CertificateError",
    "CollateralError",
    "DevPki",
    "ExpiredError",
    "GramineDcapProvider",
    "IdentityError",
    "PckExtension",
    "ProviderError",
    "QeIdentity",
    "QeTcbLevel",
    "Quote",
    "QuoteFormatError",
    "QuoteHeader",
    "QuoteSignatureData",
    "ReportBody",
    "RevokedError",
    "SignatureError",
    "SimDcapProvider",
    "SkipProvider",
    "TcbError",
    "TcbInfo",
    "TcbLevel",
    "VerifiedQuote",
    "converge_tcb_status",
    "create_provider",
    "dev_root_certificate",
    "intel_sgx_root_ca",
    "load_certificate",
    "load_crl",
    "load_pem_chain",
    "match_qe_tcb_level",
    "match_tcb_level",
    "parse_qe_identity",
    "parse_quote",
    "parse_tcb_info",
    "pck_extension",
    "sgx_status",
    "split_qe_identity_document",
    "split_signed_document",
    "split_tcb_info_document",
    "verify_certificate_chain",
    "verify_collateral_signature",
    "verify_qe_identity",
    "verify_quote",
    "verify_tcb_info",
]
