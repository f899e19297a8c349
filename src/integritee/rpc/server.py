"""JSON-RPC 2.0 server over HTTP POST and WebSocket on one port and path, with subscriptions.

This module owns the wire protocol shared by every server of the project (the parentchain node on
9944, the validateer's trusted and untrusted servers): request validation, single and batch calls,
notifications, error mapping, size limits, per-connection backpressure, subscriptions, graceful
shutdown. What the methods do is registered by the caller.

Handler conventions:
- A method handler is `handler(params)` (sync or async), where `params` is the request's `params`
  as sent (a list or a dict; `[]` when absent). Its return value is the JSON `result`.
- Raise `RpcError` for a specific error object. `ValueError` and `TypeError` raised by a handler
  are taken to mean "the params did not parse" and become INVALID_PARAMS with the exception's
  message, so handlers can parse params with plain Python (int(), from_hex(), tuple unpacking)
  and let those errors propagate. Any other exception becomes INTERNAL_ERROR and is logged with
  its traceback; the connection and the server keep serving.
- Sync handlers run on the event loop: they must be quick (the node's state is single-threaded on
  purpose). Long work belongs in an async handler that awaits an executor.
- A subscription handler is `handler(params, sink)` (sync or async). It validates the params and
  sets up whatever feeds the sink, registering clean-up with `sink.on_close`. The subscribe call
  replies with the subscription id only once the handler returned without raising; notifications
  the handler sends before that are held back and delivered right after the reply.
- Batches are processed in order, one call after another, and answered with one array (the
  replies of notifications left out; no reply at all when every element was a notification).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import os
import secrets
import ssl
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from integritee.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    OVERSIZED_REQUEST,
    OVERSIZED_RESPONSE,
    PARSE_ERROR,
    SERVER_IS_BUSY,
    TOO_MANY_SUBSCRIPTIONS,
    RpcError,
)

log = logging.getLogger("integritee.rpc")

MiB = 1024 * 1024

Params = list[Any] | dict[str, Any]
MethodHandler = Callable[[Params], Any]
SubscriptionHandler = Callable[[Params, "SubscriptionSink"], Any]
RequestHook = Callable[[str, bool, float], None]
CloseCallback = Callable[[], Any]

_JSON_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"invalid JSON constant {name}")


def _loads(text: str) -> Any:
    # NaN/Infinity are not JSON; deep nesting raises RecursionError, which callers treat as a
    # parse error as well.
    return json.loads(text, parse_constant=_reject_constant)


def _is_valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return value is None or isinstance(value, int | float | str)


def _error_text(req_id: Any, error: RpcError) -> str:
    return _JSON_ENCODER.encode({"jsonrpc": "2.0", "error": error.to_json(), "id": req_id})


@dataclass
class _Method:
    name: str
    handler: MethodHandler


@dataclass
class _SubscriptionSpec:
    subscribe: str
    unsubscribe: str
    notification: str
    handler: SubscriptionHandler
    notification_extra: dict[str, Any]


@dataclass
class _Unsubscribe:
    spec: _SubscriptionSpec


_Entry = _Method | _SubscriptionSpec | _Unsubscribe


@dataclass
class _Reply:
    """The serialized reply to one call plus the subscriptions to activate once it is sent."""

    text: str | None
    activate: list[SubscriptionSink] = field(default_factory=list)


class SubscriptionSink:
    """The server side of one subscription: push results, learn when it ends.

    Use it from the event loop thread only. `send` never blocks: notifications are queued per
    connection (a client that stops reading gets disconnected once the queue is full, rather than
    silently missing notifications).
    """

    def __init__(self, conn: _WsConnection, spec: _SubscriptionSpec, sub_id: str | int) -> None:
        self._conn = conn
        self._spec = spec
        self._id: str | int = sub_id
        self._pending: list[str] | None = []  # held back until the subscribe reply is sent
        self._closed = False
        self._callbacks: list[CloseCallback] = []

    @property
    def subscription_id(self) -> str | int:
        return self._id

    @property
    def method(self) -> str:
        return self._spec.subscribe

    @property
    def closed(self) -> bool:
        return self._closed

    def set_id(self, sub_id: str | int) -> None:
        """Choose the subscription id (only while the subscription handler runs)."""
        if self._pending is None:
            raise RuntimeError("the subscription id can only be chosen before it was sent")
        if not isinstance(sub_id, str | int) or isinstance(sub_id, bool):
            raise TypeError("a subscription id must be a string or an integer")
        if sub_id in self._conn.subscriptions:
            raise RpcError(INVALID_PARAMS, f"subscription id {sub_id!r} is already in use")
        self._id = sub_id

    def send(self, result: Any) -> bool:
        """Push one notification; False when the subscription is closed or the result dropped."""
        if self._closed:
            return False
        params = {"subscription": self._id, "result": result}
        params.update(self._spec.notification_extra)
        text = _JSON_ENCODER.encode(
            {"jsonrpc": "2.0", "method": self._spec.notification, "params": params}
        )
        if len(text) > self._conn.server.max_response_bytes:
            log.warning(
                "%s: dropped a %s notification of %d bytes (limit %d)",
                self._conn.server.name,
                self._spec.notification,
                len(text),
                self._conn.server.max_response_bytes,
            )
            return False
        if self._pending is not None:
            self._pending.append(text)
            return True
        return self._conn.enqueue_notification(text)

    def on_close(self, callback: CloseCallback) -> None:
        """Run `callback()` (sync, or returning an awaitable) once, when the subscription ends."""
        if self._closed:
            self._run_callback(callback)
        else:
            self._callbacks.append(callback)

    def close(self) -> None:
        """End the subscription from the server side (no message goes to the client)."""
        if self._closed:
            return
        self._closed = True
        if self._conn.subscriptions.get(self._id) is self:
            del self._conn.subscriptions[self._id]
        callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            self._run_callback(callback)

    def _activate(self) -> None:
        pending, self._pending = self._pending, None
        for text in pending or ():
            if not self._conn.enqueue_notification(text):
                break

    def _run_callback(self, callback: CloseCallback) -> None:
        try:
            result = callback()
            if inspect.isawaitable(result):
                self._conn.server._spawn(result)
        except Exception:
            log.warning(
                "%s: subscription close callback failed", self._conn.server.name, exc_info=True
            )


class _WsConnection:
    """State of one WebSocket connection: send lock, subscriptions, in-flight calls."""

    def __init__(self, server: RpcServer, ws: web.WebSocketResponse, peer: str) -> None:
        self.server = server
        self.ws = ws
        self.peer = peer
        self.subscriptions: dict[str | int, SubscriptionSink] = {}
        self.send_lock = asyncio.Lock()
        self.in_flight = asyncio.Semaphore(server.max_in_flight_per_connection)
        self.tasks: set[asyncio.Task[None]] = set()
        self.notifications: asyncio.Queue[str] = asyncio.Queue()
        self.writer: asyncio.Task[None] | None = None
        self.closing = False

    def call_done(self, task: asyncio.Task[None]) -> None:
        self.tasks.discard(task)
        self.in_flight.release()

    async def send(self, text: str) -> None:
        async with self.send_lock:
            await self.ws.send_str(text)

    def enqueue_notification(self, text: str) -> bool:
        if self.closing:
            return False
        if self.notifications.qsize() >= self.server.max_buffered_notifications:
            log.warning(
                "%s: %s does not read its notifications, closing the connection",
                self.server.name,
                self.peer,
            )
            self.server._spawn(self.close(WSCloseCode.POLICY_VIOLATION, b"slow subscriber"))
            return False
        if self.writer is None:
            self.writer = asyncio.get_running_loop().create_task(self._write_notifications())
        self.notifications.put_nowait(text)
        return True

    async def _write_notifications(self) -> None:
        while True:
            text = await self.notifications.get()
            try:
                await self.send(text)
            except (ConnectionError, RuntimeError):
                return

    def close_subscriptions(self) -> None:
        for sink in list(self.subscriptions.values()):
            sink.close()

    async def close(self, code: int = WSCloseCode.GOING_AWAY, message: bytes = b"") -> None:
        self.closing = True
        self.close_subscriptions()
        # Cancelling the calls also frees a reader blocked on the in-flight bound.
        for task in list(self.tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.ws.close(code=code, message=message)


class RpcServer:
    """A JSON-RPC 2.0 server: HTTP POST and WebSocket on one port, path "/"."""

    def __init__(
        self,
        *,
        max_request_bytes: int = 15 * MiB,
        max_response_bytes: int = 15 * MiB,
        max_connections: int = 1000,
        max_subscriptions_per_connection: int = 1024,
        max_in_flight_per_connection: int = 256,
        max_buffered_notifications: int = 16384,
        ws_max_message_bytes: int | None = None,
        name: str = "rpc",
        on_request: RequestHook | None = None,
        shutdown_grace: float = 2.0,
    ) -> None:
        self.max_request_bytes = max_request_bytes
        self.max_response_bytes = max_response_bytes
        self.max_connections = max_connections
        self.max_subscriptions_per_connection = max_subscriptions_per_connection
        self.max_in_flight_per_connection = max_in_flight_per_connection
        self.max_buffered_notifications = max_buffered_notifications
        # Messages a little above the limit still get a proper -32007 reply; far above it the
        # WebSocket layer closes the connection (1009) without buffering the whole message.
        self.ws_max_message_bytes = (
            ws_max_message_bytes
            if ws_max_message_bytes is not None
            else max_request_bytes + max(MiB, max_request_bytes // 4)
        )
        self.name = name
        self.on_request = on_request
        # How long stop() lets running HTTP calls finish (WebSocket calls are cancelled).
        self.shutdown_grace = shutdown_grace
        self._entries: dict[str, _Entry] = {}
        self._connections: set[_WsConnection] = set()
        self._http_in_flight = 0
        self._background: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._port: int | None = None
        self._stopping = False
        self.app = web.Application(client_max_size=self.ws_max_message_bytes)
        self.app.router.add_route("GET", "/", self._handle_get)
        self.app.router.add_route("POST", "/", self._handle_post)

    # -- registration --------------------------------------------------------------------------

    @staticmethod
    def _names(name: str, aliases: Iterable[str]) -> tuple[str, ...]:
        if isinstance(aliases, str):
            raise TypeError("aliases must be a sequence of names, not one string")
        return (name, *aliases)

    def _register(self, name: str, entry: _Entry) -> None:
        if not name:
            raise ValueError("an RPC method name must not be empty")
        if name in self._entries:
            raise ValueError(f"RPC method {name!r} is already registered")
        self._entries[name] = entry

    def add_method(self, name: str, handler: MethodHandler, aliases: Iterable[str] = ()) -> None:
        """Register `handler(params)` under `name` and each alias."""
        for method_name in self._names(name, aliases):
            self._register(method_name, _Method(name, handler))

    def method(
        self, name: str, aliases: Iterable[str] = ()
    ) -> Callable[[MethodHandler], MethodHandler]:
        """Decorator form of `add_method`."""

        def decorate(handler: MethodHandler) -> MethodHandler:
            self.add_method(name, handler, aliases)
            return handler

        return decorate

    def add_subscription(
        self,
        subscribe: str,
        unsubscribe: str,
        notification: str,
        handler: SubscriptionHandler,
        aliases: Iterable[str] = (),
        unsubscribe_aliases: Iterable[str] = (),
        notification_extra: dict[str, Any] | None = None,
    ) -> None:
        """Register a subscription (WebSocket only).

        `notification_extra` adds fixed members to every notification's `params` (the trusted
        RPC's watch sends `"error": null` beside `subscription` and `result`).
        """
        spec = _SubscriptionSpec(
            subscribe, unsubscribe, notification, handler, dict(notification_extra or {})
        )
        for method_name in self._names(subscribe, aliases):
            self._register(method_name, spec)
        for method_name in self._names(unsubscribe, unsubscribe_aliases):
            self._register(method_name, _Unsubscribe(spec))

    def method_names(self) -> list[str]:
        """Every callable name (aliases and `rpc_methods` included), sorted."""
        names = set(self._entries)
        names.add("rpc_methods")
        return sorted(names)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} RPC server is not running")
        return self._port

    async def start(
        self, host: str = "127.0.0.1", port: int = 0, ssl_context: ssl.SSLContext | None = None
    ) -> int:
        """Bind and serve; returns the bound port (port 0 picks a free one)."""
        if self._runner is not None:
            raise RuntimeError(f"{self.name} RPC server is already running")
        self._stopping = False
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_grace
        )
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])
        scheme = "wss" if ssl_context is not None else "ws"
        log.info("%s RPC server listening on %s://%s:%d", self.name, scheme, host, self._port)
        return self._port

    async def start_unix(self, path: str) -> None:
        """Serve on a Unix socket (the enclave boundary: ecalls and ocalls stay off the network)."""
        if self._runner is not None:
            raise RuntimeError(f"{self.name} RPC server is already running")
        self._stopping = False
        runner = web.AppRunner(
            self.app, access_log=None, handle_signals=False, shutdown_timeout=self.shutdown_grace
        )
        await runner.setup()
        site = web.UnixSite(runner, path)
        try:
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        os.chmod(path, 0o600)
        self._runner = runner
        self._port = 0
        log.info("%s RPC server listening on unix:%s", self.name, path)

    async def stop(self) -> None:
        """Close every connection and subscription, then the listening socket."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._stopping = True
        await asyncio.gather(
            *(conn.close(WSCloseCode.GOING_AWAY, b"server shutdown") for conn in self._connections),
            return_exceptions=True,
        )
        await runner.cleanup()
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        self._port = None
        log.info("%s RPC server stopped", self.name)

    async def __aenter__(self) -> RpcServer:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _spawn(self, awaitable: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(awaitable)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _busy(self) -> bool:
        return len(self._connections) + self._http_in_flight >= self.max_connections

    # -- HTTP ----------------------------------------------------------------------------------

    async def _handle_post(self, request: web.Request) -> web.StreamResponse:
        if self._busy() or self._stopping:
            return self._json_response(_error_text(None, RpcError(SERVER_IS_BUSY)), status=503)
        self._http_in_flight += 1
        try:
            body = await self._read_limited(request)
            if body is None:
                error = RpcError(
                    OVERSIZED_REQUEST,
                    data=f"Exceeded max limit of {self.max_request_bytes}",
                )
                response = self._json_response(_error_text(None, error), status=413)
                if not await self._discard_body(request):
                    response.force_close()
                return response
            reply = await self._process_message(body, None)
            return self._json_response(reply.text or "")
        finally:
            self._http_in_flight -= 1

    async def _read_limited(self, request: web.Request) -> bytes | None:
        if request.content_length is not None and request.content_length > self.max_request_bytes:
            return None
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.content.iter_any():
            size += len(chunk)
            if size > self.max_request_bytes:
                return None
            chunks.append(chunk)
        return b"".join(chunks)

    async def _discard_body(self, request: web.Request) -> bool:
        """Read and drop the rest of an oversized body, so the client gets to read the 413.

        Bodies beyond a few times the limit are not drained; that connection is closed instead.
        """
        budget = 4 * self.max_request_bytes
        if request.content_length is not None and request.content_length > budget:
            return False
        try:
            async with asyncio.timeout(10):
                async for chunk in request.content.iter_any():
                    budget -= len(chunk)
                    if budget < 0:
                        return False
        except (TimeoutError, ConnectionError):
            return False
        return True

    @staticmethod
    def _json_response(text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, status=status, content_type="application/json")

    # -- WebSocket -----------------------------------------------------------------------------

    async def _handle_get(self, request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(
            max_msg_size=self.ws_max_message_bytes, decode_text=False, timeout=2.0
        )
        if not ws.can_prepare(request).ok:
            return web.Response(
                status=405,
                text="Use POST for JSON-RPC over HTTP, or a WebSocket upgrade.\n",
                headers={"Allow": "POST"},
            )
        if self._busy() or self._stopping:
            return web.Response(status=503, text="Too many connections, try again later.\n")
        await ws.prepare(request)
        peer = str(request.remote)
        conn = _WsConnection(self, ws, peer)
        self._connections.add(conn)
        log.debug("%s: WebSocket connection from %s opened", self.name, peer)
        try:
            await self._serve_ws(conn)
        finally:
            conn.closing = True
            self._connections.discard(conn)
            conn.close_subscriptions()
            for task in list(conn.tasks):
                task.cancel()
            if conn.writer is not None:
                conn.writer.cancel()
            pending = [*conn.tasks, *([conn.writer] if conn.writer else [])]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            log.debug(
                "%s: WebSocket connection from %s closed (code %s)",
                self.name,
                peer,
                ws.close_code,
            )
        return ws

    async def _serve_ws(self, conn: _WsConnection) -> None:
        ws = conn.ws
        loop = asyncio.get_running_loop()
        while not conn.closing:
            msg = await ws.receive()
            if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                data = msg.data
            elif msg.type == WSMsgType.ERROR:
                log.warning("%s: WebSocket error from %s: %s", self.name, conn.peer, msg.data)
                break
            elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                break
            else:
                continue
            if isinstance(data, str):
                data = data.encode()
            # Backpressure: stop reading the socket while too many calls are outstanding.
            await conn.in_flight.acquire()
            task = loop.create_task(self._serve_ws_message(conn, data))
            conn.tasks.add(task)
            task.add_done_callback(conn.call_done)

    async def _serve_ws_message(self, conn: _WsConnection, data: bytes) -> None:
        if len(data) > self.max_request_bytes:
            error = RpcError(
                OVERSIZED_REQUEST, data=f"Exceeded max limit of {self.max_request_bytes}"
            )
            reply = _Reply(_error_text(None, error))
        else:
            reply = await self._process_message(data, conn)
        if reply.text is not None:
            try:
                await conn.send(reply.text)
            except (ConnectionError, RuntimeError):
                for sink in reply.activate:
                    sink.close()
                return
        for sink in reply.activate:
            sink._activate()

    # -- protocol ------------------------------------------------------------------------------

    async def _process_message(self, data: bytes, conn: _WsConnection | None) -> _Reply:
        try:
            payload = _loads(data.decode("utf-8"))
        except (ValueError, RecursionError) as exc:
            return _Reply(_error_text(None, RpcError(PARSE_ERROR, data=str(exc)[:200])))
        if isinstance(payload, list):
            if not payload:
                return _Reply(_error_text(None, RpcError(INVALID_REQUEST, "empty batch")))
            texts: list[str] = []
            activate: list[SubscriptionSink] = []
            for item in payload:
                reply = await self._process_call(item, conn)
                if reply.text is not None:
                    texts.append(reply.text)
                activate.extend(reply.activate)
            if not texts:
                return _Reply(None, activate)
            text = "[" + ",".join(texts) + "]"
            if len(text) > self.max_response_bytes:
                for sink in activate:
                    sink.close()
                return _Reply(_error_text(None, RpcError(OVERSIZED_RESPONSE)))
            return _Reply(text, activate)
        return await self._process_call(payload, conn)

    async def _process_call(self, call: Any, conn: _WsConnection | None) -> _Reply:
        if not isinstance(call, dict):
            return _Reply(_error_text(None, RpcError(INVALID_REQUEST, "not a JSON object")))
        is_notification = "id" not in call
        req_id = call.get("id")
        if not _is_valid_id(req_id):
            return _Reply(_error_text(None, RpcError(INVALID_REQUEST, "invalid id")))
        if call.get("jsonrpc") != "2.0":
            return _Reply(_error_text(req_id, RpcError(INVALID_REQUEST, 'jsonrpc must be "2.0"')))
        method = call.get("method")
        if not isinstance(method, str):
            return _Reply(_error_text(req_id, RpcError(INVALID_REQUEST, "method must be a string")))
        params = call.get("params", [])
        entry = self._entries.get(method)
        metric_name = method if entry is not None or method == "rpc_methods" else "<unknown>"
        started = time.perf_counter()
        activate: list[SubscriptionSink] = []
        ok = False
        try:
            if not isinstance(params, list | dict):
                raise RpcError(INVALID_PARAMS, "params must be an array or an object")
            if entry is None:
                if method != "rpc_methods":
                    raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")
                result: Any = {"version": 1, "methods": self.method_names()}
            elif isinstance(entry, _Method):
                result = entry.handler(params)
                if inspect.isawaitable(result):
                    result = await result
            elif isinstance(entry, _SubscriptionSpec):
                sink = await self._subscribe(entry, params, conn)
                result = sink.subscription_id
                activate.append(sink)
            else:
                result = self._unsubscribe(entry, params, conn)
            ok = True
        except RpcError as exc:
            error = exc
        except (ValueError, TypeError) as exc:
            error = RpcError(INVALID_PARAMS, str(exc) or type(exc).__name__)
        except Exception:
            log.warning("%s: handler of %s failed", self.name, method, exc_info=True)
            error = RpcError(INTERNAL_ERROR)
        finally:
            self._record(metric_name, ok, time.perf_counter() - started)
        if not ok:
            return _Reply(None if is_notification else _error_text(req_id, error))
        if is_notification:
            # Nobody will learn the id of a subscription opened by a notification.
            for sink in activate:
                sink.close()
            return _Reply(None)
        try:
            text = _JSON_ENCODER.encode({"jsonrpc": "2.0", "result": result, "id": req_id})
        except (TypeError, ValueError):
            log.warning(
                "%s: result of %s is not JSON-serializable", self.name, method, exc_info=True
            )
            for sink in activate:
                sink.close()
            return _Reply(_error_text(req_id, RpcError(INTERNAL_ERROR, "result not serializable")))
        if len(text) > self.max_response_bytes:
            for sink in activate:
                sink.close()
            return _Reply(_error_text(req_id, RpcError(OVERSIZED_RESPONSE)))
        return _Reply(text, activate)

    def _record(self, method: str, ok: bool, seconds: float) -> None:
        if self.on_request is None:
            return
        try:
            self.on_request(method, ok, seconds)
        except Exception:
            log.warning("%s: on_request hook failed", self.name, exc_info=True)

    async def _subscribe(
        self, spec: _SubscriptionSpec, params: Params, conn: _WsConnection | None
    ) -> SubscriptionSink:
        if conn is None:
            raise RpcError(
                INTERNAL_ERROR, "Subscriptions are not supported over HTTP; use WebSocket"
            )
        if len(conn.subscriptions) >= self.max_subscriptions_per_connection:
            raise RpcError(TOO_MANY_SUBSCRIPTIONS)
        sub_id = secrets.token_hex(8)
        while sub_id in conn.subscriptions:
            sub_id = secrets.token_hex(8)
        sink = SubscriptionSink(conn, spec, sub_id)
        try:
            outcome = spec.handler(params, sink)
            if inspect.isawaitable(outcome):
                await outcome
        except BaseException:
            sink.close()
            raise
        if conn.closing:
            sink.close()
            raise RpcError(INTERNAL_ERROR, "connection is closing")
        if not sink.closed:
            if sink.subscription_id in conn.subscriptions:
                sink.close()
                raise RpcError(INTERNAL_ERROR, "subscription id already in use")
            conn.subscriptions[sink.subscription_id] = sink
        return sink

    def _unsubscribe(self, entry: _Unsubscribe, params: Params, conn: _WsConnection | None) -> bool:
        if conn is None:
            raise RpcError(
                INTERNAL_ERROR, "Subscriptions are not supported over HTTP; use WebSocket"
            )
        values = list(params.values()) if isinstance(params, dict) else params
        if len(values) != 1:
            raise RpcError(INVALID_PARAMS, "expected one parameter: the subscription id")
        sub_id = values[0]
        if not isinstance(sub_id, str | int) or isinstance(sub_id, bool):
            raise RpcError(INVALID_PARAMS, "invalid subscription id")
        sink = conn.subscriptions.get(sub_id)
        if sink is None or sink._spec is not entry.spec:
            return False
        sink.close()
        return True
