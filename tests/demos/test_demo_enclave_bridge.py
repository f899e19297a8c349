"""The original's demo 1 (shielding/unshielding through the enclave bridge) as indirect calls,
against a real node + a validateer whose shard has no vault.

Ported from `cli/demo_shielding_unshielding.sh`: `shield-funds //Alice //AliceIncognito 6U`
credits AliceIncognito 6U (minus the shielding fee); a 2U transfer to a new account BOB;
`unshield-funds --enclave-bridge //AliceIncognito //Ferdie 1U` pays Ferdie 1U on the
parentchain; then the nonce test (0, three small transfers -> 3, a failing transfer -> 4, one
more -> 5). The original ran the script once with indirect calls and once with `--direct`, each
on a fresh network: the direct run is test_demo_enclave_bridge_direct.py.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from demo_cli import (
    ALICE_ICG,
    AMOUNT_SHIELD,
    AMOUNT_TRANSFER,
    AMOUNT_UNSHIELD,
    SHIELDED,
    TX_FEE,
    UNSHIELD_FEE,
    Cli,
    nonce_test,
    shield_through_bridge,
    wait_assert_state,
    wait_l1_balance,
)

if TYPE_CHECKING:
    from conftest import DemoNetwork

pytestmark = pytest.mark.slow

# shielding through EnclaveBridge.shield_funds is for shards without a vault
VALIDATEER_RUN_FLAGS = ["--no-shard-vault"]


@pytest.fixture(scope="module")
def cli(demo_network: DemoNetwork) -> Cli:
    return Cli(demo_network)


def test_the_shard_has_no_vault(cli: Cli) -> None:
    result = cli.run("trusted", "get-shard-vault")
    assert result.returncode == 1
    assert "Error: the worker refused author_getShardVault: shard vault not initialised" in (
        result.stderr
    )


def test_demo1_shielding_unshielding_through_enclave_bridge(cli: Cli) -> None:
    bob = cli.trusted("new-account")
    alice_before = shield_through_bridge(cli)
    assert cli.state("balance", bob) == 0

    out = cli.trusted("transfer", ALICE_ICG, bob, str(AMOUNT_TRANSFER)).splitlines()
    assert out[1].startswith("[+] invoke TrustedOperation extrinsic success."), out
    assert out[-1].startswith("EnclaveBridge::ProcessedParentchainBlock { shard: "), out
    wait_assert_state(cli, ALICE_ICG, "balance", alice_before + AMOUNT_SHIELD - AMOUNT_TRANSFER)
    alice = alice_before + SHIELDED - AMOUNT_TRANSFER - TX_FEE
    assert cli.state("balance", ALICE_ICG) == alice
    assert cli.state("balance", bob) == AMOUNT_TRANSFER

    ferdie_before = cli.l1_balance("//Ferdie")
    cli.trusted("unshield-funds", "--enclave-bridge", ALICE_ICG, "//Ferdie", str(AMOUNT_UNSHIELD))
    wait_assert_state(
        cli,
        ALICE_ICG,
        "balance",
        alice_before + AMOUNT_SHIELD - AMOUNT_TRANSFER - AMOUNT_UNSHIELD,
    )
    assert cli.state("balance", ALICE_ICG) == alice - AMOUNT_UNSHIELD - UNSHIELD_FEE
    assert cli.state("balance", bob) == AMOUNT_TRANSFER
    wait_l1_balance(cli, "//Ferdie", ferdie_before + AMOUNT_UNSHIELD)

    nonce_test(cli, bob)
