"""Attestation providers: how an enclave obtains the proof it registers with Teerex.

One interface (`AttestationProvider`): `name`, Teerex `method` ("Skip" or "Dcap"), and
`quote(report_data) -> bytes`, the `proof` argument of `register_sgx_enclave`.

- `SkipProvider`: proof = mrenclave (Teerex Skip; dev chains only).
- `SimDcapProvider`: a software quoting enclave that emits real-format DCAP v3 quotes under the
  dev PKI (`dev_pki.DevPki`), plus the matching signed QE identity and TCB info for
  `register_quoting_enclave` / `register_tcb_info`. Nothing about the quote is simulated except
  who holds the keys: the verifier runs the same checks as for Intel quotes.
- `GramineDcapProvider`: Gramine's /dev/attestation pseudo-files (write user_report_data, read
  quote).

Report data shorter than 64 bytes is zero-padded (Teerex reads the enclave key from the first
32 bytes); longer is an error.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509

from integritee.attestation.collateral import (
    TCB_STATUSES,
    QeIdentity,
    TcbInfo,
    verify_qe_identity,
    verify_tcb_info,
)
from integritee.attestation.dev_pki import DevPki, derive_key, raw_public_key, sign_raw
from integritee.attestation.errors import ProviderError
from integritee.attestation.pck import PckExtension
from integritee.attestation.quote import (
    ATT_KEY_TYPE_ECDSA_P256,
    CERT_DATA_PCK_CHAIN_PEM,
    INTEL_QE_VENDOR_ID,
    QUOTE_VERSION_3,
    REPORT_DATA_SIZE,
    SGX_FLAGS_DEBUG,
    SGX_FLAGS_INIT,
    SGX_FLAGS_MODE64BIT,
    SGX_FLAGS_PROVISION_KEY,
    TEE_TYPE_SGX,
    Quote,
    QuoteHeader,
    QuoteSignatureData,
    ReportBody,
    parse_quote,
)

METHOD_SKIP = "Skip"
METHOD_DCAP = "Dcap"

DEV_FMSPC = bytes.fromhex("00de00000000")
DEV_TCB_COMPONENTS: tuple[int, ...] = (17, 17, 2, 4, 1, 128, 7, 0, 0, 0, 0, 0, 0, 0, 0, 0)
DEV_PCESVN = 13
DEV_QE_SVN = 8
DEV_QE_MRSIGNER = hashlib.sha256(b"integritee sim-dcap quoting enclave signer").digest()
DEV_QE_MRENCLAVE = hashlib.sha256(b"integritee sim-dcap quoting enclave").digest()
DEV_PLATFORM_SEED = b"integritee sim-dcap platform"
# Fixed so that the dev collateral documents are byte-identical everywhere.
DEV_COLLATERAL_ISSUE_DATE = "2020-01-01T00:00:00Z"
DEV_COLLATERAL_NEXT_UPDATE = "2099-12-31T00:00:00Z"
_XFRM_LEGACY = 0x03  # x87 + SSE state, what every enclave enables


class AttestationProvider(Protocol):
    name: str
    method: str  # Teerex SgxAttestationMethod variant: "Skip" or "Dcap"

    def quote(self, report_data: bytes) -> bytes: ...


def pad_report_data(report_data: bytes) -> bytes:
    if not isinstance(report_data, bytes | bytearray | memoryview):
        raise ProviderError(f"report data must be bytes, got {type(report_data).__name__}")
    if len(report_data) > REPORT_DATA_SIZE:
        raise ProviderError(f"report data of {len(report_data)} bytes exceeds 64")
    return bytes(report_data).ljust(REPORT_DATA_SIZE, b"\x00")


class SkipProvider:
    """Teerex `Skip`: the proof is the enclave's mrenclave."""

    name = "skip"
    method = METHOD_SKIP

    def __init__(self, mrenclave: bytes) -> None:
        if len(mrenclave) != 32:
            raise ValueError(f"mrenclave must be 32 bytes, got {len(mrenclave)}")
        self.mrenclave = bytes(mrenclave)

    def quote(self, report_data: bytes) -> bytes:
        pad_report_data(report_data)
        return self.mrenclave


