"""Types shared by the TEE pallets (Teerex, EnclaveBridge, Sidechain) and their clients.

Declared once as SCALE codecs with the metadata paths of the original primitives crates
(`teerex_primitives`, `common_primitives`, `enclave_bridge_primitives`, `sidechain_primitives`),
so the node's metadata, its storage and the validateer's decoding all use the same descriptors.
Values follow the codec conventions: structs are dicts, enums are `EnumValue`s, `[u8; N]` and
`Vec<u8>` are bytes. The helper functions hold the small rules the original attaches to these
types (an enclave's fingerprint, its instance signer, whether it was attested by proxy).
"""

from __future__ import annotations

from typing import Any

from integritee.codec.scale import (
    H256,
    AccountId32,
    Bytes,
    BytesCodec,
    Codec,
    Enum,
    EnumValue,
    FixedBytes,
    Newtype,
    Option,
    Struct,
    Vec,
    boolean,
    u8,
    u16,
    u32,
    u64,
    variant,
)

AccountId = AccountId32
BlockNumber = u32
ShardIdentifier = H256
EnclaveFingerprint = H256
MrEnclave = FixedBytes(32)
MrSigner = FixedBytes(32)
Fmspc = FixedBytes(6)
Cpusvn = FixedBytes(16)
Pcesvn = u16
SidechainBlockNumber = u64

SGX_REPORT_DATA_SIZE = 64
OPAQUE_SIGNER_MAX_LEN = 66
MAX_SHARD_STATUS_SIGNER_COUNT = 10

BOUNDED_VEC_PATH = "bounded_collections::bounded_vec::BoundedVec"


def bounded_vec(inner: Codec, bound: int) -> Codec:
    """`BoundedVec<T, ConstU32<bound>>`: a Vec that refuses more than `bound` items both ways."""
    seq = BytesCodec(bound) if inner is u8 else Vec(inner, bound)
    codec = Newtype(BOUNDED_VEC_PATH, seq, f"Vec<{inner.display_name}>")
    codec.params = (("T", inner), ("S", None))
    return codec


# ---------------------------------------------------------------------------------------------
# teerex_primitives

SgxBuildMode = Enum(
    "teerex_primitives::SgxBuildMode", [variant("Debug", 0), variant("Production", 1)]
)

SgxAttestationMethod = Enum(
    "teerex_primitives::SgxAttestationMethod",
    [
        variant("Skip", 0, ("proxied", boolean, "bool")),
        variant("Ias", 1),
        variant("Dcap", 2, ("proxied", boolean, "bool")),
    ],
)

SGX_STATUSES = ("Invalid", "Ok", "GroupOutOfDate", "GroupRevoked", "ConfigurationNeeded")
SgxStatus = Enum(
    "teerex_primitives::SgxStatus", [variant(n, i) for i, n in enumerate(SGX_STATUSES)]
)

TCB_STATUSES = (
    "Unknown",
    "UpToDate",
    "SWHardeningNeeded",
    "ConfigurationAndSWHardeningNeeded",
    "OutOfDate",
    "OutOfDateConfigurationNeeded",
    "Revoked",
)
TcbStatus = Enum(
    "teerex_primitives::TcbStatus", [variant(n, i) for i, n in enumerate(TCB_STATUSES)]
)

SgxReportData = Struct(
    "teerex_primitives::SgxReportData", [("d", FixedBytes(SGX_REPORT_DATA_SIZE), "[u8; 64]")]
)

_URL = Bytes  # the enclaves' Url type parameter is Vec<u8> on chain

SgxEnclave = Struct(
    "teerex_primitives::SgxEnclave",
    [
        ("report_data", SgxReportData, "SgxReportData"),
        ("mr_enclave", MrEnclave, "MrEnclave"),
        ("mr_signer", MrSigner, "MrSigner"),
        ("timestamp", u64, "u64"),
        ("url", Option(_URL), "Option<Url>"),
        ("build_mode", SgxBuildMode, "SgxBuildMode"),
        ("attestation_method", SgxAttestationMethod, "SgxAttestationMethod"),
        ("status", SgxStatus, "SgxStatus"),
    ],
    params=[("Url", _URL)],
)

