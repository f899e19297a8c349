"""`integritee-cli trusted benchmark`: many clients sending direct trusted transfers, as the original.

`benchmark [CLIENTS=10] [ITERATIONS=30] [MIN_WAIT_MS=0] [MAX_WAIT_MS=0] [FUNDER=//Alice] [-w]`:

1. `CLIENTS` new accounts are generated in the shard's trusted keystore (so their remaining funds
   stay reachable) and funded from `FUNDER` with direct transfers, one submitted over each
   client's own WSS connection; all fundings must be in a sidechain block before the clock starts.
2. Every client then sends `ITERATIONS` direct transfers of `TRANSFER_AMOUNT` to fresh random
   accounts over its own connection, one after the other, each after a random wait in
   [MIN_WAIT_MS, MAX_WAIT_MS] (none when MAX_WAIT_MS is 0). A transaction's latency runs from
   just before its submission to its `Submitted` status, or with `-w` to its `InSidechainBlock`
   status (the client waits for it before its next transfer). Without `-w` a client waits for
   inclusion of its last transfer only, as the original; every transfer's final status is still
   collected, so a failure anywhere is reported.
3. Output, as the original: `Finished benchmark with N clients and M transactions in T ms` (M is
   the iterations per client, as the original prints it), then `P percent are done within L ms`
   for P = 5, 10, ..., 100 (nearest-rank percentiles of the exact latencies; the original
   rounds through a one-significant-digit HDR histogram). The throughput goes to the log.

Unlike the original, nonces are counted locally (not read before every transfer, which races
with execution when not waiting), and each client's nonce is checked at the end: a client whose
account did not execute every transfer, or any transfer that ended Invalid/Dropped/Usurped, fails
the command after the statistics are printed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import random
import ssl
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import click

from integritee.cli.accounts import resolve_signer, ss58
from integritee.cli.context import CliError
from integritee.cli.trusted_client import (
    DEFAULT_TIMEOUT,
    DEFAULT_WATCH_TIMEOUT,
    FAILED_STATUSES,
    DirectSubmitter,
    WatchedCall,
    fetch_account_info,
    format_status,
    submit_and_watch,
)
from integritee.codec.hexutil import to_hex
from integritee.codec.scale import EnumValue
from integritee.crypto import Keypair
from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcConnectionError
from integritee.trusted.calls import balance_transfer, sign_call

log = logging.getLogger("integritee.cli")

UNIT = 10**12
TRANSFER_AMOUNT = 1000
"""Per transfer: above the STF's existential deposit (500), so every recipient account exists."""
TX_FEE = UNIT // 100
"""The STF's fee of a transfer (reference/trusted.md), paid by every benchmark transfer."""
PERCENTILES = tuple(range(5, 101, 5))
_CONNECT_CONCURRENCY = 32  # TLS handshakes in flight at once while the clients connect


def funding_amount(iterations: int, amount: int = TRANSFER_AMOUNT) -> int:
    """What a client needs: every transfer and its fee, plus one spare transfer and fee."""
    return (iterations + 1) * (amount + TX_FEE)


