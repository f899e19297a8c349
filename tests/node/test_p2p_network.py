"""The p2p network in-process over real sockets: handshake, gossip, sync, and bad peers.

The node under test is a full node of the local chain (Alice and Bob are its authorities) with
its network on a free port; blocks come from a `RemoteChain`, misbehaviour from a `FakePeer`
that speaks the wire protocol with its own identity.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from p2p_support import (
    AURA,
    GRANDPA,
    FakePeer,
    RemoteChain,
    block_data,
    justification,
    resealed,
)

from integritee.codec.scale import EnumValue
from integritee.crypto.keys import Keypair
from integritee.node.chain_spec import local_spec
from integritee.node.finality_gadget import PREVOTE, Vote
from integritee.node.network.peer import PeerLimits
from integritee.node.network.service import Network, NetworkConfig
from integritee.node.network.wire import PeerAddress
from integritee.node.runtime.construct import SPEC_VERSION, TRANSACTION_VERSION, runtime_call
from integritee.node.service import Node, NodeConfig
from integritee.parentchain.extrinsic import sign_and_encode

SPEC = local_spec()


def make_node(path: Path, bootnodes: list[PeerAddress] | None = None) -> tuple[Node, Network]:
    node = Node(NodeConfig(spec=SPEC, base_path=path, block_time_ms=1000))
    net = Network(
        node,
        NetworkConfig(
            node_key=Keypair.from_seed(os.urandom(32), "ed25519"),
            port=0,
            bootnodes=bootnodes or [],
            ban_seconds=60,
            limits=PeerLimits(messages_per_second=50, message_burst=200),
        ),
    )
    return node, net


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[tuple[Node, Network]]:
    node, net = make_node(tmp_path / "node")
    await net.start()
    yield node, net
    await net.stop()
    node.chain.close()


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[RemoteChain]:
    r = RemoteChain(tmp_path / "remote", SPEC)
    yield r
    r.close()


async def eventually(check: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def author_key(slot: int) -> Keypair:
    return AURA["Alice"] if slot % 2 == 0 else AURA["Bob"]


async def connect(net: Network) -> FakePeer:
    assert net.port is not None
    peer = await FakePeer(net.genesis).connect(net.port)
    await eventually(lambda: peer.key.public_key in net.peers)
    return peer


async def test_handshake_status_and_peer_view(served: tuple[Node, Network]) -> None:
    node, net = served
    peer = await connect(net)
    status = await peer.receive("Status")
    assert status["best_hash"] == node.chain.genesis_hash
    assert peer.remote is not None and peer.remote.public_key == net.local_id
    assert net.peer_infos()[0]["peerId"].startswith("12D3KooW")
    assert net.listen_addresses()[0].endswith(f"/tcp/{net.port}/p2p/{net.peer_id}")
    peer.close()
    await eventually(lambda: not net.peers)


async def test_other_genesis_and_bad_identity_proofs_are_refused(
    served: tuple[Node, Network],
) -> None:
    _node, net = served
    assert net.port is not None
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await FakePeer(bytes(32)).connect(net.port)
    # Both sides sign at once, so the impostor gets the node's proof, then is hung up on.
    impostor = await FakePeer(net.genesis).connect(net.port, bad_signature=True)
    assert await impostor.closed_by_remote()
    assert not net.peers and not net.banned


async def test_blocks_are_imported_and_gossiped(
    served: tuple[Node, Network], remote: RemoteChain, tmp_path: Path
) -> None:
    node, net = served
    sender, listener = await connect(net), await connect(net)
    blocks = remote.blocks(3)
    for blk in blocks:
        sender.send("Block", {"block": block_data(blk)})
    await eventually(lambda: node.chain.best_hash == blocks[-1].hash)
    relayed = [(await listener.receive("Block"))["block"]["header"].hash() for _ in blocks]
    assert relayed == [blk.hash for blk in blocks]
    assert net.blocks_from_peers == 3
    # A block ahead of the chain waits while the gap is synced (by number) from the sender.
    later = remote.blocks(3)
    sender.send("Block", {"block": block_data(later[-1])})
    request = await sender.receive("BlockRequest")
    assert tuple(request["start"]) == ("Number", 4) and request["direction"] == 0
    sender.send(
        "BlockResponse", {"id": request["id"], "blocks": [block_data(b) for b in later[:2]]}
    )
    await eventually(lambda: node.chain.best_hash == later[-1].hash)
    # A fork block whose parent is unknown: its ancestry is fetched by hash, newest first.
    fork_chain = RemoteChain(tmp_path / "fork", SPEC, first_slot=remote.slot - 20)
    try:
        fork = fork_chain.blocks(6)
        sender.send("Block", {"block": block_data(fork[-1])})
        request = await sender.receive("BlockRequest")
        assert tuple(request["start"]) == ("Hash", fork[-1].header.parent_hash)
        assert request["direction"] == 1 and request["max"] == 5
        ancestry = [block_data(b) for b in reversed(fork[:-1])]
        sender.send("BlockResponse", {"id": request["id"], "blocks": ancestry})
        await eventually(lambda: node.chain.maybe_header(fork[-1].hash) is not None)
        assert node.chain.best_hash == later[-1].hash  # a tie keeps the first seen
    finally:
        fork_chain.close()


async def test_blocks_are_served(served: tuple[Node, Network], remote: RemoteChain) -> None:
    node, net = served
    blocks = remote.blocks(5)
    node.import_block(blocks[0], justification(blocks[0], ["Alice", "Bob"]))
    for blk in blocks[1:]:
        node.import_block(blk)
    peer = await connect(net)
    peer.send("BlockRequest", {"id": 7, "start": ("Number", 2), "direction": 0, "max": 100})
    response = await peer.receive("BlockResponse")
    assert response["id"] == 7
    assert [b["header"].hash() for b in response["blocks"]] == [b.hash for b in blocks[1:]]
    peer.send(
        "BlockRequest", {"id": 8, "start": ("Hash", blocks[2].hash), "direction": 1, "max": 2}
    )
    response = await peer.receive("BlockResponse")
    got = response["blocks"]
    assert [b["header"].hash() for b in got] == [blocks[2].hash, blocks[1].hash]
    peer.send("BlockRequest", {"id": 9, "start": ("Number", 1), "direction": 0, "max": 1})
    first = (await peer.receive("BlockResponse"))["blocks"][0]
    assert first["justification"] == node.chain.justification(blocks[0].hash)
    # An answer to a question nobody asked costs points, but is not a ban.
    peer.send("BlockResponse", {"id": 99, "blocks": []})
    await eventually(lambda: -20 <= net.peers[peer.key.public_key].score < 0)
    assert not net.is_banned(peer.key.public_key)


async def assert_banned(net: Network, peer: FakePeer, node: Node, head: bytes) -> None:
    assert await peer.closed_by_remote()
    assert net.is_banned(peer.key.public_key)
    assert node.chain.best_hash == head
    assert net.port is not None
    with pytest.raises((asyncio.IncompleteReadError, ConnectionError)):
        await FakePeer(net.genesis, peer.key).connect(net.port)


async def test_bad_seal_gets_the_peer_banned(
    served: tuple[Node, Network], remote: RemoteChain
) -> None:
    node, net = served
    peer = await connect(net)
    good = remote.author()
    wrong = AURA["Bob"] if author_key(remote.slot) is AURA["Alice"] else AURA["Alice"]
    peer.send("Block", {"block": block_data(resealed(good, wrong))})
    await assert_banned(net, peer, node, node.chain.genesis_hash)
    # Another peer delivers the genuine block: the chain is unaffected by the bad one.
    honest = await connect(net)
    honest.send("Block", {"block": block_data(good)})
    await eventually(lambda: node.chain.best_hash == good.hash)


async def test_bad_state_root_gets_the_peer_banned(
    served: tuple[Node, Network], remote: RemoteChain
) -> None:
    node, net = served
    peer = await connect(net)
    good = remote.author()
    bad = resealed(good, author_key(remote.slot), state_root=bytes(32))
    peer.send("Block", {"block": block_data(bad)})
    await assert_banned(net, peer, node, node.chain.genesis_hash)
    assert node.chain.head_state.root() == node.chain.best_header.state_root


@pytest.mark.parametrize("forgery", ["too_few", "forged_signature", "non_authority"])
async def test_forged_justification_gets_the_peer_banned(
    served: tuple[Node, Network], remote: RemoteChain, forgery: str
) -> None:
    node, net = served
    peer = await connect(net)
    blk = remote.author()
    if forgery == "too_few":
        just = justification(blk, ["Alice"])
    elif forgery == "non_authority":
        just = justification(blk, ["Alice", "Charlie"])
    else:
        raw = bytearray(justification(blk, ["Alice", "Bob"]))
        raw[-40] ^= 1
        just = bytes(raw)
    peer.send("Block", {"block": block_data(blk, just)})
    await assert_banned(net, peer, node, node.chain.genesis_hash)
    assert node.chain.finalized_number == 0


async def test_forged_justification_message_gets_the_peer_banned(
    served: tuple[Node, Network], remote: RemoteChain
) -> None:
    node, net = served
    blk = remote.author()
    node.import_block(blk)
    peer = await connect(net)
    peer.send(
        "Justification",
        {"hash": blk.hash, "number": 1, "justification": justification(blk, ["Bob"])},
    )
    await assert_banned(net, peer, node, blk.hash)
    assert node.chain.finalized_number == 0
    # The genuine one finalizes.
    honest = await connect(net)
    honest.send(
        "Justification",
        {"hash": blk.hash, "number": 1, "justification": justification(blk, ["Bob", "Alice"])},
    )
    await eventually(lambda: node.chain.finalized_hash == blk.hash)


async def test_bad_vote_gets_the_peer_banned(served: tuple[Node, Network]) -> None:
    node, net = served
    peer = await connect(net)
    round_now = node.finality.current_round()
    vote = Vote.sign(GRANDPA["Bob"], PREVOTE, node.chain.genesis_hash, 0, round_now, 0)
    peer.send("Vote", {"vote": vote.__dict__})
    await eventually(lambda: node.finality.rounds.get(round_now) is not None)
    assert GRANDPA["Bob"].public_key in node.finality.rounds[round_now].prevotes
    forged = Vote(
        vote.round, 0, PREVOTE, vote.target_hash, 0, bytes(64), GRANDPA["Alice"].public_key
    )
    peer.send("Vote", {"vote": forged.__dict__})
    await assert_banned(net, peer, node, node.chain.genesis_hash)


async def test_flooding_gets_the_peer_banned(served: tuple[Node, Network]) -> None:
    node, net = served
    peer = await connect(net)
    status = {
        "best_number": 0,
        "best_hash": node.chain.genesis_hash,
        "finalized_number": 0,
        "finalized_hash": node.chain.genesis_hash,
    }
    for _ in range(1000):
        peer.send("Status", status)
    await assert_banned(net, peer, node, node.chain.genesis_hash)


@pytest.mark.parametrize("junk", ["garbage", "oversized"])
async def test_malformed_messages_get_the_peer_banned(
    served: tuple[Node, Network], junk: str
) -> None:
    node, net = served
    peer = await connect(net)
    assert peer.writer is not None
    if junk == "garbage":
        peer.send_raw(b"\x63" + os.urandom(40))
    else:
        peer.writer.write((64 * 1024 * 1024).to_bytes(4, "big"))
    await assert_banned(net, peer, node, node.chain.genesis_hash)


def transfer(genesis: bytes, nonce: int) -> bytes:
    call = runtime_call().encode(
        EnumValue(
            "Balances",
            EnumValue(
                "transfer_keep_alive",
                {"dest": EnumValue("Id", AURA["Bob"].public_key), "value": 10**12},
            ),
        )
    )
    return sign_and_encode(
        call,
        AURA["Alice"],
        nonce=nonce,
        genesis_hash=genesis,
        spec_version=SPEC_VERSION,
        tx_version=TRANSACTION_VERSION,
    )


async def test_transactions_are_gossiped_both_ways(served: tuple[Node, Network]) -> None:
    node, net = served
    genesis = node.chain.genesis_hash
    peer = await connect(net)
    peer.send("Transactions", {"extrinsics": [transfer(genesis, 0)]})
    await eventually(lambda: len(node.pool) == 1)
    second = transfer(genesis, 1)  # sr25519 signatures are randomized: keep this one
    node.submit(second)
    got = await peer.receive("Transactions")
    assert got["extrinsics"] == [second]  # its own one is not echoed back


async def test_a_new_node_syncs_from_its_boot_node(tmp_path: Path, remote: RemoteChain) -> None:
    source, source_net = make_node(tmp_path / "source")
    blocks = remote.blocks(300)
    for blk in blocks[:-1]:
        source.import_block(blk)
    source.import_block(blocks[-1], justification(blocks[-1], ["Alice", "Bob"]))
    await source_net.start()
    assert source_net.port is not None
    joiner, joiner_net = make_node(
        tmp_path / "joiner",
        [PeerAddress("127.0.0.1", source_net.port, source_net.local_id)],
    )
    await joiner_net.start()
    try:
        await eventually(lambda: joiner.chain.best_hash == blocks[-1].hash, timeout=60)
        assert joiner.chain.finalized_hash == blocks[-1].hash
        assert joiner_net.blocks_from_peers == 300
        assert joiner_net.sync_target() == 300
        assert not joiner_net.is_major_syncing()
        # Then it follows: a new block reaches it through the source.
        nxt = remote.author()
        source.import_block(nxt)
        await eventually(lambda: joiner.chain.best_hash == nxt.hash)
    finally:
        await joiner_net.stop()
        await source_net.stop()
        joiner.chain.close()
        source.chain.close()


async def test_sync_switches_to_the_longer_fork(tmp_path: Path, remote: RemoteChain) -> None:
    other = RemoteChain(tmp_path / "other", SPEC, first_slot=remote.slot + 1)
    source, source_net = make_node(tmp_path / "source")
    joiner, joiner_net = make_node(tmp_path / "joiner")
    try:
        long_branch = remote.blocks(10)
        for blk in long_branch:
            source.import_block(blk)
        for blk in other.blocks(4):
            joiner.import_block(blk)
        await source_net.start()
        assert source_net.port is not None
        joiner_net.targets.clear()
        joiner_net.config.bootnodes = []
        await joiner_net.start()
        assert joiner_net.port is not None
        # The source dials the joiner this time (connections work both ways).
        source_net._learn(PeerAddress("127.0.0.1", joiner_net.port, joiner_net.local_id))
        await eventually(lambda: joiner.chain.best_hash == long_branch[-1].hash, timeout=30)
        assert [joiner.chain.hash_at(n) for n in range(1, 11)] == [b.hash for b in long_branch]
    finally:
        await joiner_net.stop()
        await source_net.stop()
        joiner.chain.close()
        source.chain.close()
        other.close()
