"""The enclave's parentchain light client against a real dev node, and on synthetic chains.

A fresh dev node makes a chain with a successful and a failed transfer; its blocks are fetched with
the service's fetcher and imported. Every rejection is checked to leave the client unchanged.
Authority set changes (which the node does not emit yet) are tested on a synthetic chain whose
blocks carry real extrinsics roots, state roots with System.Events proofs and justifications.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.metadata_decode import decode_metadata_v14
from integritee.codec.scale import EnumValue, encode_compact
from integritee.crypto.hashing import blake2_128_concat, blake2_256, storage_prefix
from integritee.crypto.keys import Keypair, dev_keypair
from integritee.crypto.sealing import SimulationSealing
from integritee.enclave.light_client import (
    EVENTS_KEY,
    GENESIS_KEYS,
    AncestryError,
    AuthoritySetChangeError,
    BlockInputError,
    EventsProofError,
    ExtrinsicsRootMismatch,
    InitializationError,
    JustificationError,
    LightClient,
    LightClientError,
    LightClientStateError,
    LightClientStateMissing,
    ParentchainBlockInput,
    RuntimeUpgradeError,
    StorageProofError,
    UnjustifiedBlocks,
    UnknownBlock,
    block_batch_from_json,
    block_batch_to_json,
    decode_block_batch,
    encode_block_batch,
)
from integritee.parentchain.extrinsic import sign_and_encode
from integritee.parentchain.finality import (
    GrandpaJustification,
    make_justification,
)
from integritee.parentchain.primitives import Header, HeaderCodec
from integritee.rpc.client import RpcClient
from integritee.service import parentchain_fetch as fetch
from integritee.trie import Trie, ordered_trie_root
from procs import NodeProcess

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")
CHARLIE = dev_keypair("Charlie")
TRANSFER = 10**12
TOO_MUCH = 1 << 62  # dev accounts hold 2^60


def account_key(who: bytes) -> bytes:
    return storage_prefix("System", "Account") + blake2_128_concat(who)


@dataclass
class Chain:
    genesis_header: bytes
    genesis_proof: list[bytes]
    blocks: list[ParentchainBlockInput]  # blocks 1..n
    ok_hash: bytes  # the successful transfer
    failed_hash: bytes  # the failing transfer
    proof_block: bytes  # a block hash with a proof of Bob's account
    proof: list[bytes]


async def _submit_and_wait(client: RpcClient, raw: bytes) -> bytes:
    sub = await client.subscribe(
        "author_submitAndWatchExtrinsic", [to_hex(raw)], "author_unwatchExtrinsic"
    )
    try:
        while True:
            status = await sub.next(timeout=20)
            if isinstance(status, dict) and "inBlock" in status:
                return from_hex(status["inBlock"])
    finally:
        await sub.unsubscribe()


async def _make_chain(node: NodeProcess) -> Chain:
    async with RpcClient.connect(node.ws_url) as client:
        metadata = decode_metadata_v14(from_hex(await client.request("state_getMetadata")))
        version = await client.request("state_getRuntimeVersion")
        genesis = from_hex(await client.request("chain_getBlockHash", [0]))

        def signed(signer: Keypair, dest: Keypair, amount: int) -> bytes:
            call = metadata.encode_call(
                "Balances",
                "transfer_allow_death",
                {"dest": EnumValue("Id", dest.public_key), "value": amount},
            )
            return sign_and_encode(
                call,
                signer,
                nonce=0,
                genesis_hash=genesis,
                spec_version=version["specVersion"],
                tx_version=version["transactionVersion"],
            )

        ok_raw = signed(ALICE, BOB, TRANSFER)
        failed_raw = signed(BOB, CHARLIE, TOO_MUCH)
        await asyncio.gather(_submit_and_wait(client, ok_raw), _submit_and_wait(client, failed_raw))
        target = node.best_number() + 3
        while await fetch.finalized_number(client) < target:
            await asyncio.sleep(0.05)
        genesis_header, genesis_proof = await fetch.fetch_genesis_init(client)
        blocks = await fetch.fetch_blocks(client, 1, target)
        proof_block = blocks[-1].hash
        reply = await client.request(
            "state_getReadProof", [[to_hex(account_key(BOB.public_key))], to_hex(proof_block)]
        )
    return Chain(
        genesis_header,
        genesis_proof,
        [ParentchainBlockInput.from_json(b.to_json()) for b in blocks],
        blake2_256(ok_raw),
        blake2_256(failed_raw),
        proof_block,
        [from_hex(n) for n in reply["proof"]],
    )


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Chain]:
    node = NodeProcess(tmp_path_factory.mktemp("lc-node"), block_time_ms=100)
    try:
        node.start()
        yield asyncio.run(_make_chain(node))
    finally:
        node.stop()


def fresh(chain: Chain) -> LightClient:
    return LightClient.initialize(chain.genesis_header, chain.genesis_proof)


def at(chain: Chain, number: int) -> LightClient:
    """A client that imported blocks 1..number."""
    lc = fresh(chain)
    if number:
        lc.import_blocks(chain.blocks[:number])
    return lc


def header_of(block: ParentchainBlockInput) -> Header:
    header: Header = HeaderCodec.decode(block.header)
    return header


def rejects(
    lc: LightClient,
    blocks: list[ParentchainBlockInput],
    error: type[LightClientError],
    match: str,
) -> None:
    before = lc.to_bytes()
    with pytest.raises(error, match=match) as info:
        lc.import_blocks(blocks)
    assert info.value.imported == []
    assert lc.to_bytes() == before


# --- the accepted path


def test_import_of_the_real_chain_decodes_transfers_and_dispatch_results(chain: Chain) -> None:
    lc = fresh(chain)
    assert lc.last_number == 0 and lc.set_id == 0
    assert lc.authorities == [(dev_keypair("Alice", "ed25519").public_key, 1)]
    verified = lc.import_blocks(chain.blocks)
    assert [b.number for b in verified] == list(range(1, len(chain.blocks) + 1))
    assert all(b.justified for b in verified)
    assert lc.last_number == len(chain.blocks)
    assert lc.last_hash == verified[-1].hash == header_of(chain.blocks[-1]).hash()

    found = {}
    for block in verified:
        assert len(block.success) == len(block.extrinsics)
        assert block.extrinsics[0].call.name == "Timestamp" and block.success[0]
        for i, xt in enumerate(block.extrinsics):
            found[xt.hash] = (block, i)
    ok_block, ok_index = found[chain.ok_hash]
    assert ok_block.success[ok_index] is True
    assert ok_block.extrinsics[ok_index].signer == ALICE.public_key
    transfers = ok_block.events_of("Balances", "Transfer")
    assert (
        ok_index,
        {"from": ALICE.public_key, "to": BOB.public_key, "amount": TRANSFER},
    ) in transfers
    failed_block, failed_index = found[chain.failed_hash]
    assert failed_block.success[failed_index] is False
    assert [i for i, _ in failed_block.events_of("System", "ExtrinsicFailed")] == [failed_index]
    assert lc.metadata.pallet("Balances").index == 10


def test_batches_import_like_one_and_unjustified_ancestors_are_finalized_by_a_descendant(
    chain: Chain,
) -> None:
    whole = at(chain, len(chain.blocks))
    lc = fresh(chain)
    for i in range(0, len(chain.blocks), 4):
        lc.import_blocks(chain.blocks[i : i + 4])
    assert lc.to_bytes() == whole.to_bytes()

    lc = fresh(chain)
    bare = [dataclasses.replace(b, justification=None) for b in chain.blocks[:3]]
    verified = lc.import_blocks([*bare, chain.blocks[3]])
    assert [b.justified for b in verified] == [False, False, False, True]
    assert lc.last_number == 4


def test_boundary_forms_round_trip(chain: Chain) -> None:
    blocks = chain.blocks[:5]
    assert decode_block_batch(encode_block_batch(blocks)) == blocks
    assert block_batch_from_json(block_batch_to_json(blocks)) == blocks
    assert ParentchainBlockInput.decode(blocks[0].encode()) == blocks[0]
    bad_inputs: list[object] = [[], {"header": 1}, {**blocks[0].to_json(), "extra": 1}]
    for bad in bad_inputs:
        with pytest.raises(BlockInputError):
            ParentchainBlockInput.from_json(bad)
    with pytest.raises(BlockInputError, match="odd number"):
        ParentchainBlockInput.from_json({**blocks[0].to_json(), "header": "0x123"})
    with pytest.raises(BlockInputError):
        decode_block_batch(encode_block_batch(blocks)[:-1])


def test_verify_storage_reads_with_proof_from_recent_blocks(chain: Chain) -> None:
    lc = at(chain, len(chain.blocks))
    key = account_key(BOB.public_key)
    values = lc.verify_storage(chain.proof_block, [key], chain.proof)
    assert values[key] is not None and len(values[key]) == 80
    with pytest.raises(StorageProofError, match="unused|missing|incomplete"):
        lc.verify_storage(chain.proof_block, [key, account_key(ALICE.public_key)], chain.proof)
    with pytest.raises(StorageProofError):
        lc.verify_storage(chain.proof_block, [key], chain.proof[1:])
    with pytest.raises(UnknownBlock):
        lc.verify_storage(bytes(32), [key], chain.proof)
    # the same proof is not valid at an earlier block's root
    with pytest.raises(StorageProofError):
        lc.verify_storage(lc.recent_blocks()[-2][0], [key], chain.proof)


# --- rejections: each leaves the client unchanged


def test_wrong_parent_is_rejected(chain: Chain) -> None:
    lc = at(chain, 2)
    header = header_of(chain.blocks[2])
    forged = dataclasses.replace(header, parent_hash=bytes(32))
    block = dataclasses.replace(chain.blocks[2], header=forged.encode())
    rejects(lc, [block, chain.blocks[3]], AncestryError, "parent hash .* is not the hash of")


def test_skipped_or_repeated_number_is_rejected(chain: Chain) -> None:
    lc = at(chain, 2)
    rejects(lc, [chain.blocks[3]], AncestryError, r"block #4 .*expected #3")
    rejects(lc, [chain.blocks[1]], AncestryError, r"block #2 .*expected #3")


def test_tampered_extrinsic_is_rejected(chain: Chain) -> None:
    lc = at(chain, 1)
    block = chain.blocks[1]
    raw = bytearray(block.extrinsics[0])
    raw[-1] ^= 1  # the timestamp
    tampered = dataclasses.replace(block, extrinsics=[bytes(raw), *block.extrinsics[1:]])
    rejects(lc, [tampered], ExtrinsicsRootMismatch, "extrinsics have root")
    dropped = dataclasses.replace(block, extrinsics=[])
    rejects(lc, [dropped], ExtrinsicsRootMismatch, "the 0 extrinsics")


def test_tampered_missing_or_foreign_events_proof_is_rejected(chain: Chain) -> None:
    lc = at(chain, 1)
    block = chain.blocks[1]
    assert len(block.events_proof) >= 2
    for i in range(len(block.events_proof)):
        node = bytearray(block.events_proof[i])
        node[len(node) // 2] ^= 0x40
        proof = list(block.events_proof)
        proof[i] = bytes(node)
        rejects(lc, [dataclasses.replace(block, events_proof=proof)], EventsProofError, "#2")
        missing = block.events_proof[:i] + block.events_proof[i + 1 :]
        rejects(lc, [dataclasses.replace(block, events_proof=missing)], EventsProofError, "#2")
    foreign = dataclasses.replace(block, events_proof=chain.blocks[2].events_proof)
    rejects(lc, [foreign], EventsProofError, "System.Events proof")
    rejects(lc, [dataclasses.replace(block, events_proof=[])], EventsProofError, "missing")


def test_forged_justification_signature_is_rejected(chain: Chain) -> None:
    lc = at(chain, 1)
    block = chain.blocks[1]
    assert block.justification is not None
    j = GrandpaJustification.decode(block.justification)
    sig = bytearray(j["commit"]["precommits"][0]["signature"])
    sig[0] ^= 1
    j["commit"]["precommits"][0]["signature"] = bytes(sig)
    forged = dataclasses.replace(block, justification=GrandpaJustification.encode(j))
    rejects(lc, [forged], JustificationError, "bad precommit signature")
    # a valid signature in another set id or for another block does not count either
    alice = dev_keypair("Alice", "ed25519")
    h, n = header_of(block).hash(), 2
    other_set = make_justification(h, n, [alice], n, set_id=1)
    rejects(lc, [dataclasses.replace(block, justification=other_set)], JustificationError, "sig")
    other_block = make_justification(bytes(32), n, [alice], n, set_id=0)
    rejects(
        lc,
        [dataclasses.replace(block, justification=other_block)],
        JustificationError,
        "another block",
    )
    rejects(lc, [dataclasses.replace(block, justification=b"\x01")], JustificationError, "malf")


def test_justification_by_a_non_authority_is_rejected(chain: Chain) -> None:
    lc = at(chain, 1)
    block = chain.blocks[1]
    h = header_of(block).hash()
    bob = dev_keypair("Bob", "ed25519")
    forged = make_justification(h, 2, [bob], 2, set_id=0)
    rejects(lc, [dataclasses.replace(block, justification=forged)], JustificationError, "non-aut")
    empty = make_justification(h, 2, [], 2, set_id=0)
    rejects(lc, [dataclasses.replace(block, justification=empty)], JustificationError, "0 of 1")


def test_batch_ending_without_a_justification_imports_only_the_justified_prefix(
    chain: Chain,
) -> None:
    lc = at(chain, 1)
    tail = [dataclasses.replace(b, justification=None) for b in chain.blocks[1:4]]
    rejects(lc, tail, UnjustifiedBlocks, r"#2..#4 are not finalized")

    batch = [chain.blocks[1], chain.blocks[2], *tail[2:]]
    with pytest.raises(UnjustifiedBlocks, match=r"#4..#4") as info:
        lc.import_blocks(batch)
    assert [b.number for b in info.value.imported] == [2, 3]
    assert info.value.index == 2 and info.value.block_number == 4
    assert lc.last_number == 3
    # the tail imports once a justified descendant comes along
    lc.import_blocks([tail[2], chain.blocks[4]])
    assert lc.last_number == 5


def test_error_in_a_batch_keeps_the_justified_prefix_and_stops(chain: Chain) -> None:
    lc = at(chain, 0)
    bad = dataclasses.replace(chain.blocks[3], extrinsics=[])
    with pytest.raises(ExtrinsicsRootMismatch) as info:
        lc.import_blocks([*chain.blocks[:3], bad, chain.blocks[4]])
    assert [b.number for b in info.value.imported] == [1, 2, 3]
    assert info.value.block_number == 4 and info.value.index == 3
    assert lc.last_number == 3


def test_initialization_checks_its_proof(chain: Chain) -> None:
    with pytest.raises(InitializationError, match="proof"):
        LightClient.initialize(chain.genesis_header, chain.genesis_proof[1:])
    with pytest.raises(InitializationError, match="not a genesis header"):
        LightClient.initialize(chain.blocks[0].header, chain.genesis_proof)
    with pytest.raises(InitializationError, match="expected"):
        LightClient.initialize(
            chain.genesis_header, chain.genesis_proof, expected_genesis_hash=bytes(32)
        )
    lc = fresh(chain)
    assert lc.genesis_hash == blake2_256(chain.genesis_header)
    assert lc.recent_blocks() == [(lc.genesis_hash, 0)]
    assert lc.metadata_hash == blake2_256(lc.metadata_bytes)


# --- persistence


def test_sealed_persistence_round_trip(chain: Chain, tmp_path: Path) -> None:
    provider = SimulationSealing(tmp_path / "keys" / "sealing_key")
    path = tmp_path / "data" / "light_client.sealed"
    path.parent.mkdir()
    with pytest.raises(LightClientStateMissing):
        LightClient.load(path, provider)
    lc = at(chain, 5)
    lc.save(path, provider)
    restored = LightClient.load(path, provider)
    assert restored.to_bytes() == lc.to_bytes()
    assert restored.last_hash == lc.last_hash and restored.recent_blocks() == lc.recent_blocks()
    restored.import_blocks(chain.blocks[5:])
    assert restored.to_bytes() == at(chain, len(chain.blocks)).to_bytes()

    other = SimulationSealing(tmp_path / "keys" / "other_key")
    with pytest.raises(LightClientStateError, match="cannot load"):
        LightClient.load(path, other)
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    with pytest.raises(LightClientStateError):
        LightClient.load(path, provider)
    for bad in (b"", b"\x07", lc.to_bytes()[:-1], lc.to_bytes() + b"\x00"):
        with pytest.raises(LightClientStateError):
            LightClient.from_bytes(bad)


# --- authority set changes on a synthetic chain

GRANDPA_KEYS = [Keypair.from_uri(f"//{n}", "ed25519") for n in ("Alice", "Bob", "Charlie", "Dave")]


def _metadata_bytes() -> bytes:
    from integritee.node.runtime.construct import metadata_bytes

    return metadata_bytes()


class SyntheticChain:
    """Blocks with real roots and proofs; justifications signed by whatever keys a test picks."""

    def __init__(self, authorities: list[Keypair], weights: list[int] | None = None) -> None:
        from integritee.codec.scale import FixedBytes, Tuple, Vec, u64

        weights = weights or [1] * len(authorities)
        authority_list = Vec(Tuple(FixedBytes(32), u64)).encode(
            [(k.public_key, w) for k, w in zip(authorities, weights, strict=True)]
        )
        state = {GENESIS_KEYS[0]: _metadata_bytes(), GENESIS_KEYS[1]: authority_list}
        trie = Trie({}, state_version=1)
        for k, v in state.items():
            trie.set(k, v)
        genesis = Header(bytes(32), 0, trie.root(), ordered_trie_root([], 0), [])
        self.genesis_header = genesis.encode()
        self.genesis_proof = trie.read_proof(list(GENESIS_KEYS))
        self.last = genesis

    def block(
        self, signers: list[Keypair] | None, set_id: int = 0, logs: list[EnumValue] | None = None
    ) -> ParentchainBlockInput:
        n = self.last.number + 1
        trie = Trie({}, state_version=1)
        trie.set(EVENTS_KEY, b"\x00")
        trie.set(b"block", n.to_bytes(4, "little"))
        header = Header(self.last.hash(), n, trie.root(), ordered_trie_root([], 0), logs or [])
        self.last = header
        justification = None
        if signers is not None:
            justification = make_justification(header.hash(), n, signers, n, set_id)
        return ParentchainBlockInput(
            header.encode(), [], justification, trie.read_proof([EVENTS_KEY])
        )


def scheduled_change(keys: list[Keypair], delay: int) -> EnumValue:
    data = (
        b"\x01"
        + encode_compact(len(keys))
        + b"".join(k.public_key + (1).to_bytes(8, "little") for k in keys)
        + delay.to_bytes(4, "little")
    )
    return EnumValue("Consensus", (b"FRNK", data))


def test_scheduled_authority_set_change_is_enacted_at_the_delay() -> None:
    old = GRANDPA_KEYS[:1]
    new = GRANDPA_KEYS[1:]
    c = SyntheticChain(old)
    lc = LightClient.initialize(c.genesis_header, c.genesis_proof)
    assert lc.set_id == 0 and [k for k, _ in lc.authorities] == [old[0].public_key]
    b1 = c.block(None, logs=[scheduled_change(new, delay=2)])
    b2 = c.block(None)
    b3 = c.block(old)  # enacts the change; signed by the old set
    lc.import_blocks([b1, b2, b3])
    assert lc.set_id == 1
    assert lc.authorities == [(k.public_key, 1) for k in new]
    assert lc.pending_change is None

    # from now on the old set's signature is worthless and 2 of 3 is not more than 2/3
    checkpoint = lc.to_bytes()
    b4_state = c.last
    rejects(lc, [c.block(old, set_id=1)], JustificationError, "non-authority")
    c.last = b4_state
    rejects(lc, [c.block(new[:2], set_id=1)], JustificationError, "2 of 3")
    c.last = b4_state
    rejects(lc, [c.block(new, set_id=0)], JustificationError, "signature")
    c.last = b4_state
    assert lc.to_bytes() == checkpoint
    lc.import_blocks([c.block(new, set_id=1)])
    assert lc.last_number == 4
    # the state (with the new set) survives a round trip
    assert LightClient.from_bytes(lc.to_bytes()).to_bytes() == lc.to_bytes()


def test_pending_change_persists_between_batches_and_needs_a_justified_enactment() -> None:
    old, new = GRANDPA_KEYS[:1], GRANDPA_KEYS[2:]
    c = SyntheticChain(old)
    lc = LightClient.initialize(c.genesis_header, c.genesis_proof)
    lc.import_blocks([c.block(old, logs=[scheduled_change(new, delay=2)])])
    assert lc.pending_change is not None and lc.pending_change.enact_at == 3
    restored = LightClient.from_bytes(lc.to_bytes())
    assert restored.pending_change == lc.pending_change
    b2 = c.block(None)
    saved = c.last
    b3_bare = c.block(None)
    b4 = c.block(new, set_id=1)
    rejects(lc, [b2, b3_bare, b4], JustificationError, r"#3 enacts .* must carry a justification")
    c.last = saved
    b3 = c.block(old)
    lc.import_blocks([b2, b3, c.block(new, set_id=1)])
    assert lc.set_id == 1 and lc.last_number == 4


def test_delay_zero_forced_and_double_changes() -> None:
    old, new = GRANDPA_KEYS[:1], GRANDPA_KEYS[1:3]
    c = SyntheticChain(old)
    lc = LightClient.initialize(c.genesis_header, c.genesis_proof)
    # delay 0: the signalling block is still signed by the old set, the next by the new
    lc.import_blocks([c.block(old, logs=[scheduled_change(new, delay=0)])])
    assert lc.set_id == 1 and [k for k, _ in lc.authorities] == [k.public_key for k in new]

    saved = c.last
    forced = EnumValue("Consensus", (b"FRNK", b"\x02" + b"\x00" * 4 + b"\x00" + b"\x00" * 4))
    rejects(lc, [c.block(new, 1, logs=[forced])], AuthoritySetChangeError, "forced")
    c.last = saved
    twice = [scheduled_change(old, 5), scheduled_change(old, 6)]
    rejects(lc, [c.block(new, 1, logs=twice)], AuthoritySetChangeError, "more than one")
    c.last = saved
    rejects(lc, [c.block(new, 1, logs=[scheduled_change([], 1)])], AuthoritySetChangeError, "empty")
    c.last = saved
    bad = EnumValue("Consensus", (b"FRNK", b"\x01\x04"))
    rejects(lc, [c.block(new, 1, logs=[bad])], AuthoritySetChangeError, "malformed")
    c.last = saved
    b2 = c.block(None, logs=[scheduled_change(old, 3)])
    rejects(
        lc,
        [b2, c.block(None, logs=[scheduled_change(old, 3)]), c.block(new, 1)],
        AuthoritySetChangeError,
        "while the one signalled in #2 is pending",
    )
    c.last = saved
    upgrade = EnumValue("RuntimeEnvironmentUpdated", None)
    rejects(lc, [c.block(new, 1, logs=[upgrade])], RuntimeUpgradeError, "#2 upgrades the runtime")
    # other GRANDPA logs (OnDisabled) and other engines are ignored
    c.last = saved
    other = [
        EnumValue("Consensus", (b"FRNK", b"\x03" + (0).to_bytes(8, "little"))),
        EnumValue("Consensus", (b"aura", b"\x01\x02")),
    ]
    lc.import_blocks([c.block(new, 1, logs=other)])
    assert lc.set_id == 1 and lc.last_number == 2


def test_justifications_need_more_than_two_thirds_of_the_weight() -> None:
    c = SyntheticChain(GRANDPA_KEYS, weights=[1, 1, 1, 10])
    lc = LightClient.initialize(c.genesis_header, c.genesis_proof)
    assert [w for _, w in lc.authorities] == [1, 1, 1, 10]
    # 3 of 4 signers by count, but only 3 of 13 by weight
    rejects(lc, [c.block(GRANDPA_KEYS[:3])], JustificationError, "weight 3 of 13")
    c.last = lc.last_header
    lc.import_blocks([c.block(GRANDPA_KEYS[1:])])
    assert lc.last_number == 1