class SimDcapProvider:
    """A software quoting enclave on a simulated platform certified by a dev PKI."""

    name = "sim-dcap"
    method = METHOD_DCAP

    def __init__(
        self,
        mrenclave: bytes,
        mrsigner: bytes,
        *,
        debug: bool = False,
        isv_prod_id: int = 0,
        isv_svn: int = 0,
        pki: DevPki | None = None,
        platform_seed: bytes = DEV_PLATFORM_SEED,
        fmspc: bytes = DEV_FMSPC,
        tcb_components: Sequence[int] = DEV_TCB_COMPONENTS,
        pcesvn: int = DEV_PCESVN,
        qe_svn: int = DEV_QE_SVN,
        tcb_status: str = "UpToDate",
        tcb_info_version: int = 3,
    ) -> None:
        for label, value, size in (("mrenclave", mrenclave, 32), ("mrsigner", mrsigner, 32)):
            if len(value) != size:
                raise ValueError(f"{label} must be {size} bytes, got {len(value)}")
        if len(fmspc) != 6:
            raise ValueError("fmspc must be 6 bytes")
        if len(tcb_components) != 16 or not all(0 <= c <= 255 for c in tcb_components):
            raise ValueError("tcb_components must be 16 values in 0..255")
        if tcb_status not in TCB_STATUSES:
            raise ValueError(f"unknown TCB status {tcb_status!r}")
        if tcb_info_version not in (2, 3):
            raise ValueError("tcb_info_version must be 2 or 3")
        self.mrenclave = bytes(mrenclave)
        self.mrsigner = bytes(mrsigner)
        self.debug = debug
        self.isv_prod_id = isv_prod_id
        self.isv_svn = isv_svn
        self.pki = pki if pki is not None else DevPki()
        self.platform_seed = platform_seed
        self.fmspc = bytes(fmspc)
        self.tcb_components = tuple(tcb_components)
        self.pcesvn = pcesvn
        self.qe_svn = qe_svn
        self.tcb_status = tcb_status
        self.tcb_info_version = tcb_info_version
        self._pck_key = derive_key(self.pki.seed + b"/" + platform_seed + b"/pck")
        self._attestation_key = derive_key(platform_seed + b"/attestation-key")
        self._qe_auth_data = bytes(range(32))

    # -- platform ------------------------------------------------------------------------------

    @cached_property
    def pck_extension(self) -> PckExtension:
        return PckExtension(
            ppid=hashlib.sha256(self.platform_seed + b"/ppid").digest()[:16],
            tcb_components=self.tcb_components,
            pcesvn=self.pcesvn,
            cpusvn=bytes(self.tcb_components),
            pce_id=b"\x00\x00",
            fmspc=self.fmspc,
            sgx_type=0,
        )

    @cached_property
    def pck_certificate(self) -> x509.Certificate:
        return self.pki.issue_pck(self._pck_key, self.pck_extension, self.platform_seed)

    @cached_property
    def _certification_data(self) -> bytes:
        return self.pki.pck_chain_pem(self.pck_certificate)

    @cached_property
    def _qe_report(self) -> tuple[ReportBody, bytes]:
        binding = hashlib.sha256(
            raw_public_key(self._attestation_key) + self._qe_auth_data
        ).digest()
        flags = SGX_FLAGS_INIT | SGX_FLAGS_MODE64BIT | SGX_FLAGS_PROVISION_KEY
        report = ReportBody.build(
            cpusvn=bytes(self.tcb_components),
            attributes=flags.to_bytes(8, "little") + _XFRM_LEGACY.to_bytes(8, "little"),
            mrenclave=DEV_QE_MRENCLAVE,
            mrsigner=DEV_QE_MRSIGNER,
            isv_prod_id=1,
            isv_svn=self.qe_svn,
            report_data=binding + bytes(32),
        )
        return report, sign_raw(self._pck_key, report.raw)

    # -- quoting -------------------------------------------------------------------------------

    def quote(self, report_data: bytes) -> bytes:
        return self.build_quote(report_data).raw

    def build_quote(self, report_data: bytes) -> Quote:
        flags = SGX_FLAGS_INIT | SGX_FLAGS_MODE64BIT | (SGX_FLAGS_DEBUG if self.debug else 0)
        header = QuoteHeader(
            version=QUOTE_VERSION_3,
            attestation_key_type=ATT_KEY_TYPE_ECDSA_P256,
            tee_type=TEE_TYPE_SGX,
            qe_svn=self.qe_svn,
            pce_svn=self.pcesvn,
            qe_vendor_id=INTEL_QE_VENDOR_ID,
            user_data=hashlib.sha256(self.platform_seed + b"/qe-id").digest()[:16] + bytes(4),
        )
        body = ReportBody.build(
            cpusvn=bytes(self.tcb_components),
            attributes=flags.to_bytes(8, "little") + _XFRM_LEGACY.to_bytes(8, "little"),
            mrenclave=self.mrenclave,
            mrsigner=self.mrsigner,
            isv_prod_id=self.isv_prod_id,
            isv_svn=self.isv_svn,
            report_data=pad_report_data(report_data),
        )
        qe_report, qe_signature = self._qe_report
        signature = QuoteSignatureData(
            isv_report_signature=sign_raw(self._attestation_key, header.encode() + body.raw),
            attestation_key=raw_public_key(self._attestation_key),
            qe_report=qe_report,
            qe_report_signature=qe_signature,
            qe_auth_data=self._qe_auth_data,
            certification_data_type=CERT_DATA_PCK_CHAIN_PEM,
            certification_data=self._certification_data,
        )
        return Quote.assemble(header, body, signature)

    # -- trust anchor and collateral -----------------------------------------------------------

    def trusted_root(self) -> x509.Certificate:
        return self.pki.root_cert

    def dev_root_pem(self) -> bytes:
        return self.pki.root_pem()

    def qe_identity_body(self) -> dict[str, Any]:
        levels: list[dict[str, Any]] = [
            {
                "tcb": {"isvsvn": self.qe_svn},
                "tcbDate": DEV_COLLATERAL_ISSUE_DATE,
                "tcbStatus": "UpToDate",
            }
        ]
        if self.qe_svn > 0:
            levels.append(
                {
                    "tcb": {"isvsvn": 0},
                    "tcbDate": DEV_COLLATERAL_ISSUE_DATE,
                    "tcbStatus": "OutOfDate",
                }
            )
        return {
            "id": "QE",
            "version": 2,
            "issueDate": DEV_COLLATERAL_ISSUE_DATE,
            "nextUpdate": DEV_COLLATERAL_NEXT_UPDATE,
            "tcbEvaluationDataNumber": 1,
            "miscselect": "00000000",
            "miscselectMask": "FFFFFFFF",
            "attributes": "11000000000000000000000000000000",
            "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": DEV_QE_MRSIGNER.hex().upper(),
            "isvprodid": 1,
            "tcbLevels": levels,
        }

    def tcb_info_body(self) -> dict[str, Any]:
        def tcb(components: Sequence[int], pcesvn: int) -> dict[str, Any]:
            if self.tcb_info_version == 2:
                out: dict[str, Any] = {
                    f"sgxtcbcomp{i + 1:02d}svn": svn for i, svn in enumerate(components)
                }
            else:
                out = {"sgxtcbcomponents": [{"svn": svn} for svn in components]}
            out["pcesvn"] = pcesvn
            return out

        levels = [
            {
                "tcb": tcb(self.tcb_components, self.pcesvn),
                "tcbDate": DEV_COLLATERAL_ISSUE_DATE,
                "tcbStatus": self.tcb_status,
            },
            {
                "tcb": tcb([0] * 16, 0),
                "tcbDate": DEV_COLLATERAL_ISSUE_DATE,
                "tcbStatus": "OutOfDate",
            },
        ]
        body: dict[str, Any] = {} if self.tcb_info_version == 2 else {"id": "SGX"}
        body.update(
            {
                "version": self.tcb_info_version,
                "issueDate": DEV_COLLATERAL_ISSUE_DATE,
                "nextUpdate": DEV_COLLATERAL_NEXT_UPDATE,
                "fmspc": self.fmspc.hex().upper(),
                "pceId": "0000",
                "tcbType": 0,
                "tcbEvaluationDataNumber": 1,
                "tcbLevels": levels,
            }
        )
        return body

    def qe_identity_collateral(self) -> tuple[bytes, bytes, bytes]:
        """(enclave_identity, signature, certificate_chain) for `register_quoting_enclave`."""
        body, signature, chain, _ = self.pki.sign_collateral(
            self.qe_identity_body(), "enclaveIdentity"
        )
        return body, signature, chain

    def tcb_info_collateral(self) -> tuple[bytes, bytes, bytes]:
        """(tcb_info, signature, certificate_chain) for `register_tcb_info`."""
        body, signature, chain, _ = self.pki.sign_collateral(self.tcb_info_body(), "tcbInfo")
        return body, signature, chain

    def qe_identity_document(self) -> bytes:
        """The whole Intel-style JSON document (`{"enclaveIdentity":..,"signature":..}`)."""
        return self.pki.sign_collateral(self.qe_identity_body(), "enclaveIdentity")[3]

    def tcb_info_document(self) -> bytes:
        return self.pki.sign_collateral(self.tcb_info_body(), "tcbInfo")[3]

    def verified_collateral(self, now: int) -> tuple[QeIdentity, TcbInfo]:
        """The dev collateral, verified against this provider's root (for MU-RA peers)."""
        root = self.trusted_root()
        return (
            verify_qe_identity(*self.qe_identity_collateral(), root, now),
            verify_tcb_info(*self.tcb_info_collateral(), root, now),
        )


