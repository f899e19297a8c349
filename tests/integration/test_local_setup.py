"""integritee-local-setup: config handling, and the launcher end to end as real processes.

The slow tests run the shipped configs on free ports (`--free-ports`): `make run`'s
two-workers.json with `--demo-and-exit` (balances checked, everything stopped, validateers before
the node), Prometheus scraping every process of two-workers.json (targets up, heights growing), a
killed validateer making the launcher stop the rest, and `--restart` (one-worker.json) bringing a
killed validateer back.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.local_setup.config import (
    ConfigError,
    free_mapping,
    offset_mapping,
    parse_config,
    remap_ports,
    resolve_config_path,
    shipped_configs,
)
from integritee.local_setup.prometheus import prometheus_yml
from procs import BIN

LAUNCHER = BIN / "integritee-local-setup"
WIDE = {**os.environ, "COLUMNS": "200"}  # rich wraps at 80 columns when not on a terminal
ORIGINAL_PORTS = {
    "worker-1": {"trusted": 2000, "untrusted": 2001, "mu-ra": 3443, "http": 4545, "metrics": 8787},
    "worker-2": {"trusted": 3000, "untrusted": 3001, "mu-ra": 4490, "http": 4546, "metrics": 8788},
}


# ---------------------------------------------------------------------------------------------
# configs (fast)


def _shipped(name: str, run_dir: Path):  # type: ignore[no-untyped-def]
    text, source = resolve_config_path(name)
    return parse_config(text, run_dir, source)


def test_shipped_configs_use_the_original_ports_and_separate_dirs(tmp_path: Path) -> None:
    assert set(shipped_configs()) >= {
        "one-worker.json",
        "two-workers.json",
        "two-workers-local-nodes.json",
    }
    for name in shipped_configs():
        config = _shipped(name, tmp_path)
        assert config.nodes[0].ports["rpc"] == 9944
        data_dirs = set()
        for worker in config.workers:
            assert worker.ports | ORIGINAL_PORTS[worker.name] == worker.ports
            flags = list(worker.flags)
            data = Path(flags[flags.index("--data-dir" if "--data-dir" in flags else "-d") + 1])
            sealing = Path(flags[flags.index("--sealing-key") + 1])
            assert data.is_relative_to(tmp_path) and not sealing.is_relative_to(data)
            data_dirs.add(data)
            assert worker.argv("svc")[-len(worker.subcommand_flags) - 1] == "run"
        assert len(data_dirs) == len(config.workers)
    local = _shipped("two-workers-local-nodes", tmp_path)
    assert [w.ports["node"] for w in local.workers] == [n.ports["rpc"] for n in local.nodes]


def test_defaults_are_made_explicit_and_ports_move_together(tmp_path: Path) -> None:
    config = parse_config(
        '{"nodes": [{"flags": ["--dev"]}], '
        '"workers": [{"flags": ["--enable-metrics"], "subcommand_flags": ["--dev"]}]}',
        tmp_path,
    )
    node, worker = config.nodes[0], config.workers[0]
    assert node.ports == {"rpc": 9944, "p2p": 30333, "metrics": 9615}
    assert "--base-path" in node.flags and str(tmp_path / "node-1") in node.flags
    assert worker.ports["node"] == 9944 and worker.ports["metrics"] == 8787
    assert str(tmp_path / "worker-1" / "sealing_key") in worker.flags

    moved = remap_ports(config, offset_mapping(100))
    w = list(moved.workers[0].flags)
    assert (
        moved.nodes[0].ports["rpc"] == 10044 and w[w.index("--integritee-rpc-port") + 1] == "10044"
    )
    assert w[w.index("--trusted-worker-port") + 1] == "2100"

    free = remap_ports(config, free_mapping())
    ports = [p for spec in free.processes for r, p in spec.listen_ports.items()]
    assert len(set(ports)) == len(ports) and 9944 not in ports
    assert free.workers[0].ports["node"] == free.nodes[0].ports["rpc"]

    local = remap_ports(_shipped("two-workers-local-nodes", tmp_path), offset_mapping(7))
    bootnode = local.nodes[1].flags[local.nodes[1].flags.index("--bootnodes") + 1]
    assert bootnode.startswith("/ip4/127.0.0.1/tcp/30340/p2p/")  # moved with node-1's --port


def test_external_node_port_is_not_moved(tmp_path: Path) -> None:
    config = parse_config('{"workers": [{"flags": ["-p", "9999", "--enable-metrics"]}]}', tmp_path)
    moved = remap_ports(config, offset_mapping(5))
    assert moved.workers[0].ports["node"] == 9999 and moved.workers[0].ports["trusted"] == 2005


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not valid JSON"),
        ("[]", "must be a JSON object"),
        ("{}", "no nodes and no workers"),
        ('{"nodes": [{"flag": []}]}', "unknown key(s) flag"),
        ('{"nodes": [{"flags": "--dev"}]}', "must be a list of strings"),
        ('{"nodes": [{"flags": ["--rpc-port", "http"]}]}', "is not a number"),
        ('{"nodes": [{"flags": ["--rpc-port", "70000"]}]}', "out of range"),
        ('{"nodes": [{"flags": ["--rpc-port"]}]}', "has no value"),
        ('{"nodes": [{}, {}]}', "port 9944 is used twice"),
        ('{"nodes": [{"name": "a"}, {"name": "a", "flags": ["--rpc-port=1"]}]}', "duplicate"),
        ('{"workers": [{"flags": ["-d", "/x", "--sealing-key", "/x/k"]}]}', "outside the data dir"),
        ('{"node": {}, "nodes": []}', "either 'node' or 'nodes'"),
    ],
)
def test_bad_configs_are_refused_with_a_reason(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_config(text, tmp_path)


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                ["nodes", "node", "workers", "flags", "subcommand_flags", "name", "bin"]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(data=_json)
def test_any_json_is_a_config_or_a_config_error(data: object) -> None:
    root = Path("/tmp/integritee-local-setup-property")
    try:
        config = parse_config(json.dumps(data), root)
    except ConfigError:
        return
    for spec in config.processes:
        assert spec.argv("prog")[0] == "prog"


def test_prometheus_config_has_a_target_per_metrics_port(tmp_path: Path) -> None:
    config = _shipped("two-workers-local-nodes", tmp_path)
    text = prometheus_yml(config.processes, 2)
    for port in (9615, 9616, 8787, 8788):
        assert f'targets: ["127.0.0.1:{port}"]' in text
    assert "scrape_interval: 2s" in text and text.count("job_name") == 2


def test_launcher_refuses_unknown_config_and_missing_prometheus(tmp_path: Path) -> None:
    done = subprocess.run(
        [str(LAUNCHER), "no-such-config", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env=WIDE,
    )
    assert done.returncode == 2 and "one-worker.json" in done.stdout
    done = subprocess.run(
        [str(LAUNCHER), "--prometheus", "--run-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**WIDE, "PROMETHEUS_BIN": str(tmp_path / "missing")},
    )
    assert done.returncode == 2 and "apt-get install prometheus" in done.stdout


def test_launcher_reports_a_program_that_does_not_exist(tmp_path: Path) -> None:
    config = tmp_path / "c.json"
    config.write_text('{"workers": [{"bin": "/nonexistent/integritee-service"}]}')
    done = subprocess.run(
        [str(LAUNCHER), str(config), "--free-ports", "--run-dir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=60,
        env=WIDE,
    )
    assert done.returncode == 1
    assert "cannot start worker-1" in done.stdout and "No such file" in done.stdout


# ---------------------------------------------------------------------------------------------
# the launcher as a real process (slow)


def _remaining(run_dir: Path) -> list[str]:
    """Live processes (not zombies) whose command line mentions the run dir."""
    found = []
    needle = str(run_dir).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if needle in cmdline and stat.rsplit(")", 1)[1].split()[0] != "Z":
            shown = cmdline.replace(b"\0", b" ").decode(errors="replace")[:200]
            found.append(f"{entry.name}: {shown}")
    return found


def _assert_nothing_left(run_dir: Path) -> None:
    deadline = time.monotonic() + 5
    while _remaining(run_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _remaining(run_dir) == []


@dataclass
class Launch:
    proc: subprocess.Popen[bytes]
    run_dir: Path
    out_path: Path

    def output(self) -> str:
        return self.out_path.read_text(errors="replace")

    def state(self) -> dict:
        return json.loads((self.run_dir / "setup.json").read_text())  # type: ignore[no-any-return]

    def process(self, name: str) -> dict:
        return next(p for p in self.state()["processes"] if p["name"] == name)

    def wait_for_output(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed:\n{self.output()[-5000:]}")
            time.sleep(0.2)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def launch(tmp_path: Path, *args: str) -> Launch:
    run_dir = tmp_path / "run"
    out_path = tmp_path / "launcher.out"
    with open(out_path, "wb") as out:
        proc = subprocess.Popen(
            [str(LAUNCHER), *args, "--free-ports", "--run-dir", str(run_dir)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**WIDE, "PYTHONUNBUFFERED": "1"},
        )
    return Launch(proc, run_dir, out_path)


def _log_time(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


@pytest.mark.slow
def test_demo_and_exit_moves_the_money_and_stops_everything(tmp_path: Path) -> None:
    started = time.monotonic()
    run = launch(tmp_path, "two-workers.json", "--demo-and-exit")  # as `make run`
    try:
        code = run.proc.wait(150)
    finally:
        run.stop()
    out = run.output()
    assert code == 0, out[-5000:]
    assert "demo OK" in out
    # the summary's exact changes: parentchain transfer, shield (2 TEER - 2/571), private
    # transfer (+0.5 received, -0.5 - 0.01 fee sent), unshield (-0.2 - 0.03 fee, +0.2 paid out)
    for change in (
        "+1.000000000000",
        "+1.996497373030",
        "+0.500000000000",
        "-0.510000000000",
        "-0.230000000000",
        "+0.200000000000",
    ):
        assert change in out, out[-3000:]
    states = {p["name"]: p["state"] for p in run.state()["processes"]}
    assert states == {
        "node-1": "stopped (0)",
        "worker-1": "stopped (0)",
        "worker-2": "stopped (0)",
    }
    _assert_nothing_left(run.run_dir)
    # worker-2 joined the shard of worker-1 by MU-RA; the validateers stopped before their node
    node_log = (run.run_dir / "log" / "node-1.log").read_text().splitlines()
    node_down = _log_time(next(line for line in node_log if "shutting down" in line))
    for worker in ("worker-1", "worker-2"):
        worker_log = (run.run_dir / "log" / f"{worker}.log").read_text().splitlines()
        worker_last = _log_time([line for line in worker_log if line[:2] == "20"][-1])
        assert worker_last <= node_down
    assert "provisioned by MU-RA" in (run.run_dir / "log" / "worker-2.log").read_text()
    print(f"demo-and-exit took {time.monotonic() - started:.1f} s")


def _ensure_prometheus() -> None:
    """Install Debian's prometheus the way `make prometheus` does; skip only without apt."""
    if shutil.which("prometheus"):
        return
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        pytest.skip("prometheus is not installed and apt-get (as root) is unavailable")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", "prometheus"],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
    assert shutil.which("prometheus")


