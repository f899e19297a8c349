"""The shard's sidechain in the enclave: Aura slots, block production, and block import.

Production (this enclave is the slot's author): execute ready pool operations within 70 % of the
remaining slot on the shard state, encrypt the state diff with the state key together with the
apriori and aposteriori state roots, sign the block. The author then imports its own block through
the same path peers use: signature, author of the slot, parent and number, known parentchain head,
decryptable diff whose apriori root is the current state root and whose application yields the
aposteriori root. The state commits atomically with the new head pointer.

Authorities: the signers of `EnclaveBridge.ShardStatus` at the block's `layer_one_head` (see
`l1_view`), so every validateer derives the same author for the same block; the parentchain head
of a block may not go back behind its parent's, and the state must record it (the author's
prelude does), which ties the diff to the parentchain work it executed.

Every committed block keeps an undo record (its block, its parent's header and the previous
values of the keys it changed, encrypted with the state key) for the last `UNDO_DEPTH` blocks, so
a fork can be switched: `revert_head` undoes the head block.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from integritee.codec.scale import Bytes, Option, ScaleDecodeError, Struct, Tuple, Vec
from integritee.crypto import aead
from integritee.crypto.aead import AeadError
from integritee.crypto.keys import Keypair
from integritee.storage.kv import KVStore
from integritee.trusted.sidechain import (
    ZERO_HASH,
    BlockSummary,
    SidechainHeaderCodec,
    SignedBlockCodec,
    StatePayload,
    encode_diff,
    header_hash,
    make_signed_block,
    summary,
    verify_block_signature,
)

from .l1_view import ParentchainView
from .shard import Shard
from .stf.executor import ParentchainCall

log = logging.getLogger("integritee.enclave.sidechain")

PROPOSAL_SHARE = 0.7
DIFF_AAD = b"integritee/sidechain/state-diff/v1"
UNDO_AAD = b"integritee/sidechain/undo/v1"
UNDO_DEPTH = 32

UndoRecord = Struct(
    "SidechainUndoRecord",
    [
        ("block", Bytes),  # SCALE SignedBlock
        ("parent_header", Option(SidechainHeaderCodec)),
        ("undo", Vec(Tuple(Bytes, Option(Bytes)))),
    ],
)


class BlockImportError(ValueError):
    pass


class UnknownParentchainHead(BlockImportError):
    """The block names a parentchain block this enclave has not imported (yet)."""


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
        view: ParentchainView,
        bootstrap_authorities: list[bytes],
    ) -> None:
        self.shard = shard
        self.db = db
        self.signer = signer
        self.state_key = state_key
        self.slot_duration_ms = slot_duration_ms
        self.view = view
        # before the parentchain shows any signer of the shard (its creator's first blocks)
        self.bootstrap_authorities = bootstrap_authorities
        self._head_key = b"sidechain/head/" + shard.shard
        self._undo_prefix = b"sidechain/undo/" + shard.shard
        self.last_header: dict[str, Any] | None = None
        self.head: BlockSummary | None = self._load_head()
        self._undo: dict[bytes, bytes | None] | None = None
        # (block number, parentchain number of its head) of the blocks committed here, oldest first
        self._recent_l1: collections.deque[tuple[int, int]] = collections.deque()
        # (block hash, apriori root, parentchain number processed before it) of our proposal
        self._proposed: tuple[bytes, bytes, int] | None = None

    def _load_head(self) -> BlockSummary | None:
        raw = self.db.get(self._head_key)
        self._head_timestamp = -1
        if raw is None:
            return None
        header = SidechainHeaderCodec.decode(raw)
        self.last_header = header
        self._head_timestamp = self._parent_timestamp(header)
        return self._summary_of(header)

    @property
    def number(self) -> int:
        return self.head.number if self.head else 0

    # --- authorities
    def authorities_at(self, layer_one_head: bytes) -> list[bytes]:
        number = self.view.number_of(layer_one_head)
        if number is None:
            raise UnknownParentchainHead(
                f"unknown parentchain head 0x{bytes(layer_one_head).hex()[:16]} "
                "(import the parentchain first)"
            )
        return self.view.authorities_at(number) or list(self.bootstrap_authorities)

    # --- production
    def is_author(self, slot: int, layer_one_head: bytes) -> bool:
        try:
            authorities = self.authorities_at(layer_one_head)
        except UnknownParentchainHead:
            return False
        return slot_author(slot, authorities) == self.signer.public_key

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
        if state.has_changes():  # left by a proposal that failed half-way
            state.discard()
        self._proposed = None
        apriori = state.root()
        parent_processed = self.shard.processed_number()
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
        # The author's own block goes through the import path like any peer's, with every check;
        # its changes stay applied (re-applying them would only recompute the same trie root):
        # the import compares them with the block's decrypted diff instead.
        produced = Produced(block, summary(block).hash, executed, calls)
        self._proposed = (produced.hash, apriori, parent_processed)
        return produced

    # --- import
    def import_block(self, block: dict[str, Any]) -> BlockSummary:
        """Verify a block and apply its state diff; the caller commits state and head in one batch."""
        state = self.shard.state
        if state is None:
            raise BlockImportError("the shard has no state here yet")
        info = summary(block)
        proposed, self._proposed = self._proposed, None
        own = proposed is not None and proposed[0] == info.hash
        if proposed is not None and not own:
            state.discard()  # a proposal that was not imported
        try:
            return self._import(block, info, state, proposed if own else None)
        except BlockImportError:
            if own:
                state.discard()
            raise

    def _import(
        self,
        block: dict[str, Any],
        info: BlockSummary,
        state: Any,
        own: tuple[bytes, bytes, int] | None,
    ) -> BlockSummary:
        header = block["block"]["header"]
        data = block["block"]["block_data"]
        if bytes(header["shard_id"]) != self.shard.shard:
            raise BlockImportError("block of another shard")
        if not verify_block_signature(block):
            raise BlockImportError("bad block signature or block data hash")
        author = bytes(data["block_author"])
        layer_one_head = bytes(data["layer_one_head"])
        authorities = self.authorities_at(layer_one_head)
        if author not in authorities:
            raise BlockImportError("author is not a validateer of this shard")
        slot = data["timestamp"] // self.slot_duration_ms
        if slot_author(slot, authorities) != author:
            raise BlockImportError(f"wrong author for slot {slot}")
        expected_parent = self.head.hash if self.head else ZERO_HASH
        if info.number != self.number + 1 or info.parent_hash != expected_parent:
            raise BlockImportError(
                f"block #{info.number} does not extend #{self.number} (parent mismatch or gap)"
            )
        l1_number = self.view.number_of(layer_one_head)
        assert l1_number is not None
        parent_processed = own[2] if own is not None else self.shard.processed_number()
        if l1_number < parent_processed:
            raise BlockImportError("the parentchain head goes back behind the parent block's")
        try:
            payload = StatePayload.decode(
                aead.decrypt(self.state_key, bytes(data["encrypted_state_diff"]), DIFF_AAD)
            )
        except (AeadError, ScaleDecodeError) as e:
            raise BlockImportError(f"undecryptable state diff: {e}") from None
        diff = {bytes(k): v for k, v in payload["state_update"]}
        if own is not None:  # our proposal: its changes are applied already
            if payload["state_hash_apriori"] != own[1]:
                raise BlockImportError("apriori state root mismatch")
            if state.changes() != diff:
                raise BlockImportError("the block's diff is not the proposal's changes")
            undo = {k: state.committed(k) for k in diff}
        else:
            if payload["state_hash_apriori"] != state.root():
                raise BlockImportError("apriori state root mismatch")
            undo = {k: state.get(k) for k in diff}
            try:
                state.apply_changes(diff)
            except ValueError as e:  # nothing of a half-applied diff may stay
                state.discard()
                raise BlockImportError(f"invalid state diff: {e}") from None
        if state.root() != payload["state_hash_aposteriori"]:
            state.discard()
            raise BlockImportError("aposteriori state root mismatch")
        if self.shard.processed_number() != l1_number:
            state.discard()
            raise BlockImportError("the state does not record the block's parentchain head")
        if self.last_header is not None and slot * self.slot_duration_ms <= self.head_timestamp:
            state.discard()
            raise BlockImportError(f"slot {slot} is not after the parent block's slot")
        self._undo = undo
        return info

    @property
    def head_timestamp(self) -> int:
        return -1 if self.last_header is None else self._head_timestamp

    def commit(self, block: dict[str, Any], info: BlockSummary) -> None:
        """Commit the imported block's state, head and undo record at once."""
        undo, self._undo = self._undo or {}, None
        record = UndoRecord.encode(
            {
                "block": SignedBlockCodec.encode(block),
                "parent_header": self.last_header,
                "undo": sorted(undo.items()),
            }
        )
        key = self._undo_key(info.number)
        with self.db.batch() as batch:
            self.shard.commit(batch)
            batch.put(self._head_key, SidechainHeaderCodec.encode(block["block"]["header"]))
            batch.put(key, aead.encrypt(self.state_key, record, UNDO_AAD + key))
            if info.number > UNDO_DEPTH:
                self._forget(batch, info.number - UNDO_DEPTH)
        self.head = info
        self.last_header = block["block"]["header"]
        self._head_timestamp = int(block["block"]["block_data"]["timestamp"])
        l1 = self.view.number_of(bytes(block["block"]["block_data"]["layer_one_head"]))
        if l1 is not None:
            self._recent_l1.append((info.number, l1))

    def _forget(self, batch: Any, number: int) -> None:
        """Block `number` can no longer be reverted: drop its undo record, and the parentchain
        inbox up to its parentchain head (a fork switch never goes back behind it). The heads
        of recent blocks are remembered in memory, so this reads nothing (after a restart the
        inbox is pruned once blocks committed since then leave the undo window)."""
        batch.delete(self._undo_key(number))
        prune_to = None
        while self._recent_l1 and self._recent_l1[0][0] <= number:
            prune_to = self._recent_l1.popleft()[1]
        if prune_to is not None:
            self.view.prune_inbox(batch, prune_to)

    def _undo_key(self, number: int) -> bytes:
        return self._undo_prefix + number.to_bytes(8, "big")

    def _undo_record(self, number: int) -> dict[str, Any] | None:
        """The undo record of block `number` (None when there is none); BlockImportError when
        it does not decrypt or decode."""
        key = self._undo_key(number)
        blob = self.db.get(key)
        if blob is None:
            return None
        try:
            record: dict[str, Any] = UndoRecord.decode(
                aead.decrypt(self.state_key, blob, UNDO_AAD + key)
            )
        except (AeadError, ScaleDecodeError) as e:
            raise BlockImportError(f"undo record of #{number} unusable: {e}") from None
        return record

    def revert_head(self) -> dict[str, Any]:
        """Undo the head block (state and head pointer, committed); returns the undone block."""
        state = self.shard.state
        assert state is not None and self.head is not None
        record = self._undo_record(self.head.number)
        if record is None:
            raise BlockImportError(f"no undo record for #{self.head.number}: too deep a fork")
        block: dict[str, Any] = SignedBlockCodec.decode(record["block"])
        reverted = summary(block)
        if reverted.hash != self.head.hash:
            raise BlockImportError(f"undo record of #{self.head.number} is of another block")
        state.apply_changes({bytes(k): v for k, v in record["undo"]})
        parent = record["parent_header"]
        with self.db.batch() as batch:
            self.shard.commit(batch)
            if parent is None:
                batch.delete(self._head_key)
            else:
                batch.put(self._head_key, SidechainHeaderCodec.encode(parent))
            batch.delete(self._undo_key(reverted.number))
        while self._recent_l1 and self._recent_l1[-1][0] >= reverted.number:
            self._recent_l1.pop()
        self.last_header = parent
        self.head = None if parent is None else self._summary_of(parent)
        self._head_timestamp = self._parent_timestamp(parent)
        log.info("reverted sidechain block #%d 0x%s", reverted.number, reverted.hash.hex()[:16])
        return block

    def block_at(self, number: int) -> dict[str, Any] | None:
        """Our block `number` while its undo record exists (the last UNDO_DEPTH blocks)."""
        try:
            record = self._undo_record(number)
        except BlockImportError:
            return None
        if record is None:
            return None
        block: dict[str, Any] = SignedBlockCodec.decode(record["block"])
        return block

    def _summary_of(self, header: dict[str, Any]) -> BlockSummary:
        return BlockSummary(header_hash(header), header["block_number"], header["parent_hash"])

    def _parent_timestamp(self, header: dict[str, Any] | None) -> int:
        block = None if header is None else self.block_at(header["block_number"])
        return -1 if block is None else int(block["block"]["block_data"]["timestamp"])
