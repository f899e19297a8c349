"""`integritee-local-setup`: run a local network (nodes, validateers, Prometheus) from a config.

Order of events:
1. read the config (a path, or a shipped config by name), move its ports if asked
   (`--port-offset N`, `--free-ports`), check that no port is taken;
2. start the nodes one after the other, each until its RPC answers with a block >= 1; then the
   validateers, each until `GET /is_initialized` answers 200; then Prometheus (`--prometheus`)
   until `/-/ready`; every process logs to `<log dir>/<name>.log`;
3. print a status table and the endpoints; run the demo (`--demo`, `--demo-and-exit`);
4. watch the processes: if one dies, report it (exit code and the end of its log) and stop the
   rest, or with `--restart` start it again (at most `--max-restarts` times per process);
5. Ctrl-C or SIGTERM (or the end of `--demo-and-exit`) stops everything: SIGTERM to the
   validateers, then the nodes, then Prometheus, each group given `--stop-timeout` seconds before
   SIGKILL. A second Ctrl-C skips the grace period.

Exit codes: 0 stopped on request or demo OK; 1 a process failed to start or died, or the demo
failed; 2 bad config or arguments; 130 interrupted before the setup was ready.
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

import click
from rich.console import Console
from rich.table import Table

from .config import (
    ConfigError,
    ProcessSpec,
    SetupConfig,
    check_port_clashes,
    free_mapping,
    free_port,
    offset_mapping,
    parse_config,
    port_in_use,
    remap_ports,
    resolve_config_path,
    shipped_configs,
)
from .demo import Demo, DemoFailed
from .processes import (
    Interrupted,
    ManagedProcess,
    StartError,
    describe_exit,
    http_probe,
    node_probe,
)
from .prometheus import INSTALL_HINT, find_prometheus, prometheus_argv, prometheus_yml, unscraped

DEFAULT_CONFIG = "one-worker.json"
DEFAULT_PROMETHEUS_PORT = 9090
START_TIMEOUTS = {"node": 60.0, "worker": 180.0, "prometheus": 30.0}


def program_path(program: str) -> str:
    """A program name is looked up beside the running Python first (the project's venv)."""
    if "/" in program:
        return program
    beside = Path(sys.executable).parent / program
    return str(beside) if beside.exists() else program


@dataclass
class Stopper:
    """Signal state: the first Ctrl-C/SIGTERM asks for a stop, a second one for no grace."""

    signals: int = 0

    def install(self) -> None:
        signal.signal(signal.SIGINT, self._handle)
        signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        self.signals += 1

    def requested(self) -> bool:
        return self.signals > 0

    def hurry(self) -> bool:
        return self.signals > 1


@dataclass
class LocalSetup:
    config: SetupConfig
    run_dir: Path
    log_dir: Path
    console: Console
    stopper: Stopper
    prometheus_bin: str | None = None
    prometheus_port: int = 9090
    scrape_interval: float = 5.0
    start_timeout: float | None = None
    stop_timeout: float = 20.0
    restart: bool = False
    max_restarts: int = 3
    processes: list[ManagedProcess] = field(default_factory=list)

    # -- building --------------------------------------------------------------------------

    def build(self) -> None:
        for spec in self.config.processes:
            self.processes.append(self._managed(spec))
        if self.prometheus_bin is not None:
            folder = self.run_dir / "prometheus"
            folder.mkdir(parents=True, exist_ok=True)
            config_file = folder / "prometheus.yml"
            config_file.write_text(prometheus_yml(self.config.processes, self.scrape_interval))
            self.processes.append(
                ManagedProcess(
                    name="prometheus",
                    kind="prometheus",
                    argv=prometheus_argv(
                        self.prometheus_bin, config_file, folder / "data", self.prometheus_port
                    ),
                    log_path=self.log_dir / "prometheus.log",
                    cwd=folder,
                    probe=http_probe(f"http://127.0.0.1:{self.prometheus_port}/-/ready"),
                    ports={"web": self.prometheus_port},
                    start_timeout=self._timeout("prometheus"),
                )
            )

    def _timeout(self, kind: str) -> float:
        return self.start_timeout if self.start_timeout is not None else START_TIMEOUTS[kind]

    def _managed(self, spec: ProcessSpec) -> ManagedProcess:
        if spec.kind == "node":
            probe = node_probe(spec.ports["rpc"])
        else:
            probe = http_probe(f"http://127.0.0.1:{spec.ports['http']}/is_initialized")
        return ManagedProcess(
            name=spec.name,
            kind=spec.kind,
            argv=spec.argv(program_path(spec.program)),
            log_path=self.log_dir / f"{spec.name}.log",
            cwd=self.run_dir / spec.name,
            probe=probe,
            ports=dict(spec.ports),
            start_timeout=self._timeout(spec.kind),
        )

    def busy_ports(self) -> list[str]:
        return [
            f"{p.name} {role} {port}"
            for p in self.processes
            for role, port in p.ports.items()
            if not (p.kind == "worker" and role == "node") and port_in_use(port)
        ]

    # -- running ---------------------------------------------------------------------------

    def start_all(self) -> None:
        for p in self.processes:
            self.console.print(f"starting [bold]{p.name}[/] (log: {p.log_path})")
            p.start()
            try:
                p.wait_ready(self.stopper.requested)
            except StartError:
                self.console.print(f"[red]{p.name} did not start[/]; the end of its log:")
                self.console.print(p.tail(25), markup=False, highlight=False)
                raise
            self.console.print(f"  {p.name} ready in {p.ready_seconds:.1f} s (pid {p.pid})")
            self.write_state()

    def watch(self, until: Callable[[], bool]) -> None:
        """Return when `until()` holds; a dead process raises StartError or is restarted."""
        while not until():
            for p in self.processes:
                if p.alive() or p.state.startswith("stop"):
                    continue
                code = describe_exit(p.returncode)
                p.state = f"died ({describe_exit(p.returncode, short=True)})"
                self.console.print(
                    f"[red]{p.name} (pid {p.pid}) exited with code {code}[/]; the end of its log:"
                )
                self.console.print(p.tail(15), markup=False, highlight=False)
                if not self.restart or p.restarts >= self.max_restarts:
                    if self.restart:
                        self.console.print(f"{p.name} was restarted {p.restarts} times already")
                    raise StartError(f"{p.name} exited with code {code}")
                p.restarts += 1
                self.console.print(f"restarting {p.name} ({p.restarts}/{self.max_restarts})")
                p.clear_group()
                p.start()
                p.wait_ready(self.stopper.requested)
                self.console.print(f"  {p.name} ready again in {p.ready_seconds:.1f} s")
                self.write_state()
            time.sleep(0.3)

    def stop_all(self) -> None:
        """Validateers first, then nodes, then Prometheus; SIGKILL after the grace period."""
        for kind in ("worker", "node", "prometheus"):
            group = [p for p in self.processes if p.kind == kind and p.proc is not None]
            if not group:
                continue
            for p in group:
                p.terminate()
            deadline = time.monotonic() + (0 if self.stopper.hurry() else self.stop_timeout)
            for p in group:
                p.reap(deadline, self.stopper.hurry)

    # -- showing ---------------------------------------------------------------------------

    @property
    def state_file(self) -> Path:
        return self.run_dir / "setup.json"

    def write_state(self) -> None:
        """`<run dir>/setup.json`: names, pids, ports and logs, for scripts and tests."""
        state = {
            "config": self.config.source,
            "run_dir": str(self.run_dir),
            "log_dir": str(self.log_dir),
            "processes": [
                {
                    "name": p.name,
                    "kind": p.kind,
                    "pid": p.pid,
                    "ports": p.ports,
                    "state": p.state,
                    "restarts": p.restarts,
                    "log": str(p.log_path),
                }
                for p in self.processes
            ],
        }
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(state, indent=2) + "\n")
        tmp.replace(self.state_file)

    def status_table(self) -> Table:
        table = Table(title=f"integritee local setup ({self.config.source})")
        for column in ("name", "pid", "ports", "state"):
            table.add_column(column)
        table.add_column(f"log (in {self.log_dir})")
        for p in self.processes:
            ports = " ".join(f"{role}={port}" for role, port in p.ports.items())
            style = "green" if p.state == "ready" else ("red" if "died" in p.state else "")
            table.add_row(
                p.name,
                str(p.pid or "-"),
                ports,
                f"[{style}]{p.state}[/]" if style else p.state,
                p.log_path.name,
            )
        return table

    def endpoints(self) -> list[str]:
        lines = []
        for p in self.processes:
            if p.kind == "node":
                lines.append(
                    f"{p.name}: RPC ws://127.0.0.1:{p.ports['rpc']} (HTTP on the same port)"
                    + (
                        f", metrics http://127.0.0.1:{p.ports['metrics']}/metrics"
                        if "metrics" in p.ports
                        else ""
                    )
                )
            elif p.kind == "worker":
                lines.append(
                    f"{p.name}: trusted RPC wss://127.0.0.1:{p.ports['trusted']}, "
                    f"http://127.0.0.1:{p.ports['http']}/is_initialized"
                    + (
                        f", metrics http://127.0.0.1:{p.ports['metrics']}/metrics"
                        if "metrics" in p.ports
                        else ""
                    )
                )
            else:
                web = f"http://127.0.0.1:{p.ports['web']}"
                lines.append(
                    f"Prometheus: {web} (try {web}/graph?g0.expr=substrate_block_height, "
                    f"{web}/targets)"
                )
        return lines

    def try_it(self) -> list[str]:
        nodes = [p for p in self.processes if p.kind == "node"]
        workers = [p for p in self.processes if p.kind == "worker"]
        if not nodes:
            return []
        n = f"-p {nodes[0].ports['rpc']}"
        lines = [
            f"integritee-cli {n} balance //Alice",
            f"integritee-cli {n} transfer //Alice //Charlie 5000000000000",
            f"integritee-cli {n} list-workers",
        ]
        if workers:
            w = f"{n} -P {workers[0].ports['trusted']}"
            lines += [
                f"integritee-cli {w} trusted get-fingerprint",
                f"integritee-cli {w} trusted -m <MRENCLAVE> balance //Alice",
            ]
        return lines