def _prom(port: int, path: str, **params: str) -> dict:
    url = f"http://127.0.0.1:{port}{path}"
    if params:
        url += "?" + urllib.parse.urlencode(params)
    with urllib.request.urlopen(url, timeout=5) as resp:
        reply = json.loads(resp.read())
    assert reply["status"] == "success", reply
    return reply["data"]  # type: ignore[no-any-return]


def _value(port: int, query: str) -> float | None:
    result = _prom(port, "/api/v1/query", query=query)["result"]
    return float(result[0]["value"][1]) if result else None


def _wait_growth(port: int, query: str, timeout: float = 20) -> tuple[float, float]:
    deadline = time.monotonic() + timeout
    first = _value(port, query)
    while first is None and time.monotonic() < deadline:
        time.sleep(0.5)
        first = _value(port, query)
    assert first is not None, f"no samples for {query}"
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = _value(port, query)
        if now is not None and now > first:
            return first, now
    raise AssertionError(f"{query} did not grow from {first} within {timeout} s")


@pytest.fixture(scope="module")
def prometheus_setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launch]:
    _ensure_prometheus()
    run = launch(
        tmp_path_factory.mktemp("prom"),
        "two-workers.json",
        "--prometheus",
        "--scrape-interval",
        "1",
    )
    try:
        run.wait_for_output("Running; Ctrl-C stops everything.", timeout=120)
        yield run
    finally:
        run.stop()
        _assert_nothing_left(run.run_dir)