MultiEnclave = Enum(
    "teerex_primitives::MultiEnclave",
    [variant("Sgx", 0, (None, SgxEnclave, "SgxEnclave<Url>"))],
    params=[("Url", _URL)],
)

QeTcb = Struct("teerex_primitives::QeTcb", [("isvsvn", u16, "u16")])

SgxQuotingEnclave = Struct(
    "teerex_primitives::SgxQuotingEnclave",
    [
        ("issue_date", u64, "u64"),
        ("next_update", u64, "u64"),
        ("miscselect", FixedBytes(4), "[u8; 4]"),
        ("miscselect_mask", FixedBytes(4), "[u8; 4]"),
        ("attributes", FixedBytes(16), "[u8; 16]"),
        ("attributes_mask", FixedBytes(16), "[u8; 16]"),
        ("mrsigner", MrSigner, "MrSigner"),
        ("isvprodid", u16, "u16"),
        ("tcb", Vec(QeTcb), "Vec<QeTcb>"),
    ],
)

DEFAULT_QUOTING_ENCLAVE: dict[str, Any] = {
    "issue_date": 0,
    "next_update": 0,
    "miscselect": bytes(4),
    "miscselect_mask": bytes(4),
    "attributes": bytes(16),
    "attributes_mask": bytes(16),
    "mrsigner": bytes(32),
    "isvprodid": 0,
    "tcb": [],
}

TcbVersionStatus = Struct(
    "teerex_primitives::TcbVersionStatus",
    [
        ("cpusvn", Cpusvn, "Cpusvn"),
        ("pcesvn", Pcesvn, "Pcesvn"),
        ("tcb_status", TcbStatus, "TcbStatus"),
    ],
)

SgxTcbInfoOnChain = Struct(
    "teerex_primitives::SgxTcbInfoOnChain",
    [
        ("issue_date", u64, "u64"),
        ("next_update", u64, "u64"),
        ("tcb_levels", Vec(TcbVersionStatus), "Vec<TcbVersionStatus>"),
    ],
)


# ---------------------------------------------------------------------------------------------
# common_primitives and the signer types

OpaqueSigner = bounded_vec(u8, OPAQUE_SIGNER_MAX_LEN)

Ed25519Public = Newtype("sp_core::ed25519::Public", FixedBytes(32), "[u8; 32]")
Sr25519Public = Newtype("sp_core::sr25519::Public", FixedBytes(32), "[u8; 32]")
EcdsaPublic = Newtype("sp_core::ecdsa::Public", FixedBytes(33), "[u8; 33]")
MultiSigner = Enum(
    "sp_runtime::MultiSigner",
    [
        variant("Ed25519", 0, (None, Ed25519Public, "ed25519::Public")),
        variant("Sr25519", 1, (None, Sr25519Public, "sr25519::Public")),
        variant("Ecdsa", 2, (None, EcdsaPublic, "ecdsa::Public")),
    ],
)

AnySigner = Enum(
    "common_primitives::AnySigner",
    [
        variant("Opaque", 0, (None, OpaqueSigner, "OpaqueSigner")),
        variant("Known", 1, (None, MultiSigner, "MultiSigner")),
    ],
)

EnclaveInstanceAddress = Struct(
    "teerex_primitives::EnclaveInstanceAddress",
    [
        ("fingerprint", EnclaveFingerprint, "EnclaveFingerprint"),
        ("registrar", AccountId, "AccountId"),
        ("signer", AnySigner, "AnySigner"),
    ],
    params=[("AccountId", AccountId)],
)


# ---------------------------------------------------------------------------------------------
# Rules attached to MultiEnclave (teerex_primitives' impl blocks)


def new_sgx_enclave(
    *,
    report_data: bytes,
    mr_enclave: bytes,
    mr_signer: bytes,
    timestamp: int,
    build_mode: str,
    status: str,
    attestation_method: EnumValue,
    url: bytes | None = None,
) -> EnumValue:
    """A `MultiEnclave::Sgx` value."""
    return EnumValue(
        "Sgx",
        {
            "report_data": {"d": report_data},
            "mr_enclave": mr_enclave,
            "mr_signer": mr_signer,
            "timestamp": timestamp,
            "url": url,
            "build_mode": EnumValue(build_mode),
            "attestation_method": attestation_method,
            "status": EnumValue(status),
        },
    )


