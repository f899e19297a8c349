"""Substrate's base-16 Patricia-Merkle trie (state versions 0 and 1, blake2_256).

`Trie` is the persistent, content-addressed state trie over a `NodeStore`; `trie_root` and
`ordered_trie_root` compute one-shot roots (storage, extrinsics); `Trie.read_proof` and
`verify_proof` make and check read proofs; `encode_node`/`decode_node` are the node codec.
"""

from integritee.trie.errors import InvalidProof, MissingNodeError, TrieError
from integritee.trie.nibbles import from_nibbles, to_nibbles
from integritee.trie.node import (
    EMPTY_NODE,
    EMPTY_ROOT,
    HASHED_VALUE_THRESHOLD,
    MAX_KEY_LENGTH,
    Node,
    decode_node,
    encode_node,
)
from integritee.trie.proof import verify_proof
from integritee.trie.trie import NodeStore, Trie, ordered_trie_root, trie_root

__all__ = [
    "EMPTY_NODE",
    "EMPTY_ROOT",
    "HASHED_VALUE_THRESHOLD",
    "MAX_KEY_LENGTH",
    "InvalidProof",
    "MissingNodeError",
    "Node",
    "NodeStore",
    "Trie",
    "TrieError",
    "decode_node",
    "encode_node",
    "from_nibbles",
    "ordered_trie_root",
    "to_nibbles",
    "trie_root",
    "verify_proof",
]
