"""Wire-level tests of the JSON-RPC server over raw HTTP and WebSocket (no project client)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from integritee.rpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    OVERSIZED_REQUEST,
    OVERSIZED_RESPONSE,
    PARSE_ERROR,
    TOO_MANY_SUBSCRIPTIONS,
    RpcServer,
)

MiB = 1024 * 1024


def url_of(server: RpcServer) -> str:
    return f"http://127.0.0.1:{server.port}/"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


async def post(
    session: aiohttp.ClientSession, server: RpcServer, body: str | bytes
) -> tuple[int, str]:
    async with session.post(
        url_of(server), data=body, headers={"Content-Type": "application/json"}
    ) as response:
        return response.status, await response.text()


async def post_json(session: aiohttp.ClientSession, server: RpcServer, payload: Any) -> Any:
    status, text = await post(session, server, json.dumps(payload))
    assert status == 200
    return json.loads(text)


def call(method: str, params: Any = None, id_: Any = 1) -> dict[str, Any]:
    obj: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "id": id_}
    if params is not None:
        obj["params"] = params
    return obj


async def ws_roundtrip(ws: aiohttp.ClientWebSocketResponse, payload: Any) -> Any:
    await ws.send_str(payload if isinstance(payload, str) else json.dumps(payload))
    return json.loads((await ws.receive(timeout=5)).data)


# -- HTTP ---------------------------------------------------------------------------------------


async def test_http_request(server: RpcServer, session: aiohttp.ClientSession) -> None:
    reply = await post_json(session, server, call("add", [2, 3], 7))
    assert reply == {"jsonrpc": "2.0", "result": 5, "id": 7}
    reply = await post_json(session, server, call("echo", {"named": [1]}, "x"))
    assert reply == {"jsonrpc": "2.0", "result": {"named": [1]}, "id": "x"}
    # absent params are passed as []
    assert (await post_json(session, server, call("echo")))["result"] == []
    assert (await post_json(session, server, call("echo_alias", [1])))["result"] == [1]


@pytest.mark.parametrize("id_", [0, -1, 2**70, 1.5, "abc", "", None])
async def test_id_is_echoed_exactly(
    server: RpcServer, session: aiohttp.ClientSession, id_: Any
) -> None:
    reply = await post_json(session, server, call("echo", [1], id_))
    assert "id" in reply and reply["id"] == id_ and type(reply["id"]) is type(id_)


@pytest.mark.parametrize("id_", [True, {}, [1]])
async def test_invalid_id_is_an_invalid_request(
    server: RpcServer, session: aiohttp.ClientSession, id_: Any
) -> None:
    reply = await post_json(session, server, call("echo", [1], id_))
    assert reply["error"]["code"] == INVALID_REQUEST and reply["id"] is None


async def test_parse_errors(server: RpcServer, session: aiohttp.ClientSession) -> None:
    for body in [
        b"{bad json",
        b'{"jsonrpc":"2.0","id":1,"method":"echo","params":[NaN]}',
        b"\xff\xfe",
        b"[" * 200_000,
    ]:
        status, text = await post(session, server, body)
        reply = json.loads(text)
        assert status == 200
        assert reply["error"]["code"] == PARSE_ERROR and reply["id"] is None, body[:20]
    assert (await post_json(session, server, call("echo", [1])))["result"] == [1]


async def test_invalid_requests(server: RpcServer, session: aiohttp.ClientSession) -> None:
    cases = [
        ({"method": "echo", "id": 1}, INVALID_REQUEST, 1),  # no jsonrpc member
        ({"jsonrpc": "1.0", "method": "echo", "id": 2}, INVALID_REQUEST, 2),
        ({"jsonrpc": "2.0", "method": 5, "id": 3}, INVALID_REQUEST, 3),
        ({"jsonrpc": "2.0", "id": 4}, INVALID_REQUEST, 4),
        ({"jsonrpc": "2.0", "method": "echo", "params": "str", "id": 5}, INVALID_PARAMS, 5),
        ({"jsonrpc": "2.0", "method": "echo", "params": 7, "id": 6}, INVALID_PARAMS, 6),
        ("just a string", INVALID_REQUEST, None),
        ([], INVALID_REQUEST, None),
    ]
    for payload, code, id_ in cases:
        reply = await post_json(session, server, payload)
        assert reply["error"]["code"] == code, payload
        assert reply["id"] == id_


async def test_unknown_method(server: RpcServer, session: aiohttp.ClientSession) -> None:
    reply = await post_json(session, server, call("nope", [], 9))
    assert reply["error"]["code"] == METHOD_NOT_FOUND and reply["id"] == 9


async def test_invalid_params_from_handler(
    server: RpcServer, session: aiohttp.ClientSession
) -> None:
    reply = await post_json(session, server, call("add", ["x", 1]))
    assert reply["error"]["code"] == INVALID_PARAMS
    assert "invalid literal" in reply["error"]["message"]
    reply = await post_json(session, server, call("add", [1]))  # unpacking fails: ValueError
    assert reply["error"]["code"] == INVALID_PARAMS


async def test_handler_errors(
    server: RpcServer, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="integritee.rpc"):
        reply = await post_json(session, server, call("fail"))
    assert reply["error"] == {"code": INTERNAL_ERROR, "message": "Internal error"}
    assert "boom" in caplog.text  # the traceback is logged, not sent
    reply = await post_json(session, server, call("custom_error"))
    assert reply["error"] == {
        "code": 1010,
        "message": "Invalid Transaction",
        "data": "Inability to pay some fees",
    }
    reply = await post_json(session, server, call("unserializable"))
    assert reply["error"]["code"] == INTERNAL_ERROR
    assert (await post_json(session, server, call("add", [1, 1])))["result"] == 2


async def test_batch(server: RpcServer, session: aiohttp.ClientSession) -> None:
    batch = [
        call("add", [1, 2], 1),
        {"jsonrpc": "2.0", "method": "record", "params": ["in batch"]},  # notification
        call("nope", [], 2),
        5,
        call("echo", {"a": 1}, "three"),
    ]
    reply = await post_json(session, server, batch)
    assert reply == [
        {"jsonrpc": "2.0", "result": 3, "id": 1},
        {
            "jsonrpc": "2.0",
            "error": {"code": METHOD_NOT_FOUND, "message": "Method not found: nope"},
            "id": 2,
        },
        {
            "jsonrpc": "2.0",
            "error": {"code": INVALID_REQUEST, "message": "not a JSON object"},
            "id": None,
        },
        {"jsonrpc": "2.0", "result": {"a": 1}, "id": "three"},
    ]
    assert server.state["notified"] == [["in batch"]]  # type: ignore[attr-defined]


async def test_notifications_get_no_reply(
    server: RpcServer, session: aiohttp.ClientSession
) -> None:
    note = {"jsonrpc": "2.0", "method": "record", "params": [1]}
    status, text = await post(session, server, json.dumps(note))
    assert status == 200 and text == ""
    status, text = await post(session, server, json.dumps([note, {**note, "method": "fail"}]))
    assert status == 200 and text == ""
    assert server.state["notified"] == [[1], [1]]  # type: ignore[attr-defined]


async def test_rpc_methods(server: RpcServer, session: aiohttp.ClientSession) -> None:
    result = (await post_json(session, server, call("rpc_methods")))["result"]
    assert result["version"] == 1
    methods = result["methods"]
    assert methods == sorted(methods)
    for name in [
        "echo",
        "echo_alias",
        "rpc_methods",
        "test_subscribeCounter",
        "test_counterAlias",
        "test_unsubscribeCounter",
        "test_counterUnsubAlias",
    ]:
        assert name in methods


async def test_rpc_methods_can_be_overridden() -> None:
    server = RpcServer()
    server.add_method("rpc_methods", lambda params: {"version": 1, "methods": ["mine"]})
    await server.start("127.0.0.1", 0)
    try:
        async with aiohttp.ClientSession() as session:
            reply = await post_json(session, server, call("rpc_methods"))
        assert reply["result"] == {"version": 1, "methods": ["mine"]}
    finally:
        await server.stop()


def test_duplicate_registration_is_refused() -> None:
    server = RpcServer()
    server.add_method("a", lambda params: 1, aliases=("b",))
    with pytest.raises(ValueError):
        server.add_method("b", lambda params: 2)
    with pytest.raises(ValueError):
        server.add_subscription("s", "a", "n", lambda params, sink: None)


async def test_subscriptions_are_refused_over_http(
    server: RpcServer, session: aiohttp.ClientSession
) -> None:
    reply = await post_json(session, server, call("test_subscribeCounter", []))
    assert reply["error"]["code"] == INTERNAL_ERROR
    assert "WebSocket" in reply["error"]["message"]
    reply = await post_json(session, server, call("test_unsubscribeCounter", ["abc"]))
    assert reply["error"]["code"] == INTERNAL_ERROR
    assert server.state["closed"] == []  # type: ignore[attr-defined]


async def test_http_oversized_request(server: RpcServer, session: aiohttp.ClientSession) -> None:
    payload = json.dumps(call("echo", ["x" * (16 * MiB)]))
    status, text = await post(session, server, payload)
    assert status == 413
    reply = json.loads(text)
    assert reply["error"]["code"] == OVERSIZED_REQUEST and reply["id"] is None
    # the server keeps serving (on a fresh connection as well as the pooled one)
    assert (await post_json(session, server, call("add", [1, 2])))["result"] == 3


async def test_http_oversized_chunked_request(
    make_server: Any, session: aiohttp.ClientSession
) -> None:
    server = await make_server(max_request_bytes=1000)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 500

    async with session.post(url_of(server), data=body()) as response:
        assert response.status == 413
        assert (await response.json())["error"]["code"] == OVERSIZED_REQUEST
    assert (await post_json(session, server, call("add", [1, 2])))["result"] == 3


async def test_oversized_response(make_server: Any, session: aiohttp.ClientSession) -> None:
    server = await make_server(max_response_bytes=1000)
    reply = await post_json(session, server, call("big", [2000], 4))
    assert reply["error"]["code"] == OVERSIZED_RESPONSE and reply["id"] == 4
    assert len((await post_json(session, server, call("big", [500])))["result"]) == 500


async def test_get_without_upgrade(server: RpcServer, session: aiohttp.ClientSession) -> None:
    async with session.get(url_of(server)) as response:
        assert response.status == 405


async def test_extra_routes_can_be_added() -> None:
    from aiohttp import web

    server = RpcServer()

    async def is_initialized(request: web.Request) -> web.Response:
        return web.Response(text="I am initialized.")

    server.app.router.add_get("/is_initialized", is_initialized)
    await server.start("127.0.0.1", 0)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{server.port}/is_initialized") as response,
        ):
            assert await response.text() == "I am initialized."
    finally:
        await server.stop()


async def test_on_request_hook(session: aiohttp.ClientSession) -> None:
    seen: list[tuple[str, bool, float]] = []

    def hook(method: str, ok: bool, seconds: float) -> None:
        seen.append((method, ok, seconds))
        if method == "echo_alias":
            raise RuntimeError("a failing hook must not break the call")

    server = RpcServer(on_request=hook)
    server.add_method("echo", lambda params: params, aliases=("echo_alias",))
    await server.start("127.0.0.1", 0)
    try:
        await post_json(session, server, [call("echo", [1]), call("nosuch"), call("echo", "bad")])
        assert (await post_json(session, server, call("echo_alias", [2])))["result"] == [2]
    finally:
        await server.stop()
    assert [(m, ok) for m, ok, _ in seen] == [
        ("echo", True),
        ("<unknown>", False),
        ("echo", False),
        ("echo_alias", True),
    ]
    assert all(s >= 0 for _, _, s in seen)


# -- WebSocket ----------------------------------------------------------------------------------


@pytest.fixture
async def ws(
    server: RpcServer, session: aiohttp.ClientSession
) -> AsyncIterator[aiohttp.ClientWebSocketResponse]:
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}", max_msg_size=64 * MiB) as conn:
        yield conn


async def test_ws_requests(ws: aiohttp.ClientWebSocketResponse) -> None:
    assert await ws_roundtrip(ws, call("add", [20, 22], "a")) == {
        "jsonrpc": "2.0",
        "result": 42,
        "id": "a",
    }
    reply = await ws_roundtrip(ws, "{nope")
    assert reply["error"]["code"] == PARSE_ERROR and reply["id"] is None
    await ws.send_bytes(b"\xff\xff")  # binary frame, not UTF-8
    reply = json.loads((await ws.receive(timeout=5)).data)
    assert reply["error"]["code"] == PARSE_ERROR
    reply = await ws_roundtrip(ws, call("fail", [], 3))
    assert reply["error"]["code"] == INTERNAL_ERROR and reply["id"] == 3
    await ws.send_bytes(json.dumps(call("echo", [5], 4)).encode())  # binary JSON is accepted
    assert json.loads((await ws.receive(timeout=5)).data)["result"] == [5]
    batch = await ws_roundtrip(ws, [call("echo", [1], 1), call("add", [1, 1], 2)])
    assert [r["result"] for r in batch] == [[1], 2]


async def test_ws_notification_gets_no_reply(
    ws: aiohttp.ClientWebSocketResponse, server: RpcServer
) -> None:
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "method": "record", "params": ["n"]}))
    await ws.send_str(json.dumps([{"jsonrpc": "2.0", "method": "record", "params": ["m"]}]))
    # the next message on the socket is the reply to this call, not to the notifications
    assert (await ws_roundtrip(ws, call("echo", ["after"], 99)))["id"] == 99
    assert server.state["notified"] == [["n"], ["m"]]  # type: ignore[attr-defined]


async def test_ws_calls_run_concurrently(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.send_str(json.dumps(call("sleep", [0.5], "slow")))
    await ws.send_str(json.dumps(call("echo", [1], "fast")))
    first = json.loads((await ws.receive(timeout=5)).data)
    second = json.loads((await ws.receive(timeout=5)).data)
    assert (first["id"], second["id"]) == ("fast", "slow")


async def test_ws_backpressure_bounds_in_flight_calls(
    make_server: Any, session: aiohttp.ClientSession
) -> None:
    server = await make_server(max_in_flight_per_connection=2)
    gate = asyncio.Event()
    started: list[int] = []

    async def wait(params: Any) -> int:
        started.append(params[0])
        await gate.wait()
        return int(params[0])

    server.add_method("wait", wait)
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
        for i in range(5):
            await ws.send_str(json.dumps(call("wait", [i], i)))
        await asyncio.sleep(0.2)
        assert started == [0, 1]  # the rest wait unread in the socket
        gate.set()
        ids = sorted([json.loads((await ws.receive(timeout=5)).data)["id"] for _ in range(5)])
        assert ids == [0, 1, 2, 3, 4]


async def test_ws_oversized_request_keeps_connection(ws: aiohttp.ClientWebSocketResponse) -> None:
    payload = json.dumps(call("echo", ["x" * (16 * MiB)], 1))
    reply = await ws_roundtrip(ws, payload)
    assert reply["error"]["code"] == OVERSIZED_REQUEST and reply["id"] is None
    assert (await ws_roundtrip(ws, call("add", [1, 2], 2)))["result"] == 3


async def test_ws_far_oversized_message_closes_with_1009(
    make_server: Any, session: aiohttp.ClientSession
) -> None:
    server = await make_server(max_request_bytes=10_000, ws_max_message_bytes=20_000)
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
        reply = await ws_roundtrip(ws, json.dumps(call("echo", ["x" * 15_000])))
        assert reply["error"]["code"] == OVERSIZED_REQUEST
        await ws.send_str(json.dumps(call("echo", ["x" * 30_000])))
        msg = await ws.receive(timeout=5)
        assert msg.type in (
            aiohttp.WSMsgType.CLOSE,
            aiohttp.WSMsgType.CLOSED,
            aiohttp.WSMsgType.CLOSING,
        )
        assert ws.close_code == 1009
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
        assert (await ws_roundtrip(ws, call("add", [1, 2])))["result"] == 3


async def test_ws_subscription_flow(ws: aiohttp.ClientWebSocketResponse, server: RpcServer) -> None:
    reply = await ws_roundtrip(ws, call("test_subscribeCounter", [3], 1))
    sub_id = reply["result"]
    assert isinstance(sub_id, str) and sub_id and reply["id"] == 1
    results = []
    for _ in range(4):
        note = json.loads((await ws.receive(timeout=5)).data)
        assert note["jsonrpc"] == "2.0" and note["method"] == "test_counter"
        assert note["params"]["subscription"] == sub_id and "id" not in note
        results.append(note["params"]["result"])
    assert results == ["first", 0, 1, 2]
    assert (await ws_roundtrip(ws, call("test_unsubscribeCounter", [sub_id], 2)))["result"] is True
    assert server.state["closed"] == [sub_id]  # type: ignore[attr-defined]
    assert (await ws_roundtrip(ws, call("test_unsubscribeCounter", [sub_id], 3)))["result"] is False
    # an unsubscribe of another kind of subscription does not end this one
    reply = await ws_roundtrip(ws, call("test_counterAlias", [0], 4))
    other = reply["result"]
    assert json.loads((await ws.receive(timeout=5)).data)["params"]["result"] == "first"
    assert (await ws_roundtrip(ws, call("test_unsubscribeIdle", [other], 5)))["result"] is False
    assert (await ws_roundtrip(ws, call("test_counterUnsubAlias", [other], 6)))["result"] is True
    reply = await ws_roundtrip(ws, call("test_unsubscribeCounter", [], 7))
    assert reply["error"]["code"] == INVALID_PARAMS


async def test_ws_subscription_rejected_by_handler(
    ws: aiohttp.ClientWebSocketResponse, server: RpcServer
) -> None:
    reply = await ws_roundtrip(ws, call("test_subscribeCounter", ["reject"], 1))
    assert reply["error"] == {"code": -32602, "message": "rejected"}
    reply = await ws_roundtrip(ws, call("test_subscribeCounter", ["not a number"], 2))
    assert reply["error"]["code"] == INVALID_PARAMS


async def test_ws_too_many_subscriptions(make_server: Any, session: aiohttp.ClientSession) -> None:
    server = await make_server(max_subscriptions_per_connection=2)
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
        ids = [
            (await ws_roundtrip(ws, call("test_subscribeIdle", [], i)))["result"] for i in range(2)
        ]
        reply = await ws_roundtrip(ws, call("test_subscribeIdle", [], 3))
        assert reply["error"]["code"] == TOO_MANY_SUBSCRIPTIONS
        assert (await ws_roundtrip(ws, call("test_unsubscribeIdle", [ids[0]], 4)))["result"] is True
        assert isinstance(
            (await ws_roundtrip(ws, call("test_subscribeIdle", [], 5)))["result"], str
        )


async def test_disconnect_closes_subscriptions(
    server: RpcServer, session: aiohttp.ClientSession
) -> None:
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
        sub_id = (await ws_roundtrip(ws, call("test_subscribeIdle", [], 1)))["result"]
    for _ in range(100):
        if server.state["closed"]:  # type: ignore[attr-defined]
            break
        await asyncio.sleep(0.01)
    assert server.state["closed"] == [sub_id]  # type: ignore[attr-defined]


async def test_custom_subscription_id_and_extra_members(session: aiohttp.ClientSession) -> None:
    from integritee.rpc import SubscriptionSink

    server = RpcServer()

    def watch(params: Any, sink: SubscriptionSink) -> None:
        sink.set_id(params[0])
        sink.send("0x01")
        sink.send("0x02")
        sink.close()  # the watch ends on its own, after delivering both

    server.add_subscription(
        "author_submitAndWatchExtrinsic",
        "author_unwatchExtrinsic",
        "author_submitAndWatchExtrinsic",
        watch,
        notification_extra={"error": None},
    )
    await server.start("127.0.0.1", 0)
    try:
        async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
            assert (await ws_roundtrip(ws, call("author_submitAndWatchExtrinsic", ["0xabcd"])))[
                "result"
            ] == "0xabcd"
            notes = [json.loads((await ws.receive(timeout=5)).data) for _ in range(2)]
            assert [n["params"] for n in notes] == [
                {"subscription": "0xabcd", "result": "0x01", "error": None},
                {"subscription": "0xabcd", "result": "0x02", "error": None},
            ]
            reply = await ws_roundtrip(ws, call("author_unwatchExtrinsic", ["0xabcd"]))
            assert reply["result"] is False  # already ended by the server
    finally:
        await server.stop()


async def test_max_connections(make_server: Any, session: aiohttp.ClientSession) -> None:
    server = await make_server(max_connections=1)
    async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
        assert (await ws_roundtrip(ws, call("echo", [1])))["result"] == [1]
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(f"ws://127.0.0.1:{server.port}")
        assert info.value.status == 503
        status, _ = await post(session, server, json.dumps(call("echo", [1])))
        assert status == 503
    await asyncio.sleep(0.05)
    assert (await post_json(session, server, call("echo", [1])))["result"] == [1]


async def test_stop_closes_connections(make_server: Any, session: aiohttp.ClientSession) -> None:
    server = await make_server()
    ws = await session.ws_connect(f"ws://127.0.0.1:{server.port}")
    sub_id = (await ws_roundtrip(ws, call("test_subscribeIdle", [], 1)))["result"]
    await ws.send_str(json.dumps(call("sleep", [30], 2)))
    await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await server.stop()
    assert loop.time() - started < 5
    msg = await ws.receive(timeout=5)
    assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
    assert server.state["closed"] == [sub_id]  # type: ignore[attr-defined]
    await ws.close()
    with pytest.raises(aiohttp.ClientConnectionError):
        await session.post(f"http://127.0.0.1:{ws._response.url.port}/", data="{}")


async def test_slow_subscriber_is_disconnected(session: aiohttp.ClientSession) -> None:
    from integritee.rpc import SubscriptionSink

    server = RpcServer(max_buffered_notifications=20)
    sinks: list[SubscriptionSink] = []
    closed: list[bool] = []

    def flood(params: Any, sink: SubscriptionSink) -> None:
        sinks.append(sink)
        sink.on_close(lambda: closed.append(True))

    server.add_subscription("flood_subscribe", "flood_unsubscribe", "flood", flood)
    await server.start("127.0.0.1", 0)
    try:
        async with session.ws_connect(f"ws://127.0.0.1:{server.port}") as ws:
            await ws_roundtrip(ws, call("flood_subscribe"))
            connection = ws._response.connection
            assert connection is not None and connection.transport is not None
            transport = connection.transport
            transport.pause_reading()  # a client that stops reading
            chunk = "x" * 65536
            accepted = 0
            for _ in range(2000):
                if not sinks[0].send(chunk):
                    break
                accepted += 1
                await asyncio.sleep(0)
            for _ in range(200):
                if closed:
                    break
                await asyncio.sleep(0.01)
            assert closed == [True] and sinks[0].closed
            assert 20 <= accepted < 2000
            transport.resume_reading()
    finally:
        await server.stop()
