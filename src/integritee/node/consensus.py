"""Consensus formats: Aura slots, pre-digests and seals; GRANDPA justifications.

Aura: the author of slot s is authorities[s % n]; the header carries PreRuntime("aura", slot) and is
sealed with Seal("aura", sr25519 signature over the pre-seal header hash). GRANDPA: a justification
is a commit of precommits, each an ed25519 signature over SCALE((Precommit, round, set_id)); a block
is final when more than 2/3 of the authority set signed it.
"""

from __future__ import annotations

from dataclasses import dataclass

from integritee.codec.scale import (
    H256,
    EnumValue,
    FixedBytes,
    ScaleDecodeError,
    Struct,
    Vec,
    u32,
    u64,
)
from integritee.crypto.keys import Keypair, verify

from .runtime.primitives import Header, HeaderCodec

AURA_ENGINE = b"aura"
GRANDPA_ENGINE = b"FRNK"


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


# --- GRANDPA justifications

Precommit = Struct("finality_grandpa::Precommit", [("target_hash", H256), ("target_number", u32)])
SignedPrecommit = Struct(
    "finality_grandpa::SignedPrecommit",
    [("precommit", Precommit), ("signature", FixedBytes(64)), ("id", FixedBytes(32))],
)
Commit = Struct(
    "finality_grandpa::Commit",
    [("target_hash", H256), ("target_number", u32), ("precommits", Vec(SignedPrecommit))],
)
GrandpaJustification = Struct(
    "sp_consensus_grandpa::GrandpaJustification",
    [("round", u64), ("commit", Commit), ("votes_ancestries", Vec(HeaderCodec))],
)


def precommit_payload(
    target_hash: bytes, target_number: int, round_number: int, set_id: int
) -> bytes:
    # SCALE((Message::Precommit(precommit), round, set_id)); Precommit is variant 1 of Message.
    return (
        b"\x01"
        + target_hash
        + u32.encode(target_number)
        + u64.encode(round_number)
        + u64.encode(set_id)
    )


@dataclass
class VerifiedJustification:
    target_hash: bytes
    target_number: int
    signers: list[bytes]


def make_justification(
    target_hash: bytes, target_number: int, keys: list[Keypair], round_number: int, set_id: int
) -> bytes:
    payload = precommit_payload(target_hash, target_number, round_number, set_id)
    precommits = [
        {
            "precommit": {"target_hash": target_hash, "target_number": target_number},
            "signature": k.sign(payload),
            "id": k.public_key,
        }
        for k in keys
    ]
    return GrandpaJustification.encode(
        {
            "round": round_number,
            "commit": {
                "target_hash": target_hash,
                "target_number": target_number,
                "precommits": precommits,
            },
            "votes_ancestries": [],
        }
    )


def verify_justification(
    data: bytes, target_hash: bytes, target_number: int, authorities: list[bytes], set_id: int
) -> VerifiedJustification:
    """Check a justification for exactly this block against the authority set (> 2/3 must sign)."""
    try:
        j = GrandpaJustification.decode(data)
    except ScaleDecodeError as e:
        raise ConsensusError(f"malformed justification: {e}") from None
    commit = j["commit"]
    if commit["target_hash"] != target_hash or commit["target_number"] != target_number:
        raise ConsensusError("justification is for another block")
    signers: list[bytes] = []
    allowed = set(authorities)
    for pc in commit["precommits"]:
        vote = pc["precommit"]
        if vote["target_hash"] != target_hash or vote["target_number"] != target_number:
            raise ConsensusError("precommit for another block (ancestry votes are not supported)")
        if pc["id"] not in allowed:
            raise ConsensusError("precommit by a non-authority")
        if pc["id"] in signers:
            raise ConsensusError("duplicate precommit")
        payload = precommit_payload(vote["target_hash"], vote["target_number"], j["round"], set_id)
        if not verify("ed25519", payload, pc["signature"], pc["id"]):
            raise ConsensusError("bad precommit signature")
        signers.append(pc["id"])
    if len(signers) * 3 <= len(authorities) * 2:
        raise ConsensusError(
            f"{len(signers)} of {len(authorities)} signatures: more than 2/3 needed"
        )
    return VerifiedJustification(target_hash, target_number, signers)
