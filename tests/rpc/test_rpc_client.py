"""Tests of the RPC clients (WebSocket client with subscriptions, HTTP one-shots) against RpcServer."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import ssl
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from integritee.rpc import (
    INTERNAL_ERROR,
    METHOD_NOT_FOUND,
    OVERSIZED_REQUEST,
    RpcClient,
    RpcConnectionError,
    RpcError,
    RpcServer,
    http_request,
    rpc_call,
)


def ws_url(server: RpcServer) -> str:
    return f"ws://127.0.0.1:{server.port}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_request_and_errors(server: RpcServer) -> None:
    async with RpcClient.connect(ws_url(server)) as client:
        assert await client.request("add", [1, 2]) == 3
        assert await client.request("echo") == []
        assert await client.request("echo", {"k": "v"}) == {"k": "v"}
        with pytest.raises(RpcError) as info:
            await client.request("custom_error")
        assert (info.value.code, info.value.message, info.value.data) == (
            1010,
            "Invalid Transaction",
            "Inability to pay some fees",
        )
        with pytest.raises(RpcError) as info:
            await client.request("nope")
        assert info.value.code == METHOD_NOT_FOUND
    assert client.closed
    with pytest.raises(RpcConnectionError):
        await client.request("echo")


async def test_awaited_connect_and_concurrent_requests(server: RpcServer) -> None:
    client = await RpcClient.connect(ws_url(server))
    try:
        results = await asyncio.gather(*(client.request("add", [i, i]) for i in range(200)))
        assert results == [2 * i for i in range(200)]
    finally:
        await client.close()


async def test_subscription(server: RpcServer) -> None:
    async with RpcClient.connect(ws_url(server)) as client:
        sub = await client.subscribe("test_subscribeCounter", [3], "test_unsubscribeCounter")
        assert isinstance(sub.id, str)
        received = [await sub.next(timeout=5) for _ in range(4)]
        assert received == ["first", 0, 1, 2]
        assert await sub.unsubscribe() is True
        with pytest.raises(StopAsyncIteration):
            await sub.next(timeout=5)
        assert [item async for item in sub] == []
        assert await sub.unsubscribe() is False
        assert server.state["closed"] == [sub.id]  # type: ignore[attr-defined]
        # the connection is still fine, and a refused subscription is an RpcError
        with pytest.raises(RpcError) as info:
            await client.subscribe("test_subscribeCounter", ["reject"], "test_unsubscribeCounter")
        assert info.value.code == -32602


async def test_subscription_async_for(server: RpcServer) -> None:
    async with RpcClient.connect(ws_url(server)) as client:
        sub = await client.subscribe("test_subscribeCounter", [5], "test_unsubscribeCounter")
        seen = []
        async for item in sub:
            seen.append(item)
            if item == 4:
                await sub.unsubscribe()
        assert seen == ["first", 0, 1, 2, 3, 4]


async def test_request_timeout(server: RpcServer) -> None:
    async with RpcClient.connect(ws_url(server)) as client:
        with pytest.raises(TimeoutError):
            await client.request("sleep", [0.5], timeout=0.1)
        assert await client.request("add", [2, 2], timeout=5) == 4
        sub = await client.subscribe("test_subscribeIdle", [], "test_unsubscribeIdle")
        with pytest.raises(TimeoutError):
            await sub.next(timeout=0.05)


async def test_server_stop_fails_pending_calls_and_subscriptions(make_server: Any) -> None:
    server = await make_server()
    client = await RpcClient.connect(ws_url(server))
    try:
        sub = await client.subscribe("test_subscribeIdle", [], "test_unsubscribeIdle")
        pending = asyncio.ensure_future(client.request("sleep", [30]))
        await asyncio.sleep(0.05)
        await server.stop()
        with pytest.raises(RpcConnectionError):
            await asyncio.wait_for(pending, 5)
        with pytest.raises(RpcConnectionError):
            await sub.next(timeout=5)
        with pytest.raises(RpcConnectionError):
            await client.request("echo")
    finally:
        await client.close()


async def test_connect_failure() -> None:
    with pytest.raises(RpcConnectionError):
        await RpcClient.connect(f"ws://127.0.0.1:{free_port()}")


async def test_http_request(server: RpcServer) -> None:
    assert await http_request(ws_url(server), "add", [5, 6]) == 11
    assert await http_request(f"http://127.0.0.1:{server.port}", "echo") == []
    with pytest.raises(RpcError) as info:
        await http_request(ws_url(server), "fail")
    assert info.value.code == INTERNAL_ERROR
    with pytest.raises(RpcError) as info:
        await http_request(ws_url(server), "test_subscribeCounter", [])
    assert info.value.code == INTERNAL_ERROR
    with pytest.raises(TimeoutError):
        await http_request(ws_url(server), "sleep", [0.5], timeout=0.1)
    with pytest.raises(RpcConnectionError):
        await http_request(f"http://127.0.0.1:{free_port()}", "echo")


async def test_http_request_oversized(make_server: Any) -> None:
    server = await make_server(max_request_bytes=1000)
    with pytest.raises(RpcError) as info:
        await http_request(ws_url(server), "echo", ["x" * 2000])
    assert info.value.code == OVERSIZED_REQUEST


async def test_rpc_call_sync(server: RpcServer) -> None:
    url = ws_url(server)
    assert await asyncio.to_thread(rpc_call, url, "add", [1, 2]) == 3
    assert await asyncio.to_thread(rpc_call, url.replace("ws:", "http:"), "echo", {"a": 1}) == {
        "a": 1
    }
    with pytest.raises(RpcError) as info:
        await asyncio.to_thread(rpc_call, url, "nope")
    assert info.value.code == METHOD_NOT_FOUND
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(rpc_call, url, "sleep", [0.5], 0.1)


async def test_rpc_call_oversized_and_refused(make_server: Any) -> None:
    server = await make_server(max_request_bytes=1000)
    with pytest.raises(RpcError) as info:
        await asyncio.to_thread(rpc_call, ws_url(server), "echo", ["x" * 5000])
    assert info.value.code == OVERSIZED_REQUEST
    with pytest.raises(RpcConnectionError):
        await asyncio.to_thread(rpc_call, f"http://127.0.0.1:{free_port()}", "echo")


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_wss(tmp_path: Path) -> None:
    cert_path, key_path = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert_path, key_path)
    client_ctx = ssl.create_default_context(cafile=str(cert_path))
    server = RpcServer(name="trusted")
    server.add_method("echo", lambda params: params)
    port = await server.start("127.0.0.1", 0, ssl_context=server_ctx)
    try:
        async with RpcClient.connect(f"wss://127.0.0.1:{port}", ssl=client_ctx) as client:
            assert await client.request("echo", ["secure"]) == ["secure"]
        assert await http_request(f"wss://127.0.0.1:{port}", "echo", [1], ssl=client_ctx) == [1]
        with pytest.raises(RpcConnectionError):  # the default context does not trust the cert
            await RpcClient.connect(f"wss://127.0.0.1:{port}")
    finally:
        await server.stop()
