"""Intel-signed DCAP collateral: QE identity (v2) and SGX TCB info (v2 and v3) JSON.

Intel publishes each as `{"enclaveIdentity"|"tcbInfo": {...}, "signature": "<hex r||s>"}`; the
signature is ECDSA-P256-SHA256 over the exact bytes of the inner object as they appear in the
document, by the "TCB Signing" certificate, which is issued directly by the SGX root CA. The
Teerex calls `register_quoting_enclave` / `register_tcb_info` carry exactly (body bytes, 64-byte
raw signature, PEM chain); `split_signed_document` turns a downloaded document into the first two.

Owns the typed views (`QeIdentity`, `TcbInfo`), strict JSON decoding, signature and validity
checks, and TCB level matching (`match_tcb_level`, `match_qe_tcb_level`,
`converge_tcb_status`). All times are unix seconds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from integritee.attestation.errors import (
    CertificateError,
    CollateralError,
    ExpiredError,
    SignatureError,
    TcbError,
)
from integritee.attestation.pck import (
    SGX_EXTENSION_OID,
    describe,
    load_pem_chain,
    verify_certificate_chain,
)

MAX_COLLATERAL_SIZE = 256 * 1024
SIGNATURE_SIZE = 64

TCB_STATUSES = frozenset(
    {
        "UpToDate",
        "SWHardeningNeeded",
        "ConfigurationNeeded",
        "ConfigurationAndSWHardeningNeeded",
        "OutOfDate",
        "OutOfDateConfigurationNeeded",
        "Revoked",
    }
)
QE_TCB_STATUSES = frozenset({"UpToDate", "OutOfDate", "Revoked"})


@dataclass(frozen=True)
class QeTcbLevel:
    isvsvn: int
    tcb_date: int
    tcb_status: str
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class QeIdentity:
    """Identity of Intel's quoting enclave (enclaveIdentity, version 2, id "QE")."""

    id: str
    version: int
    issue_date: int
    next_update: int
    tcb_evaluation_data_number: int
    miscselect: bytes  # 4, byte order as in the JSON hex = as in the report
    miscselect_mask: bytes  # 4
    attributes: bytes  # 16
    attributes_mask: bytes  # 16
    mrsigner: bytes  # 32
    isvprodid: int
    tcb_levels: tuple[QeTcbLevel, ...]


@dataclass(frozen=True)
class TcbLevel:
    sgx_components: tuple[int, ...]  # 16 SVNs
    pcesvn: int
    tcb_date: int
    tcb_status: str
    advisory_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class TcbInfo:
    """SGX TCB info of one platform family (FMSPC); levels in Intel's order (newest first)."""

    id: str
    version: int
    issue_date: int
    next_update: int
    fmspc: bytes  # 6
    pce_id: bytes  # 2
    tcb_type: int
    tcb_evaluation_data_number: int
    tcb_levels: tuple[TcbLevel, ...]


# -- documents -------------------------------------------------------------------------------


def split_signed_document(document: bytes, body_key: str) -> tuple[bytes, bytes]:
    """Split Intel's `{"<body_key>": {...}, "signature": "<hex>"}` into the exact body bytes
    (what was signed) and the 64 signature bytes."""
    if len(document) > MAX_COLLATERAL_SIZE:
        raise CollateralError(f"collateral document exceeds {MAX_COLLATERAL_SIZE} bytes")
    try:
        text = bytes(document).decode("utf-8")
    except UnicodeDecodeError:
        raise CollateralError("collateral document is not UTF-8") from None
    spans = _top_level_spans(text)
    if body_key not in spans or "signature" not in spans:
        raise CollateralError(f"collateral document lacks '{body_key}' or 'signature'")
    body_start, body_end = spans[body_key]
    body = text[body_start:body_end]
    if not body.startswith("{"):
        raise CollateralError(f"'{body_key}' is not a JSON object")
    sig_start, sig_end = spans["signature"]
    sig_hex = _loads(text[sig_start:sig_end])
    if not isinstance(sig_hex, str):
        raise CollateralError("'signature' is not a string")
    try:
        signature = bytes.fromhex(sig_hex)
    except ValueError:
        raise CollateralError("'signature' is not hex") from None
    if len(signature) != SIGNATURE_SIZE:
        raise CollateralError(f"signature must be {SIGNATURE_SIZE} bytes, got {len(signature)}")
    return body.encode("utf-8"), signature


def split_qe_identity_document(document: bytes) -> tuple[bytes, bytes]:
    return split_signed_document(document, "enclaveIdentity")


