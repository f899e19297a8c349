"""Local-setup configurations: the original's JSON format, read into typed process specs.

A config is `{"nodes": [{"flags": [...]}], "workers": [{"flags": [...], "subcommand_flags": [...]}]}`
(the original's older `"node": {...}` for a single node is accepted too). Each entry may also name
its program (`"bin"`, default `integritee-node` / `integritee-service`) and a `"name"`; the
original's `"source"` key of workers is accepted and ignored. Workers always run the `run`
subcommand, followed by their `subcommand_flags`.

What the launcher adds so that every process is self-contained under one run directory:
- `{run_dir}` in any flag is replaced by the run directory;
- a node without `--base-path`/`-d`/`--tmp` gets `--base-path <run_dir>/<name>`;
- a worker without `-d` gets `-d <run_dir>/<name>/data`, without `--sealing-key` gets
  `<run_dir>/<name>/sealing_key` (outside its data dir, as the service requires);
- every port a process listens on is written out explicitly (defaults included), so that
  `remap_ports` can move a whole setup (`--port-offset`, `--free-ports`) consistently: a worker's
  `-p` (the node it talks to) is moved together with that node's `--rpc-port`.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

RUN_DIR_PLACEHOLDER = "{run_dir}"
NODE_PROGRAM = "integritee-node"
WORKER_PROGRAM = "integritee-service"
_NODE_KEYS = {"bin", "name", "flags"}
_TCP_IN_MULTIADDR = re.compile(r"/tcp/(\d+)")
_WORKER_KEYS = {"bin", "name", "source", "flags", "subcommand_flags"}


class ConfigError(Exception):
    """A config that cannot be launched; the message says what and where."""


@dataclass(frozen=True)
class PortFlag:
    """A flag whose value is a TCP port: `role` names it in tables and Prometheus targets."""

    role: str
    names: tuple[str, ...]
    default: int
    listen: bool = True  # False: the port of another process (a worker's node)


NODE_PORT_FLAGS = (
    PortFlag("rpc", ("--rpc-port",), 9944),
    PortFlag("p2p", ("--port",), 30333),
    PortFlag("metrics", ("--prometheus-port",), 9615),
)
WORKER_PORT_FLAGS = (
    PortFlag("node", ("-p", "--integritee-rpc-port"), 9944, listen=False),
    PortFlag("trusted", ("-P", "--trusted-worker-port"), 2000),
    PortFlag("untrusted", ("-w", "--untrusted-worker-port"), 2001),
    PortFlag("mu-ra", ("-r", "--mu-ra-port"), 3443),
    PortFlag("http", ("-h", "--untrusted-http-port"), 4545),
    PortFlag("metrics", ("-i", "--metrics-port"), 8787),
)


@dataclass(frozen=True)
class ProcessSpec:
    """One process of a setup: what to run and which ports it uses (after normalisation)."""

    kind: str  # "node" | "worker"
    name: str
    program: str
    flags: tuple[str, ...]
    subcommand_flags: tuple[str, ...] = ()
    ports: dict[str, int] = field(default_factory=dict)

    def argv(self, program_path: str) -> list[str]:
        if self.kind == "worker":
            return [program_path, *self.flags, "run", *self.subcommand_flags]
        return [program_path, *self.flags]

    @property
    def listen_ports(self) -> dict[str, int]:
        return {r: p for r, p in self.ports.items() if not (self.kind == "worker" and r == "node")}

    @property
    def metrics_port(self) -> int | None:
        return self.ports.get("metrics")


@dataclass(frozen=True)
class SetupConfig:
    nodes: tuple[ProcessSpec, ...]
    workers: tuple[ProcessSpec, ...]
    source: str = "<config>"

    @property
    def processes(self) -> tuple[ProcessSpec, ...]:
        return self.nodes + self.workers


# ---------------------------------------------------------------------------------------------
# flags


def _flag_index(flags: list[str], names: Iterable[str]) -> list[tuple[int, str | None]]:
    """Every occurrence of a flag: (index, value) where value None means "next token"."""
    found: list[tuple[int, str | None]] = []
    for i, token in enumerate(flags):
        for name in names:
            if token == name:
                found.append((i, None))
            elif name.startswith("--") and token.startswith(name + "="):
                found.append((i, token[len(name) + 1 :]))
            elif not name.startswith("--") and token.startswith(name) and len(token) > len(name):
                found.append((i, token[len(name) :]))  # -P2000
    return found


def flag_value(flags: list[str], names: Iterable[str]) -> str | None:
    """The value of the last occurrence of a flag (the one click uses), or None."""
    hits = _flag_index(flags, names)
    if not hits:
        return None
    i, inline = hits[-1]
    if inline is not None:
        return inline
    if i + 1 >= len(flags) or _looks_like_flag(flags[i + 1]):
        raise ConfigError(f"flag {flags[i]} has no value")
    return flags[i + 1]


def _looks_like_flag(token: str) -> bool:
    return token.startswith("-") and not token[1:].isdigit()


def has_flag(flags: list[str], names: Iterable[str]) -> bool:
    return bool(_flag_index(flags, names))


def set_flag(flags: list[str], names: tuple[str, ...], value: str) -> list[str]:
    """Set every occurrence of a flag to `value`, or append it (long name) if absent."""
    hits = _flag_index(flags, names)
    out = list(flags)
    if not hits:
        return [*out, names[-1], value]
    for i, inline in hits:
        if inline is None:
            if i + 1 >= len(out):
                raise ConfigError(f"flag {out[i]} has no value")
            out[i + 1] = value
        else:
            name = next(n for n in names if out[i].startswith(n))
            out[i] = f"{name}={value}" if name.startswith("--") else f"{name}{value}"
    return out


def _port(text: str, where: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise ConfigError(f"{where}: port {text!r} is not a number") from None
    if not 0 < port < 65536:
        raise ConfigError(f"{where}: port {port} is out of range (1..65535)")
    return port


# ---------------------------------------------------------------------------------------------
# loading


def shipped_configs() -> list[str]:
    """Names of the configs shipped with the package (`configs/*.json`)."""
    folder = resources.files("integritee.local_setup") / "configs"
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".json"))


def resolve_config_path(name_or_path: str) -> tuple[str, str]:
    """(text, source) of a config given as a path or as the name of a shipped config."""
    path = Path(name_or_path)
    if path.is_file():
        try:
            return path.read_text(), str(path)
        except (OSError, UnicodeDecodeError) as e:
            raise ConfigError(f"cannot read config {path}: {e}") from None
    shipped = name_or_path if name_or_path.endswith(".json") else name_or_path + ".json"
    if "/" not in name_or_path and shipped in shipped_configs():
        res = resources.files("integritee.local_setup") / "configs" / shipped
        return res.read_text(), f"{shipped} (shipped)"
    raise ConfigError(
        f"config {name_or_path!r} not found: give a JSON file or one of the shipped configs "
        f"({', '.join(shipped_configs())})"
    )


def _str_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in value
    ):
        raise ConfigError(f"{where} must be a list of strings")
    return [str(v) for v in value]


def _entry(raw: Any, kind: str, index: int, run_dir: Path) -> tuple[str, str, list[str], list[str]]:
    where = f"{kind}s[{index}]"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} must be an object")
    allowed = _NODE_KEYS if kind == "node" else _WORKER_KEYS
    unknown = set(raw) - allowed
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))} (allowed: "
            f"{', '.join(sorted(allowed))})"
        )
    name = raw.get("name", f"{kind}-{index + 1}")
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise ConfigError(f"{where}: name must be a plain non-empty string")
    program = raw.get("bin", NODE_PROGRAM if kind == "node" else WORKER_PROGRAM)
    if not isinstance(program, str) or not program:
        raise ConfigError(f"{where}: bin must be a program name or path")
    expand = str(run_dir)
    flags = [f.replace(RUN_DIR_PLACEHOLDER, expand) for f in _str_list(raw.get("flags"), where)]
    sub = [
        f.replace(RUN_DIR_PLACEHOLDER, expand)
        for f in _str_list(raw.get("subcommand_flags"), where + ".subcommand_flags")
    ]
    if kind == "node" and sub:
        raise ConfigError(f"{where}: nodes have no subcommand_flags")
    return name, program, flags, sub


def _normalise_node(name: str, program: str, flags: list[str], run_dir: Path) -> ProcessSpec:
    if not has_flag(flags, ("--base-path", "-d", "--tmp")):
        flags = [*flags, "--base-path", str(run_dir / name)]
    ports: dict[str, int] = {}
    for pf in NODE_PORT_FLAGS:
        if pf.role == "metrics" and has_flag(flags, ("--no-prometheus",)):
            continue
        text = flag_value(flags, pf.names)
        ports[pf.role] = pf.default if text is None else _port(text, f"{name} {pf.names[-1]}")
        flags = set_flag(flags, pf.names, str(ports[pf.role]))
    return ProcessSpec("node", name, program, tuple(flags), (), ports)


def _normalise_worker(
    name: str, program: str, flags: list[str], sub: list[str], run_dir: Path
) -> ProcessSpec:
    if flag_value(flags, ("-d", "--data-dir")) is None:
        flags = [*flags, "--data-dir", str(run_dir / name / "data")]
    if flag_value(flags, ("--sealing-key",)) is None:
        flags = [*flags, "--sealing-key", str(run_dir / name / "sealing_key")]
    data_dir = Path(flag_value(flags, ("-d", "--data-dir")) or ".").resolve()
    sealing = Path(flag_value(flags, ("--sealing-key",)) or "").resolve()
    if sealing.is_relative_to(data_dir):
        raise ConfigError(f"{name}: the sealing key {sealing} must be outside the data dir")
    ports: dict[str, int] = {}
    for pf in WORKER_PORT_FLAGS:
        if pf.role == "metrics" and not has_flag(flags, ("--enable-metrics",)):
            continue
        text = flag_value(flags, pf.names)
        ports[pf.role] = pf.default if text is None else _port(text, f"{name} {pf.names[-1]}")
        flags = set_flag(flags, pf.names, str(ports[pf.role]))
    return ProcessSpec("worker", name, program, tuple(flags), tuple(sub), ports)


def parse_config(text: str, run_dir: Path, source: str = "<config>") -> SetupConfig:
    """Read a config; every error names the entry and the reason."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{source}: not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the config must be a JSON object")
    unknown = set(data) - {"nodes", "node", "workers"}
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {', '.join(sorted(unknown))}")
    if "node" in data and "nodes" in data:
        raise ConfigError(f"{source}: give either 'node' or 'nodes', not both")
    raw_nodes = [data["node"]] if "node" in data else data.get("nodes", [])
    raw_workers = data.get("workers", [])
    if not isinstance(raw_nodes, list) or not isinstance(raw_workers, list):
        raise ConfigError(f"{source}: 'nodes' and 'workers' must be lists")
    if not raw_nodes and not raw_workers:
        raise ConfigError(f"{source}: no nodes and no workers")
    nodes = []
    for i, raw in enumerate(raw_nodes):
        name, program, flags, _ = _entry(raw, "node", i, run_dir)
        nodes.append(_normalise_node(name, program, flags, run_dir))
    workers = []
    for i, raw in enumerate(raw_workers):
        name, program, flags, sub = _entry(raw, "worker", i, run_dir)
        workers.append(_normalise_worker(name, program, flags, sub, run_dir))
    names = [p.name for p in (*nodes, *workers)]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"{source}: duplicate process name(s) {', '.join(duplicates)}")
    config = SetupConfig(tuple(nodes), tuple(workers), source)
    check_port_clashes(config)
    return config


