"""py-substrate-interface 1.8 against a dev node on free ports: storage, transfers, fees, blocks.

This is the client compatibility contract of the node: an unmodified Substrate client reads
`System.Account`, signs and submits `Balances.transfer_keep_alive` (immortal and mortal), waits for
inclusion and finality, decodes the events and blocks, and predicts the fee exactly. Balances are
compared between the inclusion block and its parent, so the figures are exact whatever else the
module's tests did before.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from scalecodec.utils.ss58 import ss58_decode
from substrateinterface import Keypair, SubstrateInterface

from procs import NodeProcess

ENDOWMENT = 1 << 60
DEV_NAMES = ["Alice", "Bob", "Charlie", "Dave", "Eve", "Ferdie"]
TEER = 10**12

ALICE = Keypair.create_from_uri("//Alice")
BOB = Keypair.create_from_uri("//Bob")
CHARLIE = Keypair.create_from_uri("//Charlie")
DAVE = Keypair.create_from_uri("//Dave")


@pytest.fixture(scope="module")
def substrate(dev_node: NodeProcess) -> Iterator[SubstrateInterface]:
    client = SubstrateInterface(url=dev_node.ws_url)
    try:
        yield client
    finally:
        client.close()


def free_at(substrate: SubstrateInterface, who: Keypair, block_hash: str) -> int:
    return substrate.query("System", "Account", [who.ss58_address], block_hash=block_hash).value[
        "data"
    ]["free"]


def nonce_at(substrate: SubstrateInterface, who: Keypair, block_hash: str) -> int:
    return substrate.query("System", "Account", [who.ss58_address], block_hash=block_hash).value[
        "nonce"
    ]


def parent_of(substrate: SubstrateInterface, block_hash: str) -> str:
    return substrate.get_block_header(block_hash)["header"]["parentHash"]


def transfer(substrate: SubstrateInterface, dest: Keypair, amount: int) -> Any:
    return substrate.compose_call(
        "Balances", "transfer_keep_alive", {"dest": dest.ss58_address, "value": amount}
    )


def query_info_fee(substrate: SubstrateInterface, extrinsic_bytes: bytes) -> int:
    """The partial fee the runtime predicts for these exact bytes (TransactionPaymentApi_query_info)."""
    data = extrinsic_bytes + len(extrinsic_bytes).to_bytes(4, "little")
    reply = substrate.rpc_request(
        "state_call", ["TransactionPaymentApi_query_info", "0x" + data.hex()]
    )
    raw = bytes.fromhex(reply["result"][2:])
    # RuntimeDispatchInfo = Weight ++ DispatchClass ++ partial_fee: u128 (the last 16 bytes).
    return int.from_bytes(raw[-16:], "little")


def events_named(receipt: Any, module: str, event: str) -> list[dict[str, Any]]:
    return [
        e.value["attributes"]
        for e in receipt.triggered_events
        if e.value["module_id"] == module and e.value["event_id"] == event
    ]


def test_query_alice_account(substrate: SubstrateInterface) -> None:
    genesis = substrate.get_block_hash(0)
    info = substrate.query("System", "Account", [ALICE.ss58_address], block_hash=genesis).value
    assert info == {
        "nonce": 0,
        "consumers": 0,
        "providers": 1,
        "sufficients": 0,
        "data": {"free": ENDOWMENT, "reserved": 0, "frozen": 0, "flags": 0},
    }
    best = substrate.query("System", "Account", [ALICE.ss58_address]).value
    assert best["providers"] == 1 and best["data"]["free"] > 0
    # An account that never received anything reads as the default, not as an error.
    nobody = Keypair.create_from_uri("//Nobody-at-all")
    assert substrate.query("System", "Account", [nobody.ss58_address]).value["data"]["free"] == 0


def test_transfer_keep_alive_exact_balances_and_fee(substrate: SubstrateInterface) -> None:
    amount = 3 * TEER + 7
    call = transfer(substrate, BOB, amount)
    predicted = substrate.get_payment_info(call, ALICE)
    assert predicted["class"] == "Normal"
    fee = predicted["partialFee"]
    assert fee > 0

    extrinsic = substrate.create_signed_extrinsic(call, ALICE)
    receipt = substrate.submit_extrinsic(extrinsic, wait_for_inclusion=True)
    assert receipt.is_success, receipt.error_message
    assert receipt.extrinsic_hash == "0x" + extrinsic.extrinsic_hash.hex()

    transfers = events_named(receipt, "Balances", "Transfer")
    assert len(transfers) == 1
    assert ss58_decode(transfers[0]["from"]) == ALICE.public_key.hex()
    assert ss58_decode(transfers[0]["to"]) == BOB.public_key.hex()
    assert transfers[0]["amount"] == amount
    assert events_named(receipt, "TransactionPayment", "TransactionFeePaid")[0]["actual_fee"] == fee
    assert events_named(receipt, "System", "ExtrinsicSuccess")

    assert receipt.total_fee_amount == fee
    assert query_info_fee(substrate, extrinsic.data.data) == fee

    block = receipt.block_hash
    parent = parent_of(substrate, block)
    assert free_at(substrate, BOB, block) - free_at(substrate, BOB, parent) == amount
    assert free_at(substrate, ALICE, parent) - free_at(substrate, ALICE, block) == amount + fee
    assert nonce_at(substrate, ALICE, block) == nonce_at(substrate, ALICE, parent) + 1


def test_query_map_lists_the_endowed_accounts(substrate: SubstrateInterface) -> None:
    names = DEV_NAMES + [f"{n}//stash" for n in DEV_NAMES]
    expected = {Keypair.create_from_uri(f"//{n}").public_key.hex() for n in names}
    assert len(expected) == 12
    genesis = substrate.get_block_hash(0)
    # A small page size makes the client walk state_getKeysPaged with startKey.
    at_genesis = {
        ss58_decode(k.value): v.value
        for k, v in substrate.query_map("System", "Account", block_hash=genesis, page_size=5)
    }
    assert set(at_genesis) == expected
    assert all(v["data"]["free"] == ENDOWMENT and v["nonce"] == 0 for v in at_genesis.values())
    at_best = {ss58_decode(k.value) for k, _v in substrate.query_map("System", "Account")}
    assert expected <= at_best


def test_get_block_decodes_inherent_and_transfer(substrate: SubstrateInterface) -> None:
    extrinsic = substrate.create_signed_extrinsic(transfer(substrate, CHARLIE, TEER), ALICE)
    receipt = substrate.submit_extrinsic(extrinsic, wait_for_inclusion=True)
    assert receipt.is_success

    block = substrate.get_block(block_hash=receipt.block_hash)
    assert block["header"]["hash"] == receipt.block_hash
    calls = [
        (x.value["call"]["call_module"], x.value["call"]["call_function"])
        for x in block["extrinsics"]
    ]
    assert calls[0] == ("Timestamp", "set")
    assert "address" not in block["extrinsics"][0].value  # the inherent is unsigned
    now = block["extrinsics"][0].value["call"]["call_args"][0]["value"]
    assert isinstance(now, int) and now > 1_600_000_000_000
    mine = [
        x
        for x in block["extrinsics"]
        if x.value.get("extrinsic_hash") == receipt.extrinsic_hash[2:]
    ]
    if not mine:  # older scalecodec versions prefix the hash with 0x
        mine = [
            x
            for x in block["extrinsics"]
            if x.value.get("extrinsic_hash") == receipt.extrinsic_hash
        ]
    assert len(mine) == 1
    assert mine[0].value["call"]["call_function"] == "transfer_keep_alive"
    assert ss58_decode(mine[0].value["address"]) == ALICE.public_key.hex()

    by_number = substrate.get_block(block_number=block["header"]["number"])
    assert by_number["header"]["hash"] == receipt.block_hash
    first = substrate.get_block(block_number=1)
    assert first["header"]["number"] == 1
    assert first["extrinsics"][0].value["call"]["call_module"] == "Timestamp"


def test_mortal_era_transfer(substrate: SubstrateInterface) -> None:
    amount = TEER // 2
    extrinsic = substrate.create_signed_extrinsic(
        transfer(substrate, DAVE, amount), ALICE, era={"period": 64}
    )
    assert extrinsic.value["era"]["period"] == 64
    raw = extrinsic.data.data
    # compact length (2 bytes here) ++ 0x84 ++ MultiAddress::Id ++ MultiSignature::Sr25519 ++ era
    era_at = 2 + 1 + 33 + 65
    assert raw[era_at] != 0, "a mortal era is two bytes, never the immortal 0x00"
    fee = query_info_fee(substrate, extrinsic.data.data)
    receipt = substrate.submit_extrinsic(extrinsic, wait_for_inclusion=True)
    assert receipt.is_success, receipt.error_message
    assert receipt.total_fee_amount == fee
    parent = parent_of(substrate, receipt.block_hash)
    assert free_at(substrate, DAVE, receipt.block_hash) - free_at(substrate, DAVE, parent) == amount
    assert (
        free_at(substrate, ALICE, parent) - free_at(substrate, ALICE, receipt.block_hash)
        == amount + fee
    )


def test_wait_for_finalization(substrate: SubstrateInterface) -> None:
    extrinsic = substrate.create_signed_extrinsic(transfer(substrate, BOB, TEER), ALICE)
    receipt = substrate.submit_extrinsic(extrinsic, wait_for_finalization=True)
    assert receipt.finalized is True
    assert receipt.is_success
    finalized_head = substrate.get_chain_finalised_head()
    finalized_number = substrate.get_block_number(finalized_head)
    assert substrate.get_block_number(receipt.block_hash) <= finalized_number
    # The finalized block is on the canonical chain.
    number = substrate.get_block_number(receipt.block_hash)
    assert substrate.get_block_hash(number) == receipt.block_hash


def test_nonce_sequence_across_consecutive_transfers(substrate: SubstrateInterface) -> None:
    start = substrate.get_account_nonce(BOB.ss58_address)
    first = substrate.create_signed_extrinsic(transfer(substrate, CHARLIE, TEER), BOB)
    assert first.value["nonce"] == start
    r1 = substrate.submit_extrinsic(first, wait_for_inclusion=True)
    assert r1.is_success
    second = substrate.create_signed_extrinsic(transfer(substrate, CHARLIE, TEER), BOB)
    assert second.value["nonce"] == start + 1
    r2 = substrate.submit_extrinsic(second, wait_for_inclusion=True)
    assert r2.is_success
    assert substrate.get_block_number(r2.block_hash) > substrate.get_block_number(r1.block_hash)
    assert nonce_at(substrate, BOB, r1.block_hash) == start + 1
    assert nonce_at(substrate, BOB, r2.block_hash) == start + 2
    assert substrate.get_account_nonce(BOB.ss58_address) == start + 2
