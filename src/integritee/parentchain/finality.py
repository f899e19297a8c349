"""GRANDPA finality proofs: the justification format, signing, and checking against a set.

A justification is a commit of precommits for one block, each an ed25519 signature over
SCALE((Message::Precommit(target), round, set_id)); a block is final when more than 2/3 of the
authority set signed it. The node signs and serves them; the enclave's light client checks them.
"""

from __future__ import annotations

from dataclasses import dataclass

from integritee.codec.scale import H256, FixedBytes, ScaleDecodeError, Struct, Vec, u32, u64
from integritee.crypto.keys import Keypair, verify
from integritee.parentchain.primitives import HeaderCodec

GRANDPA_ENGINE = b"FRNK"


class FinalityError(ValueError):
    pass


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
        raise FinalityError(f"malformed justification: {e}") from None
    commit = j["commit"]
    if commit["target_hash"] != target_hash or commit["target_number"] != target_number:
        raise FinalityError("justification is for another block")
    signers: list[bytes] = []
    allowed = set(authorities)
    for pc in commit["precommits"]:
        vote = pc["precommit"]
        if vote["target_hash"] != target_hash or vote["target_number"] != target_number:
            raise FinalityError("precommit for another block (ancestry votes are not supported)")
        if pc["id"] not in allowed:
            raise FinalityError("precommit by a non-authority")
        if pc["id"] in signers:
            raise FinalityError("duplicate precommit")
        payload = precommit_payload(vote["target_hash"], vote["target_number"], j["round"], set_id)
        if not verify("ed25519", payload, pc["signature"], pc["id"]):
            raise FinalityError("bad precommit signature")
        signers.append(pc["id"])
    if len(signers) * 3 <= len(authorities) * 2:
        raise FinalityError(
            f"{len(signers)} of {len(authorities)} signatures: more than 2/3 needed"
        )
    return VerifiedJustification(target_hash, target_number, signers)
