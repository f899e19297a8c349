"""pallet_enclave_bridge (index 54): the parentchain side of the validateers' shards.

Owns indirect invocations (encrypted trusted calls sent through the parentchain), the shard
status (which registered enclaves are active on a shard; entry 0 is the primary), shard configs
with scheduled upgrades, shielding into and idempotent unshielding out of a shard's bonding
account, and published hashes. An enclave acts on a shard only when its fingerprint is the
shard's configured one (with no config: the shard id itself).
"""

from __future__ import annotations

import logging
from typing import Any

from integritee.codec.scale import H256, Bytes, EnumValue, Vec, u64
from integritee.parentchain.primitives import AccountId, Balance, BlockNumber, Hash
from integritee.parentchain.tee_types import (
    MAX_SHARD_STATUS_SIGNER_COUNT,
    EnclaveFingerprint,
    Request,
    ShardConfig,
    ShardIdentifier,
    ShardSignerStatusVec,
    UpgradableShardConfig,
    fingerprint,
    new_shard_config,
)

from ..framework import Origin, Pallet, ensure_root, ensure_signed
from . import balances as balances_mod
from . import teerex as teerex_mod

log = logging.getLogger("integritee.node.runtime.enclave_bridge")

TOPICS_LIMIT = 5
DATA_LENGTH_LIMIT = 100

enclave_bridge = Pallet("EnclaveBridge", 54, "pallet_enclave_bridge")

ShardStatus = enclave_bridge.map(
    "ShardStatus", "Blake2_128Concat", ShardIdentifier, ShardSignerStatusVec, optional=True
)
ShardConfigRegistry = enclave_bridge.map(
    "ShardConfigRegistry",
    "Blake2_128Concat",
    ShardIdentifier,
    UpgradableShardConfig,
    optional=True,
)
ExecutedUnshieldCalls = enclave_bridge.map(
    "ExecutedUnshieldCalls", "Blake2_128Concat", H256, u64, default=0
)

_A = ("T::AccountId",)
_SHARD = (ShardIdentifier, "ShardIdentifier")
_BAL = (Balance, "BalanceOf<T>")
enclave_bridge.event("IndirectInvocationRegistered", 0, (None, *_SHARD))
enclave_bridge.event(
    "ShieldFunds",
    1,
    ("shard", *_SHARD),
    ("encrypted_beneficiary", Bytes, "Vec<u8>"),
    ("amount", *_BAL),
)
enclave_bridge.event(
    "UnshieldedFunds",
    2,
    ("shard", *_SHARD),
    ("beneficiary", AccountId, *_A),
    ("amount", *_BAL),
)
enclave_bridge.event(
    "ProcessedParentchainBlock",
    3,
    ("shard", *_SHARD),
    ("block_hash", H256, "H256"),
    ("trusted_calls_merkle_root", H256, "H256"),
    ("block_number", BlockNumber, "BlockNumberFor<T>"),
)
enclave_bridge.event(
    "PublishedHash",
    4,
    ("enclave_fingerprint", EnclaveFingerprint, "EnclaveFingerprint"),
    ("hash", H256, "H256"),
    ("data", Bytes, "Vec<u8>"),
)
enclave_bridge.event("ShardConfigUpdated", 5, (None, *_SHARD))
enclave_bridge.event(
    "PurgedEnclaveFromShardConfig", 6, ("shard", *_SHARD), ("subject", AccountId, *_A)
)
enclave_bridge.error(
    "WrongFingerprintForShard",
    "TooManyTopics",
    "DataTooLong",
    "TooManyEnclaves",
    "EnclaveNotFoundInShardStatus",
    "ShardNotFound",
)


# ---------------------------------------------------------------------------------------------
# Functions other pallets use


def bonding_account(shard: bytes) -> bytes:
    """The account holding a shard's shielded funds: bit-equal to the shard id (no private key)."""
    return bytes(shard)


def get_maybe_updated_shard_config(
    ctx: Any, shard: bytes, current_block: int, apply_due_update: bool
) -> dict[str, Any] | None:
    """The shard's config in force at `current_block`; optionally enacts a due upgrade."""
    current = ShardConfigRegistry.get(ctx.state, shard)
    if current is None:
        return None
    at = current["upgrade_at"]
    if at is None or at > current_block or current["pending_upgrade"] is None:
        return current["active_config"]  # type: ignore[no-any-return]
    due = current["pending_upgrade"]
    if apply_due_update:
        ShardConfigRegistry.put(
            ctx.state, shard, {"active_config": due, "pending_upgrade": None, "upgrade_at": None}
        )
    return due  # type: ignore[no-any-return]


