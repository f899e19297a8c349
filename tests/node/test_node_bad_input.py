"""Bad input to the node's JSON-RPC: every case gets a JSON-RPC error and the node keeps authoring.

Codes are Substrate's (jsonrpsee's and the author API's): -32700 parse error, -32600 invalid
request, -32601 method not found, -32602 invalid params, -32007 oversized request, 1001 bad
extrinsic format, 1010 invalid transaction, 1012 temporarily banned, 1013 already imported.
Extrinsics are built by hand (SCALE extrinsic v4, sr25519) so they can be tampered with.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import websockets
from substrateinterface import Keypair

from procs import NodeProcess

ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")
EVE = Keypair.create_from_uri("//Eve")
FERDIE = Keypair.create_from_uri("//Ferdie")
MiB = 1024 * 1024


# --- plumbing


def post(node: NodeProcess, body: bytes, timeout: float = 30) -> tuple[int, Any]:
    """POST raw bytes; returns (HTTP status, decoded JSON reply)."""
    req = urllib.request.Request(node.http_url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def call(node: NodeProcess, method: str, params: Any = None, req_id: Any = 1) -> dict[str, Any]:
    body = {
        "jsonrpc": "2.0",
        "id": req_id,
        "method": method,
        "params": [] if params is None else params,
    }
    _status, reply = post(node, json.dumps(body).encode())
    assert isinstance(reply, dict)
    return reply


def result(node: NodeProcess, method: str, params: Any = None) -> Any:
    reply = call(node, method, params)
    assert "error" not in reply, reply
    return reply["result"]


def error(reply: dict[str, Any], code: int) -> dict[str, Any]:
    assert "result" not in reply, reply
    assert reply["error"]["code"] == code, reply
    assert reply["jsonrpc"] == "2.0"
    return reply["error"]


def assert_still_authoring(node: NodeProcess) -> None:
    best = node.best_number()
    node.wait_for_block(best + 1, timeout=10)


@pytest.fixture(scope="module", autouse=True)
def _node_keeps_authoring(dev_node: NodeProcess) -> Any:
    """After all the abuse the node still authors blocks (checked once: a block takes 300 ms)."""
    yield
    assert dev_node.proc is not None and dev_node.proc.poll() is None, "the node process died"
    assert_still_authoring(dev_node)


@pytest.fixture(autouse=True)
def _node_survives(dev_node: NodeProcess) -> Any:
    yield
    assert dev_node.proc is not None and dev_node.proc.poll() is None, "the node process died"
    assert result(dev_node, "system_health")["isSyncing"] is False


# --- hand-made extrinsics


def compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def transfer_call(dest: bytes, amount: int) -> bytes:
    return bytes([10, 3]) + b"\x00" + dest + compact(amount)  # Balances.transfer_keep_alive


def sign(
    node: NodeProcess,
    signer: Keypair,
    call_bytes: bytes,
    nonce: int,
    *,
    genesis: bytes | None = None,
    spec_version: int | None = None,
) -> bytes:
    version = result(node, "state_getRuntimeVersion")
    real_genesis = bytes.fromhex(result(node, "chain_getBlockHash", [0])[2:])
    genesis = real_genesis if genesis is None else genesis
    spec = version["specVersion"] if spec_version is None else spec_version
    extra = b"\x00" + compact(nonce) + compact(0)
    payload = (
        call_bytes
        + extra
        + spec.to_bytes(4, "little")
        + version["transactionVersion"].to_bytes(4, "little")
        + genesis
        + genesis
    )
    if len(payload) > 256:
        payload = hashlib.blake2b(payload, digest_size=32).digest()
    body = b"\x84\x00" + signer.public_key + b"\x01" + signer.sign(payload) + extra + call_bytes
    return compact(len(body)) + body


def next_index(node: NodeProcess, who: Keypair) -> int:
    return result(node, "system_accountNextIndex", [who.ss58_address])


def submit(node: NodeProcess, xt: bytes) -> dict[str, Any]:
    return call(node, "author_submitExtrinsic", ["0x" + xt.hex()])


def wait_nonce(node: NodeProcess, who: Keypair, nonce: int) -> None:
    deadline = time.monotonic() + 10
    while (
        result(node, "state_call", ["AccountNonceApi_account_nonce", "0x" + who.public_key.hex()])
        != "0x" + nonce.to_bytes(4, "little").hex()
    ):
        assert time.monotonic() < deadline, "transaction not included"
        time.sleep(0.05)


# --- JSON-RPC level


@pytest.mark.parametrize(
    "body",
    [
        b"{bad json",
        b'{"jsonrpc":"2.0","id":1,"method":"system_name"',
        b"\xff\xfe\x00",
        b"[" * 100_000,
        b"",
    ],
    ids=["garbage", "truncated", "not-utf8", "deeply-nested", "empty"],
)
def test_malformed_json_is_a_parse_error(dev_node: NodeProcess, body: bytes) -> None:
    status, reply = post(dev_node, body)
    assert status == 200
    error(reply, -32700)
    assert reply["id"] is None


@pytest.mark.parametrize(
    "request_obj",
    [
        {"jsonrpc": "2.0", "id": 1},
        {"jsonrpc": "1.0", "id": 1, "method": "system_name"},
        {"jsonrpc": "2.0", "id": 1, "method": 5},
        {"jsonrpc": "2.0", "id": [1], "method": "system_name"},
        [],
        "system_name",
    ],
    ids=["no-method", "wrong-version", "method-not-string", "id-array", "empty-batch", "string"],
)
def test_invalid_request_objects(dev_node: NodeProcess, request_obj: Any) -> None:
    _status, reply = post(dev_node, json.dumps(request_obj).encode())
    error(reply, -32600)


def test_unknown_method(dev_node: NodeProcess) -> None:
    err = error(call(dev_node, "chain_noSuchThing", []), -32601)
    assert "chain_noSuchThing" in err["message"] or err["message"] == "Method not found"


@pytest.mark.parametrize(
    ("method", "params"),
    [
        ("chain_getBlockHash", ["xyz"]),
        ("chain_getBlockHash", [True]),
        ("chain_getBlockHash", [{"n": 1}]),
        ("state_getStorage", [123]),
        ("state_getStorage", ["0xzz"]),
        ("state_getStorage", []),
        ("chain_getHeader", ["0x1234"]),
        ("chain_getBlock", [42]),
        ("state_getKeysPaged", ["0x", "five"]),
        ("state_getKeysPaged", ["0x", 10**6]),
        ("state_queryStorageAt", ["0x00"]),
        ("system_accountNextIndex", ["not-an-address"]),
        ("system_accountNextIndex", [17]),
        ("author_submitExtrinsic", [123]),
        ("author_submitExtrinsic", ["0xnothex"]),
        ("author_submitExtrinsic", []),
        ("state_call", [7, "0x"]),
        ("chain_getBlockHash", "not-a-list"),
    ],
)
def test_wrong_params_are_invalid_params(dev_node: NodeProcess, method: str, params: Any) -> None:
    error(call(dev_node, method, params), -32602)


# --- extrinsics


@pytest.mark.parametrize(
    "raw",
    ["0xdeadbeef", "0x", "0x00", "0x1084000102", "0x0c040a03", "0x" + "ff" * 200],
    ids=[
        "length-mismatch",
        "empty",
        "zero-length",
        "truncated-signed",
        "bare-truncated-call",
        "all-ff",
    ],
)
def test_garbage_extrinsic(dev_node: NodeProcess, raw: str) -> None:
    reply = call(dev_node, "author_submitExtrinsic", [raw])
    assert "error" in reply, reply
    assert reply["error"]["code"] in (1001, 1010), reply


def test_unsigned_transfer_is_rejected(dev_node: NodeProcess) -> None:
    body = b"\x04" + transfer_call(BOB.public_key, 1000)
    err = error(submit(dev_node, compact(len(body)) + body), 1010)
    assert "Invalid Transaction" in err["message"]


def test_bad_signature(dev_node: NodeProcess) -> None:
    nonce = next_index(dev_node, ALICE)
    good = sign(dev_node, ALICE, transfer_call(BOB.public_key, 1000), nonce)
    # Flip one bit of the signature (after compact(2) ++ 0x84 ++ 0x00 ++ pubkey ++ 0x01).
    sig_at = 2 + 1 + 33 + 1
    tampered = bytearray(good)
    tampered[sig_at + 10] ^= 0x01
    err = error(submit(dev_node, bytes(tampered)), 1010)
    assert "bad signature" in err.get("data", "").lower(), err
    # Signed by someone else than the address claims.
    forged = bytearray(good)
    forged[3 + 1 : 3 + 33] = EVE.public_key
    err = error(submit(dev_node, bytes(forged)), 1010)
    assert "bad signature" in err.get("data", "").lower(), err
    # Signed for another chain or another runtime version: the payload differs, so does the proof.
    for wrong in (
        sign(dev_node, ALICE, transfer_call(BOB.public_key, 1000), nonce, genesis=b"\x11" * 32),
        sign(dev_node, ALICE, transfer_call(BOB.public_key, 1000), nonce, spec_version=1),
    ):
        err = error(submit(dev_node, wrong), 1010)
        assert "bad signature" in err.get("data", "").lower(), err
    # The resubmission of a banned bad extrinsic is refused without validation.
    reply = submit(dev_node, bytes(tampered))
    assert reply["error"]["code"] in (1010, 1012), reply


def test_stale_nonce(dev_node: NodeProcess) -> None:
    nonce = next_index(dev_node, FERDIE)
    assert "error" not in submit(
        dev_node, sign(dev_node, FERDIE, transfer_call(BOB.public_key, 1000), nonce)
    )
    wait_nonce(dev_node, FERDIE, nonce + 1)
    # Same nonce again, different call (so not a duplicate): outdated.
    replay = sign(dev_node, FERDIE, transfer_call(BOB.public_key, 2000), nonce)
    err = error(submit(dev_node, replay), 1010)
    assert "Transaction is outdated" in err.get("data", ""), err


def test_duplicate_submission(dev_node: NodeProcess) -> None:
    # A future nonce keeps the transaction waiting in the pool, so the second submission meets it
    # there whatever the block timing.
    nonce = next_index(dev_node, EVE) + 5
    xt = sign(dev_node, EVE, transfer_call(BOB.public_key, 1000), nonce)
    first = submit(dev_node, xt)
    assert "error" not in first, first
    assert first["result"] == "0x" + hashlib.blake2b(xt, digest_size=32).hexdigest()
    err = error(submit(dev_node, xt), 1013)
    assert "already imported" in err["message"].lower()


def test_same_nonce_needs_a_higher_tip(dev_node: NodeProcess) -> None:
    charlie = Keypair.create_from_uri("//Charlie")
    nonce = next_index(dev_node, charlie) + 7  # future: stays in the pool
    first = sign(dev_node, charlie, transfer_call(BOB.public_key, 1000), nonce)
    assert "error" not in submit(dev_node, first)
    rival = sign(dev_node, charlie, transfer_call(BOB.public_key, 2000), nonce)
    err = error(submit(dev_node, rival), 1014)
    assert "priority is too low" in err["message"].lower()
    pending = result(dev_node, "author_pendingExtrinsics")
    assert "0x" + first.hex() in pending and "0x" + rival.hex() not in pending


def test_oversized_extrinsic_is_refused_quickly(dev_node: NodeProcess) -> None:
    # 6 MiB with a correct length prefix: larger than a block may hold.
    body = (
        b"\x84\x00"
        + ALICE.public_key
        + b"\x01"
        + b"\x00" * 64
        + b"\x00\x00\x00"
        + b"\x0a\x03"
        + b"\x00" * (6 * MiB)
    )
    started = time.monotonic()
    reply = submit(dev_node, compact(len(body)) + body)
    assert reply["error"]["code"] in (1001, 1010), reply
    assert time.monotonic() - started < 5


def test_unaffordable_transfer(dev_node: NodeProcess) -> None:
    pauper = Keypair.create_from_uri("//Pauper")
    err = error(
        submit(dev_node, sign(dev_node, pauper, transfer_call(BOB.public_key, 10**12), 0)), 1010
    )
    assert "Inability to pay some fees" in err.get("data", ""), err


# --- size limits


def test_oversized_request_over_http(dev_node: NodeProcess) -> None:
    big = b'{"jsonrpc":"2.0","id":1,"method":"system_name","params":["' + b"a" * (20 * MiB) + b'"]}'
    status, reply = post(dev_node, big)
    error(reply, -32007)
    assert status in (200, 413)
    # The server is fine afterwards, also for large requests under the limit.
    assert result(dev_node, "system_name") == "Integritee Node"
    hex_data = "0x" + "00" * (4 * MiB)
    reply = call(dev_node, "author_submitExtrinsic", [hex_data])
    assert reply["error"]["code"] in (1001, 1010), reply


async def test_oversized_request_over_websocket(dev_node: NodeProcess) -> None:
    big = '{"jsonrpc":"2.0","id":1,"method":"system_name","params":["' + "a" * (20 * MiB) + '"]}'
    async with websockets.connect(dev_node.ws_url, max_size=None, open_timeout=10) as ws:
        await ws.send(big)
        try:
            reply = json.loads(await asyncio.wait_for(ws.recv(), 15))
        except websockets.ConnectionClosed as e:
            pytest.fail(f"the server closed the connection ({e}) instead of answering -32007")
        error(reply, -32007)
        # Substrate (jsonrpsee) keeps the connection open after refusing the request.
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "system_name", "params": []})
        )
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["result"] == "Integritee Node"


async def test_request_just_over_the_limit_over_websocket(dev_node: NodeProcess) -> None:
    big = '{"jsonrpc":"2.0","id":1,"method":"system_name","params":["' + "a" * (16 * MiB) + '"]}'
    async with websockets.connect(dev_node.ws_url, max_size=None, open_timeout=10) as ws:
        await ws.send(big)
        error(json.loads(await asyncio.wait_for(ws.recv(), 15)), -32007)
        await ws.send(
            json.dumps({"jsonrpc": "2.0", "id": 2, "method": "system_name", "params": []})
        )
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["result"] == "Integritee Node"


# --- batches and WebSocket oddities


def test_batch_with_mixed_valid_and_invalid_calls(dev_node: NodeProcess) -> None:
    nonce = next_index(dev_node, BOB)
    good = sign(dev_node, BOB, transfer_call(ALICE.public_key, 1000), nonce)
    batch = [
        {"jsonrpc": "2.0", "id": 1, "method": "system_chain", "params": []},
        {"jsonrpc": "2.0", "id": 2, "method": "no_such_method", "params": []},
        {"jsonrpc": "2.0", "id": 3, "method": "chain_getBlockHash", "params": ["xyz"]},
        {"jsonrpc": "2.0", "method": "system_name", "params": []},  # notification: no reply
        {
            "jsonrpc": "2.0",
            "id": "four",
            "method": "author_submitExtrinsic",
            "params": ["0x" + good.hex()],
        },
        {
            "jsonrpc": "2.0",
            "id": 5,
            "method": "author_submitExtrinsic",
            "params": ["0x" + good.hex()],
        },
        {"jsonrpc": "2.0", "id": 6, "method": "author_submitExtrinsic", "params": ["0xdeadbeef"]},
        17,
        {"jsonrpc": "2.0", "id": 7, "method": "chain_getBlockHash", "params": [0]},
    ]
    _status, replies = post(dev_node, json.dumps(batch).encode())
    assert isinstance(replies, list)
    by_id = {r["id"]: r for r in replies}
    assert len(replies) == 8  # every element but the notification answered
    assert by_id[1]["result"] == "Integritee Development"
    error(by_id[2], -32601)
    error(by_id[3], -32602)
    assert by_id["four"]["result"] == "0x" + hashlib.blake2b(good, digest_size=32).hexdigest()
    error(by_id[5], 1013)
    assert by_id[6]["error"]["code"] in (1001, 1010)
    error(by_id[None], -32600)  # the bare number
    assert by_id[7]["result"] == result(dev_node, "chain_getBlockHash", [0])
    wait_nonce(dev_node, BOB, nonce + 1)


async def test_bad_input_over_websocket_keeps_the_connection(dev_node: NodeProcess) -> None:
    async with websockets.connect(dev_node.ws_url, open_timeout=10) as ws:

        async def roundtrip(text: str) -> Any:
            await ws.send(text)
            return json.loads(await asyncio.wait_for(ws.recv(), 10))

        error(await roundtrip("{not json"), -32700)
        error(
            await roundtrip(
                json.dumps({"jsonrpc": "2.0", "id": 1, "method": "nope", "params": []})
            ),
            -32601,
        )
        error(
            await roundtrip(
                json.dumps(
                    {"jsonrpc": "2.0", "id": 2, "method": "chain_getBlockHash", "params": ["x"]}
                )
            ),
            -32602,
        )
        error(
            await roundtrip(
                json.dumps(
                    {
                        "jsonrpc": "2.0",
                        "id": 3,
                        "method": "author_submitAndWatchExtrinsic",
                        "params": ["0xdeadbeef"],
                    }
                )
            ),
            1001,
        )
        await ws.send(b"\xff\xfe binary garbage")
        error(json.loads(await asyncio.wait_for(ws.recv(), 10)), -32700)
        reply = await roundtrip(
            json.dumps({"jsonrpc": "2.0", "id": 9, "method": "system_name", "params": []})
        )
        assert reply == {"jsonrpc": "2.0", "result": "Integritee Node", "id": 9}


def test_node_still_authors_and_accepts_transactions_after_bad_input(dev_node: NodeProcess) -> None:
    assert_still_authoring(dev_node)
    nonce = next_index(dev_node, ALICE)
    reply = submit(dev_node, sign(dev_node, ALICE, transfer_call(BOB.public_key, 1000), nonce))
    assert "error" not in reply, reply
    wait_nonce(dev_node, ALICE, nonce + 1)
