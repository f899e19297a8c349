"""The TEE pallets of a real dev node through py-substrate-interface 1.8 (an unmodified client).

Every call is composed from the node's metadata, signed, submitted and waited for; its events
and dispatch errors are decoded by the client. The DCAP path uses sim-dcap collateral and quotes
(the dev chain trusts the sim-dcap root), with ed25519 enclave keys as real enclaves have:
report_data[0..32] of the quote must be the sender. One node serves the module; tests that
change the Teerex security flags restore them, and every test uses its own accounts, shards
and MRENCLAVEs so that none depends on another's order.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scalecodec.utils.ss58 import ss58_decode
from substrateinterface import Keypair, KeypairType, SubstrateInterface

from integritee.attestation import DevPki, SimDcapProvider, split_tcb_info_document
from procs import NodeProcess

TEER = 10**12
FUNDING = 1_000 * TEER  # covers fees and the 20.04 TEER proxy deposit many times over
ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")
CHARLIE = Keypair.create_from_uri("//Charlie")
FIXTURES = Path("/work/shared/fixtures/sgx-dcap")
MRSIGNER = hashlib.sha256(b"test mrsigner").digest()


def measurement(tag: str) -> bytes:
    return hashlib.sha256(b"test mrenclave " + tag.encode()).digest()


def ed25519_key(tag: str) -> Keypair:
    # substrate-interface derives no ed25519 paths: a seed per tag gives distinct enclave keys.
    seed = hashlib.sha256(b"test enclave key " + tag.encode()).hexdigest()
    return Keypair.create_from_seed("0x" + seed, crypto_type=KeypairType.ED25519)


def h(data: bytes) -> str:
    return "0x" + data.hex()


@pytest.fixture(scope="module")
def substrate(dev_node: NodeProcess) -> Iterator[SubstrateInterface]:
    client = SubstrateInterface(url=dev_node.ws_url)
    try:
        yield client
    finally:
        client.close()


def submit(
    substrate: SubstrateInterface, signer: Keypair, pallet: str, fn: str, **args: Any
) -> Any:
    call = substrate.compose_call(pallet, fn, args)
    extrinsic = substrate.create_signed_extrinsic(call, signer)
    return substrate.submit_extrinsic(extrinsic, wait_for_inclusion=True)


def ok(receipt: Any) -> Any:
    assert receipt.is_success, receipt.error_message
    return receipt


def failed_with(receipt: Any, name: str) -> None:
    assert not receipt.is_success
    assert receipt.error_message["name"] == name, receipt.error_message


def events(receipt: Any, pallet: str, name: str) -> list[Any]:
    return [
        e.value["attributes"]
        for e in receipt.triggered_events
        if e.value["module_id"] == pallet and e.value["event_id"] == name
    ]


def account_hex(address: str) -> str:
    return "0x" + ss58_decode(address)


def free(substrate: SubstrateInterface, account: str) -> int:
    return int(substrate.query("System", "Account", [account]).value["data"]["free"])


def fund(substrate: SubstrateInterface, *who: Keypair) -> None:
    # One extrinsic per account; all are waited for, so a later call never races its funding.
    for kp in who:
        ok(
            submit(
                substrate,
                ALICE,
                "Balances",
                "transfer_keep_alive",
                dest=kp.ss58_address,
                value=FUNDING,
            )
        )


def sudo(substrate: SubstrateInterface, pallet: str, fn: str, **args: Any) -> Any:
    inner = substrate.compose_call(pallet, fn, args)
    receipt = ok(submit(substrate, ALICE, "Sudo", "sudo", call=inner))
    assert events(receipt, "Sudo", "Sudid")[0]["sudo_result"] == {"Ok": ()}
    return receipt


def set_flags(substrate: SubstrateInterface, allow_skipping: bool, allow_debug: bool) -> None:
    receipt = sudo(
        substrate,
        "Teerex",
        "set_security_flags",
        allow_skipping_attestation=allow_skipping,
        sgx_allow_debug_mode=allow_debug,
    )
    assert events(receipt, "Teerex", "UpdatedSecurityFlags") == [
        {"allow_skipping_attestation": allow_skipping, "sgx_allow_debug_mode": allow_debug}
    ]


def register_dcap(substrate: SubstrateInterface, signer: Keypair, quote: bytes, url: str) -> Any:
    return submit(
        substrate,
        signer,
        "Teerex",
        "register_sgx_enclave",
        proof=h(quote),
        worker_url=h(url.encode()),
        attestation_method={"Dcap": {"proxied": False}},
    )


@pytest.fixture(scope="module")
def collateral(substrate: SubstrateInterface) -> dict[str, Any]:
    """The sim-dcap QE identity and TCB info, registered once for the module's DCAP tests."""
    sim = SimDcapProvider(measurement("collateral"), MRSIGNER)
    body, signature, chain = sim.qe_identity_collateral()
    qe = submit(
        substrate,
        BOB,
        "Teerex",
        "register_quoting_enclave",
        enclave_identity=h(body),
        signature=h(signature),
        certificate_chain=h(chain),
    )
    body, signature, chain = sim.tcb_info_collateral()
    tcb = submit(
        substrate,
        BOB,
        "Teerex",
        "register_tcb_info",
        tcb_info=h(body),
        signature=h(signature),
        certificate_chain=h(chain),
    )
    return {"sim": sim, "qe": qe, "tcb": tcb}


