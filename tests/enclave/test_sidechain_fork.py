"""Sidechain: production and import between two enclaves, Aura authorship, parentchain head
rules, slot order, and fork switching with undo records (revert_head)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair
from integritee.enclave.l1_view import ParentchainView
from integritee.enclave.shard import Shard
from integritee.enclave.sidechain import (
    UNDO_DEPTH,
    BlockImportError,
    Sidechain,
    UnknownParentchainHead,
    slot_author,
)
from integritee.enclave.stf import ShardState, Stf, TrustedCallSigned
from integritee.enclave.stf.executor import DEV_ENDOWMENTS
from integritee.parentchain.primitives import Header
from integritee.storage.kv import KVStore
from integritee.trusted import calls as T
from integritee.trusted.sidechain import ZERO_HASH, summary

MRENCLAVE = bytes(range(32))
SHARD = MRENCLAVE
STATE_KEY = os.urandom(32)
SLOT_MS = 1000
CREATION = 1  # the shard is created at parentchain block #1
# an account the dev STF endows (seed known), to put real transfers into blocks
SENDER = Keypair.from_seed(b"12345678901234567890123456789012", "ed25519")
assert DEV_ENDOWMENTS[0][0] == SENDER.public_key


def parentchain(length: int) -> list[Header]:
    headers = [Header(bytes(32), 0, blake2_256(b"state 0"), blake2_256(b"xt 0"))]
    for n in range(1, length):
        headers.append(
            Header(
                headers[-1].hash(),
                n,
                blake2_256(b"state" + bytes([n])),
                blake2_256(b"xt" + bytes([n])),
            )
        )
    return headers


L1 = parentchain(12)


@dataclass
class Op:
    hash: bytes
    tcs: TrustedCallSigned


@dataclass
class Enclave:
    """One validateer's sidechain side: its db, parentchain view, shard and sidechain."""

    db: KVStore
    signer: Keypair
    view: ParentchainView
    shard: Shard
    stf: Stf
    sidechain: Sidechain

    @property
    def state(self) -> ShardState:
        assert self.shard.state is not None
        return self.shard.state

    def reopen(self) -> Enclave:
        """The same enclave after a restart: everything reloaded from its db."""
        stf = Stf(MRENCLAVE, dev=True)
        shard = Shard(SHARD, self.db, STATE_KEY, stf)
        assert shard.load()
        view = ParentchainView(self.db, SHARD, STATE_KEY)
        sidechain = Sidechain(
            shard,
            self.db,
            self.signer,
            STATE_KEY,
            SLOT_MS,
            view,
            self.sidechain.bootstrap_authorities,
        )
        return Enclave(self.db, self.signer, view, shard, stf, sidechain)

    def propose(
        self,
        slot: int,
        l1: Header,
        ops: list[Op] | None = None,
        record_head: bool = True,
        prelude: Callable[[], None] | None = None,
    ) -> dict[str, Any]:
        state, stf = self.state, self.stf

        def execute(op: Op) -> Any:
            outcome = stf.execute(state, SHARD, op.tcs)
            return None if outcome.rejected else outcome

        def record() -> None:
            stf.update_parentchain_block(state, "Integritee", l1)

        produced = self.sidechain.propose(
            slot,
            l1.hash(),
            list(ops or []),
            execute,
            time.monotonic() + 30,
            prelude if prelude is not None else (record if record_head else None),
        )
        return produced.block

    def import_(self, block: dict[str, Any]) -> None:
        info = self.sidechain.import_block(block)
        self.sidechain.commit(block, info)

    def produce(
        self, slot: int, l1: Header, ops: list[Op] | None = None, record_head: bool = True
    ) -> dict[str, Any]:
        block = self.propose(slot, l1, ops, record_head)
        self.import_(block)
        return block


@pytest.fixture
def dbs(tmp_path: Path) -> Iterator[Callable[[str], KVStore]]:
    opened: list[KVStore] = []

    def open_db(name: str) -> KVStore:
        db = KVStore.open(tmp_path / name)
        opened.append(db)
        return db

    yield open_db
    for db in opened:
        db.close()


