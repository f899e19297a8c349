"""pallet_sidechain (index 53): finalization of sidechain blocks on the parentchain.

Owns the latest confirmed sidechain block per shard. A shard's enclave confirms each imported
sidechain block; only the primary validateer's confirmation counts (entry 0 of the shard status,
as the original's "simple but robust" rule), and a candidate must extend the stored confirmation:
a higher block number, and the ancestor the sender names must be exactly the stored one.
"""

from __future__ import annotations

import logging
from typing import Any

from integritee.codec.scale import H256, Option
from integritee.parentchain.primitives import AccountId
from integritee.parentchain.tee_types import (
    ShardIdentifier,
    SidechainBlockConfirmation,
    SidechainBlockNumber,
)

from ..framework import Pallet, ensure_signed
from . import enclave_bridge as bridge_mod

log = logging.getLogger("integritee.node.runtime.sidechain")

sidechain = Pallet("Sidechain", 53, "pallet_sidechain")

LatestSidechainBlockConfirmation = sidechain.map(
    "LatestSidechainBlockConfirmation",
    "Blake2_128Concat",
    ShardIdentifier,
    SidechainBlockConfirmation,
    optional=True,
)

sidechain.event(
    "FinalizedSidechainBlock",
    0,
    ("shard", ShardIdentifier, "ShardIdentifier"),
    ("block_number", SidechainBlockNumber, "SidechainBlockNumber"),
    ("block_header_hash", H256, "H256"),
    ("validateer", AccountId, "T::AccountId"),
)
sidechain.error(
    "FinalizationCandidateIsOutdated",
    "AncestorNumberMismatch",
    "AncestorHashMismatch",
    "AncestorMissing",
)


def latest_confirmation(state: Any, shard: bytes) -> dict[str, Any] | None:
    return LatestSidechainBlockConfirmation.get(state, shard)  # type: ignore[no-any-return]


@sidechain.call(
    0,
    weight=120_000_000,
    shard=(ShardIdentifier, "ShardIdentifier"),
    latest_finalized_ancestor=(
        Option(SidechainBlockConfirmation),
        "Option<SidechainBlockConfirmation>",
    ),
    finalization_candidate=(SidechainBlockConfirmation, "SidechainBlockConfirmation"),
)
def confirm_imported_sidechain_block(
    ctx, origin, shard, latest_finalized_ancestor, finalization_candidate
) -> None:
    """The shard's enclave confirms an imported sidechain block (counted for the primary only)."""
    sender = ensure_signed(origin)
    _enclave, statuses = bridge_mod.get_sovereign_enclave_and_touch_shard(ctx, sender, shard)
    if bytes(statuses[0]["signer"]) != sender:
        log.debug("ignoring block confirmation of non-primary %s", sender.hex())
        return
    known = LatestSidechainBlockConfirmation.get(ctx.state, shard)
    if known is not None:
        if latest_finalized_ancestor is None:
            raise sidechain.err("AncestorMissing")
        if finalization_candidate["block_number"] <= known["block_number"]:
            raise sidechain.err("FinalizationCandidateIsOutdated")
        if known["block_number"] != latest_finalized_ancestor["block_number"]:
            raise sidechain.err("AncestorNumberMismatch")
        if bytes(known["block_header_hash"]) != bytes(
            latest_finalized_ancestor["block_header_hash"]
        ):
            raise sidechain.err("AncestorHashMismatch")
    LatestSidechainBlockConfirmation.put(ctx.state, shard, finalization_candidate)
    ctx.deposit_event(
        sidechain,
        "FinalizedSidechainBlock",
        {
            "shard": shard,
            "block_number": finalization_candidate["block_number"],
            "block_header_hash": finalization_candidate["block_header_hash"],
            "validateer": sender,
        },
    )
