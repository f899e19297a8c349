"""The TEE pallets in-process: Teerex, EnclaveBridge, Sidechain and Proxy on a real block chain.

Blocks are authored through the pool and the executive exactly as the node does, so every call
goes through decoding, signed-extension checks, fees and transactional dispatch; the assertions
look at storage and at the events and dispatch errors the block recorded.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset

from integritee.codec.scale import EnumValue
from integritee.crypto.keys import Keypair
from integritee.node.runtime import construct
from integritee.node.runtime.pallets import enclave_bridge as bridge_mod
from integritee.node.runtime.pallets import proxy as proxy_mod
from integritee.node.runtime.pallets import sidechain as sidechain_mod
from integritee.node.runtime.pallets import teerex as teerex_mod

TEE_PALLETS = (
    proxy_mod.proxy,
    teerex_mod.teerex,
    sidechain_mod.sidechain,
    bridge_mod.enclave_bridge,
)
for _p in TEE_PALLETS:
    if _p not in construct.pallets():
        construct.register_pallet(_p)

from integritee.node.block_builder import build_block  # noqa: E402
from integritee.node.blockchain import Blockchain  # noqa: E402
from integritee.node.chain_spec import ChainSpec, GenesisConfig  # noqa: E402
from integritee.node.runtime import executive  # noqa: E402
from integritee.node.runtime.construct import (  # noqa: E402
    SPEC_VERSION,
    TRANSACTION_VERSION,
    runtime_call,
)
from integritee.node.runtime.context import BlockContext  # noqa: E402
from integritee.node.runtime.executive import ChainParams  # noqa: E402
from integritee.node.runtime.framework import DispatchError  # noqa: E402
from integritee.node.runtime.pallets import balances, system, timestamp  # noqa: E402
from integritee.node.txpool import TxPool  # noqa: E402
from integritee.parentchain.extrinsic import sign_and_encode  # noqa: E402
from integritee.storage.overlay import Overlay  # noqa: E402

UNIT = 10**12
ALICE = Keypair.from_uri("//Alice")
BOB = Keypair.from_uri("//Bob")
CHARLIE = Keypair.from_uri("//Charlie")
DAVE = Keypair.from_uri("//Dave")
EVE = Keypair.from_uri("//Eve")
FERDIE = Keypair.from_uri("//Ferdie")
MRENCLAVE = bytes(range(32))
OTHER_MRENCLAVE = bytes(range(1, 33))
SLOT_MS = 1000


def call(pallet: str, name: str, **args: Any) -> EnumValue:
    return EnumValue(pallet, EnumValue(name, args))


def sudo(inner: EnumValue) -> EnumValue:
    return call("Sudo", "sudo", call=inner)


class Chain:
    """An in-process dev chain with the TEE pallets; one `submit` = one authored block."""

    def __init__(
        self,
        path: Path,
        *,
        allow_skipping: bool = True,
        allow_debug: bool = True,
        trusted_root: bytes | None = None,
        first_slot: int = 0,
    ) -> None:
        accounts = (ALICE, BOB, CHARLIE, DAVE, EVE, FERDIE)
        config = GenesisConfig(
            endowed={k.public_key: 1000 * UNIT for k in accounts},
            sudo_key=ALICE.public_key,
            aura_authorities=[ALICE.public_key],
            grandpa_authorities=[Keypair.from_uri("//Alice", "ed25519").public_key],
        )
        genesis = config.storage()
        state = Overlay(genesis.get)
        teerex_mod.genesis_storage(
            state,
            allow_skipping=allow_skipping,
            allow_debug=allow_debug,
            trusted_root_der=trusted_root,
        )
        genesis.update({k: v for k, v in state.changes().items() if v is not None})
        self.chain = Blockchain.open(path, ChainSpec("Test", "test", "Development", genesis))
        self.params = ChainParams(self.chain.genesis_hash, minimum_period_ms=1)
        self.slot = first_slot

    def close(self) -> None:
        self.chain.close()

    @property
    def state(self) -> Any:
        return self.chain.head_state

    def ctx(self) -> BlockContext:
        return BlockContext(
            Overlay(self.state.get), self.chain.best_number + 1, self.chain.best_hash, self.params
        )

    def submit(self, *txs: tuple[Keypair, EnumValue], slot: int | None = None) -> list[Outcome]:
        """Author one block with these calls (in order); returns the outcome of each."""
        pool = TxPool()
        nonces: dict[bytes, int] = {}
        for signer, c in txs:
            who = signer.public_key
            nonce = nonces.get(who, system.Account.get(self.state, who).nonce)
            nonces[who] = nonce + 1
            raw = sign_and_encode(
                runtime_call().encode(c),
                signer,
                nonce=nonce,
                genesis_hash=self.chain.genesis_hash,
                spec_version=SPEC_VERSION,
                tx_version=TRANSACTION_VERSION,
            )
            valid = executive.validate_transaction(self.ctx(), raw, self.chain.hash_at)
            pool.insert(valid, system.Account.get(self.state, who).nonce)
        self.slot = slot if slot is not None else self.slot + 1
        built = build_block(
            self.chain,
            self.params,
            pool,
            ALICE,
            self.slot,
            self.slot * SLOT_MS,
            deadline=float("inf"),
        )
        assert len(built.included) == len(txs)
        self.chain.commit_block(built.block)
        events = system.Events.get(self.state)
        return [Outcome(events, i + 1) for i in range(len(txs))]

    def ok(self, signer: Keypair, c: EnumValue, **kw: Any) -> Outcome:
        (result,) = self.submit((signer, c), **kw)
        assert result.error is None, result.error
        return result

    def fails(self, signer: Keypair, c: EnumValue, expected: DispatchError, **kw: Any) -> Outcome:
        (result,) = self.submit((signer, c), **kw)
        assert result.error == expected.value, (result.error, expected)
        return result

    def free(self, who: Keypair | bytes) -> int:
        key = who if isinstance(who, bytes) else who.public_key
        return int(system.Account.get(self.state, key).data.free)

    def reserved(self, who: Keypair | bytes) -> int:
        key = who if isinstance(who, bytes) else who.public_key
        return int(system.Account.get(self.state, key).data.reserved)

    def register_skip(self, signer: Keypair, mrenclave: bytes = MRENCLAVE, **kw: Any) -> Outcome:
        return self.ok(
            signer,
            call(
                "Teerex",
                "register_sgx_enclave",
                proof=mrenclave,
                worker_url=b"wss://127.0.0.1:2000",
                attestation_method=EnumValue("Skip", {"proxied": False}),
            ),
            **kw,
        )


class Outcome:
    """The events of one extrinsic of an authored block."""

    def __init__(self, all_events: list[Any], index: int) -> None:
        self.events = [e for e in all_events if e["phase"] == EnumValue("ApplyExtrinsic", index)]
        failed = [e for e in self.events if e["event"].value.name == "ExtrinsicFailed"]
        self.error = failed[0]["event"].value.value["dispatch_error"] if failed else None

    def named(self, pallet: str, name: str) -> list[Any]:
        return [
            e["event"].value.value
            for e in self.events
            if e["event"].name == pallet and e["event"].value.name == name
        ]

    def records(self, pallet: str, name: str) -> list[Any]:
        return [
            e for e in self.events if e["event"].name == pallet and e["event"].value.name == name
        ]


@pytest.fixture
def net(tmp_path: Path) -> Iterator[Chain]:
    c = Chain(tmp_path / "db")
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------
# Teerex


def test_skip_registration_is_stored_and_can_be_switched_off(net: Chain) -> None:
    result = net.register_skip(BOB)
    enclave = teerex_mod.get_sovereign_enclave(net.state, BOB.public_key)
    assert enclave is not None and enclave.name == "Sgx"
    sgx = enclave.value
    assert sgx["mr_enclave"] == MRENCLAVE
    assert sgx["report_data"]["d"] == BOB.public_key + bytes(32)
    assert sgx["mr_signer"] == bytes(32)
    assert sgx["timestamp"] == timestamp.Now.get(net.state) == net.slot * SLOT_MS
    assert sgx["url"] == b"wss://127.0.0.1:2000"
    assert sgx["build_mode"] == EnumValue("Production")
    assert sgx["status"] == EnumValue("Invalid")
    assert sgx["attestation_method"] == EnumValue("Skip", {"proxied": False})
    assert result.named("Teerex", "AddedSgxEnclave") == [
        {
            "registered_by": BOB.public_key,
            "worker_url": b"wss://127.0.0.1:2000",
            "tcb_status": EnumValue("Invalid"),
            "attestation_method": EnumValue("Skip", {"proxied": False}),
        }
    ]

    flags = call(
        "Teerex",
        "set_security_flags",
        allow_skipping_attestation=False,
        sgx_allow_debug_mode=False,
    )
    net.fails(BOB, flags, DispatchError.bad_origin())
    done = net.ok(ALICE, sudo(flags))
    assert done.named("Sudo", "Sudid") == [{"sudo_result": EnumValue("Ok", ())}]
    assert done.named("Teerex", "UpdatedSecurityFlags") == [
        {"allow_skipping_attestation": False, "sgx_allow_debug_mode": False}
    ]
    assert teerex_mod.AllowSkippingAttestation.get(net.state) is False
    assert teerex_mod.SgxAllowDebugMode.get(net.state) is False
    skip = call(
        "Teerex",
        "register_sgx_enclave",
        proof=MRENCLAVE,
        worker_url=None,
        attestation_method=EnumValue("Skip", {"proxied": False}),
    )
    net.fails(CHARLIE, skip, teerex_mod.teerex.err("SkippingAttestationIsNotAllowed"))
    assert teerex_mod.get_sovereign_enclave(net.state, CHARLIE.public_key) is None


def test_short_skip_proof_gives_a_zero_mrenclave_and_proxied_goes_elsewhere(net: Chain) -> None:
    net.register_skip(BOB, mrenclave=b"short")
    enclave = teerex_mod.get_sovereign_enclave(net.state, BOB.public_key)
    assert enclave is not None and enclave.value["mr_enclave"] == bytes(32)
    proxied = call(
        "Teerex",
        "register_sgx_enclave",
        proof=MRENCLAVE,
        worker_url=None,
        attestation_method=EnumValue("Skip", {"proxied": True}),
    )
    net.ok(CHARLIE, proxied)
    assert teerex_mod.get_sovereign_enclave(net.state, CHARLIE.public_key) is None
    entries = list(teerex_mod.ProxiedEnclaves.iter(net.state))
    assert len(entries) == 1
    address = {
        "fingerprint": MRENCLAVE,
        "registrar": CHARLIE.public_key,
        # proxied: no instance key, the signer is the zero-padded report data
        "signer": EnumValue("Opaque", CHARLIE.public_key + bytes(34)),
    }
    assert teerex_mod.ProxiedEnclaves.get(net.state, address) == entries[0][1]
    unregister = call("Teerex", "unregister_proxied_enclave", address=address)
    net.fails(BOB, unregister, teerex_mod.teerex.err("UnregisterActiveEnclaveIsNotAllowed"))
    stale_slot = net.slot + teerex_mod.MAX_ATTESTATION_RENEWAL_PERIOD // SLOT_MS + 2
    done = net.ok(BOB, unregister, slot=stale_slot)
    assert done.named("Teerex", "RemovedProxiedEnclave") == [address]
    assert not list(teerex_mod.ProxiedEnclaves.iter(net.state))


@pytest.mark.parametrize(
    ("proof_len", "url_len", "error"),
    [
        (5000, 256, None),
        (5001, 10, "RaProofIsTooLong"),
        (32, 257, "EnclaveUrlIsTooLong"),
    ],
)
def test_proof_and_url_limits(net: Chain, proof_len: int, url_len: int, error: str | None) -> None:
    c = call(
        "Teerex",
        "register_sgx_enclave",
        proof=MRENCLAVE + bytes(proof_len - 32),
        worker_url=b"u" * url_len,
        attestation_method=EnumValue("Skip", {"proxied": False}),
    )
    if error is None:
        net.ok(BOB, c)
        assert teerex_mod.get_sovereign_enclave(net.state, BOB.public_key) is not None
    else:
        net.fails(BOB, c, teerex_mod.teerex.err(error))
        assert teerex_mod.get_sovereign_enclave(net.state, BOB.public_key) is None


def test_ias_is_rejected(net: Chain) -> None:
    c = call(
        "Teerex",
        "register_sgx_enclave",
        proof=b"\x30" * 100,
        worker_url=None,
        attestation_method=EnumValue("Ias"),
    )
    net.fails(BOB, c, teerex_mod.teerex.err("RemoteAttestationVerificationFailed"))


def test_unregister_only_after_the_renewal_period(net: Chain) -> None:
    net.register_skip(BOB)
    registered_at = timestamp.Now.get(net.state)
    unregister = call("Teerex", "unregister_sovereign_enclave", enclave_signer=BOB.public_key)
    net.fails(CHARLIE, unregister, teerex_mod.teerex.err("UnregisterActiveEnclaveIsNotAllowed"))
    # exactly at the limit the attestation still counts
    limit_slot = (registered_at + teerex_mod.MAX_ATTESTATION_RENEWAL_PERIOD) // SLOT_MS
    net.fails(
        CHARLIE,
        unregister,
        teerex_mod.teerex.err("UnregisterActiveEnclaveIsNotAllowed"),
        slot=limit_slot,
    )
    done = net.ok(CHARLIE, unregister, slot=limit_slot + 1)
    assert done.named("Teerex", "RemovedSovereignEnclave") == [BOB.public_key]
    assert teerex_mod.get_sovereign_enclave(net.state, BOB.public_key) is None
    net.fails(CHARLIE, unregister, teerex_mod.teerex.err("EnclaveIsNotRegistered"))


def test_teerex_error_indices_follow_the_original() -> None:
    errors = [v.name for v in teerex_mod.teerex.errors]
    assert errors[:3] == [
        "EnclaveSignerDecodeError",
        "SenderIsNotAttestedEnclave",
        "RemoteAttestationVerificationFailed",
    ]
    assert errors.index("SkippingAttestationIsNotAllowed") == 11
    assert errors.index("OtherSgxVerifyError") == 14
    assert errors[-1] == "TimestampIsMissing" and len(errors) == 15 + 39
    assert teerex_mod.teerex.err("RaProofIsTooLong").value == EnumValue(
        "Module", {"index": 50, "error": bytes((7, 0, 0, 0))}
    )


# ---------------------------------------------------------------------------------------------
# EnclaveBridge


def test_invoke_emits_indirect_invocation(net: Chain) -> None:
    shard = bytes([7] * 32)
    request = {"shard": shard, "cyphertext": b"\x01" * 384}
    result = net.ok(CHARLIE, call("EnclaveBridge", "invoke", request=request))
    assert result.named("EnclaveBridge", "IndirectInvocationRegistered") == [shard]


def test_shield_funds_moves_funds_to_the_bonding_account(net: Chain) -> None:
    shard = MRENCLAVE
    vault = bridge_mod.bonding_account(shard)
    assert vault == shard
    before = net.free(CHARLIE)
    result = net.ok(
        CHARLIE,
        call(
            "EnclaveBridge",
            "shield_funds",
            shard=shard,
            incognito_account_encrypted=b"\xaa" * 384,
            amount=10 * UNIT,
        ),
    )
    assert net.free(vault) == 10 * UNIT
    assert before - net.free(CHARLIE) > 10 * UNIT  # the amount plus the fee
    assert result.named("EnclaveBridge", "ShieldFunds") == [
        {"shard": shard, "encrypted_beneficiary": b"\xaa" * 384, "amount": 10 * UNIT}
    ]
    assert result.named("Balances", "Transfer") == [
        {"from": CHARLIE.public_key, "to": vault, "amount": 10 * UNIT}
    ]


def _confirm_block(shard: bytes, number: int = 1) -> EnumValue:
    return call(
        "EnclaveBridge",
        "confirm_processed_parentchain_block",
        shard=shard,
        block_hash=bytes([number]) * 32,
        block_number=number,
        trusted_calls_merkle_root=bytes(32),
    )


def test_confirm_processed_parentchain_block_and_shard_status(net: Chain) -> None:
    shard = MRENCLAVE
    net.fails(CHARLIE, _confirm_block(shard), teerex_mod.teerex.err("EnclaveIsNotRegistered"))
    net.register_skip(BOB)
    net.register_skip(DAVE)
    net.register_skip(EVE, mrenclave=OTHER_MRENCLAVE)
    net.fails(EVE, _confirm_block(shard), bridge_mod.enclave_bridge.err("WrongFingerprintForShard"))
    result = net.ok(BOB, _confirm_block(shard, 3))
    assert result.named("EnclaveBridge", "ProcessedParentchainBlock") == [
        {
            "shard": shard,
            "block_hash": bytes([3]) * 32,
            "trusted_calls_merkle_root": bytes(32),
            "block_number": 3,
        }
    ]
    bob_block = net.chain.best_number
    net.ok(DAVE, _confirm_block(shard, 4))
    dave_block = net.chain.best_number
    statuses = bridge_mod.ShardStatus.get(net.state, shard)
    assert statuses == [
        {"signer": BOB.public_key, "fingerprint": MRENCLAVE, "last_activity": bob_block},
        {"signer": DAVE.public_key, "fingerprint": MRENCLAVE, "last_activity": dave_block},
    ]
    assert bridge_mod.primary_validateer(net.state, shard) == BOB.public_key
    # touching again updates the entry in place; the primary stays first
    net.ok(BOB, _confirm_block(shard, 5))
    statuses = bridge_mod.ShardStatus.get(net.state, shard)
    assert [s["signer"] for s in statuses] == [BOB.public_key, DAVE.public_key]
    assert statuses[0]["last_activity"] == net.chain.best_number
    assert bridge_mod.most_recent_shard_update(net.state, shard)["signer"] == BOB.public_key
    # root purges an enclave from the status
    purge = call(
        "EnclaveBridge", "purge_enclave_from_shard_status", shard=shard, subject=BOB.public_key
    )
    net.fails(CHARLIE, purge, DispatchError.bad_origin())
    done = net.ok(ALICE, sudo(purge))
    assert done.named("EnclaveBridge", "PurgedEnclaveFromShardConfig") == [
        {"shard": shard, "subject": BOB.public_key}
    ]
    assert bridge_mod.primary_validateer(net.state, shard) == DAVE.public_key
    missing = call(
        "EnclaveBridge",
        "purge_enclave_from_shard_status",
        shard=bytes(32),
        subject=BOB.public_key,
    )
    done = net.ok(ALICE, sudo(missing))
    assert done.named("Sudo", "Sudid") == [
        {"sudo_result": EnumValue("Err", bridge_mod.enclave_bridge.err("ShardNotFound").value)}
    ]


def test_shard_status_is_bounded(net: Chain) -> None:
    shard = MRENCLAVE
    signers = [Keypair.from_uri(f"//Validateer{i}") for i in range(11)]
    net.submit(
        *[
            (
                ALICE,
                call(
                    "Balances",
                    "transfer_keep_alive",
                    dest=EnumValue("Id", s.public_key),
                    value=UNIT,
                ),
            )
            for s in signers
        ]
    )
    skip = call(
        "Teerex",
        "register_sgx_enclave",
        proof=MRENCLAVE,
        worker_url=None,
        attestation_method=EnumValue("Skip", {"proxied": False}),
    )
    assert all(r.error is None for r in net.submit(*[(s, skip) for s in signers]))
    results = net.submit(*[(s, _confirm_block(shard)) for s in signers])
    assert [r.error for r in results[:10]] == [None] * 10
    assert results[10].error == bridge_mod.enclave_bridge.err("TooManyEnclaves").value
    assert len(bridge_mod.ShardStatus.get(net.state, shard)) == 10


def test_unshield_pays_once_per_call_hash(net: Chain) -> None:
    shard = MRENCLAVE
    vault = bridge_mod.bonding_account(shard)
    net.register_skip(BOB)
    net.register_skip(DAVE)
    net.ok(
        CHARLIE,
        call(
            "EnclaveBridge",
            "shield_funds",
            shard=shard,
            incognito_account_encrypted=b"x",
            amount=50 * UNIT,
        ),
    )
    beneficiary = Keypair.from_uri("//Beneficiary").public_key
    call_hash = bytes([9] * 32)
    unshield = call(
        "EnclaveBridge",
        "unshield_funds",
        shard=shard,
        beneficiary=beneficiary,
        amount=20 * UNIT,
        call_hash=call_hash,
    )
    net.fails(CHARLIE, unshield, teerex_mod.teerex.err("EnclaveIsNotRegistered"))
    first, second = net.submit((BOB, unshield), (DAVE, unshield))
    assert first.error is None and second.error is None
    assert first.named("EnclaveBridge", "UnshieldedFunds") == [
        {"shard": shard, "beneficiary": beneficiary, "amount": 20 * UNIT}
    ]
    assert second.named("EnclaveBridge", "UnshieldedFunds") == []
    net.ok(BOB, unshield)  # a later block changes nothing either
    assert net.free(beneficiary) == 20 * UNIT
    assert net.free(vault) == 30 * UNIT
    assert bridge_mod.ExecutedUnshieldCalls.get(net.state, call_hash) == 3
    # a payout the vault cannot cover fails and is not recorded
    too_much = call(
        "EnclaveBridge",
        "unshield_funds",
        shard=shard,
        beneficiary=beneficiary,
        amount=31 * UNIT,
        call_hash=bytes([10] * 32),
    )
    net.fails(BOB, too_much, DispatchError.token("FundsUnavailable"))
    assert not bridge_mod.ExecutedUnshieldCalls.exists(net.state, bytes([10] * 32))


def test_publish_hash_limits_and_topics(net: Chain) -> None:
    def publish(topics: int, data: int) -> EnumValue:
        return call(
            "EnclaveBridge",
            "publish_hash",
            hash=bytes([1] * 32),
            extra_topics=[bytes([t] * 32) for t in range(topics)],
            data=b"d" * data,
        )

    net.fails(BOB, publish(0, 0), teerex_mod.teerex.err("EnclaveIsNotRegistered"))
    net.register_skip(BOB)
    net.fails(BOB, publish(6, 10), bridge_mod.enclave_bridge.err("TooManyTopics"))
    net.fails(BOB, publish(2, 101), bridge_mod.enclave_bridge.err("DataTooLong"))
    result = net.ok(BOB, publish(5, 100))
    (record,) = result.records("EnclaveBridge", "PublishedHash")
    assert record["event"].value.value == {
        "enclave_fingerprint": MRENCLAVE,
        "hash": bytes([1] * 32),
        "data": b"d" * 100,
    }
    assert record["topics"] == [bytes([t] * 32) for t in range(5)] + [MRENCLAVE]
    # publishing touches the shard named by the enclave's fingerprint
    assert bridge_mod.primary_validateer(net.state, MRENCLAVE) == BOB.public_key


def test_shard_config_upgrade_is_enacted_after_the_delay(net: Chain) -> None:
    shard = MRENCLAVE
    net.register_skip(BOB)
    net.register_skip(EVE, mrenclave=OTHER_MRENCLAVE)
    config = {
        "enclave_fingerprint": OTHER_MRENCLAVE,
        "max_instances": 4,
        "authorities": None,
        "maintenance_mode": False,
    }
    update = call(
        "EnclaveBridge", "update_shard_config", shard=shard, shard_config=config, enactment_delay=3
    )
    net.fails(CHARLIE, update, teerex_mod.teerex.err("EnclaveIsNotRegistered"))
    # no config yet: any registered enclave may create one; it counts at once
    own = dict(config, enclave_fingerprint=MRENCLAVE)
    create = call(
        "EnclaveBridge", "update_shard_config", shard=shard, shard_config=own, enactment_delay=9
    )
    done = net.ok(BOB, create)
    assert done.named("EnclaveBridge", "ShardConfigUpdated") == [shard]
    assert bridge_mod.ShardConfigRegistry.get(net.state, shard) == {
        "active_config": own,
        "pending_upgrade": None,
        "upgrade_at": None,
    }
    net.fails(EVE, update, bridge_mod.enclave_bridge.err("WrongFingerprintForShard"))
    net.ok(BOB, update)
    scheduled = net.chain.best_number + 3
    assert bridge_mod.ShardConfigRegistry.get(net.state, shard) == {
        "active_config": own,
        "pending_upgrade": config,
        "upgrade_at": scheduled,
    }
    while net.chain.best_number + 1 < scheduled:
        net.ok(BOB, _confirm_block(shard))
    # the block at `upgrade_at` enacts it: the old enclave is out, the new one in
    net.fails(BOB, _confirm_block(shard), bridge_mod.enclave_bridge.err("WrongFingerprintForShard"))
    net.ok(EVE, _confirm_block(shard))
    assert bridge_mod.ShardConfigRegistry.get(net.state, shard) == {
        "active_config": config,
        "pending_upgrade": None,
        "upgrade_at": None,
    }
    # root may update without being an enclave
    root_update = call(
        "EnclaveBridge", "update_shard_config", shard=shard, shard_config=own, enactment_delay=0
    )
    net.ok(ALICE, sudo(root_update))
    assert bridge_mod.ShardConfigRegistry.get(net.state, shard)["pending_upgrade"] == own


# ---------------------------------------------------------------------------------------------
# Sidechain


def _confirmation(number: int, tag: int) -> dict[str, Any]:
    return {"block_number": number, "block_header_hash": bytes([tag]) * 32}


def _confirm_sidechain(ancestor: dict[str, Any] | None, candidate: dict[str, Any]) -> EnumValue:
    return call(
        "Sidechain",
        "confirm_imported_sidechain_block",
        shard=MRENCLAVE,
        latest_finalized_ancestor=ancestor,
        finalization_candidate=candidate,
    )


def test_sidechain_confirmation_rules(net: Chain) -> None:
    err = sidechain_mod.sidechain.err
    net.fails(
        CHARLIE,
        _confirm_sidechain(None, _confirmation(1, 1)),
        teerex_mod.teerex.err("EnclaveIsNotRegistered"),
    )
    net.register_skip(BOB)
    net.register_skip(DAVE)
    net.register_skip(EVE, mrenclave=OTHER_MRENCLAVE)
    net.fails(
        EVE,
        _confirm_sidechain(None, _confirmation(1, 1)),
        bridge_mod.enclave_bridge.err("WrongFingerprintForShard"),
    )
    first = net.ok(BOB, _confirm_sidechain(None, _confirmation(1, 1)))
    assert first.named("Sidechain", "FinalizedSidechainBlock") == [
        {
            "shard": MRENCLAVE,
            "block_number": 1,
            "block_header_hash": bytes([1]) * 32,
            "validateer": BOB.public_key,
        }
    ]
    assert sidechain_mod.latest_confirmation(net.state, MRENCLAVE) == _confirmation(1, 1)
    net.fails(BOB, _confirm_sidechain(None, _confirmation(2, 2)), err("AncestorMissing"))
    net.fails(
        BOB,
        _confirm_sidechain(_confirmation(1, 1), _confirmation(1, 2)),
        err("FinalizationCandidateIsOutdated"),
    )
    net.fails(
        BOB,
        _confirm_sidechain(_confirmation(0, 1), _confirmation(2, 2)),
        err("AncestorNumberMismatch"),
    )
    net.fails(
        BOB,
        _confirm_sidechain(_confirmation(1, 9), _confirmation(2, 2)),
        err("AncestorHashMismatch"),
    )
    # a non-primary validateer's confirmation is accepted but does not count
    ignored = net.ok(DAVE, _confirm_sidechain(_confirmation(1, 1), _confirmation(5, 5)))
    assert ignored.named("Sidechain", "FinalizedSidechainBlock") == []
    assert sidechain_mod.latest_confirmation(net.state, MRENCLAVE) == _confirmation(1, 1)
    assert [s["signer"] for s in bridge_mod.ShardStatus.get(net.state, MRENCLAVE)] == [
        BOB.public_key,
        DAVE.public_key,
    ]
    net.ok(BOB, _confirm_sidechain(_confirmation(1, 1), _confirmation(4, 4)))
    assert sidechain_mod.latest_confirmation(net.state, MRENCLAVE) == _confirmation(4, 4)


# ---------------------------------------------------------------------------------------------
# Proxy


def _transfer(dest: bytes, value: int) -> EnumValue:
    return call("Balances", "transfer_keep_alive", dest=EnumValue("Id", dest), value=value)


def _proxy(real: bytes, c: EnumValue, force: str | None = None) -> EnumValue:
    return call(
        "Proxy",
        "proxy",
        real=EnumValue("Id", real),
        force_proxy_type=None if force is None else EnumValue(force),
        call=c,
    )


def _add_proxy(delegate: Keypair, kind: str, delay: int = 0) -> EnumValue:
    return call(
        "Proxy",
        "add_proxy",
        delegate=EnumValue("Id", delegate.public_key),
        proxy_type=EnumValue(kind),
        delay=delay,
    )


def test_proxy_transfers_from_the_real_account(net: Chain) -> None:
    vault = Keypair.from_uri("//ShardVault")
    net.ok(ALICE, _transfer(vault.public_key, 100 * UNIT))
    added = net.ok(vault, _add_proxy(BOB, "Any"))
    assert added.named("Proxy", "ProxyAdded") == [
        {
            "delegator": vault.public_key,
            "delegatee": BOB.public_key,
            "proxy_type": EnumValue("Any"),
            "delay": 0,
        }
    ]
    assert net.reserved(vault) == proxy_mod.proxy_deposit(1)
    net.ok(vault, _add_proxy(CHARLIE, "NonTransfer"))
    assert net.reserved(vault) == proxy_mod.proxy_deposit(2)
    defs, deposit = proxy_mod.Proxies.get(net.state, vault.public_key)
    assert deposit == proxy_mod.proxy_deposit(2)
    assert sorted(bytes(d["delegate"]) for d in defs) == [
        bytes(d["delegate"]) for d in defs
    ]  # kept in ProxyDefinition order
    net.fails(vault, _add_proxy(BOB, "Any"), proxy_mod.proxy.err("Duplicate"))
    net.fails(vault, _add_proxy(vault, "Any"), proxy_mod.proxy.err("NoSelfProxy"))

    beneficiary = Keypair.from_uri("//Beneficiary").public_key
    before = net.free(vault)
    paid = net.ok(BOB, _proxy(vault.public_key, _transfer(beneficiary, 5 * UNIT)))
    assert paid.named("Proxy", "ProxyExecuted") == [{"result": EnumValue("Ok", ())}]
    assert net.free(beneficiary) == 5 * UNIT
    assert net.free(vault) == before - 5 * UNIT  # the proxy paid the fee

    # NonTransfer may not move funds: the call is filtered, the proxy call itself succeeds
    filtered = net.ok(CHARLIE, _proxy(vault.public_key, _transfer(beneficiary, UNIT)))
    assert filtered.named("Proxy", "ProxyExecuted") == [
        {"result": EnumValue("Err", system.system.err("CallFiltered").value)}
    ]
    assert net.free(beneficiary) == 5 * UNIT
    # ... but may remark as the vault
    remark = call("System", "remark_with_event", remark=b"hi")
    done = net.ok(CHARLIE, _proxy(vault.public_key, remark))
    assert done.named("System", "Remarked")[0]["sender"] == vault.public_key
    # and may not escalate by adding an Any proxy
    escalate = net.ok(CHARLIE, _proxy(vault.public_key, _add_proxy(DAVE, "Any")))
    assert escalate.named("Proxy", "ProxyExecuted")[0]["result"].name == "Err"
    # a failing inner call is rolled back and reported
    too_much = net.ok(BOB, _proxy(vault.public_key, _transfer(beneficiary, 10_000 * UNIT)))
    assert too_much.named("Proxy", "ProxyExecuted") == [
        {"result": EnumValue("Err", DispatchError.token("FundsUnavailable").value)}
    ]

    net.fails(
        DAVE,
        _proxy(vault.public_key, _transfer(DAVE.public_key, UNIT)),
        proxy_mod.proxy.err("NotProxy"),
    )
    net.fails(
        BOB,
        _proxy(vault.public_key, _transfer(beneficiary, UNIT), force="NonTransfer"),
        proxy_mod.proxy.err("NotProxy"),
    )
    removed = net.ok(
        vault,
        call(
            "Proxy",
            "remove_proxy",
            delegate=EnumValue("Id", BOB.public_key),
            proxy_type=EnumValue("Any"),
            delay=0,
        ),
    )
    assert removed.named("Proxy", "ProxyRemoved")[0]["delegatee"] == BOB.public_key
    assert net.reserved(vault) == proxy_mod.proxy_deposit(1)
    net.fails(
        BOB, _proxy(vault.public_key, _transfer(beneficiary, UNIT)), proxy_mod.proxy.err("NotProxy")
    )
    net.ok(vault, call("Proxy", "remove_proxies"))
    assert net.reserved(vault) == 0
    assert not proxy_mod.Proxies.exists(net.state, vault.public_key)


def test_add_proxy_needs_the_deposit(net: Chain) -> None:
    poor = Keypair.from_uri("//Poor")
    net.ok(ALICE, _transfer(poor.public_key, UNIT))
    net.fails(poor, _add_proxy(BOB, "Any"), balances.balances.err("InsufficientBalance"))
    assert not proxy_mod.Proxies.exists(net.state, poor.public_key)


def test_delayed_proxy_needs_an_announcement(net: Chain) -> None:
    vault = Keypair.from_uri("//DelayedVault")
    net.ok(ALICE, _transfer(vault.public_key, 100 * UNIT))
    net.ok(vault, _add_proxy(BOB, "Any", delay=2))
    pay = _transfer(EVE.public_key, UNIT)
    net.fails(BOB, _proxy(vault.public_key, pay), proxy_mod.proxy.err("Unannounced"))
    call_hash = proxy_mod._call_hash(pay)
    net.ok(
        BOB, call("Proxy", "announce", real=EnumValue("Id", vault.public_key), call_hash=call_hash)
    )
    assert net.reserved(BOB) > 0
    announced = call(
        "Proxy",
        "proxy_announced",
        delegate=EnumValue("Id", BOB.public_key),
        real=EnumValue("Id", vault.public_key),
        force_proxy_type=None,
        call=pay,
    )
    net.fails(CHARLIE, announced, proxy_mod.proxy.err("Unannounced"))  # too early
    eve_before = net.free(EVE)
    result = net.ok(CHARLIE, announced)
    assert result.named("Proxy", "ProxyExecuted") == [{"result": EnumValue("Ok", ())}]
    assert net.free(EVE) == eve_before + UNIT
    assert net.reserved(BOB) == 0
    assert not proxy_mod.Announcements.exists(net.state, BOB.public_key)


def test_pure_proxy_roundtrip(net: Chain) -> None:
    created = net.ok(
        BOB, call("Proxy", "create_pure", proxy_type=EnumValue("Any"), delay=0, index=0)
    )
    (event,) = created.named("Proxy", "PureCreated")
    pure = event["pure"]
    height = net.chain.best_number
    assert pure == proxy_mod.pure_account(BOB.public_key, EnumValue("Any"), 0, height, 1)
    assert net.reserved(BOB) == proxy_mod.PROXY_DEPOSIT_BASE + proxy_mod.PROXY_DEPOSIT_FACTOR
    net.ok(BOB, _transfer(pure, 10 * UNIT))
    net.ok(BOB, _proxy(pure, _transfer(EVE.public_key, UNIT)))
    assert net.free(pure) == 9 * UNIT
    kill = call(
        "Proxy",
        "kill_pure",
        spawner=EnumValue("Id", BOB.public_key),
        proxy_type=EnumValue("Any"),
        index=0,
        height=height,
        ext_index=1,
    )
    done = net.ok(BOB, _proxy(pure, kill))
    assert done.named("Proxy", "ProxyExecuted") == [{"result": EnumValue("Ok", ())}]
    assert net.reserved(BOB) == 0
    assert not proxy_mod.Proxies.exists(net.state, pure)


def test_proxy_type_filter_rules() -> None:
    transfer = _transfer(EVE.public_key, 1)
    assert proxy_mod.type_allows("Any", transfer)
    assert not proxy_mod.type_allows("NonTransfer", transfer)
    assert not proxy_mod.type_allows("NonTransfer", call("Teerex", "set_security_flags"))
    assert proxy_mod.type_allows("NonTransfer", call("System", "remark", remark=b""))
    assert not proxy_mod.type_allows("Governance", call("System", "remark", remark=b""))
    assert proxy_mod.type_allows("CancelProxy", call("Proxy", "reject_announcement"))
    assert not proxy_mod.type_allows("CancelProxy", call("Proxy", "announce"))
    assert proxy_mod.is_superset("Any", "NonTransfer")
    assert proxy_mod.is_superset("NonTransfer", "CancelProxy")
    assert not proxy_mod.is_superset("NonTransfer", "Any")
    assert not proxy_mod.is_superset("Governance", "CancelProxy")


# ---------------------------------------------------------------------------------------------
# Metadata: the runtime with the TEE pallets still describes itself to a real client


@pytest.fixture(scope="module")
def client() -> tuple[RuntimeConfigurationObject, Any]:
    rc = RuntimeConfigurationObject(ss58_format=42)
    rc.update_type_registry(load_type_registry_preset("core"))
    m = rc.create_scale_object("MetadataVersioned", data=ScaleBytes(construct.metadata_bytes()))
    m.decode(check_remaining=True)
    rc.add_portable_registry(m)
    return rc, m


def test_metadata_lists_the_tee_pallets(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    _rc, m = client
    pallets = {p["name"]: p for p in m.value[1]["V14"]["pallets"]}
    assert {n: pallets[n]["index"] for n in ("Proxy", "Teerex", "Sidechain", "EnclaveBridge")} == {
        "Proxy": 7,
        "Teerex": 50,
        "Sidechain": 53,
        "EnclaveBridge": 54,
    }
    storage = {e["name"] for e in pallets["Teerex"]["storage"]["entries"]}
    assert {"SovereignEnclaves", "ProxiedEnclaves", "SgxTcbInfo", "AllowSkippingAttestation"} <= (
        storage
    )
    constants = {c["name"]: c for c in pallets["Teerex"]["constants"]}
    assert set(constants) == {"MomentsPerDay", "MaxAttestationRenewalPeriod"}
    bridge_storage = [e["name"] for e in pallets["EnclaveBridge"]["storage"]["entries"]]
    assert bridge_storage == ["ShardStatus", "ShardConfigRegistry", "ExecutedUnshieldCalls"]


def test_tee_calls_and_events_match_scalecodec(
    client: tuple[RuntimeConfigurationObject, Any],
) -> None:
    rc, m = client
    ours = runtime_call().encode(
        call(
            "Teerex",
            "register_sgx_enclave",
            proof=MRENCLAVE,
            worker_url=b"wss://x",
            attestation_method=EnumValue("Dcap", {"proxied": False}),
        )
    )
    theirs = rc.create_scale_object("Call", metadata=m)
    theirs.encode(
        {
            "call_module": "Teerex",
            "call_function": "register_sgx_enclave",
            "call_args": {
                "proof": "0x" + MRENCLAVE.hex(),
                "worker_url": "0x" + b"wss://x".hex(),
                "attestation_method": {"Dcap": {"proxied": False}},
            },
        }
    )
    assert bytes(theirs.data.data) == ours
    assert ours[:2] == bytes((50, 0))
    nested = runtime_call().encode(
        _proxy(
            BOB.public_key,
            call(
                "Sidechain",
                "confirm_imported_sidechain_block",
                shard=MRENCLAVE,
                latest_finalized_ancestor=_confirmation(1, 1),
                finalization_candidate=_confirmation(2, 2),
            ),
        )
    )
    decoded = rc.create_scale_object("Call", data=ScaleBytes(nested), metadata=m)
    value = decoded.decode(check_remaining=True)
    assert value["call_module"] == "Proxy" and value["call_function"] == "proxy"
    args = {a["name"]: a["value"] for a in value["call_args"]}
    inner = args["call"]
    assert inner["call_module"] == "Sidechain"
    inner_args = {a["name"]: a["value"] for a in inner["call_args"]}
    assert inner_args["finalization_candidate"]["block_number"] == 2
    assert inner_args["latest_finalized_ancestor"]["block_header_hash"] == "0x" + "01" * 32
    # a stored enclave and a shard status decode with the metadata's own types
    enclave = teerex_mod.SovereignEnclaves.value.encode(
        teerex_mod.new_sgx_enclave(
            report_data=bytes(64),
            mr_enclave=MRENCLAVE,
            mr_signer=bytes(32),
            timestamp=5,
            build_mode="Debug",
            status="Ok",
            attestation_method=EnumValue("Skip", {"proxied": False}),
            url=b"u",
        )
    )
    entry = next(
        e
        for p in m.value[1]["V14"]["pallets"]
        if p["name"] == "Teerex"
        for e in p["storage"]["entries"]
        if e["name"] == "SovereignEnclaves"
    )
    type_id = entry["type"]["Map"]["value"]
    obj = rc.create_scale_object(f"scale_info::{type_id}", data=ScaleBytes(enclave))
    sgx = obj.decode(check_remaining=True)["Sgx"]
    assert sgx["mr_enclave"] == "0x" + MRENCLAVE.hex()
    assert sgx["build_mode"] == "Debug" and sgx["timestamp"] == 5


# ---------------------------------------------------------------------------------------------
# Genesis helper


def test_genesis_storage_sets_flags_and_root() -> None:
    state = Overlay(lambda _k: None)
    teerex_mod.genesis_storage(state, allow_skipping=True, allow_debug=False, trusted_root_der=b"r")
    assert teerex_mod.AllowSkippingAttestation.get(state) is True
    assert teerex_mod.SgxAllowDebugMode.get(state) is False
    assert teerex_mod.SgxTrustedRoot.get(state) == b"r"
    fresh = Overlay(lambda _k: None)
    assert teerex_mod.AllowSkippingAttestation.get(fresh) is False
    assert teerex_mod.SgxTrustedRoot.get(fresh) is None


# ---------------------------------------------------------------------------------------------
# DCAP with the simulated quoting enclave and the dev PKI

# DCAP collateral and certificates are checked against the chain's time: use a real one.
NOV_2023_SLOT = 1_700_000_000_000 // SLOT_MS
DEV_MRSIGNER = bytes([5] * 32)


def _der(cert: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(cert.public_bytes(Encoding.DER))


@pytest.fixture(scope="module")
def sim() -> Any:
    from integritee.attestation import SimDcapProvider

    return SimDcapProvider(MRENCLAVE, DEV_MRSIGNER)


@pytest.fixture
def dcap_net(tmp_path: Path) -> Iterator[Chain]:
    from integritee.attestation import dev_root_certificate

    c = Chain(
        tmp_path / "db",
        allow_skipping=False,
        allow_debug=False,
        trusted_root=_der(dev_root_certificate()),
        first_slot=NOV_2023_SLOT,
    )
    yield c
    c.close()


def _register_qe(collateral: tuple[bytes, bytes, bytes]) -> EnumValue:
    identity, signature, chain = collateral
    return call(
        "Teerex",
        "register_quoting_enclave",
        enclave_identity=identity,
        signature=signature,
        certificate_chain=chain,
    )


def _register_tcb(collateral: tuple[bytes, bytes, bytes]) -> EnumValue:
    body, signature, chain = collateral
    return call(
        "Teerex", "register_tcb_info", tcb_info=body, signature=signature, certificate_chain=chain
    )


def _register_dcap(quote: bytes, proxied: bool = False) -> EnumValue:
    return call(
        "Teerex",
        "register_sgx_enclave",
        proof=quote,
        worker_url=b"wss://enclave:2000",
        attestation_method=EnumValue("Dcap", {"proxied": proxied}),
    )


def _with_collateral(net: Chain, sim: Any) -> None:
    net.ok(CHARLIE, _register_qe(sim.qe_identity_collateral()))
    net.ok(CHARLIE, _register_tcb(sim.tcb_info_collateral()))


def test_dcap_collateral_registration(dcap_net: Chain, sim: Any) -> None:
    from integritee.attestation.providers import DEV_FMSPC, DEV_QE_MRSIGNER

    result = dcap_net.ok(CHARLIE, _register_qe(sim.qe_identity_collateral()))
    (event,) = result.named("Teerex", "SgxQuotingEnclaveRegistered")
    qe = teerex_mod.SgxQuotingEnclaveRegistry.get(dcap_net.state)
    assert event["quoting_enclave"] == qe
    assert qe["mrsigner"] == DEV_QE_MRSIGNER and qe["isvprodid"] == 1
    assert qe["tcb"] == [{"isvsvn": 8}, {"isvsvn": 0}]
    assert qe["next_update"] == 4_102_358_400_000  # 2099-12-31, in ms as the original stores it

    result = dcap_net.ok(CHARLIE, _register_tcb(sim.tcb_info_collateral()))
    (event,) = result.named("Teerex", "SgxTcbInfoRegistered")
    assert event["fmspc"] == DEV_FMSPC
    on_chain = teerex_mod.SgxTcbInfo.get(dcap_net.state, DEV_FMSPC)
    assert event["on_chain_info"] == on_chain
    assert on_chain["tcb_levels"][0] == {
        "cpusvn": bytes(sim.tcb_components),
        "pcesvn": sim.pcesvn,
        "tcb_status": EnumValue("UpToDate"),
    }

    identity, signature, chain = sim.qe_identity_collateral()
    forged = _register_qe((identity.replace(b'"isvprodid":1', b'"isvprodid":2'), signature, chain))
    dcap_net.fails(CHARLIE, forged, teerex_mod.teerex.err("EnclaveIdentitySignatureIsInvalid"))
    body, signature, chain = sim.tcb_info_collateral()
    dcap_net.fails(
        CHARLIE,
        _register_tcb((body, bytes(64), chain)),
        teerex_mod.teerex.err("TcbInfoIsInvalid"),
    )
    from integritee.attestation import DevPki, SimDcapProvider

    foreign = SimDcapProvider(MRENCLAVE, DEV_MRSIGNER, pki=DevPki(b"another root"))
    dcap_net.fails(
        CHARLIE,
        _register_qe(foreign.qe_identity_collateral()),
        teerex_mod.teerex.err("CertificateChainIsInvalid"),
    )
    # the collateral only counts while current: registering it after nextUpdate fails
    late_slot = 4_102_444_800_000 // SLOT_MS
    dcap_net.fails(
        CHARLIE,
        _register_tcb(sim.tcb_info_collateral()),
        teerex_mod.teerex.err("CollateralIsInvalid"),
        slot=late_slot,
    )


def test_dcap_registration_binds_the_sender(dcap_net: Chain, sim: Any) -> None:
    quote = sim.quote(BOB.public_key)
    assert len(quote) <= teerex_mod.SGX_RA_PROOF_MAX_LEN
    dcap_net.fails(BOB, _register_dcap(quote), teerex_mod.teerex.err("QeHasRejectedEnclave"))
    dcap_net.ok(CHARLIE, _register_qe(sim.qe_identity_collateral()))
    dcap_net.fails(BOB, _register_dcap(quote), teerex_mod.teerex.err("MissingTcbInfoForFmspc"))
    dcap_net.ok(CHARLIE, _register_tcb(sim.tcb_info_collateral()))

    result = dcap_net.ok(BOB, _register_dcap(quote))
    assert result.named("Teerex", "AddedSgxEnclave") == [
        {
            "registered_by": BOB.public_key,
            "worker_url": b"wss://enclave:2000",
            "tcb_status": EnumValue("Ok"),
            "attestation_method": EnumValue("Dcap", {"proxied": False}),
        }
    ]
    enclave = teerex_mod.get_sovereign_enclave(dcap_net.state, BOB.public_key)
    assert enclave is not None
    sgx = enclave.value
    assert sgx["mr_enclave"] == MRENCLAVE and sgx["mr_signer"] == DEV_MRSIGNER
    assert sgx["report_data"]["d"] == BOB.public_key + bytes(32)
    assert sgx["build_mode"] == EnumValue("Production")
    assert sgx["timestamp"] == timestamp.Now.get(dcap_net.state)

    # the same quote sent by someone else is not theirs to register
    dcap_net.fails(
        CHARLIE, _register_dcap(quote), teerex_mod.teerex.err("SenderIsNotAttestedEnclave")
    )
    # ... unless it is a proxied registration, stored under its instance address
    dcap_net.ok(CHARLIE, _register_dcap(quote, proxied=True))
    address = {
        "fingerprint": MRENCLAVE,
        "registrar": CHARLIE.public_key,
        "signer": EnumValue("Opaque", BOB.public_key + bytes(34)),
    }
    assert teerex_mod.ProxiedEnclaves.get(dcap_net.state, address) is not None
    # a tampered quote fails its signature check
    tampered = bytearray(quote)
    tampered[48 + 64] ^= 1  # inside the ISV report body (mrenclave)
    dcap_net.fails(
        BOB,
        _register_dcap(bytes(tampered)),
        teerex_mod.teerex.err("IsvEnclaveReportSignatureIsInvalid"),
    )
    dcap_net.fails(
        BOB, _register_dcap(b"\x03" * 100), teerex_mod.teerex.err("DcapQuoteDecodingError")
    )


def test_dcap_debug_enclaves_need_the_debug_flag(dcap_net: Chain, sim: Any) -> None:
    from integritee.attestation import SimDcapProvider

    _with_collateral(dcap_net, sim)
    debug = SimDcapProvider(MRENCLAVE, DEV_MRSIGNER, debug=True)
    quote = debug.quote(DAVE.public_key)
    dcap_net.fails(DAVE, _register_dcap(quote), teerex_mod.teerex.err("SgxModeIsNotAllowed"))
    flags = call(
        "Teerex",
        "set_security_flags",
        allow_skipping_attestation=False,
        sgx_allow_debug_mode=True,
    )
    dcap_net.ok(ALICE, sudo(flags))
    dcap_net.ok(DAVE, _register_dcap(quote))
    enclave = teerex_mod.get_sovereign_enclave(dcap_net.state, DAVE.public_key)
    assert enclave is not None and enclave.value["build_mode"] == EnumValue("Debug")


def test_dcap_status_follows_the_registered_tcb_info(dcap_net: Chain, sim: Any) -> None:
    from integritee.attestation import SimDcapProvider

    _with_collateral(dcap_net, sim)
    outdated = SimDcapProvider(MRENCLAVE, DEV_MRSIGNER, tcb_status="OutOfDate")
    dcap_net.ok(CHARLIE, _register_tcb(outdated.tcb_info_collateral()))
    dcap_net.ok(EVE, _register_dcap(sim.quote(EVE.public_key)))
    enclave = teerex_mod.get_sovereign_enclave(dcap_net.state, EVE.public_key)
    assert enclave is not None and enclave.value["status"] == EnumValue("GroupOutOfDate")
    revoked = SimDcapProvider(MRENCLAVE, DEV_MRSIGNER, tcb_status="Revoked")
    dcap_net.ok(CHARLIE, _register_tcb(revoked.tcb_info_collateral()))
    dcap_net.fails(
        FERDIE,
        _register_dcap(sim.quote(FERDIE.public_key)),
        teerex_mod.teerex.err("TcbInfoIsOutdated"),
    )


def test_dcap_needs_the_trusted_root(tmp_path: Path, sim: Any) -> None:
    # without a root in genesis Teerex trusts Intel's: dev collateral is rejected
    net = Chain(tmp_path / "db", first_slot=NOV_2023_SLOT)
    try:
        net.fails(
            CHARLIE,
            _register_qe(sim.qe_identity_collateral()),
            teerex_mod.teerex.err("CertificateChainIsInvalid"),
        )
    finally:
        net.close()
