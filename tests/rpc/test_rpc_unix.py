"""JSON-RPC over a Unix socket: the transport of the enclave boundary (ecalls and ocalls)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcError
from integritee.rpc.server import RpcServer


async def test_unix_socket_round_trip_and_permissions(tmp_path: Path) -> None:
    path = str(tmp_path / "ecall.sock")
    server = RpcServer(name="unix-test")
    server.add_method("echo", lambda params: params)
    await server.start_unix(path)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        async with RpcClient.connect("unix://" + path) as client:
            assert await client.request("echo", [1, "two"]) == [1, "two"]
            with pytest.raises(RpcError) as e:
                await client.request("missing")
            assert e.value.code == -32601
    finally:
        await server.stop()
