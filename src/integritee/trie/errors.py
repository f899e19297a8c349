"""Exceptions raised by the trie: malformed nodes, missing nodes, invalid proofs."""

from __future__ import annotations


class TrieError(ValueError):
    """A malformed node encoding, an unsupported key or another trie failure."""


class MissingNodeError(TrieError):
    """A node (or hashed value) referenced by hash is not in the node store."""

    def __init__(self, node_hash: bytes, what: str = "trie node") -> None:
        super().__init__(f"{what} 0x{node_hash.hex()} is not in the node store")
        self.node_hash = node_hash


class InvalidProof(TrieError):
    """A read proof is incomplete, malformed, has unused nodes or does not match the root."""
