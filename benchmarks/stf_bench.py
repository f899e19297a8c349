"""Enclave STF hot paths: signed balance transfers per second, state root cost, commit cost.

Builds a shard state with N funded accounts in memory (ShardState + Stf, as the enclave runs
them), executes pre-signed `balance_transfer`s (signature check, nonce, fee, transfer) and
computes the state root, then commits the changes encrypted into a temporary RocksDB.

    .venv/bin/python benchmarks/stf_bench.py                     # 1,000 and 100,000 accounts
    .venv/bin/python benchmarks/stf_bench.py --accounts 1000 --transfers 3000
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time
from pathlib import Path

from integritee.crypto.keys import Keypair
from integritee.enclave.stf.executor import Stf
from integritee.enclave.stf.runtime import Runtime
from integritee.enclave.stf.state import ShardState
from integritee.storage.kv import KVStore
from integritee.trusted import calls as T

U = 10**12
MRENCLAVE = bytes(range(32))
SHARD = MRENCLAVE
STATE_KEY = b"\x5a" * 32


def genesis(accounts: int, senders: list[Keypair]) -> dict[bytes, bytes]:
    """The committed map of a shard with `accounts` funded accounts (senders among them)."""
    state = ShardState(STATE_KEY)
    enclave = Keypair.from_seed(b"\x01" * 32, "ed25519")
    Stf(MRENCLAVE).init_state(state, enclave.public_key)
    rt = Runtime(state)
    for key in senders:
        rt.force_set_balance(key.public_key, 1_000 * U)
    for _ in range(accounts - len(senders)):
        rt.force_set_balance(os.urandom(32), U)
    return state.items()


def bench(accounts: int, transfers: int, block: int) -> None:
    rng = random.Random(accounts)
    n_senders = min(1000, accounts - 1)
    senders = [Keypair.from_seed(rng.randbytes(32)) for _ in range(n_senders)]
    t0 = time.perf_counter()
    entries = genesis(accounts, senders)
    t_build = time.perf_counter() - t0
    stf = Stf(MRENCLAVE)
    state = ShardState(STATE_KEY, entries)
    state.root()  # hash the genesis trie once, outside the timings
    receivers = [k.public_key for k in senders]
    nonces = {k.public_key: 0 for k in senders}
    signed = []
    for i in range(transfers):
        key = senders[i % n_senders]
        call = T.balance_transfer(key.public_key, rng.choice(receivers), rng.randrange(1, U))
        signed.append(T.sign_call(call, key, nonces[key.public_key], MRENCLAVE, SHARD))
        nonces[key.public_key] += 1

    t0 = time.perf_counter()
    for i, tcs in enumerate(signed):
        outcome = stf.execute(state, SHARD, tcs)
        assert outcome.ok, outcome.error
        if (i + 1) % block == 0:
            state.root()
    state.root()
    t_exec = time.perf_counter() - t0

    # the same without the signature check, to show where the time goes
    state2 = ShardState(STATE_KEY, entries)
    state2.root()
    t0 = time.perf_counter()
    for i, tcs in enumerate(signed):
        stf.execute(state2, SHARD, tcs, verify_signature=False)
        if (i + 1) % block == 0:
            state2.root()
    state2.root()
    t_nosig = time.perf_counter() - t0

    # root after every single call (worst case)
    state3 = ShardState(STATE_KEY, entries)
    state3.root()
    per_call = signed[: min(1000, len(signed))]
    t0 = time.perf_counter()
    for tcs in per_call:
        stf.execute(state3, SHARD, tcs, verify_signature=False)
        state3.root()
    t_percall = time.perf_counter() - t0

    changed = len(state.changes())
    with tempfile.TemporaryDirectory() as tmp, KVStore.open(Path(tmp) / "db") as db:
        view = db.prefixed(b"state:")
        genesis_state = ShardState(STATE_KEY, entries)
        batch = view.batch()
        t0 = time.perf_counter()
        genesis_state.write_all(batch)
        batch.write()
        t_write_all = time.perf_counter() - t0
        batch = view.batch()
        t0 = time.perf_counter()
        root = state.commit(batch)
        t_commit = time.perf_counter() - t0
        t0 = time.perf_counter()
        batch.write()
        t_write = time.perf_counter() - t0
        # a commit of exactly 1,000 changed accounts
        rt = Runtime(state)
        for key in senders[:1000]:
            rt.force_set_balance(key.public_key, 2_000 * U)
        state.root()
        n_changed = len(state.changes())
        batch = view.batch()
        t0 = time.perf_counter()
        state.commit(batch)
        batch.write()
        t_commit_1000 = time.perf_counter() - t0
        t0 = time.perf_counter()
        loaded = ShardState.load(view, STATE_KEY)
        t_load = time.perf_counter() - t0
        assert loaded.root() == state.root() != root

    print(f"accounts={accounts:,} (state built in {t_build:.1f}s), {transfers:,} transfers")
    print(
        f"  execute + root every {block}: {transfers / t_exec:,.0f} transfers/s"
        f"  (without signature check: {transfers / t_nosig:,.0f}/s)"
    )
    print(
        f"  execute (no signature check) + root after every call: {len(per_call) / t_percall:,.0f} transfers/s"
    )
    print(
        f"  commit of {changed:,} changed entries: {t_commit * 1000:.1f} ms"
        f" + RocksDB write {t_write * 1000:.1f} ms"
    )
    print(f"  commit+write of {n_changed:,} changed accounts: {t_commit_1000 * 1000:.1f} ms")
    print(f"  initial write of {len(entries):,} entries: {t_write_all:.2f} s")
    print(f"  load (decrypt + rebuild trie) of {len(loaded):,} entries: {t_load:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, action="append")
    parser.add_argument("--transfers", type=int, default=3000)
    parser.add_argument("--block", type=int, default=100, help="calls per root computation")
    args = parser.parse_args()
    for accounts in args.accounts or [1_000, 100_000]:
        bench(accounts, args.transfers, args.block)


if __name__ == "__main__":
    main()