@pytest.fixture(scope="module")
def enclave(substrate: SubstrateInterface, collateral: dict[str, Any]) -> dict[str, Any]:
    """A DCAP-registered enclave (ed25519 key) whose default shard is its MRENCLAVE."""
    key = ed25519_key("primary")
    fund(substrate, key)
    mrenclave = measurement("primary")
    quote = SimDcapProvider(mrenclave, MRSIGNER).quote(key.public_key)
    receipt = ok(register_dcap(substrate, key, quote, "wss://127.0.0.1:2000"))
    return {"key": key, "shard": mrenclave, "quote": quote, "receipt": receipt}


def test_collateral_registration_events(
    substrate: SubstrateInterface, collateral: dict[str, Any]
) -> None:
    sim = collateral["sim"]
    qe = events(ok(collateral["qe"]), "Teerex", "SgxQuotingEnclaveRegistered")
    assert len(qe) == 1
    quoting_enclave = qe[0]["quoting_enclave"]
    assert quoting_enclave["mrsigner"] == h(bytes.fromhex(sim.qe_identity_body()["mrsigner"]))
    assert quoting_enclave["isvprodid"] == 1
    assert quoting_enclave["tcb"] == [{"isvsvn": 8}, {"isvsvn": 0}]
    assert quoting_enclave["issue_date"] == 1577836800000  # 2020-01-01, in ms as the original
    tcb = events(ok(collateral["tcb"]), "Teerex", "SgxTcbInfoRegistered")
    assert len(tcb) == 1
    assert tcb[0]["fmspc"] == h(sim.fmspc)
    levels = tcb[0]["on_chain_info"]["tcb_levels"]
    assert levels[0] == {
        "cpusvn": h(bytes(sim.tcb_components)),
        "pcesvn": sim.pcesvn,
        "tcb_status": "UpToDate",
    }
    assert levels[1]["tcb_status"] == "OutOfDate"
    stored = substrate.query("Teerex", "SgxTcbInfo", [h(sim.fmspc)]).value
    assert stored == tcb[0]["on_chain_info"]
    assert substrate.query("Teerex", "SgxQuotingEnclaveRegistry").value == quoting_enclave


def test_real_intel_collateral_is_rejected_by_the_dev_root(substrate: SubstrateInterface) -> None:
    body, signature = split_tcb_info_document((FIXTURES / "tcb_info.json").read_bytes())
    chain = (FIXTURES / "tcb_info_issuer_chain.pem").read_bytes()
    receipt = submit(
        substrate,
        BOB,
        "Teerex",
        "register_tcb_info",
        tcb_info=h(body),
        signature=h(signature),
        certificate_chain=h(chain),
    )
    failed_with(receipt, "CertificateChainIsInvalid")
    assert substrate.query("Teerex", "SgxTcbInfo", ["0x00906ea10000"]).value is None


