"""GRANDPA authority set changes: signalled by a digest, enacted at a block, followed by finality.

Root schedules a change with `Sudo.sudo(System.set_storage(Grandpa.PendingChange))`; the chain
(authored by a `RemoteChain`) signals it in block `scheduled_at` and enacts it in block
`scheduled_at + delay`. A node must finalize exactly the enacting block with the old set and
later blocks only with the new one; the enclave's light client accepts the same chain.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from p2p_support import AURA, GRANDPA, RemoteChain, justification, resealed

from integritee.codec.scale import EnumValue
from integritee.enclave.light_client import (
    EVENTS_KEY,
    GENESIS_KEYS,
    LightClient,
    ParentchainBlockInput,
)
from integritee.node.blockchain import Block
from integritee.node.chain_spec import local_spec
from integritee.node.consensus import block_slot
from integritee.node.runtime import executive
from integritee.node.runtime.construct import SPEC_VERSION, TRANSACTION_VERSION, runtime_call
from integritee.node.runtime.context import BlockContext
from integritee.node.runtime.pallets import consensus, system
from integritee.node.service import BadBlock, JustificationDeferred, Node, NodeConfig
from integritee.node.txpool import TxPool
from integritee.parentchain import finality
from integritee.parentchain.extrinsic import sign_and_encode
from integritee.parentchain.primitives import Header
from integritee.storage.overlay import Overlay

SPEC = local_spec()
NEW_SET = [(GRANDPA[n].public_key, 1) for n in ("Alice", "Bob", "Charlie")]


def schedule_change_pool(remote: RemoteChain, scheduled_at: int, delay: int) -> TxPool:
    change = consensus.StoredPendingChange.encode(
        {
            "scheduled_at": scheduled_at,
            "delay": delay,
            "next_authorities": NEW_SET,
            "forced": None,
        }
    )
    inner = EnumValue(
        "System", EnumValue("set_storage", {"items": [(consensus.PendingChange.key(), change)]})
    )
    call = runtime_call().encode(EnumValue("Sudo", EnumValue("sudo", {"call": inner})))
    chain = remote.chain
    raw = sign_and_encode(
        call,
        AURA["Alice"],
        nonce=0,
        genesis_hash=chain.genesis_hash,
        spec_version=SPEC_VERSION,
        tx_version=TRANSACTION_VERSION,
    )
    ctx = BlockContext(
        Overlay(chain.head_state.get), chain.best_number + 1, chain.best_hash, remote.params
    )
    pool = TxPool()
    pool.insert(executive.validate_transaction(ctx, raw, chain.hash_at), 0)
    return pool


@pytest.fixture
def changed_chain(tmp_path: Path) -> Iterator[tuple[RemoteChain, list[Block]]]:
    remote = RemoteChain(tmp_path / "remote", SPEC)
    blocks = [remote.author(schedule_change_pool(remote, scheduled_at=2, delay=2))]
    blocks += remote.blocks(5)
    yield remote, blocks
    remote.close()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    n = Node(NodeConfig(spec=SPEC, base_path=tmp_path / "node", block_time_ms=1000))
    yield n
    n.chain.close()


def test_the_runtime_signals_and_enacts_the_change(
    changed_chain: tuple[RemoteChain, list[Block]],
) -> None:
    remote, blocks = changed_chain
    chain = remote.chain
    assert len(blocks[0].extrinsics) == 2  # timestamp + the sudo call
    assert consensus.signalled_change(blocks[1].header.digest) == (NEW_SET, 2)
    assert all(
        consensus.signalled_change(b.header.digest) is None for i, b in enumerate(blocks) if i != 1
    )
    before, at = chain.state_at(blocks[2].hash), chain.state_at(blocks[3].hash)
    assert consensus.CurrentSetId.get(before) == 0 and consensus.CurrentSetId.get(at) == 1
    assert len(consensus.GrandpaAuthorities.get(before)) == 2
    assert consensus.GrandpaAuthorities.get(at) == NEW_SET
    assert consensus.PendingChange.get(at) is None
    events = [(e["event"].name, e["event"].value.name) for e in system.Events.get(at)]
    assert ("Grandpa", "NewAuthorities") in events


def test_a_header_without_the_runtime_digest_is_refused(
    node: Node, changed_chain: tuple[RemoteChain, list[Block]]
) -> None:
    _remote, blocks = changed_chain
    node.import_block(blocks[0])
    signal = blocks[1]
    h = signal.header
    stripped = Block(
        Header(
            h.parent_hash, h.number, h.state_root, h.extrinsics_root, [h.digest[0], h.digest[-1]]
        ),
        signal.extrinsics,
    )
    key = AURA["Alice"] if block_slot(h) % 2 == 0 else AURA["Bob"]
    with pytest.raises(BadBlock, match="digest"):
        node.import_block(resealed(stripped, key))
    assert node.import_block(signal).status == "best"


def test_finality_stops_at_the_change_then_needs_the_new_set(
    node: Node, changed_chain: tuple[RemoteChain, list[Block]]
) -> None:
    _remote, blocks = changed_chain
    for b in blocks:
        node.import_block(b)
    enact = blocks[3]
    assert node.set_change_block(blocks[5].hash, 6) == (enact.hash, 4)
    assert node.set_change_block(blocks[2].hash, 3) is None
    # Beyond the change: not checkable before the change's block is final (and not a fault).
    with pytest.raises(JustificationDeferred):
        node.apply_justification(blocks[5].hash, justification(blocks[5], ["Alice", "Bob"]))
    # A justification that comes with a block beyond the change is set aside, not refused.
    assert node.chain.finalized_number == 0
    # The old set finalizes the enacting block; then the new set (id 1) is in charge.
    assert node.apply_justification(enact.hash, justification(enact, ["Alice", "Bob"]))
    assert node.finality_set() == ([k for k, _ in NEW_SET], 1)
    assert node.set_change_block(blocks[5].hash, 6) is None
    old_set = justification(blocks[5], ["Alice", "Bob"])
    with pytest.raises(finality.FinalityError):
        node.apply_justification(blocks[5].hash, old_set)
    new_set = finality.make_justification(
        blocks[5].hash, 6, [GRANDPA[n] for n in ("Alice", "Bob", "Charlie")], 9, 1
    )
    assert node.apply_justification(blocks[5].hash, new_set)
    assert node.chain.finalized_number == 6


def test_blocks_beyond_the_change_import_without_their_justification(
    node: Node, changed_chain: tuple[RemoteChain, list[Block]]
) -> None:
    _remote, blocks = changed_chain
    for b in blocks[:4]:
        node.import_block(b)
    new_set = finality.make_justification(
        blocks[4].hash, 5, [GRANDPA[n] for n in ("Alice", "Bob", "Charlie")], 9, 1
    )
    outcome = node.import_block(blocks[4], new_set)
    assert outcome.status == "best" and not outcome.finalized


def test_the_enclave_light_client_follows_the_same_chain(
    node: Node, changed_chain: tuple[RemoteChain, list[Block]]
) -> None:
    remote, blocks = changed_chain
    chain = remote.chain
    genesis = chain.header(chain.genesis_hash)
    proof = chain.state_at(chain.genesis_hash).read_proof(list(GENESIS_KEYS))
    client = LightClient.initialize(genesis.encode(), proof)
    enact = blocks[3]
    justs = {
        enact.hash: justification(enact, ["Alice", "Bob"]),
        blocks[5].hash: finality.make_justification(
            blocks[5].hash, 6, [GRANDPA[n] for n in ("Alice", "Bob", "Charlie")], 9, 1
        ),
    }
    inputs = [
        ParentchainBlockInput(
            header=b.header.encode(),
            extrinsics=b.extrinsics,
            justification=justs.get(b.hash),
            events_proof=chain.state_at(b.hash).read_proof([EVENTS_KEY]),
        )
        for b in blocks
    ]
    imported = client.import_blocks(inputs)
    assert [v.number for v in imported] == [1, 2, 3, 4, 5, 6]
    assert client.set_id == 1
    assert client.authorities == NEW_SET
