"""The sidechain ("trusted") commands of integritee-cli, and `shield-funds`.

`shield-funds FROM TO AMOUNT SHARD` (a parentchain command): encrypt TO's 32-byte account id with
the enclave's shielding key and send `EnclaveBridge.shield_funds`, waiting until finalized. Unlike
the original it refuses (without `--force`) when the worker's shard has a vault: such a shard
does not credit enclave-bridge shielding, and the funds would be stranded in the bonding account.

`trusted [-m MRENCLAVE] [-s SHARD] [-a XT_SIGNER] [-d] COMMAND`, as the original:
- without `-m` the MRENCLAVE is fetched from the worker (`author_getFingerprint`); the shard
  defaults to the MRENCLAVE; both are base58;
- `new-account`, `list-accounts`: the keystore `./my_trusted_keystore/<base58 shard>/`;
- `balance`, `nonce`: the trusted getter `account_info`, signed by the account (or by
  `--session-proxy`); print `data.free` / `nonce` only;
- `transfer`, `unshield-funds [-e]`: trusted calls. The nonce comes from the account's getter;
  the call is signed over mrenclave and shard. Indirect (default): wrapped as
  `TrustedOperation::indirect_call`, encrypted to the shielding key and sent with
  `EnclaveBridge.invoke` signed by `--xt-signer`; then the command waits (at most 10 blocks) for
  the enclave's `ProcessedParentchainBlock` of the invocation block, which fails the command when
  its merkle root says nothing was executed (an ignored invocation). Direct (`--direct`): a
  `direct_call` submitted to the worker, printing `Trusted call 0x<top hash> is <Status>` per
  status update until a final one; a call that ends Invalid, Dropped or Usurped fails the
  command. The worker's TLS key is first pinned against the enclave registry on the node
  (`trusted_client.pin_enclave`): when it matches, the connection accepts only that certificate
  and the call goes without RSA (`author_submitAndWatchTrustedOperation`, unless `--rsa`), and
  a MRENCLAVE not given with `-m` is the registry's; otherwise (a warning says why) the call is
  RSA-encrypted to `author_submitAndWatchExtrinsic` over an unverified connection, as the
  original does;
- `get-fingerprint [-x]`, `get-shard [-x] [-a]`, `get-shard-vault` (ss58), `get-total-issuance`,
  `get-sidechain-header` (the original's Debug form of the latest header), `version`;
- `benchmark` (module `integritee.cli.benchmark`).

Output lines follow the original CLI; commands whose result scripts read print only that result.
`register(group)` adds `shield-funds` and the `trusted` group to the main group.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import click

from integritee.cli.accounts import resolve_account_id, resolve_signer, ss58
from integritee.cli.chain_client import ChainClient
from integritee.cli.context import BALANCE, KEYSTORE_PATH, CliConfig, CliError, pass_config
from integritee.cli.keystore import ED25519_KEY_TYPE, SR25519_KEY_TYPE, LocalKeystore
from integritee.cli.trusted_client import (
    FAILED_STATUSES,
    DirectCallFailed,
    DirectSubmitter,
    PinError,
    PinnedEnclave,
    ProcessedBlock,
    TrustedClient,
    WorkerError,
    b58_hash,
    encrypt_operation,
    format_sidechain_header,
    invoke_request,
    pin_enclave,
    require_executed,
    status_line,
    to_b58,
    wait_for_processed_block,
)
from integritee.codec.hexutil import to_hex
from integritee.codec.scale import EnumValue
from integritee.crypto import Keypair
from integritee.trusted.calls import (
    balance_transfer,
    balance_transfer_with_note,
    balance_unshield,
    balance_unshield_through_enclave_bridge_pallet,
    sign_call,
    trusted_operation_hash,
)

log = logging.getLogger("integritee.cli")

TRUSTED_KEYSTORE_PATH = "my_trusted_keystore"
_STATUS_NAMES = {"in_block": "InBlock", "inBlock": "InBlock", "finalized": "Finalized"}


def _b58_option(what: str):  # type: ignore[no-untyped-def]
    def convert(ctx: click.Context, param: click.Parameter, value: str | None) -> bytes | None:
        if value is None:
            return None
        try:
            return b58_hash(value, what)
        except CliError as e:
            raise click.BadParameter(e.message) from None

    return convert


@dataclass
class TrustedArgs:
    """The `trusted` group's options, with the worker connection and identifiers resolved lazily."""

    config: CliConfig
    mrenclave_arg: bytes | None = None
    shard_arg: bytes | None = None
    xt_signer: str = "//Alice"
    direct: bool = False
    rsa: bool = False
    _client: TrustedClient | None = field(default=None, repr=False)
    _mrenclave: bytes | None = field(default=None, repr=False)
    _pinned: PinnedEnclave | None = field(default=None, repr=False)
    _pin_tried: bool = field(default=False, repr=False)

    def pinned(self) -> PinnedEnclave | None:
        """The worker's enclave, pinned against the registry (tried once; None if it fails)."""
        if not self._pin_tried:
            self._pin_tried = True
            endpoint = self.config.worker_endpoint
            try:
                self._pinned = pin_enclave(self.config.node_endpoint, endpoint, self.mrenclave_arg)
            except PinError as e:
                log.warning(
                    "the worker's TLS key is not pinned (%s): direct calls are RSA-encrypted "
                    "over an unverified connection",
                    e.message,
                )
            else:
                log.info(
                    "pinned the TLS key of %s: registered enclave %s (MRENCLAVE %s)",
                    endpoint,
                    ss58(self._pinned.public_key),
                    to_b58(self._pinned.mrenclave),
                )
        return self._pinned

    def client(self) -> TrustedClient:
        if self._client is None:
            # direct calls carry the signed operation: connect to the pinned enclave if possible
            pinned = self.pinned() if self.direct else None
            ssl = pinned.ssl_context() if pinned is not None else False
            self._client = TrustedClient(self.config.worker_endpoint, ssl=ssl)
        return self._client

    def submitter(self) -> DirectSubmitter:
        """Direct calls go without RSA over a pinned connection (unless `--rsa`)."""
        self.client()
        if self._pinned is not None and not self.rsa:
            log.info("submitting without RSA over the pinned connection")
            return DirectSubmitter(self.shard())
        return DirectSubmitter(self.shard(), self.client().shielding_key())

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def mrenclave(self) -> bytes:
        if self.mrenclave_arg is not None:
            return self.mrenclave_arg
        pinned = self.pinned() if self.direct else None
        if pinned is not None:
            return pinned.mrenclave  # the registry's, not the worker's word
        if self._mrenclave is None:
            log.warning(
                "no --mrenclave argument provided; fetching the enclave fingerprint from the "
                "worker (trusting it)"
            )
            self._mrenclave = self.client().fingerprint()
        return self._mrenclave

    def shard(self) -> bytes:
        return self.shard_arg if self.shard_arg is not None else self.mrenclave()

    def keystore(self) -> LocalKeystore:
        return LocalKeystore.open(Path(TRUSTED_KEYSTORE_PATH) / to_b58(self.shard()))

    def signer(self, account: str, session_proxy: str | None = None) -> tuple[bytes, Keypair]:
        """(the account acted for, the key that signs for it)."""
        keystore = self.keystore()
        if session_proxy is None:
            pair = resolve_signer(account, keystore)
            return pair.public_key, pair
        return resolve_account_id(account), resolve_signer(session_proxy, keystore)

    def nonce(self, account: bytes, signer: Keypair) -> int:
        info = self.client().account_info(self.shard(), account, signer)
        return 0 if info is None else info.nonce


