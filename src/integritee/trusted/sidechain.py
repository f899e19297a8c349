"""Sidechain block types (the original's encodings), signing and the encrypted state payload.

- `SidechainHeader { parent_hash, block_number: u64, shard_id, block_data_hash, next_finalization_block_number: u64 }`,
  block hash = blake2_256(SCALE(header));
- `BlockData { timestamp: u64 ms, layer_one_head, block_author: ed25519 public, signed_top_hashes, encrypted_state_diff }`,
  `block_data_hash` = blake2_256(SCALE(block_data));
- `SignedBlock { block: { header, block_data }, signature: MultiSignature }`, ed25519 by the author
  over SCALE(block);
- the state payload inside `encrypted_state_diff` (AES-GCM with the shard's state key):
  `StatePayload { state_hash_apriori, state_hash_aposteriori, state_update }` where the update is
  the diff `Vec<(key, Option<value>)>` with keys sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integritee.codec.scale import (
    H256,
    Bytes,
    EnumValue,
    FixedBytes,
    Option,
    Struct,
    Tuple,
    Vec,
    u64,
)
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair, verify_multi_signature
from integritee.parentchain.primitives import MultiSignature

FINALIZATION_INTERVAL = 50
ZERO_HASH = bytes(32)

SidechainHeaderCodec = Struct(
    "its_primitives::types::header::SidechainHeader",
    [
        ("parent_hash", H256),
        ("block_number", u64),
        ("shard_id", H256),
        ("block_data_hash", H256),
        ("next_finalization_block_number", u64),
    ],
)
BlockDataCodec = Struct(
    "its_primitives::types::block_data::BlockData",
    [
        ("timestamp", u64),
        ("layer_one_head", H256),
        ("block_author", FixedBytes(32)),
        ("signed_top_hashes", Vec(H256)),
        ("encrypted_state_diff", Bytes),
    ],
)
BlockCodec = Struct(
    "its_primitives::types::block::Block",
    [("header", SidechainHeaderCodec), ("block_data", BlockDataCodec)],
)
SignedBlockCodec = Struct(
    "its_primitives::types::block::SignedBlock",
    [("block", BlockCodec), ("signature", MultiSignature)],
)
SignedBlocks = Vec(SignedBlockCodec)
StateDiff = Vec(Tuple(Bytes, Option(Bytes)))
StatePayload = Struct(
    "itp_stf_primitives::types::StatePayload",
    [("state_hash_apriori", H256), ("state_hash_aposteriori", H256), ("state_update", StateDiff)],
)


def header_hash(header: dict[str, Any]) -> bytes:
    return blake2_256(SidechainHeaderCodec.encode(header))


def block_hash(signed: dict[str, Any]) -> bytes:
    return header_hash(signed["block"]["header"])


@dataclass(frozen=True)
class BlockSummary:
    hash: bytes
    number: int
    parent_hash: bytes


def summary(signed: dict[str, Any]) -> BlockSummary:
    header = signed["block"]["header"]
    return BlockSummary(header_hash(header), header["block_number"], header["parent_hash"])


def next_finalization_number(number: int) -> int:
    return (number // FINALIZATION_INTERVAL + 1) * FINALIZATION_INTERVAL


def make_signed_block(
    *,
    parent_hash: bytes,
    number: int,
    shard: bytes,
    timestamp: int,
    layer_one_head: bytes,
    author: Keypair,
    top_hashes: list[bytes],
    encrypted_state_diff: bytes,
) -> dict[str, Any]:
    block_data = {
        "timestamp": timestamp,
        "layer_one_head": layer_one_head,
        "block_author": author.public_key,
        "signed_top_hashes": top_hashes,
        "encrypted_state_diff": encrypted_state_diff,
    }
    header = {
        "parent_hash": parent_hash,
        "block_number": number,
        "shard_id": shard,
        "block_data_hash": blake2_256(BlockDataCodec.encode(block_data)),
        "next_finalization_block_number": next_finalization_number(number),
    }
    block = {"header": header, "block_data": block_data}
    signature = author.sign(BlockCodec.encode(block))
    return {"block": block, "signature": EnumValue("Ed25519", signature)}


def verify_block_signature(signed: dict[str, Any]) -> bool:
    """The block is signed by its declared author and its data hash matches the header."""
    block = signed["block"]
    data = block["block_data"]
    if blake2_256(BlockDataCodec.encode(data)) != block["header"]["block_data_hash"]:
        return False
    sig = signed["signature"]
    return verify_multi_signature(
        sig.name, sig.value, BlockCodec.encode(block), bytes(data["block_author"])
    )


def encode_diff(changes: dict[bytes, bytes | None]) -> list[tuple[bytes, bytes | None]]:
    return sorted(changes.items())
