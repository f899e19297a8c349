"""The original's direct-call demo (demo 3) and its benchmark, against a real node + validateer.

Ported from `cli/demo_direct_call.sh`: `VAULT=$(trusted get-shard-vault)`; an L1 `transfer
//Charlie $VAULT 5000000000000` shields Charlie's funds; `trusted --direct transfer //Charlie
//BobIncognito 4000000000000`; BobIncognito then holds exactly 4000000000000. Beyond the
script, the statuses the CLI printed must end in `InSidechainBlock(h)`, and `h` must be a block
the validateer really has: stored (fetched over its untrusted `sidechain_fetchBlocksFromPeer`),
signed by the registered enclave, carrying the call's top hash, at or below the height
`chain_getHeader` reports. The CLI pins the worker's key here (the fast path without RSA); the
RSA path, a call that is not executed and `benchmark` (as `cli/benchmark.sh`, smaller) follow.
"""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import pytest
from demo_cli import (
    SHIELDING_FEE_DIVIDER,
    TX_FEE,
    UNIT,
    Cli,
    assert_included,
    statuses,
    wait_until,
)

from integritee.cli.trusted_client import TrustedClient, b58_hash
from integritee.codec.hexutil import from_hex
from integritee.service.untrusted_rpc import fetch_blocks_from_peer
from integritee.trusted.sidechain import (
    SignedBlockCodec,
    block_hash,
    verify_block_signature,
)

if TYPE_CHECKING:
    from conftest import DemoNetwork

pytestmark = pytest.mark.slow

SHIELD_AMOUNT = 5_000_000_000_000
DIRECT_AMOUNT = 4_000_000_000_000


@pytest.fixture(scope="module")
def cli(demo_network: DemoNetwork) -> Cli:
    return Cli(demo_network)


def stored_blocks(net: DemoNetwork, shard: bytes) -> dict[bytes, dict[str, Any]]:
    """Every block the validateer stores for `shard`, by hash."""
    encoded = asyncio.run(
        fetch_blocks_from_peer(net.validateer.untrusted_url, bytes(32), None, shard)
    )
    blocks = [SignedBlockCodec.decode(raw) for raw in encoded]
    return {block_hash(b): b for b in blocks}


def test_demo3_direct_call(cli: Cli, demo_network: DemoNetwork) -> None:
    vault = cli.out("trusted", "get-shard-vault")
    charlie_before = cli.state("balance", "//Charlie")
    assert cli.state("balance", "//BobIncognito") == 0

    cli.out("transfer", "//Charlie", vault, str(SHIELD_AMOUNT))
    shielded = SHIELD_AMOUNT - SHIELD_AMOUNT // SHIELDING_FEE_DIVIDER
    wait_until(
        lambda: cli.state("balance", "//Charlie"),
        lambda v: v == charlie_before + shielded,
        "Charlie's shielded balance",
    )

    result = cli.ok(
        "trusted", "--mrenclave", cli.mrenclave, "--direct",
        "transfer", "//Charlie", "//BobIncognito", str(DIRECT_AMOUNT),
    )  # fmt: skip
    assert "pinned the TLS key of wss://127.0.0.1:" in result.stderr, result.stderr
    assert "submitting without RSA over the pinned connection" in result.stderr
    final = assert_included(result.stdout)
    assert cli.state("balance", "//BobIncognito") == DIRECT_AMOUNT
    assert cli.state("balance", "//Charlie") == charlie_before + shielded - DIRECT_AMOUNT - TX_FEE

    # h is a block of the validateer: stored, signed by its enclave, holding the call
    shard = b58_hash(cli.mrenclave, "mrenclave")
    assert final.block_hash is not None
    included_in = from_hex(final.block_hash)
    with TrustedClient(demo_network.validateer.trusted_url) as worker:
        head = worker.sidechain_header()
    blocks = stored_blocks(demo_network, shard)
    assert included_in in blocks, f"{final.block_hash} is not stored by the validateer"
    block = blocks[included_in]
    assert verify_block_signature(block)
    assert from_hex(final.top_hash) in [
        bytes(h) for h in block["block"]["block_data"]["signed_top_hashes"]
    ]
    number = block["block"]["header"]["block_number"]
    assert 1 <= number <= head["block_number"]
    assert head["shard_id"] == shard

    # get-sidechain-header prints the original's Debug form of a header at least that high
    (line,) = cli.trusted("get-sidechain-header").splitlines()
    match = re.fullmatch(
        r"SidechainHeader \{ parent_hash: 0x[0-9a-f]{64}, block_number: (\d+), "
        r"shard_id: (0x[0-9a-f]{64}), block_data_hash: 0x[0-9a-f]{64}, "
        r"next_finalization_block_number: (\d+) \}",
        line,
    )
    assert match, line
    assert int(match[1]) >= head["block_number"] and from_hex(match[2]) == shard
    assert int(match[3]) % 50 == 0 and int(match[3]) > int(match[1])


def test_direct_call_over_rsa_and_a_call_that_is_not_executed(cli: Cli) -> None:
    before = cli.state("balance", "//BobIncognito")
    result = cli.ok(
        "trusted", "--mrenclave", cli.mrenclave, "--direct", "--rsa",
        "transfer", "//BobIncognito", "//DaveIncognito", str(UNIT),
    )  # fmt: skip
    assert "submitting without RSA" not in result.stderr
    assert_included(result.stdout)
    assert cli.state("balance", "//DaveIncognito") == UNIT
    assert cli.state("balance", "//BobIncognito") == before - UNIT - TX_FEE

    # an account that cannot pay the fee: the worker finds the call invalid
    result = cli.run(
        "trusted", "--mrenclave", cli.mrenclave, "--direct",
        "transfer", "//PauperIncognito", "//DaveIncognito", str(UNIT),
    )  # fmt: skip
    assert result.returncode == 1, result
    seen = statuses(result.stdout)
    assert seen[0].name == "Submitted" and seen[-1].name == "Invalid", result.stdout
    assert f"Error: trusted call {seen[0].top_hash} is Invalid: the worker found it invalid" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr
    assert cli.state("balance", "//DaveIncognito") == UNIT


def test_benchmark(cli: Cli) -> None:
    result = cli.ok("trusted", "--mrenclave", cli.mrenclave, "benchmark", "3", "5", "-w")
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"Nonce for account \w+: \d+", lines[0]), lines
    assert lines[1:4] == [f"Initializing account {i}" for i in range(3)]
    assert re.fullmatch(
        r"Finished benchmark with 3 clients and 5 transactions in \d+ ms", lines[4]
    ), lines
    percent_lines = lines[5:]
    assert [int(line.split()[0]) for line in percent_lines] == list(range(5, 101, 5))
    latencies = []
    for line in percent_lines:
        match = re.fullmatch(r"(\d+) percent are done within (\d+) ms", line)
        assert match, line
        latencies.append(int(match[2]))
    assert latencies == sorted(latencies)
    # -w: each latency runs to InSidechainBlock, at least a fraction of a 300 ms slot
    assert latencies[0] > 0 and latencies[-1] < 5_000
    assert "15 transactions in" in result.stderr  # 15 in sidechain blocks
    assert "(15 in sidechain blocks)" in result.stderr
