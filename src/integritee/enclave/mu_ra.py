"""MU-RA key provisioning: how a joining enclave gets the shard's keys and state from a peer.

Mutual TLS with RA certificates (`integritee.attestation.ra_tls`); each side verifies the other's
certificate after the handshake with its `verify_peer` (typically an `RaVerifier` expecting its
own MRENCLAVE) before anything else happens. Then, as in the reference:

    client -> server   SCALE(ClientProvisioningRequest { shard: H256, account: AccountId32 })
                       (64 bytes)
    server -> client   frames [opcode u8][len u64 big-endian][payload]:
                       0 shielding key (RSA DER), 1 state key (32 bytes),
                       2 shard state (snapshot), 3 parentchain light-client state;
                       then the server closes.

Only after the client has closed the TLS session cleanly (so it has read every frame) does the
server call `on_provisioned(shard, account)` (the caller adds the joiner as a shard-vault proxy).

The server refuses, with a logged reason, and keeps serving: a failed TLS handshake, a peer whose
RA certificate fails verification, a request not complete within `request_timeout` (slow-loris),
a truncated request, an account that is not the attested peer's key (unless disabled), a shard
`provide` cannot serve, and connections beyond `max_connections`. The client checks each frame's
opcode, order and length (`max_frame` cap before reading a payload), that all four arrive, and
that nothing follows; everything runs under one overall timeout.

This module moves bytes; decoding them (ShieldingKey.from_bytes, ShardState.from_snapshot,
LightClient.from_bytes) and sealing them is the caller's job.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import struct
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from integritee.attestation.ra_tls import (
    PeerIdentity,
    RaIdentity,
    client_ssl_context,
    peer_certificate,
    server_ssl_context,
)
from integritee.codec.scale import H256, AccountId32, ScaleDecodeError, Struct

log = logging.getLogger("integritee.enclave.mu_ra")

DEFAULT_PORT = 3443
REQUEST_SIZE = 64
STATE_KEY_SIZE = 32
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_SEND_TIMEOUT = 120.0
DEFAULT_MAX_CONNECTIONS = 8
DEFAULT_CLIENT_TIMEOUT = 120.0
# How long a refused or finished connection may take to exchange TLS close_notify.
CLOSE_GRACE = 2.0

OP_SHIELDING_KEY = 0
OP_STATE_KEY = 1
OP_STATE = 2
OP_LIGHT_CLIENT = 3
FRAME_NAMES = {
    OP_SHIELDING_KEY: "shielding key",
    OP_STATE_KEY: "state key",
    OP_STATE: "shard state",
    OP_LIGHT_CLIENT: "light-client state",
}
FRAME_HEADER = struct.Struct(">BQ")

ClientProvisioningRequest = Struct(
    "ClientProvisioningRequest", [("shard", H256), ("account", AccountId32)]
)


class MuRaError(Exception):
    """Provisioning failed (client side): connection, timeout, or one of the subclasses."""


class PeerRejected(MuRaError):
    """The other side's RA certificate failed verification."""


class FrameError(MuRaError):
    """The server's frames are malformed: opcode, order, length, missing or trailing data."""


class ProvisioningRefused(MuRaError):
    """Raised by a `provide` callback to refuse a request (e.g. unknown shard); on the client,
    the server closed the session without sending any frame."""


@dataclass(frozen=True)
class ProvisioningRequest:
    shard: bytes  # 32
    account: bytes  # 32

    def __post_init__(self) -> None:
        for name in ("shard", "account"):
            value = getattr(self, name)
            if not isinstance(value, bytes) or len(value) != 32:
                raise ValueError(f"{name} must be 32 bytes")

    def encode(self) -> bytes:
        return ClientProvisioningRequest.encode({"shard": self.shard, "account": self.account})

    @classmethod
    def decode(cls, data: bytes) -> ProvisioningRequest:
        try:
            value = ClientProvisioningRequest.decode(data)
        except ScaleDecodeError as exc:
            raise ValueError(f"bad ClientProvisioningRequest: {exc}") from None
        return cls(bytes(value["shard"]), bytes(value["account"]))


