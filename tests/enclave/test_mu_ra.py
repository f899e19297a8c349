"""MU-RA provisioning on localhost between real RA-TLS "enclaves" (different ed25519 keys, same
sim-dcap MRENCLAVE): the joiner receives the exact bundle; a peer with another MRENCLAVE, a
truncated request, garbage, slow-loris connections and excess connections are refused while the
server keeps serving; a server with another MRENCLAVE is refused by the client; and the client's
frame checks (opcode, order, length cap, completeness, trailing data)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import struct
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from integritee.attestation import SimDcapProvider, SkipProvider
from integritee.attestation.ra_tls import RaIdentity, RaVerifier, server_ssl_context
from integritee.crypto.keys import Keypair
from integritee.crypto.shielding import ShieldingKey
from integritee.enclave.mu_ra import (
    FRAME_HEADER,
    FrameError,
    MuRaError,
    MuRaServer,
    PeerRejected,
    ProvisioningBundle,
    ProvisioningRefused,
    ProvisioningRequest,
    read_bundle,
    request_provisioning,
)
from integritee.enclave.stf.state import ShardState

MRENCLAVE = hashlib.sha256(b"mu-ra test enclave").digest()
MODIFIED_MRENCLAVE = hashlib.sha256(b"mu-ra modified enclave").digest()
MRSIGNER = hashlib.sha256(b"mu-ra signer").digest()
SHARD = MRENCLAVE
PROVIDER_KEY = Keypair.from_seed(hashlib.sha256(b"provider enclave").digest(), "ed25519")
JOINER_KEY = Keypair.from_seed(hashlib.sha256(b"joiner enclave").digest(), "ed25519")
ROGUE_KEY = Keypair.from_seed(hashlib.sha256(b"modified enclave").digest(), "ed25519")
GENUINE = SimDcapProvider(MRENCLAVE, MRSIGNER)
MODIFIED = SimDcapProvider(MODIFIED_MRENCLAVE, MRSIGNER)
SHORT = 0.3  # request timeout of the servers under test


def make_verifier(expected: bytes = MRENCLAVE, *, allow_skip: bool = False) -> RaVerifier:
    qe, info = GENUINE.verified_collateral(int(1.75e9))
    return RaVerifier(expected, GENUINE.trusted_root(), qe, info, allow_skip=allow_skip)


VERIFIER = make_verifier()
# TLS checks certificate validity against the wall clock: these are made now.
PROVIDER_ID = RaIdentity.create(PROVIDER_KEY, GENUINE)
JOINER_ID = RaIdentity.create(JOINER_KEY, GENUINE)
ROGUE_ID = RaIdentity.create(ROGUE_KEY, MODIFIED)


@pytest.fixture(scope="module")
def bundle() -> ProvisioningBundle:
    state_key = hashlib.sha256(b"state key").digest()
    state = ShardState(
        state_key, {b"balance:" + bytes([i]) * 32: os.urandom(64) for i in range(50)}
    )
    return ProvisioningBundle(
        shielding_key=ShieldingKey.generate().to_bytes(),
        state_key=state_key,
        state=state.export(),
        # Opaque to the transport; large enough to span many TLS records.
        light_client=os.urandom(3 * 1024 * 1024 + 17),
    )


class Provider:
    """The provider enclave's side: one shard, records who was provisioned."""

    def __init__(self, bundle: ProvisioningBundle) -> None:
        self.bundle = bundle
        self.provisioned: list[tuple[bytes, bytes]] = []
        self.done = asyncio.Event()

    def provide(self, shard: bytes, account: bytes) -> ProvisioningBundle:
        if shard != SHARD:
            raise ProvisioningRefused(f"unknown shard 0x{shard.hex()}")
        return self.bundle

    def on_provisioned(self, shard: bytes, account: bytes) -> None:
        self.provisioned.append((shard, account))
        self.done.set()


async def started(server: MuRaServer) -> tuple[MuRaServer, int]:
    return server, await server.start("127.0.0.1", 0)


