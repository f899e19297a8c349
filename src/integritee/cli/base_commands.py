"""The parentchain ("base") commands of integritee-cli.

`new-account`, `list-accounts`, `balance`, `faucet`, `transfer`, `print-metadata`, `listen`.
Outputs follow the original CLI; where a script reads the result (`new-account`,
`list-accounts`, `balance`, `print-metadata`) stdout carries only that result, and progress
goes to the log on stderr. `register(group)` adds the commands to a click group.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import click

from integritee.cli.accounts import resolve_account_id, resolve_signer, ss58
from integritee.cli.chain_client import BlockRef, ChainClient, ChainEvent
from integritee.cli.context import BALANCE, KEYSTORE_PATH, CliConfig, pass_config
from integritee.cli.keystore import LocalKeystore
from integritee.crypto import dev_keypair

log = logging.getLogger("integritee.cli")

PREFUNDING_AMOUNT = 1_000_000_000
_STATUS_NAMES = {"in_block": "InBlock", "inBlock": "InBlock", "finalized": "Finalized"}


def connect(config: CliConfig) -> ChainClient:
    return ChainClient.connect(config.node_endpoint)


def keystore() -> LocalKeystore:
    return LocalKeystore.open(KEYSTORE_PATH)


@click.command("new-account")
def new_account() -> None:
    """Generate a new sr25519 account in ./my_keystore and print its ss58 address."""
    pair = keystore().generate()
    click.echo(ss58(pair.public_key))


@click.command("list-accounts")
def list_accounts() -> None:
    """List the sr25519 accounts of ./my_keystore, one ss58 address per line."""
    for public in keystore().public_keys():
        click.echo(ss58(public))


@click.command("balance")
@click.argument("account")
@pass_config
def balance(config: CliConfig, account: str) -> None:
    """Print the free balance of ACCOUNT (//Name, ss58, 0x public key or mnemonic)."""
    account_id = resolve_account_id(account)
    with connect(config) as chain:
        click.echo(chain.free_balance(account_id))


@click.command("faucet")
@click.argument("accounts", nargs=-1, required=True)
@pass_config
def faucet(config: CliConfig, accounts: tuple[str, ...]) -> None:
    """Send 1_000_000_000 from //Alice to each of ACCOUNTS."""
    recipients = [resolve_account_id(a) for a in accounts]
    alice = dev_keypair("Alice")
    with connect(config) as chain:
        nonce = chain.nonce(alice.public_key)
        for i, to in enumerate(recipients):
            call = chain.compose_call(
                "Balances",
                "transfer_keep_alive",
                {"dest": {"Id": "0x" + to.hex()}, "value": PREFUNDING_AMOUNT},
            )
            click.echo(f"Faucet drips to {ss58(to)} (Alice's nonce={nonce + i})")
            # The pool orders one sender's transactions by nonce, so once the last one is in
            # a block all earlier ones are too: watching only the last saves a block each.
            last = i == len(recipients) - 1
            chain.submit_call(call, alice, "in_block" if last else "none", nonce=nonce + i)


@click.command("transfer")
@click.argument("sender", metavar="FROM")
@click.argument("to")
@click.argument("amount", type=BALANCE)
@pass_config
def transfer(config: CliConfig, sender: str, to: str, amount: int) -> None:
    """Transfer AMOUNT from FROM to TO (Balances.transfer_allow_death), wait until InBlock."""
    signer = resolve_signer(sender, keystore())
    to_id = resolve_account_id(to)
    log.info("from ss58 is %s", ss58(signer.public_key))
    log.info("to ss58 is %s", ss58(to_id))
    with connect(config) as chain:
        call = chain.compose_call(
            "Balances",
            "transfer_allow_death",
            {"dest": {"Id": "0x" + to_id.hex()}, "value": amount},
        )
        result = chain.submit_call(call, signer)
        click.echo(
            f"[+] L1 extrinsic success. extrinsic hash: {result.extrinsic_hash} / "
            f"status: {_STATUS_NAMES.get(result.status, result.status)}({result.block_hash})"
        )
        click.echo(f"balance for {ss58(to_id)} is now {chain.free_balance(to_id)}")


@click.command("print-metadata")
@click.option("--summary", is_flag=True, help="Pallets with calls, events, storage, constants.")
@pass_config
def print_metadata(config: CliConfig, summary: bool) -> None:
    """Print the node's metadata as JSON."""
    with connect(config) as chain:
        value = chain.metadata_summary() if summary else chain.metadata_value()
    click.echo(json.dumps(value, indent=2, default=_json_default))


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    return str(value)


def format_event(event: ChainEvent) -> str:
    attrs = json.dumps(event.attributes, default=_json_default, separators=(", ", ": "))
    return f"decoded: phase {event.phase} event {event.qualified_name} {attrs}"


@click.command("listen")
@click.option(
    "-e", "--exit-after", "events", type=click.IntRange(min=0), help="Exit after N events."
)
@click.option(
    "-b", "--await-blocks", "blocks", type=click.IntRange(min=0), help="Exit after N blocks."
)
@pass_config
def listen(config: CliConfig, events: int | None, blocks: int | None) -> None:
    """Print new blocks and their events as they come."""
    if events == 0 or blocks == 0:
        return
    seen = {"events": 0, "blocks": 0}

    def on_block(block: BlockRef, block_events: list[ChainEvent]) -> bool:
        click.echo(f"[+] block #{block.number} {block.hash}: {len(block_events)} events")
        for event in block_events:
            click.echo(format_event(event))
            seen["events"] += 1
            if events is not None and seen["events"] >= events:
                return True
        seen["blocks"] += 1
        return blocks is not None and seen["blocks"] >= blocks

    with connect(config) as chain:
        log.info("subscribing to events")
        chain.follow_blocks(on_block)


COMMANDS: tuple[click.Command, ...] = (
    balance,
    new_account,
    list_accounts,
    print_metadata,
    faucet,
    transfer,
    listen,
)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