def check_port_clashes(config: SetupConfig, extra: dict[str, int] | None = None) -> None:
    """Two processes of the setup listening on the same port is a config error."""
    seen: dict[int, str] = {}
    owners = [
        (f"{p.name} {role}", port)
        for p in config.processes
        for role, port in p.listen_ports.items()
    ]
    owners += [(name, port) for name, port in (extra or {}).items()]
    for owner, port in owners:
        if port in seen:
            raise ConfigError(f"port {port} is used twice: {seen[port]} and {owner}")
        seen[port] = owner


# ---------------------------------------------------------------------------------------------
# moving ports


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def offset_mapping(offset: int) -> Callable[[int], int]:
    def move(port: int) -> int:
        moved = port + offset
        if not 0 < moved < 65536:
            raise ConfigError(f"port {port} + offset {offset} is out of range")
        return moved

    return move


def free_mapping() -> Callable[[int], int]:
    """Each distinct port of the config gets its own currently free port (stable per port)."""
    chosen: dict[int, int] = {}

    def move(port: int) -> int:
        if port not in chosen:
            new = free_port()
            while new in chosen.values():
                new = free_port()
            chosen[port] = new
        return chosen[port]

    return move


def remap_ports(config: SetupConfig, move: Callable[[int], int]) -> SetupConfig:
    """The same setup with every port p replaced by move(p), flags rewritten to match.

    A worker's node port moves only if it is the RPC port of a node of this setup (a worker
    may talk to a node outside it)."""
    own_nodes = {n.ports["rpc"] for n in config.nodes}
    own_p2p = {n.ports["p2p"] for n in config.nodes}

    def move_multiaddr(token: str) -> str:
        # bootnode addresses (/ip4/127.0.0.1/tcp/30333/...) follow the node they point to
        def sub(m: re.Match[str]) -> str:
            port = int(m.group(1))
            return f"/tcp/{move(port)}" if port in own_p2p else m.group(0)

        return _TCP_IN_MULTIADDR.sub(sub, token)

    def remap(spec: ProcessSpec) -> ProcessSpec:
        table = NODE_PORT_FLAGS if spec.kind == "node" else WORKER_PORT_FLAGS
        flags = list(spec.flags)
        ports = {}
        for pf in table:
            if pf.role not in spec.ports:
                continue
            if not pf.listen and spec.ports[pf.role] not in own_nodes:
                ports[pf.role] = spec.ports[pf.role]
            else:
                ports[pf.role] = move(spec.ports[pf.role])
                flags = set_flag(flags, pf.names, str(ports[pf.role]))
        if spec.kind == "node":
            flags = [move_multiaddr(f) for f in flags]
        return replace(spec, flags=tuple(flags), ports=ports)

    moved = SetupConfig(
        tuple(remap(n) for n in config.nodes),
        tuple(remap(w) for w in config.workers),
        config.source,
    )
    check_port_clashes(moved)
    return moved
