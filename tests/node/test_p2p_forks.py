"""Fork choice, reorganizations and finality in the node's chain (in-process, no network).

Blocks come from `RemoteChain`s that share the local chain's genesis: two of them authoring on
their own give two competing branches. The node under test is a full node (no authoring), so
only the imports change its chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from p2p_support import AURA, GRANDPA, RemoteChain, justification, resealed

from integritee.node.blockchain import Block, Blockchain, StaleBlock
from integritee.node.chain_spec import local_spec
from integritee.node.consensus import pre_digest, seal_header
from integritee.node.service import BadBlock, Node, NodeConfig, UnknownBlock, UnknownParent
from integritee.parentchain.finality import FinalityError
from integritee.parentchain.primitives import Header

SPEC = local_spec()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(NodeConfig(spec=SPEC, base_path=tmp_path / "node", block_time_ms=1000))
    yield n
    n.chain.close()


@pytest.fixture
def remotes(tmp_path: Path) -> Iterator[tuple[RemoteChain, RemoteChain]]:
    a = RemoteChain(tmp_path / "a", SPEC)
    # The second branch starts one slot later, so its blocks differ from the first one's.
    b = RemoteChain(tmp_path / "b", SPEC, first_slot=a.slot + 1)
    yield a, b
    a.close()
    b.close()


def canonical(chain: Blockchain) -> list[bytes]:
    return [chain.hash_at(n) for n in range(1, chain.best_number + 1)]  # type: ignore[misc]


def test_longest_chain_wins_and_reorg_rewrites_the_number_index(
    node: Node, remotes: tuple[RemoteChain, RemoteChain]
) -> None:
    a, b = remotes
    a_blocks = a.blocks(2)
    b_blocks = b.blocks(3)
    for blk in a_blocks:
        assert node.import_block(blk).status == "best"
    assert node.import_block(b_blocks[0]).status == "fork"
    assert node.import_block(b_blocks[1]).status == "fork"  # a tie keeps the first seen
    assert node.chain.best_hash == a_blocks[1].hash
    heads: list[int] = []
    node.new_head_listeners.append(lambda header, _h: heads.append(header.number))
    assert node.import_block(b_blocks[2]).status == "best"
    assert heads == [3]
    assert canonical(node.chain) == [blk.hash for blk in b_blocks]
    assert node.chain.head_state.root() == b_blocks[2].header.state_root
    # Both branches stay readable: state of the retracted head, ancestry lookups.
    assert node.chain.state_at(a_blocks[1].hash).root() == a_blocks[1].header.state_root
    assert node.chain.descends_from(b_blocks[2].hash, b_blocks[0].hash)
    assert not node.chain.descends_from(b_blocks[2].hash, a_blocks[0].hash)
    assert node.chain.ancestor_at(a_blocks[1].hash, 1) == a_blocks[0].hash
    # Extending the old branch beyond the new one switches back.
    a_more = a.blocks(2)
    node.import_block(a_more[0])
    assert node.chain.best_hash == b_blocks[2].hash
    assert node.import_block(a_more[1]).status == "best"
    assert canonical(node.chain) == [blk.hash for blk in a_blocks + a_more]


def test_reorg_survives_a_restart(
    tmp_path: Path, node: Node, remotes: tuple[RemoteChain, RemoteChain]
) -> None:
    a, b = remotes
    for blk in a.blocks(2) + b.blocks(3):
        node.import_block(blk)
    expected = canonical(node.chain)
    node.chain.close()
    reopened = Blockchain.open(tmp_path / "node" / "chains" / SPEC.id / "db", SPEC)
    try:
        assert canonical(reopened) == expected
        assert reopened.best_number == 3
        assert reopened.head_state.root() == reopened.best_header.state_root
    finally:
        reopened.close()
    node.chain = Blockchain.open(tmp_path / "node" / "chains" / SPEC.id / "db", SPEC)


def test_finality_is_never_reverted(node: Node, remotes: tuple[RemoteChain, RemoteChain]) -> None:
    a, b = remotes
    a_blocks = a.blocks(2)
    b_blocks = b.blocks(1)
    for blk in a_blocks + b_blocks:
        node.import_block(blk)
    finalized: list[int] = []
    node.finalized_listeners.append(lambda header, _h: finalized.append(header.number))
    assert node.apply_justification(a_blocks[0].hash, justification(a_blocks[0], ["Alice", "Bob"]))
    assert finalized == [1]
    assert node.chain.finalized_hash == a_blocks[0].hash
    assert node.chain.justification(a_blocks[0].hash) is not None
    # A longer branch that does not contain the finalized block is refused outright.
    more_b = b.blocks(3)
    with pytest.raises(StaleBlock):
        node.import_block(more_b[0])
    with pytest.raises(UnknownParent):
        node.import_block(more_b[1])
    assert node.chain.best_hash == a_blocks[1].hash
    # A justification for a conflicting (stored) block is refused too.
    with pytest.raises(StaleBlock):
        node.apply_justification(b_blocks[0].hash, justification(b_blocks[0], ["Alice", "Bob"]))
    assert node.chain.finalized_hash == a_blocks[0].hash
    # Finalizing the same or an older block again is a no-op.
    assert not node.apply_justification(
        a_blocks[0].hash, justification(a_blocks[0], ["Alice", "Bob"])
    )


def test_finality_picks_the_branch(node: Node, remotes: tuple[RemoteChain, RemoteChain]) -> None:
    a, b = remotes
    a_blocks = a.blocks(3)
    b_blocks = b.blocks(1)
    for blk in a_blocks + b_blocks:
        node.import_block(blk)
    assert node.chain.best_hash == a_blocks[2].hash
    node.apply_justification(b_blocks[0].hash, justification(b_blocks[0], ["Alice", "Bob"]))
    # The finalized block is canonical even though the other branch is longer.
    assert node.chain.best_hash == b_blocks[0].hash
    assert canonical(node.chain) == [b_blocks[0].hash]
    assert node.chain.hash_at(2) is None
    with pytest.raises(StaleBlock):
        node.import_block(a.author())


def test_a_block_may_come_with_its_justification(
    node: Node, remotes: tuple[RemoteChain, RemoteChain]
) -> None:
    a, _ = remotes
    first, second = a.blocks(2)
    outcome = node.import_block(first, justification(first, ["Alice", "Bob"]))
    assert outcome.finalized and node.chain.finalized_number == 1
    # Justification for an already known block.
    node.import_block(second)
    assert node.import_block(second, justification(second, ["Bob", "Alice"])).finalized
    assert node.chain.finalized_hash == second.hash


def test_invalid_blocks_and_justifications_are_refused(
    node: Node, remotes: tuple[RemoteChain, RemoteChain]
) -> None:
    a, _ = remotes
    good = a.author()
    before = (node.chain.best_hash, node.chain.head_state.root())
    wrong_author = AURA["Bob"] if a.slot % 2 == 0 else AURA["Alice"]
    with pytest.raises(BadBlock, match="seal"):
        node.import_block(resealed(good, wrong_author))
    with pytest.raises(BadBlock, match="state root"):
        node.import_block(
            resealed(good, AURA["Alice"] if a.slot % 2 == 0 else AURA["Bob"], state_root=bytes(32))
        )
    with pytest.raises(BadBlock, match="extrinsics root"):
        node.import_block(Block(good.header, good.extrinsics + good.extrinsics[:1]))
    with pytest.raises(BadBlock, match="2/3"):
        node.import_block(good, justification(good, ["Alice"]))
    with pytest.raises(BadBlock, match="non-authority"):
        node.import_block(good, justification(good, ["Alice", "Charlie"]))
    forged = bytearray(justification(good, ["Alice", "Bob"]))
    forged[-40] ^= 1  # inside the last precommit's signature
    with pytest.raises(BadBlock, match="signature"):
        node.import_block(good, bytes(forged))
    assert (node.chain.best_hash, node.chain.head_state.root()) == before
    assert node.import_block(good).status == "best"
    with pytest.raises(FinalityError):
        node.apply_justification(good.hash, justification(good, ["Bob"]))
    with pytest.raises(UnknownBlock):
        node.apply_justification(bytes(32), justification(good, ["Alice", "Bob"]))
    assert node.chain.finalized_number == 0


def test_slots_must_increase(node: Node, tmp_path: Path) -> None:
    a = RemoteChain(tmp_path / "slots", SPEC)
    try:
        first = a.author()
        node.import_block(first)
        second = a.author()
        # Same content at an older slot, sealed by that slot's author: refused.
        old_slot = a.slot - 2
        key = AURA["Alice"] if old_slot % 2 == 0 else AURA["Bob"]
        h = second.header
        pre = Header(
            h.parent_hash, h.number, h.state_root, h.extrinsics_root, [pre_digest(old_slot)]
        )
        seal_header(pre, key)
        with pytest.raises(BadBlock, match="slot"):
            node.import_block(Block(pre, second.extrinsics))
        assert node.import_block(second).status == "best"
    finally:
        a.close()


def test_grandpa_keys_are_the_chain_spec_authorities(node: Node) -> None:
    authorities, set_id = node.finality_set()
    assert authorities == [GRANDPA["Alice"].public_key, GRANDPA["Bob"].public_key]
    assert set_id == 0


def test_a_malformed_pre_digest_is_a_bad_block(node: Node, tmp_path: Path) -> None:
    a = RemoteChain(tmp_path / "digest", SPEC)
    try:
        good = a.author()
        h = good.header
        broken = Header(
            h.parent_hash,
            h.number,
            h.state_root,
            h.extrinsics_root,
            [h.digest[0]._replace(value=(b"aura", b"\x01"))],
        )
        seal_header(broken, AURA["Alice"])
        with pytest.raises(BadBlock):
            node.import_block(Block(broken, good.extrinsics))
        assert node.chain.best_number == 0
    finally:
        a.close()