def genesis_snapshot(tmp_path: Path) -> bytes:
    with KVStore.open(tmp_path / "genesis") as db:
        shard = Shard(SHARD, db, STATE_KEY, Stf(MRENCLAVE, dev=True))
        shard.create(L1[CREATION], L1[0].hash(), with_vault=False)
        assert shard.state is not None
        return shard.state.export()


@pytest.fixture
def snapshot(tmp_path: Path) -> bytes:
    return genesis_snapshot(tmp_path)


def make_enclave(
    db: KVStore,
    signer: Keypair,
    snapshot: bytes,
    bootstrap: list[bytes],
    authority_changes: dict[int, list[bytes]] | None = None,
    known_l1: int = len(L1),
) -> Enclave:
    stf = Stf(MRENCLAVE, dev=True)
    shard = Shard(SHARD, db, STATE_KEY, stf)
    shard.state = ShardState.from_snapshot(STATE_KEY, snapshot)
    view = ParentchainView(db, SHARD, STATE_KEY)
    changes = authority_changes or {}
    with db.batch() as batch:
        shard.state.write_all(batch.prefixed(shard.view.prefix))
        for header in L1[:known_l1]:
            view.record_block(batch, header.hash(), header.number)
            if header.number in changes:
                view.record_authorities(batch, header.number, changes[header.number])
    sidechain = Sidechain(shard, db, signer, STATE_KEY, SLOT_MS, view, bootstrap)
    return Enclave(db, signer, view, shard, stf, sidechain)


def new_key() -> Keypair:
    return Keypair.from_seed(os.urandom(32), "ed25519")


def transfer(nonce: int, amount: int = 10**9) -> Op:
    call = T.balance_transfer(SENDER.public_key, os.urandom(32), amount)
    tcs = T.sign_call(call, SENDER, nonce, MRENCLAVE, SHARD)
    return Op(blake2_256(tcs.encode()), tcs)


def head_of(enclave: Enclave) -> tuple[bytes | None, int, bytes]:
    head = enclave.sidechain.head
    return (head.hash if head else None, enclave.sidechain.number, enclave.state.root())


def undo_key(number: int) -> bytes:
    return b"sidechain/undo/" + SHARD + number.to_bytes(8, "big")


# --- production and import between enclaves


@pytest.mark.parametrize("via", ["bootstrap", "recorded"])
def test_blocks_of_a_produce_the_same_head_and_state_on_b(
    dbs: Callable[[str], KVStore], snapshot: bytes, via: str
) -> None:
    a_key, b_key = new_key(), new_key()
    changes = {} if via == "bootstrap" else {CREATION: [a_key.public_key]}
    bootstrap = [a_key.public_key] if via == "bootstrap" else []
    a = make_enclave(dbs("a"), a_key, snapshot, bootstrap, changes)
    # B is a joiner: no bootstrap of its own in the "recorded" case
    b = make_enclave(dbs("b"), b_key, snapshot, [a_key.public_key] if bootstrap else [], changes)
    assert a.state.root() == b.state.root()
    genesis_root = a.state.root()

    blocks = [
        a.produce(10, L1[2], [transfer(0), transfer(1)]),
        a.produce(11, L1[2]),  # nothing new: empty diff
        a.produce(13, L1[5], [transfer(2)]),
    ]
    assert a.sidechain.number == 3
    assert a.state.root() != genesis_root
    assert [summary(x).number for x in blocks] == [1, 2, 3]
    assert summary(blocks[0]).parent_hash == ZERO_HASH
    assert len(blocks[0]["block"]["block_data"]["signed_top_hashes"]) == 2
    assert a.stf.account_nonce(a.state, SENDER.public_key) == 3
    assert a.shard.processed_number() == 5

    for block in blocks:
        b.import_(block)
    assert head_of(b) == head_of(a)
    assert b.sidechain.head == summary(blocks[-1])
    assert b.stf.account_nonce(b.state, SENDER.public_key) == 3
    assert b.shard.processed_number() == 5

    # B's state and head survive a restart
    b2 = b.reopen()
    assert head_of(b2) == head_of(a)
    # the same block twice does not extend the head
    with pytest.raises(BlockImportError, match="does not extend"):
        b2.import_(blocks[-1])
    assert head_of(b2) == head_of(a)


