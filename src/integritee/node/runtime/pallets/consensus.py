"""Aura (23) and Grandpa (24): the authority sets, kept in storage so clients and light clients can read them."""

from __future__ import annotations

from integritee.codec.scale import FixedBytes, Newtype, Tuple, Vec, u32, u64

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