@pytest.mark.slow
def test_prometheus_scrapes_every_process_and_heights_grow(prometheus_setup: Launch) -> None:
    port = prometheus_setup.process("prometheus")["ports"]["web"]
    deadline = time.monotonic() + 20
    while True:
        targets = _prom(port, "/api/v1/targets")["activeTargets"]
        health = {t["labels"]["name"]: t["health"] for t in targets}
        if health == {"node-1": "up", "worker-1": "up", "worker-2": "up"}:
            break
        assert time.monotonic() < deadline, f"targets not all up: {targets}"
        time.sleep(0.5)
    _wait_growth(port, 'substrate_block_height{status="finalized"}')
    _wait_growth(port, "integritee_worker_enclave_stf_runtime_parentchain_processed_block_number")
    # the sidechain height grows once validateers produce sidechain blocks (sidechain issue)
    sidechain = _value(port, "integritee_worker_enclave_sidechain_block_height")
    assert sidechain is not None
    if sidechain > 0:
        _wait_growth(port, "integritee_worker_enclave_sidechain_block_height")


@pytest.mark.slow
def test_a_killed_process_is_reported_and_the_rest_stopped(prometheus_setup: Launch) -> None:
    worker = prometheus_setup.process("worker-1")
    os.kill(worker["pid"], signal.SIGKILL)
    code = prometheus_setup.proc.wait(60)
    out = prometheus_setup.output()
    assert code == 1, out[-3000:]
    assert f"worker-1 (pid {worker['pid']}) exited with code -9 (SIGKILL)" in out
    states = {p["name"]: p["state"] for p in prometheus_setup.state()["processes"]}
    assert states == {
        "node-1": "stopped (0)",
        "worker-1": "died (SIGKILL)",
        "worker-2": "stopped (0)",
        "prometheus": "stopped (0)",
    }
    _assert_nothing_left(prometheus_setup.run_dir)


