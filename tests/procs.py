"""Helpers for tests that run the project's programs as real processes on free ports."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
            "--dev",
            "--base-path",
            str(self.base_path),
            "--rpc-port",
            str(self.rpc_port),
            "--prometheus-port",
            str(self.prometheus_port),
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
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        self.stop(signal.SIGKILL)