@pytest.fixture
async def provider(bundle: ProvisioningBundle) -> AsyncIterator[tuple[MuRaServer, int, Provider]]:
    state = Provider(bundle)
    server = MuRaServer(
        PROVIDER_ID, VERIFIER, state.provide, state.on_provisioned, request_timeout=SHORT
    )
    port = await server.start("127.0.0.1", 0)
    try:
        yield server, port, state
    finally:
        await server.stop()


async def eventually(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def join(port: int, identity: RaIdentity = JOINER_ID, **kw: object) -> ProvisioningBundle:
    args: dict[str, object] = {"shard": SHARD, "account": JOINER_KEY.public_key, "timeout": 10.0}
    args.update(kw)
    return await request_provisioning(
        "127.0.0.1",
        port,
        identity,
        args.pop("verify_peer", VERIFIER),  # type: ignore[arg-type]
        **args,  # type: ignore[arg-type]
    )


async def attested_connection(
    port: int, identity: RaIdentity = JOINER_ID
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TLS connection with a genuine RA certificate, for misbehaving after the handshake."""
    from integritee.attestation.ra_tls import client_ssl_context

    return await asyncio.open_connection("127.0.0.1", port, ssl=client_ssl_context(identity))


def last_reason(server: MuRaServer) -> str:
    return server.refusals[-1][1]


# -- wire types --------------------------------------------------------------------------------


def test_request_encoding() -> None:
    request = ProvisioningRequest(SHARD, JOINER_KEY.public_key)
    raw = request.encode()
    assert raw == SHARD + JOINER_KEY.public_key and len(raw) == 64
    assert ProvisioningRequest.decode(raw) == request
    with pytest.raises(ValueError):
        ProvisioningRequest.decode(raw[:63])
    with pytest.raises(ValueError):
        ProvisioningRequest(SHARD[:31], JOINER_KEY.public_key)


def test_bundle_validation(bundle: ProvisioningBundle) -> None:
    with pytest.raises(ValueError, match="state key"):
        ProvisioningBundle(b"der", b"k" * 31, b"", b"")
    with pytest.raises(ValueError, match="shielding key"):
        ProvisioningBundle(b"", b"k" * 32, b"", b"")
    with pytest.raises(TypeError):
        ProvisioningBundle(b"der", b"k" * 32, "state", b"")  # type: ignore[arg-type]
    text = repr(bundle)
    assert bundle.state_key.hex() not in text and "state key: 32 B" in text


def frames(*parts: tuple[int, bytes]) -> bytes:
    return b"".join(FRAME_HEADER.pack(op, len(p)) + p for op, p in parts)


GOOD = [(0, b"der"), (1, b"k" * 32), (2, b"state"), (3, b"lc")]


async def feed(data: bytes, max_frame: int = 1024) -> ProvisioningBundle:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    reader.feed_eof()
    return await read_bundle(reader, max_frame=max_frame)


async def test_read_bundle_good() -> None:
    assert await feed(frames(*GOOD)) == ProvisioningBundle(b"der", b"k" * 32, b"state", b"lc")
    empty_state = [(0, b"der"), (1, b"k" * 32), (2, b""), (3, b"")]
    assert (await feed(frames(*empty_state))).state == b""


@pytest.mark.parametrize(
    ("data", "error", "fragment"),
    [
        (b"", ProvisioningRefused, "without sending any frame"),
        (frames(*GOOD[:2]), FrameError, "after 2 of 4 frames; the shard state frame is missing"),
        (frames(*GOOD[:3]) + b"\x03\x00", FrameError, "truncated header of the light-client"),
        (frames(*GOOD)[:-1], FrameError, "truncated light-client state frame: 1 of 2 bytes"),
        (frames(GOOD[1], GOOD[0], *GOOD[2:]), FrameError, "expected frame 0 (shielding key)"),
        (frames(GOOD[0], GOOD[2], GOOD[1], GOOD[3]), FrameError, "got 2 (shard state)"),
        (frames(GOOD[0], GOOD[1], GOOD[1], GOOD[3]), FrameError, "got 1 (state key)"),
        (frames(GOOD[0], (9, b"x")), FrameError, "got 9 (unknown opcode)"),
        (frames(*GOOD[:2]) + struct.pack(">BQ", 2, 2**40), FrameError, "exceeds the limit"),
        (frames(GOOD[0], (2, b"x" * 2000)), FrameError, "got 2"),
        (frames(*GOOD[:2], (2, b"x" * 1025), GOOD[3]), FrameError, "1025 bytes exceeds"),
        (frames(GOOD[0], (1, b"k" * 31), *GOOD[2:]), FrameError, "31 bytes, not 32"),
        (frames((0, b""), *GOOD[1:]), FrameError, "shielding key frame is empty"),
        (frames(*GOOD) + b"\x00", FrameError, "unexpected data after"),
        (frames(*GOOD, GOOD[0]), FrameError, "unexpected data after"),
    ],
)
async def test_read_bundle_rejects(data: bytes, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error) as info:
        await feed(data)
    assert fragment in str(info.value)


async def test_read_bundle_does_not_wait_for_an_oversized_payload() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data(frames(*GOOD[:2]) + struct.pack(">BQ", 2, 2**63))  # no EOF: must not block
    with pytest.raises(FrameError, match="exceeds"):
        async with asyncio.timeout(1):
            await read_bundle(reader, max_frame=1024)


# -- end to end --------------------------------------------------------------------------------


async def test_joiner_receives_exact_bundle(
    provider: tuple[MuRaServer, int, Provider], bundle: ProvisioningBundle
) -> None:
    server, port, state = provider
    received = await join(port)
    assert received == bundle
    # What the joiner does with it works: the keys and the state decode.
    assert ShieldingKey.from_bytes(received.shielding_key).to_bytes() == bundle.shielding_key
    restored = ShardState.from_snapshot(received.state_key, received.state)
    assert restored.export() == bundle.state
    await asyncio.wait_for(state.done.wait(), 5)
    assert state.provisioned == [(SHARD, JOINER_KEY.public_key)]
    assert server.served == 1 and server.refused == 0 and not server.refusals
    # The same joiner may provision again (e.g. after a crash before sealing).
    assert await join(port) == bundle
    await eventually(lambda: server.served == 2)


async def test_other_mrenclave_refused_and_server_keeps_serving(
    provider: tuple[MuRaServer, int, Provider], bundle: ProvisioningBundle
) -> None:
    server, port, state = provider
    with pytest.raises(ProvisioningRefused):
        # The rogue trusts the genuine MRENCLAVE so that only the server's check is exercised.
        await join(port, ROGUE_ID, account=ROGUE_KEY.public_key)
    await eventually(lambda: server.refused == 1)
    assert "peer attestation rejected" in last_reason(server)
    assert MODIFIED_MRENCLAVE.hex() in last_reason(server)
    assert state.provisioned == []
    assert await join(port) == bundle
    await eventually(lambda: server.served == 1)


async def test_server_with_other_mrenclave_refused_by_client(bundle: ProvisioningBundle) -> None:
    rogue_state = Provider(bundle)
    rogue = MuRaServer(
        ROGUE_ID, make_verifier(MODIFIED_MRENCLAVE), rogue_state.provide, request_timeout=SHORT
    )
    port = await rogue.start("127.0.0.1", 0)
    try:
        with pytest.raises(PeerRejected, match="mrenclave"):
            await join(port)
        await eventually(lambda: rogue.refused == 1)
        assert rogue.served == 0
    finally:
        await rogue.stop()


async def test_unknown_shard_and_foreign_account_refused(
    provider: tuple[MuRaServer, int, Provider], bundle: ProvisioningBundle
) -> None:
    server, port, _ = provider
    other_shard = hashlib.sha256(b"another shard").digest()
    with pytest.raises(ProvisioningRefused):
        await join(port, shard=other_shard)
    await eventually(lambda: server.refused == 1)
    assert f"cannot provision shard 0x{other_shard.hex()}: unknown shard" in last_reason(server)
    # An attested peer asking on behalf of another account (the vault proxy goes to `account`).
    with pytest.raises(ProvisioningRefused):
        await join(port, account=ROGUE_KEY.public_key)
    await eventually(lambda: server.refused == 2)
    assert "is not the attested peer's key" in last_reason(server)
    assert await join(port) == bundle


async def test_truncated_request_refused(
    provider: tuple[MuRaServer, int, Provider], bundle: ProvisioningBundle
) -> None:
    server, port, _ = provider
    reader, writer = await attested_connection(port)
    writer.write(SHARD[:10])
    await writer.drain()
    writer.close()
    await eventually(lambda: server.refused == 1)
    assert last_reason(server) == "truncated request: 10 of 64 bytes before the connection closed"
    assert await join(port) == bundle


async def test_garbage_refused(
    provider: tuple[MuRaServer, int, Provider], bundle: ProvisioningBundle
) -> None:
    server, port, _ = provider
    # Not TLS at all.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(os.urandom(64) + b"GET / HTTP/1.1\r\n\r\n")
    await writer.drain()
    with contextlib.suppress(ConnectionError):
        await asyncio.wait_for(reader.read(), 5)  # the server hangs up
    writer.close()
    await eventually(lambda: server.refused == 1)
    # OpenSSL rejects the bytes, or (on a loaded machine) the fixture's 0.3 s handshake limit
    # strikes first: either way the connection is refused as not TLS
    assert last_reason(server).startswith(("TLS handshake failed", "TLS handshake not complete")), (
        last_reason(server)
    )
    # Attested, but 64 random bytes as the request.
    reader, writer = await attested_connection(port)
    writer.write(os.urandom(64))
    await writer.drain()
    with pytest.raises(ProvisioningRefused):
        await asyncio.wait_for(read_bundle(reader), 5)
    writer.close()
    await eventually(lambda: server.refused == 2)
    assert "is not the attested peer's key" in last_reason(server)
    assert await join(port) == bundle


async def test_slow_loris_refused(
    provider: tuple[MuRaServer, int, Provider], bundle: ProvisioningBundle
) -> None:
    server, port, _ = provider
    # Attested but silent, then a partial request that never completes.
    _, silent = await attested_connection(port)
    _, partial = await attested_connection(port)
    partial.write(SHARD)
    await partial.drain()
    # A TCP connection that never starts TLS.
    _, raw = await asyncio.open_connection("127.0.0.1", port)
    await eventually(lambda: server.refused == 3)
    reasons = sorted(r for _, r in server.refusals)
    assert reasons == [
        f"TLS handshake not complete within {SHORT:g} s",
        f"no complete request within {SHORT:g} s (slow client)",
        f"no complete request within {SHORT:g} s (slow client)",
    ]
    for writer in (silent, partial, raw):
        writer.close()
    assert await join(port) == bundle
    await eventually(lambda: server.active_connections == 0 and server.served == 1)


async def test_connection_limit(bundle: ProvisioningBundle) -> None:
    state = Provider(bundle)
    server = MuRaServer(
        PROVIDER_ID, VERIFIER, state.provide, request_timeout=SHORT, max_connections=1
    )
    port = await server.start("127.0.0.1", 0)
    try:
        _, hog = await asyncio.open_connection("127.0.0.1", port)
        await eventually(lambda: server.active_connections == 1)
        with pytest.raises(MuRaError):
            await join(port)
        assert any("too many concurrent connections (limit 1)" in r for _, r in server.refusals)
        await eventually(lambda: server.active_connections == 0)  # the hog timed out
        hog.close()
        assert await join(port) == bundle
    finally:
        await server.stop()


async def test_failing_callbacks_do_not_stop_the_server(bundle: ProvisioningBundle) -> None:
    calls: list[str] = []

    async def provide(shard: bytes, account: bytes) -> ProvisioningBundle:
        calls.append("provide")
        if len(calls) == 1:
            raise RuntimeError("database is locked")
        return bundle

    async def on_provisioned(shard: bytes, account: bytes) -> None:
        calls.append("on_provisioned")
        raise RuntimeError("vault proxy extrinsic failed")

    server = MuRaServer(PROVIDER_ID, VERIFIER, provide, on_provisioned, request_timeout=SHORT)
    port = await server.start("127.0.0.1", 0)
    try:
        with pytest.raises(ProvisioningRefused):
            await join(port)
        await eventually(lambda: server.refused == 1)
        assert "database is locked" in last_reason(server)
        assert await join(port) == bundle
        await eventually(lambda: calls == ["provide", "provide", "on_provisioned"])
        assert await join(port) == bundle
    finally:
        await server.stop()


async def test_server_frame_limit(bundle: ProvisioningBundle) -> None:
    state = Provider(bundle)
    server = MuRaServer(PROVIDER_ID, VERIFIER, state.provide, max_frame=1024 * 1024)
    port = await server.start("127.0.0.1", 0)
    try:
        with pytest.raises(ProvisioningRefused):
            await join(port)
        await eventually(lambda: server.refused == 1)
        assert "light-client state of 3145745 bytes exceeds the frame limit" in last_reason(server)
        # And the client's own cap.
        server.max_frame = 64 * 1024 * 1024
        with pytest.raises(FrameError, match="exceeds the limit"):
            await join(port, max_frame=1024 * 1024)
    finally:
        await server.stop()


async def test_skip_peers_on_dev_chains(bundle: ProvisioningBundle) -> None:
    skip_verifier = make_verifier(allow_skip=True)
    state = Provider(bundle)
    server = MuRaServer(
        RaIdentity.create(PROVIDER_KEY, SkipProvider(MRENCLAVE)), skip_verifier, state.provide
    )
    port = await server.start("127.0.0.1", 0)
    try:
        skip_joiner = RaIdentity.create(JOINER_KEY, SkipProvider(MRENCLAVE))
        assert await join(port, skip_joiner, verify_peer=skip_verifier) == bundle
        # A Dcap-only verifier refuses a Skip server.
        with pytest.raises(PeerRejected, match="skip"):
            await join(port, skip_joiner)
    finally:
        await server.stop()


async def hostile_server(
    send: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> tuple[asyncio.Server, int, asyncio.Event]:
    """A genuine, attested provider identity that misbehaves on the wire."""
    finished = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readexactly(64)
            await send(reader, writer)
        finally:
            finished.set()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ssl_context(PROVIDER_ID))
    return server, server.sockets[0].getsockname()[1], finished


async def test_client_rejects_bad_frames_over_the_network() -> None:
    async def wrong_order(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frames(GOOD[1], GOOD[0]))
        await writer.drain()
        writer.close()

    async def dies_midway(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frames(*GOOD[:3]) + FRAME_HEADER.pack(3, 1000) + b"x" * 10)
        await writer.drain()
        writer.close()

    async def stalls(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(frames(*GOOD[:1]))
        await writer.drain()
        with contextlib.suppress(OSError):
            await reader.read()  # until the client gives up
        writer.close()

    for send, error, fragment in (
        (wrong_order, FrameError, "expected frame 0"),
        (dies_midway, FrameError, "truncated light-client state frame: 10 of 1000"),
        (stalls, MuRaError, "timed out after 0.3 s"),
    ):
        server, port, finished = await hostile_server(send)
        try:
            with pytest.raises(error, match=fragment):
                await join(port, timeout=SHORT)
            await asyncio.wait_for(finished.wait(), 5)
        finally:
            server.close()


async def test_client_errors_for_unreachable_server() -> None:
    server, port = await started(
        MuRaServer(
            PROVIDER_ID, VERIFIER, lambda s, a: ProvisioningBundle(b"d", bytes(32), b"", b"")
        )
    )
    await server.stop()
    with pytest.raises(MuRaError, match="cannot establish MU-RA TLS"):
        await join(port)


async def test_stop_cancels_active_connections(provider: tuple[MuRaServer, int, Provider]) -> None:
    server, port, _ = provider
    server.request_timeout = 30
    _, writer = await attested_connection(port)
    await eventually(lambda: server.active_connections == 1)
    await asyncio.wait_for(server.stop(), 5)
    assert server.active_connections == 0
    writer.close()
    with pytest.raises(MuRaError):
        await join(port, timeout=1)
