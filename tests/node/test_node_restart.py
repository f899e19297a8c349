"""Restarting a node on its base path: after `kill -9` and after SIGTERM nothing is lost.

Each test runs its own node process (the shared dev node must not be killed). Transfers are built
by hand (SCALE extrinsic v4 signed with sr25519) so that these tests do not depend on the client
library, and sent over plain HTTP JSON-RPC.
"""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xxhash
from substrateinterface import Keypair
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect as ws_connect

from procs import BIN, NodeProcess, free_port

ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")


# --- hand-made extrinsics and storage keys (independent of the node's own encoders)


def compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    raw = n.to_bytes((n.bit_length() + 7) // 8, "little")
    return bytes([((len(raw) - 4) << 2) | 3]) + raw


def twox128(data: bytes) -> bytes:
    return xxhash.xxh64(data, seed=0).digest()[::-1] + xxhash.xxh64(data, seed=1).digest()[::-1]


def account_key(public: bytes) -> bytes:
    return (
        twox128(b"System")
        + twox128(b"Account")
        + hashlib.blake2b(public, digest_size=16).digest()
        + public
    )


def free_balance(value_hex: str) -> int:
    # AccountInfo: nonce, consumers, providers, sufficients (u32 each) ++ free (u128) ++ ...
    return int.from_bytes(bytes.fromhex(value_hex[2:])[16:32], "little")


def account_nonce(value_hex: str) -> int:
    return int.from_bytes(bytes.fromhex(value_hex[2:])[0:4], "little")


def signed_transfer(url: str, signer: Keypair, dest: bytes, amount: int, nonce: int) -> bytes:
    version = rpc(url, "state_getRuntimeVersion")
    genesis = bytes.fromhex(rpc(url, "chain_getBlockHash", [0])[2:])
    call = bytes([10, 3]) + b"\x00" + dest + compact(amount)  # Balances.transfer_keep_alive
    extra = b"\x00" + compact(nonce) + compact(0)  # immortal era, nonce, tip
    payload = (
        call
        + extra
        + version["specVersion"].to_bytes(4, "little")
        + version["transactionVersion"].to_bytes(4, "little")
        + genesis
        + genesis
    )
    if len(payload) > 256:
        payload = hashlib.blake2b(payload, digest_size=32).digest()
    body = b"\x84" + b"\x00" + signer.public_key + b"\x01" + signer.sign(payload) + extra + call
    return compact(len(body)) + body


def rpc(url: str, method: str, params: list | None = None) -> Any:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise AssertionError(f"{method}: {reply['error']}")
    return reply["result"]


def wait_until(predicate: Any, timeout: float = 15, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(0.05)


def storage(node: NodeProcess, key: bytes, at: str | None = None) -> Any:
    return rpc(node.http_url, "state_getStorage", ["0x" + key.hex(), at])


def transfer_and_wait(node: NodeProcess, amount: int) -> str:
    """Alice -> Bob; returns the hash of the block that includes it."""
    nonce = rpc(node.http_url, "system_accountNextIndex", [ALICE.ss58_address])
    xt = signed_transfer(node.http_url, ALICE, BOB.public_key, amount, nonce)
    rpc(node.http_url, "author_submitExtrinsic", ["0x" + xt.hex()])
    wait_until(
        lambda: (
            account_nonce(storage(node, account_key(ALICE.public_key)) or "0x" + "00" * 80) > nonce
        ),
        what="the transfer's inclusion",
    )
    # Find the including block: the first one whose state shows the new nonce.
    number = node.best_number()
    while number > 0:
        parent = rpc(node.http_url, "chain_getBlockHash", [number - 1])
        if account_nonce(storage(node, account_key(ALICE.public_key), parent)) <= nonce:
            return rpc(node.http_url, "chain_getBlockHash", [number])
        number -= 1
    raise AssertionError("transfer not found")


@pytest.fixture
def node_factory(tmp_path: Path) -> Iterator[Any]:
    """Node processes on one base path; every process started is stopped at the end."""
    started: list[NodeProcess] = []

    def make() -> NodeProcess:
        node = NodeProcess(tmp_path / "base", block_time_ms=300)
        started.append(node)
        return node

    try:
        yield make
    finally:
        for node in started:
            node.kill()


def test_kill9_then_restart_keeps_blocks_and_balances(node_factory: Any) -> None:
    first = node_factory().start(wait_blocks=2)
    genesis = rpc(first.http_url, "chain_getBlockHash", [0])
    bob_key = account_key(BOB.public_key)
    bob_before = free_balance(storage(first, bob_key))
    included_in = transfer_and_wait(first, 12345)
    included_number = int(rpc(first.http_url, "chain_getHeader", [included_in])["number"], 16)
    bob_after = free_balance(storage(first, bob_key, included_in))
    assert bob_after == bob_before + 12345
    first.wait_for_block(included_number + 2)
    # Kill it while it is busy: transfers in the pool, some being authored.
    for nonce in range(1, 9):
        xt = signed_transfer(first.http_url, ALICE, BOB.public_key, 1, nonce)
        rpc(first.http_url, "author_submitExtrinsic", ["0x" + xt.hex()])
    time.sleep(0.4)
    best_before = first.best_number()
    hash_at_best_before = rpc(first.http_url, "chain_getBlockHash", [best_before])
    finalized_before = int(
        rpc(first.http_url, "chain_getHeader", [rpc(first.http_url, "chain_getFinalizedHead")])[
            "number"
        ],
        16,
    )

    first.kill()
    assert first.proc is not None and first.proc.returncode == -signal.SIGKILL

    second = node_factory().start(wait_blocks=0)
    # Nothing the first process reported before the kill is gone.
    assert second.best_number() >= best_before
    assert rpc(second.http_url, "chain_getBlockHash", [0]) == genesis
    assert rpc(second.http_url, "chain_getBlockHash", [best_before]) == hash_at_best_before
    assert rpc(second.http_url, "chain_getBlockHash", [included_number]) == included_in
    finalized_after = rpc(
        second.http_url, "chain_getHeader", [rpc(second.http_url, "chain_getFinalizedHead")]
    )
    assert int(finalized_after["number"], 16) >= finalized_before
    assert free_balance(storage(second, bob_key, included_in)) == bob_after
    # Blocks and state agree: Alice's nonce is the number of her transactions in the chain, and
    # Bob got 1 per included transfer after the first.
    alice_nonce = account_nonce(storage(second, account_key(ALICE.public_key)))
    best = second.best_number()
    signed = sum(
        len(
            rpc(
                second.http_url, "chain_getBlock", [rpc(second.http_url, "chain_getBlockHash", [n])]
            )["block"]["extrinsics"]
        )
        - 1
        for n in range(1, best + 1)
    )
    assert alice_nonce == signed >= 1
    assert free_balance(storage(second, bob_key)) == bob_after + (alice_nonce - 1)
    bob_after = bob_after + (alice_nonce - 1)

    # It keeps authoring on top of the old chain, and accepts transactions again.
    resumed_at = second.best_number()
    second.wait_for_block(resumed_at + 2, timeout=10)
    parent = rpc(
        second.http_url,
        "chain_getHeader",
        [rpc(second.http_url, "chain_getBlockHash", [resumed_at + 1])],
    )["parentHash"]
    assert parent == rpc(second.http_url, "chain_getBlockHash", [resumed_at])
    transfer_and_wait(second, 1)
    assert free_balance(storage(second, bob_key)) == bob_after + 1


def test_sigterm_exits_zero_and_restarts_cleanly(node_factory: Any) -> None:
    first = node_factory().start(wait_blocks=3)
    # A client with a live subscription must not hold the shutdown up.
    with ws_connect(first.ws_url, open_timeout=10) as ws:
        ws.send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "chain_subscribeNewHeads", "params": []}
            )
        )
        assert "result" in json.loads(ws.recv(timeout=10))
        ws.recv(timeout=10)  # the first notification
        best_before = first.best_number()
        started = time.monotonic()
        code = first.stop(signal.SIGTERM)
        assert time.monotonic() - started < 5
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=5)
    assert code == 0
    best_at_stop = best_before
    assert first.log_path is not None
    log = first.log_path.read_text()
    assert "Traceback" not in log

    second = node_factory().start(wait_blocks=0)
    assert second.best_number() >= best_at_stop
    second.wait_for_block(second.best_number() + 2, timeout=10)
    assert second.stop(signal.SIGINT) == 0
    assert second.log_path is not None
    assert "Traceback" not in second.log_path.read_text()


def test_second_node_on_a_locked_base_path_fails_cleanly(node_factory: Any) -> None:
    running = node_factory().start(wait_blocks=1)
    cmd = [
        str(BIN / "integritee-node"),
        "--dev",
        "--base-path",
        str(running.base_path),
        "--rpc-port",
        str(free_port()),
        "--prometheus-port",
        str(free_port()),
    ]
    proc = subprocess.run(cmd, capture_output=True, timeout=30, text=True)
    assert proc.returncode != 0
    # A clear one-line error, not a crash with a traceback.
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "lock" in proc.stderr.lower() or "in use" in proc.stderr.lower()
    # The running node is unaffected.
    before = running.best_number()
    running.wait_for_block(before + 1, timeout=10)
