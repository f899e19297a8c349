"""The running node: chain, pool, Aura authoring, finality, and the notifications they feed.

Everything that touches the chain state runs on the asyncio event loop, one step at a time, so
RPC handlers see a consistent head. Authoring yields a block per slot when this node's key is the
slot's author; with a single authority the author also finalizes its block with a GRANDPA
justification (multi-authority finality votes over the network).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integritee.crypto.keys import Keypair
from integritee.parentchain import finality
from integritee.parentchain.primitives import Header
from integritee.storage.overlay import Overlay

from . import consensus
from .block_builder import ImportError_, build_block, execute_block
from .blockchain import Block, Blockchain
from .chain_spec import ChainSpec
from .runtime import executive
from .runtime.context import BlockContext
from .runtime.executive import ChainParams, InvalidTransaction
from .runtime.pallets import consensus as consensus_pallets
from .runtime.pallets import system as system_pallet
from .txpool import PoolError, PoolLimits, TxPool, Watcher, invalid_error

log = logging.getLogger("integritee.node")


@dataclass
class NodeConfig:
    spec: ChainSpec
    base_path: Path
    block_time_ms: int = 6000
    authority: Keypair | None = None  # sr25519 Aura key
    finality_key: Keypair | None = None  # ed25519 GRANDPA key
    pool_limits: PoolLimits = field(default_factory=PoolLimits)
    name: str = "integritee-node"


HeadListener = Callable[[Header, bytes], None]


class Node:
    def __init__(self, config: NodeConfig) -> None:
        self.config = config
        self.chain = Blockchain.open(
            config.base_path / "chains" / config.spec.id / "db", config.spec
        )
        self.pool = TxPool(config.pool_limits)
        self.params = ChainParams(
            self.chain.genesis_hash, minimum_period_ms=max(1, config.block_time_ms // 2)
        )
        self.new_head_listeners: list[HeadListener] = []
        self.finalized_listeners: list[HeadListener] = []
        self.block_listeners: list[Callable[[Block, bytes, dict[bytes, bytes | None]], None]] = []
        # Watchers of included transactions wait here for the finality of their block.
        self._awaiting_finality: dict[bytes, list[tuple[bytes, list[Watcher]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.last_import_seconds = 0.0
        self.blocks_authored = 0
        log.info(
            "chain %s, genesis 0x%s, best #%d 0x%s, finalized #%d",
            config.spec.name,
            self.chain.genesis_hash.hex(),
            self.chain.best_number,
            self.chain.best_hash.hex(),
            self.chain.finalized_number,
        )

    # --- state access helpers
    def context_at_best(self) -> BlockContext:
        trie = self.chain.head_state
        return BlockContext(
            state=Overlay(trie.get, trie.iter_prefix),
            number=self.chain.best_number + 1,
            parent_hash=self.chain.best_hash,
            chain=self.params,
        )

    def context_at(self, block_hash: bytes) -> BlockContext:
        trie = self.chain.state_at(block_hash)
        header = self.chain.header(block_hash)
        return BlockContext(
            state=Overlay(trie.get, trie.iter_prefix),
            number=header.number + 1,
            parent_hash=block_hash,
            chain=self.params,
        )

    def account_nonce(self, who: bytes) -> int:
        return system_pallet.Account.get(self.chain.head_state, who).nonce

    def next_index(self, who: bytes) -> int:
        """The account's nonce counting its transactions waiting in the pool (system_accountNextIndex)."""
        nonce = self.account_nonce(who)
        while self.pool.by_tag.get(who + nonce.to_bytes(4, "little")) is not None:
            nonce += 1
        return nonce

    def authorities(self) -> list[bytes]:
        return consensus_pallets.AuraAuthorities.get(self.chain.head_state)

    def grandpa_authorities(self) -> list[bytes]:
        return [a for a, _w in consensus_pallets.GrandpaAuthorities.get(self.chain.head_state)]

    # --- transactions
    def submit(self, raw: bytes, watcher: Watcher | None = None) -> bytes:
        from integritee.crypto.hashing import blake2_256

        h = blake2_256(raw)
        self.pool.check_new(h)
        ctx = self.context_at_best()
        try:
            valid = executive.validate_transaction(ctx, raw, self.chain.hash_at)
        except InvalidTransaction as e:
            if e.kind in ("BadProof", "Call", "BadSigner"):
                self.pool.ban(h)
            raise invalid_error(e) from None
        assert valid.xt.signer is not None
        self.pool.insert(valid, self.account_nonce(valid.xt.signer), watcher)
        log.debug("transaction 0x%s accepted into the pool", h.hex())
        return h

    # --- authoring
    async def start(self) -> None:
        self._task = asyncio.create_task(self._author_loop(), name="aura")

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self.chain.close()
        log.info(
            "node stopped at best #%d, finalized #%d",
            self.chain.best_number,
            self.chain.finalized_number,
        )

    async def _author_loop(self) -> None:
        key = self.config.authority
        if key is None:
            log.info("not an authority: following only")
            await self._stopping.wait()
            return
        duration = self.config.block_time_ms
        last_slot = (
            consensus.block_slot(self.chain.best_header) if self.chain.best_number > 0 else -1
        )
        while not self._stopping.is_set():
            now_ms = int(time.time() * 1000)
            slot = now_ms // duration
            if slot <= last_slot:
                await asyncio.sleep(((last_slot + 1) * duration - now_ms) / 1000)
                continue
            author = consensus.slot_author(slot, self.authorities())
            if author == key.public_key:
                try:
                    self._author(slot, deadline=time.monotonic() + duration * 0.5 / 1000)
                except Exception:
                    log.exception("authoring in slot %d failed", slot)
            last_slot = slot
            await asyncio.sleep(0)

    def _author(self, slot: int, deadline: float) -> None:
        key = self.config.authority
        assert key is not None
        t0 = time.perf_counter()
        built = build_block(
            self.chain,
            self.params,
            self.pool,
            key,
            slot,
            slot * self.config.block_time_ms,
            deadline,
        )
        block = built.block
        block_hash = block.hash
        justification = self._own_justification(block.header, block_hash)
        self.chain.commit_block(block, justification)
        self.last_import_seconds = time.perf_counter() - t0
        self.blocks_authored += 1
        log.info(
            "Prepared block #%d 0x%s with %d extrinsics in %.0f ms%s",
            block.header.number,
            block_hash.hex()[:16],
            len(block.extrinsics),
            self.last_import_seconds * 1000,
            ", finalized" if justification else "",
        )
        self._after_import(
            block, block_hash, built.undo, built.included, finalized=justification is not None
        )

    def _own_justification(self, header: Header, block_hash: bytes) -> bytes | None:
        authorities = self.grandpa_authorities()
        key = self.config.finality_key
        if key is None or authorities != [key.public_key]:
            return None
        set_id = consensus_pallets.CurrentSetId.get(self.chain.head_state)
        return finality.make_justification(block_hash, header.number, [key], header.number, set_id)

    # --- import of blocks from elsewhere (peers; tests)
    def import_block(self, block: Block, justification: bytes | None = None) -> bytes:
        t0 = time.perf_counter()
        consensus.check_seal(
            block.header, self.authorities(), self.config.block_time_ms, int(time.time() * 1000)
        )
        if justification is not None:
            finality.verify_justification(
                justification,
                block.hash,
                block.header.number,
                self.grandpa_authorities(),
                consensus_pallets.CurrentSetId.get(self.chain.head_state),
            )
        undo = execute_block(self.chain, self.params, block)
        block_hash = self.chain.commit_block(block, justification)
        self.last_import_seconds = time.perf_counter() - t0
        log.info("Imported #%d 0x%s", block.header.number, block_hash.hex()[:16])
        included = [xt_hash for xt_hash in map(_hash, block.extrinsics) if xt_hash in self.pool]
        self._after_import(block, block_hash, undo, included, finalized=justification is not None)
        return block_hash

    def _after_import(
        self,
        block: Block,
        block_hash: bytes,
        changes: dict[bytes, bytes | None],
        included: list[bytes],
        finalized: bool,
    ) -> None:
        watchers = self.pool.on_block(block_hash, included, self.account_nonce)
        if watchers:
            self._awaiting_finality[block_hash] = list(watchers.items())
        changed = {k: self.chain.head_state.get(k) for k in changes}
        for listener in list(self.block_listeners):
            _safe(listener, block, block_hash, changed)
        for head_listener in list(self.new_head_listeners):
            _safe(head_listener, block.header, block_hash)
        if finalized:
            self._on_finalized(block.header, block_hash)

    def _on_finalized(self, header: Header, block_hash: bytes) -> None:
        # A transaction's "finalized" status follows its "inBlock" by at least one finality event:
        # clients (polkadot.js) fetch the inBlock block's events first and drop an update that
        # overtakes that fetch. The chain's own finality (heads, subscriptions) is not delayed.
        pending = [h for h in self._awaiting_finality if h != block_hash and self._is_final(h)]
        for h in pending:
            for _xt_hash, ws in self._awaiting_finality.pop(h):
                for w in ws:
                    _safe(w, {"finalized": "0x" + h.hex()})
        for listener in list(self.finalized_listeners):
            _safe(listener, header, block_hash)

    def _is_final(self, block_hash: bytes) -> bool:
        header = self.chain.maybe_header(block_hash)
        return (
            header is not None
            and header.number <= self.chain.finalized_number
            and self.chain.hash_at(header.number) == block_hash
        )


def _hash(raw: bytes) -> bytes:
    from integritee.crypto.hashing import blake2_256

    return blake2_256(raw)


def _safe(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("listener failed")


__all__ = ["ImportError_", "PoolError", "Node", "NodeConfig"]