def split_tcb_info_document(document: bytes) -> tuple[bytes, bytes]:
    return split_signed_document(document, "tcbInfo")


def _top_level_spans(text: str) -> dict[str, tuple[int, int]]:
    """Character spans of each top-level member value of a JSON object, by key."""
    decoder = json.JSONDecoder(parse_constant=_reject_constant)
    ws = " \t\n\r"
    pos = 0

    def skip(p: int) -> int:
        while p < len(text) and text[p] in ws:
            p += 1
        return p

    def expect(p: int, ch: str) -> int:
        if p >= len(text) or text[p] != ch:
            raise CollateralError(f"malformed collateral document: expected '{ch}' at {p}")
        return p + 1

    spans: dict[str, tuple[int, int]] = {}
    pos = expect(skip(pos), "{")
    pos = skip(pos)
    if pos < len(text) and text[pos] == "}":
        pos += 1
    else:
        while True:
            try:
                key, pos = decoder.raw_decode(text, skip(pos))
                if not isinstance(key, str):
                    raise CollateralError("malformed collateral document: non-string key")
                pos = expect(skip(pos), ":")
                start = skip(pos)
                _, pos = decoder.raw_decode(text, start)
            except (ValueError, RecursionError):
                raise CollateralError("malformed collateral document") from None
            if key in spans:
                raise CollateralError(f"duplicate key '{key}' in collateral document")
            spans[key] = (start, pos)
            pos = skip(pos)
            if pos < len(text) and text[pos] == ",":
                pos += 1
                continue
            pos = expect(pos, "}")
            break
    if skip(pos) != len(text):
        raise CollateralError("trailing data after the collateral document")
    return spans


# -- strict JSON -----------------------------------------------------------------------------


def _reject_constant(name: str) -> Any:
    raise CollateralError(f"non-standard JSON constant {name}")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise CollateralError(f"duplicate JSON key '{key}'")
        out[key] = value
    return out


def _loads(text: str) -> Any:
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise CollateralError(f"malformed JSON: {exc}") from None


