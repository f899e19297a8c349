"""Getters: reading the shard state for clients (`state_executeGetter`).

`execute_getter` answers a `Getter` with the SCALE encoding of its result, as the original's
`ExecuteGetter` does:

| getter | result |
|---|---|
| public some_value | u32 42 |
| public total_issuance | u128 Balances.TotalIssuance |
| public undistributed_fees(None) | u128 enclave account's free balance minus up to 0.1 UNIT of random noise |
| public parentchains_info | ParentchainsInfo |
| public note_buckets_info | BucketRange (always empty: this enclave keeps no notes) |
| public shard_info | ShardInfo (status always None, as the original) |
| trusted account_info(who) | frame_system::AccountInfo (defaults for an unknown account) |
| trusted account_info_and_session_proxies(who) | AccountInfo ++ Vec<SessionProxyCredentials> |
| trusted account_essentials(who) | the same ++ Vec<AssetBalance> (always empty: no assets) |

A trusted getter must carry a valid signature of its account, or of a delegate holding a session
proxy of that account whose role may read (Any, NonTransfer, ReadAny; ReadBalance only for
account_info); anything else raises `GetterError` with the reason.
"""

from __future__ import annotations

import secrets

from integritee.codec.scale import (
    H256,
    EnumValue,
    Option,
    ScaleDecodeError,
    Struct,
    Vec,
    u32,
    u64,
    u128,
)
from integritee.enclave.stf.executor import STF_TX_FEE_UNIT_DIVIDER, UNIT
from integritee.enclave.stf.runtime import Runtime, ShardMode, StateStorage
from integritee.parentchain.primitives import AccountInfoCodec
from integritee.parentchain.tee_types import ShardSignerStatusVec, UpgradableShardConfig
from integritee.trusted.calls import (
    PARENTCHAIN_IDS,
    Getter,
    ParentchainId,
    SessionProxyCredentialsCodec,
    TrustedGetterSigned,
)

ParentchainInfo = Struct(
    "ita_stf::getter::ParentchainInfo",
    [
        ("id", ParentchainId, "ParentchainId"),
        ("genesis_hash", Option(H256), "Option<Hash>"),
        ("block_number", Option(u32), "Option<BlockNumber>"),
        ("now", Option(u64), "Option<Moment>"),
        ("creation_block_number", Option(u32), "Option<BlockNumber>"),
        ("creation_timestamp", Option(u64), "Option<Moment>"),
    ],
)
ParentchainsInfo = Struct(
    "ita_stf::getter::ParentchainsInfo",
    [
        ("integritee", ParentchainInfo, "ParentchainInfo"),
        ("target_a", ParentchainInfo, "ParentchainInfo"),
        ("target_b", ParentchainInfo, "ParentchainInfo"),
        ("shielding_target", ParentchainId, "ParentchainId"),
    ],
)
BucketInfo = Struct(
    "pallet_notes::BucketInfo",
    [("index", u32), ("bytes", u32), ("begins_at", u64), ("ends_at", u64)],
)
BucketRange = Struct(
    "pallet_notes::BucketRange",
    [("maybe_first", Option(BucketInfo)), ("maybe_last", Option(BucketInfo))],
)
ShardInfo = Struct(
    "ita_stf::getter::ShardInfo",
    [
        ("config", Option(UpgradableShardConfig), "Option<UpgradableShardConfig>"),
        ("config_updated_at", Option(u32), "Option<BlockNumber>"),
        ("status", Option(ShardSignerStatusVec), "Option<ShardStatus>"),
        ("mode", ShardMode, "ShardMode"),
    ],
)
SessionProxies = Vec(SessionProxyCredentialsCodec)
EMPTY_ASSET_BALANCES = b"\x00"  # SCALE of an empty Vec<AssetBalance>

_READ_ROLES = ("Any", "NonTransfer", "ReadAny")
_FEE_NOISE_STEPS = 10_000


class GetterError(ValueError):
    """A getter that cannot be answered: undecodable, badly signed or not authorized."""


