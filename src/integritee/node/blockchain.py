"""The chain database: blocks, canonical numbers, finality, and the state trie, on RocksDB.

One RocksDB holds everything under single-byte prefixes. A block and its state changes (its new
trie nodes, header, body, number index, best pointer) go in one atomic write batch, so a crash
leaves either the whole block or nothing. The head state is a `Trie` kept warm in memory; older
states are read through a `Trie` opened at their root, from the same content-addressed nodes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from integritee.codec.scale import Bytes, Vec, decode_compact, encode_compact
from integritee.crypto.hashing import blake2_256
from integritee.parentchain.primitives import Header, HeaderCodec
from integritee.storage.kv import KVStore
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


class _NodeStore:
    """Trie node lookups by hash from the database, with a small cache for hot nodes."""

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

    # --- writes
    def apply_state_changes(self, changes: dict[bytes, bytes | None]) -> dict[bytes, bytes | None]:
        """Apply changes to the head trie; returns the undo set (old values) for `revert_state`."""
        undo: dict[bytes, bytes | None] = {}
        trie = self.head_state
        for k, v in changes.items():
            undo[k] = trie.get(k)
            if v is None:
                trie.delete(k)
            else:
                trie.set(k, v)
        return undo

    def revert_state(self, undo: dict[bytes, bytes | None]) -> None:
        self.apply_state_changes(undo)

    def state_root(self) -> bytes:
        return self.head_state.root()

    def commit_block(self, block: Block, justification: bytes | None = None) -> bytes:
        """Persist a block whose changes were applied to the head trie, in one atomic batch."""
        t0 = time.perf_counter()
        root, nodes = self.head_state.commit()
        if root != block.header.state_root:
            raise ChainError("state root mismatch at commit")
        h = block.hash
        with self.db.batch() as batch:
            for node_hash, enc in nodes.items():
                batch.put(P_NODE + node_hash, enc)
            batch.put(P_HEADER + h, block.header.encode())
            batch.put(P_BODY + h, block.encode_body())
            batch.put(number_key(block.header.number), h)
            batch.put(K_BEST, h)
            if justification is not None:
                batch.put(P_JUSTIFICATION + h, justification)
                batch.put(K_FINALIZED, h)
        self.best_hash = h
        self.best_header = block.header
        if justification is not None:
            self.finalized_hash = h
            self.finalized_number = block.header.number
        log.debug(
            "committed block #%d in %.1f ms (%d nodes)",
            block.header.number,
            (time.perf_counter() - t0) * 1e3,
            len(nodes),
        )
        return h

    def finalize(self, block_hash: bytes, justification: bytes) -> None:
        header = self.header(block_hash)
        with self.db.batch() as batch:
            batch.put(P_JUSTIFICATION + block_hash, justification)
            batch.put(K_FINALIZED, block_hash)
        self.finalized_hash = block_hash
        self.finalized_number = header.number


def extrinsics_root(extrinsics: list[bytes]) -> bytes:
    # Substrate builds the extrinsics root with state version 0 (unless system_version >= 2).
    return ordered_trie_root(extrinsics, 0)


def extrinsic_hash(raw: bytes) -> bytes:
    return blake2_256(raw)