def percentile(sorted_values: list[int], percent: int) -> int:
    """The nearest-rank percentile: the smallest value at least `percent`% of values are <=."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(percent / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def percentile_lines(latencies_ms: Iterable[int]) -> list[str]:
    values = sorted(latencies_ms)
    if not values:
        return ["Missing measurement data"]
    return [f"{p} percent are done within {percentile(values, p)} ms" for p in PERCENTILES]


@dataclass
class Transaction:
    """Timing of one benchmark transfer (`time.monotonic()` seconds)."""

    started: float
    submitted: float | None = None
    confirmed: float | None = None

    def latency_ms(self, wait_for_confirmation: bool) -> int | None:
        end = self.confirmed if wait_for_confirmation else self.submitted
        return None if end is None else round((end - self.started) * 1000)


@dataclass
class BenchmarkResult:
    clients: int
    iterations: int
    elapsed_ms: int
    wait_for_confirmation: bool
    transactions: list[Transaction] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def latencies_ms(self) -> list[int]:
        out = []
        for t in self.transactions:
            latency = t.latency_ms(self.wait_for_confirmation)
            if latency is not None:
                out.append(latency)
        return out

    def lines(self) -> list[str]:
        return [
            f"Finished benchmark with {self.clients} clients and {self.iterations} transactions "
            f"in {self.elapsed_ms} ms",
            *percentile_lines(self.latencies_ms()),
        ]

    @property
    def confirmed_count(self) -> int:
        return sum(1 for t in self.transactions if t.confirmed is not None)


@dataclass(frozen=True)
class BenchmarkSetup:
    """Where and how the benchmark sends its calls."""

    url: str
    ssl: ssl.SSLContext | bool
    submitter: DirectSubmitter
    mrenclave: bytes
    timeout: float = DEFAULT_TIMEOUT
    watch_timeout: float = DEFAULT_WATCH_TIMEOUT

    @property
    def shard(self) -> bytes:
        return self.submitter.shard

    def transfer(self, sender: Keypair, to: bytes, amount: int, nonce: int) -> EnumValue:
        call = balance_transfer(sender.public_key, to, amount)
        signed = sign_call(call, sender, nonce, self.mrenclave, self.shard)
        return signed.into_trusted_operation(direct=True)


def _failure(who: str, call: WatchedCall, status: EnumValue) -> str:
    return f"{who}: trusted call {to_hex(call.top_hash)} is {format_status(status)}"


async def _connect_all(setup: BenchmarkSetup, count: int) -> list[RpcClient]:
    gate = asyncio.Semaphore(_CONNECT_CONCURRENCY)

    async def connect() -> RpcClient:
        async with gate:
            return await RpcClient.connect(setup.url, ssl=setup.ssl, timeout=setup.timeout)

    results = await asyncio.gather(*(connect() for _ in range(count)), return_exceptions=True)
    clients = [r for r in results if isinstance(r, RpcClient)]
    errors = [r for r in results if not isinstance(r, RpcClient)]
    if errors:
        await asyncio.gather(*(c.close() for c in clients), return_exceptions=True)
        raise CliError(
            f"cannot connect {len(errors)} of {count} clients to {setup.url}: {errors[0]}"
        )
    return clients


async def _fund(
    setup: BenchmarkSetup,
    connections: list[RpcClient],
    funder: Keypair,
    funder_nonce: int,
    accounts: list[Keypair],
    amount: int,
    echo: Callable[[str], None],
) -> None:
    """Fund every account from `funder` (each over its client's connection) and wait until all
    of them are in a sidechain block."""
    calls = []
    for i, (connection, account) in enumerate(zip(connections, accounts, strict=True)):
        echo(f"Initializing account {i}")
        top = setup.transfer(funder, account.public_key, amount, funder_nonce + i)
        calls.append(await submit_and_watch(connection, setup.submitter, top, setup.timeout))
    for i, call in enumerate(calls):
        status = await call.wait_final(timeout=setup.watch_timeout)
        if status.name != "InSidechainBlock":
            raise CliError(
                "funding " + _failure(f"account {i} ({ss58(accounts[i].public_key)})", call, status)
            )


async def _client_run(
    setup: BenchmarkSetup,
    connection: RpcClient,
    account: Keypair,
    index: int,
    iterations: int,
    wait_range_ms: tuple[int, int],
    wait_for_confirmation: bool,
    result: BenchmarkResult,
) -> None:
    who = f"client {index}"
    pending: list[tuple[WatchedCall, Transaction]] = []
    nonce = 0
    for i in range(iterations):
        if wait_range_ms[1] > 0:
            pause = random.randint(*wait_range_ms)
            log.debug("%s: sleep for %d ms", who, pause)
            await asyncio.sleep(pause / 1000)
        recipient = os.urandom(32)  # a fresh account, as the original's newly generated one
        top = setup.transfer(account, recipient, TRANSFER_AMOUNT, nonce)
        log.debug("%s: iteration %d, transfer %d to %s", who, i, TRANSFER_AMOUNT, ss58(recipient))
        tx = Transaction(time.monotonic())
        result.transactions.append(tx)
        call = await submit_and_watch(connection, setup.submitter, top, setup.timeout)
        nonce += 1
        status = await call.wait_for(lambda s: s.name == "Submitted", timeout=setup.watch_timeout)
        if status.name == "Submitted":
            tx.submitted = call.time_of("Submitted")
        # without -w the transfers are only collected: the last one is waited for below, after
        # its predecessors (as the original waits for the last one)
        if wait_for_confirmation or status.name in FAILED_STATUSES:
            if call.final is None:
                status = await call.wait_final(timeout=setup.watch_timeout)
            if status.name == "InSidechainBlock":
                tx.confirmed = call.time_of("InSidechainBlock")
            else:
                result.failures.append(_failure(who, call, status))
                break  # later nonces of this account cannot execute
        else:
            pending.append((call, tx))
    for position, (call, tx) in enumerate(pending):
        status = await call.wait_final(timeout=setup.watch_timeout)
        if status.name == "InSidechainBlock":
            tx.confirmed = call.time_of("InSidechainBlock")
        else:
            result.failures.append(_failure(who, call, status))
            # the later nonces wait for this one forever: do not wait for them
            if position + 1 < len(pending):
                result.failures.append(
                    f"{who}: {len(pending) - position - 1} later transfer(s) cannot execute"
                )
            break
    info = await fetch_account_info(connection, setup.shard, account.public_key, account)
    executed = 0 if info is None else info.nonce
    if executed != nonce:
        result.failures.append(f"{who}: its account executed {executed} of {nonce} transfers")


async def run_benchmark(
    setup: BenchmarkSetup,
    funder: Keypair,
    accounts: list[Keypair],
    iterations: int,
    wait_range_ms: tuple[int, int] = (0, 0),
    wait_for_confirmation: bool = False,
    echo: Callable[[str], None] = print,
) -> BenchmarkResult:
    """Fund `accounts` from `funder`, then let each send `iterations` transfers concurrently."""
    if not accounts:
        raise CliError("the benchmark needs at least one client")
    connections = await _connect_all(setup, len(accounts))
    try:
        funder_info = await fetch_account_info(
            connections[0], setup.shard, funder.public_key, funder, setup.timeout
        )
        funder_nonce = 0 if funder_info is None else funder_info.nonce
        echo(f"Nonce for account {ss58(funder.public_key)}: {funder_nonce}")
        amount = funding_amount(iterations)
        needed = len(accounts) * (amount + TX_FEE)
        if funder_info is None or funder_info.data.free < needed:
            have = 0 if funder_info is None else funder_info.data.free
            raise CliError(
                f"the funder {ss58(funder.public_key)} has {have} on the shard, the benchmark "
                f"needs {needed} ({len(accounts)} x {amount} and fees)"
            )
        await _fund(setup, connections, funder, funder_nonce, accounts, amount, echo)
        result = BenchmarkResult(len(accounts), iterations, 0, wait_for_confirmation)
        start = time.monotonic()
        runs = [
            _client_run(
                setup,
                connection,
                account,
                i,
                iterations,
                wait_range_ms,
                wait_for_confirmation,
                result,
            )
            for i, (connection, account) in enumerate(zip(connections, accounts, strict=True))
        ]
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        result.elapsed_ms = round((time.monotonic() - start) * 1000)
        for i, outcome in enumerate(outcomes):
            if isinstance(outcome, CliError):
                result.failures.append(f"client {i}: {outcome.message}")
            elif isinstance(outcome, RpcConnectionError | OSError):
                result.failures.append(f"client {i}: connection failed: {outcome}")
            elif isinstance(outcome, BaseException):
                raise outcome
        return result
    finally:
        await asyncio.gather(*(c.close() for c in connections), return_exceptions=True)


# ---------------------------------------------------------------------------------------------
# the command


@click.command("benchmark")
@click.argument("clients", type=click.IntRange(1, 10_000), default=10)
@click.argument("iterations", type=click.IntRange(1, 1_000_000), default=30)
@click.argument("min_wait_ms", type=click.IntRange(0, 3_600_000), default=0)
@click.argument("max_wait_ms", type=click.IntRange(0, 3_600_000), default=0)
@click.argument("funder", default="//Alice")
@click.option(
    "-w", "--wait-for-confirmation", is_flag=True,
    help="Wait for each transfer's InSidechainBlock before the next one (latency to inclusion).",
)  # fmt: skip
@click.pass_context
def benchmark(
    ctx: click.Context,
    clients: int,
    iterations: int,
    min_wait_ms: int,
    max_wait_ms: int,
    funder: str,
    wait_for_confirmation: bool,
) -> None:
    """Send ITERATIONS direct transfers from each of CLIENTS new accounts funded by FUNDER, each
    client over its own connection after a random wait in [MIN_WAIT_MS, MAX_WAIT_MS]; print the
    duration and the latency percentiles."""
    from integritee.cli.trusted_commands import TrustedArgs

    args = ctx.find_object(TrustedArgs)
    assert args is not None
    if min_wait_ms > max_wait_ms:
        raise click.BadParameter(
            f"MIN_WAIT_MS {min_wait_ms} exceeds MAX_WAIT_MS {max_wait_ms}", param_hint="MIN_WAIT_MS"
        )
    args.direct = True  # the benchmark is direct calls only: pin the worker if possible
    keystore = args.keystore()
    funder_pair = resolve_signer(funder, keystore)
    worker = args.client()
    setup = BenchmarkSetup(worker.url, worker.ssl, args.submitter(), args.mrenclave())
    accounts = [keystore.generate() for _ in range(clients)]
    result = _run(
        run_benchmark(
            setup,
            funder_pair,
            accounts,
            iterations,
            (min_wait_ms, max_wait_ms),
            wait_for_confirmation,
            click.echo,
        )
    )
    for line in result.lines():
        click.echo(line)
    total = len(result.transactions)
    if result.elapsed_ms > 0:
        log.info(
            "%d transactions in %d ms: %.1f per second (%d in sidechain blocks)",
            total,
            result.elapsed_ms,
            total * 1000 / result.elapsed_ms,
            result.confirmed_count,
        )
    if result.failures:
        for failure in result.failures[1:]:
            log.error("%s", failure)
        raise CliError(
            f"{len(result.failures)} benchmark failure(s), the first: {result.failures[0]}"
        )


def _run(coro: Any) -> Any:
    try:
        return asyncio.run(coro)
    except (RpcConnectionError, OSError) as e:
        raise CliError(f"benchmark connection failed: {e}") from None
