"""The original's shielding/unshielding demos, as indirect calls, against a real node + validateer.

Ported from `cli/demo_shielding_unshielding.sh` (demo 1, enclave bridge) and
`cli/demo_shielding_unshielding_using_shard_vault.sh` (demo 2): every step runs `integritee-cli`
as a subprocess in one working directory (its trusted keystore holds the fresh incognito
accounts), and balances are asserted as the scripts do (within 0.2 UNIT, polling), then exactly
where the fees make the value deterministic. The negative tests check that the enclave refuses
getters signed by someone else and ignores invocations it cannot decrypt while staying usable.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

from integritee.cli.chain_client import ChainClient, ExtrinsicResult
from integritee.cli.trusted_client import (
    ConfirmationError,
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
from procs import BIN

if TYPE_CHECKING:
    from conftest import DemoNetwork

pytestmark = pytest.mark.slow

CLI = str(BIN / "integritee-cli")
UNIT = 10**12
FEE_TOLERANCE = 2 * 10**11
TX_FEE = UNIT // 100
UNSHIELD_FEE = 3 * UNIT // 100
SHIELDING_FEE_DIVIDER = 571
AMOUNT_SHIELD = 6 * UNIT
AMOUNT_TRANSFER = 2 * UNIT
AMOUNT_UNSHIELD = 1 * UNIT
WAIT_TIMEOUT = 12.0
WAIT_INTERVAL = 0.3

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")


class Cli:
    """`integritee-cli` pointed at the demo network, run in its working directory."""

    def __init__(self, net: DemoNetwork) -> None:
        self.net = net
        self._mrenclave: str | None = None

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                CLI,
                "-p",
                str(self.net.node.rpc_port),
                "-U",
                "wss://127.0.0.1",
                "-P",
                str(self.net.validateer.trusted_port),
                *args,
            ],  # fmt: skip
            cwd=self.net.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def out(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (
            f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}\n"
            f"validateer log:\n{self.net.validateer.log_tail()}"
        )
        assert "Traceback" not in result.stderr
        return result.stdout.strip()

    @property
    def mrenclave(self) -> str:
        if self._mrenclave is None:
            self._mrenclave = self.out("trusted", "get-fingerprint")
        return self._mrenclave

    def trusted(self, *args: str) -> str:
        return self.out("trusted", "--mrenclave", self.mrenclave, *args)

    def state(self, getter: str, account: str) -> int:
        return int(self.trusted(getter, account))

    def l1_balance(self, account: str) -> int:
        return int(self.out("balance", account))


def wait_until(read: Callable[[], int], accept: Callable[[int], bool], what: str) -> int:
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: got {value} after {WAIT_TIMEOUT} s")
        time.sleep(WAIT_INTERVAL)


def wait_assert_state(cli: Cli, account: str, getter: str, expected: int) -> int:
    """The original's wait_assert_state: poll until within FEE_TOLERANCE of `expected`."""
    return wait_until(
        lambda: cli.state(getter, account),
        lambda v: abs(v - expected) < FEE_TOLERANCE,
        f"{getter} of {account} should be ~{expected}",
    )


def wait_l1_balance(cli: Cli, account: str, expected: int) -> int:
    return wait_until(
        lambda: cli.l1_balance(account),
        lambda v: v == expected,
        f"parentchain balance of {account} should be {expected}",
    )