class GramineDcapProvider:
    """DCAP quotes from Gramine-SGX's /dev/attestation pseudo-filesystem."""

    name = "gramine-dcap"
    method = METHOD_DCAP

    def __init__(self, attestation_dir: Path = Path("/dev/attestation")) -> None:
        self.attestation_dir = Path(attestation_dir)

    def quote(self, report_data: bytes) -> bytes:
        data = pad_report_data(report_data)
        directory = self.attestation_dir
        type_file = directory / "attestation_type"
        try:
            if type_file.exists():
                kind = type_file.read_bytes().strip(b"\x00\n ").decode("ascii", "replace")
                if kind != "dcap":
                    raise ProviderError(f"Gramine attestation type is {kind!r}, not 'dcap'")
            with open(directory / "user_report_data", "wb") as handle:
                handle.write(data)
            with open(directory / "quote", "rb") as handle:
                raw = handle.read()
        except OSError as exc:
            raise ProviderError(f"cannot use {directory}: {exc}") from None
        quote = parse_quote(raw)
        if quote.report_body.report_data != data:
            raise ProviderError("Gramine returned a quote for different report data")
        return raw


def create_provider(
    kind: str,
    *,
    mrenclave: bytes,
    mrsigner: bytes = bytes(32),
    debug: bool = False,
    attestation_dir: Path = Path("/dev/attestation"),
) -> AttestationProvider:
    """Provider by its command-line name: "skip", "sim-dcap" or "gramine-dcap"."""
    if kind == "skip":
        return SkipProvider(mrenclave)
    if kind == "sim-dcap":
        return SimDcapProvider(mrenclave, mrsigner, debug=debug)
    if kind == "gramine-dcap":
        return GramineDcapProvider(attestation_dir)
    raise ValueError(f"unknown attestation provider {kind!r} (skip, sim-dcap, gramine-dcap)")
