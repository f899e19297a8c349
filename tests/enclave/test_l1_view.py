"""ParentchainView: block index, authorities change points (persisted), encrypted inbox, and the
export/import a joiner receives when it is provisioned."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from integritee.codec.scale import EnumValue
from integritee.crypto.hashing import blake2_256
from integritee.enclave.l1_view import ParentchainView, ViewError, ViewExport
from integritee.storage.kv import KVStore

SHARD = bytes(range(32))
OTHER_SHARD = bytes(range(1, 33))
STATE_KEY = bytes(range(100, 132))
A = b"\xaa" * 32
B = b"\xbb" * 32
C = b"\xcc" * 32
PLAIN_MARKER = b"decrypted indirect call: transfer 42 to bob"


def block_hash(number: int) -> bytes:
    return blake2_256(b"parentchain block" + number.to_bytes(4, "big"))


def items(tag: bytes) -> list[EnumValue]:
    return [EnumValue("Call", PLAIN_MARKER + tag), EnumValue("EnclaveCall", b"\x01\x02" + tag)]


@pytest.fixture
def db(tmp_path: Path) -> Iterator[KVStore]:
    with KVStore.open(tmp_path / "a") as store:
        yield store


@pytest.fixture
def other_db(tmp_path: Path) -> Iterator[KVStore]:
    with KVStore.open(tmp_path / "b") as store:
        yield store


def view_of(db: KVStore, shard: bytes = SHARD, key: bytes = STATE_KEY) -> ParentchainView:
    return ParentchainView(db, shard, key)


# --- block index


def test_block_index_records_and_reloads(db: KVStore) -> None:
    view = view_of(db)
    assert view.number_of(block_hash(1)) is None
    with db.batch() as batch:
        view.record_block(batch, block_hash(1), 1)
        view.record_block(batch, block_hash(70_000), 70_000)
        # queued in the batch, not yet visible
        assert view.number_of(block_hash(1)) is None
    assert view.number_of(block_hash(1)) == 1
    assert view.number_of(block_hash(70_000)) == 70_000
    assert view.number_of(block_hash(2)) is None
    # another view on the same db (another shard even: the index is public chain data)
    assert view_of(db, OTHER_SHARD).number_of(block_hash(70_000)) == 70_000


def test_discarded_batch_records_no_block(db: KVStore) -> None:
    view = view_of(db)
    with pytest.raises(RuntimeError), db.batch() as batch:
        view.record_block(batch, block_hash(3), 3)
        raise RuntimeError("the sync failed")
    assert view.number_of(block_hash(3)) is None


# --- authorities


def test_authorities_change_points(db: KVStore) -> None:
    view = view_of(db)
    assert view.authorities_at(0) == []
    assert view.authorities_at(100) == []
    with db.batch() as batch:
        assert view.record_authorities(batch, 5, [A]) is True
        assert view.record_authorities(batch, 6, [A]) is False  # unchanged: not recorded
        assert view.record_authorities(batch, 9, [A, B]) is True
        assert view.record_authorities(batch, 12, [B]) is True
    assert view.authorities_at(4) == []
    assert view.authorities_at(5) == [A]
    assert view.authorities_at(8) == [A]
    assert view.authorities_at(9) == [A, B]
    assert view.authorities_at(11) == [A, B]
    assert view.authorities_at(12) == [B]
    assert view.authorities_at(10**9) == [B]
    # only the change points are stored
    keys = [k for k, _ in db.iter_prefix(b"l1/authorities/" + SHARD)]
    assert [int.from_bytes(k[-8:], "big") for k in keys] == [5, 9, 12]


def test_authorities_ignore_replayed_and_older_numbers(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        view.record_authorities(batch, 10, [A])
    with db.batch() as batch:
        # a replayed block (same number) and an older one change nothing
        assert view.record_authorities(batch, 10, [B]) is False
        assert view.record_authorities(batch, 7, [C]) is False
    assert view.authorities_at(7) == []
    assert view.authorities_at(10) == [A]
    assert view_of(db).authorities_at(10) == [A]


def test_authorities_returned_list_is_a_copy(db: KVStore) -> None:
    view = view_of(db)
    signers = [A]
    with db.batch() as batch:
        view.record_authorities(batch, 1, signers)
    signers.append(B)
    got = view.authorities_at(1)
    got.append(C)
    assert view.authorities_at(1) == [A]


def test_authorities_persist_and_reload(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        view.record_authorities(batch, 3, [A])
        view.record_authorities(batch, 300, [A, B])
        # kept apart per shard
        view_of(db, OTHER_SHARD).record_authorities(batch, 1, [C])
    reloaded = view_of(db)
    assert reloaded.authorities_at(2) == []
    assert reloaded.authorities_at(299) == [A]
    assert reloaded.authorities_at(300) == [A, B]
    assert view_of(db, OTHER_SHARD).authorities_at(299) == [C]
    # the reloaded view continues the sequence: same signers at a later number is no change
    with db.batch() as batch:
        assert reloaded.record_authorities(batch, 301, [A, B]) is False
        assert reloaded.record_authorities(batch, 300, [C]) is False
        assert reloaded.record_authorities(batch, 302, []) is True
    assert view_of(db).authorities_at(302) == []
    assert view_of(db).authorities_at(301) == [A, B]


# --- inbox


def test_inbox_round_trip_and_bounds(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        for number in (3, 5, 7):
            view.add_inbox(batch, number, items(bytes([number])))
    assert view.inbox_between(0, 100) == [(n, items(bytes([n]))) for n in (3, 5, 7)]
    # after < number <= up_to
    assert [n for n, _ in view.inbox_between(3, 7)] == [5, 7]
    assert [n for n, _ in view.inbox_between(2, 5)] == [3, 5]
    assert [n for n, _ in view.inbox_between(4, 6)] == [5]
    assert view.inbox_between(5, 5) == []
    assert view.inbox_between(7, 2**32) == []
    assert view.inbox_between(0, 2) == []
    # another shard's inbox is separate
    assert view_of(db, OTHER_SHARD).inbox_between(0, 100) == []


def test_inbox_is_encrypted_at_rest(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        view.add_inbox(batch, 4, items(b"x"))
    prefix = b"l1/inbox/" + SHARD
    raw = list(db.iter_prefix(prefix))
    assert len(raw) == 1
    key, blob = raw[0]
    assert key == prefix + (4).to_bytes(8, "big")
    assert PLAIN_MARKER not in blob
    assert b"\x01\x02x" not in blob
    # nothing anywhere in the database holds the plaintext
    assert all(PLAIN_MARKER not in value for _, value in db.iter_prefix(b""))


def test_inbox_wrong_state_key_is_a_view_error(db: KVStore) -> None:
    with db.batch() as batch:
        view_of(db).add_inbox(batch, 4, items(b"x"))
    wrong = view_of(db, key=bytes(32))
    with pytest.raises(ViewError, match="#4"):
        wrong.inbox_between(0, 10)
    # outside the bounds the undecryptable entry is not touched
    assert wrong.inbox_between(4, 10) == []


def test_inbox_entry_moved_to_another_block_is_refused(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        view.add_inbox(batch, 4, items(b"x"))
    prefix = b"l1/inbox/" + SHARD
    blob = db.get(prefix + (4).to_bytes(8, "big"))
    assert blob is not None
    # the ciphertext is bound to its block number and shard
    db.put(prefix + (9).to_bytes(8, "big"), blob)
    with pytest.raises(ViewError, match="#9"):
        view.inbox_between(4, 10)
    db.delete(prefix + (9).to_bytes(8, "big"))
    db.put(b"l1/inbox/" + OTHER_SHARD + (4).to_bytes(8, "big"), blob)
    with pytest.raises(ViewError):
        view_of(db, OTHER_SHARD).inbox_between(0, 10)


def test_inbox_tampered_entry_is_a_view_error(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        view.add_inbox(batch, 4, items(b"x"))
    key = b"l1/inbox/" + SHARD + (4).to_bytes(8, "big")
    blob = bytearray(db.get(key) or b"")
    blob[20] ^= 1
    db.put(key, bytes(blob))
    with pytest.raises(ViewError):
        view.inbox_between(0, 10)


def test_prune_inbox(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        for number in (3, 5, 7):
            view.add_inbox(batch, number, items(bytes([number])))
    with db.batch() as batch:
        view.prune_inbox(batch, 5)
    assert view.inbox_between(0, 100) == [(7, items(b"\x07"))]
    assert len(list(db.iter_prefix(b"l1/inbox/" + SHARD))) == 1
    with db.batch() as batch:
        view.prune_inbox(batch, 6)  # nothing at or below 6 is left
    assert [n for n, _ in view.inbox_between(0, 100)] == [7]
    with db.batch() as batch:
        view.prune_inbox(batch, 7)
    assert view.inbox_between(0, 100) == []


def test_empty_inbox_entry(db: KVStore) -> None:
    view = view_of(db)
    with db.batch() as batch:
        view.add_inbox(batch, 2, [])
    assert view.inbox_between(0, 2) == [(2, [])]


# --- export / import


def _populated(db: KVStore) -> ParentchainView:
    view = view_of(db)
    with db.batch() as batch:
        for number in range(1, 13):
            view.record_block(batch, block_hash(number), number)
        view.record_authorities(batch, 2, [A])
        view.record_authorities(batch, 6, [A, B])
        view.record_authorities(batch, 10, [B])
        for number in (4, 8, 11):
            view.add_inbox(batch, number, items(bytes([number])))
    return view


def test_export_import_reproduces_the_view(db: KVStore, other_db: KVStore) -> None:
    provider = _populated(db)
    recent = [(block_hash(n), n) for n in range(7, 13)]
    data = provider.export(7, recent)
    joiner = view_of(other_db)
    with other_db.batch() as batch:
        joiner.import_(batch, data)
    # index: exactly the given entries
    for number in range(7, 13):
        assert joiner.number_of(block_hash(number)) == number
    assert joiner.number_of(block_hash(6)) is None
    # authorities: from the change in force at 7 (the one at 6) on
    for number in range(6, 20):
        assert joiner.authorities_at(number) == provider.authorities_at(number)
    assert joiner.authorities_at(5) == []  # the change at 2 was before
    # inbox: the entries after 7
    assert joiner.inbox_between(0, 2**32) == [(8, items(b"\x08")), (11, items(b"\x0b"))]
    assert joiner.inbox_between(0, 2**32) == provider.inbox_between(7, 2**32)
    # persisted: a fresh view on the joiner's db sees the same
    again = view_of(other_db)
    assert again.authorities_at(9) == [A, B]
    assert again.authorities_at(10) == [B]
    assert again.inbox_between(0, 100) == joiner.inbox_between(0, 100)


def test_export_from_before_every_change(db: KVStore, other_db: KVStore) -> None:
    provider = _populated(db)
    data = provider.export(0, [])
    joiner = view_of(other_db)
    with other_db.batch() as batch:
        joiner.import_(batch, data)
    for number in range(0, 15):
        assert joiner.authorities_at(number) == provider.authorities_at(number)
    assert [n for n, _ in joiner.inbox_between(0, 100)] == [4, 8, 11]


def test_export_exactly_at_a_change(db: KVStore) -> None:
    provider = _populated(db)
    value = ViewExport.decode(provider.export(10, []))
    assert [n for n, _ in value["authorities"]] == [10]
    assert [n for n, _ in value["inbox"]] == [11]
    value = ViewExport.decode(provider.export(9, []))
    assert [n for n, _ in value["authorities"]] == [6, 10]


def test_import_reencrypts_under_the_joiners_key(db: KVStore, other_db: KVStore) -> None:
    provider = _populated(db)
    data = provider.export(0, [])
    # the export is plaintext (it travels inside the MU-RA channel), the joiner stores encrypted
    assert PLAIN_MARKER in data
    joiner = view_of(other_db)
    with other_db.batch() as batch:
        joiner.import_(batch, data)
    assert all(PLAIN_MARKER not in v for _, v in other_db.iter_prefix(b""))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        b"\xff\xff\xff\xff",
        os.urandom(3),
        ViewExport.encode({"index": [], "authorities": [], "inbox": []}) + b"\x00",
    ],
    ids=["empty", "truncated", "huge-length", "random", "trailing"],
)
def test_malformed_export_is_a_view_error(other_db: KVStore, data: bytes) -> None:
    joiner = view_of(other_db)
    with pytest.raises(ViewError), other_db.batch() as batch:
        joiner.import_(batch, data)
    assert list(other_db.iter_prefix(b"")) == []


def test_malformed_inbox_item_in_export_is_a_view_error(other_db: KVStore) -> None:
    good = ViewExport.encode(
        {"index": [], "authorities": [], "inbox": [(3, [EnumValue("Call", b"x")])]}
    )
    # variant index 7 does not exist
    bad = good.replace(b"\x04\x00", b"\x04\x07", 1)
    assert bad != good
    with pytest.raises(ViewError), other_db.batch() as batch:
        view_of(other_db).import_(batch, bad)


@pytest.mark.parametrize("length", [0, 31, 33])
def test_import_refuses_a_bad_hash_length(other_db: KVStore, length: int) -> None:
    data = ViewExport.encode({"index": [(b"\x01" * length, 5)], "authorities": [], "inbox": []})
    joiner = view_of(other_db)
    with pytest.raises(ViewError, match="32 bytes"), other_db.batch() as batch:
        joiner.import_(batch, data)
    assert list(other_db.iter_prefix(b"")) == []


def test_import_refuses_a_bad_authority_length(other_db: KVStore) -> None:
    data = ViewExport.encode({"index": [], "authorities": [(5, [A, b"\x01" * 20])], "inbox": []})
    joiner = view_of(other_db)
    with pytest.raises(ViewError, match="32-byte"), other_db.batch() as batch:
        joiner.import_(batch, data)
    assert list(other_db.iter_prefix(b"")) == []
    assert joiner.authorities_at(5) == []


def test_refused_import_leaves_no_authorities_behind(other_db: KVStore) -> None:
    data = ViewExport.encode(
        {"index": [], "authorities": [(5, [A]), (9, [b"\x01" * 20])], "inbox": []}
    )
    joiner = view_of(other_db)
    with pytest.raises(ViewError), other_db.batch() as batch:
        joiner.import_(batch, data)
    assert view_of(other_db).authorities_at(5) == []  # nothing was written
    assert joiner.authorities_at(5) == []  # the live view must agree with its database


def test_discarded_batch_then_retry_records_the_change(db: KVStore) -> None:
    """A batch that was not written is dropped from the view; the retried block records it."""
    view = view_of(db)
    with pytest.raises(RuntimeError), db.batch() as batch:
        assert view.record_authorities(batch, 4, [A])
        raise RuntimeError("processing the block failed; the batch is discarded")
    view.drop_staged()  # what the caller does when its batch was not written
    with db.batch() as batch:
        assert view.record_authorities(batch, 4, [A])  # the block is synced again
    assert view_of(db).authorities_at(4) == [A]
