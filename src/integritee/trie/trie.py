"""The persistent, content-addressed Substrate trie (`Trie`) and one-shot root helpers.

A `Trie` reads nodes lazily from a `NodeStore` (anything with `get(hash) -> bytes | None`: a dict,
later the RocksDB store) and keeps the decoded nodes it touched in memory. A write changes only
the nodes on the written key's path and clears their cached encodings, so `root()` and `commit()`
re-encode and re-hash just those paths: their cost follows the number of changed keys times the
depth, not the size of the state. Reading an older state is `Trie(store, old_root)`.

Deleting restores the canonical shape (a branch left with one child and no value merges with that
child, a branch left with only its value becomes a leaf), so inserting then deleting keys returns
to exactly the root of never having inserted them.

Not thread-safe; do not modify a trie while iterating over it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Protocol

from integritee.codec.scale import encode_compact
from integritee.trie.errors import MissingNodeError, TrieError
from integritee.trie.nibbles import common_prefix_length, from_nibbles, to_nibbles
from integritee.trie.node import (
    EMPTY_NODE,
    EMPTY_ROOT,
    HASH_LENGTH,
    HASHED_VALUE_THRESHOLD,
    MAX_KEY_LENGTH,
    Node,
    blake2_256,
    decode_node,
    encode_node,
)

_NIBBLE = [bytes((i,)) for i in range(16)]


class NodeStore(Protocol):
    """Where committed nodes live, keyed by their blake2_256 hash (a dict is enough)."""

    def get(self, key: bytes, /) -> bytes | None: ...


def _mark(node: Node) -> None:
    node.enc = None
    node.hash = None
    node.new = True


def _leaf(path: bytes, value: bytes, vhash: bytes | None) -> Node:
    return Node(path, None, value, vhash)


class Trie:
    """A base-16 Patricia-Merkle trie over a node store, for state version 0 or 1."""

    def __init__(self, store: NodeStore, root: bytes | None = None, state_version: int = 1) -> None:
        if state_version not in (0, 1):
            raise ValueError(f"unknown state version {state_version}")
        self._store = store
        self.state_version = state_version
        self._root: Node | None = None
        self._committed_root = EMPTY_ROOT
        if root is not None and root != EMPTY_ROOT:
            root = bytes(root)
            if len(root) != HASH_LENGTH:
                raise TrieError(f"a state root is {HASH_LENGTH} bytes, got {len(root)}")
            # Load eagerly so that an unknown root fails here, not at the first read.
            self._root = self._load(root)
            self._committed_root = root

    # -- loading -------------------------------------------------------------------------------

    def _load(self, node_hash: bytes) -> Node:
        data = self._store.get(node_hash)
        if data is None:
            raise MissingNodeError(node_hash)
        node = decode_node(bytes(data))
        if node is None:
            raise TrieError(f"node 0x{node_hash.hex()} is the empty node")
        node.hash = node_hash
        return node

    def _child(self, node: Node, index: int) -> Node | None:
        children = node.children
        assert children is not None
        child = children[index]
        if type(child) is bytes:
            child = children[index] = self._load(child)
        return child  # type: ignore[return-value]

    def _value(self, node: Node) -> bytes | None:
        value = node.value
        if value is None and node.vhash is not None:
            data = self._store.get(node.vhash)
            if data is None:
                raise MissingNodeError(node.vhash, "hashed value")
            value = node.value = bytes(data)
        return value

    # -- reads ---------------------------------------------------------------------------------

    def get(self, key: bytes) -> bytes | None:
        """The value stored under `key`, or None."""
        path = to_nibbles(key)
        end_of_key = len(path)
        node = self._root
        pos = 0
        while node is not None:
            partial = node.partial
            end = pos + len(partial)
            if path[pos:end] != partial:
                return None
            if end == end_of_key:
                return self._value(node)
            children = node.children
            if children is None:
                return None
            index = path[end]
            child = children[index]
            if child is None:
                return None
            if type(child) is bytes:
                child = children[index] = self._load(child)
            node = child  # type: ignore[assignment]
            pos = end + 1
        return None

    def __contains__(self, key: bytes) -> bool:
        return self.get(key) is not None

    # -- writes --------------------------------------------------------------------------------

    def set(self, key: bytes, value: bytes) -> None:
        """Store `value` under `key` (an empty value is a value, not a deletion)."""
        if len(key) > MAX_KEY_LENGTH:
            raise TrieError(f"keys are limited to {MAX_KEY_LENGTH} bytes")
        value = bytes(value)
        vhash = (
            blake2_256(value)
            if self.state_version == 1 and len(value) >= HASHED_VALUE_THRESHOLD
            else None
        )
        self._insert(to_nibbles(key), value, vhash)

    def _insert(self, path: bytes, value: bytes, vhash: bytes | None) -> None:
        node = self._root
        if node is None:
            self._root = _leaf(path, value, vhash)
            return
        end_of_key = len(path)
        ancestors: list[Node] = []
        parent: Node | None = None
        parent_index = 0
        pos = 0
        while True:
            partial = node.partial
            end = pos + len(partial)
            if path[pos:end] == partial:
                if end == end_of_key:
                    if not _set_value(node, value, vhash):
                        return
                    break
                children = node.children
                if children is None:
                    # The leaf's key is a strict prefix of the new key: it becomes a branch
                    # keeping its value (and the form of that value).
                    replacement = Node(partial, [None] * 16, node.value, node.vhash)
                    replacement.vnew = node.vnew
                    replacement.children[path[end]] = _leaf(path[end + 1 :], value, vhash)  # type: ignore[index]
                else:
                    index = path[end]
                    child = children[index]
                    ancestors.append(node)
                    if child is None:
                        children[index] = _leaf(path[end + 1 :], value, vhash)
                        break
                    if type(child) is bytes:
                        child = children[index] = self._load(child)
                    parent = node
                    parent_index = index
                    node = child  # type: ignore[assignment]
                    pos = end + 1
                    continue
            else:
                common = common_prefix_length(partial, path, pos)
                split = pos + common
                replacement = Node(partial[:common], [None] * 16)
                node.partial = partial[common + 1 :]
                _mark(node)
                replacement.children[partial[common]] = node  # type: ignore[index]
                if split == end_of_key:
                    replacement.value = value
                    replacement.vhash = vhash
                    replacement.vnew = vhash is not None
                else:
                    replacement.children[path[split]] = _leaf(path[split + 1 :], value, vhash)  # type: ignore[index]
            if parent is None:
                self._root = replacement
            else:
                parent.children[parent_index] = replacement  # type: ignore[index]
            break
        for ancestor in ancestors:
            ancestor.enc = None
            ancestor.hash = None
            ancestor.new = True

    def delete(self, key: bytes) -> None:
        """Remove `key` if present (a no-op otherwise, leaving the trie clean)."""
        path = to_nibbles(key)
        end_of_key = len(path)
        node = self._root
        if node is None:
            return
        ancestors: list[tuple[Node, int]] = []
        pos = 0
        while True:
            partial = node.partial
            end = pos + len(partial)
            if path[pos:end] != partial:
                return
            children = node.children
            if end == end_of_key:
                if children is None:
                    replacement: Node | None = None
                else:
                    if node.value is None and node.vhash is None:
                        return
                    node.value = None
                    node.vhash = None
                    node.vnew = False
                    replacement = self._fix(node)
                break
            if children is None:
                return
            index = path[end]
            child = children[index]
            if child is None:
                return
            if type(child) is bytes:
                child = children[index] = self._load(child)
            ancestors.append((node, index))
            node = child  # type: ignore[assignment]
            pos = end + 1
        while ancestors:
            parent, index = ancestors.pop()
            parent.children[index] = replacement  # type: ignore[index]
            if replacement is None:
                replacement = self._fix(parent)
            else:
                _mark(parent)
                replacement = parent
        self._root = replacement

    def _fix(self, branch: Node) -> Node | None:
        """Restore the canonical shape of a branch that lost its value or a child."""
        children = branch.children
        assert children is not None
        remaining = 16 - children.count(None)
        has_value = branch.value is not None or branch.vhash is not None
        if remaining == 0:
            if not has_value:
                return None
            leaf = Node(branch.partial, None, branch.value, branch.vhash)
            leaf.vnew = branch.vnew
            return leaf
        if remaining == 1 and not has_value:
            index = next(i for i in range(16) if children[i] is not None)
            child = self._child(branch, index)
            assert child is not None
            child.partial = branch.partial + _NIBBLE[index] + child.partial
            _mark(child)
            return child
        _mark(branch)
        return branch

    def apply(self, changes: Iterable[tuple[bytes, bytes | None]]) -> None:
        """Apply (key, value) writes in order; a None value deletes the key."""
        for key, value in changes:
            if value is None:
                self.delete(key)
            else:
                self.set(key, value)

    # -- root and commit -----------------------------------------------------------------------

    def _encode(self, top: Node) -> None:
        # Post-order over the changed nodes only: clean children keep their cached encodings.
        stack = [top]
        while stack:
            node = stack[-1]
            children = node.children
            if children is not None:
                pending = False
                for child in children:
                    if child is not None and type(child) is not bytes and child.enc is None:  # type: ignore[union-attr]
                        stack.append(child)  # type: ignore[arg-type]
                        pending = True
                if pending:
                    continue
            node.enc = encode_node(node)
            stack.pop()

    def root(self) -> bytes:
        """The 32-byte state root: blake2_256 of the root node's encoding."""
        node = self._root
        if node is None:
            return EMPTY_ROOT
        if node.enc is None:
            self._encode(node)
        return node.node_hash()

    def commit(self) -> tuple[bytes, dict[bytes, bytes]]:
        """Return the root and the nodes (hash -> encoding) and hashed values (hash -> value)
        created since the last commit, to be written to the store. The root node is included
        even when shorter than 32 bytes (it is always referenced by hash); other nodes shorter
        than 32 bytes live inside their parent and are never stored on their own. The empty
        trie writes nothing: `Trie(store, EMPTY_ROOT)` needs no node."""
        root = self.root()
        out: dict[bytes, bytes] = {}
        top = self._root
        if top is not None:
            if top.new or root != self._committed_root:
                out[root] = top.enc  # type: ignore[assignment]
            stack = [top]
            while stack:
                node = stack.pop()
                if not node.new:
                    continue
                node.new = False
                enc = node.enc
                assert enc is not None
                if len(enc) >= HASH_LENGTH:
                    out[node.node_hash()] = enc
                if node.vnew:
                    out[node.vhash] = node.value  # type: ignore[index,assignment]
                    node.vnew = False
                children = node.children
                if children is not None:
                    for child in children:
                        if child is not None and type(child) is not bytes and child.new:  # type: ignore[union-attr]
                            stack.append(child)  # type: ignore[arg-type]
        self._committed_root = root
        return root, out

    # -- iteration -----------------------------------------------------------------------------

    def _iter_nodes(self, prefix: bytes, start_after: bytes | None) -> Iterator[tuple[bytes, Node]]:
        """(nibble path, node) of every value whose key starts with `prefix` and is greater than
        `start_after`, in key order. Subtrees outside that range are not loaded."""
        pre = to_nibbles(prefix)
        after = None if start_after is None else to_nibbles(start_after)
        if self._root is None:
            return
        # Entries: (parent branch or None for the root, child index, path up to the node).
        stack: list[tuple[Node | None, int, bytes]] = [(None, 0, b"")]
        while stack:
            parent, index, base = stack.pop()
            node = self._root if parent is None else self._child(parent, index)
            assert node is not None
            path = base + node.partial
            n = min(len(path), len(pre))
            if path[:n] != pre[:n]:
                continue
            bounded = False
            if after is not None:
                m = min(len(path), len(after))
                if path[:m] < after[:m]:
                    continue
                bounded = path[:m] == after[:m]
            if (
                node.has_value and len(path) >= len(pre) and (not bounded or path > after)  # type: ignore[operator]
            ):
                if len(path) & 1:
                    raise TrieError("value at an odd nibble path: not a byte key")
                yield path, node
            children = node.children
            if children is None:
                continue
            for i in range(15, -1, -1):
                if children[i] is None:
                    continue
                child_base = path + _NIBBLE[i]
                n = min(len(child_base), len(pre))
                if child_base[:n] != pre[:n]:
                    continue
                if bounded:
                    m = min(len(child_base), len(after))  # type: ignore[arg-type]
                    if child_base[:m] < after[:m]:  # type: ignore[index]
                        continue
                stack.append((node, i, child_base))

    def iter_prefix(
        self, prefix: bytes = b"", start_after: bytes | None = None
    ) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) for every key starting with `prefix` and greater than `start_after`, in
        key order (for state_getKeysPaged and query_map)."""
        for path, node in self._iter_nodes(prefix, start_after):
            value = self._value(node)
            assert value is not None
            yield from_nibbles(path), value

    def iter_keys(self, prefix: bytes = b"", start_after: bytes | None = None) -> Iterator[bytes]:
        """Like `iter_prefix` but only the keys (hashed values are not loaded)."""
        for path, _node in self._iter_nodes(prefix, start_after):
            yield from_nibbles(path)

    # -- proofs --------------------------------------------------------------------------------

    def read_proof(self, keys: Iterable[bytes]) -> list[bytes]:
        """The nodes proving the values (or absence) of `keys` at `root()`: every node referenced
        by hash on the keys' paths (the root node always; inline nodes are inside their parent)
        and the hashed values read, deduplicated, like Substrate's `state_getReadProof`."""
        self.root()
        top = self._root
        nodes: dict[bytes, bytes] = {}
        for key in keys:
            if top is None:
                # Substrate records the empty node it reads for the empty root.
                nodes[EMPTY_ROOT] = EMPTY_NODE
                continue
            nodes[top.node_hash()] = top.enc  # type: ignore[assignment]
            path = to_nibbles(key)
            end_of_key = len(path)
            node = top
            pos = 0
            while True:
                partial = node.partial
                end = pos + len(partial)
                if path[pos:end] != partial:
                    break
                if end == end_of_key:
                    if node.vhash is not None:
                        nodes[node.vhash] = self._value(node)  # type: ignore[assignment]
                    break
                if node.children is None:
                    break
                child = self._child(node, path[end])
                if child is None:
                    break
                enc = child.enc
                assert enc is not None
                if len(enc) >= HASH_LENGTH:
                    nodes[child.node_hash()] = enc
                node = child
                pos = end + 1
        return list(nodes.values())


def _set_value(node: Node, value: bytes, vhash: bytes | None) -> bool:
    """Write a value in the form chosen by the writer's state version; False if unchanged."""
    if vhash is None:
        if node.vhash is None and node.value == value:
            return False
        node.value = value
        node.vhash = None
        node.vnew = False
    else:
        if node.vhash == vhash:
            return False
        node.value = value
        node.vhash = vhash
        node.vnew = True
    _mark(node)
    return True


def trie_root(items: Mapping[bytes, bytes], state_version: int = 1) -> bytes:
    """The root of the trie holding exactly `items`."""
    trie = Trie({}, None, state_version)
    for key, value in items.items():
        trie.set(key, value)
    return trie.root()


def ordered_trie_root(values: Sequence[bytes], state_version: int = 1) -> bytes:
    """The root of the trie mapping compact(index) to each value (Substrate's extrinsics root).

    Note: Substrate derives the extrinsics root with state version 0 unless the runtime's
    `system_version` is 2 or more (RFC-0042), whatever the storage state version; a block whose
    extrinsics are 33 bytes or longer gets a different root under version 1.
    """
    trie = Trie({}, None, state_version)
    for index, value in enumerate(values):
        trie.set(encode_compact(index), value)
    return trie.root()
