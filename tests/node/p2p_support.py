"""Helpers for the p2p tests: a second chain to author blocks on, and a hand-driven fake peer.

`RemoteChain` authors real, correctly sealed blocks of the `local` chain (Alice and Bob take
turns by slot) on its own database, so tests can build forks and tamper with blocks before
handing them to a node. `FakePeer` speaks the wire protocol over a real socket, with its own
identity, so tests can send whatever a misbehaving peer would.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from integritee.crypto.keys import Keypair
from integritee.node import consensus
from integritee.node.block_builder import build_block
from integritee.node.blockchain import Block, Blockchain
from integritee.node.chain_spec import ChainSpec
from integritee.node.network.wire import (
    ROLE_FULL,
    Hello,
    check_auth,
    decode_message,
    encode_message,
    frame,
    read_frame,
    sign_auth,
)
from integritee.node.runtime.executive import ChainParams
from integritee.node.txpool import TxPool
from integritee.parentchain import finality
from integritee.parentchain.primitives import Header

AURA = {"Alice": Keypair.from_uri("//Alice"), "Bob": Keypair.from_uri("//Bob")}
GRANDPA = {n: Keypair.from_uri(f"//{n}", "ed25519") for n in ("Alice", "Bob", "Charlie")}
BLOCK_TIME_MS = 1000


def slot_now() -> int:
    return int(time.time() * 1000) // BLOCK_TIME_MS


class RemoteChain:
    """Authors blocks of the local chain (authorities Alice, Bob) at past slots."""

    def __init__(self, path: Path, spec: ChainSpec, first_slot: int | None = None) -> None:
        self.chain = Blockchain.open(path, spec)
        self.params = ChainParams(self.chain.genesis_hash, minimum_period_ms=BLOCK_TIME_MS // 2)
        # Far enough in the past for a few hundred blocks, never in the future.
        self.slot = first_slot if first_slot is not None else slot_now() - 1000

    def author(self, pool: TxPool | None = None, skip: int = 0) -> Block:
        """The next block on this chain's best block, sealed by the slot's author."""
        self.slot += 1 + skip
        key = AURA["Alice"] if self.slot % 2 == 0 else AURA["Bob"]
        built = build_block(
            self.chain,
            self.params,
            pool or TxPool(),
            key,
            self.slot,
            self.slot * BLOCK_TIME_MS,
            deadline=float("inf"),
        )
        self.chain.commit_block(built.block)
        return built.block

    def blocks(self, n: int) -> list[Block]:
        return [self.author() for _ in range(n)]

    def close(self) -> None:
        self.chain.close()


def justification(block: Block, signers: list[str], round_number: int = 1) -> bytes:
    return finality.make_justification(
        block.hash, block.header.number, [GRANDPA[n] for n in signers], round_number, 0
    )


def resealed(block: Block, key: Keypair, **changes: Any) -> Block:
    """The block with header fields changed and sealed again by `key`."""
    h = block.header
    pre = Header(h.parent_hash, h.number, h.state_root, h.extrinsics_root, h.digest[:-1])
    for k, v in changes.items():
        setattr(pre, k, v)
    consensus.seal_header(pre, key)
    return Block(pre, block.extrinsics)


def block_data(block: Block, just: bytes | None = None) -> dict[str, Any]:
    return {"header": block.header, "body": block.encode_body(), "justification": just}


class FakePeer:
    """A peer driven by the test: handshakes with its own key, sends raw messages."""

    def __init__(self, genesis: bytes, key: Keypair | None = None) -> None:
        self.genesis = genesis
        self.key = key or Keypair.from_seed(os.urandom(32), "ed25519")
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.remote: Hello | None = None

    async def connect(self, port: int, *, bad_signature: bool = False) -> FakePeer:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", port)
        hello = Hello.new(self.genesis, self.key, 0, ROLE_FULL)
        self.writer.write(frame(hello.encode()))
        self.remote = Hello.decode(await read_frame(self.reader))
        signature = sign_auth(self.key, self.genesis, self.remote.nonce, self.remote.public_key)
        if bad_signature:
            signature = bytes(64)
        self.writer.write(frame(signature))
        check_auth(
            await read_frame(self.reader),
            self.genesis,
            hello.nonce,
            self.remote.public_key,
            self.key.public_key,
        )
        return self

    def send(self, name: str, fields: dict[str, Any]) -> None:
        assert self.writer is not None
        self.writer.write(frame(encode_message(name, fields)))

    def send_raw(self, payload: bytes) -> None:
        assert self.writer is not None
        self.writer.write(frame(payload))

    async def receive(self, name: str, timeout: float = 5.0) -> dict[str, Any]:
        """The next message of this kind (others are skipped)."""
        assert self.reader is not None
        deadline = time.monotonic() + timeout
        while True:
            data = await asyncio.wait_for(read_frame(self.reader), deadline - time.monotonic())
            got, fields = decode_message(data)
            if got == name:
                return fields

    async def closed_by_remote(self, timeout: float = 5.0) -> bool:
        """Whether the node closes the connection within `timeout` (reading everything it sends)."""
        assert self.reader is not None
        try:
            async with asyncio.timeout(timeout):
                while True:
                    if not await self.reader.read(65536):
                        return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
