"""The chain database: blocks, forks, canonical numbers, finality, and the state trie, on RocksDB.

One RocksDB holds everything under single-byte prefixes. A block and its state changes (its new
trie nodes, header, body, number index, best pointer) go in one atomic write batch, so a crash
leaves either the whole block or nothing. The head state is a `Trie` kept warm in memory; older
states are read through a `Trie` opened at their root, from the same content-addressed nodes.

Every valid block is stored, also on a fork; the number index (`N`) holds the canonical chain,
the one ending at the best block. Fork choice is the longest chain among the descendants of the
finalized block (the first one seen wins a tie). A reorganization rewrites the number index from
the common ancestor up in the same batch as the block that causes it, and re-opens the head trie
at the new best block's state root. Finalized blocks are never retracted: a block that does not
descend from the finalized block is refused (`StaleBlock`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from integritee.codec.scale import Bytes, Vec, decode_compact, encode_compact
from integritee.crypto.hashing import blake2_256
from integritee.parentchain.primitives import Header, HeaderCodec
from integritee.storage.kv import KVStore, WriteBatch
from integritee.trie import Trie, ordered_trie_root

from .chain_spec import ChainSpec

log = logging.getLogger("integritee.node.chain")

P_HEADER = b"H"
P_BODY = b"B"
P_NUMBER = b"N"
P_JUSTIFICATION = b"J"
P_NODE = b"T"
K_BEST = b"M:best"
K_FINALIZED = b"M:finalized"
K_GENESIS = b"M:genesis"

STATE_VERSION = 1
Justifications = Vec(Bytes)  # stored form: one encoded GRANDPA justification


class ChainError(Exception):
    pass


class StaleBlock(ChainError):
    """A block on a fork that the finalized chain has already excluded."""


@dataclass
class TreeRoute:
    """How the canonical chain changed: blocks retracted (old best first) and enacted (ascending)."""

    retracted: list[bytes] = field(default_factory=list)
    enacted: list[bytes] = field(default_factory=list)

    @property
    def is_reorg(self) -> bool:
        return bool(self.retracted)


@dataclass
class StoredBlock:
    """The outcome of storing a block: its hash, whether it is now the best, the route if so."""

    hash: bytes
    is_best: bool
    route: TreeRoute
    finalized: bool = False


class _NodeStore:
    """Trie node lookups by hash from the database (the Trie keeps decoded nodes in memory)."""

    def __init__(self, db: KVStore) -> None:
        self._db = db

    def get(self, key: bytes, /) -> bytes | None:
        return self._db.get(P_NODE + key)


@dataclass
class Block:
    header: Header
    extrinsics: list[bytes]  # each the full extrinsic encoding (with its length prefix)

    @property
    def hash(self) -> bytes:
        return self.header.hash()

    def encode_body(self) -> bytes:
        return encode_compact(len(self.extrinsics)) + b"".join(self.extrinsics)


def decode_body(data: bytes) -> list[bytes]:
    """Split a body (Vec of length-prefixed extrinsics) into the extrinsics' full encodings."""
    count, pos = decode_compact(data, 0)
    out = []
    for _ in range(count):
        length, start = decode_compact(data, pos)
        end = start + length
        if end > len(data):
            raise ChainError("truncated block body")
        out.append(bytes(data[pos:end]))
        pos = end
    if pos != len(data):
        raise ChainError("trailing bytes in block body")
    return out


def number_key(number: int) -> bytes:
    return P_NUMBER + number.to_bytes(4, "big")


