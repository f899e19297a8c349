"""frame_system (index 0): accounts, block number and hashes, events, remarks."""

from __future__ import annotations

from integritee.codec.scale import Bytes, Lazy, Struct, Tuple, Vec, u16, u32
from integritee.crypto.hashing import blake2_256
from integritee.parentchain.primitives import (
    AccountId,
    AccountInfo,
    AccountInfoCodec,
    BlockNumber,
    DispatchError,
    DispatchInfo,
    Hash,
    Phase,
    RuntimeDbWeight,
    RuntimeVersionCodec,
)
from integritee.parentchain.primitives import Digest as DigestCodec

from ..framework import Pallet, ensure_root, ensure_signed

BLOCK_HASH_COUNT = 2400
SS58_PREFIX = 13

system = Pallet("System", 0, "frame_system")


def _runtime_event():
    from ..construct import RuntimeEvent

    return RuntimeEvent


EventRecord = Struct(
    "frame_system::EventRecord",
    [
        ("phase", Phase, "Phase"),
        ("event", Lazy(_runtime_event), "E"),
        ("topics", Vec(Hash), "Vec<T>"),
    ],
    params=[("E", Lazy(_runtime_event)), ("T", Hash)],
)

Account = system.map(
    "Account", "Blake2_128Concat", AccountId, AccountInfoCodec, default=AccountInfo()
)
ExtrinsicCount = system.value("ExtrinsicCount", u32, optional=True)
BlockHash = system.map("BlockHash", "Twox64Concat", BlockNumber, Hash, default=bytes(32))
Number = system.value("Number", BlockNumber, default=0)
ParentHash = system.value("ParentHash", Hash, default=bytes(32))
Digest = system.value("Digest", DigestCodec, default=[])
Events = system.value("Events", Vec(EventRecord), default=[])
EventCount = system.value("EventCount", u32, default=0)

system.event("ExtrinsicSuccess", 0, ("dispatch_info", DispatchInfo, "DispatchInfo"))
system.event(
    "ExtrinsicFailed",
    1,
    ("dispatch_error", DispatchError, "DispatchError"),
    ("dispatch_info", DispatchInfo, "DispatchInfo"),
)
system.event("CodeUpdated", 2)
system.event("NewAccount", 3, ("account", AccountId, "T::AccountId"))
system.event("KilledAccount", 4, ("account", AccountId, "T::AccountId"))
system.event("Remarked", 5, ("sender", AccountId, "T::AccountId"), ("hash", Hash, "T::Hash"))
system.error(
    "InvalidSpecName",
    "SpecVersionNeedsToIncrease",
    "FailedToExtractRuntimeVersion",
    "NonDefaultComposite",
    "NonZeroRefCount",
    "CallFiltered",
)

system.constant("BlockHashCount", BlockNumber, BLOCK_HASH_COUNT)
system.constant("DbWeight", RuntimeDbWeight, {"read": 25_000_000, "write": 100_000_000})
system.constant("SS58Prefix", u16, SS58_PREFIX)


def set_version_constant(version: dict) -> None:
    system.constant("Version", RuntimeVersionCodec, version)


@system.call(0, weight=lambda remark: 1_000_000 + len(remark) * 1_000, remark=(Bytes, "Vec<u8>"))
def remark(ctx, origin, remark: bytes) -> None:
    """Make some on-chain remark."""
    ensure_signed(origin)


KeyValue = Tuple(Bytes, Bytes)


@system.call(
    4,
    weight=lambda items: 1_000_000 + 25_000_000 * len(items),
    items=(Vec(KeyValue), "Vec<KeyValue>"),
)
def set_storage(ctx, origin, items: list[tuple[bytes, bytes]]) -> None:
    """Set some items of storage (root only)."""
    ensure_root(origin)
    for key, value in items:
        ctx.state.set(bytes(key), bytes(value))


@system.call(7, weight=lambda remark: 1_000_000 + len(remark) * 1_000, remark=(Bytes, "Vec<u8>"))
def remark_with_event(ctx, origin, remark: bytes) -> None:
    """Make some on-chain remark and emit an event."""
    who = ensure_signed(origin)
    ctx.deposit_event(system, "Remarked", {"sender": who, "hash": blake2_256(remark)})


def account(ctx, who: bytes) -> AccountInfo:
    return Account.get(ctx.state, who)


def put_account(ctx, who: bytes, info: AccountInfo) -> None:
    """Write an account; reap it (and emit KilledAccount) when it no longer has providers."""
    if info.providers == 0 and info.sufficients == 0:
        if Account.exists(ctx.state, who):
            Account.remove(ctx.state, who)
            ctx.deposit_event(system, "KilledAccount", {"account": who})
        return
    Account.put(ctx.state, who, info)


def inc_nonce(ctx, who: bytes) -> None:
    info = Account.get(ctx.state, who)
    info.nonce += 1
    Account.put(ctx.state, who, info)


def initialize(ctx) -> None:
    Number.put(ctx.state, ctx.number)
    ParentHash.put(ctx.state, ctx.parent_hash)
    if ctx.number > 0:
        BlockHash.put(ctx.state, ctx.number - 1, ctx.parent_hash)
        old = ctx.number - 1 - BLOCK_HASH_COUNT
        if old > 0:
            BlockHash.remove(ctx.state, old)
    ctx.state.delete(Events.key())
    ctx.state.delete(EventCount.key())
    ctx.state.delete(ExtrinsicCount.key())


def finalize(ctx, extrinsic_count: int) -> None:
    ExtrinsicCount.put(ctx.state, extrinsic_count)
    Events.put(ctx.state, [{"phase": p, "event": e, "topics": t} for p, e, t in ctx.events])
    EventCount.put(ctx.state, len(ctx.events))
