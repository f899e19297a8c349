"""Fixtures for the RPC tests: servers on free ports that are always stopped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from integritee.rpc import RpcError, RpcServer, SubscriptionSink

ServerFactory = Callable[..., Awaitable[RpcServer]]


def register_test_methods(server: RpcServer) -> dict[str, Any]:
    """A small API used by most tests; returns shared state the tests can inspect."""
    state: dict[str, Any] = {"notified": [], "closed": [], "calls": []}

    server.add_method("echo", lambda params: params, aliases=("echo_alias",))

    @server.method("add")
    async def add(params: Any) -> int:
        a, b = params  # a wrong shape raises ValueError/TypeError -> INVALID_PARAMS
        return int(a) + int(b)

    @server.method("record")
    def record(params: Any) -> None:
        state["notified"].append(params)

    @server.method("fail")
    def fail(params: Any) -> None:
        raise RuntimeError("boom")

    @server.method("custom_error")
    def custom_error(params: Any) -> None:
        raise RpcError(1010, "Invalid Transaction", "Inability to pay some fees")

    @server.method("sleep")
    async def sleep(params: Any) -> str:
        await asyncio.sleep(float(params[0]))
        return "slept"

    @server.method("big")
    def big(params: Any) -> str:
        return "x" * int(params[0])

    @server.method("unserializable")
    def unserializable(params: Any) -> object:
        return object()

    async def counter(params: Any, sink: SubscriptionSink) -> None:
        if params and params[0] == "reject":
            raise RpcError(-32602, "rejected")
        count = int(params[0]) if params else 3
        sink.send("first")  # sent before the subscribe reply: must arrive after it

        async def produce() -> None:
            for i in range(count):
                await asyncio.sleep(0.005)
                sink.send(i)

        task = asyncio.get_running_loop().create_task(produce())

        def closed() -> None:
            task.cancel()
            state["closed"].append(sink.subscription_id)

        sink.on_close(closed)

    server.add_subscription(
        "test_subscribeCounter",
        "test_unsubscribeCounter",
        "test_counter",
        counter,
        aliases=("test_counterAlias",),
        unsubscribe_aliases=("test_counterUnsubAlias",),
    )

    async def idle(params: Any, sink: SubscriptionSink) -> None:
        sink.on_close(lambda: state["closed"].append(sink.subscription_id))

    server.add_subscription("test_subscribeIdle", "test_unsubscribeIdle", "test_idle", idle)
    return state


@pytest.fixture
async def make_server() -> AsyncIterator[ServerFactory]:
    servers: list[RpcServer] = []

    async def factory(**kwargs: Any) -> RpcServer:
        server = RpcServer(**kwargs)
        server.state = register_test_methods(server)  # type: ignore[attr-defined]
        await server.start("127.0.0.1", 0)
        servers.append(server)
        return server

    try:
        yield factory
    finally:
        for server in servers:
            await server.stop()


@pytest.fixture
async def server(make_server: ServerFactory) -> RpcServer:
    return await make_server()
