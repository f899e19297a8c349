"""The untrusted RPC's sidechain_fetchBlocksFromPeer over a real server, its JSON block form, and
the peer-fetch client (paging, chain checks, a joiner syncing from a pruned peer)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from integritee.codec.hexutil import to_hex
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair
from integritee.crypto.ss58 import ss58_encode
from integritee.rpc import INVALID_PARAMS, RpcClient, RpcError, RpcServer, rpc_call
from integritee.service.sidechain_db import SidechainDb, stored_block_hash
from integritee.service.untrusted_rpc import (
    METHOD_FETCH_BLOCKS,
    BlockJsonError,
    PeerFetchError,
    UntrustedRpc,
    encoded_block_to_json,
    fetch_blocks_from_peer,
    json_to_encoded_block,
    parse_fetch_params,
    signed_block_from_json,
)
from integritee.trusted.sidechain import SignedBlockCodec, make_signed_block

AUTHOR = Keypair.from_seed(b"\x07" * 32, "ed25519")
SHARD = b"\xaa" * 32
OTHER_SHARD = b"\xbb" * 32
ZERO = bytes(32)


def make_block(number: int, parent: bytes, shard: bytes = SHARD, diff: bytes = b"") -> bytes:
    signed = make_signed_block(
        parent_hash=parent,
        number=number,
        shard=shard,
        timestamp=1_700_000_000_000 + number,
        layer_one_head=b"\x01" * 32,
        author=AUTHOR,
        top_hashes=[blake2_256(number.to_bytes(8, "little")), b"\x02" * 32],
        encrypted_state_diff=diff or bytes(range(256)) + number.to_bytes(4, "little"),
    )
    return SignedBlockCodec.encode(signed)


def make_chain(count: int, start: int = 1, parent: bytes = ZERO, **kw: Any) -> list[bytes]:
    blocks = []
    for number in range(start, start + count):
        encoded = make_block(number, parent, **kw)
        blocks.append(encoded)
        parent = stored_block_hash(encoded)
    return blocks


def h(encoded: bytes) -> bytes:
    return stored_block_hash(encoded)


# -- JSON form ---------------------------------------------------------------------------------


def test_json_form_is_the_originals_serde_shape() -> None:
    encoded = make_block(7, b"\x05" * 32, diff=b"\x00\xff\x10")
    obj = encoded_block_to_json(encoded)
    header, data = obj["block"]["header"], obj["block"]["block_data"]
    assert header == {
        "parent_hash": "0x" + "05" * 32,
        "block_number": 7,
        "shard_id": "0x" + "aa" * 32,
        "block_data_hash": header["block_data_hash"],
        "next_finalization_block_number": 50,
    }
    assert header["block_data_hash"] == to_hex(
        SignedBlockCodec.decode(encoded)["block"]["header"]["block_data_hash"]
    )
    assert data["timestamp"] == 1_700_000_000_007
    assert data["layer_one_head"] == "0x" + "01" * 32
    assert data["block_author"] == ss58_encode(AUTHOR.public_key, 42)
    assert data["signed_top_hashes"][1] == "0x" + "02" * 32
    assert data["encrypted_state_diff"] == [0, 255, 16]
    ((kind, sig),) = obj["signature"].items()
    assert kind == "Ed25519" and len(sig) == 128 and not sig.startswith("0x")
    assert bytes.fromhex(sig) == SignedBlockCodec.decode(encoded)["signature"].value
    # Plain JSON, and back to the very same SCALE bytes.
    assert json_to_encoded_block(json.loads(json.dumps(obj))) == encoded


def _mutated(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    obj = encoded_block_to_json(make_block(1, ZERO))
    change(obj)
    return obj


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda o: o.pop("signature"), "signature is missing"),
        (lambda o: o["block"]["header"].pop("shard_id"), r"block\.header\.shard_id is missing"),
        (lambda o: o["block"].__setitem__("header", []), "must be an object"),
        (lambda o: o["block"]["header"].__setitem__("parent_hash", "0x1234"), "parent_hash"),
        (lambda o: o["block"]["header"].__setitem__("block_number", -1), "u64"),
        (lambda o: o["block"]["header"].__setitem__("block_number", 1 << 64), "u64"),
        (lambda o: o["block"]["header"].__setitem__("block_number", True), "u64"),
        (lambda o: o["block"]["header"].__setitem__("block_number", "1"), "u64"),
        (lambda o: o["block"]["block_data"].__setitem__("block_author", "5xyz"), "block_author"),
        (
            lambda o: o["block"]["block_data"]["signed_top_hashes"].append(7),
            r"signed_top_hashes\[2\]",
        ),
        (
            lambda o: o["block"]["block_data"].__setitem__("encrypted_state_diff", [1, 256]),
            "0..255",
        ),
        (lambda o: o["block"]["block_data"].__setitem__("encrypted_state_diff", [True]), "0..255"),
        (lambda o: o["block"]["block_data"].__setitem__("encrypted_state_diff", "0x00"), "array"),
        (lambda o: o.__setitem__("signature", {"Ed25519": "00" * 63}), "64 bytes"),
        (lambda o: o.__setitem__("signature", {"Rsa": "00" * 64}), "unknown signature kind"),
        (lambda o: o.__setitem__("signature", {"Ed25519": "", "Sr25519": ""}), "one member"),
    ],
)
def test_malformed_json_blocks_are_rejected_precisely(
    change: Callable[[dict[str, Any]], None], message: str
) -> None:
    with pytest.raises(BlockJsonError, match=message):
        signed_block_from_json(_mutated(change))


def test_json_parsing_tolerates_what_serde_tolerates() -> None:
    encoded = make_block(1, ZERO)
    obj = encoded_block_to_json(encoded)
    obj["extra"] = 1  # serde ignores unknown fields
    obj["block"]["header"]["parent_hash"] = "00" * 32  # hex without 0x
    obj["block"]["block_data"]["block_author"] = to_hex(AUTHOR.public_key)
    assert json_to_encoded_block(obj) == encoded
    obj["block"]["block_data"]["block_author"] = ss58_encode(AUTHOR.public_key, 2)  # any prefix
    assert json_to_encoded_block(obj) == encoded


def test_parse_fetch_params() -> None:
    a, b = to_hex(b"\x01" * 32), to_hex(b"\x02" * 32)
    assert parse_fetch_params([[a, None, b]]) == (b"\x01" * 32, None, b"\x02" * 32)
    assert parse_fetch_params([[a, a, b]]) == (b"\x01" * 32, b"\x01" * 32, b"\x02" * 32)
    assert parse_fetch_params([[a, b]]) == (b"\x01" * 32, None, b"\x02" * 32)  # older form
    bad_params: list[Any] = [
        [],
        [a, None, b],
        [[a]],
        [[a, None, b, b]],
        {"from": a},
        [[a, None, "0x12"]],
        [[1, None, b]],
        [[a, 5, b]],
    ]
    for bad in bad_params:
        with pytest.raises(RpcError) as info:
            parse_fetch_params(bad)
        assert info.value.code == INVALID_PARAMS


# -- the server --------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with SidechainDb.open_in(tmp_path / "peer") as database:
        yield database


async def _serve(rpc: UntrustedRpc) -> RpcServer:
    server = RpcServer(name="untrusted")
    rpc.register(server)
    await server.start("127.0.0.1", 0)
    return server


@pytest.fixture
async def served(db: SidechainDb) -> AsyncIterator[tuple[SidechainDb, str]]:
    server = await _serve(UntrustedRpc(db))
    try:
        yield db, f"ws://127.0.0.1:{server.port}"
    finally:
        await server.stop()


async def _fetch_raw(url: str, params: Any) -> Any:
    async with RpcClient.connect(url) as client:
        return await client.request(METHOD_FETCH_BLOCKS, params)


async def test_fetch_over_websocket(served: tuple[SidechainDb, str]) -> None:
    db, url = served
    chain = make_chain(12)
    db.store_blocks(chain + make_chain(3, shard=OTHER_SHARD))
    shard = to_hex(SHARD)

    everything = await _fetch_raw(url, [[to_hex(ZERO), None, shard]])
    assert [json_to_encoded_block(o) for o in everything] == chain
    after = await _fetch_raw(url, [[to_hex(h(chain[3])), None, shard]])
    assert [json_to_encoded_block(o) for o in after] == chain[4:]
    ranged = await _fetch_raw(url, [[to_hex(h(chain[3])), to_hex(h(chain[8])), shard]])
    assert [o["block"]["header"]["block_number"] for o in ranged] == [5, 6, 7, 8]
    assert await _fetch_raw(url, [[to_hex(b"\x99" * 32), None, shard]]) == []
    assert await _fetch_raw(url, [[to_hex(ZERO), None, to_hex(b"\x99" * 32)]]) == []
    assert await _fetch_raw(url, [[to_hex(h(chain[-1])), None, shard]]) == []
    unknown_until = await _fetch_raw(url, [[to_hex(h(chain[9])), to_hex(b"\x98" * 32), shard]])
    assert [o["block"]["header"]["block_number"] for o in unknown_until] == [11, 12]
    older_form = await _fetch_raw(url, [[to_hex(h(chain[9])), shard]])
    assert [o["block"]["header"]["block_number"] for o in older_form] == [11, 12]


async def test_fetch_over_http_and_rpc_methods(served: tuple[SidechainDb, str]) -> None:
    db, url = served
    db.store_blocks(make_chain(2))
    result = await asyncio.to_thread(
        rpc_call, url, METHOD_FETCH_BLOCKS, [[to_hex(ZERO), None, to_hex(SHARD)]]
    )
    assert len(result) == 2
    async with RpcClient.connect(url) as client:
        methods = await client.request("rpc_methods", [])
    assert METHOD_FETCH_BLOCKS in methods["methods"] and "rpc_methods" in methods["methods"]


@pytest.mark.parametrize(
    "params",
    [
        [],
        ["0x" + "00" * 32, None, "0x" + "aa" * 32],
        [["0x" + "00" * 32]],
        [["0x" + "00" * 32, None, "0x" + "aa" * 31]],
        [["0xzz" + "00" * 31, None, "0x" + "aa" * 32]],
        [["0x" + "00" * 32, 17, "0x" + "aa" * 32]],
        {"from": "0x" + "00" * 32},
        [[None, None, None]],
    ],
)
async def test_bad_params_get_invalid_params(served: tuple[SidechainDb, str], params: Any) -> None:
    _db, url = served
    with pytest.raises(RpcError) as info:
        await _fetch_raw(url, params)
    assert info.value.code == INVALID_PARAMS
    assert info.value.message.startswith(METHOD_FETCH_BLOCKS)


async def test_replies_are_bounded_and_the_client_pages(db: SidechainDb) -> None:
    chain = make_chain(23)
    db.store_blocks(chain)
    server = await _serve(UntrustedRpc(db, max_blocks=5))
    url = f"ws://127.0.0.1:{server.port}"
    try:
        page = await _fetch_raw(url, [[to_hex(ZERO), None, to_hex(SHARD)]])
        assert len(page) == 5
        assert await fetch_blocks_from_peer(url, ZERO, None, SHARD) == chain
        assert await fetch_blocks_from_peer(url, h(chain[2]), h(chain[20]), SHARD) == chain[3:20]
        assert (
            await fetch_blocks_from_peer(url, h(chain[2]), None, SHARD, max_blocks=7) == chain[3:10]
        )
        assert await fetch_blocks_from_peer(url, b"\x99" * 32, None, SHARD) == []
    finally:
        await server.stop()


async def test_reply_size_is_bounded_but_never_empty(db: SidechainDb) -> None:
    big = 40_000
    chain = make_chain(6, diff=b"\xff" * big)
    db.store_blocks(chain)
    # Room for about two blocks of JSON per reply; a block larger than the budget still goes.
    server = await _serve(UntrustedRpc(db, max_result_bytes=2 * 4 * big + 5000))
    tiny = await _serve(UntrustedRpc(db, max_result_bytes=10))
    try:
        url = f"ws://127.0.0.1:{server.port}"
        page = await _fetch_raw(url, [[to_hex(ZERO), None, to_hex(SHARD)]])
        assert len(page) == 2
        assert len(json.dumps(page, separators=(",", ":"))) < 2 * 4 * big + 5000
        assert await fetch_blocks_from_peer(url, ZERO, None, SHARD) == chain
        tiny_url = f"ws://127.0.0.1:{tiny.port}"
        assert len(await _fetch_raw(tiny_url, [[to_hex(ZERO), None, to_hex(SHARD)]])) == 1
        assert await fetch_blocks_from_peer(tiny_url, ZERO, None, SHARD) == chain
    finally:
        await server.stop()
        await tiny.stop()


async def test_joiner_syncs_from_a_pruned_peer(db: SidechainDb, tmp_path: Path) -> None:
    """A late validateer fetches the peer's pruned chain from the zero hash, then catches up."""
    chain = make_chain(250)
    db.store_blocks(chain[:200])
    db.prune(SHARD, keep_newest=100)
    server = await _serve(UntrustedRpc(db, max_blocks=64))
    url = f"ws://127.0.0.1:{server.port}"
    try:
        with SidechainDb.open_in(tmp_path / "joiner") as joiner:
            fetched = await fetch_blocks_from_peer(url, ZERO, None, SHARD)
            assert [s.number for s in joiner.store_blocks(fetched).stored] == list(range(101, 201))
            db.store_blocks(chain[200:])
            last = joiner.last_block(SHARD)
            assert last is not None
            more = await fetch_blocks_from_peer(url, last.hash, None, SHARD)
            assert len(joiner.store_blocks(more).stored) == 50
            assert joiner.blocks_after(SHARD, ZERO) == db.blocks_after(SHARD, ZERO) == chain[100:]
    finally:
        await server.stop()