@pytest.mark.slow
def test_a_process_failing_to_start_stops_the_ones_started(tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text(
        json.dumps(
            {
                "nodes": [{"flags": ["--dev", "--block-time-ms", "300"]}],
                "workers": [{"flags": ["--no-such-flag"], "subcommand_flags": ["--dev"]}],
            }
        )
    )
    run = launch(tmp_path, str(config))
    try:
        code = run.proc.wait(60)
    finally:
        run.stop()
    out = run.output()
    assert code == 1, out[-3000:]
    assert "worker-1 did not start" in out and "no such option" in out.lower()
    states = {p["name"]: p["state"] for p in run.state()["processes"]}
    assert states == {"node-1": "stopped (0)", "worker-1": "exited (2)"}
    _assert_nothing_left(run.run_dir)


@pytest.mark.slow
def test_restart_brings_a_killed_validateer_back(tmp_path: Path) -> None:
    run = launch(tmp_path, "one-worker.json", "--restart")
    try:
        run.wait_for_output("Running; Ctrl-C stops everything.", timeout=120)
        first = run.process("worker-1")["pid"]
        os.kill(first, signal.SIGKILL)
        run.wait_for_output("worker-1 ready again", timeout=60)
        again = run.process("worker-1")
        assert again["pid"] != first and again["restarts"] == 1 and again["state"] == "ready"
        log = (run.run_dir / "log" / "worker-1.log").read_text()
        assert "enclave already registered" in log  # resumed from its sealed state
        run.proc.send_signal(signal.SIGINT)  # Ctrl-C
        assert run.proc.wait(60) == 0
    finally:
        run.stop()
    _assert_nothing_left(run.run_dir)
