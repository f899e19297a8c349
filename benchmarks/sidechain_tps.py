"""Sidechain throughput and latency: a dev node, one validateer and the load generator on this machine.

Starts `integritee-node --dev` and `integritee-service ... run --dev --skip-ra --slot-duration-ms
300` on free ports in a temporary directory, then:

1. funds N accounts on the shard with `balance_set_balance` signed by //Alice (dev shards), in
   order over one connection, at most `--window` calls in flight (the pool's ready limit is 8192);
2. fast path: pre-signed `balance_transfer`s from those accounts, submitted with
   `author_submitAndWatchTrustedOperation` over K WSS connections (a sender's calls always on the
   same connection, so its nonces arrive in order), at most `--window` in flight; measures
   transfers per second included in sidechain blocks (first submission to last
   InSidechainBlock) and the latency submission -> InSidechainBlock in slots;
3. the RSA-3072 decryption bound: single-thread decryptions per second of one 384-byte block
   (a key of the same size, in this process, while the validateer idles);
4. RSA path: the same transfers encrypted to the enclave's shielding key with
   `author_submitAndWatchExtrinsic`, as a percentage of that bound;
5. repeats 1, 2 and 4 after topping the shard up to the next account count (default 1,000 then
   100,000 funded accounts);
6. `--clients` concurrent WSS clients: all connect, then each submits one transfer at a random
   moment within `--spread` seconds and waits for InSidechainBlock.

Prints markdown tables. The latency of the throughput phases is queueing under saturation (the
window is kept full); the latency of the clients phase is the one of a moderate load.

    .venv/bin/python benchmarks/sidechain_tps.py                     # 1,000 and 100,000 accounts
    .venv/bin/python benchmarks/sidechain_tps.py --accounts 1000 --transfers 3000 --clients 200
    .venv/bin/python benchmarks/sidechain_tps.py --profile-enclave /tmp/enclave.prof

`--profile-enclave` runs cProfile in the enclave process during the first fast-path phase (a
`sitecustomize` on PYTHONPATH arms it in the enclave only; SIGUSR1 starts, SIGUSR2 dumps) and
prints the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import pstats
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from integritee.codec.hexutil import from_hex, to_hex  # noqa: E402
from integritee.codec.scale import H256, Bytes, EnumValue, Option, text  # noqa: E402
from integritee.crypto.hashing import blake2_256  # noqa: E402
from integritee.crypto.keys import Keypair, dev_keypair  # noqa: E402
from integritee.crypto.shielding import ShieldingKey, ShieldingPublicKey  # noqa: E402
from integritee.parentchain.primitives import AccountInfoCodec  # noqa: E402
from integritee.trusted.calls import (  # noqa: E402
    Getter,
    TrustedOperation,
    balance_set_balance,
    balance_transfer,
    sign_call,
    sign_getter,
)
from integritee.trusted.rpc import Request, RpcReturnValue  # noqa: E402
from procs import NodeProcess, ValidateerProcess  # noqa: E402

UNIT = 10**12
FUNDS = 1_000 * UNIT
ALICE = dev_keypair("Alice")
FAST = "author_submitAndWatchTrustedOperation"
RSA = "author_submitAndWatchExtrinsic"
# hex(SCALE(DirectRequestStatus::TrustedOperationStatus(..))) of the statuses that end a watch
IN_SIDECHAIN_BLOCK = "0x0104"
FAILED = {"0x0108": "Usurped", "0x0109": "Dropped", "0x010a": "Invalid"}


# --------------------------------------------------------------------------------------------
# Load generation


@dataclass
class Op:
    """One pre-built submission and what happened to it."""

    top_hash: str  # hex: the subscription id the enclave uses
    request: str  # hex(SCALE(Request)), the single param
    sender: int  # index of the sender (keeps its calls on one connection)
    t_submit: float = 0.0
    t_done: float = 0.0
    block: str | None = None
    error: str | None = None


# The trusted RPC server allows 1024 subscriptions per connection (as jsonrpsee does): each
# watched submission holds one until its final status.
MAX_WATCHED_PER_CONNECTION = 1000


class Tracker:
    """In-flight windows (one per connection); wakes the phase when every op is final."""

    def __init__(self, total: int, windows: int, window: int) -> None:
        self.windows = [asyncio.Semaphore(window) for _ in range(windows)]
        self.remaining = total
        self.done = asyncio.Event()
        if total == 0:
            self.done.set()

    def finisher(self, index: int) -> Callable[[Op], None]:
        window = self.windows[index]

        def finished(op: Op) -> None:
            window.release()
            self.remaining -= 1
            if self.remaining == 0:
                self.done.set()

        return finished


class Channel:
    """One WSS connection to the trusted RPC with a minimal JSON-RPC client for submissions.

    Subscription ids are the top hashes, known in advance, so notifications map to their
    operation without waiting for the subscribe reply."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.ids = itertools.count(1)
        self.by_id: dict[int, Op] = {}
        self.calls: dict[int, asyncio.Future[object]] = {}
        self.by_hash: dict[str, Op] = {}
        self.on_final: Callable[[Op], None] = lambda op: None
        self.reader = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, url: str) -> Channel:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(url, ssl=False, max_msg_size=64 * 1024 * 1024)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.ws.close()
        self.reader.cancel()
        with contextlib.suppress(BaseException):
            await self.reader
        await self.session.close()

    async def submit(self, op: Op, method: str) -> None:
        rid = next(self.ids)
        self.by_id[rid] = op
        self.by_hash[op.top_hash] = op
        op.t_submit = time.perf_counter()
        await self.ws.send_str(
            f'{{"jsonrpc":"2.0","id":{rid},"method":"{method}","params":["{op.request}"]}}'
        )

    async def request(self, method: str, params: list[object]) -> object:
        """A plain call (not a submission)."""
        rid = next(self.ids)
        future: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        self.calls[rid] = future
        await self.ws.send_str(
            json.dumps({"jsonrpc": "2.0", "id": rid, "method": method, "params": params})
        )
        return await asyncio.wait_for(future, 60)

    def _final(self, op: Op) -> None:
        op.t_done = time.perf_counter()
        self.by_hash.pop(op.top_hash, None)
        self.on_final(op)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                call = self.calls.pop(data["id"], None)
                if call is not None:
                    if data.get("error"):
                        call.set_exception(RuntimeError(data["error"]))
                    else:
                        call.set_result(data.get("result"))
                    continue
                op = self.by_id.pop(data["id"], None)
                if op is not None and data.get("error"):
                    op.error = str(data["error"].get("message"))
                    if self.by_hash.get(op.top_hash) is op:
                        self._final(op)
                continue
            params = data.get("params") or {}
            op = self.by_hash.get(str(params.get("subscription")))
            if op is None:
                continue
            result = params.get("result", "")
            if result.startswith(IN_SIDECHAIN_BLOCK):
                op.block = result[len(IN_SIDECHAIN_BLOCK) :]
                self._final(op)
            elif result in FAILED:
                op.error = FAILED[result]
                self._final(op)
        for op in list(self.by_hash.values()):  # connection lost
            op.error = op.error or "connection closed"
            self._final(op)


