"""Sidechain block storage: the storage rules, reads, pruning, restart, layout and metrics."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import base58
import pytest
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from integritee.codec.scale import H256, Vec, encode_compact
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair
from integritee.service.sidechain_db import (
    DB_DIR_NAME,
    STORED_SHARDS_KEY,
    LastBlock,
    LastSidechainBlockCodec,
    SidechainDb,
    SkipReason,
    register_sidechain_metrics,
    start_pruning,
    stored_block_hash,
)
from integritee.storage.kv import KVStore, KVStoreError, WriteBatch
from integritee.trusted.sidechain import SignedBlockCodec, block_hash, make_signed_block

AUTHOR = Keypair.from_seed(b"\x07" * 32, "ed25519")
SHARD_A = b"\xaa" * 32
SHARD_B = b"\xbb" * 32
ZERO = bytes(32)


def make_block(number: int, parent: bytes, shard: bytes = SHARD_A, diff: bytes = b"") -> bytes:
    signed = make_signed_block(
        parent_hash=parent,
        number=number,
        shard=shard,
        timestamp=1_700_000_000_000 + number,
        layer_one_head=b"\x01" * 32,
        author=AUTHOR,
        top_hashes=[blake2_256(number.to_bytes(8, "little"))],
        encrypted_state_diff=diff or number.to_bytes(4, "little"),
    )
    return SignedBlockCodec.encode(signed)


def make_chain(
    count: int, shard: bytes = SHARD_A, start: int = 1, parent: bytes = ZERO
) -> list[bytes]:
    blocks = []
    for number in range(start, start + count):
        encoded = make_block(number, parent, shard)
        blocks.append(encoded)
        parent = stored_block_hash(encoded)
    return blocks


def h(encoded: bytes) -> bytes:
    return stored_block_hash(encoded)


@pytest.fixture
def db(tmp_path: Path) -> Any:
    with SidechainDb.open_in(tmp_path) as database:
        yield database


def test_block_hash_is_blake2_of_the_header() -> None:
    encoded = make_block(1, ZERO)
    assert h(encoded) == block_hash(SignedBlockCodec.decode(encoded))


def test_first_block_of_a_shard_is_stored_and_readable(db: SidechainDb, tmp_path: Path) -> None:
    assert (tmp_path / DB_DIR_NAME).is_dir()
    b1 = make_block(1, ZERO)
    result = db.store_blocks([b1])
    assert [(s.index, s.shard, s.number, s.hash) for s in result.stored] == [(0, SHARD_A, 1, h(b1))]
    assert result.skipped == []
    assert db.shards() == [SHARD_A]
    assert db.last_block(SHARD_A) == LastBlock(h(b1), 1)
    assert db.first_number(SHARD_A) == 1 and db.block_count(SHARD_A) == 1
    assert db.block_by_hash(h(b1)) == b1
    assert db.hash_by_number(SHARD_A, 1) == h(b1)
    assert db.block_by_number(SHARD_A, 1) == b1
    assert db.signed_block(h(b1)) == SignedBlockCodec.decode(b1)
    assert db.last_block(SHARD_B) is None and db.block_by_hash(b"\x55" * 32) is None
    assert db.hash_by_number(SHARD_A, 2) is None


def test_first_block_rules(db: SidechainDb) -> None:
    result = db.store_blocks([make_block(0, ZERO), make_block(1, b"\x01" * 32)])
    assert [s.reason for s in result.skipped] == [SkipReason.ZERO_NUMBER, SkipReason.GENESIS_PARENT]
    assert result.stored == [] and db.shards() == []
    # A shard without blocks accepts a later first block: a joiner fetches a pruned chain.
    late = make_chain(3, start=40, parent=b"\x09" * 32)
    assert [s.number for s in db.store_blocks(late).stored] == [40, 41, 42]
    assert db.first_number(SHARD_A) == 40 and db.last_block(SHARD_A) == LastBlock(h(late[-1]), 42)


def test_gap_wrong_parent_stale_and_duplicate_are_rejected(db: SidechainDb) -> None:
    chain = make_chain(3)
    db.store_blocks(chain[:2])
    last = db.last_block(SHARD_A)
    gap = make_block(4, h(chain[1]))
    wrong_parent = make_block(3, b"\x66" * 32)
    stale = make_block(2, h(chain[0]), diff=b"other")  # a competing block at height 2
    result = db.store_blocks([gap, wrong_parent, stale, chain[1]])
    assert [(s.index, s.reason) for s in result.skipped] == [
        (0, SkipReason.GAP),
        (1, SkipReason.WRONG_PARENT),
        (2, SkipReason.STALE),
        (3, SkipReason.ALREADY_STORED),
    ]
    assert all(s.shard == SHARD_A and s.hash is not None for s in result.skipped)
    assert result.stored == [] and db.last_block(SHARD_A) == last
    assert db.block_by_hash(h(gap)) is None and db.block_by_hash(h(wrong_parent)) is None
    assert db.hash_by_number(SHARD_A, 2) == h(chain[1])
    # The rightful successor is still accepted afterwards.
    assert [s.number for s in db.store_blocks([chain[2]]).stored] == [3]


def test_blocks_of_one_call_extend_each_other_and_bad_ones_are_skipped(db: SidechainDb) -> None:
    chain = make_chain(4)
    bad = make_block(3, b"\x42" * 32)
    result = db.store_blocks([chain[0], chain[1], bad, b"\x00garbage", chain[2], chain[3]])
    assert [s.number for s in result.stored] == [1, 2, 3, 4]
    assert [s.index for s in result.stored] == [0, 1, 4, 5]
    assert [(s.index, s.reason) for s in result.skipped] == [
        (2, SkipReason.WRONG_PARENT),
        (3, SkipReason.UNDECODABLE),
    ]
    assert db.blocks_after(SHARD_A, ZERO) == chain


def test_decoded_blocks_are_accepted_and_malformed_values_reported(db: SidechainDb) -> None:
    chain = make_chain(2)
    value = SignedBlockCodec.decode(chain[0])
    result = db.store_blocks([value, {"block": "nope"}, chain[1] + b"\x00"])
    assert [s.number for s in result.stored] == [1]
    assert [s.reason for s in result.skipped] == [SkipReason.UNDECODABLE] * 2
    assert db.block_by_hash(h(chain[0])) == chain[0]


def test_two_shards_are_independent(db: SidechainDb) -> None:
    a, b = make_chain(5, SHARD_A), make_chain(3, SHARD_B)
    interleaved = [a[0], b[0], a[1], b[1], b[2], a[2], a[3], a[4]]
    assert len(db.store_blocks(interleaved).stored) == 8
    assert db.shards() == [SHARD_A, SHARD_B]
    assert db.last_block(SHARD_A) == LastBlock(h(a[4]), 5)
    assert db.last_block(SHARD_B) == LastBlock(h(b[2]), 3)
    assert db.hash_by_number(SHARD_A, 2) == h(a[1]) and db.hash_by_number(SHARD_B, 2) == h(b[1])
    # A block of shard A after shard B's last block is not B's successor.
    wrong_shard = make_block(4, h(b[2]), SHARD_A)
    assert db.store_blocks([wrong_shard]).skipped[0].reason == SkipReason.STALE
    assert db.blocks_after(SHARD_B, h(b[0])) == b[1:]
    assert db.blocks_after(SHARD_B, h(a[0])) == []  # a hash of another shard is unknown here


class FailingStore(KVStore):
    """A real RocksDB whose batch writes can be made to fail (disk full, I/O error)."""

    fail = False

    def write(self, batch: WriteBatch) -> None:
        if self.fail:
            batch._state.written = True
            raise KVStoreError("IO error: No space left on device")
        super().write(batch)


def test_a_failing_write_stores_nothing(tmp_path: Path) -> None:
    store = FailingStore.open(tmp_path / "db")
    assert isinstance(store, FailingStore)
    db = SidechainDb(store, owned=store)
    chain = make_chain(6)
    db.store_blocks(chain[:2])
    store.fail = True
    with pytest.raises(KVStoreError, match="No space left"):
        db.store_blocks(chain[2:] + make_chain(2, SHARD_B))
    # Neither the memory view nor the disk changed.
    assert db.last_block(SHARD_A) == LastBlock(h(chain[1]), 2)
    assert db.shards() == [SHARD_A] and db.last_block(SHARD_B) is None
    for block in chain[2:]:
        assert db.block_by_hash(h(block)) is None
    store.fail = False
    assert [s.number for s in db.store_blocks(chain[2:]).stored] == [3, 4, 5, 6]
    db.close()
    with SidechainDb.open(tmp_path / "db") as reopened:
        assert reopened.blocks_after(SHARD_A, ZERO) == chain
        assert reopened.shards() == [SHARD_A]


def test_blocks_after_ranges(db: SidechainDb) -> None:
    chain = make_chain(10)
    db.store_blocks(chain)
    assert db.blocks_after(SHARD_A, ZERO) == chain
    assert db.blocks_after(SHARD_A, h(chain[2])) == chain[3:]
    assert db.blocks_after(SHARD_A, h(chain[2]), h(chain[6])) == chain[3:6]  # ]from, until[
    assert db.blocks_after(SHARD_A, ZERO, h(chain[3])) == chain[:3]
    assert db.blocks_after(SHARD_A, h(chain[2]), h(chain[3])) == []
    assert db.blocks_after(SHARD_A, h(chain[5]), h(chain[2])) == []  # until before from
    assert db.blocks_after(SHARD_A, h(chain[2]), b"\x77" * 32) == chain[3:]  # unknown until
    assert db.blocks_after(SHARD_A, b"\x77" * 32) == []  # unknown from
    assert db.blocks_after(SHARD_A, h(chain[-1])) == []
    assert db.blocks_after(SHARD_B, ZERO) == []
    assert db.blocks_after(SHARD_A, ZERO, limit=4) == chain[:4]
    assert db.blocks_after(SHARD_A, h(chain[7]), limit=4) == chain[8:]
    assert db.block_range_after(SHARD_A, h(chain[2]), h(chain[6])) == (4, 6)
    with pytest.raises(ValueError, match="32 bytes"):
        db.blocks_after(SHARD_A, b"\x00" * 31)
    with pytest.raises(TypeError):
        db.blocks_after("shard", ZERO)  # type: ignore[arg-type]


def test_blocks_after_reads_long_chains_in_chunks(db: SidechainDb) -> None:
    chain = make_chain(300)
    db.store_blocks(chain)
    assert db.blocks_after(SHARD_A, ZERO, limit=1000) == chain
    assert db.blocks_after(SHARD_A, h(chain[9]), limit=200) == chain[10:210]


def test_prune_keeps_the_newest_blocks(db: SidechainDb) -> None:
    chain = make_chain(30)
    db.store_blocks(chain)
    assert db.prune(SHARD_A, keep_newest=10) == 20
    assert db.first_number(SHARD_A) == 21 and db.block_count(SHARD_A) == 10
    assert db.blocks_after(SHARD_A, ZERO) == chain[20:]
    for block in chain[:20]:
        assert db.block_by_hash(h(block)) is None
    assert [db.hash_by_number(SHARD_A, n) for n in (1, 20)] == [None, None]
    assert db.hash_by_number(SHARD_A, 21) == h(chain[20])
    # A pruned block is unknown as a starting point; pruning again removes nothing.
    assert db.blocks_after(SHARD_A, h(chain[5])) == []
    assert db.prune(SHARD_A, keep_newest=10) == 0
    # The chain grows on normally after pruning.
    assert db.store_blocks(make_chain(1, start=31, parent=h(chain[-1]))).stored[0].number == 31


def test_prune_keeps_every_block_from_the_last_confirmed_one(db: SidechainDb) -> None:
    chain = make_chain(40)
    db.store_blocks(chain)
    # Confirmed at 12: blocks 12..40 stay although only the newest 5 are asked for.
    assert db.prune(SHARD_A, keep_newest=5, keep_from_number=12) == 11
    assert db.first_number(SHARD_A) == 12
    assert db.blocks_after(SHARD_A, h(chain[11])) == chain[12:]
    # A confirmation newer than the newest-N window does not shrink that window.
    assert db.prune(SHARD_A, keep_newest=20, keep_from_number=39) == 9
    assert db.first_number(SHARD_A) == 21


def test_prune_all_uses_the_recorded_confirmations(db: SidechainDb) -> None:
    db.store_blocks(make_chain(50, SHARD_A) + make_chain(50, SHARD_B))
    db.mark_finalized(SHARD_A, 20)
    db.mark_finalized(SHARD_A, 10)  # never moves backwards
    assert db.finalized_number(SHARD_A) == 20 and db.finalized_number(SHARD_B) is None
    assert db.prune_all(keep_newest=5) == {SHARD_A: 19, SHARD_B: 45}
    assert db.first_number(SHARD_A) == 20 and db.first_number(SHARD_B) == 46
    assert db.prune_all(keep_newest=5, keep_finalized=False) == {SHARD_A: 26, SHARD_B: 0}


def test_prune_argument_checks(db: SidechainDb) -> None:
    db.store_blocks(make_chain(3))
    with pytest.raises(ValueError, match="at least 1"):
        db.prune(SHARD_A, keep_newest=0)
    assert db.prune(SHARD_B) == 0
    assert db.prune(SHARD_A, keep_newest=1) == 2  # the last block always stays
    assert db.blocks_after(SHARD_A, ZERO) == [db.block_by_number(SHARD_A, 3)]


def test_large_prunes_run_in_chunks(db: SidechainDb) -> None:
    chain = make_chain(4500)
    db.store_blocks(chain)
    assert db.prune(SHARD_A, keep_newest=100) == 4400
    assert db.first_number(SHARD_A) == 4401 and db.blocks_after(SHARD_A, ZERO) == chain[4400:]


def test_restart_keeps_everything(tmp_path: Path) -> None:
    a, b = make_chain(60, SHARD_A), make_chain(5, SHARD_B)
    with SidechainDb.open_in(tmp_path) as db:
        db.store_blocks(a + b)
        db.prune(SHARD_A, keep_newest=25)
        db.mark_finalized(SHARD_A, 50)
    with SidechainDb.open_in(tmp_path) as db:
        assert db.shards() == [SHARD_A, SHARD_B]
        assert db.last_block(SHARD_A) == LastBlock(h(a[-1]), 60)
        assert db.last_block(SHARD_B) == LastBlock(h(b[-1]), 5)
        assert db.first_number(SHARD_A) == 36 and db.first_number(SHARD_B) == 1
        assert db.blocks_after(SHARD_A, ZERO) == a[35:]
        assert db.finalized_number(SHARD_A) == 50
        # Storing continues from the reloaded last block; a gap is still caught.
        more = make_chain(2, SHARD_A, start=61, parent=h(a[-1]))
        assert db.store_blocks([more[1]]).skipped[0].reason == SkipReason.GAP
        assert [s.number for s in db.store_blocks(more).stored] == [61, 62]
    with SidechainDb.open_in(tmp_path) as db:
        assert db.last_block(SHARD_A) == LastBlock(h(more[-1]), 62)


def test_on_disk_layout_is_the_originals(tmp_path: Path) -> None:
    chain = make_chain(2)
    with SidechainDb.open_in(tmp_path) as db:
        db.store_blocks(chain)
    with KVStore.open(tmp_path / DB_DIR_NAME) as kv:
        assert STORED_SHARDS_KEY == b"\x34stored_shards"
        assert kv.get(b"\x34stored_shards") == Vec(H256).encode([SHARD_A])
        last_key = encode_compact(19) + b"last_sidechainblock" + SHARD_A
        last_raw = kv.get(last_key)
        assert last_raw == h(chain[1]) + (2).to_bytes(8, "little")
        assert LastSidechainBlockCodec.decode(last_raw) == {
            "hash": h(chain[1]),
            "number": 2,
        }
        assert kv.get(SHARD_A + (1).to_bytes(8, "little")) == h(chain[0])
        assert kv.get(h(chain[1])) == chain[1]
        assert len(list(kv.iter_prefix())) == 6


def test_a_corrupt_shard_list_is_reported(tmp_path: Path) -> None:
    with KVStore.open(tmp_path / DB_DIR_NAME) as kv:
        kv.put(STORED_SHARDS_KEY, b"\x05\x01")
    with pytest.raises(Exception, match="shard list is corrupt"):
        SidechainDb.open_in(tmp_path)


def test_concurrent_store_prune_and_read_keep_the_chain_contiguous(db: SidechainDb) -> None:
    chain = make_chain(600)
    errors: list[BaseException] = []
    done = threading.Event()

    def writer() -> None:
        try:
            for i in range(0, len(chain), 20):
                db.store_blocks(chain[i : i + 20])
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    def pruner() -> None:
        try:
            while not done.is_set():
                db.prune(SHARD_A, keep_newest=50)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            while not done.is_set():
                blocks = db.blocks_after(SHARD_A, ZERO)
                numbers = [
                    SignedBlockCodec.decode(b)["block"]["header"]["block_number"] for b in blocks
                ]
                assert (
                    numbers == list(range(numbers[0], numbers[0] + len(numbers)))
                    if numbers
                    else True
                )
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=f) for f in (writer, pruner, reader)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    db.prune(SHARD_A, keep_newest=50)
    assert db.blocks_after(SHARD_A, ZERO) == chain[550:]
    assert db.first_number(SHARD_A) == 551


async def test_periodic_pruning_uses_the_confirmation_source(db: SidechainDb) -> None:
    db.store_blocks(make_chain(30))
    asked: list[bytes] = []

    async def finalized(shard: bytes) -> int | None:
        asked.append(shard)
        return 8

    task = start_pruning(db, interval=0.02, keep_newest=3, finalized=finalized)
    try:
        for _ in range(200):
            if db.first_number(SHARD_A) == 8:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert db.first_number(SHARD_A) == 8 and asked and asked[0] == SHARD_A
    with pytest.raises(ValueError, match="positive"):
        await db.prune_periodically(interval=0)


async def test_periodic_pruning_survives_a_failing_round(db: SidechainDb) -> None:
    db.store_blocks(make_chain(20))
    calls = 0

    def finalized(shard: bytes) -> int | None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("parentchain unreachable")
        return None

    task = start_pruning(db, interval=0.02, keep_newest=4, finalized=finalized)
    try:
        for _ in range(200):
            if db.first_number(SHARD_A) == 17:
                break
            await asyncio.sleep(0.01)
    finally:
        task.cancel()
    assert calls >= 2 and db.first_number(SHARD_A) == 17


def _scrape(registry: CollectorRegistry) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = generate_latest(registry).decode()
    return {
        family.name: [(dict(s.labels), s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_metrics_follow_the_db(db: SidechainDb) -> None:
    registry = CollectorRegistry()
    register_sidechain_metrics(db, registry)
    height = "integritee_worker_enclave_sidechain_block_height"
    finalized = "integritee_worker_enclave_sidechain_last_finalized_block_number"
    assert _scrape(registry)[height] == [({}, 0.0)]
    db.store_blocks(make_chain(7, SHARD_A) + make_chain(3, SHARD_B))
    db.mark_finalized(SHARD_A, 5)
    scraped = _scrape(registry)
    assert scraped[height] == [({}, 7.0)]
    assert scraped[finalized] == [({"shard": base58.b58encode(SHARD_A).decode()}, 5.0)]


def test_metrics_name_clash_is_detected_and_avoidable(db: SidechainDb) -> None:
    registry = CollectorRegistry()
    Gauge("integritee_worker_enclave_sidechain_block_height", "height", registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        register_sidechain_metrics(db, registry)
    register_sidechain_metrics(db, registry, block_height=False)
    assert "integritee_worker_enclave_sidechain_last_finalized_block_number" in _scrape(registry)
