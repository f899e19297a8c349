"""Fixtures of the ported demos: a dev node and a validateer as real processes on free ports.

`ValidateerProcess` runs `integritee-service ... run --dev --skip-ra` against a node, with a
temporary data dir and a sealing key file outside it, waits until `/is_initialized` answers
"I am initialized." and stops the service with SIGTERM (SIGKILL after a grace period). Its output
(service and enclave logs) goes to `<base>/validateer.log`, which tests read to check what the
enclave reported. `demo_network` is one node plus one validateer for a whole test module.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from procs import BIN, NodeProcess, free_port

INITIALIZED = "I am initialized."
START_TIMEOUT = 90.0


@dataclass
class ValidateerProcess:
    node: NodeProcess
    base: Path
    run_flags: list[str] = field(default_factory=lambda: ["--dev", "--skip-ra"])
    trusted_port: int = field(default_factory=free_port)
    untrusted_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    mu_ra_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.base / "data"

    @property
    def sealing_key(self) -> Path:
        # the simulated platform sealing key must not live in the data dir it protects
        return self.base / "sealing_key"

    @property
    def log_path(self) -> Path:
        return self.base / "validateer.log"

    @property
    def trusted_url(self) -> str:
        return f"wss://127.0.0.1:{self.trusted_port}"

    def command(self) -> list[str]:
        return [
            str(BIN / "integritee-service"),
            "-p", str(self.node.rpc_port),
            "-d", str(self.data_dir),
            "--sealing-key", str(self.sealing_key),
            "-P", str(self.trusted_port),
            "-w", str(self.untrusted_port),
            "-h", str(self.http_port),
            "-r", str(self.mu_ra_port),
            "run", *self.run_flags,
        ]  # fmt: skip

    def start(self, timeout: float = START_TIMEOUT) -> ValidateerProcess:
        self.base.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the process for its lifetime
        self.proc = subprocess.Popen(
            self.command(),
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"validateer exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            if self.initialized():
                return self
            time.sleep(0.2)
        raise TimeoutError(f"validateer not initialized within {timeout} s:\n{self.log_tail()}")

    def initialized(self) -> bool:
        url = f"http://127.0.0.1:{self.http_port}/is_initialized"
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return resp.status == 200 and resp.read().decode() == INITIALIZED
        except (urllib.error.URLError, OSError):
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, chars: int = 4000) -> str:
        return self.log_text()[-chars:]

    def wait_for_log(self, needle: str, timeout: float = 15.0) -> str:
        """The first log line containing `needle`, waiting for it to be written."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_text().splitlines():
                if needle in line:
                    return line
            if time.monotonic() > deadline:
                raise AssertionError(f"{needle!r} not in the validateer log:\n{self.log_tail()}")
            time.sleep(0.2)

    def stop(self, timeout: float = 20.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


@dataclass(frozen=True)
class DemoNetwork:
    node: NodeProcess
    validateer: ValidateerProcess
    workdir: Path
    """The working directory of the CLI (its keystores live there)."""


@pytest.fixture(scope="module")
def demo_network(
    dev_node: NodeProcess, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[DemoNetwork]:
    """A dev node (the shared `dev_node` fixture) and one validateer, for the whole module."""
    validateer = ValidateerProcess(dev_node, tmp_path_factory.mktemp("validateer"))
    try:
        validateer.start()
        yield DemoNetwork(dev_node, validateer, tmp_path_factory.mktemp("cli"))
    finally:
        validateer.stop()
