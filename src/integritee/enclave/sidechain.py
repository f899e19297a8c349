"""The shard's sidechain in the enclave: Aura slots, block production, and block import.

Production (this enclave is the slot's author): execute ready pool operations within 70 % of the
remaining slot on the shard state, encrypt the state diff with the state key together with the
apriori and aposteriori state roots, sign the block. The author then imports its own block through
the same path peers use: signature, author of the slot, parent and number, known parentchain head,
decryptable diff whose apriori root is the current state root and whose application yields the
aposteriori root. The state commits atomically with the new head pointer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integritee.codec.scale import ScaleDecodeError
from integritee.crypto import aead
from integritee.crypto.aead import AeadError
from integritee.crypto.keys import Keypair
from integritee.storage.kv import KVStore
from integritee.trusted.sidechain import (
    ZERO_HASH,
    BlockSummary,
    SidechainHeaderCodec,
    StatePayload,
    encode_diff,
    header_hash,
    make_signed_block,
    summary,
    verify_block_signature,
)

from .shard import Shard
from .stf.executor import ParentchainCall

log = logging.getLogger("integritee.enclave.sidechain")

PROPOSAL_SHARE = 0.7
DIFF_AAD = b"integritee/sidechain/state-diff/v1"


class BlockImportError(ValueError):
    pass


@dataclass
class Produced:
    block: dict[str, Any]
    hash: bytes
    executed: list[bytes]
    parentchain_calls: list[ParentchainCall] = field(default_factory=list)


def slot_author(slot: int, authorities: list[bytes]) -> bytes | None:
    return authorities[slot % len(authorities)] if authorities else None


class Sidechain:
    def __init__(
        self,
        shard: Shard,
        db: KVStore,
        signer: Keypair,
        state_key: bytes,
        slot_duration_ms: int,
        known_parentchain_block: Callable[[bytes], bool],
    ) -> None:
        self.shard = shard
        self.db = db
        self.signer = signer
        self.state_key = state_key
        self.slot_duration_ms = slot_duration_ms
        self.known_parentchain_block = known_parentchain_block
        self.authorities: list[bytes] = [signer.public_key]
        self._head_key = b"sidechain/head/" + shard.shard
        self.head: BlockSummary | None = self._load_head()
        self.last_header: dict[str, Any] | None = None

    def _load_head(self) -> BlockSummary | None:
        raw = self.db.get(self._head_key)
        if raw is None:
            return None
        header = SidechainHeaderCodec.decode(raw)
        self.last_header = header
        return BlockSummary(header_hash(header), header["block_number"], header["parent_hash"])

    @property
    def number(self) -> int:
        return self.head.number if self.head else 0

    # --- production
    def is_author(self, slot: int) -> bool:
        return slot_author(slot, self.authorities) == self.signer.public_key

    def propose(
        self,
        slot: int,
        layer_one_head: bytes,
        operations: list[Any],
        execute: Callable[[Any], Any],
        deadline: float,
        prelude: Callable[[], None] | None = None,
    ) -> Produced:
        """Execute operations until the deadline and build this slot's block (state not committed).

        `prelude` runs first inside the block (e.g. recording the parentchain head in the state)."""
        state = self.shard.state
        assert state is not None
        apriori = state.root()
        if prelude is not None:
            prelude()
        executed: list[bytes] = []
        calls: list[ParentchainCall] = []
        for op in operations:
            if time.monotonic() > deadline:
                break
            outcome = execute(op)
            if outcome is None:
                continue
            executed.append(op.hash)
            calls.extend(outcome.parentchain_calls)
        diff = state.changes()
        aposteriori = state.root()
        payload = StatePayload.encode(
            {
                "state_hash_apriori": apriori,
                "state_hash_aposteriori": aposteriori,
                "state_update": encode_diff(diff),
            }
        )
        block = make_signed_block(
            parent_hash=self.head.hash if self.head else ZERO_HASH,
            number=self.number + 1,
            shard=self.shard.shard,
            timestamp=slot * self.slot_duration_ms,
            layer_one_head=layer_one_head,
            author=self.signer,
            top_hashes=executed,
            encrypted_state_diff=aead.encrypt(self.state_key, payload, DIFF_AAD),
        )
        # the author's own block goes through the import path like any peer's: undo, then apply
        state.discard()
        return Produced(block, summary(block).hash, executed, calls)

    # --- import
    def import_block(self, block: dict[str, Any]) -> BlockSummary:
        """Verify a block and apply its state diff; the caller commits state and head in one batch."""
        state = self.shard.state
        if state is None:
            raise BlockImportError("the shard has no state here yet")
        info = summary(block)
        header = block["block"]["header"]
        data = block["block"]["block_data"]
        if bytes(header["shard_id"]) != self.shard.shard:
            raise BlockImportError("block of another shard")
        if not verify_block_signature(block):
            raise BlockImportError("bad block signature or block data hash")
        author = bytes(data["block_author"])
        if author not in self.authorities:
            raise BlockImportError("author is not a validateer of this shard")
        slot = data["timestamp"] // self.slot_duration_ms
        if slot_author(slot, self.authorities) != author:
            raise BlockImportError(f"wrong author for slot {slot}")
        expected_parent = self.head.hash if self.head else ZERO_HASH
        if info.number != self.number + 1 or info.parent_hash != expected_parent:
            raise BlockImportError(
                f"block #{info.number} does not extend #{self.number} (parent mismatch or gap)"
            )
        if not self.known_parentchain_block(bytes(data["layer_one_head"])):
            raise BlockImportError("unknown parentchain head (import the parentchain first)")
        try:
            payload = StatePayload.decode(
                aead.decrypt(self.state_key, bytes(data["encrypted_state_diff"]), DIFF_AAD)
            )
        except (AeadError, ScaleDecodeError) as e:
            raise BlockImportError(f"undecryptable state diff: {e}") from None
        if payload["state_hash_apriori"] != state.root():
            raise BlockImportError("apriori state root mismatch")
        try:
            state.apply_changes(dict(payload["state_update"]))
        except ValueError as e:  # nothing of a half-applied diff may stay
            state.discard()
            raise BlockImportError(f"invalid state diff: {e}") from None
        if state.root() != payload["state_hash_aposteriori"]:
            state.discard()
            raise BlockImportError("aposteriori state root mismatch")
        return info

    def commit(self, block: dict[str, Any], info: BlockSummary) -> None:
        with self.db.batch() as batch:
            self.shard.commit(batch)
            batch.put(self._head_key, SidechainHeaderCodec.encode(block["block"]["header"]))
        self.head = info
        self.last_header = block["block"]["header"]
