"""JSON-RPC 2.0 clients: a persistent WebSocket client with subscriptions, and one-shot HTTP calls.

`RpcClient` multiplexes concurrent requests over one WebSocket and routes notifications to
`Subscription` iterators; `http_request` (async) and `rpc_call` (sync, stdlib only) make a single
call over HTTP POST and accept ws:// URLs too, mapping them to http:// (one port serves both).
Error replies raise `RpcError`; a lost connection raises `RpcConnectionError`; timeouts raise
`TimeoutError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import ssl as _ssl
import urllib.error
import urllib.request
from collections.abc import Generator
from dataclasses import dataclass
from typing import Any

import aiohttp

from integritee.rpc.errors import INTERNAL_ERROR, RpcConnectionError, RpcError

log = logging.getLogger("integritee.rpc")

SslArg = _ssl.SSLContext | bool | None
_MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def http_url(url: str) -> str:
    """The HTTP URL of a JSON-RPC endpoint given as ws(s):// or http(s)://."""
    if url.startswith("ws://"):
        return "http://" + url[len("ws://") :]
    if url.startswith("wss://"):
        return "https://" + url[len("wss://") :]
    return url


def ws_url(url: str) -> str:
    """The WebSocket URL of a JSON-RPC endpoint given as ws(s):// or http(s)://."""
    if url.startswith("http://"):
        return "ws://" + url[len("http://") :]
    if url.startswith("https://"):
        return "wss://" + url[len("https://") :]
    return url


def _request_text(method: str, params: Any, req_id: int) -> str:
    return json.dumps(
        {
            "jsonrpc": "2.0",
            "id": req_id,
            "method": method,
            "params": [] if params is None else params,
        },
        separators=(",", ":"),
    )


def _result_of(reply: Any) -> Any:
    """The `result` of a single reply, or raise the `RpcError` it carries."""
    if not isinstance(reply, dict):
        raise RpcError(INTERNAL_ERROR, f"malformed JSON-RPC reply: {reply!r:.200}")
    if "error" in reply and reply["error"] is not None:
        raise RpcError.from_json(reply["error"])
    if "result" not in reply:
        raise RpcError(INTERNAL_ERROR, f"JSON-RPC reply without result: {reply!r:.200}")
    return reply["result"]


class _End:
    """Queue marker: the subscription ended normally."""


@dataclass
class _Failure:
    error: BaseException


class Subscription:
    """Results of one subscription, in order: `async for result in sub`, or `await sub.next()`.

    After `unsubscribe()` the iteration yields what had already arrived, then stops; it raises
    `RpcConnectionError` (after the buffered results) when the connection was lost.
    Notifications are buffered without bound until read.
    """

    def __init__(self, client: RpcClient, sub_id: Any, unsubscribe_method: str) -> None:
        self._client = client
        self.id = sub_id
        self.unsubscribe_method = unsubscribe_method
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._active = True

    def _push(self, item: Any) -> None:
        self._queue.put_nowait(item)

    def _finish(self, item: _End | _Failure) -> None:
        if self._active:
            self._active = False
            self._queue.put_nowait(item)

    @property
    def active(self) -> bool:
        return self._active

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Any:
        item = await self._queue.get()
        if isinstance(item, _End):
            self._queue.put_nowait(item)  # keep later reads ending too
            raise StopAsyncIteration
        if isinstance(item, _Failure):
            self._queue.put_nowait(item)
            raise item.error
        return item

    async def next(self, timeout: float | None = None) -> Any:
        """The next result; `TimeoutError` after `timeout` seconds, `StopAsyncIteration` at end."""
        async with asyncio.timeout(timeout):
            return await self.__anext__()

    async def unsubscribe(self, timeout: float = 30) -> bool:
        """Ask the server to end the subscription; returns its answer (False if already ended)."""
        if not self._active:
            return False
        self._client._subscriptions.pop(self.id, None)
        self._finish(_End())
        if self._client.closed:
            return False
        return bool(await self._client.request(self.unsubscribe_method, [self.id], timeout))


@dataclass
class _Pending:
    future: asyncio.Future[Any]
    unsubscribe_method: str | None  # set for subscribe calls


