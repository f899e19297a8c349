"""The narrated demo of `make run`: what the system does, shown with `integritee-cli` commands.

1. Parentchain: //Alice sends 1 TEER to //Bob (`transfer`); Bob's balance grows by exactly 1 TEER.
2. Sidechain, if the setup has validateers and the CLI has the `trusted` commands:
   - shield: //Alice sends 2 TEER to the shard vault on the parentchain; the enclave credits
     Alice's incognito account with the amount minus the shielding fee (amount / 571);
   - private transfer: 0.5 TEER from Alice's to Bob's incognito account, sent through the last
     validateer of the setup (the other one if there are two); the fee is 0.01 TEER, and every
     validateer reports Bob's new balance;
   - unshield: 0.2 TEER from Bob's incognito account back to Bob on the parentchain (fee
     0.03 TEER); the enclave pays Bob from the shard vault.

The expected amounts follow the original's fee schedule; each step checks them exactly, so a demo
that prints "OK" has really moved the money. Balances are compared before and after, so a demo on
a setup that already ran one (a reused `--run-dir`) checks the same.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.table import Table

from .processes import Interrupted

UNIT = 10**12  # 1 TEER
TRANSFER_FEE = UNIT // 100
UNSHIELD_FEE = 3 * UNIT // 100
SHIELDING_FEE_DIVIDER = 571
PARENTCHAIN_AMOUNT = 1 * UNIT
SHIELD_AMOUNT = 2 * UNIT
PRIVATE_AMOUNT = UNIT // 2
UNSHIELD_AMOUNT = UNIT // 5


class DemoFailed(Exception):
    pass


def cli_program() -> str:
    beside = Path(sys.executable).parent / "integritee-cli"
    return str(beside) if beside.exists() else (shutil.which("integritee-cli") or "integritee-cli")


def teer(amount: int) -> str:
    return f"{amount / UNIT:,.6f} TEER"


def exact_teer(delta: int) -> str:
    """A signed amount in TEER with all 12 decimals (no float rounding)."""
    whole, frac = divmod(abs(delta), UNIT)
    return f"{'-' if delta < 0 else '+'}{whole:,}.{frac:012d}"


@dataclass
class Demo:
    node_port: int
    trusted_ports: list[int]
    cwd: Path
    console: Console
    should_stop: Callable[[], bool]
    wait_timeout: float = 60.0
    rows: list[tuple[str, int, int, int]] = field(default_factory=list)

    # -- running the CLI --------------------------------------------------------------------

    def cli(self, *args: str, worker: int | None = None, quiet: bool = False) -> str:
        if self.should_stop():
            raise Interrupted()
        prefix = ["-p", str(self.node_port)]
        if worker is not None:
            prefix += ["-P", str(self.trusted_ports[worker])]
        shown = " ".join(["integritee-cli", *prefix, *args])
        if not quiet:
            self.console.print(f"  [dim]$ {shown}[/dim]")
        try:
            done = subprocess.run(
                [cli_program(), *prefix, *args],
                capture_output=True,
                text=True,
                cwd=self.cwd,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            raise DemoFailed(f"`{shown}` did not finish within 120 s") from None
        if done.returncode != 0:
            if self.should_stop():
                raise Interrupted()
            raise DemoFailed(f"`{shown}` failed:\n{(done.stderr or done.stdout).strip()[-1500:]}")
        return done.stdout.strip()

    def balance(self, account: str) -> int:
        return int(self.cli("balance", account, quiet=True).splitlines()[-1])

    def trusted_balance(self, account: str, mrenclave: str, worker: int = 0) -> int:
        out = self.cli("trusted", "-m", mrenclave, "balance", account, worker=worker, quiet=True)
        return int(out.splitlines()[-1])

    def wait_for(self, what: str, read: Callable[[], int], expected: int) -> int:
        """Poll `read` until it returns `expected` (the enclave acts on finalized blocks)."""
        deadline = time.monotonic() + self.wait_timeout
        value = read()
        while value != expected:
            if time.monotonic() > deadline:
                raise DemoFailed(
                    f"{what}: expected {expected} ({teer(expected)}), still {value} after "
                    f"{self.wait_timeout:.0f} s"
                )
            time.sleep(0.5)
            value = read()
        return value

    def check(self, what: str, before: int, after: int, delta: int) -> None:
        self.rows.append((what, before, after, delta))
        sign = "+" if after >= before else "-"
        self.console.print(
            f"  {what}: {teer(before)} -> {teer(after)} ({sign}{teer(abs(after - before))})"
        )
        if after - before != delta:
            raise DemoFailed(f"{what} changed by {after - before}, expected {delta}")

    # -- the story ----------------------------------------------------------------------------

    def run(self) -> None:
        started = time.monotonic()
        self.parentchain()
        if not self.trusted_ports:
            self.console.print("\n[yellow]No validateer in this setup: sidechain part skipped.[/]")
        elif not trusted_cli_available():
            self.console.print(
                "\n[yellow]This integritee-cli has no `trusted` commands yet: sidechain part "
                "skipped.[/]"
            )
        else:
            self.sidechain()
        self.summary()
        self.console.print(f"[bold green]demo OK[/] ({time.monotonic() - started:.1f} s)")

    def parentchain(self) -> None:
        self.console.rule("[bold]Demo 1: a transfer on the parentchain")
        before = self.balance("//Bob")
        self.cli("transfer", "//Alice", "//Bob", str(PARENTCHAIN_AMOUNT))
        after = self.wait_for(
            "Bob's balance", lambda: self.balance("//Bob"), before + PARENTCHAIN_AMOUNT
        )
        self.check("//Bob on the parentchain", before, after, PARENTCHAIN_AMOUNT)

    def sidechain(self) -> None:
        last = len(self.trusted_ports) - 1
        self.console.rule("[bold]Demo 2: shield, private transfer, unshield via the validateer")
        self.console.print(
            "The validateer's enclave identifies its code by its MRENCLAVE, which is also the "
            "default shard; the shard vault is the parentchain account that holds shielded funds."
        )
        mrenclave = self.cli("trusted", "get-fingerprint", worker=0).splitlines()[-1]
        vault = self.cli("trusted", "-m", mrenclave, "get-shard-vault", worker=0).splitlines()[-1]
        self.console.print(f"  MRENCLAVE / shard: [cyan]{mrenclave}[/]  vault: [cyan]{vault}[/]")

        def alice() -> int:
            return self.trusted_balance("//Alice", mrenclave, 0)

        def bob(worker: int) -> Callable[[], int]:
            return lambda: self.trusted_balance("//Bob", mrenclave, worker)

        alice_before, bob_before = alice(), bob(0)()
        bob_l1_before = self.balance("//Bob")

        self.console.print(f"\n[bold]Shield[/] {teer(SHIELD_AMOUNT)}: //Alice pays the shard vault")
        self.cli("transfer", "//Alice", vault, str(SHIELD_AMOUNT))
        credited = SHIELD_AMOUNT - SHIELD_AMOUNT // SHIELDING_FEE_DIVIDER
        alice_shielded = self.wait_for("Alice's incognito balance", alice, alice_before + credited)
        self.check("//Alice incognito (shielded)", alice_before, alice_shielded, credited)

        via = f"validateer {last + 1}"
        self.console.print(
            f"\n[bold]Private transfer[/] of {teer(PRIVATE_AMOUNT)} //Alice -> //Bob via {via} "
            "(encrypted to the enclave's shielding key; the parentchain sees only ciphertext)"
        )
        self.cli(
            "trusted", "-m", mrenclave, "transfer", "//Alice", "//Bob", str(PRIVATE_AMOUNT),
            worker=last,
        )  # fmt: skip
        for worker in range(len(self.trusted_ports)):
            bob_now = self.wait_for(
                f"Bob's incognito balance on validateer {worker + 1}",
                bob(worker),
                bob_before + PRIVATE_AMOUNT,
            )
        self.check("//Bob incognito (received)", bob_before, bob_now, PRIVATE_AMOUNT)
        alice_after = alice()
        self.check(
            "//Alice incognito (sent + fee)",
            alice_shielded,
            alice_after,
            -(PRIVATE_AMOUNT + TRANSFER_FEE),
        )

        self.console.print(
            f"\n[bold]Unshield[/] {teer(UNSHIELD_AMOUNT)}: //Bob's incognito account -> //Bob "
            "on the parentchain (paid out of the shard vault)"
        )
        self.cli(
            "trusted", "-m", mrenclave, "unshield-funds", "//Bob", "//Bob", str(UNSHIELD_AMOUNT),
            worker=0,
        )  # fmt: skip
        bob_unshielded = self.wait_for(
            "Bob's incognito balance", bob(0), bob_now - UNSHIELD_AMOUNT - UNSHIELD_FEE
        )
        self.check(
            "//Bob incognito (unshielded + fee)",
            bob_now,
            bob_unshielded,
            -(UNSHIELD_AMOUNT + UNSHIELD_FEE),
        )
        bob_l1_after = self.wait_for(
            "Bob's parentchain balance",
            lambda: self.balance("//Bob"),
            bob_l1_before + UNSHIELD_AMOUNT,
        )
        self.check(
            "//Bob on the parentchain (paid out)", bob_l1_before, bob_l1_after, UNSHIELD_AMOUNT
        )

    def summary(self) -> None:
        table = Table(title="Demo balances (1 TEER = 10^12)")
        table.add_column("account")
        table.add_column("before", justify="right")
        table.add_column("after", justify="right")
        table.add_column("change (TEER)", justify="right")
        for what, before, after, delta in self.rows:
            table.add_row(what, teer(before), teer(after), exact_teer(delta))
        self.console.print(table)


def trusted_cli_available() -> bool:
    done = subprocess.run(
        [cli_program(), "trusted", "--help"], capture_output=True, text=True, timeout=60
    )
    return done.returncode == 0