pass_trusted = click.make_pass_decorator(TrustedArgs)


def send_trusted_call(args: TrustedArgs, call: EnumValue, signer: Keypair, nonce: int) -> None:
    """Sign `call` and have it executed, directly or indirectly as `--direct` says."""
    if args.direct:
        send_direct_call(args, call, signer, nonce)
    else:
        send_indirect_call(args, call, signer, nonce)


def send_direct_call(args: TrustedArgs, call: EnumValue, signer: Keypair, nonce: int) -> None:
    """Submit `call` to the worker and print its statuses until a final one."""
    submitter = args.submitter()
    top = sign_call(call, signer, nonce, args.mrenclave(), args.shard()).into_trusted_operation(
        direct=True
    )

    def show(top_hash: bytes, status: EnumValue) -> None:
        click.echo(status_line(top_hash, status))

    final = args.client().submit_and_watch(submitter, top, show)
    if final.name in FAILED_STATUSES:
        raise DirectCallFailed(trusted_operation_hash(top), final)


def send_indirect_call(args: TrustedArgs, call: EnumValue, signer: Keypair, nonce: int) -> None:
    """Sign `call` and have it executed through `EnclaveBridge.invoke` (indirect invocation)."""
    mrenclave, shard = args.mrenclave(), args.shard()
    top = sign_call(call, signer, nonce, mrenclave, shard).into_trusted_operation(direct=False)
    cyphertext = encrypt_operation(args.client().shielding_key(), top)
    xt_signer = resolve_signer(args.xt_signer, LocalKeystore.open(KEYSTORE_PATH))
    with ChainClient.connect(args.config.node_endpoint) as chain:
        invoke = chain.compose_call(
            "EnclaveBridge", "invoke", {"request": invoke_request(shard, cyphertext)}
        )
        result = chain.submit_call(invoke, xt_signer, wait="in_block")
        click.echo(
            "[+] invoke TrustedOperation extrinsic success. extrinsic hash: "
            f"{result.extrinsic_hash} / status: {_STATUS_NAMES.get(result.status, result.status)}"
            f" / block hash: {result.block_hash}"
        )
        assert result.block_hash is not None
        log.info(
            "trusted call extrinsic sent for shard %s and included in parentchain block %s",
            to_b58(shard),
            result.block_hash,
        )
        log.info("waiting for execution confirmation from the enclave...")

        def show(event: ProcessedBlock) -> None:
            click.echo(f"EnclaveBridge::{event}")

        require_executed(wait_for_processed_block(chain, shard, result.block_hash, on_event=show))


