"""The running node: chain, pool, Aura authoring, finality, and the notifications they feed.

Everything that touches the chain state runs on the asyncio event loop, one step at a time, so
RPC handlers see a consistent head. Authoring yields a block per slot when this node's key is the
slot's author (not while the node is far behind its peers); with a single authority the author
also finalizes its block with a GRANDPA justification, with several the finality gadget
(`finality_gadget.py`) votes over the network.

`import_block` is the one door for blocks from elsewhere: it checks the Aura seal against the
parent's authorities, the slot order, a justification if one comes along, executes the block on
its parent's state and compares the roots, and only then stores it (on a fork if it does not
win the fork choice). Its exceptions say whether the sender misbehaved (`BadBlock`) or not.
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
from .block_builder import ImportError_, build_block, execute_block_anywhere
from .blockchain import Block, Blockchain, StaleBlock, TreeRoute, extrinsic_hash
from .chain_spec import ChainSpec
from .finality_gadget import FinalityGadget
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
    # Author even without peers (dev chains); otherwise an authority with a network waits for a
    # peer, so that a restarted authority does not build on its stale head (as Substrate).
    force_authoring: bool = True


HeadListener = Callable[[Header, bytes], None]
# (block, hash, is_best): every block stored, authored or imported, also on forks.
ImportListener = Callable[[Block, bytes, bool], None]


class BlockImportError(Exception):
    """A block that was not imported."""


class UnknownParent(BlockImportError):
    """The parent is not known (yet): fetch the ancestry first. Not the sender's fault."""


class BadBlock(BlockImportError):
    """An invalid block (seal, slot, execution, roots, justification): the sender misbehaves."""


class UnknownBlock(BlockImportError):
    """A justification for a block that is not known (yet)."""


class JustificationDeferred(UnknownBlock):
    """A justification beyond an authority set change that is not finalized yet: it can only be
    checked (against the next set) once the change's block is final. Not the sender's fault."""