def test_dcap_registration_binds_the_sender(
    substrate: SubstrateInterface, enclave: dict[str, Any]
) -> None:
    key = enclave["key"]
    added = events(enclave["receipt"], "Teerex", "AddedSgxEnclave")
    assert added == [
        {
            "registered_by": substrate.ss58_encode(key.public_key),
            "worker_url": "wss://127.0.0.1:2000",
            "tcb_status": "Ok",
            "attestation_method": {"Dcap": {"proxied": False}},
        }
    ]
    stored = substrate.query("Teerex", "SovereignEnclaves", [key.ss58_address]).value["Sgx"]
    assert stored["mr_enclave"] == h(enclave["shard"])
    assert stored["mr_signer"] == h(MRSIGNER)
    assert stored["report_data"]["d"] == h(key.public_key + bytes(32))
    assert stored["build_mode"] == "Production" and stored["status"] == "Ok"
    # The same quote from anyone else is not an attestation of that account.
    thief = ed25519_key("thief")
    fund(substrate, thief)
    failed_with(
        register_dcap(substrate, thief, enclave["quote"], "wss://evil:2000"),
        "SenderIsNotAttestedEnclave",
    )
    failed_with(
        register_dcap(substrate, CHARLIE, enclave["quote"], "wss://evil:2000"),
        "SenderIsNotAttestedEnclave",
    )
    assert substrate.query("Teerex", "SovereignEnclaves", [thief.ss58_address]).value is None


def test_dcap_quotes_need_the_platforms_tcb_info_and_the_trusted_root(
    substrate: SubstrateInterface, collateral: dict[str, Any]
) -> None:
    key = ed25519_key("unknown platform")
    fund(substrate, key)
    other_platform = SimDcapProvider(
        measurement("x"), MRSIGNER, fmspc=bytes.fromhex("00de0000ffff")
    )
    failed_with(
        register_dcap(substrate, key, other_platform.quote(key.public_key), "wss://x:2000"),
        "MissingTcbInfoForFmspc",
    )
    foreign = SimDcapProvider(measurement("x"), MRSIGNER, pki=DevPki(b"some other root"))
    failed_with(
        register_dcap(substrate, key, foreign.quote(key.public_key), "wss://x:2000"),
        "CertificateChainIsInvalid",
    )
    assert substrate.query("Teerex", "SovereignEnclaves", [key.ss58_address]).value is None


def test_skip_registration_and_the_security_flags(
    substrate: SubstrateInterface, collateral: dict[str, Any]
) -> None:
    skipper = Keypair.create_from_uri("//TeeSkipper")
    fund(substrate, skipper)
    mrenclave = measurement("skip")

    def register_skip() -> Any:
        return submit(
            substrate,
            skipper,
            "Teerex",
            "register_sgx_enclave",
            proof=h(mrenclave),
            worker_url=None,
            attestation_method={"Skip": {"proxied": False}},
        )

    receipt = ok(register_skip())
    assert events(receipt, "Teerex", "AddedSgxEnclave")[0]["attestation_method"] == {
        "Skip": {"proxied": False}
    }
    stored = substrate.query("Teerex", "SovereignEnclaves", [skipper.ss58_address]).value["Sgx"]
    assert stored["mr_enclave"] == h(mrenclave)
    assert stored["status"] == "Invalid" and stored["url"] is None

    debug_key = ed25519_key("debug")
    fund(substrate, debug_key)
    debug_quote = SimDcapProvider(measurement("debug"), MRSIGNER, debug=True).quote(
        debug_key.public_key
    )
    try:
        set_flags(substrate, False, True)
        assert substrate.query("Teerex", "AllowSkippingAttestation").value is False
        failed_with(register_skip(), "SkippingAttestationIsNotAllowed")
        set_flags(substrate, True, False)
        failed_with(
            register_dcap(substrate, debug_key, debug_quote, "wss://debug:2000"),
            "SgxModeIsNotAllowed",
        )
        ok(register_skip())  # skipping is allowed again
    finally:
        set_flags(substrate, True, True)
    # With debug mode allowed, the very same debug quote is accepted.
    ok(register_dcap(substrate, debug_key, debug_quote, "wss://debug:2000"))
    stored = substrate.query("Teerex", "SovereignEnclaves", [debug_key.ss58_address]).value
    assert stored["Sgx"]["build_mode"] == "Debug"


