"""Ecall and ocall messages, declared once and converted to and from JSON by their field types."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_type_hints

from integritee.codec.hexutil import from_hex, to_hex

T = TypeVar("T")

# --- method names


class Ecall:
    IDENTITY = "enclave_identity"
    INIT = "enclave_init"
    REGISTRATION_EXTRINSICS = "enclave_registrationExtrinsics"
    LIGHT_CLIENT_STATUS = "enclave_lightClientStatus"
    INIT_LIGHT_CLIENT = "enclave_initLightClient"
    SYNC_PARENTCHAIN = "enclave_syncParentchain"
    INIT_SHARD = "enclave_initShard"
    STATUS = "enclave_status"
    SHUTDOWN = "enclave_shutdown"
    START_SIDECHAIN = "enclave_startSidechain"
    PROVISION = "enclave_provision"
    IMPORT_SIDECHAIN_BLOCKS = "enclave_importSidechainBlocks"


class Ocall:
    SEND_EXTRINSICS = "ocall_sendExtrinsics"
    STORE_SIDECHAIN_BLOCKS = "ocall_storeSidechainBlocks"
    FETCH_SIDECHAIN_BLOCKS = "ocall_fetchSidechainBlocks"
    ACCOUNT_NONCE = "ocall_accountNonce"


# --- messages


@dataclass
class InitRequest:
    data_dir: str
    dev: bool
    attestation: str  # "skip" | "sim-dcap" | "gramine-dcap"
    trusted_host: str
    trusted_port: int
    trusted_url: str
    untrusted_url: str
    mu_ra_url: str
    shard: bytes | None = None
    shard_vault: bool = True  # a new shard gets a vault (else shielding goes through EnclaveBridge)
    mu_ra_port: int = 0  # the enclave's MU-RA server (0: any free port)


@dataclass
class EnclaveInfo:
    mrenclave: bytes
    shard: bytes
    signing_public_key: bytes
    shielding_public_key_json: str
    trusted_port: int


@dataclass
class ChainInfo:
    genesis_hash: bytes
    spec_version: int
    transaction_version: int


@dataclass
class RegistrationRequest:
    chain: ChainInfo
    nonce: int
    worker_url: str
    with_collateral: bool


@dataclass
class Extrinsics:
    extrinsics: list[bytes] = field(default_factory=list)


@dataclass
class SidechainBlocks:
    blocks: list[bytes] = field(default_factory=list)  # SCALE SignedBlocks, oldest first
    produced: bool = False  # authored by this enclave: the service broadcasts them to the peers
    revert_to: int | None = None  # a fork switch: drop stored blocks above this number first


@dataclass
class FetchBlocksRequest:
    """Blocks of `shard` after `from_hash` (all for the zero hash) from a peer, oldest first."""

    from_hash: bytes
    shard: bytes
    until_hash: bytes | None = None


@dataclass
class AccountNonceRequest:
    account: bytes


@dataclass
class ProvisionRequest:
    mu_ra_url: str  # the provider's MU-RA address (host:port), from its author_getMuRaUrl
    chain: ChainInfo
    enclave_nonce: int = 0


@dataclass
class SidechainHead:
    number: int = 0
    hash: bytes | None = None


@dataclass
class SidechainStart:
    slot_duration_ms: int
    produce: bool = True  # False: import only (catching up before the first own slot)
    # the service's last stored block: the enclave hands over what it committed beyond it
    stored_number: int = 0
    stored_hash: bytes | None = None


@dataclass
class LightClientInit:
    genesis_header: bytes
    proof: list[bytes]


@dataclass
class LightClientStatus:
    initialized: bool
    genesis_hash: bytes | None = None
    last_number: int = 0
    last_hash: bytes | None = None


@dataclass
class SyncRequest:
    chain: ChainInfo
    blocks: list[dict[str, Any]]  # ParentchainBlockInput JSON, as the light client defines it
    enclave_nonce: int = 0  # the enclave account's next nonce as the node reports it


@dataclass
class SyncResult:
    last_number: int
    last_hash: bytes
    extrinsics: list[bytes] = field(default_factory=list)


@dataclass
class ShardInit:
    """The shard's status on the parentchain as read by the service; the enclave checks it with a proof."""

    block_hash: bytes
    proof: list[bytes]
    chain: ChainInfo
    enclave_nonce: int = 0


@dataclass
class ShardRole:
    role: str  # "primary" | "joiner"
    shard: bytes
    creation_block: int
    vault: bytes | None = None
    extrinsics: list[bytes] = field(default_factory=list)
    provisioned: bool = True  # False: a joiner without the shard yet (MU-RA provisioning next)


@dataclass
class EnclaveStatus:
    registered: bool
    role: str | None
    light_client_number: int
    shard: bytes
    sidechain_number: int = 0
    sidechain_hash: bytes | None = None


# --- JSON conversion by field types


def to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes | bytearray):
        return to_hex(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def from_json(cls: type[T], data: Any) -> T:
    """Build `cls` from JSON, checking every field's type; raises ValueError with the field name."""
    return typing.cast(T, _convert(cls, data, cls.__name__))


def _convert(tp: Any, data: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return data
    if origin in (types.UnionType, typing.Union):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(inner[0], data, where)
    if origin is list:
        if not isinstance(data, list):
            raise ValueError(f"{where}: expected a list")
        (item,) = typing.get_args(tp)
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(data)]
    if origin is dict:
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object")
        return data
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object")
        hints = get_type_hints(tp)
        kwargs = {}
        for f in dataclasses.fields(tp):
            if f.name in data:
                kwargs[f.name] = _convert(hints[f.name], data[f.name], f"{where}.{f.name}")
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ValueError(f"{where}: missing {f.name}")
        return typing.cast(Any, tp)(**kwargs)
    if tp is bytes:
        return from_hex(data)
    if tp is bool:
        if not isinstance(data, bool):
            raise ValueError(f"{where}: expected a boolean")
        return data
    if tp is int:
        if not isinstance(data, int) or isinstance(data, bool):
            raise ValueError(f"{where}: expected an integer")
        return data
    if tp is str:
        if not isinstance(data, str):
            raise ValueError(f"{where}: expected a string")
        return data
    raise TypeError(f"{where}: unsupported type {tp!r}")
