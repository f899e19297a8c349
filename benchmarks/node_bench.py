"""Parentchain hot paths: transfer inclusion rate, block import time, state size independence.

Runs the node's own chain, pool and executive in-process on a temporary RocksDB, so what is
measured is the node's work (validation with signature checks, block building, trie updates,
the atomic commit), not the network. For RPC throughput see rpc_bench.py.

    .venv/bin/python benchmarks/node_bench.py                      # defaults: 1,000 and 100,000 accounts
    .venv/bin/python benchmarks/node_bench.py --accounts 1000 --transfers 5000
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

from integritee.codec.scale import EnumValue
from integritee.crypto.keys import Keypair
from integritee.node.block_builder import build_block, execute_block
from integritee.node.blockchain import Blockchain
from integritee.node.chain_spec import ChainSpec, GenesisConfig
from integritee.node.runtime import executive
from integritee.node.runtime.construct import SPEC_VERSION, TRANSACTION_VERSION, runtime_call
from integritee.node.runtime.context import BlockContext
from integritee.node.runtime.executive import ChainParams
from integritee.node.txpool import PoolLimits, TxPool
from integritee.parentchain.extrinsic import sign_and_encode
from integritee.storage.overlay import Overlay

ENDOW = 10**18


def make_chain(
    path: Path, senders: list[Keypair], others: list[bytes], authority: Keypair
) -> Blockchain:
    endowed = {k.public_key: ENDOW for k in senders}
    endowed.update((who, ENDOW) for who in others)
    config = GenesisConfig(endowed=endowed, aura_authorities=[authority.public_key])
    spec = ChainSpec("Bench", "bench", "Development", config.storage())
    return Blockchain.open(path, spec)


def signed_transfer(
    chain: Blockchain, sender: Keypair, dest: bytes, amount: int, nonce: int
) -> bytes:
    call = runtime_call().encode(
        EnumValue(
            "Balances",
            EnumValue("transfer_keep_alive", {"dest": EnumValue("Id", dest), "value": amount}),
        )
    )
    return sign_and_encode(
        call,
        sender,
        nonce=nonce,
        genesis_hash=chain.genesis_hash,
        spec_version=SPEC_VERSION,
        tx_version=TRANSACTION_VERSION,
    )


def run(
    accounts: int, transfers: int, block_size: int, senders_count: int = 1000
) -> dict[str, float]:
    """`transfers` from `senders_count` senders (nonce chains) to existing accounts among `accounts`."""
    authority = Keypair.from_uri("//Alice")
    rng = random.Random(1)
    senders = [Keypair.from_seed(rng.randbytes(32)) for _ in range(senders_count)]
    others = [rng.randbytes(32) for _ in range(max(0, accounts - senders_count))]
    receivers = others or [k.public_key for k in senders]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        chain = make_chain(Path(tmp) / "db", senders, others, authority)
        genesis_s = time.perf_counter() - t0
        params = ChainParams(chain.genesis_hash, minimum_period_ms=1)
        xts = [
            signed_transfer(
                chain, senders[i % senders_count], rng.choice(receivers), 10**12, i // senders_count
            )
            for i in range(transfers)
        ]
        pool = TxPool(
            PoolLimits(ready_count=10**6, ready_bytes=10**9, future_count=10**6, future_bytes=10**9)
        )

        # 1. pool validation (decode, signature, era, nonce, fee) of every transfer
        t0 = time.perf_counter()
        for raw in xts:
            ctx = BlockContext(
                Overlay(chain.head_state.get), chain.best_number + 1, chain.best_hash, params
            )
            valid = executive.validate_transaction(ctx, raw, chain.hash_at)
            pool.insert(valid, 0)
        validate_s = time.perf_counter() - t0

        # 2. author blocks of `block_size` from the pool and commit them (build + trie + RocksDB)
        build_s = 0.0
        slot = 1
        blocks = []
        while pool.ready:
            t0 = time.perf_counter()
            limited = TxPool(pool.limits)
            for tx in list(pool.ready.values())[:block_size]:
                limited.ready[tx.hash] = tx
            built = build_block(
                chain, params, limited, authority, slot, slot * 1000, time.monotonic() + 3600
            )
            chain.commit_block(built.block)
            for h in built.included:
                pool.ready.pop(h, None)
            build_s += time.perf_counter() - t0
            blocks.append(built.block)
            slot += 1
        included = sum(len(b.extrinsics) - 1 for b in blocks)
        chain.close()

        # 3. import of the same blocks on a fresh node (full verification incl. signatures)
        chain2 = make_chain(Path(tmp) / "db2", senders, others, authority)
        t0 = time.perf_counter()
        for b in blocks:
            execute_block(chain2, params, b)
            chain2.commit_block(b)
        import_s = time.perf_counter() - t0
        chain2.close()
    return {
        "accounts": accounts,
        "transfers": included,
        "genesis_s": genesis_s,
        "validate_per_s": transfers / validate_s,
        "author_per_s": included / build_s,
        "included_per_s": included / (validate_s + build_s),
        "import_per_s": included / import_s,
        "import_us_per_xt": import_s / included * 1e6,
    }


def block_import_vs_size(sizes: list[int]) -> list[tuple[int, float]]:
    out = []
    for size in sizes:
        r = run(1000, size, size)
        out.append((size, r["import_us_per_xt"] * size / 1000))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, nargs="*", default=[1000, 100_000])
    parser.add_argument("--transfers", type=int, default=4000)
    parser.add_argument("--block-size", type=int, default=2000)
    parser.add_argument("--import-sizes", type=int, nargs="*", default=[100, 1000, 4000])
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpus")
    print(
        f"{'accounts':>9} {'transfers':>9} {'validate/s':>11} {'author/s':>9} {'included/s':>11} {'import/s':>9} {'import us/xt':>13}"
    )
    for n in args.accounts:
        r = run(n, args.transfers, args.block_size)
        print(
            f"{r['accounts']:>9} {r['transfers']:>9} {r['validate_per_s']:>11.0f} {r['author_per_s']:>9.0f} "
            f"{r['included_per_s']:>11.0f} {r['import_per_s']:>9.0f} {r['import_us_per_xt']:>13.0f}"
        )
    print("\nblock import time against block size (1,000 accounts):")
    for size, ms in block_import_vs_size(args.import_sizes):
        print(f"  {size:>6} transfers: {ms:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