def test_invoke_emits_indirect_invocation(substrate: SubstrateInterface) -> None:
    shard = measurement("invoke")
    receipt = ok(
        submit(
            substrate,
            BOB,
            "EnclaveBridge",
            "invoke",
            request={"shard": h(shard), "cyphertext": h(b"\xfc" * 384)},
        )
    )
    assert events(receipt, "EnclaveBridge", "IndirectInvocationRegistered") == [h(shard)]


def test_shield_funds_moves_funds_to_the_bonding_account(substrate: SubstrateInterface) -> None:
    shard = measurement("shield")
    bonding = substrate.ss58_encode(shard)  # the bonding account id is the shard's bytes
    amount = 6 * TEER
    before = free(substrate, bonding)
    receipt = ok(
        submit(
            substrate,
            CHARLIE,
            "EnclaveBridge",
            "shield_funds",
            shard=h(shard),
            incognito_account_encrypted=h(b"\xfe" * 384),
            amount=amount,
        )
    )
    assert free(substrate, bonding) == before + amount
    shielded = events(receipt, "EnclaveBridge", "ShieldFunds")
    assert shielded == [
        {"shard": h(shard), "encrypted_beneficiary": h(b"\xfe" * 384), "amount": amount}
    ]
    transfers = events(receipt, "Balances", "Transfer")
    assert [account_hex(t["to"]) for t in transfers] == [h(shard)]


ROOT = h(hashlib.sha256(b"trusted calls").digest())


def confirm_block(substrate: SubstrateInterface, signer: Keypair, shard: bytes) -> Any:
    head = substrate.get_block_header()["header"]
    return submit(
        substrate,
        signer,
        "EnclaveBridge",
        "confirm_processed_parentchain_block",
        shard=h(shard),
        block_hash=head["parentHash"],
        block_number=head["number"] - 1,
        trusted_calls_merkle_root=ROOT,
    )


def test_confirm_processed_parentchain_block(
    substrate: SubstrateInterface, enclave: dict[str, Any]
) -> None:
    key, shard = enclave["key"], enclave["shard"]
    failed_with(confirm_block(substrate, BOB, shard), "EnclaveIsNotRegistered")
    # A registered enclave cannot act on a shard of other code.
    failed_with(confirm_block(substrate, key, measurement("other")), "WrongFingerprintForShard")
    receipt = ok(confirm_block(substrate, key, shard))
    (processed,) = events(receipt, "EnclaveBridge", "ProcessedParentchainBlock")
    assert processed["shard"] == h(shard) and processed["trusted_calls_merkle_root"] == ROOT
    # the block confirmed is a real, earlier block of this chain
    assert substrate.get_block_hash(processed["block_number"]) == processed["block_hash"]
    status = substrate.query("EnclaveBridge", "ShardStatus", [h(shard)]).value
    assert status[0]["signer"] == substrate.ss58_encode(key.public_key)  # the primary
    assert status[0]["fingerprint"] == h(shard)
    block = substrate.get_block_number(receipt.block_hash)
    assert status[0]["last_activity"] == block


def test_unshield_pays_once_per_call_hash(
    substrate: SubstrateInterface, enclave: dict[str, Any]
) -> None:
    key, shard = enclave["key"], enclave["shard"]
    ok(
        submit(
            substrate,
            CHARLIE,
            "EnclaveBridge",
            "shield_funds",
            shard=h(shard),
            incognito_account_encrypted=h(b"\xfd" * 384),
            amount=10 * TEER,
        )
    )
    beneficiary = Keypair.create_from_uri("//TeeUnshieldBeneficiary")
    call_hash = h(hashlib.sha256(b"unshield once").digest())
    amount = 2 * TEER

    def unshield(signer: Keypair, value: int = amount) -> Any:
        return submit(
            substrate,
            signer,
            "EnclaveBridge",
            "unshield_funds",
            shard=h(shard),
            beneficiary=beneficiary.ss58_address,
            amount=value,
            call_hash=call_hash,
        )

    failed_with(unshield(BOB), "EnclaveIsNotRegistered")
    # More than the bonding account holds: the dispatch fails and leaves no trace of the call
    # hash, so the valid unshielding below still pays.
    too_much = unshield(key, 1_000 * TEER)
    assert not too_much.is_success
    # a token error, as Substrate's fungible transfer gives (substrate-interface names only
    # module errors, so read the dispatch error itself)
    (failure,) = events(too_much, "System", "ExtrinsicFailed")
    assert failure["dispatch_error"] == {"Token": "FundsUnavailable"}
    assert substrate.query("EnclaveBridge", "ExecutedUnshieldCalls", [call_hash]).value == 0
    first = ok(unshield(key))
    assert events(first, "EnclaveBridge", "UnshieldedFunds") == [
        {
            "shard": h(shard),
            "beneficiary": substrate.ss58_encode(beneficiary.public_key),
            "amount": amount,
        }
    ]
    assert free(substrate, beneficiary.ss58_address) == amount
    second = ok(unshield(key))
    assert events(second, "EnclaveBridge", "UnshieldedFunds") == []
    assert free(substrate, beneficiary.ss58_address) == amount
    assert substrate.query("EnclaveBridge", "ExecutedUnshieldCalls", [call_hash]).value == 2


