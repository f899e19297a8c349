"""Node over the network: state_getStorage requests per second, and transfers included per second
when pre-signed transfers are pushed through author_submitExtrinsic.

Starts `integritee-node --dev` on free ports, measures, stops it.

    .venv/bin/python benchmarks/rpc_bench.py [--requests 20000] [--concurrency 100] [--transfers 6000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

from integritee.codec.hexutil import to_hex
from integritee.codec.scale import EnumValue
from integritee.crypto.hashing import blake2_128_concat, storage_prefix
from integritee.crypto.keys import DEV_NAMES, Keypair
from integritee.node.runtime.construct import SPEC_VERSION, TRANSACTION_VERSION, runtime_call
from integritee.parentchain.extrinsic import sign_and_encode

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def ws_load(url: str, requests: list[dict], concurrency: int) -> tuple[float, int]:
    """Send requests over one WebSocket with `concurrency` in flight; returns (seconds, errors)."""
    errors = 0
    async with aiohttp.ClientSession() as session, session.ws_connect(url, max_msg_size=0) as ws:
        pending: dict[int, asyncio.Future] = {}

        async def reader() -> None:
            async for msg in ws:
                reply = json.loads(msg.data)
                fut = pending.pop(reply.get("id"), None)
                if fut is not None:
                    fut.set_result(reply)

        task = asyncio.create_task(reader())
        sem = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()

        async def one(i: int, req: dict) -> None:
            nonlocal errors
            async with sem:
                fut = loop.create_future()
                pending[i] = fut
                await ws.send_str(json.dumps({**req, "jsonrpc": "2.0", "id": i}))
                reply = await fut
                if "error" in reply:
                    errors += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i, r) for i, r in enumerate(requests)))
        elapsed = time.perf_counter() - t0
        task.cancel()
    return elapsed, errors


async def best_number(url: str, session: aiohttp.ClientSession) -> tuple[int, str]:
    async with session.post(
        url, json={"jsonrpc": "2.0", "id": 1, "method": "chain_getHeader", "params": []}
    ) as r:
        header = (await r.json())["result"]
    return int(header["number"], 16), header


async def count_included(url: str, since: int) -> int:
    async with aiohttp.ClientSession() as session:
        best, _ = await best_number(url, session)
        total = 0
        for n in range(since + 1, best + 1):
            async with session.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "chain_getBlockHash", "params": [n]}
            ) as r:
                h = (await r.json())["result"]
            async with session.post(
                url, json={"jsonrpc": "2.0", "id": 1, "method": "chain_getBlock", "params": [h]}
            ) as r:
                total += len((await r.json())["result"]["block"]["extrinsics"]) - 1
        return total


async def main_async(args: argparse.Namespace) -> None:
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [
                str(BIN / "integritee-node"),
                "--dev",
                "--base-path",
                tmp,
                "--rpc-port",
                str(port),
                "--no-prometheus",
                "--block-time-ms",
                str(args.block_time_ms),
                "--log-level",
                "warning",
            ],
        )
        url = f"http://127.0.0.1:{port}"
        try:
            async with aiohttp.ClientSession() as session:
                for _ in range(200):
                    try:
                        genesis_hash = None
                        async with session.post(
                            url,
                            json={
                                "jsonrpc": "2.0",
                                "id": 1,
                                "method": "chain_getBlockHash",
                                "params": [0],
                            },
                        ) as r:
                            genesis_hash = (await r.json())["result"]
                        break
                    except aiohttp.ClientError:
                        await asyncio.sleep(0.1)
            assert genesis_hash is not None
            alice_key = storage_prefix("System", "Account") + blake2_128_concat(
                Keypair.from_uri("//Alice").public_key
            )
            reqs = [{"method": "state_getStorage", "params": [to_hex(alice_key)]}] * args.requests
            seconds, errors = await ws_load(f"ws://127.0.0.1:{port}", reqs, args.concurrency)
            print(
                f"state_getStorage over one WS, {args.concurrency} in flight: {args.requests / seconds:,.0f} req/s ({errors} errors)"
            )

            # transfers: every dev account sends a chain of nonces to a fresh destination
            senders = [Keypair.from_uri(f"//{n}") for n in DEV_NAMES] + [
                Keypair.from_uri(f"//{n}//stash") for n in DEV_NAMES
            ]
            per_sender = args.transfers // len(senders)
            dest = EnumValue("Id", Keypair.from_uri("//Benchmark").public_key)
            call = runtime_call().encode(
                EnumValue(
                    "Balances", EnumValue("transfer_keep_alive", {"dest": dest, "value": 10**12})
                )
            )
            gh = bytes.fromhex(genesis_hash[2:])
            t0 = time.perf_counter()
            xts = [
                sign_and_encode(
                    call,
                    s,
                    nonce=n,
                    genesis_hash=gh,
                    spec_version=SPEC_VERSION,
                    tx_version=TRANSACTION_VERSION,
                )
                for n in range(per_sender)
                for s in senders
            ]
            print(
                f"pre-signed {len(xts)} transfers from {len(senders)} senders in {time.perf_counter() - t0:.1f} s"
            )
            async with aiohttp.ClientSession() as session:
                start_block, _ = await best_number(url, session)
            reqs = [{"method": "author_submitExtrinsic", "params": [to_hex(x)]} for x in xts]
            t0 = time.perf_counter()
            seconds, errors = await ws_load(f"ws://127.0.0.1:{port}", reqs, args.concurrency)
            print(
                f"author_submitExtrinsic: {len(xts) / seconds:,.0f} submissions/s ({errors} rejected)"
            )
            async with aiohttp.ClientSession() as session:
                while True:
                    async with session.post(
                        url,
                        json={
                            "jsonrpc": "2.0",
                            "id": 1,
                            "method": "author_pendingExtrinsics",
                            "params": [],
                        },
                    ) as r:
                        if not (await r.json())["result"]:
                            break
                    await asyncio.sleep(0.05)
            total = time.perf_counter() - t0
            included = await count_included(url, start_block)
            print(
                f"{included} transfers included in {total:.2f} s from first submission: {included / total:,.0f} included/s "
                f"(block time {args.block_time_ms} ms)"
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(20)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--transfers", type=int, default=6000)
    parser.add_argument("--block-time-ms", type=int, default=1000)
    asyncio.run(main_async(parser.parse_args()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
