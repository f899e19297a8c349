"""Checking read proofs (the node sets of Substrate's `state_getReadProof`) against a root.

`verify_proof` looks every key up in the trie described by the proof's nodes, starting from the
root hash, and is strict in the way Substrate's checkers for untrusted proofs are
(`sp_trie::StorageProof::new_with_duplicate_nodes_check` plus `AccessedNodesTracker`, as used by
the bridges' `StorageProofChecker`): duplicate nodes and nodes that no lookup used are rejected,
not ignored. (The plain `read_proof_check` ignores unused nodes; a strict checker turns any
tampering with a proof into an error: a changed node no longer hashes to what its parent
references, so it is both unused and missing.)

Consequently the key set must be the one the proof was made for; verifying a subset of those keys
fails with "unused nodes". For the empty trie an empty proof or `[0x00]` is accepted.
"""

from __future__ import annotations

from collections.abc import Iterable

from integritee.trie.errors import InvalidProof, TrieError
from integritee.trie.nibbles import to_nibbles
from integritee.trie.node import EMPTY_NODE, EMPTY_ROOT, HASH_LENGTH, Node, blake2_256, decode_node


class _ProofDb:
    def __init__(self, proof: Iterable[bytes]) -> None:
        self.nodes: dict[bytes, bytes] = {}
        for item in proof:
            data = bytes(item)
            node_hash = blake2_256(data)
            if node_hash in self.nodes:
                raise InvalidProof(f"duplicate node 0x{node_hash.hex()} in proof")
            self.nodes[node_hash] = data
        self.used: set[bytes] = set()
        self.decoded: dict[bytes, Node] = {}

    def fetch(self, node_hash: bytes, what: str) -> bytes:
        data = self.nodes.get(node_hash)
        if data is None:
            raise InvalidProof(f"proof is incomplete: {what} 0x{node_hash.hex()} is missing")
        self.used.add(node_hash)
        return data

    def node(self, node_hash: bytes) -> Node:
        node = self.decoded.get(node_hash)
        if node is None:
            data = self.fetch(node_hash, "node")
            try:
                decoded = decode_node(data)
            except TrieError as e:
                raise InvalidProof(f"malformed node 0x{node_hash.hex()}: {e}") from None
            if decoded is None:
                raise InvalidProof("the empty node cannot appear inside a trie")
            node = self.decoded[node_hash] = decoded
        else:
            self.used.add(node_hash)
        return node

    def lookup(self, root: bytes, key: bytes) -> bytes | None:
        path = to_nibbles(key)
        end_of_key = len(path)
        node = self.node(root)
        pos = 0
        while True:
            partial = node.partial
            end = pos + len(partial)
            if path[pos:end] != partial:
                return None
            if end == end_of_key:
                if node.vhash is not None:
                    return self.fetch(node.vhash, "hashed value")
                return node.value
            children = node.children
            if children is None:
                return None
            child = children[path[end]]
            if child is None:
                return None
            node = self.node(child) if type(child) is bytes else child  # type: ignore[assignment]
            pos = end + 1


def verify_proof(
    root: bytes, proof: Iterable[bytes], keys: Iterable[bytes]
) -> dict[bytes, bytes | None]:
    """Values of `keys` (None when absent) proven by `proof` against `root`.

    Raises `InvalidProof` when a needed node or hashed value is missing, a node is malformed, a
    node appears twice, or the proof holds nodes none of the lookups used.
    """
    root = bytes(root)
    if len(root) != HASH_LENGTH:
        raise InvalidProof(f"a state root is {HASH_LENGTH} bytes, got {len(root)}")
    db = _ProofDb(proof)
    result: dict[bytes, bytes | None] = {}
    if root == EMPTY_ROOT:
        for key in keys:
            result[bytes(key)] = None
        if db.nodes and db.nodes != {EMPTY_ROOT: EMPTY_NODE}:
            raise InvalidProof("proof for the empty trie holds nodes")
        return result
    for key in keys:
        key = bytes(key)
        result[key] = db.lookup(root, key)
    if len(db.used) != len(db.nodes):
        unused = len(db.nodes) - len(db.used)
        raise InvalidProof(f"proof holds {unused} node(s) not needed for the keys")
    return result