def test_import_checks_before_any_state_change(
    dbs: Callable[[str], KVStore], snapshot: bytes
) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    b = make_enclave(dbs("b"), new_key(), snapshot, [a_key.public_key], known_l1=4)
    first = a.produce(10, L1[2])
    second = a.produce(11, L1[3])
    before = head_of(b)

    with pytest.raises(BlockImportError, match="does not extend"):
        b.import_(second)  # gap
    tampered = dict(first)
    tampered["block"] = {
        "header": first["block"]["header"],
        "block_data": {**first["block"]["block_data"], "timestamp": 99 * SLOT_MS},
    }
    with pytest.raises(BlockImportError, match="bad block signature"):
        b.import_(tampered)
    assert head_of(b) == before

    b.import_(first)
    b.import_(second)
    assert head_of(b) == head_of(a)

    # a block naming a parentchain block B has not imported yet
    third = a.produce(12, L1[6])
    with pytest.raises(UnknownParentchainHead):
        b.import_(third)
    assert not b.sidechain.is_author(12, L1[6].hash())
    with b.db.batch() as batch:
        for header in L1[4:7]:
            b.view.record_block(batch, header.hash(), header.number)
    b.import_(third)
    assert head_of(b) == head_of(a)


def test_other_state_key_cannot_import(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    block = a.produce(10, L1[2])
    db = dbs("c")
    stf = Stf(MRENCLAVE, dev=True)
    other_key = os.urandom(32)
    shard = Shard(SHARD, db, other_key, stf)
    shard.state = ShardState.from_snapshot(other_key, snapshot)
    view = ParentchainView(db, SHARD, other_key)
    with db.batch() as batch:
        for header in L1:
            view.record_block(batch, header.hash(), header.number)
    c = Sidechain(shard, db, new_key(), other_key, SLOT_MS, view, [a_key.public_key])
    root = shard.state.root()
    with pytest.raises(BlockImportError, match="undecryptable state diff"):
        c.import_block(block)
    assert shard.state.root() == root and c.head is None


# --- authorities


def test_two_authorities_take_turns(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key, b_key, outsider_key = new_key(), new_key(), new_key()
    both = [a_key.public_key, b_key.public_key]
    changes = {CREATION: [a_key.public_key], 3: both}
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key], changes)
    b = make_enclave(dbs("b"), b_key, snapshot, [], changes)
    outsider = make_enclave(dbs("c"), outsider_key, snapshot, [], changes)

    assert a.sidechain.authorities_at(L1[2].hash()) == [a_key.public_key]
    assert a.sidechain.authorities_at(L1[3].hash()) == both
    assert slot_author(4, both) == a_key.public_key
    assert slot_author(5, both) == b_key.public_key
    assert a.sidechain.is_author(4, L1[3].hash()) and not a.sidechain.is_author(5, L1[3].hash())
    assert b.sidechain.is_author(5, L1[3].hash()) and not b.sidechain.is_author(4, L1[3].hash())
    # before the change at #3, A alone authors every slot
    assert a.sidechain.is_author(5, L1[2].hash())

    a4 = a.produce(4, L1[3], [transfer(0)])
    b.import_(a4)
    b5 = b.produce(5, L1[3], [transfer(1)])
    outsider.import_(a4)  # anyone holding the state key may follow the chain
    for enclave in (a, outsider):
        enclave.import_(b5)
    assert head_of(a) == head_of(b) == head_of(outsider)
    root = a.state.root()

    # A's block in B's slot
    wrong_slot = a.propose(7, L1[3])
    for enclave in (a, b):
        with pytest.raises(BlockImportError, match="wrong author for slot 7"):
            enclave.import_(wrong_slot)
        assert not enclave.state.has_changes()
    # a well-formed block on the head by someone who is no validateer of the shard
    for slot in (6, 7):
        foreign = outsider.propose(slot, L1[3], [transfer(2)])
        outsider.state.discard()  # the outsider never imports its proposal
        for enclave in (a, b):
            with pytest.raises(BlockImportError, match="author is not a validateer"):
                enclave.import_(foreign)
            assert not enclave.state.has_changes()
    assert head_of(a) == head_of(b)
    assert a.state.root() == root

    # the chain goes on with the right authors
    b.import_(a.produce(8, L1[4]))
    a.import_(b.produce(9, L1[4]))
    assert head_of(a) == head_of(b)
    assert a.sidechain.number == 4