def touch_shard(
    ctx: Any, shard: bytes, signer: bytes, enclave_fingerprint: bytes, current_block: int
) -> list[dict[str, Any]]:
    """Record `signer` as active on `shard` now; a new signer is appended (the first is primary)."""
    new_status = {
        "signer": signer,
        "fingerprint": enclave_fingerprint,
        "last_activity": current_block,
    }
    statuses = list(ShardStatus.get(ctx.state, shard) or [])
    for i, s in enumerate(statuses):
        if bytes(s["signer"]) == signer:
            statuses[i] = new_status
            break
    else:
        statuses.append(new_status)
    if len(statuses) > MAX_SHARD_STATUS_SIGNER_COUNT:
        raise enclave_bridge.err("TooManyEnclaves")
    ShardStatus.put(ctx.state, shard, statuses)
    return statuses


def get_sovereign_enclave_and_touch_shard(
    ctx: Any, signer: bytes, shard: bytes
) -> tuple[EnumValue, list[dict[str, Any]]]:
    """The sender's enclave, checked against the shard's fingerprint, and the touched status."""
    enclave = teerex_mod.ensure_sovereign_enclave(ctx.state, signer)
    config = get_maybe_updated_shard_config(ctx, shard, ctx.number, True) or new_shard_config(
        bytes(shard)
    )
    if fingerprint(enclave) != bytes(config["enclave_fingerprint"]):
        raise enclave_bridge.err("WrongFingerprintForShard")
    statuses = touch_shard(ctx, shard, signer, fingerprint(enclave), ctx.number)
    return enclave, statuses


def primary_validateer(state: Any, shard: bytes) -> bytes | None:
    """The signer at entry 0 of the shard status (the validateer whose confirmations count)."""
    statuses = ShardStatus.get(state, shard)
    return bytes(statuses[0]["signer"]) if statuses else None


def most_recent_shard_update(state: Any, shard: bytes) -> dict[str, Any] | None:
    statuses = ShardStatus.get(state, shard)
    if not statuses:
        return None
    return max(statuses, key=lambda s: s["last_activity"])  # type: ignore[no-any-return]


def _ensure_signed_or_root(origin: Origin) -> bytes | None:
    if origin.kind == "root":
        return None
    return ensure_signed(origin)


# ---------------------------------------------------------------------------------------------
# Calls


@enclave_bridge.call(0, weight=50_000_000, request=(Request, "Request"))
def invoke(ctx, origin, request) -> None:
    """Register an encrypted trusted operation for execution on the shard (L2)."""
    ensure_signed(origin)
    ctx.deposit_event(enclave_bridge, "IndirectInvocationRegistered", bytes(request["shard"]))


@enclave_bridge.call(
    1,
    weight=100_000_000,
    shard=_SHARD,
    block_hash=(H256, "H256"),
    block_number=(BlockNumber, "BlockNumberFor<T>"),
    trusted_calls_merkle_root=(H256, "H256"),
)
def confirm_processed_parentchain_block(
    ctx, origin, shard, block_hash, block_number, trusted_calls_merkle_root
) -> None:
    """An enclave of the shard confirms it processed a parentchain block."""
    sender = ensure_signed(origin)
    get_sovereign_enclave_and_touch_shard(ctx, sender, shard)
    ctx.deposit_event(
        enclave_bridge,
        "ProcessedParentchainBlock",
        {
            "shard": shard,
            "block_hash": block_hash,
            "trusted_calls_merkle_root": trusted_calls_merkle_root,
            "block_number": block_number,
        },
    )


@enclave_bridge.call(
    2,
    weight=150_000_000,
    shard=_SHARD,
    incognito_account_encrypted=(Bytes, "Vec<u8>"),
    amount=_BAL,
)
def shield_funds(ctx, origin, shard, incognito_account_encrypted, amount: int) -> None:
    """Move funds into the shard's bonding account; the enclave credits the encrypted account."""
    sender = ensure_signed(origin)
    # ExistenceRequirement::AllowDeath, as the original
    balances_mod.transfer(ctx, sender, bonding_account(shard), amount, keep_alive=False)
    ctx.deposit_event(
        enclave_bridge,
        "ShieldFunds",
        {"shard": shard, "encrypted_beneficiary": incognito_account_encrypted, "amount": amount},
    )