# ---------------------------------------------------------------------------------------------
# shield-funds (parentchain command)


def _refuse_shard_with_vault(worker: TrustedClient, shard: bytes) -> None:
    """A shard with a vault does not credit `EnclaveBridge.shield_funds` (the STF refuses it with
    EnclaveBridgeShieldingDisabledIfVaultAssigned) while the funds stay in the bonding account:
    refuse to send rather than strand them."""
    if worker.shard() != shard:
        return
    try:
        vault, _parentchain = worker.shard_vault()
    except WorkerError:  # no vault: shielding through the enclave bridge is how it is done
        return
    raise CliError(
        f"shard {to_b58(shard)} has a shard vault ({ss58(vault)}): its enclave does not credit "
        "EnclaveBridge.shield_funds, the funds would be stranded; shield with a parentchain "
        "transfer to the vault instead (or pass --force)"
    )


@click.command("shield-funds")
@click.argument("sender", metavar="FROM")
@click.argument("to")
@click.argument("amount", type=BALANCE)
@click.argument("shard", callback=_b58_option("shard"))
@click.option(
    "--force", is_flag=True,
    help="Send even if the worker's shard has a vault (the enclave will not credit it).",
)  # fmt: skip
@pass_config
def shield_funds(
    config: CliConfig, sender: str, to: str, amount: int, shard: bytes, force: bool
) -> None:
    """Shield AMOUNT from FROM's parentchain account to the incognito account TO on SHARD."""
    signer = resolve_signer(sender, LocalKeystore.open(KEYSTORE_PATH))
    to_id = resolve_account_id(to)
    with TrustedClient(config.worker_endpoint) as worker:
        encrypted = worker.shielding_key().encrypt(to_id)
        if not force:
            _refuse_shard_with_vault(worker, shard)
    with ChainClient.connect(config.node_endpoint) as chain:
        call = chain.compose_call(
            "EnclaveBridge",
            "shield_funds",
            {
                "shard": to_hex(shard),
                "incognito_account_encrypted": to_hex(encrypted),
                "amount": amount,
            },
        )
        result = chain.submit_call(call, signer, wait="finalized")
    click.echo(
        f"[+] shield funds success. extrinsic hash: {result.extrinsic_hash} / status: "
        f"{_STATUS_NAMES.get(result.status, result.status)} / block hash: {result.block_hash}"
    )


