"""Aura block authoring formats: slots, pre-digests and seals.

The author of slot s is authorities[s % n]; the header carries PreRuntime("aura", slot) and is
sealed with Seal("aura", sr25519 signature over the pre-seal header hash). GRANDPA justifications
are in `integritee.parentchain.finality` (the enclave's light client checks them too).
"""

from __future__ import annotations

from integritee.codec.scale import (
    EnumValue,
    u64,
)
from integritee.crypto.keys import Keypair, verify
from integritee.parentchain.primitives import Header

AURA_ENGINE = b"aura"


class ConsensusError(ValueError):
    pass


# --- Aura


def slot_at(now_ms: int, slot_duration_ms: int) -> int:
    return now_ms // slot_duration_ms


def slot_author(slot: int, authorities: list[bytes]) -> bytes | None:
    if not authorities:
        return None
    return authorities[slot % len(authorities)]


def pre_digest(slot: int) -> EnumValue:
    return EnumValue("PreRuntime", (AURA_ENGINE, u64.encode(slot)))


def block_slot(header: Header) -> int:
    for item in header.digest:
        if item.name == "PreRuntime" and item.value[0] == AURA_ENGINE:
            return u64.decode(item.value[1])
    raise ConsensusError("header has no Aura pre-digest")


def seal_header(header: Header, key: Keypair) -> Header:
    """Sign the pre-seal header and append the seal."""
    signature = key.sign(header.hash())
    header.digest = [*header.digest, EnumValue("Seal", (AURA_ENGINE, signature))]
    return header


def check_seal(
    header: Header, authorities: list[bytes], slot_duration_ms: int, now_ms: int | None = None
) -> bytes:
    """Verify the Aura seal: right author for the slot, valid signature. Returns the author."""
    if (
        not header.digest
        or header.digest[-1].name != "Seal"
        or header.digest[-1].value[0] != AURA_ENGINE
    ):
        raise ConsensusError("header is not sealed by Aura")
    signature = header.digest[-1].value[1]
    pre = Header(
        header.parent_hash,
        header.number,
        header.state_root,
        header.extrinsics_root,
        header.digest[:-1],
    )
    slot = block_slot(pre)
    if now_ms is not None and slot > slot_at(now_ms, slot_duration_ms) + 1:
        raise ConsensusError(f"block from a future slot {slot}")
    author = slot_author(slot, authorities)
    if author is None:
        raise ConsensusError("no authorities")
    if not verify("sr25519", pre.hash(), signature, author):
        raise ConsensusError("bad seal signature")
    return author
