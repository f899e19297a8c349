"""The enclave's trusted operation pool: tags, ready/future, limits, bans, statuses, retraction."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.codec.scale import EnumValue
from integritee.crypto.keys import dev_keypair
from integritee.enclave.top_pool import (
    BAN_SECONDS,
    FUTURE_COUNT,
    READY_BYTES,
    READY_COUNT,
    PoolError,
    PoolOp,
    TopPool,
)
from integritee.trusted import calls as T
from integritee.trusted.rpc import TrustedOperationStatus

MRENCLAVE = bytes(range(32))
SHARD = MRENCLAVE
BLOCK = b"\xbb" * 32
DEST = b"\xdd" * 32


def account(i: int) -> bytes:
    return i.to_bytes(4, "little") + b"\xaa" * 28


A, B, C = account(1), account(2), account(3)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Op:
    """A trusted call as the RPC layer hands it to the pool: hash, signed call, encoded size."""

    def __init__(self, sender: bytes, nonce: int, amount: int = 1, note: bytes = b"") -> None:
        call = (
            T.balance_transfer_with_note(sender, DEST, amount, note)
            if note
            else T.balance_transfer(sender, DEST, amount)
        )
        # the pool never checks signatures (the caller does), so a well-formed one suffices here
        self.tcs = T.TrustedCallSigned(call, nonce, None, EnumValue("Ed25519", bytes(64)))
        top = self.tcs.into_trusted_operation(True)
        self.hash = T.trusted_operation_hash(top)
        self.encoded = T.TrustedOperation.encode(top)
        self.size = len(self.encoded)


class Watch:
    def __init__(self) -> None:
        self.seen: list[EnumValue] = []

    def __call__(self, status: EnumValue) -> None:
        # every status must be encodable as the wire's TrustedOperationStatus
        TrustedOperationStatus.encode(status)
        self.seen.append(status)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.seen]


class Chain:
    """Account nonces of a shard state, advanced by 'executing' pool calls."""

    def __init__(self) -> None:
        self.nonces: dict[bytes, int] = {}

    def __call__(self, who: bytes) -> int:
        return self.nonces.get(who, 0)

    def execute(self, pool: TopPool, ops: list[PoolOp], block: bytes = BLOCK) -> list[bytes]:
        included = []
        for op in ops:
            assert op.nonce == self(op.sender), "the pool handed out a call out of nonce order"
            self.nonces[op.sender] = op.nonce + 1
            included.append(op.hash)
        return pool.on_executed(included, block, self)


def submit(
    pool: TopPool,
    op: Op,
    account_nonce: int = 0,
    watcher: Callable[[EnumValue], None] | None = None,
    priority: int = 0,
) -> str:
    return pool.submit(op.hash, op.tcs, op.size, account_nonce, watcher, priority=priority)


def order(pool: TopPool, limit: int | None = None) -> list[tuple[bytes, int]]:
    return [(op.sender, op.nonce) for op in pool.ready(limit)]


def check_invariants(pool: TopPool) -> None:
    ready = pool.ready()
    future = pool.future()
    assert len(ready) == pool.ready_count
    assert sum(op.size for op in ready) == pool.ready_bytes
    assert len(future) == pool.future_count
    assert sum(op.size for op in future) == pool.future_bytes
    assert len(pool) == len(ready) + len(future)
    assert all(op.is_ready for op in ready) and not any(op.is_ready for op in future)
    last: dict[bytes, int] = {}
    for op in ready:
        if op.sender in last:
            assert op.nonce == last[op.sender] + 1, "a sender's ready calls must be contiguous"
        last[op.sender] = op.nonce


# -- submission and statuses ------------------------------------------------------------------


def test_ready_and_future_statuses() -> None:
    pool = TopPool()
    w0, w2 = Watch(), Watch()
    assert submit(pool, Op(A, 0), 0, w0) == "ready"
    assert submit(pool, Op(A, 2), 0, w2) == "future"
    assert w0.names == ["Submitted", "Ready"]
    assert w2.names == ["Submitted", "Future"]
    assert (pool.ready_count, pool.future_count, len(pool)) == (1, 1, 2)
    assert Op(A, 0).hash in pool and Op(A, 2).hash in pool and Op(A, 1).hash not in pool
    # the gap is filled: A1 ready and A2 promoted
    w1 = Watch()
    assert submit(pool, Op(A, 1), 0, w1) == "ready"
    assert w1.names == ["Submitted", "Ready"]
    assert w2.names == ["Submitted", "Future", "Ready"]
    assert order(pool) == [(A, 0), (A, 1), (A, 2)]
    assert (pool.ready_count, pool.future_count) == (3, 0)
    check_invariants(pool)


def test_ahead_of_account_nonce_waits_for_its_predecessor() -> None:
    pool = TopPool()
    assert submit(pool, Op(A, 6), 5) == "future"
    assert submit(pool, Op(A, 7), 5) == "future"
    assert pool.ready() == []
    assert submit(pool, Op(A, 5), 5) == "ready"
    assert order(pool) == [(A, 5), (A, 6), (A, 7)]


def test_duplicate_hash_is_already_imported() -> None:
    pool = TopPool()
    op = Op(A, 0)
    submit(pool, op)
    w = Watch()
    with pytest.raises(PoolError) as e:
        submit(pool, op, 0, w)
    assert e.value.kind == "AlreadyImported" and e.value.code == 1013 and e.value.status is None
    assert w.seen == []  # a refused submission notifies nobody
    assert len(pool) == 1


def test_stale_nonce_is_invalid() -> None:
    pool = TopPool()
    with pytest.raises(PoolError) as e:
        submit(pool, Op(A, 3), 4)
    assert e.value.kind == "Stale" and e.value.status == EnumValue("Invalid")
    assert len(pool) == 0


def test_same_sender_and_nonce_is_too_low_priority() -> None:
    pool = TopPool()
    w_old = Watch()
    submit(pool, Op(A, 0, amount=1), 0, w_old)
    submit(pool, Op(A, 3, amount=1))
    for twin in (Op(A, 0, amount=2), Op(A, 3, amount=2)):
        with pytest.raises(PoolError) as e:
            submit(pool, twin)
        assert e.value.kind == "TooLowPriority" and e.value.code == 1014
        assert twin.hash not in pool
    assert w_old.names == ["Submitted", "Ready"]
    check_invariants(pool)


def test_higher_priority_usurps_in_place() -> None:
    pool = TopPool()
    watchers = [Watch() for _ in range(3)]
    for n in range(3):
        submit(pool, Op(A, n), 0, watchers[n])
    submit(pool, Op(A, 5))
    w_new, w_new_f = Watch(), Watch()
    assert submit(pool, Op(A, 1, amount=9), 0, w_new, priority=1) == "ready"
    assert submit(pool, Op(A, 5, amount=9), 0, w_new_f, priority=1) == "future"
    assert watchers[1].names == ["Submitted", "Ready", "Usurped"]
    assert w_new.names == ["Submitted", "Ready"] and w_new_f.names == ["Submitted", "Future"]
    assert [op.hash for op in pool.ready()] == [Op(A, 0).hash, Op(A, 1, 9).hash, Op(A, 2).hash]
    assert Op(A, 1).hash not in pool and Op(A, 5).hash not in pool
    assert (pool.ready_count, pool.future_count) == (3, 1)
    # Usurped is final: the old call's watcher hears nothing more
    Chain().execute(pool, pool.ready())
    assert watchers[1].names == ["Submitted", "Ready", "Usurped"]
    check_invariants(pool)


# -- ordering ---------------------------------------------------------------------------------


def test_fifo_across_senders_and_nonce_order_within() -> None:
    pool = TopPool()
    submit(pool, Op(B, 0))
    submit(pool, Op(A, 1))  # future until A0 arrives
    submit(pool, Op(C, 0))
    submit(pool, Op(A, 0))
    submit(pool, Op(B, 1))
    submit(pool, Op(C, 1))
    # heads compete by submission order; a sender's later nonces follow their predecessors
    assert order(pool) == [(B, 0), (C, 0), (A, 0), (A, 1), (B, 1), (C, 1)]
    assert order(pool, 3) == [(B, 0), (C, 0), (A, 0)]
    assert order(pool, 0) == []
    assert len(pool.ready()) == 6  # ready() does not remove anything


def test_priority_first_then_fifo() -> None:
    pool = TopPool()
    submit(pool, Op(A, 0))
    submit(pool, Op(B, 0), priority=5)
    submit(pool, Op(C, 0))
    submit(pool, Op(B, 1), priority=5)
    assert order(pool) == [(B, 0), (B, 1), (A, 0), (C, 0)]


def test_signed_calls_and_pending_encodings() -> None:
    alice, bob = dev_keypair("Alice"), dev_keypair("Bob")
    pool = TopPool()
    tops = []
    for kp, nonce, direct in ((alice, 0, True), (bob, 0, False), (alice, 1, True), (bob, 5, True)):
        call = T.balance_transfer(kp.public_key, DEST, 10)
        tcs = T.sign_call(call, kp, nonce, MRENCLAVE, SHARD)
        assert tcs.verify_signature(MRENCLAVE, SHARD)
        top = tcs.into_trusted_operation(direct)
        encoded = T.TrustedOperation.encode(top)
        pool.submit(T.trusted_operation_hash(top), tcs, len(encoded), 0, direct=direct)
        tops.append(encoded)
    pending = pool.pending()
    assert pending == [tops[0], tops[1], tops[2], tops[3]]
    assert [T.TrustedOperation.decode(p).name for p in pending] == [
        "direct_call",
        "indirect_call",
        "direct_call",
        "direct_call",
    ]
    assert pool.get(T.trusted_operation_hash(T.TrustedOperation.decode(pending[1]))) is not None


# -- blocks -----------------------------------------------------------------------------------


def test_on_executed_notifies_prunes_and_promotes() -> None:
    pool, chain = TopPool(), Chain()
    w = {n: Watch() for n in range(4)}
    for n in (0, 1, 3):
        submit(pool, Op(A, n), 0, w[n])
    wb = Watch()
    submit(pool, Op(B, 0), 0, wb)
    found = chain.execute(pool, pool.ready(2))  # A0, A1 included; B0 not yet
    assert found == [Op(A, 0).hash, Op(A, 1).hash]
    assert w[0].seen[-1] == EnumValue("InSidechainBlock", BLOCK)
    assert w[1].names == ["Submitted", "Ready", "InSidechainBlock"]
    assert Op(A, 0).hash not in pool and Op(A, 1).hash not in pool
    assert order(pool) == [(B, 0)]
    assert wb.names == ["Submitted", "Ready"]
    # A2 arrives: A3 becomes contiguous
    submit(pool, Op(A, 2), 2, w[2])
    assert w[3].names == ["Submitted", "Future", "Ready"]
    assert order(pool) == [(B, 0), (A, 2), (A, 3)]
    # InSidechainBlock is final: the included calls' watchers hear nothing more
    chain.execute(pool, pool.ready(), b"\xcc" * 32)
    assert w[0].names == ["Submitted", "Ready", "InSidechainBlock"]
    assert w[3].seen[-1] == EnumValue("InSidechainBlock", b"\xcc" * 32)
    assert len(pool) == 0 and pool.ready_bytes == 0 and pool.future_bytes == 0


def test_block_with_a_competing_call_makes_ours_stale() -> None:
    pool = TopPool()
    ours, theirs = Op(A, 0, amount=1), Op(A, 0, amount=2)
    w = Watch()
    submit(pool, ours, 0, w)
    submit(pool, Op(A, 1))
    submit(pool, Op(A, 4))
    # a peer's block executed another A0 and A1 we never saw (unknown hashes)
    nonces = {A: 2}
    found = pool.on_executed([theirs.hash, b"\x01" * 32], BLOCK, lambda who: nonces.get(who, 0))
    assert found == []
    assert w.names == ["Submitted", "Ready", "Invalid"]
    assert Op(A, 1).hash not in pool and Op(A, 4).hash in pool
    assert pool.ready() == [] and pool.future_count == 1
    check_invariants(pool)


def test_on_executed_touched_limits_the_check() -> None:
    pool = TopPool()
    submit(pool, Op(A, 0))
    submit(pool, Op(B, 0))
    nonces = {A: 1, B: 1}
    pool.on_executed([b"\x01" * 32], BLOCK, lambda who: nonces[who], touched=[B])
    assert order(pool) == [(A, 0)]  # A was not named, so not checked
    pool.prune(lambda who: nonces[who])
    assert len(pool) == 0


def test_submission_racing_an_unreported_block_loses_nothing() -> None:
    pool, chain = TopPool(), Chain()
    w0 = Watch()
    submit(pool, Op(A, 0), 0, w0)
    executed = pool.ready()
    chain.nonces[A] = 1  # the state already holds the block; on_executed not yet called
    w1 = Watch()
    assert submit(pool, Op(A, 1), chain(A), w1) == "ready"
    assert submit(pool, Op(A, 2), chain(A)) == "ready"
    assert w0.names == ["Submitted", "Ready"]  # not pruned as stale by the submission
    pool.on_executed([op.hash for op in executed], BLOCK, chain)
    assert w0.names == ["Submitted", "Ready", "InSidechainBlock"]
    assert order(pool) == [(A, 1), (A, 2)]


def test_state_advanced_by_unknown_calls_lets_a_new_call_be_ready() -> None:
    pool = TopPool()
    w = Watch()
    submit(pool, Op(A, 7), 5, w)  # future: A5, A6 missing
    # a peer executed A5 and A6; a new A8 arrives before anything told the pool
    assert submit(pool, Op(A, 8), 7) == "ready"
    assert w.names == ["Submitted", "Future", "Ready"]
    assert order(pool) == [(A, 7), (A, 8)]


def test_remove_invalid_demotes_successors_and_bans() -> None:
    clock = Clock()
    pool, chain = TopPool(clock=clock), Chain()
    w = {n: Watch() for n in range(4)}
    for n in range(4):
        submit(pool, Op(A, n), 0, w[n])
    assert pool.remove_invalid(Op(A, 1).hash, "MissingFunds")
    assert w[1].names == ["Submitted", "Ready", "Invalid"]
    assert w[2].names == ["Submitted", "Ready", "Future"]
    assert order(pool) == [(A, 0)]
    assert (pool.ready_count, pool.future_count) == (1, 2)
    check_invariants(pool)
    with pytest.raises(PoolError) as e:
        submit(pool, Op(A, 1))
    assert e.value.kind == "TemporarilyBanned" and e.value.status == EnumValue("Invalid")
    # a different A1 fills the gap and brings the successors back
    submit(pool, Op(A, 1, amount=5))
    assert w[2].names[-1] == "Ready" and w[3].names[-1] == "Ready"
    chain.execute(pool, pool.ready())
    assert len(pool) == 0
    # removing the head keeps the base: the rest must wait
    for n in (4, 5):
        submit(pool, Op(A, n), 4)
    pool.remove_invalid(Op(A, 4).hash)
    assert pool.ready() == [] and pool.future_count == 1
    assert not pool.remove_invalid(b"\x07" * 32)  # unknown: only banned
    assert pool.is_banned(b"\x07" * 32)


def test_ban_expires_after_the_configured_time() -> None:
    clock = Clock()
    pool = TopPool(clock=clock)
    op = Op(A, 0)
    submit(pool, op)
    pool.remove_invalid(op.hash, "bad")
    assert pool.banned_count == 1
    clock.now += BAN_SECONDS - 1
    with pytest.raises(PoolError) as e:
        submit(pool, op)
    assert e.value.kind == "TemporarilyBanned" and e.value.code == 1012
    clock.now += 2
    assert submit(pool, op) == "ready"
    assert pool.banned_count == 0
    short = TopPool(clock=clock, ban_seconds=5)
    short.ban(op.hash)
    clock.now += 4.9
    assert short.is_banned(op.hash)
    clock.now += 0.2
    assert not short.is_banned(op.hash)


# -- limits -----------------------------------------------------------------------------------


def test_default_limits() -> None:
    pool = TopPool()
    assert pool.ready_limit == (READY_COUNT, READY_BYTES) == (8192, 20 * 1024 * 1024)
    assert pool.future_limit == (FUTURE_COUNT, 1024 * 1024) == (512, 1024 * 1024)


def test_ready_count_limit_drops_the_new_call() -> None:
    pool = TopPool(ready_count=3)
    for i in range(10, 13):
        submit(pool, Op(account(i), 0))
    w = Watch()
    with pytest.raises(PoolError) as e:
        submit(pool, Op(A, 0), 0, w)
    assert e.value.kind == "ImmediatelyDropped" and e.value.code == 1016
    assert e.value.status == EnumValue("Dropped")
    assert w.seen == [] and len(pool) == 3
    assert submit(pool, Op(A, 1)) == "future"  # the future queue still has room
    # space again after a block
    pool.on_executed([Op(account(10), 0).hash], BLOCK, lambda who: int(who == account(10)))
    assert submit(pool, Op(A, 0)) == "ready"
    # promotion never drops: A1 joined the full ready queue
    assert order(pool)[-2:] == [(A, 0), (A, 1)] and pool.ready_count == 4
    check_invariants(pool)


def test_byte_limits() -> None:
    size = Op(A, 0).size
    pool = TopPool(ready_bytes=2 * size + 10, future_bytes=size + 10)
    submit(pool, Op(A, 0))
    submit(pool, Op(B, 0))
    with pytest.raises(PoolError) as e:
        submit(pool, Op(C, 0))
    assert e.value.kind == "ImmediatelyDropped" and "ready" in e.value.message
    submit(pool, Op(C, 5))
    with pytest.raises(PoolError) as e:
        submit(pool, Op(C, 6))
    assert e.value.kind == "ImmediatelyDropped" and "future" in e.value.message
    big = Op(C, 7, note=b"x" * 100)
    assert big.size > size
    with pytest.raises(PoolError):
        submit(pool, big)
    assert (pool.ready_bytes, pool.future_bytes) == (2 * size, size)


def test_future_count_limit_and_lifetime() -> None:
    clock = Clock()
    pool = TopPool(future_count=2, future_lifetime=60, clock=clock)
    w = Watch()
    submit(pool, Op(A, 5), 0, w)
    clock.now += 30
    submit(pool, Op(B, 5))
    with pytest.raises(PoolError) as e:
        submit(pool, Op(C, 5))
    assert e.value.kind == "ImmediatelyDropped"
    clock.now += 31  # A5 waited 61 s for its predecessors: it makes room
    assert submit(pool, Op(C, 5)) == "future"
    assert w.names == ["Submitted", "Future", "Dropped"]
    assert Op(A, 5).hash not in pool and pool.future_count == 2
    # without a lifetime a full future queue simply refuses
    strict = TopPool(future_count=1, future_lifetime=None, clock=clock)
    submit(strict, Op(A, 5))
    clock.now += 10**6
    with pytest.raises(PoolError):
        submit(strict, Op(B, 5))


# -- retraction -------------------------------------------------------------------------------


def test_retract_puts_a_losing_forks_calls_back() -> None:
    pool, chain = TopPool(), Chain()
    w = {n: Watch() for n in range(3)}
    for n in range(3):
        submit(pool, Op(A, n), 0, w[n])
    wb = Watch()
    submit(pool, Op(B, 0), 0, wb)
    losing = chain.execute(pool, pool.ready(3), b"\x01" * 32)
    assert losing == [Op(A, n).hash for n in range(3)] and len(pool) == 1
    # the fork is reverted to the common ancestor: nonces back to 0
    ancestor = Chain()
    back = pool.retract(losing, ancestor)
    assert sorted(back) == sorted(losing)
    assert w[0].names == ["Submitted", "Ready", "InSidechainBlock", "Retracted", "Ready"]
    assert w[2].names == ["Submitted", "Ready", "InSidechainBlock", "Retracted", "Ready"]
    assert wb.names == ["Submitted", "Ready"]
    # retracted calls keep their place (submission order): before the younger B0
    assert order(pool) == [(A, 0), (A, 1), (A, 2), (B, 0)]
    check_invariants(pool)
    # the winning branch includes them again
    winner = b"\x02" * 32
    ancestor.execute(pool, pool.ready(), winner)
    assert w[2].seen[-1] == EnumValue("InSidechainBlock", winner)
    assert len(pool) == 0
    assert pool.retract([b"\x09" * 32], ancestor) == []  # unknown hashes are ignored


def test_retract_demotes_calls_that_now_lack_a_predecessor() -> None:
    pool, chain = TopPool(), Chain()
    submit(pool, Op(A, 0))
    losing = chain.execute(pool, pool.ready())
    w1 = Watch()
    submit(pool, Op(A, 1), 1, w1)  # ready on top of the (losing) block
    pool.retract(losing, Chain())  # reverted: A's nonce is 0 again
    assert w1.names == ["Submitted", "Ready", "Future", "Ready"]
    assert order(pool) == [(A, 0), (A, 1)]


def test_retract_conflicts() -> None:
    pool, chain = TopPool(), Chain()
    a0, b0 = Op(A, 0), Op(B, 0)
    wa, wb = Watch(), Watch()
    submit(pool, a0, 0, wa)
    submit(pool, b0, 0, wb)
    losing = chain.execute(pool, pool.ready())
    # meanwhile another A0 took the tag; B's nonce stays 1 on the winning branch
    submit(pool, Op(A, 0, amount=7))
    back = pool.retract(losing, lambda who: 1 if who == B else 0)
    assert back == []
    assert wa.names[-2:] == ["Retracted", "Usurped"]
    assert wb.names[-2:] == ["Retracted", "Invalid"]
    # a full pool drops what comes back
    pool2, chain2 = TopPool(ready_count=1), Chain()
    w = Watch()
    submit(pool2, Op(A, 0), 0, w)
    losing2 = chain2.execute(pool2, pool2.ready())
    submit(pool2, Op(B, 0))
    assert pool2.retract(losing2, Chain()) == []
    assert w.names[-2:] == ["Retracted", "Dropped"]


def test_included_memory_is_bounded() -> None:
    pool, chain = TopPool(keep_included=2), Chain()
    for n in range(3):
        submit(pool, Op(A, n))
    losing = chain.execute(pool, pool.ready())
    assert pool.retract(losing, Chain()) == [Op(A, 1).hash, Op(A, 2).hash]
    assert order(pool) == []  # A1, A2 back but waiting for A0
    assert pool.future_count == 2


# -- watchers ---------------------------------------------------------------------------------


def test_watch_and_unwatch() -> None:
    pool, chain = TopPool(), Chain()
    op = Op(A, 1)
    submit(pool, op)
    w1, w2 = Watch(), Watch()
    assert pool.watch(op.hash, w1) and pool.watch(op.hash, w2)
    assert not pool.watch(b"\x05" * 32, w1)
    pool.unwatch(op.hash, w2)
    pool.unwatch(b"\x05" * 32, w2)  # unknown: nothing happens
    submit(pool, Op(A, 0))
    assert w1.names == ["Ready"] and w2.names == []
    chain.execute(pool, pool.ready())
    assert w1.names == ["Ready", "InSidechainBlock"]
    pool.unwatch(op.hash, w1)  # detaches from the remembered call too
    pool.retract([op.hash], Chain())
    assert w1.names == ["Ready", "InSidechainBlock"]


def test_a_failing_watcher_does_not_break_the_pool() -> None:
    pool = TopPool()

    def broken(status: EnumValue) -> None:
        raise RuntimeError("socket closed")

    w = Watch()
    submit(pool, Op(A, 0), 0, broken)
    pool.watch(Op(A, 0).hash, w)
    Chain().execute(pool, pool.ready())
    assert w.names == ["InSidechainBlock"] and len(pool) == 0


# -- model check ------------------------------------------------------------------------------

_actions = st.lists(
    st.one_of(
        st.tuples(st.just("submit"), st.integers(0, 3), st.integers(-1, 4), st.integers(0, 1)),
        st.tuples(st.just("block"), st.integers(0, 6), st.just(0), st.just(0)),
        st.tuples(st.just("invalid"), st.integers(0, 40), st.just(0), st.just(0)),
        st.tuples(st.just("fork"), st.just(0), st.just(0), st.just(0)),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(_actions)
def test_pool_agrees_with_a_model(actions: list[tuple[str, int, int, int]]) -> None:
    """Against a model: a call is ready iff all nonces from its sender's account nonce up to it
    are in the pool; refusals exactly for duplicates, stale nonces and taken tags; a reverted
    block's calls all come back."""
    pool, chain = TopPool(), Chain()
    present: dict[tuple[bytes, int], bytes] = {}  # (sender, nonce) -> hash in the pool
    last_block: tuple[list[PoolOp], dict[bytes, int]] | None = None
    for kind, x, y, z in actions:
        if kind == "submit":
            who = account(x)
            nonce = chain(who) + y
            if nonce < 0:
                continue
            op = Op(who, nonce, amount=z)
            try:
                submit(pool, op, chain(who))
            except PoolError as e:
                if op.hash in present.values():
                    assert e.kind == "AlreadyImported"
                elif nonce < chain(who):
                    assert e.kind == "Stale"
                elif pool.is_banned(op.hash):
                    assert e.kind == "TemporarilyBanned"
                else:
                    assert e.kind == "TooLowPriority" and (who, nonce) in present
                continue
            assert (who, nonce) not in present
            present[(who, nonce)] = op.hash
        elif kind == "block":
            block = pool.ready(x)
            last_block = (block, dict(chain.nonces))
            chain.execute(pool, block)
            for pop in block:
                del present[(pop.sender, pop.nonce)]
        elif kind == "fork":
            if last_block is None:
                continue
            block, chain.nonces = last_block
            last_block = None
            back = pool.retract([pop.hash for pop in block], chain)
            assert sorted(back) == sorted(pop.hash for pop in block)
            for pop in block:
                present[(pop.sender, pop.nonce)] = pop.hash
        else:
            live = sorted(present.items())
            if live:
                (who, nonce), h = live[x % len(live)]
                assert pool.remove_invalid(h)
                del present[(who, nonce)]
        expected_ready = set()
        for who, nonce in present:
            if all((who, n) in present for n in range(chain(who), nonce + 1)):
                expected_ready.add((who, nonce))
        assert set(order(pool)) == expected_ready
        assert {(op.sender, op.nonce) for op in pool.future()} == set(present) - expected_ready
        check_invariants(pool)


# -- performance ------------------------------------------------------------------------------


def test_performance_smoke() -> None:
    senders, per_sender = 1000, 10
    ops = [Op(account(i), n) for n in range(per_sender) for i in range(senders)]
    pool, chain = TopPool(ready_count=senders * per_sender), Chain()
    watcher = Watch()
    start = time.perf_counter()
    for op in ops:
        pool.submit(op.hash, op.tcs, op.size, chain(op.tcs.sender), watcher)
    submitted = time.perf_counter()
    blocks = 0
    while len(pool):
        chain.execute(pool, pool.ready(1000))
        blocks += 1
    done = time.perf_counter()
    assert blocks == senders * per_sender // 1000
    assert len(watcher.seen) == 3 * len(ops)
    print(
        f"\ntop pool: {len(ops)} submissions in {1000 * (submitted - start):.1f} ms, "
        f"drained in {blocks} blocks in {1000 * (done - submitted):.1f} ms"
    )