def _sgx(enclave: EnumValue) -> dict[str, Any]:
    if enclave.name != "Sgx":
        raise ValueError(f"unsupported enclave kind {enclave.name}")
    return enclave.value  # type: ignore[no-any-return]


def fingerprint(enclave: EnumValue) -> bytes:
    """An enclave's fingerprint: its MRENCLAVE (the default shard of its code)."""
    return bytes(_sgx(enclave)["mr_enclave"])


def attestation_timestamp(enclave: EnumValue) -> int:
    return int(_sgx(enclave)["timestamp"])


def instance_url(enclave: EnumValue) -> bytes | None:
    url = _sgx(enclave)["url"]
    return None if url is None else bytes(url)


def attestation_proxied(enclave: EnumValue) -> bool:
    method = _sgx(enclave)["attestation_method"]
    return method.name in ("Skip", "Dcap") and bool(method.value["proxied"])


def maybe_pubkey(enclave: EnumValue) -> bytes | None:
    """report_data[..32] as the instance's key, for the sovereign (non-proxied) methods."""
    sgx = _sgx(enclave)
    if attestation_proxied(enclave):
        return None
    return bytes(sgx["report_data"]["d"][:32])


def instance_signer(enclave: EnumValue) -> EnumValue:
    """The AnySigner identifying an instance: its ed25519 key, or the zero-padded report data."""
    key = maybe_pubkey(enclave)
    if key is not None:
        return EnumValue("Known", EnumValue("Ed25519", key))
    data = bytes(_sgx(enclave)["report_data"]["d"])
    return EnumValue("Opaque", data + bytes(OPAQUE_SIGNER_MAX_LEN - len(data)))


# ---------------------------------------------------------------------------------------------
# enclave_bridge_primitives

Request = Struct(
    "enclave_bridge_primitives::Request",
    [("shard", ShardIdentifier, "ShardIdentifier"), ("cyphertext", Bytes, "Vec<u8>")],
)

ShardSignerStatus = Struct(
    "enclave_bridge_primitives::ShardSignerStatus",
    [
        ("signer", AccountId, "AccountId"),
        ("fingerprint", EnclaveFingerprint, "EnclaveFingerprint"),
        ("last_activity", BlockNumber, "BlockNumber"),
    ],
    params=[("AccountId", AccountId), ("BlockNumber", BlockNumber)],
)

ShardSignerStatusVec = bounded_vec(ShardSignerStatus, MAX_SHARD_STATUS_SIGNER_COUNT)

ShardConfig = Struct(
    "enclave_bridge_primitives::ShardConfig",
    [
        ("enclave_fingerprint", EnclaveFingerprint, "EnclaveFingerprint"),
        ("max_instances", Option(u32), "Option<u32>"),
        ("authorities", Option(Vec(AccountId)), "Option<Vec<AccountId>>"),
        ("maintenance_mode", boolean, "bool"),
    ],
    params=[("AccountId", AccountId)],
)

UpgradableShardConfig = Struct(
    "enclave_bridge_primitives::UpgradableShardConfig",
    [
        ("active_config", ShardConfig, "ShardConfig<AccountId>"),
        ("pending_upgrade", Option(ShardConfig), "Option<ShardConfig<AccountId>>"),
        ("upgrade_at", Option(BlockNumber), "Option<BlockNumber>"),
    ],
    params=[("AccountId", AccountId), ("BlockNumber", BlockNumber)],
)


def new_shard_config(enclave_fingerprint: bytes) -> dict[str, Any]:
    """`ShardConfig::new`: the given fingerprint, no limits, not in maintenance."""
    return {
        "enclave_fingerprint": enclave_fingerprint,
        "max_instances": None,
        "authorities": None,
        "maintenance_mode": False,
    }


# ---------------------------------------------------------------------------------------------
# sidechain_primitives

SidechainBlockConfirmation = Struct(
    "sidechain_primitives::SidechainBlockConfirmation",
    [
        ("block_number", SidechainBlockNumber, "SidechainBlockNumber"),
        ("block_header_hash", H256, "H256"),
    ],
)
