"""What the ported demo scripts share: running `integritee-cli` against the demo network, the
original's balance assertions (polling within a tolerance), its nonce test, and the parsing of
`Trusted call 0x.. is <Status>` lines.

Every step runs the CLI as a subprocess in the network's working directory (its trusted keystore
holds the fresh incognito accounts), like the original's shell scripts.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from procs import BIN

if TYPE_CHECKING:
    from conftest import DemoNetwork

CLI = str(BIN / "integritee-cli")
UNIT = 10**12
FEE_TOLERANCE = 2 * 10**11
TX_FEE = UNIT // 100
UNSHIELD_FEE = 3 * UNIT // 100
SHIELDING_FEE_DIVIDER = 571
AMOUNT_SHIELD = 6 * UNIT
AMOUNT_TRANSFER = 2 * UNIT
AMOUNT_UNSHIELD = 1 * UNIT
SHIELDED = AMOUNT_SHIELD - AMOUNT_SHIELD // SHIELDING_FEE_DIVIDER
"""What a shielding of AMOUNT_SHIELD credits (the recipient pays the shielding fee)."""
ALICE_ICG = "//AliceIncognito"
WAIT_TIMEOUT = 12.0
WAIT_INTERVAL = 0.3

_STATUS_RE = re.compile(r"Trusted call (0x[0-9a-f]{64}) is (\w+)(?:\((0x[0-9a-f]{64})\))?")


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

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, (
            f"{args}: exit {result.returncode}\n{result.stdout}\n{result.stderr}\n"
            f"validateer log:\n{self.net.validateer.log_tail()}"
        )
        assert "Traceback" not in result.stderr
        return result

    def out(self, *args: str) -> str:
        return self.ok(*args).stdout.strip()

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


@dataclass(frozen=True)
class Status:
    top_hash: str
    name: str
    block_hash: str | None


def statuses(stdout: str) -> list[Status]:
    """The `Trusted call 0x.. is <Status>` lines of a direct call's output, in order."""
    out = []
    for line in stdout.splitlines():
        match = _STATUS_RE.fullmatch(line.strip())
        if match:
            out.append(Status(match[1], match[2], match[3]))
    return out


def assert_included(stdout: str) -> Status:
    """The statuses of one direct call end in InSidechainBlock(h); returns that last one."""
    seen = statuses(stdout)
    assert seen, stdout
    assert len({s.top_hash for s in seen}) == 1, stdout
    assert seen[0].name == "Submitted", stdout
    assert seen[-1].name == "InSidechainBlock" and seen[-1].block_hash is not None, stdout
    assert all(s.name in ("Submitted", "Ready", "Future") for s in seen[:-1]), stdout
    return seen[-1]


def wait_until(
    read: Callable[[], int],
    accept: Callable[[int], bool],
    what: str,
    timeout: float = WAIT_TIMEOUT,
) -> int:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: got {value} after {timeout} s")
        time.sleep(WAIT_INTERVAL)


def wait_assert_state(cli: Cli, account: str, getter: str, expected: int) -> int:
    """The original's wait_assert_state: poll until within FEE_TOLERANCE of `expected`."""
    return wait_until(
        lambda: cli.state(getter, account),
        lambda v: abs(v - expected) < FEE_TOLERANCE,
        f"{getter} of {account} should be ~{expected}",
    )


def wait_l1_balance(cli: Cli, account: str, expected: int, timeout: float = WAIT_TIMEOUT) -> int:
    return wait_until(
        lambda: cli.l1_balance(account),
        lambda v: v == expected,
        f"parentchain balance of {account} should be {expected}",
        timeout,
    )


def shield_through_bridge(cli: Cli) -> int:
    """`shield-funds //Alice //AliceIncognito 6U <mrenclave>`; returns her balance before."""
    before = cli.state("balance", ALICE_ICG)
    out = cli.out("shield-funds", "//Alice", ALICE_ICG, str(AMOUNT_SHIELD), cli.mrenclave)
    assert re.fullmatch(
        r"\[\+\] shield funds success\. extrinsic hash: 0x[0-9a-f]{64} / status: Finalized / "
        r"block hash: 0x[0-9a-f]{64}",
        out,
    ), out
    wait_assert_state(cli, ALICE_ICG, "balance", before + AMOUNT_SHIELD)
    # the recipient pays the shielding fee
    assert cli.state("balance", ALICE_ICG) == before + SHIELDED
    return before


def nonce_test(cli: Cli, bob: str, direct: bool = False) -> None:
    """The demos' nonce test: nonces count executed calls, failed ones included. A direct call
    returns once it is in a sidechain block, so its effect is there at once."""
    mode = ("--direct",) if direct else ()
    charlie = cli.trusted("new-account")
    assert cli.state("nonce", bob) == 0
    bob_before = cli.state("balance", bob)
    small = AMOUNT_TRANSFER // 10

    def transfer(amount: int) -> None:
        out = cli.trusted(*mode, "transfer", bob, charlie, str(amount))
        if direct:
            assert_included(out)

    for _ in range(3):
        transfer(small)
    if direct:
        assert cli.state("nonce", bob) == 3
    wait_assert_state(cli, bob, "nonce", 3)
    assert cli.state("nonce", bob) == 3
    # more than BOB holds: the transfer fails, but its fee and nonce are spent
    transfer(AMOUNT_TRANSFER)
    if direct:
        assert cli.state("nonce", bob) == 4
    wait_assert_state(cli, bob, "nonce", 4)
    assert cli.state("nonce", bob) == 4
    transfer(small)
    if direct:
        assert cli.state("nonce", bob) == 5
    wait_assert_state(cli, bob, "nonce", 5)
    assert cli.state("nonce", bob) == 5
    wait_assert_state(cli, bob, "balance", AMOUNT_TRANSFER * 6 // 10)
    assert cli.state("balance", bob) == bob_before - 4 * small - 5 * TX_FEE
    assert cli.state("balance", charlie) == 4 * small
