"""The STF: the demo flows at STF level, fees, nonces, rejections, shielding and unshielding."""

from __future__ import annotations

import pytest

from integritee.codec.scale import EnumValue, encode_compact
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair, dev_keypair
from integritee.enclave.stf.executor import (
    DEV_ROOT,
    CallOutcome,
    Stf,
    UnshieldFromVault,
    UnshieldThroughEnclaveBridge,
)
from integritee.enclave.stf.runtime import EXISTENTIAL_DEPOSIT, IS_NEW_LOGIC, Keys, Runtime
from integritee.enclave.stf.state import ShardState
from integritee.parentchain.primitives import Header
from integritee.trusted import calls as T

U = 10**12
MRENCLAVE = bytes(range(32))
SHARD = MRENCLAVE  # the default shard is the mrenclave
ENCLAVE = Keypair.from_seed(b"\x11" * 32, "ed25519")
ALICE_INCOGNITO = dev_keypair("AliceIncognito")
BOB = dev_keypair("Bob")
CHARLIE = dev_keypair("Charlie")
FERDIE = dev_keypair("Ferdie")
ALICE = dev_keypair("Alice")


def new_shard(dev: bool = False) -> tuple[Stf, ShardState]:
    stf = Stf(MRENCLAVE, dev=dev)
    state = ShardState(b"\x42" * 32)
    stf.init_state(state, ENCLAVE.public_key)
    return stf, state


def free(stf: Stf, state: ShardState, who: Keypair | bytes) -> int:
    account = who.public_key if isinstance(who, Keypair) else who
    return stf.account_info(state, account).data.free


def run(stf: Stf, state: ShardState, call: EnumValue, key: Keypair, nonce: int) -> CallOutcome:
    return stf.execute(state, SHARD, T.sign_call(call, key, nonce, MRENCLAVE, SHARD))


def shield(stf: Stf, state: ShardState, who: Keypair, amount: int) -> CallOutcome:
    call = T.balance_shield_through_enclave_bridge_pallet(
        ENCLAVE.public_key, who.public_key, amount
    )
    return stf.execute_indirect(state, SHARD, call, ENCLAVE)


def test_genesis() -> None:
    stf, state = new_shard()
    rt = Runtime(state)
    assert stf.enclave_account(state) == ENCLAVE.public_key
    assert free(stf, state, ENCLAVE) == 1000
    assert rt.total_issuance() == 1000
    assert rt.root_account() is None
    info = stf.account_info(state, ENCLAVE.public_key)
    assert (info.nonce, info.providers, info.data.flags) == (0, 1, IS_NEW_LOGIC)
    stf_dev, dev_state = new_shard(dev=True)
    assert Runtime(dev_state).root_account() == ALICE.public_key == DEV_ROOT
    assert free(stf_dev, dev_state, ALICE) == 10_000 * U