# -- the client against misbehaving peers -----------------------------------------------------


async def _peer_returning(reply: Callable[[Any], Any]) -> RpcServer:
    server = RpcServer(name="bad-peer")
    server.add_method(METHOD_FETCH_BLOCKS, reply)
    await server.start("127.0.0.1", 0)
    return server


CHAIN = make_chain(3)


@pytest.mark.parametrize(
    ("reply", "from_hash", "message"),
    [
        ({"blocks": []}, ZERO, "not an array"),
        ([encoded_block_to_json(CHAIN[0])], b"\x11" * 32, "parent"),
        ([encoded_block_to_json(b) for b in (CHAIN[0], CHAIN[2])], ZERO, "parent"),
        (
            [encoded_block_to_json(b) for b in (CHAIN[0], make_block(5, h(CHAIN[0])))],
            ZERO,
            "does not follow",
        ),
        ([encoded_block_to_json(make_block(1, ZERO, OTHER_SHARD))], ZERO, "another shard"),
        ([encoded_block_to_json(CHAIN[0]), {"block": {}}], ZERO, "block 1 of the reply"),
    ],
)
async def test_client_rejects_inconsistent_replies(
    reply: Any, from_hash: bytes, message: str
) -> None:
    server = await _peer_returning(lambda params: reply)
    try:
        with pytest.raises(PeerFetchError, match=message):
            await fetch_blocks_from_peer(f"ws://127.0.0.1:{server.port}", from_hash, None, SHARD)
    finally:
        await server.stop()