def execute_getter(
    state: StateStorage,
    getter: EnumValue | bytes,
    mrenclave: bytes | None = None,
    shard: bytes | None = None,
    *,
    unit: int = UNIT,
) -> bytes | None:
    """SCALE-encoded result of `getter` (a decoded `Getter` or its encoding) on `state`.

    `mrenclave` and `shard` are accepted for symmetry with call execution; as in the original,
    getter signatures cover only SCALE(getter). Raises `GetterError`.
    """
    if isinstance(getter, bytes | bytearray | memoryview):
        try:
            getter = Getter.decode(bytes(getter))
        except ScaleDecodeError as exc:
            raise GetterError(f"invalid getter: {exc}") from exc
    if not isinstance(getter, EnumValue):
        raise GetterError(f"a getter is an EnumValue or bytes, not {type(getter).__name__}")
    rt = Runtime(state)
    if getter.name == "public":
        return _public(rt, getter.value, unit)
    if getter.name == "trusted":
        return _trusted(rt, getter.value)
    raise GetterError(f"unknown getter kind {getter.name!r}")


def _trusted(rt: Runtime, signed: TrustedGetterSigned) -> bytes:
    if not isinstance(signed, TrustedGetterSigned):
        raise GetterError("a trusted getter must be a TrustedGetterSigned")
    if not signed.verify_signature():
        raise GetterError(
            f"bad signature: trusted getter {signed.getter.name} is not signed by "
            f"0x{signed.signer.hex()}"
            + ("" if signed.delegate is not None else " (the account itself)")
        )
    who = signed.sender
    name = signed.getter.name
    if signed.delegate is not None:
        entry = rt.session_proxy(who, signed.delegate)
        if entry is None:
            raise GetterError(
                f"MissingPrivileges(0x{signed.delegate.hex()}): not a session proxy of 0x{who.hex()}"
            )
        role = entry[0].role_name
        if role not in _READ_ROLES and not (role == "ReadBalance" and name == "account_info"):
            raise GetterError(
                f"MissingPrivileges(0x{signed.delegate.hex()}): role {role} may not read {name}"
            )
    info = AccountInfoCodec.encode(rt.account(who))
    if name == "account_info":
        return info
    proxies = SessionProxies.encode([creds for _delegate, creds in rt.session_proxies_of(who)])
    if name == "account_info_and_session_proxies":
        return info + proxies
    if name == "account_essentials":
        return info + proxies + EMPTY_ASSET_BALANCES
    raise GetterError(f"unsupported trusted getter {name}")  # pragma: no cover


def _public(rt: Runtime, getter: EnumValue, unit: int) -> bytes:
    name = getter.name
    if name == "some_value":
        return u32.encode(42)
    if name == "total_issuance":
        return u128.encode(rt.total_issuance())
    if name == "undistributed_fees":
        pot = rt.enclave_account()
        if pot is None:
            raise GetterError("the shard state has no enclave account")
        fees = rt.free_balance(pot)
        # As the original: the reported amount hides the exact fees of recent calls.
        noise = (unit // STF_TX_FEE_UNIT_DIVIDER) * secrets.randbelow(_FEE_NOISE_STEPS + 1) // 1000
        return u128.encode(max(0, fees - noise))
    if name == "parentchains_info":
        infos = {pid: _parentchain_info(rt, pid) for pid in PARENTCHAIN_IDS}
        return ParentchainsInfo.encode(
            {
                "integritee": infos["Integritee"],
                "target_a": infos["TargetA"],
                "target_b": infos["TargetB"],
                "shielding_target": rt.shielding_target(),
            }
        )
    if name == "note_buckets_info":
        return BucketRange.encode({"maybe_first": None, "maybe_last": None})
    if name == "shard_info":
        current = rt.shard_config()
        return ShardInfo.encode(
            {
                "config": None if current is None else current[0],
                "config_updated_at": None if current is None else current[1],
                "status": None,
                "mode": rt.shard_mode(),
            }
        )
    raise GetterError(f"unsupported public getter {name}")  # pragma: no cover


def _parentchain_info(rt: Runtime, pid: str) -> dict[str, object]:
    return {
        "id": pid,
        "genesis_hash": rt.parentchain_value(pid, "ParentchainGenesisHash"),
        "block_number": rt.parentchain_value(pid, "Number"),
        "now": rt.parentchain_value(pid, "Now"),
        "creation_block_number": rt.parentchain_value(pid, "CreationBlockNumber"),
        "creation_timestamp": rt.parentchain_value(pid, "CreationTimestamp"),
    }
