"""Helpers for tests that run the project's programs as real processes on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(proc: subprocess.Popen | None, sig: int, timeout: float) -> int | None:
    """Signal a child and wait for it; SIGKILL when it does not stop in time. Its exit code."""
    if proc is None or proc.poll() is not None:
        return None if proc is None else proc.returncode
    proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def rpc(url: str, method: str, params: list | None = None, timeout: float = 10) -> object:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise RuntimeError(reply["error"])
    return reply["result"]


@dataclass
class NodeProcess:
    base_path: Path
    block_time_ms: int = 300
    rpc_port: int = field(default_factory=free_port)
    prometheus_port: int = field(default_factory=free_port)
    extra: list[str] = field(default_factory=list)
    proc: subprocess.Popen | None = None
    log_path: Path | None = None
    p2p_port: int = field(default_factory=free_port)
    dev: bool = True  # False: give --chain (and --alice/--bob...) in `extra`
    # The p2p identity (ed25519 secret seed, hex), fixed for the life of this object so that a
    # restarted node keeps its peer id.
    node_key: str = field(default_factory=lambda: os.urandom(32).hex())

    @property
    def peer_public_key(self) -> str:
        from nacl.signing import SigningKey

        return bytes(SigningKey(bytes.fromhex(self.node_key)).verify_key).hex()

    @property
    def p2p_address(self) -> str:
        """This node as a boot node address (the simple form: hex public key as the peer id)."""
        return f"/ip4/127.0.0.1/tcp/{self.p2p_port}/p2p/{self.peer_public_key}"

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.rpc_port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.rpc_port}"

    def start(self, wait_blocks: int = 1, timeout: float = 30) -> NodeProcess:
        self.log_path = self.base_path / "node.log"
        cmd = [
            str(BIN / "integritee-node"),
            *(["--dev"] if self.dev else []),
            "--base-path",
            str(self.base_path),
            "--rpc-port",
            str(self.rpc_port),
            "--prometheus-port",
            str(self.prometheus_port),
            "--port",
            str(self.p2p_port),
            "--node-key",
            self.node_key,
            "--block-time-ms",
            str(self.block_time_ms),
            *self.extra,
        ]
        self.base_path.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process for its lifetime
        self.proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"node exited with {self.proc.returncode}:\n{self.log_path.read_text()[-3000:]}"
                )
            try:
                if self.best_number() >= wait_blocks:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"node did not produce blocks:\n{self.log_path.read_text()[-3000:]}")

    def best_number(self) -> int:
        header = rpc(self.http_url, "chain_getHeader")
        assert isinstance(header, dict)
        return int(header["number"], 16)

    def wait_for_block(self, number: int, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.best_number() < number:
            if time.monotonic() > deadline:
                raise TimeoutError(f"block {number} not reached")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int | None:
        return stop_process(self.proc, sig, timeout)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


@dataclass
class ValidateerProcess:
    """`integritee-service ... run --dev` against a node, on free ports, with its own data dir."""

    work_dir: Path
    node_port: int
    attestation: str = "skip"
    sync_batch: int = 500
    trusted_port: int = field(default_factory=free_port)
    untrusted_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    mu_ra_port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None
    # optional: `--slot-duration-ms` of `run` (None: the service's default)
    slot_duration_ms: int | None = None
    # optional: `--enable-metrics -i <port>` (None: no metrics server)
    metrics_port: int | None = None
    # optional: more flags for `run` (after the ones `start` always passes)
    run_flags: list[str] = field(default_factory=list)

    @property
    def data_dir(self) -> Path:
        return self.work_dir / "data"

    @property
    def sealing_key(self) -> Path:
        return self.work_dir / "sealing_key"  # outside the data dir, as the service requires

    @property
    def log_path(self) -> Path:
        return self.work_dir / "service.log"

    @property
    def trusted_url(self) -> str:
        return f"wss://127.0.0.1:{self.trusted_port}"

    def command(self, *subcommand: str) -> list[str]:
        return [
            str(BIN / "integritee-service"),
            "-p",
            str(self.node_port),
            "-d",
            str(self.data_dir),
            "--sealing-key",
            str(self.sealing_key),
            "-P",
            str(self.trusted_port),
            "-w",
            str(self.untrusted_port),
            "-h",
            str(self.http_port),
            "-r",
            str(self.mu_ra_port),
            *(
                ["--enable-metrics", "-i", str(self.metrics_port)]
                if self.metrics_port is not None
                else []
            ),
            *subcommand,
        ]

    def start(self, wait: bool = True, timeout: float = 90) -> ValidateerProcess:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        flags = [
            "run",
            "--dev",
            "--attestation",
            self.attestation,
            "--parentchain-sync-batch",
            str(self.sync_batch),
            *(
                ["--slot-duration-ms", str(self.slot_duration_ms)]
                if self.slot_duration_ms is not None
                else []
            ),
            *self.run_flags,
        ]
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process for its lifetime
        self.proc = subprocess.Popen(
            self.command(*flags),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        if wait:
            self.wait_initialized(timeout)
        return self

    @property
    def untrusted_url(self) -> str:
        return f"ws://127.0.0.1:{self.untrusted_port}"

    @property
    def metrics_url(self) -> str:
        assert self.metrics_port is not None, "started without a metrics port"
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def http_status(self) -> int | None:
        """The status of GET /is_initialized (200 or 404), None while nothing answers."""
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/is_initialized", timeout=2
            ) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as e:
            return int(e.code)
        except OSError:
            return None

    def is_initialized(self) -> bool:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.http_port}/is_initialized", timeout=2
            ) as resp:
                return resp.status == 200
        except OSError:
            return False

    def wait_initialized(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not self.is_initialized():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"validateer exited with {self.proc.returncode}:\n{self.log()[-4000:]}"
                )
            if time.monotonic() > deadline:
                raise TimeoutError(f"validateer not initialised:\n{self.log()[-4000:]}")
            time.sleep(0.2)

    def wait_for_log(self, text: str, timeout: float = 60, after: int = 0) -> None:
        """Wait until `text` is logged (at or after character `after` of the log)."""
        deadline = time.monotonic() + timeout
        while text not in self.log()[after:]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{text!r} not logged:\n{self.log()[-4000:]}")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log()[-chars:]

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int | None:
        return stop_process(self.proc, sig, timeout)

    def kill(self) -> None:
        """kill -9 the service; its enclave process notices and stops within a second."""
        self.stop(signal.SIGKILL)

    def enclave_running(self) -> bool:
        found = subprocess.run(
            ["pgrep", "-f", f"integritee.enclave --data-dir {self.data_dir}"], capture_output=True
        )
        return found.returncode == 0