@click.command(context_settings={"help_option_names": ["--help"]})
@click.argument("config", required=False, default=DEFAULT_CONFIG)
@click.option("--run-dir", type=click.Path(path_type=Path), help="Data dirs, keys and logs go here (default: a new temporary directory, kept after exit).")  # fmt: skip
@click.option("--log-dir", type=click.Path(path_type=Path), help="One <name>.log per process (default: <run dir>/log).")  # fmt: skip
@click.option("--prometheus", "with_prometheus", is_flag=True, help="Also run a Prometheus server scraping every node and validateer.")  # fmt: skip
@click.option("--prometheus-port", type=int, help="Prometheus web port (default 9090, or a free one if 9090 is taken).")  # fmt: skip
@click.option("--scrape-interval", type=click.FloatRange(0.1, 60), default=5.0, show_default=True, help="Prometheus scrape interval in seconds.")  # fmt: skip
@click.option("--demo", is_flag=True, help="Run the narrated CLI demo once the setup is up.")
@click.option("--demo-and-exit", is_flag=True, help="Run the demo, then stop everything (exit code says whether it passed).")  # fmt: skip
@click.option("--port-offset", type=int, default=0, help="Add N to every port of the config.")
@click.option("--free-ports", is_flag=True, help="Move every port of the config to a free one.")
@click.option("--restart", is_flag=True, help="Restart a process that dies instead of stopping the setup.")  # fmt: skip
@click.option("--max-restarts", type=click.IntRange(0), default=3, show_default=True)
@click.option("--start-timeout", type=click.FloatRange(1), help="Seconds a process may take to become ready (default: node 60, validateer 180).")  # fmt: skip
@click.option("--stop-timeout", type=click.FloatRange(0), default=20.0, show_default=True, help="Seconds before SIGKILL when stopping.")  # fmt: skip
@click.option("--list-configs", is_flag=True, help="List the shipped configs and exit.")
def cli(
    config: str,
    run_dir: Path | None,
    log_dir: Path | None,
    with_prometheus: bool,
    prometheus_port: int | None,
    scrape_interval: float,
    demo: bool,
    demo_and_exit: bool,
    port_offset: int,
    free_ports: bool,
    restart: bool,
    max_restarts: int,
    start_timeout: float | None,
    stop_timeout: float,
    list_configs: bool,
) -> None:
    """Start the nodes and validateers of CONFIG (a JSON file, or the name of a shipped config;
    default one-worker.json), each once the previous one is ready; Ctrl-C stops them all."""
    console = Console(highlight=False)
    if list_configs:
        for name in shipped_configs():
            console.print(name)
        return
    if free_ports and port_offset:
        raise click.UsageError("give either --port-offset or --free-ports")
    prometheus_bin = None
    if with_prometheus:
        prometheus_bin = find_prometheus()
        if prometheus_bin is None:
            console.print(f"[red]--prometheus:[/] {INSTALL_HINT}")
            sys.exit(2)
    run_dir = (
        run_dir.resolve()
        if run_dir is not None
        else Path(tempfile.mkdtemp(prefix="integritee-local-setup-"))
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    log_dir = (log_dir or run_dir / "log").resolve()
    try:
        text, source = resolve_config_path(config)
        setup_config = parse_config(text, run_dir, source)
        if port_offset:
            setup_config = remap_ports(setup_config, offset_mapping(port_offset))
        elif free_ports:
            setup_config = remap_ports(setup_config, free_mapping())
        if prometheus_port is None:
            # a system Prometheus (Debian starts one on 9090 when installed) must not stop ours
            prometheus_port = DEFAULT_PROMETHEUS_PORT + port_offset
            if free_ports or port_in_use(prometheus_port):
                prometheus_port = free_port()
        if prometheus_bin is not None:
            check_port_clashes(setup_config, {"prometheus web": prometheus_port})
    except ConfigError as e:
        console.print(f"[red]config error:[/] {e}")
        sys.exit(2)
    if prometheus_bin is not None:
        for name in unscraped(setup_config.processes):
            console.print(f"[yellow]note:[/] {name} serves no metrics; Prometheus cannot scrape it")

    stopper = Stopper()
    setup = LocalSetup(
        setup_config,
        run_dir,
        log_dir,
        console,
        stopper,
        prometheus_bin=prometheus_bin,
        prometheus_port=prometheus_port,
        scrape_interval=scrape_interval,
        start_timeout=start_timeout,
        stop_timeout=stop_timeout,
        restart=restart,
        max_restarts=max_restarts,
    )
    setup.build()
    busy = setup.busy_ports()
    if busy:
        console.print(
            f"[red]ports in use:[/] {', '.join(busy)}. Is another local setup running? "
            "Use --port-offset N or --free-ports."
        )
        sys.exit(2)
    console.print(f"run dir {run_dir}, logs in {log_dir}")
    stopper.install()
    sys.exit(run(setup, demo or demo_and_exit, demo_and_exit))


def run(setup: LocalSetup, demo: bool, demo_and_exit: bool) -> int:
    console, stopper = setup.console, setup.stopper
    started = time.monotonic()
    code = 0
    try:
        setup.start_all()
        setup.write_state()
        console.print(setup.status_table())
        console.print(f"all up in {time.monotonic() - started:.1f} s")
        console.print("[bold]Endpoints[/]")
        for line in setup.endpoints():
            console.print(f"  {line}")
        if demo:
            nodes = [p for p in setup.processes if p.kind == "node"]
            workers = [p for p in setup.processes if p.kind == "worker"]
            if not nodes:
                raise DemoFailed("the demo needs a node")
            demo_cwd = setup.run_dir / "cli"
            demo_cwd.mkdir(exist_ok=True)
            Demo(
                node_port=nodes[0].ports["rpc"],
                trusted_ports=[w.ports["trusted"] for w in workers],
                cwd=demo_cwd,
                console=console,
                should_stop=stopper.requested,
            ).run()
        if demo_and_exit:
            return 0
        console.print("[bold]Try it yourself[/] (from the project: .venv/bin/integritee-cli)")
        for line in setup.try_it():
            console.print(f"  {line}")
        console.print("Running; Ctrl-C stops everything.")
        setup.watch(stopper.requested)
        console.print("stop requested")
    except Interrupted:
        console.print("stop requested")
        code = 130
    except StartError as e:
        console.print(f"[red]{e}[/]: stopping the setup")
        code = 1
    except DemoFailed as e:
        console.print(f"[red]demo FAILED:[/] {e}")
        code = 1
    finally:
        console.print(
            "stopping: validateers, then nodes"
            + (", then Prometheus" if setup.prometheus_bin else "")
        )
        setup.stop_all()
        setup.write_state()
        console.print(setup.status_table())
        console.print(f"everything stopped; logs in {setup.log_dir}")
    return code


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