def test_no_authorities_no_blocks(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    b = make_enclave(dbs("b"), new_key(), snapshot, [])  # a joiner that sees no signer yet
    block = a.produce(10, L1[2])
    with pytest.raises(BlockImportError, match="author is not a validateer"):
        b.import_(block)
    assert b.sidechain.head is None
    # once the parentchain shows A as the shard's signer, the block imports
    with b.db.batch() as batch:
        b.view.record_authorities(batch, 2, [a_key.public_key])
    b.import_(block)
    assert head_of(b) == head_of(a)


def test_unimported_proposal_is_dropped_by_the_next_import(
    dbs: Callable[[str], KVStore], snapshot: bytes
) -> None:
    a_key, b_key = new_key(), new_key()
    changes = {CREATION: [a_key.public_key, b_key.public_key]}
    a = make_enclave(dbs("a"), a_key, snapshot, [], changes)
    b = make_enclave(dbs("b"), b_key, snapshot, [], changes)
    a.propose(10, L1[3], [transfer(0)])  # A's slot, but B's block for slot 11 arrives first
    b11 = b.produce(11, L1[2], [transfer(0, amount=3 * 10**9)])
    a.import_(b11)
    assert head_of(a) == head_of(b)
    b.import_(a.produce(12, L1[3]))
    assert head_of(a) == head_of(b)


def test_block_after_a_failed_proposal_is_importable_by_peers(
    dbs: Callable[[str], KVStore], snapshot: bytes
) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    b = make_enclave(dbs("b"), new_key(), snapshot, [a_key.public_key])

    def failing_prelude() -> None:
        # like app._produce: record the head, then the inbox turns out unusable
        a.stf.update_parentchain_block(a.state, "Integritee", L1[3])
        raise ValueError("inbox entry of parentchain block #3 unusable")

    with pytest.raises(ValueError):
        a.propose(10, L1[3], prelude=failing_prelude)
    block = a.produce(11, L1[4])  # the next slot
    b.import_(block)
    assert head_of(b) == head_of(a)


# --- parentchain head and slot rules


def test_parentchain_head_may_not_go_back(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    b = make_enclave(dbs("b"), new_key(), snapshot, [a_key.public_key])
    b.import_(a.produce(10, L1[5]))
    before = head_of(b)
    back = a.propose(11, L1[3])  # its prelude records #3 in the state
    a.state.discard()  # A drops it (see the author's own case below)
    with pytest.raises(BlockImportError, match="goes back"):
        b.import_(back)
    assert head_of(b) == before
    assert not b.state.has_changes()
    # the same head as the parent's needs no new record in the state
    b.import_(a.produce(12, L1[5], record_head=False))
    assert b.shard.processed_number() == 5
    b.import_(a.produce(13, L1[6]))
    assert b.shard.processed_number() == 6
    assert head_of(b) == head_of(a)


def test_author_refuses_its_own_block_going_back(
    dbs: Callable[[str], KVStore], snapshot: bytes
) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    a.produce(10, L1[5])
    before = head_of(a)
    back = a.propose(11, L1[3])
    with pytest.raises(BlockImportError, match="goes back"):
        a.import_(back)
    assert head_of(a) == before


def test_state_must_record_the_parentchain_head(
    dbs: Callable[[str], KVStore], snapshot: bytes
) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    b = make_enclave(dbs("b"), new_key(), snapshot, [a_key.public_key])
    before = head_of(a)
    silent = a.propose(10, L1[4], [transfer(0)], record_head=False)
    for enclave in (a, b):
        with pytest.raises(BlockImportError, match="does not record the block's parentchain head"):
            enclave.import_(silent)
        assert head_of(enclave) == before
        assert not enclave.state.has_changes()
    # recording another block than the named head is no better
    wrong = a.propose(
        10,
        L1[4],
        prelude=lambda: a.stf.update_parentchain_block(a.state, "Integritee", L1[6]),
    )
    with pytest.raises(BlockImportError, match="does not record"):
        b.import_(wrong)
    # A refuses it as well (with another message: it checks its own proposal's state)
    with pytest.raises(BlockImportError):
        a.import_(wrong)
    for enclave in (a, b):
        assert head_of(enclave) == before
        assert not enclave.state.has_changes()
    b.import_(a.produce(10, L1[4], [transfer(0)]))
    assert head_of(b) == head_of(a)


def test_slot_must_advance(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    a.produce(10, L1[2])
    before = head_of(a)
    for slot in (10, 9, 0):
        block = a.propose(slot, L1[2])
        with pytest.raises(BlockImportError, match=f"slot {slot} is not after"):
            a.import_(block)
        assert head_of(a) == before
        assert not a.state.has_changes()
    # after a restart the parent's slot is still known
    a2 = a.reopen()
    assert a2.sidechain.head_timestamp == 10 * SLOT_MS
    with pytest.raises(BlockImportError, match="slot 10 is not after"):
        a2.import_(a2.propose(10, L1[2]))
    a2.produce(11, L1[2])
    assert a2.sidechain.number == 2


# --- fork switching


def test_revert_head_restores_state_and_head(
    dbs: Callable[[str], KVStore], snapshot: bytes
) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    genesis = head_of(a)
    first = a.produce(10, L1[2], [transfer(0)])
    after_first = head_of(a)
    second = a.produce(11, L1[4], [transfer(1), transfer(2)])
    assert head_of(a) != after_first

    undone = a.sidechain.revert_head()
    assert summary(undone) == summary(second)
    assert head_of(a) == after_first
    assert a.sidechain.head == summary(first)
    assert a.sidechain.last_header == first["block"]["header"]
    assert a.sidechain.head_timestamp == 10 * SLOT_MS
    assert a.shard.processed_number() == 2
    assert a.stf.account_nonce(a.state, SENDER.public_key) == 1
    assert a.db.get(undo_key(2)) is None

    # persisted: after a restart the parent is the head, with the parent's state
    a2 = a.reopen()
    assert head_of(a2) == after_first
    assert a2.sidechain.head_timestamp == 10 * SLOT_MS

    # back to before the first block: no head at all
    assert summary(a2.sidechain.revert_head()) == summary(first)
    assert head_of(a2) == genesis
    assert a2.sidechain.last_header is None
    assert a2.db.get(b"sidechain/head/" + SHARD) is None
    assert head_of(a2.reopen()) == genesis

    # and the chain can be rebuilt from there, identically
    a2.import_(first)
    a2.import_(second)
    a3 = a2.reopen()
    assert summary(second).hash == a3.sidechain.head.hash  # type: ignore[union-attr]
    assert a3.stf.account_nonce(a3.state, SENDER.public_key) == 3


def test_competing_block_replaces_the_head(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key, b_key = new_key(), new_key()
    changes = {CREATION: [a_key.public_key, b_key.public_key]}
    a = make_enclave(dbs("a"), a_key, snapshot, [], changes)
    b = make_enclave(dbs("b"), b_key, snapshot, [], changes)
    c = make_enclave(dbs("c"), new_key(), snapshot, [], changes)  # a third validateer's view
    first = a.produce(10, L1[2])
    b.import_(first)
    c.import_(first)

    # A and B both build block #2 on #1 (A in slot 12, B in slot 13: a fork)
    a2 = a.produce(12, L1[3], [transfer(0)])
    b2 = b.produce(13, L1[4], [transfer(0, amount=5 * 10**9)])
    assert summary(a2).number == summary(b2).number == 2
    assert summary(a2).hash != summary(b2).hash
    on_first = head_of(c)
    c.import_(a2)
    assert head_of(c) == head_of(a)
    with pytest.raises(BlockImportError, match="does not extend"):
        c.import_(b2)  # same height: not without a revert

    # C switches to B's block: revert, then import the competitor
    reverted = c.sidechain.revert_head()
    assert summary(reverted) == summary(a2)
    assert head_of(c) == on_first  # an imported (not produced) block reverts exactly too
    c.import_(b2)
    assert head_of(c) == head_of(b)
    assert c.shard.processed_number() == 4
    # A switches as well, and the chain continues on B's block
    a.sidechain.revert_head()
    a.import_(b2)
    assert head_of(a) == head_of(b)
    third = a.produce(14, L1[4])
    b.import_(third)
    c.import_(third)
    assert head_of(a) == head_of(b) == head_of(c)

    # a competitor that fails to import: the reverted block goes back in (app._switch_fork)
    before = head_of(c)
    undone = c.sidechain.revert_head()
    b.sidechain.revert_head()
    bad = b.propose(16, L1[4])  # a competitor of #3, but B's block in A's slot
    assert summary(bad).number == summary(undone).number == 3
    with pytest.raises(BlockImportError, match="wrong author"):
        c.import_(bad)
    c.import_(undone)
    assert head_of(c) == before


def test_revert_beyond_undo_depth_fails(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    roots = [a.state.root()]
    for n in range(UNDO_DEPTH + 1):
        a.produce(10 + n, L1[2], [transfer(n)])
        roots.append(a.state.root())
    assert a.sidechain.number == UNDO_DEPTH + 1
    assert a.db.get(undo_key(1)) is None  # forgotten
    for n in range(UNDO_DEPTH + 1, 1, -1):
        a.sidechain.revert_head()
        assert a.sidechain.number == n - 1
        assert a.state.root() == roots[n - 1]
    before = head_of(a)
    with pytest.raises(BlockImportError, match="too deep"):
        a.sidechain.revert_head()
    assert head_of(a) == before
    assert head_of(a.reopen()) == before


def test_tampered_undo_record_fails_cleanly(dbs: Callable[[str], KVStore], snapshot: bytes) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    a.produce(10, L1[2], [transfer(0)])
    a.produce(11, L1[3], [transfer(1)])
    before = head_of(a)
    key = undo_key(2)
    original = a.db.get(key)
    assert original is not None
    for position in (0, 15, len(original) // 2, len(original) - 1):
        tampered = bytearray(original)
        tampered[position] ^= 0x01
        a.db.put(key, bytes(tampered))
        with pytest.raises(BlockImportError, match="undo record of #2 unusable"):
            a.sidechain.revert_head()
        assert head_of(a) == before
        assert not a.state.has_changes()
        assert head_of(a.reopen()) == before
    # another block's authentic record under this key does not decrypt either (bound to its key)
    a.db.put(key, a.db.get(undo_key(1)) or b"")
    with pytest.raises(BlockImportError, match="unusable"):
        a.sidechain.revert_head()
    a.db.put(key, original[:10])  # truncated
    with pytest.raises(BlockImportError, match="unusable"):
        a.sidechain.revert_head()
    assert head_of(a) == before
    # restored, the record works
    a.db.put(key, original)
    a.sidechain.revert_head()
    assert a.sidechain.number == 1


def test_replayed_undo_record_of_a_replaced_block_is_refused(
    dbs: Callable[[str], KVStore], snapshot: bytes
) -> None:
    a_key = new_key()
    a = make_enclave(dbs("a"), a_key, snapshot, [a_key.public_key])
    a.produce(10, L1[2])
    a.produce(11, L1[3], [transfer(0)])
    stale = a.db.get(undo_key(2))
    a.sidechain.revert_head()
    a.produce(12, L1[3], [transfer(0, amount=7 * 10**9)])
    before = head_of(a)
    assert stale is not None
    a.db.put(undo_key(2), stale)  # authentic, but of the block this one replaced
    with pytest.raises(BlockImportError, match="of another block"):
        a.sidechain.revert_head()
    assert head_of(a) == before