@dataclass
class ImportOutcome:
    hash: bytes
    status: str  # "best", "fork" or "known"
    finalized: bool = False


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
        self.import_listeners: list[ImportListener] = []
        self.tx_listeners: list[Callable[[bytes], None]] = []  # raw extrinsics new in the pool
        # Set by the network: whether the node is far behind its peers (no authoring then).
        self.sync_oracle: Callable[[], bool] | None = None
        self.network: Any = None
        self._finality_set_cache: tuple[bytes, list[bytes], int] | None = None
        self.finality = FinalityGadget(self, config.finality_key, config.block_time_ms)
        self.block_listeners: list[Callable[[Block, bytes, dict[bytes, bytes | None]], None]] = []
        # Watchers of included transactions wait here for the finality of their block.
        self._awaiting_finality: dict[bytes, list[tuple[bytes, list[Watcher]]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self.last_import_seconds = 0.0
        self.blocks_authored = 0
        self.starting_block = self.chain.best_number
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

    def finality_set(self) -> tuple[list[bytes], int]:
        """The GRANDPA authorities and set id that finalize the next blocks (finalized state)."""
        cached = self._finality_set_cache
        fin = self.chain.finalized_hash
        if cached is None or cached[0] != fin:
            state = self.chain.state_at(fin)
            authorities = [a for a, _w in consensus_pallets.GrandpaAuthorities.get(state)]
            cached = (fin, authorities, consensus_pallets.CurrentSetId.get(state))
            self._finality_set_cache = cached
        return cached[1], cached[2]

    def set_change_block(self, target_hash: bytes, target_number: int) -> tuple[bytes, int] | None:
        """The block enacting the next authority set change, if it is above the finalized block
        and at or below the target (on the target's chain): finality must stop there, because
        the change's block is the last the current set finalizes."""
        chain = self.chain
        fin = chain.finalized_number
        enactments: list[int] = []
        pending = consensus_pallets.PendingChange.get(chain.state_at(chain.finalized_hash))
        if pending is not None and pending["scheduled_at"] <= fin:
            enactments.append(pending["scheduled_at"] + pending["delay"])
        h, n = target_hash, target_number
        while n > fin:
            header = chain.maybe_header(h)
            if header is None:
                return None
            signalled = consensus_pallets.signalled_change(header.digest)
            if signalled is not None:
                enactments.append(n + signalled[1])
            h, n = header.parent_hash, n - 1
        due = [e for e in enactments if fin < e <= target_number]
        if not due:
            return None
        number = min(due)
        at = chain.ancestor_at(target_hash, number)
        return None if at is None else (at, number)

    def is_major_syncing(self) -> bool:
        return self.sync_oracle is not None and self.sync_oracle()

    def may_author(self) -> bool:
        if self.is_major_syncing():
            return False
        offline = self.network is not None and not self.network.peers
        return self.config.force_authoring or not offline

    # --- transactions
    def submit(self, raw: bytes, watcher: Watcher | None = None) -> bytes:
        h = extrinsic_hash(raw)
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
        for listener in list(self.tx_listeners):
            _safe(listener, raw)
        return h

    # --- authoring
    async def start(self) -> None:
        self._task = asyncio.create_task(self._author_loop(), name="aura")
        self.finality.start()

    async def stop(self) -> None:
        self._stopping.set()
        await self.finality.stop()
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
            if author == key.public_key and not self.may_author():
                log.debug("slot %d: not authoring while syncing or offline", slot)
            elif author == key.public_key:
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
        for listener in list(self.import_listeners):
            _safe(listener, block, block_hash, True)

    def _own_justification(self, header: Header, block_hash: bytes) -> bytes | None:
        """The sole authority's justification of the block it just built (not yet stored)."""
        key = self.config.finality_key
        authorities, set_id = self.finality_set()
        if key is None or authorities != [key.public_key]:
            return None
        if header.number > 1 and self.set_change_block(header.parent_hash, header.number - 1):
            return None  # beyond a set change this set has not finalized
        return finality.make_justification(block_hash, header.number, [key], header.number, set_id)

    # --- import of blocks from elsewhere (peers; tests)
    def import_block(self, block: Block, justification: bytes | None = None) -> ImportOutcome:
        """Verify and store a block from elsewhere (see the module docstring)."""
        t0 = time.perf_counter()
        header = block.header
        block_hash = block.hash
        chain = self.chain
        if chain.maybe_header(block_hash) is not None:
            finalized = False
            if justification is not None and header.number > chain.finalized_number:
                try:
                    finalized = self.apply_justification(block_hash, justification)
                except finality.FinalityError as e:
                    raise BadBlock(f"bad justification: {e}") from None
                except JustificationDeferred:
                    pass  # beyond a set change not final yet: finality comes by another way
            return ImportOutcome(block_hash, "known", finalized)
        parent = chain.maybe_header(header.parent_hash)
        if parent is None:
            raise UnknownParent(f"block #{header.number}: unknown parent")
        if header.number != parent.number + 1:
            raise BadBlock(f"block #{header.number} on parent #{parent.number}")
        if header.number <= chain.finalized_number or not chain.descends_from_finalized(
            header.parent_hash
        ):
            raise StaleBlock(f"block #{header.number} is not on the finalized chain")
        parent_state = chain.state_at(header.parent_hash)
        try:
            consensus.check_seal(
                header,
                consensus_pallets.AuraAuthorities.get(parent_state),
                self.config.block_time_ms,
                int(time.time() * 1000),
            )
            if parent.number > 0 and consensus.block_slot(header) <= consensus.block_slot(parent):
                raise consensus.ConsensusError("slot not after the parent's slot")
        except (consensus.ConsensusError, ValueError) as e:  # ValueError: a malformed digest
            raise BadBlock(f"block #{header.number}: {e}") from None
        if justification is not None and self.set_change_block(header.parent_hash, parent.number):
            justification = None  # signed by a set we do not know yet: finality comes later
        if justification is not None:
            authorities, set_id = self.finality_set()
            try:
                finality.verify_justification(
                    justification, block_hash, header.number, authorities, set_id
                )
            except finality.FinalityError as e:
                raise BadBlock(f"block #{header.number}: bad justification: {e}") from None
        try:
            trie, undo = execute_block_anywhere(chain, self.params, block)
        except ImportError_ as e:
            raise BadBlock(f"block #{header.number}: {e}") from None
        except Exception as e:  # whatever a crafted block makes the runtime do, it is invalid
            raise BadBlock(f"block #{header.number}: execution failed: {e!r}") from None
        try:
            stored = chain.store_block(block, trie, justification)
        except Exception:
            if trie is chain.head_state:
                chain.revert_state(undo)
            raise
        self.last_import_seconds = time.perf_counter() - t0
        if stored.is_best:
            log.info(
                "Imported #%d 0x%s%s%s",
                header.number,
                block_hash.hex()[:16],
                f" (reorg, {len(stored.route.retracted)} retracted)"
                if stored.route.is_reorg
                else "",
                ", finalized" if stored.finalized else "",
            )
            included = self._on_route(stored.route, block_hash)
            self._after_import(block, block_hash, undo, included, finalized=stored.finalized)
        else:
            log.info("Imported fork block #%d 0x%s", header.number, block_hash.hex()[:16])
        for listener in list(self.import_listeners):
            _safe(listener, block, block_hash, stored.is_best)
        self.finality.on_block_imported()
        return ImportOutcome(block_hash, "best" if stored.is_best else "fork", stored.finalized)

    def apply_justification(self, block_hash: bytes, justification: bytes) -> bool:
        """Finalize a known block with a justification; False when it is final already.

        Raises finality.FinalityError for a justification that does not prove finality,
        UnknownBlock when the block is not known, StaleBlock when it conflicts with finality.
        """
        header = self.chain.maybe_header(block_hash)
        if header is None:
            raise UnknownBlock("justification for an unknown block")
        if header.number <= self.chain.finalized_number:
            if self.chain.is_canonical(block_hash, header.number):
                return False
            raise StaleBlock(f"block #{header.number} conflicts with the finalized chain")
        cap = self.set_change_block(block_hash, header.number)
        if cap is not None and cap[0] != block_hash:
            raise JustificationDeferred(
                f"block #{header.number} is beyond the authority set change at #{cap[1]}"
            )
        authorities, set_id = self.finality_set()
        finality.verify_justification(justification, block_hash, header.number, authorities, set_id)
        route = self.chain.finalize(block_hash, justification)
        if route.enacted:
            log.info("finality moved the best block to #%d", header.number)
            body = self.chain.body(block_hash) or []
            included = self._on_route(route, block_hash)
            self._after_import(Block(header, body), block_hash, {}, included, finalized=False)
        self._on_finalized(header, block_hash)
        return True

    def _on_route(self, route: TreeRoute, new_best: bytes) -> list[bytes]:
        """Pool upkeep for a best-chain change; returns the new best block's pool transactions."""
        for h in route.retracted:
            for watcher_list in self._awaiting_finality.pop(h, []):
                for w in watcher_list[1]:
                    _safe(w, {"retracted": "0x" + h.hex()})
        for h in route.retracted:
            for raw in (self.chain.body(h) or [])[1:]:
                # Back to the pool, unless the new chain has it already or it is no longer valid.
                with contextlib.suppress(Exception):
                    self.submit(raw)
        for h in route.enacted:
            if h == new_best:
                continue
            body = self.chain.body(h) or []
            included = [x for x in map(extrinsic_hash, body) if x in self.pool]
            self.pool.on_block(h, included, self.account_nonce)
        body = self.chain.body(new_best) or []
        return [x for x in map(extrinsic_hash, body) if x in self.pool]

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


def _safe(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("listener failed")


__all__ = ["ImportError_", "PoolError", "Node", "NodeConfig"]
