"""The runtime in-process: balances semantics, fees, signed-extension checks, block import checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from integritee.codec.scale import EnumValue
from integritee.crypto.keys import Keypair
from integritee.node import consensus
from integritee.node.block_builder import ImportError_, build_block, execute_block
from integritee.node.blockchain import Block, Blockchain
from integritee.node.chain_spec import ChainSpec, GenesisConfig
from integritee.node.runtime import executive
from integritee.node.runtime.construct import SPEC_VERSION, TRANSACTION_VERSION, runtime_call
from integritee.node.runtime.context import BlockContext
from integritee.node.runtime.executive import ChainParams, InvalidTransaction
from integritee.node.runtime.pallets import balances, system
from integritee.node.runtime.pallets.transaction_payment import compute_fee
from integritee.node.txpool import PoolError, PoolLimits, TxPool
from integritee.parentchain import finality
from integritee.parentchain.extrinsic import era_from_value, mortal_era_value, sign_and_encode
from integritee.parentchain.primitives import Header
from integritee.storage.overlay import Overlay

ALICE = Keypair.from_uri("//Alice")
BOB = Keypair.from_uri("//Bob")
CHARLIE = Keypair.from_uri("//Charlie")
UNIT = 10**12


@pytest.fixture
def chain(tmp_path: Path):
    config = GenesisConfig(
        endowed={ALICE.public_key: 1000 * UNIT, BOB.public_key: 1000},
        sudo_key=ALICE.public_key,
        aura_authorities=[ALICE.public_key],
        grandpa_authorities=[Keypair.from_uri("//Alice", "ed25519").public_key],
    )
    c = Blockchain.open(tmp_path / "db", ChainSpec("Test", "test", "Development", config.storage()))
    yield c
    c.close()


def params(chain: Blockchain) -> ChainParams:
    return ChainParams(chain.genesis_hash, minimum_period_ms=1)


def call(pallet: str, name: str, **args) -> bytes:
    return runtime_call().encode(EnumValue(pallet, EnumValue(name, args)))


def xt(chain: Blockchain, signer: Keypair, call_bytes: bytes, nonce: int, **kw) -> bytes:
    return sign_and_encode(
        call_bytes,
        signer,
        nonce=nonce,
        genesis_hash=chain.genesis_hash,
        spec_version=SPEC_VERSION,
        tx_version=TRANSACTION_VERSION,
        **kw,
    )


def transfer(dest: Keypair | bytes, value: int, keep_alive: bool = True) -> bytes:
    who = dest if isinstance(dest, bytes) else dest.public_key
    name = "transfer_keep_alive" if keep_alive else "transfer_allow_death"
    return call("Balances", name, dest=EnumValue("Id", who), value=value)


def author(chain: Blockchain, raws: list[bytes], slot: int = 1) -> tuple[Block, list]:
    """Author one block from these transactions through the pool; returns it and its events."""
    pool = TxPool()
    for raw in raws:
        ctx = ctx_at_best(chain)
        valid = executive.validate_transaction(ctx, raw, chain.hash_at)
        pool.insert(valid, system.Account.get(chain.head_state, valid.xt.signer).nonce)
    built = build_block(chain, params(chain), pool, ALICE, slot, slot * 1000, deadline=float("inf"))
    chain.commit_block(built.block)
    events = system.Events.get(chain.head_state)
    return built.block, events


def ctx_at_best(chain: Blockchain) -> BlockContext:
    return BlockContext(
        Overlay(chain.head_state.get), chain.best_number + 1, chain.best_hash, params(chain)
    )


def names(events: list) -> list[str]:
    return [f"{e['event'].name}.{e['event'].value.name}" for e in events]


def free(chain: Blockchain, who: Keypair | bytes) -> int:
    key = who if isinstance(who, bytes) else who.public_key
    return system.Account.get(chain.head_state, key).data.free


def test_transfer_charges_exactly_amount_plus_fee(chain: Blockchain) -> None:
    raw = xt(chain, ALICE, transfer(CHARLIE, 5 * UNIT), 0)
    fee = executive.query_info(ctx_at_best(chain), raw)["partial_fee"]
    assert fee == compute_fee(len(raw), balances.TRANSFER_WEIGHT)
    before = free(chain, ALICE)
    _block, events = author(chain, [raw])
    assert free(chain, ALICE) == before - 5 * UNIT - fee
    assert free(chain, CHARLIE) == 5 * UNIT
    assert "Balances.Transfer" in names(events) and "System.NewAccount" in names(events)
    assert names(events)[-1] == "System.ExtrinsicSuccess"
    assert system.Account.get(chain.head_state, ALICE.public_key).nonce == 1


def test_failed_call_keeps_fee_and_nonce_but_rolls_back_its_changes(chain: Blockchain) -> None:
    # Below the existential deposit for a new account: the call fails, the fee is still paid.
    raw = xt(chain, ALICE, transfer(CHARLIE, 100), 0)
    before = free(chain, ALICE)
    _block, events = author(chain, [raw])
    failed = [e for e in events if e["event"].value.name == "ExtrinsicFailed"]
    assert failed and failed[0]["event"].value.value["dispatch_error"] == EnumValue(
        "Token", EnumValue("BelowMinimum")
    )
    assert free(chain, CHARLIE) == 0
    assert free(chain, ALICE) == before - compute_fee(len(raw), balances.TRANSFER_WEIGHT)
    assert system.Account.get(chain.head_state, ALICE.public_key).nonce == 1


def test_keep_alive_refuses_to_kill_and_allow_death_reaps(chain: Blockchain) -> None:
    bob_funds = 10 * UNIT
    author(chain, [xt(chain, ALICE, transfer(BOB, bob_funds), 0)], slot=1)
    bob_free = free(chain, BOB)
    fee_guess = compute_fee(
        len(xt(chain, BOB, transfer(CHARLIE, bob_free), 0)), balances.TRANSFER_WEIGHT
    )
    everything = bob_free - fee_guess
    _b, events = author(
        chain, [xt(chain, BOB, transfer(CHARLIE, everything, keep_alive=True), 0)], slot=2
    )
    assert any(e["event"].value.name == "ExtrinsicFailed" for e in events)
    bob_free = free(chain, BOB)
    raw = xt(
        chain, BOB, transfer(CHARLIE, bob_free - compute_fee(0, 0) - 10**10, keep_alive=False), 1
    )
    fee = compute_fee(len(raw), balances.TRANSFER_WEIGHT)
    raw = xt(chain, BOB, transfer(CHARLIE, bob_free - fee - 100, keep_alive=False), 1)
    _b, events = author(chain, [raw], slot=3)
    assert "System.KilledAccount" in names(events) and "Balances.DustLost" in names(events)
    assert not system.Account.exists(chain.head_state, BOB.public_key)


def test_sudo_force_set_balance_and_require_sudo(chain: Blockchain) -> None:
    inner = runtime_call().decode(
        call(
            "Balances",
            "force_set_balance",
            who=EnumValue("Id", CHARLIE.public_key),
            new_free=7 * UNIT,
        )
    )
    sudo_call = runtime_call().encode(EnumValue("Sudo", EnumValue("sudo", {"call": inner})))
    _b, events = author(chain, [xt(chain, ALICE, sudo_call, 0)])
    assert free(chain, CHARLIE) == 7 * UNIT
    sudid = [e for e in events if e["event"].value.name == "Sudid"]
    assert sudid[0]["event"].value.value["sudo_result"] == EnumValue("Ok", ())
    author(chain, [xt(chain, ALICE, transfer(BOB, UNIT), 1)], slot=2)
    _b, events = author(chain, [xt(chain, BOB, sudo_call, 0)], slot=3)
    failed = [e for e in events if e["event"].value.name == "ExtrinsicFailed"][0]
    assert failed["event"].value.value["dispatch_error"].name == "Module"
    assert failed["event"].value.value["dispatch_error"].value["index"] == 5


@pytest.mark.parametrize(
    ("mutate", "kind"),
    [
        ("bad_signature", "BadProof"),
        ("stale_nonce", "Stale"),
        ("wrong_genesis", "BadProof"),
        ("poor_sender", "Payment"),
        ("zero_sender", "BadSigner"),
    ],
)
def test_validation_rejects(chain: Blockchain, mutate: str, kind: str) -> None:
    author(chain, [xt(chain, ALICE, transfer(BOB, UNIT), 0)])
    if mutate == "bad_signature":
        raw = bytearray(xt(chain, ALICE, transfer(BOB, UNIT), 1))
        raw[40] ^= 0xFF  # inside the signature
        raw = bytes(raw)
    elif mutate == "stale_nonce":
        raw = xt(chain, ALICE, transfer(BOB, UNIT), 0)
    elif mutate == "wrong_genesis":
        raw = sign_and_encode(
            transfer(BOB, UNIT),
            ALICE,
            nonce=1,
            genesis_hash=bytes(32),
            spec_version=SPEC_VERSION,
            tx_version=TRANSACTION_VERSION,
        )
    elif mutate == "poor_sender":
        raw = xt(chain, CHARLIE, transfer(BOB, 1), 0)
    else:
        raw = bytearray(xt(chain, ALICE, transfer(BOB, UNIT), 1))
        raw[4:36] = bytes(32)
        raw = bytes(raw)
    with pytest.raises(InvalidTransaction) as e:
        executive.validate_transaction(ctx_at_best(chain), raw, chain.hash_at)
    assert e.value.kind == kind


def test_mortal_era_birth_and_death(chain: Blockchain) -> None:
    for slot in range(1, 6):
        author(chain, [], slot=slot)
    era = mortal_era_value(4, chain.best_number)
    birth = era_from_value(era).birth(chain.best_number + 1)
    assert birth == chain.best_number
    good = xt(chain, ALICE, transfer(BOB, UNIT), 0, era=era, birth_hash=chain.hash_at(birth))
    executive.validate_transaction(ctx_at_best(chain), good, chain.hash_at)
    for slot in range(6, 12):
        author(chain, [], slot=slot)
    with pytest.raises(InvalidTransaction) as e:
        executive.validate_transaction(ctx_at_best(chain), good, chain.hash_at)
    assert e.value.kind in ("AncientBirthBlock", "BadProof")


def test_pool_future_promotion_replacement_limits_and_bans(chain: Blockchain) -> None:
    pool = TxPool(PoolLimits(ready_count=3, future_count=1))
    ctx = ctx_at_best(chain)

    def valid(raw: bytes):
        return executive.validate_transaction(ctx, raw, chain.hash_at)

    statuses: list = []
    assert (
        pool.insert(valid(xt(chain, ALICE, transfer(BOB, UNIT), 1)), 0, statuses.append) == "future"
    )
    with pytest.raises(PoolError) as e:
        pool.insert(valid(xt(chain, ALICE, transfer(BOB, UNIT), 2)), 0)
    assert e.value.code == 1016
    assert pool.insert(valid(xt(chain, ALICE, transfer(BOB, UNIT), 0)), 0) == "ready"
    assert statuses == ["future", "ready"]
    low = valid(xt(chain, ALICE, transfer(BOB, 2 * UNIT), 0))
    with pytest.raises(PoolError) as e:
        pool.insert(low, 0)
    assert e.value.code == 1014
    replaced = valid(xt(chain, ALICE, transfer(BOB, 2 * UNIT), 0, tip=5))
    assert pool.insert(replaced, 0) == "ready"
    with pytest.raises(PoolError) as e:
        pool.insert(replaced, 0)
    assert e.value.code == 1013
    pool.remove_invalid(replaced.xt.hash, "test")
    with pytest.raises(PoolError) as e:
        pool.check_new(replaced.xt.hash)
    assert e.value.code == 1012


def test_import_rejects_tampered_blocks(chain: Blockchain, tmp_path: Path) -> None:
    block, _ = author(chain, [xt(chain, ALICE, transfer(BOB, UNIT), 0)])
    # A second node with the same genesis imports the block; tampered copies are rejected.
    other = Blockchain.open(tmp_path / "other", chain.spec)
    try:
        h = block.header
        bad_root = Block(
            Header(h.parent_hash, h.number, bytes(32), h.extrinsics_root, h.digest),
            block.extrinsics,
        )
        with pytest.raises(ImportError_, match="state root"):
            execute_block(other, params(other), bad_root)
        swapped = Block(h, block.extrinsics[:1])
        with pytest.raises(ImportError_, match="extrinsics root"):
            execute_block(other, params(other), swapped)
        assert other.state_root() == other.best_header.state_root  # nothing leaked into the head
        with pytest.raises(consensus.ConsensusError):
            forged = Header(h.parent_hash, h.number, h.state_root, h.extrinsics_root, h.digest[:-1])
            consensus.seal_header(forged, BOB)
            consensus.check_seal(forged, [ALICE.public_key], 1000)
        assert consensus.check_seal(h, [ALICE.public_key], 1000) == ALICE.public_key
        execute_block(other, params(other), block)
        other.commit_block(block)
        assert other.best_hash == chain.best_hash
    finally:
        other.close()


def test_justification_checks() -> None:
    keys = [Keypair.from_uri(f"//{n}", "ed25519") for n in ("Alice", "Bob", "Charlie")]
    authorities = [k.public_key for k in keys]
    target = bytes(range(32))
    good = finality.make_justification(target, 7, keys, 1, 0)
    assert len(finality.verify_justification(good, target, 7, authorities, 0).signers) == 3
    too_few = finality.make_justification(target, 7, keys[:2], 1, 0)
    with pytest.raises(finality.FinalityError, match="2/3"):
        finality.verify_justification(too_few, target, 7, authorities, 0)
    with pytest.raises(finality.FinalityError, match="signature"):
        finality.verify_justification(good, target, 7, authorities, 1)  # other set id
    forged = bytearray(good)
    forged[60] ^= 1
    with pytest.raises(finality.FinalityError):
        finality.verify_justification(bytes(forged), target, 7, authorities, 0)
    outsider = finality.make_justification(
        target, 7, [Keypair.from_uri("//Eve", "ed25519")] + keys[:2], 1, 0
    )
    with pytest.raises(finality.FinalityError, match="non-authority"):
        finality.verify_justification(outsider, target, 7, authorities, 0)
