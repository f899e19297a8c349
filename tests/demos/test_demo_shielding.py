"""The original's shard-vault demo as indirect calls, and the enclave's refusals, against a real
node + validateer (a shard with a vault, as the validateer creates by default).

Ported from `cli/demo_shielding_unshielding_using_shard_vault.sh` (demo 2): every step runs
`integritee-cli` as a subprocess in one working directory, and balances are asserted as the
script does (within 0.2 UNIT, polling), then exactly where the fees make the value
deterministic. The negative tests check that the enclave refuses getters signed by someone else
and ignores invocations it cannot decrypt while staying usable. Demo 1 (shielding through the
enclave bridge) needs a shard without a vault: it is in test_demo_enclave_bridge.py.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING

import pytest
from demo_cli import (
    AMOUNT_SHIELD,
    AMOUNT_TRANSFER,
    AMOUNT_UNSHIELD,
    SHIELDING_FEE_DIVIDER,
    TX_FEE,
    UNIT,
    UNSHIELD_FEE,
    Cli,
    nonce_test,
    wait_assert_state,
    wait_l1_balance,
)

from integritee.cli.chain_client import ChainClient, ExtrinsicResult
from integritee.cli.trusted_client import (
    TrustedClient,
    account_info_getter,
    b58_hash,
    invoke_request,
    wait_for_processed_block,
)
from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import EnumValue, text
from integritee.crypto import dev_keypair
from integritee.crypto.shielding import ShieldingKey
from integritee.trusted.calls import (
    Getter,
    TrustedGetter,
    TrustedGetterSigned,
    TrustedOperation,
    balance_transfer,
    sign_call,
)
from integritee.trusted.rpc import Request, RpcReturnValue

if TYPE_CHECKING:
    from conftest import DemoNetwork

pytestmark = pytest.mark.slow

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")


@pytest.fixture(scope="module")
def cli(demo_network: DemoNetwork) -> Cli:
    return Cli(demo_network)


def test_demo2_shielding_unshielding_with_shard_vault(cli: Cli) -> None:
    bob = cli.trusted("new-account")
    vault = cli.out("trusted", "get-shard-vault")
    assert re.fullmatch(r"5[1-9A-HJ-NP-Za-km-z]{47}", vault), vault
    charlie_before = cli.state("balance", "//Charlie")

    cli.out("transfer", "//Charlie", vault, str(AMOUNT_SHIELD))
    wait_assert_state(cli, "//Charlie", "balance", charlie_before + AMOUNT_SHIELD)
    shielded = AMOUNT_SHIELD - AMOUNT_SHIELD // SHIELDING_FEE_DIVIDER
    charlie = charlie_before + shielded
    assert cli.state("balance", "//Charlie") == charlie
    assert cli.state("balance", bob) == 0

    out = cli.trusted("transfer", "//Charlie", bob, str(AMOUNT_TRANSFER)).splitlines()
    assert bob in cli.trusted("list-accounts").splitlines()
    assert re.fullmatch(
        rf"send trusted call transfer from \w+ to {bob}: {AMOUNT_TRANSFER}, nonce: \d+, "
        rf"signing using mrenclave: {cli.mrenclave} and shard: {cli.mrenclave}",
        out[0],
    ), out
    assert re.fullmatch(
        r"\[\+\] invoke TrustedOperation extrinsic success\. extrinsic hash: 0x[0-9a-f]{64} / "
        r"status: InBlock / block hash: (0x[0-9a-f]{64})",
        out[1],
    ), out
    block_hash = out[1].rsplit(" ", 1)[1]
    assert out[-1].startswith("EnclaveBridge::ProcessedParentchainBlock { shard: ")
    assert f"block_hash: {block_hash}," in out[-1]
    wait_assert_state(cli, "//Charlie", "balance", charlie_before + AMOUNT_SHIELD - AMOUNT_TRANSFER)
    charlie -= AMOUNT_TRANSFER + TX_FEE
    assert cli.state("balance", "//Charlie") == charlie
    assert cli.state("balance", bob) == AMOUNT_TRANSFER

    ferdie_before = cli.l1_balance("//Ferdie")
    vault_before = cli.l1_balance(vault)
    out = cli.trusted("unshield-funds", "//Charlie", "//Ferdie", str(AMOUNT_UNSHIELD))
    assert out.splitlines()[0].endswith(f": {AMOUNT_UNSHIELD}"), out
    wait_assert_state(
        cli,
        "//Charlie",
        "balance",
        charlie_before + AMOUNT_SHIELD - AMOUNT_TRANSFER - AMOUNT_UNSHIELD,
    )
    charlie -= AMOUNT_UNSHIELD + UNSHIELD_FEE
    assert cli.state("balance", "//Charlie") == charlie
    wait_l1_balance(cli, "//Ferdie", ferdie_before + AMOUNT_UNSHIELD)
    # paid out of the vault (the enclave pays the proxy call's fee)
    assert cli.l1_balance(vault) == vault_before - AMOUNT_UNSHIELD
    assert cli.state("balance", bob) == AMOUNT_TRANSFER

    nonce_test(cli, bob)


def _executed_getter(worker: TrustedClient, shard: bytes, getter: EnumValue) -> tuple[str, bytes]:
    request = Request.encode({"shard": shard, "cyphertext": Getter.encode(getter)})
    raw = worker.request("state_executeGetter", [to_hex(request)])
    value = RpcReturnValue.decode(from_hex(raw))
    return value["status"].name, bytes(value["value"])


def test_getter_signed_by_someone_else_is_refused(cli: Cli, demo_network: DemoNetwork) -> None:
    alice = ALICE.public_key
    with TrustedClient(demo_network.validateer.trusted_url) as worker:
        shard = worker.shard()
        # Bob signs as a delegate of Alice without being her session proxy
        status, value = _executed_getter(worker, shard, account_info_getter(alice, BOB))
        assert status == "Error"
        assert "MissingPrivileges" in text.decode(value)
        # Bob's signature passed off as Alice's own
        getter = EnumValue("account_info", alice)
        forged = TrustedGetterSigned(
            getter, None, EnumValue("Sr25519", BOB.sign(TrustedGetter.encode(getter)))
        )
        status, value = _executed_getter(worker, shard, EnumValue("trusted", forged))
        assert status == "Error"
        assert "bad signature" in text.decode(value)
        # the same getter signed by Alice is answered
        status, _ = _executed_getter(worker, shard, account_info_getter(alice, ALICE))
        assert status == "Ok"

    result = cli.run("trusted", "balance", "//Alice", "--session-proxy", "//Bob")
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr
    assert "Error: the worker refused state_executeGetter: MissingPrivileges" in result.stderr
    assert result.stdout == ""


def _invoke(chain: ChainClient, shard: bytes, cyphertext: bytes) -> tuple[ExtrinsicResult, int]:
    call = chain.compose_call(
        "EnclaveBridge", "invoke", {"request": invoke_request(shard, cyphertext)}
    )
    result = chain.submit_call(call, ALICE, wait="in_block")
    assert result.block_hash is not None
    header = chain.rpc("chain_getHeader", [result.block_hash])
    return result, int(header["number"], 16)


def test_undecryptable_invocations_are_ignored(cli: Cli, demo_network: DemoNetwork) -> None:
    validateer = demo_network.validateer
    shard = b58_hash(cli.mrenclave, "mrenclave")
    with (
        TrustedClient(validateer.trusted_url) as worker,
        ChainClient.connect(demo_network.node.ws_url) as chain,
    ):
        alice_nonce = worker.account_info(shard, ALICE.public_key, ALICE)
        assert alice_nonce is not None

        # the block is confirmed (it carried shard traffic), with nothing executed from it
        garbage, garbage_number = _invoke(chain, shard, os.urandom(384))
        assert garbage.block_hash is not None
        confirmed = wait_for_processed_block(chain, shard, garbage.block_hash, timeout_blocks=5)
        assert confirmed.trusted_calls_merkle_root == bytes(32)
        validateer.wait_for_log(
            f"block #{garbage_number}: invoke with undecryptable cyphertext ignored"
        )

        # a well-formed, correctly signed operation, but encrypted to another RSA key
        top = sign_call(
            balance_transfer(ALICE.public_key, BOB.public_key, UNIT),
            ALICE,
            alice_nonce.nonce,
            shard,
            shard,
        ).into_trusted_operation(direct=False)
        other_key = ShieldingKey.generate().public_key()
        foreign, foreign_number = _invoke(
            chain, shard, other_key.encrypt(TrustedOperation.encode(top))
        )
        assert foreign.block_hash is not None
        confirmed = wait_for_processed_block(chain, shard, foreign.block_hash, timeout_blocks=5)
        assert confirmed.trusted_calls_merkle_root == bytes(32)
        validateer.wait_for_log(
            f"block #{foreign_number}: invoke with undecryptable cyphertext ignored"
        )
        assert validateer.running
        after = worker.account_info(shard, ALICE.public_key, ALICE)
        assert after is not None and after.nonce == alice_nonce.nonce

        # the validateer is still serving: the next valid call goes through (confirmed with
        # its call in the merkle root)
        recipient = "//IgnoredInvocationsRecipient"
        out = cli.trusted("transfer", "//Alice", recipient, str(UNIT)).splitlines()
        assert out[-1].startswith("EnclaveBridge::ProcessedParentchainBlock { shard: "), out
        assert f"trusted_calls_merkle_root: {to_hex(bytes(32))}," not in out[-1]
        wait_assert_state(cli, recipient, "balance", UNIT)
        assert cli.state("balance", recipient) == UNIT
    assert validateer.running