@dataclass(frozen=True)
class ProvisioningBundle:
    """What a provisioned enclave receives: the shard's shared secrets and its current state."""

    shielding_key: bytes = field(repr=False)  # ShieldingKey.to_bytes() (DER)
    state_key: bytes = field(repr=False)  # 32
    state: bytes = field(repr=False)  # ShardState.export()
    light_client: bytes = field(repr=False)  # LightClient.to_bytes()

    def __post_init__(self) -> None:
        for name in ("shielding_key", "state_key", "state", "light_client"):
            if not isinstance(getattr(self, name), bytes):
                raise TypeError(f"{name} must be bytes")
        if not self.shielding_key:
            raise ValueError("the shielding key is empty")
        if len(self.state_key) != STATE_KEY_SIZE:
            raise ValueError(f"the state key must be {STATE_KEY_SIZE} bytes")

    def frames(self) -> Iterator[tuple[int, bytes]]:
        yield OP_SHIELDING_KEY, self.shielding_key
        yield OP_STATE_KEY, self.state_key
        yield OP_STATE, self.state
        yield OP_LIGHT_CLIENT, self.light_client

    def __repr__(self) -> str:
        sizes = ", ".join(f"{FRAME_NAMES[op]}: {len(p)} B" for op, p in self.frames())
        return f"ProvisioningBundle({sizes})"


