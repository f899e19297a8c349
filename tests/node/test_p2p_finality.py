"""The finality gadget with real votes: authorities in one process, over real sockets.

Alice and Bob author (Aura) and vote; Charlie only votes once an authority set change adds him
to the GRANDPA set. Finality must follow the chain, stop exactly at the block enacting the
change (justified by the old set), and go on with the new set and set id.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

from integritee.codec.scale import EnumValue
from integritee.crypto.keys import Keypair
from integritee.node.chain_spec import local_spec
from integritee.node.network.service import Network, NetworkConfig
from integritee.node.network.wire import PeerAddress
from integritee.node.runtime.construct import SPEC_VERSION, TRANSACTION_VERSION, runtime_call
from integritee.node.runtime.pallets import consensus
from integritee.node.service import Node, NodeConfig
from integritee.parentchain import finality
from integritee.parentchain.extrinsic import sign_and_encode

SPEC = local_spec()
BLOCK_MS = 200


def ed(name: str) -> Keypair:
    return Keypair.from_uri(f"//{name}", "ed25519")


async def eventually(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout} s")
        await asyncio.sleep(0.05)


def make(
    path: Path, name: str | None, voter: str | None, boot: list[Network]
) -> tuple[Node, Network]:
    node = Node(
        NodeConfig(
            spec=SPEC,
            base_path=path / (voter or "full"),
            block_time_ms=BLOCK_MS,
            authority=Keypair.from_uri(f"//{name}") if name else None,
            finality_key=ed(voter) if voter else None,
            force_authoring=False,
        )
    )
    net = Network(
        node,
        NetworkConfig(
            node_key=Keypair.from_seed(os.urandom(32), "ed25519"),
            port=0,
            bootnodes=[PeerAddress("127.0.0.1", b.port or 0, b.local_id) for b in boot],
        ),
    )
    return node, net


def verify(node: Node, block_hash: bytes, authorities: list[str], set_id: int) -> None:
    header = node.chain.header(block_hash)
    just = node.chain.justification(block_hash)
    assert just is not None, f"#{header.number} has no justification"
    finality.verify_justification(
        just, block_hash, header.number, [ed(n).public_key for n in authorities], set_id
    )


async def test_votes_finalize_across_an_authority_set_change(tmp_path: Path) -> None:
    nodes: list[tuple[Node, Network]] = []
    try:
        alice = make(tmp_path, "Alice", "Alice", [])
        await alice[1].start()
        nodes.append(alice)
        bob = make(tmp_path, "Bob", "Bob", [alice[1]])
        await bob[1].start()
        nodes.append(bob)
        charlie = make(tmp_path, None, "Charlie", [alice[1], bob[1]])
        await charlie[1].start()
        nodes.append(charlie)
        for n, _ in nodes:
            await n.start()
        a, c = alice[0], charlie[0]
        await eventually(lambda: c.chain.finalized_number >= 3, 15, "finality by Alice and Bob")
        first_final = c.chain.finalized_hash
        verify(c, first_final, ["Alice", "Bob"], 0)

        # Root adds Charlie to the GRANDPA set: signalled a few blocks ahead, enacted 2 later.
        scheduled_at = a.chain.best_number + 4
        change = consensus.StoredPendingChange.encode(
            {
                "scheduled_at": scheduled_at,
                "delay": 2,
                "next_authorities": [(ed(n).public_key, 1) for n in ("Alice", "Bob", "Charlie")],
                "forced": None,
            }
        )
        inner = EnumValue(
            "System",
            EnumValue("set_storage", {"items": [(consensus.PendingChange.key(), change)]}),
        )
        call = runtime_call().encode(EnumValue("Sudo", EnumValue("sudo", {"call": inner})))
        xt = sign_and_encode(
            call,
            Keypair.from_uri("//Alice"),
            nonce=a.account_nonce(Keypair.from_uri("//Alice").public_key),
            genesis_hash=a.chain.genesis_hash,
            spec_version=SPEC_VERSION,
            tx_version=TRANSACTION_VERSION,
        )
        c.submit(xt)  # to the full node: gossip takes it to the authors
        enact_at = scheduled_at + 2
        await eventually(
            lambda: all(n.chain.finalized_number > enact_at + 2 for n, _ in nodes),
            30,
            "finality beyond the change",
        )
        for node, _ in nodes:
            enact = node.chain.hash_at(enact_at)
            assert enact is not None
            verify(node, enact, ["Alice", "Bob"], 0)  # the old set's last block
            assert node.finality_set() == (
                [ed(n).public_key for n in ("Alice", "Bob", "Charlie")],
                1,
            )
            verify(node, node.chain.finalized_hash, ["Alice", "Bob", "Charlie"], 1)
        # Every node saw the same history up to the lowest finalized block.
        low = min(n.chain.finalized_number for n, _ in nodes)
        hashes = {tuple(n.chain.hash_at(k) for k in range(1, low + 1)) for n, _ in nodes}
        assert len(hashes) == 1
        assert all(n.finality.equivocations == 0 for n, _ in nodes)
    finally:
        for node, net in reversed(nodes):
            await net.stop()
            await node.stop()
