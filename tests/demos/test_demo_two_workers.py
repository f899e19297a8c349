"""The original's two-worker demos against two validateers (real processes), run twice: both
validateers on one dev node, and each validateer on its own node (`--chain local`, Alice and Bob
authoring, GRANDPA-like finality needing both; the nodes sync over p2p), as the seed's second
picture. The CLI of each validateer talks to that validateer's node.

Validateer 2 starts after validateer 1 has produced blocks: it finds validateer 1 as primary in
`EnclaveBridge.ShardStatus`, is provisioned over MU-RA (keys, state, light client), fetches the
blocks it lacks from its peer and joins the Aura rotation. Then, as the original's scripts:

- demo 3 on two workers: a direct transfer of 4 UNIT via validateer 1 gives BobIncognito exactly
  4 UNIT there; the same via validateer 2 gives 8 UNIT there (state shared by sidechain blocks);
- demo 4 (sidechain): a vault deposit of 5 UNIT by //Charlie, 2 UNIT to BobIncognito via each
  validateer; Charlie's balance read from validateer 1 ~1 UNIT, Bob's read from validateer 2
  exactly 4 UNIT;
- demo 2 multiworker: shielding/unshielding with the shard vault against validateer 1, then
  against validateer 2 with the balances carried over (validateer 2's payouts go through the
  vault proxy validateer 1 granted it after provisioning).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import base58
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
    assert_included,
    wait_assert_state,
    wait_l1_balance,
    wait_until,
)

from conftest import KEEP_BLOCKS, SLOT_DURATION_MS, START_TIMEOUT, DemoNetwork
from integritee.service.untrusted_rpc import fetch_blocks_from_peer
from integritee.trusted.sidechain import SignedBlockCodec, block_hash
from procs import NodeProcess, ValidateerProcess

pytestmark = pytest.mark.slow


class TwoWorkers:
    def __init__(
        self,
        nodes: list[NodeProcess],
        v1: ValidateerProcess,
        v2: ValidateerProcess,
        workdir: Path,
    ) -> None:
        self.nodes, self.v1, self.v2 = nodes, v1, v2
        # one CLI working directory: the incognito accounts carry over between the workers
        self.cli1 = Cli(DemoNetwork(nodes[0], v1, workdir))
        self.cli2 = Cli(DemoNetwork(nodes[-1], v2, workdir))


def local_node(tmp: Path, name: str, *flags: str) -> NodeProcess:
    return NodeProcess(
        tmp, block_time_ms=300, dev=False, extra=["--chain", "local", "--name", name, *flags]
    )


@pytest.fixture(scope="module", params=["one-node", "own-nodes"])
def two(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[TwoWorkers]:
    if request.param == "one-node":
        nodes = [NodeProcess(tmp_path_factory.mktemp("node"), block_time_ms=300)]
    else:
        alice = local_node(tmp_path_factory.mktemp("alice"), "alice", "--alice")
        bob = local_node(
            tmp_path_factory.mktemp("bob"), "bob", "--bob", "--bootnodes", alice.p2p_address
        )
        nodes = [alice, bob]
    v1 = ValidateerProcess(
        tmp_path_factory.mktemp("v1"), 0, slot_duration_ms=SLOT_DURATION_MS, run_flags=KEEP_BLOCKS
    )
    v2 = ValidateerProcess(
        tmp_path_factory.mktemp("v2"), 0, slot_duration_ms=SLOT_DURATION_MS, run_flags=KEEP_BLOCKS
    )
    try:
        for node in nodes:
            node.start(wait_blocks=0)
        nodes[0].wait_for_block(1)
        v1.node_port, v2.node_port = nodes[0].rpc_port, nodes[-1].rpc_port
        v1.start(timeout=START_TIMEOUT)
        net = TwoWorkers(nodes, v1, v2, tmp_path_factory.mktemp("cli"))
        # validateer 1 has produced blocks before validateer 2 joins
        wait_until(lambda: header_number(net.cli1), lambda n: n >= 5, "validateer 1's blocks")
        v2.start(timeout=START_TIMEOUT)
        yield net
    finally:
        v2.stop()
        v1.stop()
        for node in nodes:
            node.stop()


def header_number(cli: Cli) -> int:
    out = cli.out("trusted", "get-sidechain-header")
    return int(out.split("block_number: ")[1].split(",")[0])


def stored(v: ValidateerProcess, shard: bytes) -> dict[int, bytes]:
    blocks = asyncio.run(fetch_blocks_from_peer(v.untrusted_url, bytes(32), None, shard))
    out = {}
    for raw in blocks:
        b = SignedBlockCodec.decode(raw)
        out[b["block"]["header"]["block_number"]] = block_hash(b)
    return out


def test_joiner_was_provisioned_and_serves_the_same_chain_and_state(two: TwoWorkers) -> None:
    log2 = two.v2.log_path.read_text()
    assert "provisioning by MU-RA" in log2 and "provisioned by MU-RA from" in log2, log2[-3000:]
    assert "MU-RA provisioned shard" in two.v1.log_path.read_text()
    assert two.cli1.mrenclave == two.cli2.mrenclave
    # both produce: blocks of both authors in the shared chain
    shard = base58.b58decode(two.cli1.out("trusted", "get-shard").split()[0])
    start = header_number(two.cli2)
    wait_until(lambda: header_number(two.cli2), lambda n: n >= start + 6, "validateer 2's head")
    blocks = asyncio.run(fetch_blocks_from_peer(two.v2.untrusted_url, bytes(32), None, shard))
    authors = {
        bytes(SignedBlockCodec.decode(b)["block"]["block_data"]["block_author"]) for b in blocks
    }
    assert len(authors) == 2, "both validateers author blocks in their slots"
    # identical blocks where both hold one, identical balances
    one, other = stored(two.v1, shard), stored(two.v2, shard)
    common = sorted(set(one) & set(other))
    assert len(common) >= 5
    assert all(one[n] == other[n] for n in common[:-2])
    for account in ("//Alice", "//Bob"):
        assert two.cli1.state("balance", account) == two.cli2.state("balance", account)


def test_demo3_direct_call_on_two_workers(two: TwoWorkers) -> None:
    """The script once against each worker: deposit 5 UNIT, send 4 UNIT directly to Bob."""
    vault = two.cli1.out("trusted", "get-shard-vault")
    assert two.cli2.out("trusted", "get-shard-vault") == vault
    bob = two.cli1.trusted("new-account")
    shielded = 5 * UNIT - 5 * UNIT // SHIELDING_FEE_DIVIDER
    for cli, expected in ((two.cli1, 4 * UNIT), (two.cli2, 8 * UNIT)):
        charlie_before = cli.state("balance", "//Charlie")
        cli.out("transfer", "//Charlie", vault, str(5 * UNIT))
        wait_until(
            lambda c=cli, b=charlie_before: c.state("balance", "//Charlie"),
            lambda v, b=charlie_before: v == b + shielded,
            "Charlie's shielded balance",
        )
        assert_included(cli.trusted("--direct", "transfer", "//Charlie", bob, str(4 * UNIT)))
        assert cli.state("balance", bob) == expected
    wait_until(lambda: two.cli1.state("balance", bob), lambda v: v == 8 * UNIT, "Bob on worker 1")


def test_demo4_sidechain(two: TwoWorkers) -> None:
    cli1, cli2 = two.cli1, two.cli2
    vault = cli1.out("trusted", "get-shard-vault")
    charlie = cli1.trusted("new-account")
    bob = cli1.trusted("new-account")
    # the new account has no L1 funds: //Charlie deposits and transfers to it on the sidechain
    charlie_before = cli1.state("balance", "//Charlie")
    cli1.out("transfer", "//Charlie", vault, str(5 * UNIT))
    shielded = 5 * UNIT - 5 * UNIT // SHIELDING_FEE_DIVIDER
    wait_until(
        lambda: cli1.state("balance", "//Charlie"),
        lambda v: v == charlie_before + shielded,
        "the deposit",
    )
    assert_included(cli1.trusted("--direct", "transfer", "//Charlie", charlie, str(5 * UNIT)))
    assert_included(cli1.trusted("--direct", "transfer", charlie, bob, str(2 * UNIT)))
    assert_included(cli2.trusted("--direct", "transfer", charlie, bob, str(2 * UNIT)))
    expected = 5 * UNIT - 2 * (2 * UNIT + TX_FEE)
    wait_assert_state(cli1, charlie, "balance", 1 * UNIT)
    assert cli1.state("balance", charlie) == expected
    assert cli2.state("balance", bob) == 4 * UNIT


def test_demo2_multiworker_shielding_unshielding_with_shard_vault(two: TwoWorkers) -> None:
    vault = two.cli1.out("trusted", "get-shard-vault")
    bob = two.cli1.trusted("new-account")
    charlie = two.cli1.state("balance", "//Charlie")
    for cli in (two.cli1, two.cli2):
        two.cli1.out("transfer", "//Charlie", vault, str(AMOUNT_SHIELD))
        charlie += AMOUNT_SHIELD - AMOUNT_SHIELD // SHIELDING_FEE_DIVIDER
        wait_until(
            lambda c=cli: c.state("balance", "//Charlie"),
            lambda v, want=charlie: v == want,
            "the deposit",
        )
        bob_before = cli.state("balance", bob)
        cli.trusted("transfer", "//Charlie", bob, str(AMOUNT_TRANSFER))
        charlie -= AMOUNT_TRANSFER + TX_FEE
        wait_until(
            lambda c=cli: c.state("balance", "//Charlie"),
            lambda v, want=charlie: v == want,
            "the transfer",
        )
        assert cli.state("balance", bob) == bob_before + AMOUNT_TRANSFER

        ferdie_before = cli.l1_balance("//Ferdie")
        vault_before = cli.l1_balance(vault)
        cli.trusted("unshield-funds", "//Charlie", "//Ferdie", str(AMOUNT_UNSHIELD))
        charlie -= AMOUNT_UNSHIELD + UNSHIELD_FEE
        wait_until(
            lambda c=cli: c.state("balance", "//Charlie"),
            lambda v, want=charlie: v == want,
            "the unshield",
        )
        wait_l1_balance(cli, "//Ferdie", ferdie_before + AMOUNT_UNSHIELD, timeout=30)
        assert cli.l1_balance(vault) == vault_before - AMOUNT_UNSHIELD
    # the balances carried over: both validateers agree
    assert two.cli1.state("balance", bob) == two.cli2.state("balance", bob) == 2 * AMOUNT_TRANSFER