def _load_body(body: bytes) -> dict[str, Any]:
    if not isinstance(body, bytes | bytearray | memoryview):
        raise CollateralError(f"collateral body must be bytes, got {type(body).__name__}")
    if len(body) > MAX_COLLATERAL_SIZE:
        raise CollateralError(f"collateral body exceeds {MAX_COLLATERAL_SIZE} bytes")
    try:
        text = bytes(body).decode("utf-8")
    except UnicodeDecodeError:
        raise CollateralError("collateral body is not UTF-8") from None
    obj = _loads(text)
    if not isinstance(obj, dict):
        raise CollateralError("collateral body is not a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, where: str) -> Any:
    if key not in obj:
        raise CollateralError(f"{where} lacks '{key}'")
    return obj[key]


def _int(obj: dict[str, Any], key: str, where: str, maximum: int = 0xFFFF) -> int:
    value = _field(obj, key, where)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= maximum:
        raise CollateralError(f"{where}.{key} must be an integer in 0..{maximum}")
    return value


def _str(obj: dict[str, Any], key: str, where: str) -> str:
    value = _field(obj, key, where)
    if not isinstance(value, str):
        raise CollateralError(f"{where}.{key} must be a string")
    return value


def _hex(obj: dict[str, Any], key: str, where: str, size: int) -> bytes:
    value = _str(obj, key, where)
    try:
        raw = bytes.fromhex(value)
    except ValueError:
        raise CollateralError(f"{where}.{key} is not hex") from None
    if len(raw) != size or len(value) != 2 * size:
        raise CollateralError(f"{where}.{key} must be {size} bytes of hex")
    return raw


def _date(obj: dict[str, Any], key: str, where: str) -> int:
    value = _str(obj, key, where)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise CollateralError(f"{where}.{key} is not an ISO 8601 date: {value!r}") from None
    if parsed.tzinfo is None:
        raise CollateralError(f"{where}.{key} has no time zone: {value!r}")
    return int(parsed.timestamp())


def _status(obj: dict[str, Any], where: str, allowed: frozenset[str]) -> str:
    value = _str(obj, "tcbStatus", where)
    if value not in allowed:
        raise CollateralError(f"{where}.tcbStatus has unknown value {value!r}")
    return value


def _advisories(obj: dict[str, Any], where: str) -> tuple[str, ...]:
    value = obj.get("advisoryIDs", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise CollateralError(f"{where}.advisoryIDs must be a list of strings")
    return tuple(value)


def _levels(obj: dict[str, Any], where: str) -> list[dict[str, Any]]:
    levels = _field(obj, "tcbLevels", where)
    if not isinstance(levels, list) or not levels:
        raise CollateralError(f"{where}.tcbLevels must be a non-empty list")
    if not all(isinstance(level, dict) for level in levels):
        raise CollateralError(f"{where}.tcbLevels entries must be objects")
    return levels


# -- parsing (no signature check) ------------------------------------------------------------


def parse_qe_identity(body: bytes) -> QeIdentity:
    """Decode an enclaveIdentity body (version 2, id "QE") without checking its signature."""
    obj = _load_body(body)
    where = "enclaveIdentity"
    version = _int(obj, "version", where)
    if version != 2:
        raise CollateralError(f"unsupported QE identity version {version} (expected 2)")
    identity = _str(obj, "id", where)
    if identity != "QE":
        raise CollateralError(f"enclave identity is for {identity!r}, expected 'QE'")
    levels = []
    for i, level in enumerate(_levels(obj, where)):
        lw = f"{where}.tcbLevels[{i}]"
        tcb = _field(level, "tcb", lw)
        if not isinstance(tcb, dict):
            raise CollateralError(f"{lw}.tcb must be an object")
        levels.append(
            QeTcbLevel(
                isvsvn=_int(tcb, "isvsvn", f"{lw}.tcb"),
                tcb_date=_date(level, "tcbDate", lw),
                tcb_status=_status(level, lw, QE_TCB_STATUSES),
                advisory_ids=_advisories(level, lw),
            )
        )
    return QeIdentity(
        id=identity,
        version=version,
        issue_date=_date(obj, "issueDate", where),
        next_update=_date(obj, "nextUpdate", where),
        tcb_evaluation_data_number=_int(obj, "tcbEvaluationDataNumber", where, 0xFFFFFFFF),
        miscselect=_hex(obj, "miscselect", where, 4),
        miscselect_mask=_hex(obj, "miscselectMask", where, 4),
        attributes=_hex(obj, "attributes", where, 16),
        attributes_mask=_hex(obj, "attributesMask", where, 16),
        mrsigner=_hex(obj, "mrsigner", where, 32),
        isvprodid=_int(obj, "isvprodid", where),
        tcb_levels=tuple(levels),
    )


def parse_tcb_info(body: bytes) -> TcbInfo:
    """Decode an SGX tcbInfo body (version 2 or 3) without checking its signature."""
    obj = _load_body(body)
    where = "tcbInfo"
    version = _int(obj, "version", where)
    if version == 2:
        identity = "SGX"
    elif version == 3:
        identity = _str(obj, "id", where)
        if identity != "SGX":
            raise CollateralError(f"TCB info is for {identity!r}, expected 'SGX'")
    else:
        raise CollateralError(f"unsupported TCB info version {version} (expected 2 or 3)")
    levels = []
    for i, level in enumerate(_levels(obj, where)):
        lw = f"{where}.tcbLevels[{i}]"
        tcb = _field(level, "tcb", lw)
        if not isinstance(tcb, dict):
            raise CollateralError(f"{lw}.tcb must be an object")
        if version == 2:
            components = [
                _int(tcb, f"sgxtcbcomp{n:02d}svn", f"{lw}.tcb", 0xFF) for n in range(1, 17)
            ]
        else:
            raw = _field(tcb, "sgxtcbcomponents", f"{lw}.tcb")
            if not isinstance(raw, list) or len(raw) != 16:
                raise CollateralError(f"{lw}.tcb.sgxtcbcomponents must list 16 components")
            components = []
            for n, comp in enumerate(raw):
                if not isinstance(comp, dict):
                    raise CollateralError(f"{lw}.tcb.sgxtcbcomponents[{n}] must be an object")
                components.append(_int(comp, "svn", f"{lw}.tcb.sgxtcbcomponents[{n}]", 0xFF))
        levels.append(
            TcbLevel(
                sgx_components=tuple(components),
                pcesvn=_int(tcb, "pcesvn", f"{lw}.tcb"),
                tcb_date=_date(level, "tcbDate", lw),
                tcb_status=_status(level, lw, TCB_STATUSES),
                advisory_ids=_advisories(level, lw),
            )
        )
    return TcbInfo(
        id=identity,
        version=version,
        issue_date=_date(obj, "issueDate", where),
        next_update=_date(obj, "nextUpdate", where),
        fmspc=_hex(obj, "fmspc", where, 6),
        pce_id=_hex(obj, "pceId", where, 2),
        tcb_type=_int(obj, "tcbType", where),
        tcb_evaluation_data_number=_int(obj, "tcbEvaluationDataNumber", where, 0xFFFFFFFF),
        tcb_levels=tuple(levels),
    )


# -- verification ----------------------------------------------------------------------------


def verify_collateral_signature(
    body: bytes,
    signature: bytes,
    chain_pem: bytes,
    trusted_root: x509.Certificate,
    now: int,
) -> x509.Certificate:
    """Check the signing chain (TCB Signing cert issued directly by `trusted_root`, valid at
    `now`) and the ECDSA signature over `body`; return the signing certificate."""
    if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
        size = len(signature) if isinstance(signature, bytes) else type(signature).__name__
        raise SignatureError(f"collateral signature must be {SIGNATURE_SIZE} raw bytes, got {size}")
    chain = load_pem_chain(chain_pem)
    path = verify_certificate_chain(chain, trusted_root, now, max_intermediates=0)
    signer = path[0]
    # A PCK key chains to the same root; it must never be able to sign collateral.
    if any(e.oid.dotted_string == SGX_EXTENSION_OID for e in signer.extensions):
        raise CertificateError(
            f"'{describe(signer)}' is a PCK certificate, not a TCB signing certificate"
        )
    key = signer.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)  # verify_certificate_chain checked this
    der_sig = encode_dss_signature(
        int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
    )
    try:
        key.verify(der_sig, bytes(body), ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise SignatureError(
            f"collateral signature by '{describe(signer)}' does not verify"
        ) from None
    return signer


def verify_qe_identity(
    body: bytes,
    signature: bytes,
    chain_pem: bytes,
    trusted_root: x509.Certificate,
    now: int,
) -> QeIdentity:
    """Verify and decode the QE identity as passed to `register_quoting_enclave`."""
    verify_collateral_signature(body, signature, chain_pem, trusted_root, now)
    identity = parse_qe_identity(body)
    check_current(identity.issue_date, identity.next_update, now, "QE identity")
    return identity


def verify_tcb_info(
    body: bytes,
    signature: bytes,
    chain_pem: bytes,
    trusted_root: x509.Certificate,
    now: int,
) -> TcbInfo:
    """Verify and decode a TCB info as passed to `register_tcb_info`."""
    verify_collateral_signature(body, signature, chain_pem, trusted_root, now)
    info = parse_tcb_info(body)
    check_current(info.issue_date, info.next_update, now, f"TCB info of FMSPC {info.fmspc.hex()}")
    return info


def check_current(issue_date: int, next_update: int, now: int, what: str) -> None:
    if not issue_date <= now <= next_update:
        raise ExpiredError(
            f"{what} is not current at {now} (issued {issue_date}, next update {next_update})"
        )


# -- TCB evaluation ----------------------------------------------------------------------------


def match_tcb_level(tcb_info: TcbInfo, components: tuple[int, ...], pcesvn: int) -> TcbLevel:
    """The first TCB level (in Intel's order) whose 16 component SVNs and PCESVN are all <=
    the platform's."""
    if len(components) != 16:
        raise TcbError(f"platform TCB must have 16 components, got {len(components)}")
    for level in tcb_info.tcb_levels:
        if pcesvn >= level.pcesvn and all(
            have >= need for have, need in zip(components, level.sgx_components, strict=True)
        ):
            return level
    raise TcbError(
        f"platform TCB (components {bytes(components).hex()}, pcesvn {pcesvn}) is below every "
        f"TCB level of FMSPC {tcb_info.fmspc.hex()}"
    )


def match_qe_tcb_level(qe_identity: QeIdentity, isvsvn: int) -> QeTcbLevel:
    """The highest QE TCB level whose isvsvn is <= the QE's."""
    for level in sorted(qe_identity.tcb_levels, key=lambda lv: lv.isvsvn, reverse=True):
        if isvsvn >= level.isvsvn:
            return level
    raise TcbError(f"quoting enclave isvsvn {isvsvn} is below every QE TCB level")


def converge_tcb_status(platform_status: str, qe_status: str) -> str:
    """Combine platform and QE TCB status the way Intel's quote verification library does:
    a revoked QE revokes; an out-of-date QE makes an otherwise current platform out of date."""
    if qe_status == "Revoked":
        return "Revoked"
    if qe_status == "OutOfDate":
        if platform_status in ("UpToDate", "SWHardeningNeeded"):
            return "OutOfDate"
        if platform_status in ("ConfigurationNeeded", "ConfigurationAndSWHardeningNeeded"):
            return "OutOfDateConfigurationNeeded"
    return platform_status