class RpcClient:
    """A JSON-RPC client over one WebSocket connection (use `RpcClient.connect`)."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._subscriptions: dict[Any, Subscription] = {}
        # Subscribe calls that timed out: their late reply is answered with an unsubscribe.
        self._abandoned: dict[int, str] = {}
        self._send_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._closed = False
        self._reader = asyncio.get_running_loop().create_task(self._read_loop())

    @staticmethod
    def connect(
        url: str, ssl: SslArg = None, *, max_msg_size: int = _MAX_MESSAGE_BYTES, timeout: float = 30
    ) -> _Connector:
        """Open a connection: `c = await RpcClient.connect(url)` or `async with RpcClient.connect(url) as c`."""
        return _Connector(url, ssl, max_msg_size, timeout)

    @classmethod
    async def _open(cls, url: str, ssl: SslArg, max_msg_size: int, timeout: float) -> RpcClient:
        # unix:///path/to/socket reaches a server started with RpcServer.start_unix
        unix_path = url[len("unix://") :] if url.startswith("unix://") else None
        session = aiohttp.ClientSession(
            connector=aiohttp.UnixConnector(path=unix_path) if unix_path else None
        )
        try:
            async with asyncio.timeout(timeout):
                ws = await session.ws_connect(
                    "ws://localhost/" if unix_path else ws_url(url),
                    ssl=True if ssl is None else ssl,
                    max_msg_size=max_msg_size,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                )
        except BaseException as exc:
            await session.close()
            if isinstance(exc, TimeoutError):
                raise TimeoutError(f"connecting to {url} took more than {timeout} s") from None
            if isinstance(exc, aiohttp.ClientError | OSError):
                raise RpcConnectionError(f"cannot connect to {url}: {exc}") from exc
            raise
        return cls(session, ws)

    @property
    def closed(self) -> bool:
        return self._closed

    async def request(self, method: str, params: Any = None, timeout: float | None = 30) -> Any:
        """Call `method`; returns its result or raises `RpcError` / `TimeoutError`."""
        return await self._call(method, params, timeout, None)

    async def subscribe(
        self, method: str, params: Any, unsubscribe_method: str, timeout: float | None = 30
    ) -> Subscription:
        """Open a subscription; notifications are collected from the moment the server replied."""
        sub = await self._call(method, params, timeout, unsubscribe_method)
        assert isinstance(sub, Subscription)
        return sub

    async def _call(
        self, method: str, params: Any, timeout: float | None, unsubscribe_method: str | None
    ) -> Any:
        if self._closed:
            raise RpcConnectionError("the RPC connection is closed")
        req_id = next(self._ids)
        text = _request_text(method, params, req_id)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[req_id] = _Pending(future, unsubscribe_method)
        try:
            try:
                async with self._send_lock:
                    await self._ws.send_str(text)
            except (ConnectionError, RuntimeError, aiohttp.ClientError) as exc:
                raise RpcConnectionError(f"sending {method} failed: {exc}") from exc
            try:
                async with asyncio.timeout(timeout):
                    return await future
            except TimeoutError:
                if unsubscribe_method is not None:
                    self._abandoned[req_id] = unsubscribe_method
                raise TimeoutError(f"{method} got no reply within {timeout} s") from None
        finally:
            self._pending.pop(req_id, None)

    async def _read_loop(self) -> None:
        error: BaseException = RpcConnectionError("the RPC connection was closed")
        try:
            async for msg in self._ws:
                if msg.type == aiohttp.WSMsgType.TEXT or msg.type == aiohttp.WSMsgType.BINARY:
                    self._dispatch(msg.data)
                elif msg.type == aiohttp.WSMsgType.ERROR:
                    error = RpcConnectionError(f"WebSocket error: {msg.data}")
                    break
        except Exception as exc:
            error = RpcConnectionError(f"WebSocket failed: {exc}")
        finally:
            self._closed = True
            code = self._ws.close_code
            if code is not None:
                error = RpcConnectionError(f"the RPC connection was closed (code {code})")
            for pending in self._pending.values():
                if not pending.future.done():
                    pending.future.set_exception(error)
            for sub in list(self._subscriptions.values()):
                sub._finish(_Failure(error))
            self._subscriptions.clear()

    def _dispatch(self, data: str | bytes) -> None:
        try:
            payload = json.loads(data)
        except ValueError:
            log.warning("RPC client: ignoring a message that is not JSON")
            return
        for item in payload if isinstance(payload, list) else [payload]:
            if not isinstance(item, dict):
                continue
            if "id" in item and ("result" in item or "error" in item):
                self._on_reply(item)
            elif isinstance(item.get("params"), dict) and "method" in item:
                params = item["params"]
                sub = self._subscriptions.get(_hashable(params.get("subscription")))
                if sub is not None:
                    sub._push(params.get("result"))
                else:
                    log.debug("RPC client: notification for unknown subscription dropped")

    def _on_reply(self, reply: dict[str, Any]) -> None:
        req_id = reply["id"]
        if not isinstance(req_id, int) or isinstance(req_id, bool):
            return
        pending = self._pending.get(req_id)
        if pending is None:
            unsubscribe_method = self._abandoned.pop(req_id, None)
            if unsubscribe_method is not None and reply.get("error") is None:
                self._spawn_unsubscribe(unsubscribe_method, reply.get("result"))
            return
        if pending.future.done():
            return
        try:
            result = _result_of(reply)
        except RpcError as exc:
            pending.future.set_exception(exc)
            return
        if pending.unsubscribe_method is not None:
            # Registered here, synchronously, so a notification right behind the reply is kept.
            sub = Subscription(self, result, pending.unsubscribe_method)
            self._subscriptions[_hashable(result)] = sub
            result = sub
        pending.future.set_result(result)

    def _spawn_unsubscribe(self, method: str, sub_id: Any) -> None:
        async def unsubscribe() -> None:
            with contextlib.suppress(Exception):
                await self.request(method, [sub_id], timeout=10)

        task = asyncio.get_running_loop().create_task(unsubscribe())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        """Close the connection; pending calls fail with `RpcConnectionError`."""
        self._closed = True
        with contextlib.suppress(Exception):
            await self._ws.close()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(self._reader, 5)
        await self._session.close()

    async def __aenter__(self) -> RpcClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _hashable(value: Any) -> Any:
    # Subscription ids are strings or numbers; anything else cannot match one of ours.
    return value if isinstance(value, str | int | float) or value is None else repr(value)


class _Connector:
    """Awaitable and async context manager returned by `RpcClient.connect`."""

    def __init__(self, url: str, ssl: SslArg, max_msg_size: int, timeout: float) -> None:
        self._args = (url, ssl, max_msg_size, timeout)
        self._client: RpcClient | None = None

    def __await__(self) -> Generator[Any, None, RpcClient]:
        return RpcClient._open(*self._args).__await__()

    async def __aenter__(self) -> RpcClient:
        self._client = await RpcClient._open(*self._args)
        return self._client

    async def __aexit__(self, *exc: object) -> None:
        if self._client is not None:
            await self._client.close()


async def http_request(
    url: str, method: str, params: Any = None, timeout: float = 30, ssl: SslArg = None
) -> Any:
    """One call over HTTP POST (ws:// URLs are mapped to http://)."""
    text = _request_text(method, params, 1)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    try:
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.post(
                http_url(url),
                data=text.encode(),
                headers={"Content-Type": "application/json"},
                ssl=True if ssl is None else ssl,
            ) as response,
        ):
            body = await response.read()
            status = response.status
    except TimeoutError:
        raise TimeoutError(f"{method} got no reply within {timeout} s") from None
    except (aiohttp.ClientError, OSError) as exc:
        raise RpcConnectionError(f"{method} over HTTP failed: {exc}") from exc
    return _http_result(status, body)


def rpc_call(url: str, method: str, params: Any = None, timeout: float = 30) -> Any:
    """Synchronous one-shot call over HTTP POST with the standard library (for CLI and tests)."""
    request = urllib.request.Request(
        http_url(url),
        data=_request_text(method, params, 1).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return _http_result(response.status, response.read())
    except urllib.error.HTTPError as exc:
        return _http_result(exc.code, exc.read())
    except TimeoutError:
        raise TimeoutError(f"{method} got no reply within {timeout} s") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise TimeoutError(f"{method} got no reply within {timeout} s") from None
        raise RpcConnectionError(f"{method} over HTTP failed: {exc.reason}") from exc
    except OSError as exc:
        raise RpcConnectionError(f"{method} over HTTP failed: {exc}") from exc


def _http_result(status: int, body: bytes) -> Any:
    try:
        reply = json.loads(body)
    except ValueError:
        raise RpcConnectionError(f"HTTP {status}: not a JSON-RPC reply: {body[:200]!r}") from None
    if status != 200 and not (isinstance(reply, dict) and "error" in reply):
        raise RpcConnectionError(f"HTTP {status}: {body[:200]!r}")
    return _result_of(reply)