def nonce_test(cli: Cli, bob: str) -> None:
    """The demos' nonce test: nonces count executed calls, failed ones included."""
    charlie = cli.trusted("new-account")
    assert cli.state("nonce", bob) == 0
    bob_before = cli.state("balance", bob)
    small = AMOUNT_TRANSFER // 10
    for _ in range(3):
        cli.trusted("transfer", bob, charlie, str(small))
    wait_assert_state(cli, bob, "nonce", 3)
    assert cli.state("nonce", bob) == 3
    # more than BOB holds: the transfer fails, but its fee and nonce are spent
    cli.trusted("transfer", bob, charlie, str(AMOUNT_TRANSFER))
    wait_assert_state(cli, bob, "nonce", 4)
    assert cli.state("nonce", bob) == 4
    cli.trusted("transfer", bob, charlie, str(small))
    wait_assert_state(cli, bob, "nonce", 5)
    assert cli.state("nonce", bob) == 5
    wait_assert_state(cli, bob, "balance", AMOUNT_TRANSFER * 6 // 10)
    assert cli.state("balance", bob) == bob_before - 4 * small - 5 * TX_FEE
    assert cli.state("balance", charlie) == 4 * small


@pytest.fixture(scope="module")
def cli(demo_network: DemoNetwork) -> Cli:
    return Cli(demo_network)


@pytest.mark.xfail(
    strict=True,
    reason=(
        "the validateer always creates a shard vault (enclave/app.py Enclave.init_shard), and with "
        "a vault the STF refuses enclave-bridge shielding (EnclaveBridgeShieldingDisabledIfVault"
        "Assigned) and unshielding, as the original's sidechain validateer does (so shield-funds "
        "refuses to strand the funds); the original ran this demo on its offchain-worker flavour, "
        "which has no vault. Needs a service option to run a shard without a vault."
    ),
)
def test_demo1_shielding_unshielding_through_enclave_bridge(cli: Cli) -> None:
    mrenclave = cli.mrenclave
    alice_icg = "//AliceIncognito"
    bob = cli.trusted("new-account")
    alice_before = cli.state("balance", alice_icg)

    out = cli.out("shield-funds", "//Alice", alice_icg, str(AMOUNT_SHIELD), mrenclave)
    assert re.fullmatch(
        r"\[\+\] shield funds success\. extrinsic hash: 0x[0-9a-f]{64} / status: Finalized / "
        r"block hash: 0x[0-9a-f]{64}",
        out,
    ), out
    wait_assert_state(cli, alice_icg, "balance", alice_before + AMOUNT_SHIELD)
    assert cli.state("balance", bob) == 0

    cli.trusted("transfer", alice_icg, bob, str(AMOUNT_TRANSFER))
    wait_assert_state(cli, alice_icg, "balance", alice_before + AMOUNT_SHIELD - AMOUNT_TRANSFER)
    assert cli.state("balance", bob) == AMOUNT_TRANSFER

    ferdie_before = cli.l1_balance("//Ferdie")
    cli.trusted("unshield-funds", "--enclave-bridge", alice_icg, "//Ferdie", str(AMOUNT_UNSHIELD))
    wait_assert_state(
        cli,
        alice_icg,
        "balance",
        alice_before + AMOUNT_SHIELD - AMOUNT_TRANSFER - AMOUNT_UNSHIELD,
    )
    assert cli.state("balance", bob) == AMOUNT_TRANSFER
    wait_l1_balance(cli, "//Ferdie", ferdie_before + AMOUNT_UNSHIELD)

    nonce_test(cli, bob)


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

        garbage, garbage_number = _invoke(chain, shard, os.urandom(384))
        assert garbage.block_hash is not None
        with pytest.raises(ConfirmationError, match="timed out"):
            wait_for_processed_block(chain, shard, garbage.block_hash, timeout_blocks=3)
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
        validateer.wait_for_log(
            f"block #{foreign_number}: invoke with undecryptable cyphertext ignored"
        )
        assert validateer.running
        after = worker.account_info(shard, ALICE.public_key, ALICE)
        assert after is not None and after.nonce == alice_nonce.nonce

        # the validateer is still serving: the next valid call goes through
        recipient = "//IgnoredInvocationsRecipient"
        cli.trusted("transfer", "//Alice", recipient, str(UNIT))
        assert cli.state("balance", recipient) == UNIT
        # and the CLI tells an ignored invocation apart once a later block was confirmed
        with pytest.raises(ConfirmationError, match="without confirming the invocation block"):
            wait_for_processed_block(chain, shard, foreign.block_hash, timeout_blocks=500)
    assert validateer.running
