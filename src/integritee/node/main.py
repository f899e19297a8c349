"""`integritee-node`: command line, logging, and the start/stop of the node's servers."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import click

from integritee.crypto.keys import Keypair
from integritee.rpc.server import RpcServer
from integritee.storage.kv import KVStoreError

from .api import NodeApi
from .blockchain import ChainError
from .chain_spec import ChainSpecError, resolve_chain
from .metrics import NodeMetrics
from .service import Node, NodeConfig

NODE_NAME = "Integritee Node"
VERSION = "1.13.0-python"

log = logging.getLogger("integritee.node")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-5s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def _authority_uri(dev: bool, validator: bool, key: str | None, named: str | None) -> str | None:
    if named:
        return f"//{named}"
    if key:
        return key
    if dev:
        return "//Alice"
    return None if not validator else "//Alice"


async def run_node(
    config: NodeConfig,
    rpc_host: str,
    rpc_port: int,
    prometheus_host: str,
    prometheus_port: int | None,
    max_request_bytes: int,
) -> None:
    node = Node(config)
    metrics = NodeMetrics(node)
    # WS frames up to twice the request limit are read so that an oversized request gets a -32007
    # reply (as jsonrpsee does); larger frames close the connection without being buffered.
    server = RpcServer(
        name="node",
        max_request_bytes=max_request_bytes,
        ws_max_message_bytes=2 * max_request_bytes + 1024 * 1024,
        on_request=metrics.on_rpc,
    )
    NodeApi(node, server, NODE_NAME, VERSION)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        port = await server.start(rpc_host, rpc_port)
        log.info("Running JSON-RPC server: addr=%s:%d", rpc_host, port)
        if prometheus_port is not None:
            mport = await metrics.start(prometheus_host, prometheus_port)
            log.info("Prometheus exporter started at %s:%d", prometheus_host, mport)
        await node.start()
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()
        await metrics.stop()
        await node.stop()


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--dev", is_flag=True, help="Development chain: Alice authors and finalizes, temporary storage."
)
@click.option("--chain", default=None, help="dev, local, or the path of a raw chain spec JSON.")
@click.option(
    "-d", "--base-path", type=click.Path(path_type=Path), default=None, help="Data directory."
)
@click.option("--tmp", is_flag=True, help="Use a temporary base path removed on exit.")
@click.option(
    "--rpc-port",
    type=int,
    default=9944,
    show_default=True,
    help="JSON-RPC port (HTTP and WS); 0 picks a free port.",
)
@click.option("--port", type=int, default=30333, show_default=True, help="P2P port.")
@click.option(
    "--prometheus-port", type=int, default=9615, show_default=True, help="Prometheus /metrics port."
)
@click.option("--no-prometheus", is_flag=True, help="Do not serve metrics.")
@click.option(
    "--rpc-external",
    "--unsafe-rpc-external",
    "--ws-external",
    "rpc_external",
    is_flag=True,
    help="Listen on all interfaces.",
)
@click.option("--prometheus-external", is_flag=True, help="Serve metrics on all interfaces.")
@click.option(
    "--rpc-max-request-size",
    type=int,
    default=15,
    show_default=True,
    help="Maximum RPC request size in MiB.",
)
@click.option(
    "--block-time-ms", type=int, default=6000, show_default=True, help="Aura slot duration."
)
@click.option(
    "--validator", is_flag=True, help="Author blocks with --key (or //Alice on dev chains)."
)
@click.option(
    "--key", default=None, help="Secret URI of the authority keys (sr25519 Aura, ed25519 GRANDPA)."
)
@click.option(
    "--alice", "named", flag_value="Alice", help="Shortcut for --validator --key //Alice."
)
@click.option("--bob", "named", flag_value="Bob", help="Shortcut for --validator --key //Bob.")
@click.option("--charlie", "named", flag_value="Charlie")
@click.option("--dave", "named", flag_value="Dave")
@click.option("--eve", "named", flag_value="Eve")
@click.option("--ferdie", "named", flag_value="Ferdie")
@click.option("--name", default=None, help="Node name shown in logs.")
@click.option(
    "-l", "--log-level", default="info", show_default=True, help="error, warning, info, debug."
)
@click.pass_context
def main(
    ctx: click.Context,
    dev: bool,
    chain: str | None,
    base_path: Path | None,
    tmp: bool,
    rpc_port: int,
    port: int,
    prometheus_port: int,
    no_prometheus: bool,
    rpc_external: bool,
    prometheus_external: bool,
    rpc_max_request_size: int,
    block_time_ms: int,
    validator: bool,
    key: str | None,
    named: str | None,
    name: str | None,
    log_level: str,
) -> None:
    """The Integritee parentchain node."""
    if ctx.invoked_subcommand is not None:
        ctx.obj = {"dev": dev, "chain": chain}
        return
    setup_logging(log_level)
    try:
        spec = resolve_chain(chain, dev)
    except ChainSpecError as e:
        raise click.ClickException(str(e)) from None
    if block_time_ms < 50:
        raise click.BadParameter("must be at least 50", param_hint="--block-time-ms")
    uri = _authority_uri(dev, validator, key, named)
    authority = Keypair.from_uri(uri) if uri else None
    finality = Keypair.from_uri(uri, "ed25519") if uri else None
    temp_dir: str | None = None
    if base_path is None:
        if dev or tmp:
            temp_dir = tempfile.mkdtemp(prefix="integritee-node-")
            base_path = Path(temp_dir)
        else:
            base_path = Path.home() / ".local" / "share" / "integritee-node"
    base_path.mkdir(parents=True, exist_ok=True)
    log.info("Integritee Node %s, chain %s, base path %s", VERSION, spec.name, base_path)
    if authority is not None:
        log.info("Authority key %s", authority.ss58_address(42))
    config = NodeConfig(
        spec=spec,
        base_path=base_path,
        block_time_ms=block_time_ms,
        authority=authority,
        finality_key=finality,
        name=name or NODE_NAME,
    )
    host = "0.0.0.0" if rpc_external else "127.0.0.1"
    mhost = "0.0.0.0" if prometheus_external else "127.0.0.1"
    try:
        asyncio.run(
            run_node(
                config,
                host,
                rpc_port,
                mhost,
                None if no_prometheus else prometheus_port,
                rpc_max_request_size * 1024 * 1024,
            )
        )
    except (OSError, KVStoreError, ChainError) as e:
        raise click.ClickException(f"cannot start: {e}") from None
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


@main.command("build-spec")
@click.option("--chain", default=None, help="dev, local, or a chain spec path.")
@click.option("--dev", is_flag=True)
@click.option("--raw", is_flag=True, help="Raw genesis storage (the only form this node writes).")
@click.pass_context
def build_spec(ctx: click.Context, chain: str | None, dev: bool, raw: bool) -> None:
    """Print the chain specification as JSON."""
    parent = ctx.obj or {}
    try:
        spec = resolve_chain(chain or parent.get("chain"), dev or parent.get("dev", False))
    except ChainSpecError as e:
        raise click.ClickException(str(e)) from None
    click.echo(json.dumps(spec.to_json(), indent=2))