VerifyPeer = Callable[[bytes], PeerIdentity]
Provide = Callable[[bytes, bytes], ProvisioningBundle | Awaitable[ProvisioningBundle]]
OnProvisioned = Callable[[bytes, bytes], None | Awaitable[None]]


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close gracefully (TLS close_notify) within CLOSE_GRACE, else drop the connection."""
    if writer.transport.is_closing():
        return
    writer.close()
    try:
        async with asyncio.timeout(CLOSE_GRACE):
            await writer.wait_closed()
    except (TimeoutError, OSError):
        writer.transport.abort()


# -- server ----------------------------------------------------------------------------------


class MuRaServer:
    """Serves provisioning requests of attested peers; one connection = one request.

    A connection holds one of `max_connections` slots from accept to close. The TLS handshake
    and the 64-byte request each get `request_timeout`; sending the bundle and the client's
    close_notify together get `send_timeout`. `require_account_is_peer_key` refuses a request
    whose account is not the key of the peer's RA certificate (the enclave's signing key), so
    the vault proxy can only go to the attested enclave itself."""

    def __init__(
        self,
        identity: RaIdentity,
        verify_peer: VerifyPeer,
        provide: Provide,
        on_provisioned: OnProvisioned | None = None,
        *,
        request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
        send_timeout: float = DEFAULT_SEND_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_frame: int = DEFAULT_MAX_FRAME,
        require_account_is_peer_key: bool = True,
    ) -> None:
        if max_connections < 1:
            raise ValueError("max_connections must be at least 1")
        self._ssl = server_ssl_context(identity)
        self.verify_peer = verify_peer
        self.provide = provide
        self.on_provisioned = on_provisioned
        self.request_timeout = request_timeout
        self.send_timeout = send_timeout
        self.max_connections = max_connections
        self.max_frame = max_frame
        self.require_account_is_peer_key = require_account_is_peer_key
        self.served = 0
        self.refused = 0
        self.refusals: deque[tuple[str, str]] = deque(maxlen=64)  # (peer address, reason)
        self._server: asyncio.Server | None = None
        self._active: set[asyncio.Task[Any]] = set()
        self.port: int | None = None

    @property
    def active_connections(self) -> int:
        return len(self._active)

    async def start(self, host: str = "127.0.0.1", port: int = DEFAULT_PORT) -> int:
        """Listen on host:port (0 = any free port); returns the bound port."""
        if self._server is not None:
            raise RuntimeError("MU-RA server already started")
        # TLS is started per connection (start_tls) so that handshakes count against the limit.
        self._server = await asyncio.start_server(self._handle, host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        log.info("MU-RA server listening on %s:%d", host, self.port)
        return self.port

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        tasks = list(self._active)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        log.info("MU-RA server stopped")

    def _refuse(self, peer: str, reason: str) -> None:
        self.refused += 1
        self.refusals.append((peer, reason))
        log.warning("MU-RA refused %s: %s", peer, reason)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        address = writer.get_extra_info("peername")
        peer = f"{address[0]}:{address[1]}" if isinstance(address, tuple) else str(address)
        if len(self._active) >= self.max_connections:
            self._refuse(peer, f"too many concurrent connections (limit {self.max_connections})")
            writer.transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._active.add(task)
        try:
            reason = await self._serve(reader, writer, peer)
            if reason is not None:
                self._refuse(peer, reason)
                await _close(writer)
        except asyncio.CancelledError:
            # Only stop() cancels handlers. Python 3.11's stream callback logs an error for a
            # cancelled handler task (task.exception() raises), so end the task normally.
            writer.transport.abort()
            return
        except Exception as exc:  # a bug in a callback must not stop the server
            log.exception("MU-RA connection from %s failed", peer)
            self._refuse(peer, f"internal error: {_describe(exc)}")
        finally:
            self._active.discard(task)
            if not writer.transport.is_closing():
                writer.transport.abort()

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> str | None:
        """Serve one connection; the refusal reason, or None when provisioned."""
        try:
            async with asyncio.timeout(self.request_timeout):
                await writer.start_tls(self._ssl, ssl_handshake_timeout=self.request_timeout)
        except TimeoutError:
            return f"TLS handshake not complete within {self.request_timeout:g} s"
        except (OSError, EOFError) as exc:
            return f"TLS handshake failed: {_describe(exc)}"

        try:
            identity = self.verify_peer(peer_certificate(writer.get_extra_info("ssl_object")))
        except Exception as exc:
            return f"peer attestation rejected: {exc}"

        try:
            async with asyncio.timeout(self.request_timeout):
                raw = await reader.readexactly(REQUEST_SIZE)
        except asyncio.IncompleteReadError as exc:
            return (
                f"truncated request: {len(exc.partial)} of {REQUEST_SIZE} bytes before the "
                "connection closed"
            )
        except TimeoutError:
            return f"no complete request within {self.request_timeout:g} s (slow client)"
        except OSError as exc:
            return f"connection failed while reading the request: {_describe(exc)}"
        request = ProvisioningRequest.decode(raw)
        shard_hex = request.shard.hex()
        if self.require_account_is_peer_key and request.account != identity.public_key:
            return (
                f"requested account 0x{request.account.hex()} is not the attested peer's key "
                f"0x{identity.public_key.hex()}"
            )

        try:
            bundle = await _maybe_await(self.provide(request.shard, request.account))
        except Exception as exc:
            return f"cannot provision shard 0x{shard_hex}: {exc}"
        if not isinstance(bundle, ProvisioningBundle):
            return f"internal error: provide returned {type(bundle).__name__}"
        for opcode, payload in bundle.frames():
            if len(payload) > self.max_frame:
                return (
                    f"{FRAME_NAMES[opcode]} of {len(payload)} bytes exceeds the frame limit "
                    f"of {self.max_frame}"
                )

        try:
            async with asyncio.timeout(self.send_timeout):
                for opcode, payload in bundle.frames():
                    writer.write(FRAME_HEADER.pack(opcode, len(payload)))
                    writer.write(payload)
                    await writer.drain()
                # The client answers our close_notify only after reading every frame.
                writer.close()
                await writer.wait_closed()
        except TimeoutError:
            return f"client did not take the bundle within {self.send_timeout:g} s"
        except OSError as exc:
            return f"connection failed while sending: {_describe(exc)}"

        self.served += 1
        log.info(
            "MU-RA provisioned shard 0x%s to account 0x%s (%s, peer %s, %s)",
            shard_hex,
            request.account.hex(),
            repr(bundle),
            peer,
            identity.method,
        )
        if self.on_provisioned is not None:
            try:
                await _maybe_await(self.on_provisioned(request.shard, request.account))
            except Exception:
                log.exception("MU-RA on_provisioned for shard 0x%s failed", shard_hex)
        return None


# -- client ----------------------------------------------------------------------------------


async def read_bundle(
    reader: asyncio.StreamReader, *, max_frame: int = DEFAULT_MAX_FRAME
) -> ProvisioningBundle:
    """Read the four frames in order and the end of the stream; FrameError on any deviation."""
    payloads: list[bytes] = []
    for expected, name in FRAME_NAMES.items():
        try:
            header = await reader.readexactly(FRAME_HEADER.size)
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise FrameError(
                    f"truncated header of the {name} frame ({len(exc.partial)} of "
                    f"{FRAME_HEADER.size} bytes)"
                ) from None
            if expected == 0:
                raise ProvisioningRefused(
                    "the server closed the connection without sending any frame "
                    "(it refused the request; its log has the reason)"
                ) from None
            raise FrameError(
                f"connection closed after {expected} of {len(FRAME_NAMES)} frames; "
                f"the {name} frame is missing"
            ) from None
        opcode, length = FRAME_HEADER.unpack(header)
        if opcode != expected:
            got = FRAME_NAMES.get(opcode, "unknown opcode")
            raise FrameError(f"expected frame {expected} ({name}), got {opcode} ({got})")
        if length > max_frame:
            raise FrameError(f"the {name} frame of {length} bytes exceeds the limit {max_frame}")
        if opcode == OP_STATE_KEY and length != STATE_KEY_SIZE:
            raise FrameError(f"the state key frame has {length} bytes, not {STATE_KEY_SIZE}")
        if opcode == OP_SHIELDING_KEY and length == 0:
            raise FrameError("the shielding key frame is empty")
        try:
            payloads.append(await reader.readexactly(length))
        except asyncio.IncompleteReadError as exc:
            raise FrameError(
                f"truncated {name} frame: {len(exc.partial)} of {length} bytes"
            ) from None
    if await reader.read(1):
        raise FrameError("unexpected data after the light-client state frame")
    return ProvisioningBundle(*payloads)


async def request_provisioning(
    host: str,
    port: int,
    identity: RaIdentity,
    verify_peer: VerifyPeer,
    shard: bytes,
    account: bytes,
    timeout: float = DEFAULT_CLIENT_TIMEOUT,
    *,
    max_frame: int = DEFAULT_MAX_FRAME,
) -> ProvisioningBundle:
    """Fetch the shard's keys and state from the MU-RA server at host:port.

    Raises PeerRejected (server's attestation), ProvisioningRefused (server sent nothing),
    FrameError (bad frames) or MuRaError (connection, timeout)."""
    request = ProvisioningRequest(bytes(shard), bytes(account)).encode()
    context = client_ssl_context(identity)
    where = f"{host}:{port}"
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            try:
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=context, ssl_handshake_timeout=timeout
                )
            except (OSError, EOFError) as exc:
                raise MuRaError(
                    f"cannot establish MU-RA TLS with {where}: {_describe(exc)}"
                ) from None
            try:
                server = verify_peer(peer_certificate(writer.get_extra_info("ssl_object")))
            except Exception as exc:
                raise PeerRejected(f"MU-RA server {where} failed attestation: {exc}") from exc
            log.info(
                "MU-RA server %s attested (%s, mrenclave %s); requesting shard 0x%s",
                where,
                server.method,
                server.mrenclave.hex(),
                bytes(shard).hex(),
            )
            writer.write(request)
            await writer.drain()
            bundle = await read_bundle(reader, max_frame=max_frame)
            await _close(writer)
    except TimeoutError:
        raise MuRaError(f"provisioning from {where} timed out after {timeout:g} s") from None
    except (OSError, EOFError) as exc:  # ssl.SSLError is an OSError
        raise MuRaError(f"MU-RA connection to {where} failed: {_describe(exc)}") from None
    finally:
        if writer is not None and not writer.transport.is_closing():
            with contextlib.suppress(Exception):
                writer.transport.abort()
    log.info("MU-RA received %r from %s", bundle, where)
    return bundle
