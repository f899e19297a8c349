"""Building a block from the pool (authoring) and executing a received block (import).

Both run the same executive over an overlay of the head state. The author applies pool
transactions until the time, weight or length budget is used, then seals. Import re-executes a
block and rejects it unless its state root and extrinsics root match what execution produced.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from integritee.codec.scale import EnumValue, ScaleDecodeError
from integritee.crypto.keys import Keypair
from integritee.parentchain.extrinsic import ExtrinsicFormatError, encode_bare
from integritee.parentchain.primitives import Header
from integritee.storage.overlay import Overlay
from integritee.trie import Trie

from .blockchain import Block, Blockchain, apply_changes, extrinsics_root
from .consensus import pre_digest, seal_header
from .runtime import executive
from .runtime.construct import runtime_call
from .runtime.context import BlockContext
from .runtime.executive import ChainParams, InvalidTransaction
from .txpool import TxPool

log = logging.getLogger("integritee.node.builder")


class ImportError_(Exception):
    """A block that must not be imported, with the reason."""


@dataclass
class BuiltBlock:
    block: Block
    undo: dict[bytes, bytes | None]
    included: list[bytes] = field(default_factory=list)  # pool hashes included
    events: int = 0


def timestamp_inherent(now_ms: int) -> bytes:
    call = runtime_call().encode(EnumValue("Timestamp", EnumValue("set", {"now": now_ms})))
    return encode_bare(call)


def new_context(
    chain: Blockchain, params: ChainParams, parent: Header, parent_hash: bytes
) -> BlockContext:
    trie = chain.head_state
    overlay = Overlay(trie.get, trie.iter_prefix)
    return BlockContext(
        state=overlay,
        number=parent.number + 1,
        parent_hash=parent_hash,
        chain=params,
    )


def block_hash_lookup(chain: Blockchain):
    return chain.hash_at


def build_block(
    chain: Blockchain,
    params: ChainParams,
    pool: TxPool,
    author: Keypair,
    slot: int,
    now_ms: int,
    deadline: float,
) -> BuiltBlock:
    """Author a block on the best block; applies it to the head trie (revert with `undo`)."""
    parent = chain.best_header
    parent_hash = chain.best_hash
    ctx = new_context(chain, params, parent, parent_hash)
    executive.initialize_block(ctx)
    lookup = block_hash_lookup(chain)
    extrinsics: list[bytes] = []
    inherent = timestamp_inherent(now_ms)
    executive.apply_extrinsic(ctx, executive.decode(inherent), 0, lookup)
    extrinsics.append(inherent)
    included: list[bytes] = []
    weight = 0
    length = len(inherent)
    for tx in pool.iter_ready():
        if time.monotonic() > deadline:
            break
        xt = tx.valid.xt
        if weight + tx.valid.weight + executive.EXTRINSIC_BASE_WEIGHT > executive.MAX_NORMAL_WEIGHT:
            break
        if length + len(xt.raw) > executive.MAX_NORMAL_LENGTH:
            break
        try:
            outcome = executive.apply_extrinsic(
                ctx, xt, len(extrinsics), lookup, verify_signature=False
            )
        except InvalidTransaction as e:
            if e.kind == "Future":
                continue  # its predecessor was skipped; it stays for a later block
            pool.remove_invalid(xt.hash, str(e))
            continue
        extrinsics.append(xt.raw)
        included.append(xt.hash)
        weight += outcome.weight + executive.EXTRINSIC_BASE_WEIGHT
        length += len(xt.raw)
    executive.finalize_block(ctx, len(extrinsics))
    undo = chain.apply_state_changes(ctx.state.changes())
    header = Header(
        parent_hash=parent_hash,
        number=parent.number + 1,
        state_root=chain.state_root(),
        extrinsics_root=extrinsics_root(extrinsics),
        digest=[pre_digest(slot), *ctx.digest_logs],
    )
    seal_header(header, author)
    return BuiltBlock(Block(header, extrinsics), undo, included, len(ctx.events))


def execute_block(
    chain: Blockchain, params: ChainParams, block: Block
) -> dict[bytes, bytes | None]:
    """Execute a block on top of the best block and check its roots.

    On success the head trie holds the block's state (the undo set is returned); on failure the
    head trie is unchanged and ImportError_ says why.
    """
    header = block.header
    if header.parent_hash != chain.best_hash:
        raise ImportError_("block does not extend the best block")
    if header.number != chain.best_number + 1:
        raise ImportError_("wrong block number")
    return execute_on(chain, params, block, chain.best_header, chain.head_state)


def execute_block_anywhere(
    chain: Blockchain, params: ChainParams, block: Block
) -> tuple[Trie, dict[bytes, bytes | None]]:
    """Execute a block on its parent's state, which need not be the best block.

    Returns the trie holding the block's post-state (the head trie when the block extends the
    best block) and the undo set. On failure no trie the chain uses is changed.
    """
    header = block.header
    parent = chain.maybe_header(header.parent_hash)
    if parent is None:
        raise ImportError_("unknown parent block")
    if header.number != parent.number + 1:
        raise ImportError_("wrong block number")
    if header.parent_hash == chain.best_hash:
        trie = chain.head_state
    else:
        trie = chain.open_state(parent.state_root)
    return trie, execute_on(chain, params, block, parent, trie)


def execute_on(
    chain: Blockchain, params: ChainParams, block: Block, parent: Header, trie: Trie
) -> dict[bytes, bytes | None]:
    """Execute `block` (child of `parent`) on `trie`, which holds the parent's state.

    On success `trie` holds the block's state and the undo set is returned; on failure `trie` is
    unchanged and ImportError_ says why.
    """
    header = block.header
    if extrinsics_root(block.extrinsics) != header.extrinsics_root:
        raise ImportError_("extrinsics root mismatch")
    ctx = BlockContext(
        state=Overlay(trie.get, trie.iter_prefix),
        number=parent.number + 1,
        parent_hash=header.parent_hash,
        chain=params,
    )
    executive.initialize_block(ctx)
    lookup = chain.hash_lookup(header.parent_hash)
    try:
        for i, raw in enumerate(block.extrinsics):
            xt = executive.decode(raw)
            if i == 0 and (xt.signed or (xt.call.name, xt.call.value.name) != ("Timestamp", "set")):
                raise ImportError_("first extrinsic must be the timestamp inherent")
            executive.apply_extrinsic(ctx, xt, i, lookup)
        executive.finalize_block(ctx, len(block.extrinsics))
    except (InvalidTransaction, ExtrinsicFormatError, RuntimeError, ScaleDecodeError) as e:
        raise ImportError_(f"invalid extrinsic in block: {e}") from None
    runtime_logs = [d for d in header.digest if d.name not in ("PreRuntime", "Seal")]
    if runtime_logs != ctx.digest_logs:
        raise ImportError_("digest mismatch: the header's logs are not the runtime's")
    undo = apply_changes(trie, ctx.state.changes())
    if trie.root() != header.state_root:
        apply_changes(trie, undo)
        raise ImportError_("state root mismatch")
    return undo
