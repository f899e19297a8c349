"""Aura (23) and Grandpa (24): the authority sets, kept in storage so clients and light clients can read them.

A GRANDPA authority set change is a `Grandpa.PendingChange { scheduled_at, delay,
next_authorities, forced: None }` in storage (root writes it, e.g. `Sudo.sudo(System.set_storage)`,
with `scheduled_at` a future block). As in pallet_grandpa, block `scheduled_at` signals it with the
`ScheduledChange` consensus digest (engine "FRNK", ConsensusLog variant 1) and block
`scheduled_at + delay` enacts it: new `Authorities`, event `NewAuthorities`. Unlike
pallet_grandpa (which counts sessions), `CurrentSetId` goes up at the enactment, so it always is
the id the current set signs with: what the node's finality and light clients track.
"""

from __future__ import annotations

from integritee.codec.scale import (
    EnumValue,
    FixedBytes,
    Newtype,
    Option,
    Struct,
    Tuple,
    Vec,
    u32,
    u64,
)

from ..framework import Pallet

aura = Pallet("Aura", 23, "pallet_aura")
AuraId = Newtype(
    "sp_consensus_aura::sr25519::app_sr25519::Public", FixedBytes(32), "sr25519::Public"
)
Slot = Newtype("sp_consensus_slots::Slot", u64, "u64")
AuraAuthorities = aura.value("Authorities", Vec(AuraId), default=[])
CurrentSlot = aura.value("CurrentSlot", Slot, default=0)

grandpa = Pallet("Grandpa", 24, "pallet_grandpa")
GrandpaId = Newtype("sp_consensus_grandpa::app::Public", FixedBytes(32), "ed25519::Public")
GrandpaAuthorities = grandpa.value("Authorities", Vec(Tuple(GrandpaId, u64)), default=[])
CurrentSetId = grandpa.value("CurrentSetId", u64, default=0)
grandpa.constant("MaxAuthorities", u32, 32)

AuthorityList = Vec(Tuple(GrandpaId, u64))
StoredPendingChange = Struct(
    "pallet_grandpa::StoredPendingChange",
    [
        ("scheduled_at", u32, "N"),
        ("delay", u32, "N"),
        ("next_authorities", AuthorityList, "BoundedAuthorityList<Limit>"),
        ("forced", Option(u32), "Option<N>"),
    ],
)
PendingChange = grandpa.value("PendingChange", StoredPendingChange, optional=True)
ScheduledChange = Struct(
    "sp_consensus_grandpa::ScheduledChange",
    [("next_authorities", AuthorityList), ("delay", u32)],
)
grandpa.event("NewAuthorities", 0, ("authority_set", AuthorityList, "AuthorityList"))
GRANDPA_ENGINE = b"FRNK"
SCHEDULED_CHANGE_LOG = 1


def scheduled_change_log(next_authorities: list[tuple[bytes, int]], delay: int) -> EnumValue:
    data = bytes([SCHEDULED_CHANGE_LOG]) + ScheduledChange.encode(
        {"next_authorities": next_authorities, "delay": delay}
    )
    return EnumValue("Consensus", (GRANDPA_ENGINE, data))


def signalled_change(digest: list[EnumValue]) -> tuple[list[tuple[bytes, int]], int] | None:
    """(next authorities, delay) of a ScheduledChange digest item, if the digest has one."""
    for item in digest:
        if item.name != "Consensus":
            continue
        engine, data = item.value
        if engine == GRANDPA_ENGINE and data and data[0] == SCHEDULED_CHANGE_LOG:
            change = ScheduledChange.decode(data[1:])
            return [(bytes(k), w) for k, w in change["next_authorities"]], change["delay"]
    return None


def finalize(ctx) -> None:
    pending = PendingChange.get(ctx.state)
    if pending is None:
        return
    if pending["forced"] is not None:
        raise RuntimeError("forced GRANDPA authority set changes are not supported")
    if ctx.number == pending["scheduled_at"]:
        ctx.deposit_log(scheduled_change_log(pending["next_authorities"], pending["delay"]))
    if ctx.number == pending["scheduled_at"] + pending["delay"]:
        GrandpaAuthorities.put(ctx.state, pending["next_authorities"])
        CurrentSetId.put(ctx.state, CurrentSetId.get(ctx.state) + 1)
        PendingChange.remove(ctx.state)
        ctx.deposit_event(grandpa, "NewAuthorities", {"authority_set": pending["next_authorities"]})
