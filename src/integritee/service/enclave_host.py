"""Launching the enclave as its own process and calling it through the typed ecall interface.

The service never sees a secret: it starts `python -m integritee.enclave`, waits for its ecall
socket, and exchanges only the messages of `integritee.teeio.messages` with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any, TypeVar

from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcConnectionError
from integritee.rpc.server import RpcServer
from integritee.teeio.messages import Ecall, from_json, to_json

log = logging.getLogger("integritee.service.enclave")

T = TypeVar("T")


class EnclaveProcessError(RuntimeError):
    pass


class EnclaveHost:
    def __init__(
        self, data_dir: Path, sealing_key: str | None = None, log_level: str = "info"
    ) -> None:
        self.data_dir = data_dir
        self.sealing_key = sealing_key
        self.log_level = log_level
        self.proc: asyncio.subprocess.Process | None = None
        self.client: RpcClient | None = None
        # Unix socket paths are limited to ~100 bytes: keep them in a short private temp dir.
        self._sock_dir = tempfile.mkdtemp(prefix="itee-")
        self.socket_path = os.path.join(self._sock_dir, "ecall.sock")
        self.ocall_socket_path = os.path.join(self._sock_dir, "ocall.sock")
        # ocalls: the enclave asks the service to store blocks and send extrinsics
        self.ocall_server = RpcServer(name="ocall", max_request_bytes=256 * 1024 * 1024)

    async def start(self, timeout: float = 60) -> None:
        await self.ocall_server.start_unix(self.ocall_socket_path)
        cmd = [
            sys.executable,
            "-m",
            "integritee.enclave",
            "--data-dir",
            str(self.data_dir),
            "--ecall-socket",
            self.socket_path,
            "--ocall-socket",
            self.ocall_socket_path,
            "--log-level",
            self.log_level,
        ]
        if self.sealing_key:
            cmd += ["--sealing-key", self.sealing_key]
        self.proc = await asyncio.create_subprocess_exec(*cmd)
        log.info("launched the enclave process (pid %d)", self.proc.pid)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            if self.proc.returncode is not None:
                raise EnclaveProcessError(f"the enclave exited with code {self.proc.returncode}")
            if os.path.exists(self.socket_path):
                try:
                    self.client = await RpcClient.connect("unix://" + self.socket_path, timeout=5)
                    return
                except RpcConnectionError:
                    pass
            if asyncio.get_running_loop().time() > deadline:
                raise EnclaveProcessError("the enclave did not open its ecall socket in time")
            await asyncio.sleep(0.05)

    async def ecall(
        self, method: str, message: Any, result_type: type[T], timeout: float | None = 600
    ) -> T:
        if self.client is None:
            raise EnclaveProcessError("the enclave is not running")
        result = await self.client.request(method, [to_json(message)], timeout=timeout)
        return from_json(result_type, result)

    async def ecall_raw(self, method: str, params: Any = None, timeout: float | None = 600) -> Any:
        if self.client is None:
            raise EnclaveProcessError("the enclave is not running")
        return await self.client.request(method, params, timeout=timeout)

    async def stop(self, timeout: float = 20) -> None:
        if self.client is not None:
            # the process may already be gone; SIGTERM below covers it
            with contextlib.suppress(Exception):
                await self.client.request(Ecall.SHUTDOWN, [], timeout=5)
            await self.client.close()
            self.client = None
        if self.proc is not None and self.proc.returncode is None:
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    await asyncio.wait_for(self.proc.wait(), 5)
                except TimeoutError:
                    self.proc.kill()
                    await self.proc.wait()
        await self.ocall_server.stop()
        shutil.rmtree(self._sock_dir, ignore_errors=True)