# ---------------------------------------------------------------------------------------------
# the trusted group


@click.group("trusted")
@click.option(
    "-m", "--mrenclave", callback=_b58_option("mrenclave"),
    help="Targeted worker MRENCLAVE (base58); fetched from the worker if omitted.",
)  # fmt: skip
@click.option(
    "-s", "--shard", callback=_b58_option("shard"),
    help="Shard identifier (base58); defaults to the MRENCLAVE.",
)  # fmt: skip
@click.option(
    "-a", "--xt-signer", default="//Alice", show_default=True,
    help="Signer of the publicly observable parentchain extrinsic (indirect calls).",
)  # fmt: skip
@click.option(
    "-d", "--direct", is_flag=True,
    help="Direct invocation: submit trusted calls to the worker and watch their status.",
)  # fmt: skip
@click.option(
    "--rsa", is_flag=True,
    help="RSA-encrypt direct calls even when the worker's enclave key is pinned.",
)  # fmt: skip
@click.pass_context
def trusted(
    ctx: click.Context,
    mrenclave: bytes | None,
    shard: bytes | None,
    xt_signer: str,
    direct: bool,
    rsa: bool,
) -> None:
    """Commands for the sidechain (incognito accounts, trusted calls and getters)."""
    args = TrustedArgs(
        ctx.find_object(CliConfig) or CliConfig(), mrenclave, shard, xt_signer, direct, rsa
    )
    ctx.obj = args
    ctx.call_on_close(args.close)


@trusted.command("new-account")
@pass_trusted
def new_account(args: TrustedArgs) -> None:
    """Generate a new incognito account for the shard; print its ss58 address."""
    pair = args.keystore().generate()
    log.info("new account %s", ss58(pair.public_key))
    click.echo(ss58(pair.public_key))


@trusted.command("list-accounts")
@pass_trusted
def list_accounts(args: TrustedArgs) -> None:
    """List the incognito accounts of the shard's keystore (sr25519, then ed25519)."""
    store = args.keystore()
    log.info("sr25519 keys:")
    for public in store.public_keys(SR25519_KEY_TYPE):
        click.echo(ss58(public))
    log.info("ed25519 keys:")
    for public in store.public_keys(ED25519_KEY_TYPE):
        click.echo(ss58(public))


_session_proxy = click.option(
    "--session-proxy", default=None, help="A session proxy signing on behalf of the account."
)


@trusted.command("balance")
@click.argument("account")
@_session_proxy
@pass_trusted
def balance(args: TrustedArgs, account: str, session_proxy: str | None) -> None:
    """Print the free balance of an incognito ACCOUNT (a trusted getter it signs)."""
    who, signer = args.signer(account, session_proxy)
    info = args.client().account_info(args.shard(), who, signer)
    click.echo(0 if info is None else info.data.free)


@trusted.command("nonce")
@click.argument("account")
@_session_proxy
@pass_trusted
def nonce(args: TrustedArgs, account: str, session_proxy: str | None) -> None:
    """Print the nonce of an incognito ACCOUNT."""
    who, signer = args.signer(account, session_proxy)
    click.echo(args.nonce(who, signer))


