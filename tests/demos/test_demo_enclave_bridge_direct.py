"""The original's demo 1 (shielding/unshielding through the enclave bridge) with `--direct`,
against a real node + a validateer whose shard has no vault.

Ported from `cli/demo_shielding_unshielding.sh` run with `--direct` (the indirect run is
test_demo_enclave_bridge.py; the original ran each on a fresh network, and so do these: see
`test_a_repeated_unshield_is_paid_out_again` for why that matters). Direct calls return once
they are in a sidechain block, so their effects are asserted at once, exactly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from demo_cli import (
    ALICE_ICG,
    AMOUNT_TRANSFER,
    AMOUNT_UNSHIELD,
    SHIELDED,
    TX_FEE,
    UNSHIELD_FEE,
    Cli,
    assert_included,
    nonce_test,
    shield_through_bridge,
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


def unshield_direct(cli: Cli) -> None:
    out = cli.trusted(
        "--direct", "unshield-funds", "-e", ALICE_ICG, "//Ferdie", str(AMOUNT_UNSHIELD)
    )
    assert out.splitlines()[0].endswith(f": {AMOUNT_UNSHIELD} through enclave-bridge"), out
    assert_included(out)


def test_demo1_shielding_unshielding_through_enclave_bridge_direct(cli: Cli) -> None:
    bob = cli.trusted("new-account")
    alice_before = shield_through_bridge(cli)
    assert cli.state("balance", bob) == 0

    # a direct call returns when it is in a sidechain block: its effect is visible at once
    out = cli.trusted("--direct", "transfer", ALICE_ICG, bob, str(AMOUNT_TRANSFER))
    assert out.splitlines()[0].startswith("send trusted call transfer from "), out
    assert_included(out)
    alice = alice_before + SHIELDED - AMOUNT_TRANSFER - TX_FEE
    assert cli.state("balance", ALICE_ICG) == alice
    assert cli.state("balance", bob) == AMOUNT_TRANSFER

    ferdie_before = cli.l1_balance("//Ferdie")
    unshield_direct(cli)
    assert cli.state("balance", ALICE_ICG) == alice - AMOUNT_UNSHIELD - UNSHIELD_FEE
    assert cli.state("balance", bob) == AMOUNT_TRANSFER
    # the enclave pays out on the parentchain after the sidechain block
    wait_l1_balance(cli, "//Ferdie", ferdie_before + AMOUNT_UNSHIELD)

    nonce_test(cli, bob, direct=True)


def test_a_repeated_unshield_is_paid_out_again(cli: Cli) -> None:
    before = cli.state("balance", ALICE_ICG)
    ferdie_before = cli.l1_balance("//Ferdie")
    unshield_direct(cli)  # the very call of the demo again, with the next nonce
    assert cli.state("balance", ALICE_ICG) == before - AMOUNT_UNSHIELD - UNSHIELD_FEE
    wait_l1_balance(cli, "//Ferdie", ferdie_before + AMOUNT_UNSHIELD, timeout=6.0)