@enclave_bridge.call(
    3,
    weight=150_000_000,
    shard=_SHARD,
    beneficiary=(AccountId, "T::AccountId"),
    amount=_BAL,
    call_hash=(H256, "H256"),
)
def unshield_funds(ctx, origin, shard, beneficiary, amount: int, call_hash) -> None:
    """An enclave of the shard pays out of the bonding account, once per call hash."""
    sender = ensure_signed(origin)
    get_sovereign_enclave_and_touch_shard(ctx, sender, shard)
    if not ExecutedUnshieldCalls.exists(ctx.state, call_hash):
        balances_mod.transfer(ctx, bonding_account(shard), beneficiary, amount, keep_alive=False)
        ExecutedUnshieldCalls.put(ctx.state, call_hash, 0)
        ctx.deposit_event(
            enclave_bridge,
            "UnshieldedFunds",
            {"shard": shard, "beneficiary": beneficiary, "amount": amount},
        )
    else:
        log.info("already executed unshielding call %s", bytes(call_hash).hex())
    # every confirming validateer is counted, the payout happens only the first time
    ExecutedUnshieldCalls.put(
        ctx.state, call_hash, ExecutedUnshieldCalls.get(ctx.state, call_hash) + 1
    )


@enclave_bridge.call(
    4,
    weight=lambda hash, extra_topics, data: 50_000_000 + 1_000_000 * len(extra_topics) + len(data),
    hash=(H256, "H256"),
    extra_topics=(Vec(Hash), "Vec<T::Hash>"),
    data=(Bytes, "Vec<u8>"),
)
def publish_hash(ctx, origin, hash, extra_topics, data) -> None:  # noqa: A002 - the call's arg
    """Publish a hash from an enclave; its fingerprint becomes an event topic."""
    sender = ensure_signed(origin)
    enclave = teerex_mod.ensure_sovereign_enclave(ctx.state, sender)
    fp = fingerprint(enclave)
    touch_shard(ctx, fp, sender, fp, ctx.number)
    if len(extra_topics) > TOPICS_LIMIT:
        raise enclave_bridge.err("TooManyTopics")
    if len(data) > DATA_LENGTH_LIMIT:
        raise enclave_bridge.err("DataTooLong")
    topics = [bytes(t) for t in extra_topics] + [fp]
    ctx.deposit_event(
        enclave_bridge,
        "PublishedHash",
        {"enclave_fingerprint": fp, "hash": hash, "data": data},
        topics=topics,
    )


@enclave_bridge.call(
    5,
    weight=100_000_000,
    shard=_SHARD,
    shard_config=(ShardConfig, "ShardConfig<T::AccountId>"),
    enactment_delay=(BlockNumber, "BlockNumberFor<T>"),
)
def update_shard_config(ctx, origin, shard, shard_config, enactment_delay: int) -> None:
    """Set a shard's config: immediately for a new shard, else after `enactment_delay` blocks."""
    maybe_sender = _ensure_signed_or_root(origin)
    now = ctx.number
    old = get_maybe_updated_shard_config(ctx, shard, now, False)
    if maybe_sender is not None:
        enclave = teerex_mod.ensure_sovereign_enclave(ctx.state, maybe_sender)
        if old is not None and bytes(old["enclave_fingerprint"]) != fingerprint(enclave):
            raise enclave_bridge.err("WrongFingerprintForShard")
        touch_shard(ctx, shard, maybe_sender, fingerprint(enclave), now)
    if old is not None:
        new = {
            "active_config": old,
            "pending_upgrade": shard_config,
            "upgrade_at": min(now + enactment_delay, BlockNumber.max),
        }
    else:
        new = {"active_config": shard_config, "pending_upgrade": None, "upgrade_at": None}
    ShardConfigRegistry.put(ctx.state, shard, new)
    ctx.deposit_event(enclave_bridge, "ShardConfigUpdated", shard)


@enclave_bridge.call(
    6, weight=50_000_000, pays_fee=False, shard=_SHARD, subject=(AccountId, "T::AccountId")
)
def purge_enclave_from_shard_status(ctx, origin, shard, subject) -> None:
    """Root removes an (inactive) enclave from a shard's status."""
    ensure_root(origin)
    statuses = ShardStatus.get(ctx.state, shard)
    if statuses is None:
        raise enclave_bridge.err("ShardNotFound")
    kept = [s for s in statuses if bytes(s["signer"]) != bytes(subject)]
    ShardStatus.put(ctx.state, shard, kept)
    ctx.deposit_event(
        enclave_bridge, "PurgedEnclaveFromShardConfig", {"shard": shard, "subject": subject}
    )
