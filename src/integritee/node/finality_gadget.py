"""The finality gadget: a simplified GRANDPA run by the authorities over the p2p network.

Voting goes in rounds of one slot each, offset by half a slot from Aura's slots so that the
block of a slot has reached everybody when the round opens:

1. at the start of round r every authority signs and gossips a *prevote* for its best block;
2. once prevotes of more than 2/3 of the set (by count) are known, an authority computes the
   GHOST: the highest block that more than 2/3 of the prevotes are for, or for a descendant of,
   and signs and gossips a *precommit* for exactly that block (once per round);
3. when more than 2/3 of the set precommitted the same block in a round, anybody holding those
   precommits (authority or full node) has the block's justification: the precommits in
   GRANDPA's `GrandpaJustification` format (what `finality.verify_justification` and the
   enclave's light client check). The node finalizes the block and its ancestors and gossips
   the justification.

Votes are signed over SCALE((Message, round, set_id)) as in GRANDPA (Prevote = 0,
Precommit = 1). The authority set and set id are those in the state of the last finalized block.
A single-authority chain does not vote: its author finalizes each block as it seals it. Rounds
in which precommits split over different blocks finalize nothing; the next round tries again.
Safety comes from the threshold (two sets of more than 2/3 share an honest authority) and from
the chain refusing to finalize anything that does not descend from the finalized block.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from integritee.codec.scale import H256, FixedBytes, ScaleDecodeError, Struct, u8, u32, u64
from integritee.crypto.keys import Keypair, verify
from integritee.parentchain import finality

if TYPE_CHECKING:
    from .service import Node

log = logging.getLogger("integritee.node.finality")

PREVOTE = 0
PRECOMMIT = 1
# Votes for rounds this far behind the current round are still counted (slow peers, clock skew).
ROUNDS_KEPT = 4
ROUNDS_AHEAD = 1

VoteCodec = Struct(
    "integritee_node::Vote",
    [
        ("round", u64),
        ("set_id", u64),
        ("kind", u8),
        ("target_hash", H256),
        ("target_number", u32),
        ("signature", FixedBytes(64)),
        ("id", FixedBytes(32)),
    ],
)


class VoteError(ValueError):
    """A vote that is malformed or badly signed (the sender misbehaves)."""


def vote_payload(
    kind: int, target_hash: bytes, target_number: int, round_number: int, set_id: int
) -> bytes:
    # SCALE((Message, round, set_id)); Prevote and Precommit share the (hash, number) layout.
    return (
        bytes([kind])
        + target_hash
        + u32.encode(target_number)
        + u64.encode(round_number)
        + u64.encode(set_id)
    )


@dataclass(frozen=True)
class Vote:
    round: int
    set_id: int
    kind: int
    target_hash: bytes
    target_number: int
    signature: bytes
    id: bytes

    @classmethod
    def sign(
        cls,
        key: Keypair,
        kind: int,
        target_hash: bytes,
        target_number: int,
        round_number: int,
        set_id: int,
    ) -> Vote:
        payload = vote_payload(kind, target_hash, target_number, round_number, set_id)
        return cls(
            round_number,
            set_id,
            kind,
            target_hash,
            target_number,
            key.sign(payload),
            key.public_key,
        )

    def verify(self) -> bool:
        payload = vote_payload(
            self.kind, self.target_hash, self.target_number, self.round, self.set_id
        )
        return verify("ed25519", payload, self.signature, self.id)

    def encode(self) -> bytes:
        return VoteCodec.encode(self.__dict__)

    @classmethod
    def decode(cls, data: bytes) -> Vote:
        try:
            v = VoteCodec.decode(data)
        except ScaleDecodeError as e:
            raise VoteError(f"malformed vote: {e}") from None
        if v["kind"] not in (PREVOTE, PRECOMMIT):
            raise VoteError(f"unknown vote kind {v['kind']}")
        return cls(**v)

    @property
    def key(self) -> bytes:
        return self.encode()


@dataclass
class RoundVotes:
    prevotes: dict[bytes, Vote] = field(default_factory=dict)
    precommits: dict[bytes, Vote] = field(default_factory=dict)
    precommitted: bool = False


def threshold(n: int) -> int:
    """The smallest vote count that is more than 2/3 of n."""
    return n * 2 // 3 + 1


def build_justification(round_number: int, votes: list[Vote]) -> bytes:
    """GRANDPA justification from precommits that all target the same block."""
    target_hash, target_number = votes[0].target_hash, votes[0].target_number
    return finality.GrandpaJustification.encode(
        {
            "round": round_number,
            "commit": {
                "target_hash": target_hash,
                "target_number": target_number,
                "precommits": [
                    {
                        "precommit": {"target_hash": target_hash, "target_number": target_number},
                        "signature": v.signature,
                        "id": v.id,
                    }
                    for v in sorted(votes, key=lambda v: v.id)
                ],
            },
            "votes_ancestries": [],
        }
    )


class FinalityGadget:
    def __init__(self, node: Node, key: Keypair | None, round_ms: int) -> None:
        self.node = node
        self.key = key
        self.round_ms = round_ms
        self.rounds: dict[int, RoundVotes] = {}
        self.vote_listeners: list[Callable[[Vote], None]] = []
        self.equivocations = 0
        self._task: asyncio.Task[None] | None = None

    # --- who votes
    def voting_set(self) -> tuple[list[bytes], int]:
        return self.node.finality_set()

    def is_voter(self) -> bool:
        if self.key is None:
            return False
        authorities, _ = self.voting_set()
        # A sole authority finalizes its blocks as it authors them.
        return len(authorities) > 1 and self.key.public_key in authorities

    def current_round(self, now_ms: int | None = None) -> int:
        now = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0, (now - self.round_ms // 2) // self.round_ms)

    # --- the round clock
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="grandpa")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            now = int(time.time() * 1000)
            r = self.current_round(now)
            next_start = (r + 1) * self.round_ms + self.round_ms // 2
            await asyncio.sleep(max(0.0, (next_start - now) / 1000))
            try:
                self.start_round(self.current_round())
            except Exception:
                log.exception("finality round failed")

    def start_round(self, r: int) -> None:
        for old in [k for k in self.rounds if k < r - ROUNDS_KEPT]:
            del self.rounds[old]
        if not self.is_voter() or self.node.is_major_syncing():
            return
        assert self.key is not None
        chain = self.node.chain
        if chain.best_number <= chain.finalized_number:
            return
        rv = self.rounds.setdefault(r, RoundVotes())
        if self.key.public_key in rv.prevotes:
            return
        _, set_id = self.voting_set()
        vote = Vote.sign(self.key, PREVOTE, chain.best_hash, chain.best_number, r, set_id)
        self._add(vote, rv)
        self._broadcast(vote)
        self._progress(r)

    # --- votes from the network
    def on_vote(self, vote: Vote) -> bool:
        """Count a vote from a peer; True when it is new (to be relayed).

        Raises VoteError for a vote whose signature is bad (the sending peer misbehaves).
        Votes of other sets or of rounds out of the window are ignored.
        """
        authorities, set_id = self.voting_set()
        if vote.set_id != set_id or vote.id not in authorities:
            return False
        current = self.current_round()
        if not current - ROUNDS_KEPT <= vote.round <= current + ROUNDS_AHEAD:
            return False
        rv = self.rounds.get(vote.round)
        votes = None if rv is None else (rv.prevotes if vote.kind == PREVOTE else rv.precommits)
        if votes is not None and vote.id in votes:
            if votes[vote.id] != vote and vote.verify():
                # The first vote counts; a second, different one is only reported.
                self.equivocations += 1
                log.warning(
                    "equivocation by authority 0x%s in round %d", vote.id.hex()[:16], vote.round
                )
            return False
        if not vote.verify():
            raise VoteError("bad vote signature")
        rv = self.rounds.setdefault(vote.round, RoundVotes())
        self._add(vote, rv)
        self._progress(vote.round)
        return True

    def on_block_imported(self) -> None:
        """A new block may be the target some counted votes were waiting for."""
        for r in sorted(self.rounds):
            self._progress(r)

    # --- the rules
    def _add(self, vote: Vote, rv: RoundVotes) -> None:
        (rv.prevotes if vote.kind == PREVOTE else rv.precommits)[vote.id] = vote

    def _broadcast(self, vote: Vote) -> None:
        for listener in list(self.vote_listeners):
            try:
                listener(vote)
            except Exception:
                log.exception("vote listener failed")

    def _progress(self, r: int) -> None:
        rv = self.rounds.get(r)
        if rv is None:
            return
        authorities, set_id = self.voting_set()
        need = threshold(len(authorities))
        chain = self.node.chain
        if (
            self.key is not None
            and not rv.precommitted
            and len(rv.prevotes) >= need
            and self.is_voter()
        ):
            ghost = self._ghost(list(rv.prevotes.values()), need)
            if ghost is not None:
                # The block enacting an authority set change is the last this set finalizes.
                ghost = self.node.set_change_block(*ghost) or ghost
            if ghost is not None and ghost[1] > chain.finalized_number:
                vote = Vote.sign(self.key, PRECOMMIT, ghost[0], ghost[1], r, set_id)
                rv.precommitted = True
                self._add(vote, rv)
                self._broadcast(vote)
        groups: dict[tuple[bytes, int], list[Vote]] = {}
        for v in rv.precommits.values():
            groups.setdefault((v.target_hash, v.target_number), []).append(v)
        for (target_hash, target_number), votes in sorted(groups.items(), key=lambda kv: -kv[0][1]):
            if len(votes) < need or target_number <= chain.finalized_number:
                continue
            if chain.maybe_header(target_hash) is None:
                continue  # finalized once the block arrives (on_block_imported)
            justification = build_justification(r, votes)
            try:
                if self.node.apply_justification(target_hash, justification):
                    log.info(
                        "Finalized #%d 0x%s in round %d (%d of %d precommits)",
                        target_number,
                        target_hash.hex()[:16],
                        r,
                        len(votes),
                        len(authorities),
                    )
            except Exception as e:  # a conflicting target: the chain keeps its finality
                log.warning("cannot finalize #%d from round %d: %s", target_number, r, e)
            break

    def _ghost(self, prevotes: list[Vote], need: int) -> tuple[bytes, int] | None:
        """The highest block that at least `need` prevotes are for or for a descendant of."""
        chain = self.node.chain
        support: dict[bytes, int] = {}
        numbers: dict[bytes, int] = {}
        for v in prevotes:
            path: list[tuple[bytes, int]] = []
            h, n = v.target_hash, v.target_number
            header = chain.maybe_header(h)
            if header is None or header.number != n:
                continue
            while n > chain.finalized_number:
                path.append((h, n))
                h = header.parent_hash
                n -= 1
                header = chain.maybe_header(h)
                if header is None:
                    break
            if h != chain.finalized_hash:
                continue  # not on the finalized chain: supports nothing we can finalize
            for ph, pn in path:
                support[ph] = support.get(ph, 0) + 1
                numbers[ph] = pn
        best: tuple[bytes, int] | None = None
        for h, count in support.items():
            if count >= need and (best is None or numbers[h] > best[1]):
                best = (h, numbers[h])
        return best
