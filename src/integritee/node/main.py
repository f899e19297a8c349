"""`integritee-node`: command line, logging, and the start/stop of the node's servers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
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
from .network.service import Network, NetworkConfig
from .network.wire import PeerAddress, parse_address
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


def load_node_key(
    node_key: str | None, key_file: Path | None, base_path: Path, chain_id: str
) -> Keypair:
    """The ed25519 network identity: --node-key (hex seed), --node-key-file, or a key file in
    the base path (created on first start, as Substrate's `network/secret_ed25519`)."""
    if node_key is not None:
        try:
            seed = bytes.fromhex(node_key.removeprefix("0x"))
        except ValueError:
            raise click.BadParameter("must be 32 bytes in hex", param_hint="--node-key") from None
        if len(seed) != 32:
            raise click.BadParameter("must be 32 bytes in hex", param_hint="--node-key")
        return Keypair.from_seed(seed, "ed25519")
    path = key_file or base_path / "chains" / chain_id / "network" / "secret_ed25519"
    if path.exists():
        raw = path.read_bytes()
        text = raw.strip().decode(errors="replace").removeprefix("0x")
        if len(text) == 64:
            with contextlib.suppress(ValueError):
                raw = bytes.fromhex(text)
        if len(raw) != 32:
            raise click.ClickException(f"node key file {path}: not a 32-byte ed25519 secret")
        return Keypair.from_seed(raw, "ed25519")
    if key_file is not None:
        raise click.ClickException(f"node key file {path} does not exist")
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = os.urandom(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(seed)
    return Keypair.from_seed(seed, "ed25519")


async def run_node(
    config: NodeConfig,
    rpc_host: str,
    rpc_port: int,
    prometheus_host: str,
    prometheus_port: int | None,
    max_request_bytes: int,
    network_config: NetworkConfig | None = None,
) -> None:
    node = Node(config)
    network = Network(node, network_config) if network_config is not None else None
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
        if network is not None:
            await network.start()
        await node.start()
        await stop.wait()
        log.info("shutting down")
    finally:
        await server.stop()
        await metrics.stop()
        if network is not None:
            await network.stop()
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
@click.option(
    "--port", type=int, default=30333, show_default=True, help="P2P port (0: a free one)."
)
@click.option(
    "--listen-addr",
    default=None,
    help="P2P listen address as /ip4/HOST/tcp/PORT (default /ip4/127.0.0.1/tcp/<--port>).",
)
@click.option(
    "--bootnodes",
    multiple=True,
    help="Peer to connect to: /ip4/HOST/tcp/PORT[/p2p/PEER_ID] or HOST:PORT[/PEER_ID]; repeatable, "
    "or several separated by spaces.",
)
@click.option("--node-key", default=None, help="The node's ed25519 network secret (32 bytes hex).")
@click.option(
    "--node-key-file",
    type=click.Path(path_type=Path),
    default=None,
    help="File with the network secret (raw 32 bytes or hex).",
)
@click.option(
    "--no-p2p", is_flag=True, help="Do not open the p2p port (a lone node; blocks only authored)."
)
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
@click.option(
    "--force-authoring",
    is_flag=True,
    help="Author blocks even without peers (implied by --dev).",
)
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
    listen_addr: str | None,
    bootnodes: tuple[str, ...],
    node_key: str | None,
    node_key_file: Path | None,
    no_p2p: bool,
    prometheus_port: int,
    no_prometheus: bool,
    rpc_external: bool,
    prometheus_external: bool,
    rpc_max_request_size: int,
    block_time_ms: int,
    validator: bool,
    key: str | None,
    named: str | None,
    force_authoring: bool,
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
        force_authoring=force_authoring or dev or no_p2p,
    )
    network_config = None
    if not no_p2p:
        network_config = _network_config(
            ctx,
            dev,
            spec.id,
            base_path,
            port,
            listen_addr,
            (*bootnodes, *spec.boot_nodes),
            node_key,
            node_key_file,
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
                network_config,
            )
        )
    except (OSError, KVStoreError, ChainError) as e:
        raise click.ClickException(f"cannot start: {e}") from None
    finally:
        if temp_dir is not None:
            shutil.rmtree(temp_dir, ignore_errors=True)


def _network_config(
    ctx: click.Context,
    dev: bool,
    chain_id: str,
    base_path: Path,
    port: int,
    listen_addr: str | None,
    bootnodes: tuple[str, ...],
    node_key: str | None,
    node_key_file: Path | None,
) -> NetworkConfig:
    key = load_node_key(node_key, node_key_file, base_path, chain_id)
    host = "127.0.0.1"
    port_given = ctx.get_parameter_source("port") != click.core.ParameterSource.DEFAULT
    if listen_addr is not None:
        try:
            addr = parse_address(listen_addr)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--listen-addr") from None
        host, port, port_given = addr.host, addr.port, True
    boot: list[PeerAddress] = []
    for item in bootnodes:
        for text in item.split():
            try:
                boot.append(parse_address(text))
            except ValueError as e:
                raise click.BadParameter(str(e), param_hint="--bootnodes") from None
    return NetworkConfig(
        node_key=key,
        listen_host=host,
        port=port,
        port_fallback=dev and not port_given,
        bootnodes=boot,
    )


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