@trusted.command("transfer")
@click.argument("sender", metavar="FROM")
@click.argument("to")
@click.argument("amount", type=BALANCE)
@click.argument("note", required=False)
@_session_proxy
@pass_trusted
def transfer(
    args: TrustedArgs,
    sender: str,
    to: str,
    amount: int,
    note: str | None,
    session_proxy: str | None,
) -> None:
    """Transfer AMOUNT from the incognito account FROM to TO (optionally with a NOTE)."""
    who, signer = args.signer(sender, session_proxy)
    to_id = resolve_account_id(to)
    log.info("from ss58 is %s", ss58(who))
    log.info("to ss58 is %s", ss58(to_id))
    current = args.nonce(who, signer)
    click.echo(
        f"send trusted call transfer from {ss58(who)} to {ss58(to_id)}: {amount}, nonce: "
        f"{current}, signing using mrenclave: {to_b58(args.mrenclave())} and shard: "
        f"{to_b58(args.shard())}"
    )
    if note is None:
        call = balance_transfer(who, to_id, amount)
    else:
        call = balance_transfer_with_note(who, to_id, amount, note.encode())
    send_trusted_call(args, call, signer, current)


@trusted.command("unshield-funds")
@click.argument("sender", metavar="FROM")
@click.argument("to")
@click.argument("amount", type=BALANCE)
@click.option(
    "-e", "--enclave-bridge", is_flag=True,
    help="Pay out through the enclave bridge instead of the shard vault.",
)  # fmt: skip
@_session_proxy
@pass_trusted
def unshield_funds(
    args: TrustedArgs,
    sender: str,
    to: str,
    amount: int,
    enclave_bridge: bool,
    session_proxy: str | None,
) -> None:
    """Unshield AMOUNT from the incognito account FROM to the parentchain account TO."""
    who, signer = args.signer(sender, session_proxy)
    to_id = resolve_account_id(to)
    click.echo(
        f"send trusted call unshield_funds from {ss58(who)} to {ss58(to_id)}: {amount}"
        + (" through enclave-bridge" if enclave_bridge else "")
    )
    current = args.nonce(who, signer)
    shard = args.shard()
    if enclave_bridge:
        call = balance_unshield_through_enclave_bridge_pallet(who, to_id, amount, shard)
    else:
        call = balance_unshield(who, to_id, amount, shard)
    send_trusted_call(args, call, signer, current)


_hex_flag = click.option("-x", "--hex", "as_hex", is_flag=True, help="Also print as hex.")


@trusted.command("get-fingerprint")
@_hex_flag
@pass_trusted
def get_fingerprint(args: TrustedArgs, as_hex: bool) -> None:
    """Print the worker's fingerprint (MRENCLAVE) in base58."""
    fingerprint = args.client().fingerprint()
    click.echo(to_b58(fingerprint))
    if as_hex:
        click.echo(to_hex(fingerprint))


@trusted.command("get-shard")
@_hex_flag
@click.option("-a", "--ascii", "as_ascii", is_flag=True, help="Also print as ASCII.")
@pass_trusted
def get_shard(args: TrustedArgs, as_hex: bool, as_ascii: bool) -> None:
    """Print the worker's shard in base58."""
    shard = args.client().shard()
    click.echo(to_b58(shard))
    if as_hex:
        click.echo(to_hex(shard))
    if as_ascii:
        click.echo(shard.decode("utf-8", errors="replace"))


@trusted.command("get-shard-vault")
@pass_trusted
def get_shard_vault(args: TrustedArgs) -> None:
    """Print the shard vault's parentchain account (ss58); transfers to it are shielded."""
    vault, parentchain = args.client().shard_vault()
    log.info("shard vault on parentchain %s", parentchain)
    click.echo(ss58(vault))


@trusted.command("get-total-issuance")
@pass_trusted
def get_total_issuance(args: TrustedArgs) -> None:
    """Print the total issuance of the shard's native token."""
    click.echo(args.client().total_issuance(args.shard()))


@trusted.command("get-sidechain-header")
@pass_trusted
def get_sidechain_header(args: TrustedArgs) -> None:
    """Print the worker's latest sidechain block header."""
    click.echo(format_sidechain_header(args.client().sidechain_header()))


@trusted.command("version")
@pass_trusted
def version(args: TrustedArgs) -> None:
    """Print the enclave's version string."""
    click.echo(args.client().version())


def register(group: click.Group) -> None:
    # imported here: the benchmark module builds on this one's TrustedArgs
    from integritee.cli.benchmark import benchmark

    trusted.add_command(benchmark)
    group.add_command(shield_funds)
    group.add_command(trusted)
