"""The service's parentchain fetcher against a real dev node: completeness, integrity, speed.

The fetched blocks are checked independently of the light client (header hashes, parent links,
extrinsics roots, justification targets, events proofs against the state roots) and then
imported by the enclave's light client through their JSON boundary form.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from integritee.codec.hexutil import to_hex
from integritee.crypto.hashing import blake2_256
from integritee.enclave.light_client import LightClient, ParentchainBlockInput
from integritee.parentchain.finality import GrandpaJustification
from integritee.parentchain.primitives import HeaderCodec
from integritee.rpc.client import RpcClient
from integritee.service import parentchain_fetch as fetch
from integritee.trie import ordered_trie_root, verify_proof
from procs import NodeProcess

BLOCKS = 200


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    # Short slots so that 200 finalized blocks exist after a few seconds.
    n = NodeProcess(tmp_path_factory.mktemp("fetch-node"), block_time_ms=50)
    try:
        n.start(wait_blocks=BLOCKS + 1, timeout=90)
        yield n
    finally:
        n.stop()


async def test_sync_batches_fetches_200_blocks_correctly_and_fast(node: NodeProcess) -> None:
    async with RpcClient.connect(node.ws_url) as client:
        assert await fetch.finalized_number(client) >= BLOCKS
        genesis_header, genesis_proof = await fetch.fetch_genesis_init(client)
        t0 = time.perf_counter()
        batches = [b async for b in fetch.sync_batches(client, 1, BLOCKS, batch=64)]
        elapsed = time.perf_counter() - t0
    print(f"\nfetched {BLOCKS} blocks in {elapsed * 1000:.0f} ms")
    assert [len(b) for b in batches] == [64, 64, 64, 8]
    blocks = [b for batch in batches for b in batch]
    assert [b.number for b in blocks] == list(range(1, BLOCKS + 1))

    parent = blake2_256(genesis_header)
    for b in blocks:
        header = HeaderCodec.decode(b.header)
        assert header.number == b.number and header.hash() == b.hash == blake2_256(b.header)
        assert header.parent_hash == parent
        parent = b.hash
        assert ordered_trie_root(b.extrinsics, state_version=0) == header.extrinsics_root
        assert b.justification is not None
        commit = GrandpaJustification.decode(b.justification)["commit"]
        assert (commit["target_hash"], commit["target_number"]) == (b.hash, b.number)
        events = verify_proof(header.state_root, b.events_proof, [fetch.EVENTS_KEY])
        assert events[fetch.EVENTS_KEY]  # at least the timestamp's ExtrinsicSuccess

    lc = LightClient.initialize(genesis_header, genesis_proof)
    for batch in batches:
        lc.import_blocks([ParentchainBlockInput.from_json(b.to_json()) for b in batch])
    assert lc.last_number == BLOCKS and lc.last_hash == blocks[-1].hash
    # the whole run, fetching included, must take seconds, not minutes
    assert elapsed < 10, f"fetching {BLOCKS} blocks took {elapsed:.1f} s"


async def test_fetch_blocks_ranges_and_errors(node: NodeProcess) -> None:
    async with RpcClient.connect(node.ws_url) as client:
        assert await fetch.fetch_blocks(client, 5, 4) == []
        one = await fetch.fetch_blocks(client, 7, 7)
        assert [b.number for b in one] == [7]
        with pytest.raises(ValueError):
            await fetch.fetch_blocks(client, 5, 2)
        with pytest.raises(fetch.FetchError, match="no block #99000$"):
            await fetch.fetch_blocks(client, 99_000, 100_000)
        with pytest.raises(fetch.FetchError, match="no block #"):
            await fetch.fetch_blocks(client, BLOCKS, 2 * BLOCKS + 3000)
        # leaving the iteration early cancels the prefetch of the next batch cleanly
        async for batch in fetch.sync_batches(client, 1, BLOCKS, batch=10):
            assert [b.number for b in batch] == list(range(1, 11))
            break
        assert [b async for b in fetch.sync_batches(client, 3, 2)] == []
        # the connection is still usable afterwards
        assert await fetch.finalized_number(client) >= BLOCKS


def test_header_json_to_scale_and_justification_forms() -> None:
    digest_log = "0x0661757261" + "20" + "11" * 8  # PreRuntime("aura", 8 bytes)
    header = {
        "parentHash": to_hex(b"\x01" * 32),
        "number": "0x2a",
        "stateRoot": to_hex(b"\x02" * 32),
        "extrinsicsRoot": to_hex(b"\x03" * 32),
        "digest": {"logs": [digest_log]},
    }
    number, raw = fetch.header_bytes(header)
    decoded = HeaderCodec.decode(raw)
    assert number == 42 == decoded.number
    assert decoded.to_json() == header
    for field, value in (("number", 42), ("parentHash", "0x01"), ("digest", {})):
        with pytest.raises(fetch.FetchError):
            fetch.header_bytes({**header, field: value})

    assert fetch.grandpa_justification(None) is None
    assert fetch.grandpa_justification([[list(b"FRNK"), [1, 2, 3]]]) == b"\x01\x02\x03"
    assert fetch.grandpa_justification([[list(b"BEEF"), [9]], ["0x46524e4b", "0x0405"]]) == (
        b"\x04\x05"
    )
    assert fetch.grandpa_justification([[list(b"BEEF"), [9]]]) is None
    for bad in ("x", [[1]], [[list(b"FRNK"), [256]]], [[list(b"FRNK"), "zz"]]):
        with pytest.raises(fetch.FetchError):
            fetch.grandpa_justification(bad)