def test_sidechain_confirmation_by_the_primary(
    substrate: SubstrateInterface, enclave: dict[str, Any]
) -> None:
    key, shard = enclave["key"], enclave["shard"]
    known = substrate.query("Sidechain", "LatestSidechainBlockConfirmation", [h(shard)]).value
    ancestor = None if known is None else known
    number = 1 if known is None else known["block_number"] + 1
    candidate = {"block_number": number, "block_header_hash": h(hashlib.sha256(b"sb1").digest())}
    receipt = ok(
        submit(
            substrate,
            key,
            "Sidechain",
            "confirm_imported_sidechain_block",
            shard=h(shard),
            latest_finalized_ancestor=ancestor,
            finalization_candidate=candidate,
        )
    )
    assert events(receipt, "Sidechain", "FinalizedSidechainBlock") == [
        {**candidate, "shard": h(shard), "validateer": substrate.ss58_encode(key.public_key)}
    ]
    stored = substrate.query("Sidechain", "LatestSidechainBlockConfirmation", [h(shard)]).value
    assert stored == candidate
    # An outdated candidate (not newer than the stored one) is refused.
    failed_with(
        submit(
            substrate,
            key,
            "Sidechain",
            "confirm_imported_sidechain_block",
            shard=h(shard),
            latest_finalized_ancestor=candidate,
            finalization_candidate=candidate,
        ),
        "FinalizationCandidateIsOutdated",
    )


def test_proxy_transfers_from_the_real_account(substrate: SubstrateInterface) -> None:
    real = Keypair.create_from_uri("//TeeVault")
    delegate = Keypair.create_from_uri("//TeeVaultProxy")
    receiver = Keypair.create_from_uri("//TeeVaultReceiver")
    fund(substrate, real, delegate)
    receipt = ok(
        submit(
            substrate,
            real,
            "Proxy",
            "add_proxy",
            delegate=delegate.ss58_address,
            proxy_type="Any",
            delay=0,
        )
    )
    added = events(receipt, "Proxy", "ProxyAdded")
    assert len(added) == 1 and added[0]["proxy_type"] == "Any"
    reserved = substrate.query("System", "Account", [real.ss58_address]).value["data"]["reserved"]
    assert reserved == substrate.get_constant("Proxy", "ProxyDepositBase").value + (
        substrate.get_constant("Proxy", "ProxyDepositFactor").value
    )
    real_before = free(substrate, real.ss58_address)
    amount = 5 * TEER
    transfer = substrate.compose_call(
        "Balances", "transfer_keep_alive", {"dest": receiver.ss58_address, "value": amount}
    )
    receipt = ok(
        submit(
            substrate,
            delegate,
            "Proxy",
            "proxy",
            real=real.ss58_address,
            force_proxy_type=None,
            call=transfer,
        )
    )
    assert events(receipt, "Proxy", "ProxyExecuted") == [{"result": {"Ok": ()}}]
    assert free(substrate, receiver.ss58_address) == amount
    assert free(substrate, real.ss58_address) == real_before - amount  # the delegate paid the fee
    # Without the proxy relation the same call fails.
    failed_with(
        submit(
            substrate,
            CHARLIE,
            "Proxy",
            "proxy",
            real=real.ss58_address,
            force_proxy_type=None,
            call=transfer,
        ),
        "NotProxy",
    )
