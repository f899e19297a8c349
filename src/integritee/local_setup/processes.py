"""The launcher's child processes: start with a log file, probe readiness, stop gracefully.

Each child runs in its own session (process group), so a Ctrl-C on the terminal reaches only the
launcher, which then stops the children in its own order (workers before nodes). On Linux a child
also gets SIGTERM if the launcher itself dies (PR_SET_PDEATHSIG), so a `kill -9` of the launcher
does not leave a network running. Escalation to SIGKILL goes to the whole process group, so a
validateer's enclave process cannot outlive its service either.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO

_PR_SET_PDEATHSIG = 1
_libc_name = ctypes.util.find_library("c")
_LIBC = ctypes.CDLL(_libc_name, use_errno=True) if _libc_name else None


def _die_with_parent() -> None:
    # runs in the child between fork and exec
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def describe_exit(code: int | None, short: bool = False) -> str:
    """`1`, or `-9 (SIGKILL)` (short: `SIGKILL`) for a process killed by a signal."""
    if code is None or code >= 0:
        return str(code)
    try:
        name = signal.Signals(-code).name
    except ValueError:
        return str(code)
    return name if short else f"{code} ({name})"


class StartError(Exception):
    """A process exited or did not become ready in time during start-up."""


class Interrupted(Exception):
    """A stop was requested (Ctrl-C / SIGTERM) while waiting."""


Probe = Callable[[], bool]


def node_probe(port: int, min_block: int = 1) -> Probe:
    """Ready when the node's JSON-RPC answers and its best block is at least `min_block`."""
    url = f"http://127.0.0.1:{port}"
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "chain_getHeader"}).encode()

    def probe() -> bool:
        req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                header = json.loads(resp.read()).get("result") or {}
            return int(header.get("number", "0x0"), 16) >= min_block
        except (OSError, ValueError, AttributeError):
            return False

    return probe


def http_probe(url: str) -> Probe:
    """Ready when GET `url` answers 200 (a validateer's /is_initialized, Prometheus /-/ready)."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                return bool(resp.status == 200)
        except (OSError, ValueError):
            return False

    return probe


@dataclass
class ManagedProcess:
    name: str
    kind: str  # "node" | "worker" | "prometheus"
    argv: list[str]
    log_path: Path
    cwd: Path
    probe: Probe
    ports: dict[str, int] = field(default_factory=dict)
    start_timeout: float = 60.0
    proc: subprocess.Popen[bytes] | None = None
    state: str = "pending"
    restarts: int = 0
    ready_seconds: float | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return None if self.proc is None else self.proc.pid

    @property
    def returncode(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        self.cwd.mkdir(parents=True, exist_ok=True)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._close_log()
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
        stamp = datetime.now().isoformat(timespec="seconds")
        self._log.write(
            f"=== {stamp} integritee-local-setup starts: {' '.join(self.argv)}\n".encode()
        )
        self._log.flush()
        try:
            self.proc = self._spawn()
        except OSError as e:
            self.state = "not started"
            self._close_log()
            raise StartError(f"cannot start {self.name}: {e}") from None
        self.state = "starting"
        self.ready_seconds = None

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            self.argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=self.cwd,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            preexec_fn=_die_with_parent,  # the launcher starts no threads, so fork+preexec is safe
        )

    def wait_ready(self, should_stop: Callable[[], bool], timeout: float | None = None) -> None:
        """Block until the probe succeeds; StartError if the process exits or time runs out."""
        started = time.monotonic()
        deadline = started + (self.start_timeout if timeout is None else timeout)
        while True:
            if should_stop():
                raise Interrupted()
            if not self.alive():
                self.state = f"exited ({describe_exit(self.returncode, short=True)})"
                raise StartError(
                    f"{self.name} exited with code {describe_exit(self.returncode)} while starting"
                )
            if self.probe():
                self.state = "ready"
                self.ready_seconds = time.monotonic() - started
                return
            if time.monotonic() > deadline:
                self.state = "not ready"
                raise StartError(
                    f"{self.name} was not ready after {time.monotonic() - started:.0f} s"
                )
            time.sleep(0.2)

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.state = "stopping"
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)

    def kill_group(self) -> None:
        """SIGKILL the process and everything in its process group (e.g. an enclave)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def clear_group(self, timeout: float = 5.0) -> None:
        """Kill what is left of a dead process's group (an enclave that has not noticed yet) and
        wait until it is gone, so that a restart does not meet it holding the data dir."""
        if self.proc is None:
            return
        self.kill_group()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                os.killpg(self.proc.pid, 0)
            except (ProcessLookupError, PermissionError):
                return
            time.sleep(0.05)

    def reap(self, deadline: float, hurry: Callable[[], bool] = lambda: False) -> int | None:
        """Wait for the process until `deadline` (or until `hurry()`), then SIGKILL its group;
        returns the exit code."""
        if self.proc is None:
            return None
        while self.proc.poll() is None and time.monotonic() < deadline and not hurry():
            time.sleep(0.05)
        if self.proc.poll() is None:
            self.kill_group()
            self.proc.wait()
            self.state = "killed"
        else:
            # group members left behind by a clean exit (none expected) go too
            self.kill_group()
            if self.state == "stopping":
                self.state = f"stopped ({describe_exit(self.proc.returncode, short=True)})"
        self._close_log()
        return self.proc.returncode

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