async def test_client_rejects_a_reply_containing_the_until_block() -> None:
    chain = make_chain(3)
    server = await _peer_returning(lambda params: [encoded_block_to_json(b) for b in chain])
    try:
        with pytest.raises(PeerFetchError, match="until block"):
            await fetch_blocks_from_peer(f"ws://127.0.0.1:{server.port}", ZERO, h(chain[2]), SHARD)
    finally:
        await server.stop()


async def test_client_stops_an_endless_peer_at_max_blocks() -> None:
    chain = make_chain(40)
    by_parent = {stored_block_hash(b): i for i, b in enumerate(chain)}

    def endless(params: Any) -> Any:
        start = by_parent.get(bytes.fromhex(params[0][0][2:]), -1) + 1
        return [encoded_block_to_json(b) for b in chain[start : start + 10]]

    server = await _peer_returning(endless)
    try:
        got = await fetch_blocks_from_peer(
            f"ws://127.0.0.1:{server.port}", ZERO, None, SHARD, max_blocks=25
        )
        assert got == chain[:25]
    finally:
        await server.stop()


async def test_client_argument_checks() -> None:
    with pytest.raises(ValueError, match="shard"):
        await fetch_blocks_from_peer("ws://127.0.0.1:1", ZERO, None, b"\x00")
    with pytest.raises(ValueError, match="until_hash"):
        await fetch_blocks_from_peer("ws://127.0.0.1:1", ZERO, b"\x00", SHARD)