class Blockchain:
    def __init__(self, db: KVStore, spec: ChainSpec) -> None:
        self.db = db
        self.spec = spec
        self.nodes = _NodeStore(db)
        genesis_hash = db.get(K_GENESIS)
        if genesis_hash is None:
            self._init_genesis()
        else:
            self.genesis_hash = genesis_hash
            expected = self._genesis_header().hash()
            if expected != genesis_hash:
                raise ChainError(
                    f"database at this base path belongs to another chain (genesis 0x{genesis_hash.hex()}, "
                    f"spec gives 0x{expected.hex()})"
                )
        best = db.get(K_BEST)
        finalized = db.get(K_FINALIZED)
        assert best is not None and finalized is not None
        self.best_hash = best
        self.best_header = self.header(best)
        self.finalized_hash = finalized
        self.finalized_number = self.header(finalized).number
        self.head_state = Trie(self.nodes, self.best_header.state_root, STATE_VERSION)
        self._old_states: dict[bytes, Trie] = {}

    @classmethod
    def open(cls, path: Path, spec: ChainSpec) -> Blockchain:
        return cls(KVStore.open(path), spec)

    def close(self) -> None:
        self.db.close()

    # --- genesis
    def _genesis_trie(self) -> Trie:
        trie = Trie({}, None, STATE_VERSION)
        for k, v in self.spec.genesis.items():
            trie.set(k, v)
        return trie

    def _genesis_header(self) -> Header:
        root = self._genesis_trie().root()
        return Header(bytes(32), 0, root, extrinsics_root([]), [])

    def _init_genesis(self) -> None:
        trie = self._genesis_trie()
        root, nodes = trie.commit()
        header = Header(bytes(32), 0, root, extrinsics_root([]), [])
        h = header.hash()
        with self.db.batch() as batch:
            for node_hash, enc in nodes.items():
                batch.put(P_NODE + node_hash, enc)
            batch.put(P_HEADER + h, header.encode())
            batch.put(P_BODY + h, encode_compact(0))
            batch.put(number_key(0), h)
            batch.put(K_GENESIS, h)
            batch.put(K_BEST, h)
            batch.put(K_FINALIZED, h)
        self.genesis_hash = h
        log.info("initialised genesis 0x%s (state root 0x%s)", h.hex(), root.hex())

    # --- reads
    def header(self, block_hash: bytes) -> Header:
        raw = self.db.get(P_HEADER + block_hash)
        if raw is None:
            raise KeyError(block_hash)
        return HeaderCodec.decode(raw)

    def maybe_header(self, block_hash: bytes) -> Header | None:
        raw = self.db.get(P_HEADER + block_hash)
        return None if raw is None else HeaderCodec.decode(raw)

    def body(self, block_hash: bytes) -> list[bytes] | None:
        raw = self.db.get(P_BODY + block_hash)
        return None if raw is None else decode_body(raw)

    def justification(self, block_hash: bytes) -> bytes | None:
        return self.db.get(P_JUSTIFICATION + block_hash)

    def hash_at(self, number: int) -> bytes | None:
        if number < 0 or number > 0xFFFFFFFF:
            return None
        return self.db.get(number_key(number))

    @property
    def best_number(self) -> int:
        return self.best_header.number

    def state_at(self, block_hash: bytes | None) -> Trie:
        """The state trie after the given block (the best block when None)."""
        if block_hash is None or block_hash == self.best_hash:
            return self.head_state
        trie = self._old_states.get(block_hash)
        if trie is None:
            header = self.maybe_header(block_hash)
            if header is None:
                raise KeyError(block_hash)
            trie = Trie(self.nodes, header.state_root, STATE_VERSION)
            if len(self._old_states) > 16:
                self._old_states.pop(next(iter(self._old_states)))
            self._old_states[block_hash] = trie
        return trie

    def iter_state(self, trie: Trie) -> Callable[[bytes], Iterator[tuple[bytes, bytes]]]:
        return lambda prefix: trie.iter_prefix(prefix)

    # --- ancestry
    def is_canonical(self, block_hash: bytes, number: int) -> bool:
        return self.hash_at(number) == block_hash

    def ancestor_at(self, block_hash: bytes, number: int) -> bytes | None:
        """The hash of the ancestor (or the block itself) at height `number`, None if unknown."""
        header = self.maybe_header(block_hash)
        h = block_hash
        while header is not None and header.number > number:
            if self.is_canonical(h, header.number):
                return self.hash_at(number)
            h = header.parent_hash
            header = self.maybe_header(h)
        if header is None or header.number != number:
            return None
        return h

    def descends_from(self, block_hash: bytes, ancestor: bytes) -> bool:
        """Whether `ancestor` is `block_hash` or one of its ancestors (both known blocks)."""
        header = self.maybe_header(ancestor)
        return header is not None and self.ancestor_at(block_hash, header.number) == ancestor

    def descends_from_finalized(self, block_hash: bytes) -> bool:
        return self.ancestor_at(block_hash, self.finalized_number) == self.finalized_hash

    def hash_lookup(self, parent_hash: bytes) -> Callable[[int], bytes | None]:
        """Block hashes by number as seen from a block built on `parent_hash` (era checks)."""
        if parent_hash == self.best_hash:
            return self.hash_at
        parent = self.maybe_header(parent_hash)
        top = -1 if parent is None else parent.number

        def lookup(number: int) -> bytes | None:
            if number < 0 or number > top:
                return None
            return self.ancestor_at(parent_hash, number)

        return lookup

    def open_state(self, state_root: bytes) -> Trie:
        return Trie(self.nodes, state_root, STATE_VERSION)

    # --- writes
    def apply_state_changes(self, changes: dict[bytes, bytes | None]) -> dict[bytes, bytes | None]:
        """Apply changes to the head trie; returns the undo set (old values) for `revert_state`."""
        return apply_changes(self.head_state, changes)

    def revert_state(self, undo: dict[bytes, bytes | None]) -> None:
        self.apply_state_changes(undo)

    def state_root(self) -> bytes:
        return self.head_state.root()

    def commit_block(self, block: Block, justification: bytes | None = None) -> bytes:
        """Persist a block whose changes were applied to the head trie, in one atomic batch."""
        if block.header.parent_hash != self.best_hash:
            raise ChainError("commit_block needs a block on the best block; use store_block")
        return self.store_block(block, self.head_state, justification).hash

    def store_block(
        self, block: Block, state: Trie, justification: bytes | None = None
    ) -> StoredBlock:
        """Persist a block and its post-state `state` (a trie with the block's changes applied).

        The block becomes the best block when it is longer than the best chain, or when it comes
        with a justification (finality decides). With a justification it is also finalized.
        Raises StaleBlock when the block does not descend from the finalized block.
        """
        t0 = time.perf_counter()
        header = block.header
        if self.maybe_header(header.parent_hash) is None:
            raise ChainError("unknown parent block")
        if header.number <= self.finalized_number or not self.descends_from_finalized(
            header.parent_hash
        ):
            raise StaleBlock(f"block #{header.number} is not a descendant of the finalized block")
        root, nodes = state.commit()
        if root != header.state_root:
            raise ChainError("state root mismatch at commit")
        h = block.hash
        becomes_best = header.number > self.best_number or justification is not None
        route = TreeRoute()
        with self.db.batch() as batch:
            for node_hash, enc in nodes.items():
                batch.put(P_NODE + node_hash, enc)
            batch.put(P_HEADER + h, header.encode())
            batch.put(P_BODY + h, block.encode_body())
            if becomes_best:
                route = self._write_route(batch, h, header)
                batch.put(K_BEST, h)
            if justification is not None:
                batch.put(P_JUSTIFICATION + h, justification)
                batch.put(K_FINALIZED, h)
        if becomes_best:
            self.best_hash = h
            self.best_header = header
            self.head_state = state
        if justification is not None:
            self.finalized_hash = h
            self.finalized_number = header.number
        log.debug(
            "stored block #%d in %.1f ms (%d nodes)%s",
            header.number,
            (time.perf_counter() - t0) * 1e3,
            len(nodes),
            " (reorg)" if route.is_reorg else "",
        )
        return StoredBlock(h, becomes_best, route, justification is not None)

    def _write_route(self, batch: WriteBatch, new_best: bytes, header: Header) -> TreeRoute:
        """Point the number index at the chain ending in `new_best` (within `batch`)."""
        enacted: list[bytes] = [new_best]
        h = header.parent_hash
        number = header.number - 1
        while not self.is_canonical(h, number):
            enacted.append(h)
            parent = self.header(h)
            h = parent.parent_hash
            number -= 1
        if number < self.finalized_number:
            raise StaleBlock("the new best chain would retract a finalized block")
        retracted = [
            rh for n in range(self.best_number, number, -1) if (rh := self.hash_at(n)) is not None
        ]
        enacted.reverse()
        for i, eh in enumerate(enacted):
            batch.put(number_key(number + 1 + i), eh)
        for n in range(header.number + 1, self.best_number + 1):
            batch.delete(number_key(n))
        return TreeRoute(retracted, enacted)

    def finalize(self, block_hash: bytes, justification: bytes) -> TreeRoute:
        """Finalize a stored block (and its ancestors); makes it canonical when it is not."""
        header = self.header(block_hash)
        if header.number < self.finalized_number or not self.descends_from(
            block_hash, self.finalized_hash
        ):
            raise StaleBlock(f"block #{header.number} conflicts with the finalized chain")
        route = TreeRoute()
        new_best = not self.is_canonical(block_hash, header.number)
        with self.db.batch() as batch:
            if new_best:
                route = self._write_route(batch, block_hash, header)
                batch.put(K_BEST, block_hash)
            batch.put(P_JUSTIFICATION + block_hash, justification)
            batch.put(K_FINALIZED, block_hash)
        if new_best:
            self.best_hash = block_hash
            self.best_header = header
            self.head_state = self.open_state(header.state_root)
        self.finalized_hash = block_hash
        self.finalized_number = header.number
        return route


def apply_changes(trie: Trie, changes: dict[bytes, bytes | None]) -> dict[bytes, bytes | None]:
    """Apply changes to a trie; returns the undo set (the old values)."""
    undo: dict[bytes, bytes | None] = {}
    for k, v in changes.items():
        undo[k] = trie.get(k)
        if v is None:
            trie.delete(k)
        else:
            trie.set(k, v)
    return undo


def extrinsics_root(extrinsics: list[bytes]) -> bytes:
    # Substrate builds the extrinsics root with state version 0 (unless system_version >= 2).
    return ordered_trie_root(extrinsics, 0)


def extrinsic_hash(raw: bytes) -> bytes:
    return blake2_256(raw)
