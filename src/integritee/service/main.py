"""`integritee-service`: the validateer's command line (flags and subcommands of the original)."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import base58
import click

from .config import ServiceConfig
from .enclave_host import EnclaveHost, EnclaveProcessError

log = logging.getLogger("integritee.service")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-5s [service] %(name)s: %(message)s",
        stream=sys.stderr,
    )


@click.group(context_settings={"help_option_names": ["--help"]})
@click.option("-u", "--integritee-rpc-url", "node_url", default="ws://127.0.0.1", show_default=True)
@click.option("-p", "--integritee-rpc-port", "node_port", type=int, default=9944, show_default=True)
@click.option(
    "-d", "--data-dir", type=click.Path(path_type=Path), default=Path("."), show_default=True
)
@click.option("--ws-external", is_flag=True, help="Bind the servers to 0.0.0.0.")
@click.option("-r", "--mu-ra-port", type=int, default=3443, show_default=True)
@click.option("-P", "--trusted-worker-port", type=int, default=2000, show_default=True)
@click.option("-w", "--untrusted-worker-port", type=int, default=2001, show_default=True)
@click.option(
    "-T",
    "--trusted-external-address",
    default=None,
    help="URL registered on chain (default wss://<host>:<P>).",
)
@click.option(
    "-U", "--untrusted-external-address", default=None, help="Returned by author_getUntrustedUrl."
)
@click.option("-M", "--mu-ra-external-address", default=None, help="Returned by author_getMuRaUrl.")
@click.option("--enable-metrics", is_flag=True)
@click.option("-i", "--metrics-port", type=int, default=8787, show_default=True)
@click.option(
    "-h",
    "--untrusted-http-port",
    type=int,
    default=4545,
    show_default=True,
    help="GET /is_initialized.",
)
@click.option(
    "-c",
    "--clean-reset",
    is_flag=True,
    help="Purge light-client DB, shards and sidechain DB (not the sealed keys).",
)
@click.option(
    "--sealing-key",
    default=None,
    help="Simulation sealing key file (default ~/.config/integritee/sim_sealing_key).",
)
@click.option("--log-level", default="info", show_default=True)
@click.pass_context
def main(ctx: click.Context, **options: object) -> None:
    """The Integritee validateer (untrusted host of the enclave)."""
    setup_logging(str(options["log_level"]))
    ctx.obj = ServiceConfig.from_options(options)


async def _identity(config: ServiceConfig) -> dict:
    host = EnclaveHost(config.data_dir, config.sealing_key, config.log_level)
    await host.start()
    try:
        return await host.ecall_raw("enclave_identity", [])
    finally:
        await host.stop()


def _run_identity(config: ServiceConfig) -> dict:
    try:
        return asyncio.run(_identity(config))
    except EnclaveProcessError as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.pass_obj
def mrenclave(config: ServiceConfig) -> None:
    """Print the enclave's MRENCLAVE (base58)."""
    info = _run_identity(config)
    click.echo(base58.b58encode(bytes.fromhex(info["mrenclave"][2:])).decode())


@main.command("signing-key")
@click.pass_obj
def signing_key(config: ServiceConfig) -> None:
    """Print the enclave's signing (ed25519) public key and its account."""
    from integritee.crypto.ss58 import ss58_encode

    info = _run_identity(config)
    key = bytes.fromhex(info["signing_public_key"][2:])
    click.echo(f"0x{key.hex()}")
    click.echo(ss58_encode(key, 42))


@main.command("shielding-key")
@click.pass_obj
def shielding_key(config: ServiceConfig) -> None:
    """Write the enclave's RSA shielding public key JSON to ./enclave-shielding-pubkey.json."""
    info = _run_identity(config)
    Path("enclave-shielding-pubkey.json").write_text(info["shielding_public_key_json"])
    click.echo(json.dumps({"written": "enclave-shielding-pubkey.json"}))


@main.command()
@click.argument("shard", required=False)
@click.option("--dev", is_flag=True, help="Fund the enclave account from //Alice (dev chains).")
@click.option(
    "--skip-ra", is_flag=True, help="Register with the Skip method (chains that allow it)."
)
@click.option(
    "--attestation", type=click.Choice(["skip", "sim-dcap", "gramine-dcap"]), default=None
)
@click.option(
    "--parentchain-sync-batch", type=click.IntRange(1, 1000), default=500, show_default=True
)
@click.option(
    "--slot-duration-ms", type=click.IntRange(50, 60_000), default=1000, show_default=True
)
@click.option("--sidechain-keep-blocks", type=click.IntRange(1), default=100, show_default=True)
@click.option(
    "--shard-vault/--no-shard-vault",
    default=True,
    show_default=True,
    help="A new shard gets a vault account (else shielding goes through EnclaveBridge).",
)
@click.pass_obj
def run(
    config: ServiceConfig,
    shard: str | None,
    dev: bool,
    skip_ra: bool,
    attestation: str | None,
    parentchain_sync_batch: int,
    slot_duration_ms: int,
    sidechain_keep_blocks: int,
    shard_vault: bool,
) -> None:
    """Start the validateer: enclave, registration, parentchain sync, servers."""
    from .worker import Validateer

    if shard is not None:
        try:
            raw = base58.b58decode(shard)
        except ValueError:
            raise click.BadParameter("not base58", param_hint="SHARD") from None
        if len(raw) != 32:
            raise click.BadParameter("a shard is 32 bytes", param_hint="SHARD")
        config.shard = raw
    config.dev = dev
    config.sync_batch = parentchain_sync_batch
    config.slot_duration_ms = slot_duration_ms
    config.sidechain_keep_blocks = sidechain_keep_blocks
    config.shard_vault = shard_vault
    config.attestation = attestation or (
        "skip" if skip_ra else ("sim-dcap" if dev else "gramine-dcap")
    )
    try:
        code = asyncio.run(Validateer(config).run())
    except (EnclaveProcessError, ConnectionError) as e:
        raise click.ClickException(str(e)) from None
    sys.exit(code)


if __name__ == "__main__":
    main()
