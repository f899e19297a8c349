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
from integritee.node.runtime.extrinsic import sign_and_encode
from integritee.node.runtime.overlay import Overlay
from integritee.node.txpool import PoolLimits, TxPool

ENDOW = 10**18


def make_chain(
    path: Path, senders: list[Keypair], extra_accounts: int, authority: Keypair
) -> Blockchain:
    rng = random.Random(7)
    endowed = {k.public_key: ENDOW for k in senders}
    for _ in range(extra_accounts):
        endowed[rng.randbytes(32)] = ENDOW
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


def run(accounts: int, transfers: int, block_size: int) -> dict[str, float]:
    authority = Keypair.from_uri("//Alice")
    senders = [Keypair.from_seed(os.urandom(32)) for _ in range(transfers)]
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        chain = make_chain(Path(tmp) / "db", senders, max(0, accounts - transfers), authority)
        genesis_s = time.perf_counter() - t0
        params = ChainParams(chain.genesis_hash, minimum_period_ms=1)
        rng = random.Random(1)
        xts = [signed_transfer(chain, s, rng.randbytes(32), 10**12, 0) for s in senders]
        pool = TxPool(PoolLimits(ready_count=10**6, ready_bytes=10**9))

        # 1. pool validation (decode, signature, nonce, fee) of every transfer
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
            pool.on_block(built.block.hash, built.included, lambda who: 1)
            build_s += time.perf_counter() - t0
            blocks.append(built.block)
            slot += 1
        included = sum(len(b.extrinsics) - 1 for b in blocks)
        chain.close()

        # 3. import of the same blocks on a fresh node (full verification incl. signatures)
        chain2 = make_chain(Path(tmp) / "db2", senders, max(0, accounts - transfers), authority)
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
        r = run(1000 + size, size, size)
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
        r = run(n, min(args.transfers, n), args.block_size)
        print(
            f"{r['accounts']:>9} {r['transfers']:>9} {r['validate_per_s']:>11.0f} {r['author_per_s']:>9.0f} "
            f"{r['included_per_s']:>11.0f} {r['import_per_s']:>9.0f} {r['import_us_per_xt']:>13.0f}"
        )
    print("\nblock import time against block size (1,000 + size accounts):")
    for size, ms in block_import_vs_size(args.import_sizes):
        print(f"  {size:>6} transfers: {ms:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