def test_demo1_enclave_bridge_flow() -> None:
    stf, state = new_shard()
    # shield-funds //Alice //AliceIncognito 6U
    outcome = shield(stf, state, ALICE_INCOGNITO, 6 * U)
    assert outcome.ok, outcome.error
    shield_fee = 6 * U // 571
    assert free(stf, state, ALICE_INCOGNITO) == 6 * U - shield_fee
    assert abs(free(stf, state, ALICE_INCOGNITO) - 6 * U) < U // 5
    assert free(stf, state, ENCLAVE) == 1000 + shield_fee
    assert stf.account_nonce(state, ENCLAVE.public_key) == 1

    # trusted transfer //AliceIncognito BOB 2U -> 4U / 2U
    outcome = run(
        stf,
        state,
        T.balance_transfer(ALICE_INCOGNITO.public_key, BOB.public_key, 2 * U),
        ALICE_INCOGNITO,
        0,
    )
    assert outcome.ok, outcome.error
    assert free(stf, state, ALICE_INCOGNITO) == 4 * U - shield_fee - U // 100
    assert free(stf, state, BOB) == 2 * U

    # unshield-funds --enclave-bridge //AliceIncognito //Ferdie 1U -> 3U / 2U
    call = T.balance_unshield_through_enclave_bridge_pallet(
        ALICE_INCOGNITO.public_key, FERDIE.public_key, U, SHARD
    )
    outcome = run(stf, state, call, ALICE_INCOGNITO, 1)
    assert outcome.ok, outcome.error
    assert free(stf, state, ALICE_INCOGNITO) == 3 * U - shield_fee - U // 100 - 3 * U // 100
    assert abs(free(stf, state, ALICE_INCOGNITO) - 3 * U) < U // 5
    # the payout is named by the signed call (nonce included), so identical unshields differ
    assert outcome.call_hash != blake2_256(T.TrustedCall.encode(call))
    assert outcome.parentchain_calls == [
        UnshieldThroughEnclaveBridge(SHARD, FERDIE.public_key, U, outcome.call_hash, None)
    ]
    encoded = outcome.parentchain_calls[0].encode_call(
        lambda p, c: {"EnclaveBridge": b"\x36\x03"}[p]
    )
    assert (
        encoded
        == b"\x36\x03" + SHARD + FERDIE.public_key + U.to_bytes(16, "little") + outcome.call_hash
    )
    # burnt on the sidechain: issuance = everything shielded minus what left
    assert Runtime(state).total_issuance() == 1000 + 6 * U - U

    # nonce test: BOB nonce 0, three 0.2U transfers -> 3, failing 2U -> 4, one more -> 5
    fee = U // 100
    assert stf.account_nonce(state, BOB.public_key) == 0
    for nonce in range(3):
        assert run(
            stf, state, T.balance_transfer(BOB.public_key, CHARLIE.public_key, U // 5), BOB, nonce
        ).ok
    assert stf.account_nonce(state, BOB.public_key) == 3
    before = free(stf, state, BOB)
    outcome = run(stf, state, T.balance_transfer(BOB.public_key, CHARLIE.public_key, 2 * U), BOB, 3)
    assert outcome.status == "failed"
    assert outcome.error == "Balance Transfer error: Token(FundsUnavailable)"
    assert stf.account_nonce(state, BOB.public_key) == 4
    assert free(stf, state, BOB) == before - fee
    assert run(
        stf, state, T.balance_transfer(BOB.public_key, CHARLIE.public_key, U // 5), BOB, 4
    ).ok
    assert stf.account_nonce(state, BOB.public_key) == 5
    assert free(stf, state, BOB) == 2 * U - 4 * (U // 5) - 5 * fee
    assert abs(free(stf, state, BOB) - 12 * U // 10) < U // 5
    assert free(stf, state, CHARLIE) == 4 * (U // 5)


def test_rejections_leave_the_state_untouched() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, 2 * U)
    state.commit(_NullBatch())
    root = state.root()
    transfer = T.balance_transfer(BOB.public_key, CHARLIE.public_key, U)

    replay = T.sign_call(transfer, BOB, 0, MRENCLAVE, SHARD)
    assert stf.execute(state, SHARD, replay).ok
    again = stf.execute(state, SHARD, replay)
    assert (again.status, again.error_kind, again.error) == (
        "rejected",
        "stale_nonce",
        "InvalidNonce(0, 1)",
    )
    future = run(stf, state, transfer, BOB, 5)
    assert (future.status, future.error_kind) == ("rejected", "future_nonce")
    after_first = state.root()
    assert after_first != root

    forged = T.TrustedCallSigned(transfer, 1, None, EnumValue("Sr25519", CHARLIE.sign(b"x")))
    bad = stf.execute(state, SHARD, forged)
    assert (bad.status, bad.error_kind) == ("rejected", "bad_signature")
    other_shard = T.sign_call(transfer, BOB, 1, MRENCLAVE, bytes(32))
    assert stf.execute(state, SHARD, other_shard).error_kind == "bad_signature"
    other_enclave = Stf(bytes(32)).execute(
        state, SHARD, T.sign_call(transfer, BOB, 1, MRENCLAVE, SHARD)
    )
    assert other_enclave.error_kind == "bad_signature"

    poor = dev_keypair("Poor")
    broke = run(stf, state, T.balance_transfer(poor.public_key, BOB.public_key, 1), poor, 0)
    assert (broke.status, broke.error_kind) == ("rejected", "missing_funds")
    assert "MissingFunds" in (broke.error or "")

    unsigned_delegate = T.sign_call(transfer, CHARLIE, 1, MRENCLAVE, SHARD)  # Charlie for Bob
    denied = stf.execute(state, SHARD, unsigned_delegate)
    assert (denied.status, denied.error_kind) == ("rejected", "unauthorized")
    assert "MissingPrivileges" in (denied.error or "")

    set_balance = run(stf, state, T.balance_set_balance(BOB.public_key, BOB.public_key, U), BOB, 1)
    assert (set_balance.status, set_balance.error_kind) == ("rejected", "unavailable")
    assert state.root() == after_first
    assert not state.in_transaction


def test_bytes_wrapped_call_is_accepted() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, U)
    call = T.balance_transfer(BOB.public_key, CHARLIE.public_key, U // 10)
    payload = T.wrap_bytes(T.call_signing_payload(call, 0, MRENCLAVE, SHARD))
    tcs = T.TrustedCallSigned(call, 0, None, EnumValue("Sr25519", BOB.sign(payload)))
    assert stf.execute(state, SHARD, tcs).ok


def test_failed_call_keeps_fee_and_nonce_but_rolls_back_its_changes() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, U)
    issuance = Runtime(state).total_issuance()
    long_note = b"n" * 600  # beyond the notes pallet's 512-byte limit
    call = T.balance_transfer_with_note(BOB.public_key, CHARLIE.public_key, U // 10, long_note)
    before = free(stf, state, BOB)
    outcome = run(stf, state, call, BOB, 0)
    assert outcome.status == "failed"
    assert outcome.error == "Store note error: Module(Notes::NoteTooLong)"
    fee = U // 100 + U * 600 // 10_000
    assert free(stf, state, BOB) == before - fee
    assert free(stf, state, CHARLIE) == 0 and not Runtime(state).account_exists(CHARLIE.public_key)
    assert [e.name for e in outcome.events] == ["Transfer"]  # only the fee
    assert Runtime(state).total_issuance() == issuance
    ok = run(
        stf,
        state,
        T.balance_transfer_with_note(BOB.public_key, CHARLIE.public_key, U // 10, b"hi"),
        BOB,
        1,
    )
    assert ok.ok and free(stf, state, CHARLIE) == U // 10


def test_existential_deposit_rules() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, U)
    rt = Runtime(state)
    below = run(
        stf,
        state,
        T.balance_transfer(BOB.public_key, CHARLIE.public_key, EXISTENTIAL_DEPOSIT - 1),
        BOB,
        0,
    )
    assert below.error == "Balance Transfer error: Token(BelowMinimum)"
    # send everything but 100 (after the fee): Bob is reaped, the 100 are burnt as dust
    remaining = free(stf, state, BOB) - U // 100
    issuance = rt.total_issuance()
    outcome = run(
        stf, state, T.balance_transfer(BOB.public_key, CHARLIE.public_key, remaining - 100), BOB, 1
    )
    assert outcome.ok, outcome.error
    assert not rt.account_exists(BOB.public_key)
    assert stf.account_nonce(state, BOB.public_key) == 0  # reaped with its nonce
    assert rt.total_issuance() == issuance - 100
    assert free(stf, state, CHARLIE) == remaining - 100
    assert any(e.name == "DustLost" for e in outcome.events)


def test_shielding_to_an_account_needs_the_enclave() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, U)
    fake = T.balance_shield_through_enclave_bridge_pallet(BOB.public_key, BOB.public_key, 100 * U)
    outcome = run(stf, state, fake, BOB, 0)
    assert (outcome.status, outcome.error) == ("failed", "RequireEnclaveSignerAccount")
    assert stf.account_nonce(state, BOB.public_key) == 1  # free call, nonce still used
    stamp = run(stf, state, T.timestamp_set(BOB.public_key, 5, "Integritee"), BOB, 1)
    assert stamp.error == "RequireEnclaveSignerAccount"
    ok = stf.execute_indirect(
        state, SHARD, T.timestamp_set(ENCLAVE.public_key, 1234, "Integritee"), ENCLAVE
    )
    assert ok.ok
    rt = Runtime(state)
    assert rt.parentchain_value("Integritee", "Now") == 1234
    assert rt.parentchain_value("Integritee", "CreationTimestamp") == 1234


def test_vault_flow_demo2_and_demo3() -> None:
    stf, state = new_shard()
    vault = dev_keypair("Vault").public_key
    stf.init_shard_vault(state, "Integritee", vault)
    assert stf.shard_vault(state) == (vault, "Integritee")
    # a Balances.Transfer of 5U to the vault -> balance_shield
    outcome = stf.execute_indirect(
        state,
        SHARD,
        T.balance_shield(ENCLAVE.public_key, CHARLIE.public_key, 5 * U, "Integritee"),
        ENCLAVE,
    )
    assert outcome.ok, outcome.error
    assert free(stf, state, CHARLIE) == 5 * U - 5 * U // 571
    wrong_chain = stf.execute_indirect(
        state,
        SHARD,
        T.balance_shield(ENCLAVE.public_key, CHARLIE.public_key, U, "TargetA"),
        ENCLAVE,
    )
    assert wrong_chain.error == "WrongParentchainIdForShardVault"
    bridge = stf.execute_indirect(
        state,
        SHARD,
        T.balance_shield_through_enclave_bridge_pallet(ENCLAVE.public_key, CHARLIE.public_key, U),
        ENCLAVE,
    )
    assert bridge.error == "EnclaveBridgeShieldingDisabledIfVaultAssigned"

    bob_incognito = dev_keypair("BobIncognito")
    assert run(
        stf,
        state,
        T.balance_transfer(CHARLIE.public_key, bob_incognito.public_key, 4 * U),
        CHARLIE,
        0,
    ).ok
    assert free(stf, state, bob_incognito) == 4_000_000_000_000

    header = Header(b"\x01" * 32, 77, b"\x02" * 32, b"\x03" * 32, [])
    stf.update_parentchain_block(state, "Integritee", header)
    unshield = run(
        stf,
        state,
        T.balance_unshield(CHARLIE.public_key, FERDIE.public_key, U // 2, SHARD),
        CHARLIE,
        1,
    )
    assert unshield.ok, unshield.error
    (pcall,) = unshield.parentchain_calls
    assert isinstance(pcall, UnshieldFromVault)
    assert (pcall.parentchain_id, pcall.vault, pcall.beneficiary, pcall.amount) == (
        "Integritee",
        vault,
        FERDIE.public_key,
        U // 2,
    )
    assert pcall.mortality is not None
    assert (pcall.mortality.block_number, pcall.mortality.block_hash, pcall.mortality.period) == (
        77,
        header.hash(),
        32,
    )
    indexes = {("Proxy", "proxy"): b"\x07\x00", ("Balances", "transfer_keep_alive"): b"\x0a\x03"}
    encoded = pcall.encode_call(lambda p, c: indexes[(p, c)])
    assert encoded == (
        b"\x07\x00"
        + b"\x00"
        + vault
        + b"\x00"
        + b"\x0a\x03"
        + b"\x00"
        + FERDIE.public_key
        + encode_compact(U // 2)
    )
    via_bridge = run(
        stf,
        state,
        T.balance_unshield_through_enclave_bridge_pallet(
            CHARLIE.public_key, FERDIE.public_key, U, SHARD
        ),
        CHARLIE,
        2,
    )
    assert via_bridge.error == "shard vault key has been set. you may not use enclave bridge"
    wrong_shard = run(
        stf,
        state,
        T.balance_unshield(CHARLIE.public_key, FERDIE.public_key, U, bytes(32)),
        CHARLIE,
        3,
    )
    assert wrong_shard.error == "wrong shard"
    too_much = run(
        stf,
        state,
        T.balance_unshield(CHARLIE.public_key, FERDIE.public_key, 100 * U, SHARD),
        CHARLIE,
        4,
    )
    assert (too_much.status, too_much.error, too_much.parentchain_calls) == (
        "failed",
        "MissingFunds",
        [],
    )
    assert stf.account_nonce(state, CHARLIE.public_key) == 5


def test_unshield_without_vault_via_vault_call_fails() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, U)
    outcome = run(
        stf, state, T.balance_unshield(BOB.public_key, FERDIE.public_key, U // 10, SHARD), BOB, 0
    )
    assert outcome.error == "shard vault key hasn't been set"
    assert free(stf, state, BOB) == U - U // 571 - 3 * (U // 100)


def test_balance_set_balance_on_dev_shards() -> None:
    stf, state = new_shard(dev=True)
    rt = Runtime(state)
    issuance = rt.total_issuance()
    ok = run(
        stf, state, T.balance_set_balance(ALICE.public_key, CHARLIE.public_key, 7 * U), ALICE, 0
    )
    assert ok.ok, ok.error
    assert free(stf, state, CHARLIE) == 7 * U and rt.total_issuance() == issuance + 7 * U
    shield(stf, state, BOB, U)
    not_root = run(
        stf, state, T.balance_set_balance(BOB.public_key, BOB.public_key, 100 * U), BOB, 0
    )
    assert (not_root.status, not_root.error) == (
        "failed",
        f"MissingPrivileges(0x{BOB.public_key.hex()})",
    )
    wipe = run(
        stf, state, T.balance_set_balance(ALICE.public_key, CHARLIE.public_key, 10), ALICE, 1
    )
    assert wipe.ok and not rt.account_exists(CHARLIE.public_key)
    assert rt.total_issuance() == issuance + U


def test_session_proxies() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, 2 * U)
    delegate = Keypair.from_seed(b"\x33" * 32, "ed25519")
    reader = Keypair.from_seed(b"\x34" * 32, "ed25519")
    any_role = T.SessionProxyCredentials("Any", None, b"\x01" * 32)
    outcome = run(
        stf, state, T.add_session_proxy(BOB.public_key, delegate.public_key, any_role), BOB, 0
    )
    assert outcome.ok, outcome.error
    info = stf.account_info(state, BOB.public_key)
    assert (info.data.reserved, info.consumers) == (U // 10, 1)
    non_transfer = T.SessionProxyCredentials(EnumValue("NonTransfer", None), None, b"\x02" * 32)
    assert run(
        stf, state, T.add_session_proxy(BOB.public_key, reader.public_key, non_transfer), BOB, 1
    ).ok
    assert len(Runtime(state).session_proxies_of(BOB.public_key)) == 2
    self_proxy = run(
        stf, state, T.add_session_proxy(BOB.public_key, BOB.public_key, any_role), BOB, 2
    )
    assert self_proxy.error == "SessionProxy add error: Module(SessionProxy::SelfProxyForbidden)"

    transfer = T.balance_transfer(BOB.public_key, CHARLIE.public_key, U // 10)
    by_delegate = T.sign_call(transfer, delegate, 3, MRENCLAVE, SHARD)
    assert by_delegate.delegate == delegate.public_key
    assert stf.execute(state, SHARD, by_delegate).ok
    assert free(stf, state, CHARLIE) == U // 10
    by_reader = stf.execute(state, SHARD, T.sign_call(transfer, reader, 4, MRENCLAVE, SHARD))
    assert (by_reader.status, by_reader.error_kind) == ("rejected", "unauthorized")
    assert stf.execute(
        state, SHARD, T.sign_call(T.noop(BOB.public_key), reader, 4, MRENCLAVE, SHARD)
    ).ok
    assert stf.account_nonce(state, BOB.public_key) == 5

    expiring = T.SessionProxyCredentials("Any", 1_000, b"\x03" * 32)
    late = Keypair.from_seed(b"\x35" * 32, "ed25519")
    assert run(
        stf, state, T.add_session_proxy(BOB.public_key, late.public_key, expiring), BOB, 5
    ).ok
    stf.on_initialize(state, SHARD, 1, 2_000)
    expired = stf.execute(
        state, SHARD, T.sign_call(T.noop(BOB.public_key), late, 6, MRENCLAVE, SHARD)
    )
    assert expired.error_kind == "unauthorized" and "expired" in (expired.error or "")


def test_maintenance_mode_filters_calls() -> None:
    stf, state = new_shard()
    shield(stf, state, BOB, U)
    config = {
        "active_config": {
            "enclave_fingerprint": MRENCLAVE,
            "max_instances": None,
            "authorities": None,
            "maintenance_mode": True,
        },
        "pending_upgrade": None,
        "upgrade_at": None,
    }
    from integritee.enclave.stf.runtime import enclave_bridge_shard_config_key
    from integritee.parentchain.tee_types import UpgradableShardConfig

    key = enclave_bridge_shard_config_key(SHARD)
    assert key in stf.storage_keys_to_mirror(state, "Integritee", SHARD)
    stf.mirror_parentchain_storage(state, "Integritee", {key: UpgradableShardConfig.encode(config)})
    stf.on_initialize(state, SHARD, 10, 1_000)
    rt = Runtime(state)
    assert rt.shard_mode() == "MaintenanceOngoing"
    before = free(stf, state, BOB)
    outcome = run(
        stf, state, T.balance_transfer(BOB.public_key, CHARLIE.public_key, U // 10), BOB, 0
    )
    assert (outcome.status, outcome.error) == ("failed", "Filtered")
    assert free(stf, state, BOB) == before - U // 100
    assert shield(stf, state, CHARLIE, U).ok  # shielding cannot be refused


def test_state_diff_replays_on_another_validateer() -> None:
    stf, producer = new_shard()
    importer = ShardState(b"\x43" * 32, producer.items())
    assert importer.root() == producer.root()
    shield(stf, producer, BOB, 3 * U)
    for nonce in range(5):
        run(
            stf,
            producer,
            T.balance_transfer(BOB.public_key, CHARLIE.public_key, U // 10),
            BOB,
            nonce,
        )
    importer.apply_changes(producer.changes())
    assert importer.root() == producer.root()
    assert Keys.account(CHARLIE.public_key) in producer.changes()


class _NullBatch:
    """A write batch that only counts (commit() needs somewhere to put entries)."""

    def __init__(self) -> None:
        self.count = 0

    def put(self, key: bytes, value: bytes) -> None:
        self.count += 1

    def delete(self, key: bytes) -> None:
        self.count += 1


def test_malformed_call_is_rejected() -> None:
    stf, state = new_shard()
    bad = T.TrustedCallSigned(
        T.balance_transfer(BOB.public_key, CHARLIE.public_key, -1),
        0,
        None,
        EnumValue("Sr25519", bytes(64)),
    )
    outcome = stf.execute(state, SHARD, bad)
    assert (outcome.status, outcome.error_kind) == ("rejected", "malformed")
    with pytest.raises(ValueError):
        Stf(b"short")