async def open_channels(url: str, count: int, parallel: int = 50) -> list[Channel]:
    gate = asyncio.Semaphore(parallel)

    async def one() -> Channel:
        async with gate:
            return await Channel.open(url)

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def run_load(
    channels: Sequence[Channel], ops: Sequence[Op], method: str, window: int, timeout: float
) -> None:
    """Submit `ops` over `channels` (a sender's ops on one channel, in order), at most `window`
    in flight in all (and at most MAX_WATCHED_PER_CONNECTION per connection)."""
    per_channel = max(1, min(MAX_WATCHED_PER_CONNECTION, window // len(channels)))
    tracker = Tracker(len(ops), len(channels), per_channel)
    for i, ch in enumerate(channels):
        ch.on_final = tracker.finisher(i)
    shares: list[list[Op]] = [[] for _ in channels]
    for op in ops:
        shares[op.sender % len(channels)].append(op)

    async def pump(i: int, share: list[Op]) -> None:
        for op in share:
            await tracker.windows[i].acquire()
            await channels[i].submit(op, method)

    pumps = [asyncio.create_task(pump(i, share)) for i, share in enumerate(shares)]
    try:
        await asyncio.wait_for(tracker.done.wait(), timeout)
    except TimeoutError:
        stuck = [op for op in ops if not op.t_done]
        print(f"  timeout: {len(stuck):,} operations without a final status", flush=True)
        for op in stuck:
            op.error = "no final status (timeout)"
    finally:
        for task in pumps:
            task.cancel()
    await asyncio.gather(*pumps, return_exceptions=True)


# --------------------------------------------------------------------------------------------
# Building operations


@dataclass
class Shard:
    url: str
    mrenclave: bytes
    shard: bytes
    shielding: ShieldingPublicKey
    nonces: dict[bytes, int] = field(default_factory=dict)


def make_op(net: Shard, call: EnumValue, signer: Keypair, nonce: int, sender: int, rsa: bool) -> Op:
    tcs = sign_call(call, signer, nonce, net.mrenclave, net.shard)
    encoded = TrustedOperation.encode(tcs.into_trusted_operation(direct=True))
    payload = net.shielding.encrypt(encoded) if rsa else encoded
    request = to_hex(Request.encode({"shard": net.shard, "cyphertext": payload}))
    return Op(to_hex(blake2_256(encoded)), request, sender)


def transfers(
    net: Shard,
    senders: Sequence[Keypair],
    receivers: Sequence[bytes],
    count: int,
    rsa: bool,
    rng: random.Random,
) -> list[Op]:
    """`count` transfers of 1 UNIT; sender i % len(senders), nonces from `net.nonces`."""
    ops = []
    for i in range(count):
        index = i % len(senders)
        key = senders[index]
        nonce = net.nonces.get(key.public_key, 0)
        net.nonces[key.public_key] = nonce + 1
        to = receivers[rng.randrange(len(receivers))]
        ops.append(make_op(net, balance_transfer(key.public_key, to, UNIT), key, nonce, index, rsa))
    return ops


def funding(net: Shard, accounts: Sequence[bytes]) -> list[Op]:
    alice = ALICE.public_key
    nonce = net.nonces[alice]
    ops = [
        make_op(net, balance_set_balance(alice, who, FUNDS, 0), ALICE, nonce + i, 0, rsa=False)
        for i, who in enumerate(accounts)
    ]
    net.nonces[alice] = nonce + len(accounts)
    return ops


# --------------------------------------------------------------------------------------------
# Figures


@dataclass
class PhaseResult:
    name: str
    ops: list[Op]
    slot_ms: int

    @property
    def included(self) -> list[Op]:
        return [op for op in self.ops if op.block is not None]

    @property
    def errors(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for op in self.ops:
            if op.block is None:
                key = (op.error or "no final status")[:60]
                out[key] = out.get(key, 0) + 1
        return out

    @property
    def seconds(self) -> float:
        inc = self.included
        if not inc:
            return float("nan")
        return max(op.t_done for op in inc) - min(op.t_submit for op in self.ops)

    @property
    def tps(self) -> float:
        return len(self.included) / self.seconds

    def latency_slots(self, q: float) -> float:
        lat = sorted(op.t_done - op.t_submit for op in self.included)
        if not lat:
            return float("nan")
        return lat[min(len(lat) - 1, int(q * len(lat)))] * 1000 / self.slot_ms

    @property
    def blocks(self) -> int:
        return len({op.block for op in self.included})

    @property
    def per_block_max(self) -> int:
        counts: dict[str | None, int] = {}
        for op in self.included:
            counts[op.block] = counts.get(op.block, 0) + 1
        return max(counts.values(), default=0)


def rsa_decrypt_bound(seconds: float = 2.0) -> float:
    """Single-thread RSA-3072 OAEP decryptions of one block per second, in this process."""
    key = ShieldingKey.generate()
    blob = key.encrypt(os.urandom(150))  # a transfer's operation fits one 318-byte chunk
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        key.decrypt(blob)
        n += 1
    return n / (time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------
# Driving a network


async def value(ch: Channel, method: str, params: list[object] | None = None) -> bytes:
    result = await ch.request(method, params or [])
    assert isinstance(result, str)
    rv = RpcReturnValue.decode(from_hex(result))
    if rv["status"].name == "Error":
        raise RuntimeError(f"{method}: {text.decode(bytes(rv['value']))}")
    return bytes(rv["value"])


async def account_free(ch: Channel, net: Shard, who: Keypair) -> tuple[int, int]:
    """(free balance, nonce) of an account, read with a getter it signs."""
    getter = EnumValue("trusted", sign_getter(EnumValue("account_info", who.public_key), who))
    request = Request.encode({"shard": net.shard, "cyphertext": Getter.encode(getter)})
    raw = Option(Bytes).decode(await value(ch, "state_executeGetter", [to_hex(request)]))
    if raw is None:
        return 0, 0
    info = AccountInfoCodec.decode(bytes(raw))
    return info.data.free, info.nonce


async def connect_shard(url: str) -> Shard:
    ch = await Channel.open(url)
    try:
        mrenclave = bytes(H256.decode(await value(ch, "author_getFingerprint")))
        shard = bytes(H256.decode(await value(ch, "author_getShard")))
        key = ShieldingPublicKey.from_json(text.decode(await value(ch, "author_getShieldingKey")))
        net = Shard(url, mrenclave, shard, key)
        _, net.nonces[ALICE.public_key] = await account_free(ch, net, ALICE)
        return net
    finally:
        await ch.close()


def make_accounts(count: int, rng: random.Random) -> list[Keypair]:
    return [Keypair.from_seed(rng.randbytes(32), "ed25519") for _ in range(count)]


async def fund(net: Shard, accounts: Sequence[Keypair], window: int, slot_ms: int) -> dict:
    t0 = time.perf_counter()
    ops = funding(net, [k.public_key for k in accounts])
    t_signed = time.perf_counter()
    (ch,) = await open_channels(net.url, 1)
    try:
        await run_load([ch], ops, FAST, window, timeout=120 + len(ops) / 100)
        result = PhaseResult("funding", ops, slot_ms)
        if result.errors:
            raise RuntimeError(f"funding failed: {result.errors}")
        sample = random.Random(len(accounts)).sample(list(accounts), min(5, len(accounts)))
        for key in sample:
            free, _ = await account_free(ch, net, key)
            assert free == FUNDS, f"0x{key.public_key.hex()} has {free}, expected {FUNDS}"
    finally:
        await ch.close()
    return {
        "accounts": len(accounts),
        "sign_s": t_signed - t0,
        "total_s": time.perf_counter() - t0,
        "tps": result.tps,
    }


async def throughput(
    net: Shard,
    name: str,
    senders: Sequence[Keypair],
    receivers: Sequence[bytes],
    count: int,
    rsa: bool,
    args: argparse.Namespace,
    on_start: Callable[[], None] | None = None,
    on_end: Callable[[], None] | None = None,
) -> PhaseResult:
    rng = random.Random(name)
    ops = transfers(net, senders, receivers, count, rsa, rng)
    channels = await open_channels(net.url, args.connections)
    try:
        if on_start:
            on_start()
        await run_load(channels, ops, RSA if rsa else FAST, args.window, args.timeout)
        if on_end:
            on_end()
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
    result = PhaseResult(name, ops, args.slot_ms)
    if result.errors:
        print(f"  {name}: not included: {result.errors}", flush=True)
        await resync_nonces(net, [senders[op.sender % len(senders)] for op in ops if not op.block])
    return result


async def resync_nonces(net: Shard, keys: Sequence[Keypair]) -> None:
    """Senders whose calls did not go in: their nonces as the state has them."""
    (ch,) = await open_channels(net.url, 1)
    try:
        for key in {k.public_key: k for k in keys}.values():
            _, net.nonces[key.public_key] = await account_free(ch, net, key)
    finally:
        await ch.close()


async def concurrent_clients(
    net: Shard, senders: Sequence[Keypair], receivers: Sequence[bytes], args: argparse.Namespace
) -> tuple[PhaseResult, float]:
    rng = random.Random("clients")
    ops = transfers(net, senders[: args.clients], receivers, args.clients, False, rng)
    t0 = time.perf_counter()
    channels = await open_channels(net.url, args.clients, parallel=100)
    connect_s = time.perf_counter() - t0
    tracker = Tracker(len(ops), len(channels), 1)
    for i, ch in enumerate(channels):
        ch.on_final = tracker.finisher(i)

    async def client(ch: Channel, op: Op) -> None:
        await asyncio.sleep(rng.uniform(0, args.spread))
        await ch.submit(op, FAST)

    try:
        tasks = [asyncio.create_task(client(ch, op)) for ch, op in zip(channels, ops, strict=True)]
        await asyncio.wait_for(tracker.done.wait(), 60 + args.spread)
        await asyncio.gather(*tasks)
    finally:
        await asyncio.gather(*(ch.close() for ch in channels))
    return PhaseResult(f"{args.clients} clients", ops, args.slot_ms), connect_s


# --------------------------------------------------------------------------------------------
# Enclave profiling (cProfile armed by a sitecustomize in the enclave process only)

SITECUSTOMIZE = textwrap.dedent(
    """
    import os, signal
    if b"integritee.enclave" in open("/proc/self/cmdline", "rb").read():
        import cProfile, gc, json, time
        _prof = cProfile.Profile()
        _gc = {"on": False, "t": 0.0, "since": 0.0, "pause": [0.0, 0.0, 0.0], "runs": [0, 0, 0]}
        def _gc_cb(phase, info):
            if not _gc["on"]:
                return
            if phase == "start":
                _gc["t"] = time.perf_counter()
            else:
                _gc["pause"][info["generation"]] += time.perf_counter() - _gc["t"]
                _gc["runs"][info["generation"]] += 1
        gc.callbacks.append(_gc_cb)
        def _start(*a):
            _gc["on"], _gc["since"] = True, time.perf_counter()
            _prof.enable()
        def _dump(*a):
            _prof.disable()
            _gc["on"] = False
            path = os.environ["INTEGRITEE_BENCH_PROFILE"]
            _prof.dump_stats(path)
            with open(path + ".gc.json", "w") as f:
                json.dump({"profiled_s": time.perf_counter() - _gc["since"],
                           "gc_pause_s_by_generation": _gc["pause"],
                           "gc_runs_by_generation": _gc["runs"],
                           "tracked_objects": len(gc.get_objects())}, f)
        signal.signal(signal.SIGUSR1, _start)
        signal.signal(signal.SIGUSR2, _dump)
    """
)


def enclave_pid(v: ValidateerProcess) -> int:
    found = subprocess.run(
        ["pgrep", "-f", f"integritee.enclave --data-dir {v.data_dir}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(found.stdout.split()[0])


def profiler_switches(pid: int) -> tuple[Callable[[], None], Callable[[], None]]:
    return (lambda: os.kill(pid, signal.SIGUSR1), lambda: os.kill(pid, signal.SIGUSR2))


def print_profile(path: str, top: int = 30) -> None:
    stats = pstats.Stats(path)
    print(f"\n### enclave profile ({path}), by own time\n```")
    stats.sort_stats("tottime").print_stats(top)
    print("```\n### by cumulative time\n```")
    stats.sort_stats("cumulative").print_stats(top)
    print("```")
    with contextlib.suppress(FileNotFoundError):
        print(f"garbage collection while profiled: {Path(path + '.gc.json').read_text()}")


# --------------------------------------------------------------------------------------------


def fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


async def bench(args: argparse.Namespace, v: ValidateerProcess) -> None:
    net = await connect_shard(v.trusted_url)
    rng = random.Random(7)
    accounts: list[Keypair] = []
    setups: list[dict] = []
    rows: list[tuple[int, PhaseResult, PhaseResult, float]] = []
    profile_armed = bool(args.profile_enclave)
    clients: tuple[PhaseResult, float] | None = None
    for target in sorted(args.accounts):
        t0 = time.perf_counter()
        new = make_accounts(target - len(accounts), rng)
        keys_s = time.perf_counter() - t0
        setup = await fund(net, new, args.window, args.slot_ms)
        setup["keys_s"] = keys_s
        setup["accounts"] = target
        setups.append(setup)
        accounts += new
        print(
            f"funded {target:,} accounts: {setup['total_s'] + keys_s:.1f} s "
            f"({setup['tps']:,.0f} set_balance/s)",
            flush=True,
        )
        receivers = [k.public_key for k in accounts]
        # senders: every account when few, else a random sample spread over the whole state
        senders = (
            accounts
            if len(accounts) <= args.senders
            else random.Random(target).sample(accounts, args.senders)
        )
        start: Callable[[], None] | None = None
        stop: Callable[[], None] | None = None
        if profile_armed:
            start, stop = profiler_switches(enclave_pid(v))
            profile_armed = False
        fast = await throughput(
            net, f"fast {target}", senders, receivers, args.transfers, False, args, start, stop
        )
        print(f"  fast path: {fast.tps:,.0f} tps", flush=True)
        await asyncio.sleep(1)
        bound = rsa_decrypt_bound()
        rsa = await throughput(
            net, f"rsa {target}", senders, receivers, args.rsa_transfers, True, args
        )
        print(f"  RSA path: {rsa.tps:,.0f} tps (bound {bound:,.0f}/s)", flush=True)
        rows.append((target, fast, rsa, bound))
    if args.clients:
        clients = await concurrent_clients(net, accounts, [k.public_key for k in accounts], args)

    print(f"\n## Sidechain benchmark ({args.slot_ms} ms slots, {args.connections} connections)\n")
    print("| funded accounts | setup (keys + set_balance) | set_balance/s |")
    print("|---:|---:|---:|")
    for s in setups:
        print(
            f"| {s['accounts']:,} | {s['keys_s'] + s['total_s']:.1f} s "
            f"(signing {s['sign_s']:.1f} s) | {fmt(s['tps'])} |"
        )
    print(
        "\n| accounts | path | transfers | included/s | p50 / p99 latency (slots) "
        "| blocks | max per block | RSA bound/s | % of bound |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for target, fast, rsa, bound in rows:
        for r, label in ((fast, "fast"), (rsa, "RSA")):
            pct = f"{100 * r.tps / bound:.0f} %" if label == "RSA" else ""
            print(
                f"| {target:,} | {label} | {len(r.included):,}/{len(r.ops):,} | {fmt(r.tps)} "
                f"| {r.latency_slots(0.5):.1f} / {r.latency_slots(0.99):.1f} | {r.blocks} "
                f"| {r.per_block_max} | {fmt(bound) if label == 'RSA' else ''} | {pct} |"
            )
    if len(rows) >= 2:
        first, last = rows[0], rows[-1]
        print(
            f"\nslowdown {first[0]:,} -> {last[0]:,} accounts: fast x{first[1].tps / last[1].tps:.2f}, "
            f"RSA x{first[2].tps / last[2].tps:.2f}"
        )
    if clients is not None:
        result, connect_s = clients
        print(
            f"\n| concurrent clients | connected in | served | p50 / p99 latency (slots) |\n"
            f"|---:|---:|---:|---:|\n"
            f"| {len(result.ops):,} | {connect_s:.1f} s | {len(result.included):,} "
            f"| {result.latency_slots(0.5):.2f} / {result.latency_slots(0.99):.2f} |"
        )
        if result.errors:
            print(f"clients not served: {result.errors}")
    if args.profile_enclave:
        print_profile(args.profile_enclave)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--accounts", type=int, nargs="+", default=[1_000, 100_000])
    p.add_argument("--transfers", type=int, default=20_000, help="fast-path transfers per phase")
    p.add_argument("--rsa-transfers", type=int, default=5_000, help="RSA-path transfers")
    p.add_argument("--senders", type=int, default=5_000, help="distinct senders at most")
    p.add_argument("--connections", type=int, default=8)
    p.add_argument("--window", type=int, default=6_000, help="submissions in flight at most")
    p.add_argument("--clients", type=int, default=1_000, help="concurrent clients (0: skip)")
    p.add_argument("--spread", type=float, default=3.0, help="clients submit within s seconds")
    p.add_argument("--timeout", type=float, default=300, help="seconds per load phase at most")
    p.add_argument("--slot-ms", type=int, default=300)
    p.add_argument("--parentchain-block-ms", type=int, default=6_000)
    p.add_argument("--profile-enclave", default=None, metavar="FILE.prof")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = p.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="sidechain-bench-"))
    if args.profile_enclave:
        (work / "profile").mkdir()
        (work / "profile" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            [str(work / "profile"), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        os.environ["INTEGRITEE_BENCH_PROFILE"] = str(Path(args.profile_enclave).resolve())
    node = NodeProcess(work / "node", block_time_ms=args.parentchain_block_ms)
    v = ValidateerProcess(work / "validateer", 0, slot_duration_ms=args.slot_ms)
    try:
        t0 = time.perf_counter()
        node.start(timeout=60)
        v.node_port = node.rpc_port
        v.start(timeout=180)
        print(f"node and validateer up in {time.perf_counter() - t0:.1f} s ({work})", flush=True)
        asyncio.run(bench(args, v))
    finally:
        v.stop()
        node.stop()
        if not args.keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
