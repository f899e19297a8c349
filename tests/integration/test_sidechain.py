"""The sidechain of one validateer as real processes: import checks, pool limits, readiness,
metrics and restart.

One dev node (300 ms parentchain blocks) and one validateer (300 ms slots, metrics on) serve the
whole module.

Blocks sent to `sidechain_importBlock` come in two kinds:

- *outsider* blocks, built without any enclave secret: signed by a stranger's ed25519 key, or
  real blocks served by the untrusted port and then altered. The signature check runs first, so
  every alteration of a real block is caught there; only an unaltered replay reaches the
  parent check.
- *insider* blocks, signed with the enclave's own signing key and encrypted with its state key.
  In simulation the test owns the platform sealing key file (`--sealing-key`), so it can unseal
  the enclave's keys exactly as the enclave does; this is the only way to reach the checks behind
  the signature (parent and number, parentchain head, diff decryption, apriori and aposteriori
  roots). Each such block differs from a valid one in one field; a valid one is accepted (the
  control, last in the module because of the storage bug it shows).

"Wrong author for its slot" cannot be produced with one validateer: it is the only authority,
so any other author is refused as "not a validateer of this shard" before the slot is looked at.

Tests that build on the current head race the slot loop (a new block every 300 ms): they retry
while the reply says they lost that race (parent or apriori root moved on), and assert on the
first reply that did not.
"""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import base58
import pytest
from prometheus_client.parser import text_string_to_metric_families

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import H256, Bytes, EnumValue, Option, Vec, text
from integritee.crypto import aead
from integritee.crypto.hashing import blake2_128_concat, blake2_256, storage_prefix
from integritee.crypto.keys import Keypair, dev_keypair
from integritee.crypto.sealing import SimulationSealing, unseal_from_file
from integritee.crypto.shielding import ShieldingPublicKey
from integritee.enclave.keys import SIGNING_LABEL, STATE_KEY_LABEL
from integritee.enclave.sidechain import DIFF_AAD
from integritee.parentchain.primitives import AccountInfo, AccountInfoCodec
from integritee.rpc.client import RpcClient, Subscription
from integritee.rpc.errors import RpcError
from integritee.service.sidechain_db import BLOCK_HEIGHT_METRIC
from integritee.service.untrusted_rpc import fetch_blocks_with_client
from integritee.trusted.calls import (
    Getter,
    TrustedOperation,
    balance_transfer,
    sign_call,
    sign_getter,
)
from integritee.trusted.rpc import DirectRequestStatus, Request, RpcReturnValue
from integritee.trusted.sidechain import (
    ZERO_HASH,
    BlockCodec,
    BlockDataCodec,
    SidechainHeaderCodec,
    SignedBlockCodec,
    SignedBlocks,
    StatePayload,
    header_hash,
    make_signed_block,
)
from procs import NodeProcess, ValidateerProcess, free_port

pytestmark = pytest.mark.slow

SLOT_MS = 300
PARENTCHAIN_BLOCK_MS = 300
UNIT = 10**12
TRANSFER_FEE = UNIT // 100
POOL_ERROR = -32020
BLOCK_REJECTED = -32021
INVALID_PARAMS = -32602
FUTURE_LIMIT = 512
FINAL = {"InSidechainBlock", "Finalized", "Invalid", "Usurped", "Dropped"}
# replies that mean "the head moved (slot loop) or the state moved (parentchain sync) meanwhile"
RACED_PARENT = "does not extend"
RACED_ROOT = "apriori state root mismatch"

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")


@dataclass
class Net:
    node: NodeProcess
    validateer: ValidateerProcess
    # (status of GET /is_initialized or None while nothing answers, seconds since start)
    readiness: list[tuple[int | None, float]] = field(default_factory=list)
    mrenclave: bytes = b""
    shard: bytes = b""


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    node = NodeProcess(tmp_path_factory.mktemp("scnode"), block_time_ms=PARENTCHAIN_BLOCK_MS)
    v = ValidateerProcess(
        tmp_path_factory.mktemp("scv"),
        0,
        slot_duration_ms=SLOT_MS,
        metrics_port=free_port(),
    )
    try:
        node.start()
        v.node_port = node.rpc_port
        net = Net(node, v)
        v.start(wait=False)
        t0 = time.monotonic()
        # poll right after the start: the HTTP server comes up before the first block
        while True:
            status = v.http_status()
            if not net.readiness or net.readiness[-1][0] != status:
                net.readiness.append((status, round(time.monotonic() - t0, 2)))
            if status == 200:
                break
            assert v.proc is not None and v.proc.poll() is None, v.log()[-4000:]
            assert time.monotonic() - t0 < 90, f"not initialised:\n{v.log()[-4000:]}"
            time.sleep(0.02)
        net.mrenclave, net.shard = run(_identity(net))
        yield net
    finally:
        v.stop()
        node.stop()


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(_with_timeout(coro))


async def _with_timeout(coro: Awaitable[Any]) -> Any:
    async with asyncio.timeout(60):
        return await coro


# --------------------------------------------------------------------------------------------
# Client side of the trusted and untrusted RPC


class Enclave:
    """One WSS connection to the enclave's trusted RPC (self-signed certificate: not verified)."""

    def __init__(self, client: RpcClient, net: Net) -> None:
        self.client = client
        self.net = net

    @classmethod
    async def connect(cls, net: Net) -> Enclave:
        return cls(await RpcClient.connect(net.validateer.trusted_url, ssl=False, timeout=10), net)

    async def close(self) -> None:
        await self.client.close()

    async def value(self, method: str, params: list[Any] | None = None) -> bytes:
        rv = RpcReturnValue.decode(from_hex(await self.client.request(method, params or [])))
        if rv["status"].name == "Error":
            raise AssertionError(f"{method}: {text.decode(bytes(rv['value']))}")
        return bytes(rv["value"])

    async def header(self) -> dict[str, Any]:
        header: dict[str, Any] = SidechainHeaderCodec.decode(await self.value("chain_getHeader"))
        return header

    async def import_blocks(self, blocks: list[dict[str, Any]] | bytes) -> str:
        """ "ok", or the reason of the rejection (asserting its JSON-RPC error code)."""
        raw = blocks if isinstance(blocks, bytes) else SignedBlocks.encode(blocks)
        try:
            reply = await self.client.request("sidechain_importBlock", [to_hex(raw)])
        except RpcError as e:
            assert e.code == BLOCK_REJECTED, (e.code, e.message)
            assert e.message.startswith("block rejected: "), e.message
            return e.message
        assert reply == "ok", reply
        return "ok"

    async def submit(self, top: EnumValue, encrypted: bool = False) -> Subscription:
        """submitAndWatch over the fast path (plain SCALE top) or the RSA path."""
        payload = TrustedOperation.encode(top)
        if encrypted:
            key_json = text.decode(await self.value("author_getShieldingKey"))
            payload = ShieldingPublicKey.from_json(key_json).encrypt(payload)
            method = "author_submitAndWatchExtrinsic"
        else:
            method = "author_submitAndWatchTrustedOperation"
        request = Request.encode({"shard": self.net.shard, "cyphertext": payload})
        return await self.client.subscribe(method, [to_hex(request)], "author_unwatchExtrinsic")

    async def account(self, who: Keypair) -> AccountInfo:
        getter = EnumValue("trusted", sign_getter(EnumValue("account_info", who.public_key), who))
        request = Request.encode({"shard": self.net.shard, "cyphertext": Getter.encode(getter)})
        raw = Option(Bytes).decode(await self.value("state_executeGetter", [to_hex(request)]))
        assert raw is not None, f"no account info for 0x{who.public_key.hex()}"
        info: AccountInfo = AccountInfoCodec.decode(bytes(raw))
        return info


async def _identity(net: Net) -> tuple[bytes, bytes]:
    """(MRENCLAVE, shard) of the validateer."""
    e = await Enclave.connect(net)
    try:
        mrenclave = H256.decode(await e.value("author_getFingerprint"))
        shard = H256.decode(await e.value("author_getShard"))
        return bytes(mrenclave), bytes(shard)
    finally:
        await e.close()


async def statuses(sub: Subscription, timeout: float = 10) -> list[EnumValue]:
    """The statuses of a watched operation until a final one."""
    out: list[EnumValue] = []
    while not out or out[-1].name not in FINAL:
        result = await sub.next(timeout)
        status = DirectRequestStatus.decode(from_hex(result))
        assert status.name == "TrustedOperationStatus", status
        out.append(status.value)
    return out


async def served_blocks(v: ValidateerProcess, shard: bytes, after: bytes = ZERO_HASH) -> list[Any]:
    """Blocks after `after` from the untrusted port (checked to chain by the client helper)."""
    async with RpcClient.connect(v.untrusted_url, timeout=10) as u:
        encoded = await fetch_blocks_with_client(u, after, None, shard)
    return [SignedBlockCodec.decode(b) for b in encoded]


def height_metric(v: ValidateerProcess) -> float:
    with urllib.request.urlopen(v.metrics_url, timeout=5) as resp:
        body = resp.read().decode()
    for family in text_string_to_metric_families(body):
        if family.name == BLOCK_HEIGHT_METRIC:
            (sample,) = family.samples
            return float(sample.value)
    raise AssertionError(f"{BLOCK_HEIGHT_METRIC} missing from /metrics")


def transfer(sender: Keypair, to: bytes, amount: int, nonce: int, net: Net) -> EnumValue:
    tcs = sign_call(
        balance_transfer(sender.public_key, to, amount), sender, nonce, net.mrenclave, net.shard
    )
    return tcs.into_trusted_operation(direct=True)


def account_key(who: bytes) -> bytes:
    return storage_prefix("System", "Account") + blake2_128_concat(who)


def stranger() -> Keypair:
    return Keypair.from_seed(os.urandom(32), "ed25519")


# --------------------------------------------------------------------------------------------
# Building blocks


@dataclass
class Secrets:
    signing: Keypair
    state_key: bytes


def enclave_secrets(v: ValidateerProcess) -> Secrets:
    """The enclave's signing and state keys, unsealed with the simulated platform key."""
    sealing = SimulationSealing(v.sealing_key)
    sealed = v.data_dir / "sealed"
    seed = unseal_from_file(sealing, sealed / "signing_key.sealed", SIGNING_LABEL)
    state_key = unseal_from_file(sealing, sealed / "state_key.sealed", STATE_KEY_LABEL)
    return Secrets(Keypair.from_seed(seed, "ed25519"), state_key)


@dataclass
class Head:
    """The enclave's head block as served, and the state root after it."""

    block: dict[str, Any]
    hash: bytes
    number: int
    root: bytes
    layer_one_head: bytes


async def current_head(e: Enclave, net: Net, secrets: Secrets) -> Head:
    async with RpcClient.connect(net.validateer.untrusted_url, timeout=10) as u:
        for _ in range(50):
            header = await e.header()
            head_hash = header_hash(header)
            # the head block itself: the one after its parent (stored right after it is made)
            found = await fetch_blocks_with_client(
                u, bytes(header["parent_hash"]), None, net.shard, max_blocks=1
            )
            if found:
                block = SignedBlockCodec.decode(found[0])
                if header_hash(block["block"]["header"]) == head_hash:
                    data = block["block"]["block_data"]
                    payload = StatePayload.decode(
                        aead.decrypt(
                            secrets.state_key, bytes(data["encrypted_state_diff"]), DIFF_AAD
                        )
                    )
                    return Head(
                        block,
                        head_hash,
                        header["block_number"],
                        bytes(payload["state_hash_aposteriori"]),
                        bytes(data["layer_one_head"]),
                    )
            await asyncio.sleep(0.01)
    raise AssertionError("the head block is not served by the untrusted port")


def sealed_diff(secrets: Secrets, apriori: bytes, aposteriori: bytes, diff: list[Any]) -> bytes:
    payload = StatePayload.encode(
        {"state_hash_apriori": apriori, "state_hash_aposteriori": aposteriori, "state_update": diff}
    )
    return aead.encrypt(secrets.state_key, payload, DIFF_AAD)


def block_on(
    head: Head,
    author: Keypair,
    shard: bytes,
    encrypted_state_diff: bytes,
    *,
    parent_hash: bytes | None = None,
    number: int | None = None,
    layer_one_head: bytes | None = None,
) -> dict[str, Any]:
    return make_signed_block(
        parent_hash=head.hash if parent_hash is None else parent_hash,
        number=head.number + 1 if number is None else number,
        shard=shard,
        # the next slot: the head was produced in the current one (one block per slot)
        timestamp=int(time.time() * 1000) + SLOT_MS,
        layer_one_head=head.layer_one_head if layer_one_head is None else layer_one_head,
        author=author,
        top_hashes=[],
        encrypted_state_diff=encrypted_state_diff,
    )


def resign(block: dict[str, Any], key: Keypair) -> dict[str, Any]:
    """Recompute the data hash and sign with `key` (keeping the declared author)."""
    inner = block["block"]
    inner["header"]["block_data_hash"] = blake2_256(BlockDataCodec.encode(inner["block_data"]))
    block["signature"] = EnumValue("Ed25519", key.sign(BlockCodec.encode(inner)))
    return block


async def until_not_raced(
    e: Enclave, build: Callable[[], Awaitable[dict[str, Any]]], raced: tuple[str, ...]
) -> str:
    """Send blocks built on the current head until the reply is not one of `raced`."""
    reply = ""
    for _ in range(30 if raced else 1):
        reply = await e.import_blocks([await build()])
        if not any(r in reply for r in raced):
            return reply
    raise AssertionError(f"always lost the race with the slot loop: {reply}")


async def wait_height_above(e: Enclave, number: int, timeout: float = 5) -> int:
    deadline = time.monotonic() + timeout
    while True:
        now = (await e.header())["block_number"]
        if now > number:
            return int(now)
        assert time.monotonic() < deadline, f"the sidechain stalled at #{now}"
        await asyncio.sleep(SLOT_MS / 1000)


# --------------------------------------------------------------------------------------------
# Readiness and metrics


def test_is_initialized_404_before_the_first_block_then_200(net: Net) -> None:
    codes = [code for code, _ in net.readiness]
    assert 404 in codes, net.readiness
    assert codes[-1] == 200
    first_404, first_200 = codes.index(404), codes.index(200)
    assert first_404 < first_200 and 200 not in codes[:first_404], net.readiness
    # 200 only once a block exists: the enclave serves a header and the DB holds block 1
    headers = run(served_blocks(net.validateer, net.shard))
    assert headers and headers[0]["block"]["header"]["block_number"] == 1
    assert net.validateer.http_status() == 200


def test_metrics_parse_and_the_block_height_grows(net: Net) -> None:
    with urllib.request.urlopen(net.validateer.metrics_url, timeout=5) as resp:
        families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
    assert BLOCK_HEIGHT_METRIC in families
    first = height_metric(net.validateer)
    assert first >= 1
    time.sleep(4 * SLOT_MS / 1000)
    assert height_metric(net.validateer) > first


# --------------------------------------------------------------------------------------------
# Import checks: outsider blocks


def test_outsider_blocks_are_rejected_with_the_check_that_fires(net: Net) -> None:
    async def scenario() -> None:
        e = await Enclave.connect(net)
        try:
            header = await e.header()
            start = header["block_number"]
            served = await served_blocks(net.validateer, net.shard)
            real = served[-1]
            enclave_key = bytes(real["block"]["block_data"]["block_author"])
            head = Head(
                real,
                header_hash(real["block"]["header"]),
                real["block"]["header"]["block_number"],
                b"",
                bytes(real["block"]["block_data"]["layer_one_head"]),
            )
            mallory = stranger()

            # signed by a key of its own, naming itself the author
            own = block_on(head, mallory, net.shard, os.urandom(64))
            assert "author is not a validateer of this shard" in await e.import_blocks([own])

            # naming the enclave as the author, signed by another key
            forged = block_on(head, mallory, net.shard, os.urandom(64))
            forged["block"]["block_data"]["block_author"] = enclave_key
            resign(forged, mallory)
            assert "bad block signature" in await e.import_blocks([forged])

            # a real block with another parent: its signature no longer covers the header
            moved = SignedBlockCodec.decode(SignedBlockCodec.encode(real))
            moved["block"]["header"]["parent_hash"] = os.urandom(32)
            assert "bad block signature" in await e.import_blocks([moved])

            # a real block whose diff was swapped for garbage: the data hash no longer matches
            garbage = SignedBlockCodec.decode(SignedBlockCodec.encode(real))
            garbage["block"]["block_data"]["encrypted_state_diff"] = os.urandom(200)
            assert "bad block signature or block data hash" in await e.import_blocks([garbage])

            # a real block replayed unchanged: authentic, but it does not extend the head
            replay = SignedBlockCodec.decode(SignedBlockCodec.encode(served[0]))
            reason = await e.import_blocks([replay])
            assert RACED_PARENT in reason and "#1 " in reason, reason

            # a real block relabelled for another shard: the shard check comes first
            other = SignedBlockCodec.decode(SignedBlockCodec.encode(real))
            other["block"]["header"]["shard_id"] = os.urandom(32)
            assert "block of another shard" in await e.import_blocks([other])

            # not SCALE at all: invalid params, no import attempted
            with pytest.raises(RpcError) as info:
                await e.client.request("sidechain_importBlock", ["0x0401020304"])
            assert info.value.code == INVALID_PARAMS and "invalid blocks" in info.value.message

            # ... and the chain goes on
            await wait_height_above(e, start + 2)
        finally:
            await e.close()

    run(scenario())
    assert "Traceback" not in net.validateer.log()


# --------------------------------------------------------------------------------------------
# Import checks: insider blocks (the enclave's keys, unsealed with the simulated platform key)


@dataclass(frozen=True)
class InsiderCase:
    """A block signed by the enclave key on the current head, wrong in one respect."""

    build: Callable[[Head, Secrets, bytes], dict[str, Any]]
    expected: str
    # replies meaning the block lost a race and is built again on the new head
    raced: tuple[str, ...] = (RACED_PARENT,)


def _valid_diff(h: Head, s: Secrets) -> bytes:
    return sealed_diff(s, h.root, h.root, [])


def _mint_alice(h: Head, s: Secrets) -> bytes:
    """The right apriori root, a diff that mints Alice a fortune, a wrong aposteriori root."""
    forged = AccountInfo(nonce=0, providers=1)
    forged.data.free = 10**9 * UNIT
    diff = [(account_key(ALICE.public_key), AccountInfoCodec.encode(forged))]
    return sealed_diff(s, h.root, os.urandom(32), diff)


INSIDER_CASES = {
    "parent-not-the-head": InsiderCase(
        lambda h, s, shard: block_on(
            h, s.signing, shard, _valid_diff(h, s), parent_hash=os.urandom(32)
        ),
        RACED_PARENT,
        raced=(),
    ),
    "number-skips-ahead": InsiderCase(
        lambda h, s, shard: block_on(h, s.signing, shard, _valid_diff(h, s), number=h.number + 5),
        RACED_PARENT,
        raced=(),
    ),
    "unknown-parentchain-head": InsiderCase(
        lambda h, s, shard: block_on(
            h, s.signing, shard, _valid_diff(h, s), layer_one_head=os.urandom(32)
        ),
        "unknown parentchain head",
    ),
    "diff-not-aes-gcm": InsiderCase(
        lambda h, s, shard: block_on(h, s.signing, shard, os.urandom(300)),
        "undecryptable state diff",
    ),
    "diff-under-another-state-key": InsiderCase(
        lambda h, s, shard: block_on(
            h, s.signing, shard, _valid_diff(h, Secrets(s.signing, os.urandom(32)))
        ),
        "undecryptable state diff",
    ),
    "diff-not-a-state-payload": InsiderCase(
        lambda h, s, shard: block_on(
            h, s.signing, shard, aead.encrypt(s.state_key, b"\x07not a payload", DIFF_AAD)
        ),
        "undecryptable state diff",
    ),
    "apriori-root-wrong": InsiderCase(
        lambda h, s, shard: block_on(
            h, s.signing, shard, sealed_diff(s, os.urandom(32), h.root, [])
        ),
        RACED_ROOT,
    ),
    "aposteriori-root-wrong": InsiderCase(
        lambda h, s, shard: block_on(h, s.signing, shard, _mint_alice(h, s)),
        "aposteriori state root mismatch",
        raced=(RACED_PARENT, RACED_ROOT),
    ),
}


@pytest.mark.parametrize("case", list(INSIDER_CASES))
def test_insider_block_is_rejected_by_the_check_behind_the_signature(net: Net, case: str) -> None:
    spec = INSIDER_CASES[case]
    secrets = enclave_secrets(net.validateer)
    mark = len(net.validateer.log())

    async def scenario() -> None:
        e = await Enclave.connect(net)
        try:
            head = await current_head(e, net, secrets)
            assert bytes(head.block["block"]["block_data"]["block_author"]) == (
                secrets.signing.public_key
            ), "unsealed a signing key that is not the block author's"
            alice = await e.account(ALICE)

            async def build() -> dict[str, Any]:
                return spec.build(await current_head(e, net, secrets), secrets, net.shard)

            reason = await until_not_raced(e, build, spec.raced)
            assert spec.expected in reason, reason
            # nothing of the rejected block stayed in the state, and the chain goes on
            assert (await e.account(ALICE)).data.free == alice.data.free
            await wait_height_above(e, head.number + 2)
            assert (await e.account(ALICE)).data.free == alice.data.free
        finally:
            await e.close()

    run(scenario())
    assert "block production in slot" not in net.validateer.log()[mark:]


def test_a_diff_that_fails_to_apply_leaves_no_pending_state(net: Net) -> None:
    """A diff whose second entry is refused by the state (a key over the trie's limit) after its
    first entry was staged: the import must leave the state as it was.

    Today `Sidechain.import_block` stages the entries one by one and does not discard them when
    `apply_changes` raises; the staged value is visible to getters and is committed by the next
    parentchain sync or breaks the next slot's block."""
    secrets = enclave_secrets(net.validateer)
    alice_key = account_key(ALICE.public_key)
    mark = len(net.validateer.log())

    async def scenario() -> None:
        e = await Enclave.connect(net)
        try:
            before = await e.account(ALICE)
            forged = AccountInfo(nonce=before.nonce, providers=1)
            forged.data.free = 10**9 * UNIT
            diff = [(alice_key, AccountInfoCodec.encode(forged)), (b"\xff" * 32768, b"x")]

            async def build() -> dict[str, Any]:
                h = await current_head(e, net, secrets)
                return block_on(
                    h, secrets.signing, net.shard, sealed_diff(secrets, h.root, h.root, diff)
                )

            reason = await until_not_raced(e, build, (RACED_PARENT, RACED_ROOT))
            assert "state keys are limited" in reason, reason
            seen = [(await e.account(ALICE)).data.free for _ in range(3)]
            await asyncio.sleep(6 * SLOT_MS / 1000)
            seen.append((await e.account(ALICE)).data.free)
            assert seen == [before.data.free] * 4, f"Alice's free balance after the import: {seen}"
        finally:
            await e.close()

    run(scenario())
    assert "block production in slot" not in net.validateer.log()[mark:]


# --------------------------------------------------------------------------------------------
# Pool


async def _future_call_in_pool(e: Enclave, net: Net) -> EnumValue:
    """A call that stays in the pool: nonce 3 of an unfunded account (nonce 0) is a future."""
    top = transfer(stranger(), BOB.public_key, UNIT, 3, net)
    sub = await e.submit(top)
    assert sub.id == to_hex(blake2_256(TrustedOperation.encode(top)))
    first = [DirectRequestStatus.decode(from_hex(await sub.next(5))).value.name for _ in range(2)]
    assert first == ["Submitted", "Future"]
    return top


def _assert_already_imported(error: RpcError) -> None:
    assert (error.code, error.message.split(":")[0]) == (POOL_ERROR, "AlreadyImported"), error


def test_duplicate_submission_is_already_imported(net: Net) -> None:
    async def scenario() -> None:
        e, other = await Enclave.connect(net), await Enclave.connect(net)
        try:
            top = await _future_call_in_pool(e, net)
            for encrypted in (False, True):  # the same operation over the fast and the RSA path
                with pytest.raises(RpcError) as info:
                    await other.submit(top, encrypted=encrypted)
                _assert_already_imported(info.value)
        finally:
            await e.close()
            await other.close()

    run(scenario())


def test_duplicate_submission_on_the_same_connection_is_already_imported(net: Net) -> None:
    """A client resending over its own socket must hear AlreadyImported too. Today the RPC
    layer refuses the subscription id (the top hash, still watched on this socket) first:
    -32602 "subscription id ... is already in use", and the pool is never asked."""

    async def scenario() -> None:
        e = await Enclave.connect(net)
        try:
            top = await _future_call_in_pool(e, net)
            for encrypted in (False, True):
                with pytest.raises(RpcError) as info:
                    await e.submit(top, encrypted=encrypted)
                _assert_already_imported(info.value)
        finally:
            await e.close()

    run(scenario())


def test_future_queue_limit_drops_the_call_beyond_it(net: Net) -> None:
    async def scenario() -> None:
        e = await Enclave.connect(net)
        try:
            pending = Vec(Vec(Bytes)).decode(
                await e.value("author_pendingExtrinsics", [base58.b58encode(net.shard).decode()])
            )
            already = len(pending[0])  # futures left by earlier tests (ready calls go in blocks)
            who = stranger()
            accepted = 0
            for nonce in range(1, FUTURE_LIMIT + 2):
                try:
                    sub = await e.submit(transfer(who, BOB.public_key, 1, nonce, net))
                except RpcError as err:
                    assert err.code == POOL_ERROR, err
                    assert err.message.startswith("ImmediatelyDropped: "), err
                    assert "the future queue is full" in err.message, err
                    break
                accepted += 1
                assert sub.active
            assert accepted == FUTURE_LIMIT - already
            # the pool refuses more futures but still takes and executes ready calls
            with pytest.raises(RpcError, match="ImmediatelyDropped"):
                await e.submit(transfer(stranger(), BOB.public_key, 1, 1, net))
            nonce = (await e.account(ALICE)).nonce
            sub = await e.submit(transfer(ALICE, BOB.public_key, UNIT, nonce, net))
            seen = await statuses(sub)
            assert [s.name for s in seen] == ["Submitted", "Ready", "InSidechainBlock"], seen
        finally:
            await e.close()

    run(scenario())


# --------------------------------------------------------------------------------------------
# Restart


def test_restart_continues_the_sidechain_and_keeps_balances(net: Net) -> None:
    v = net.validateer

    async def before() -> tuple[dict[str, Any], bytes, AccountInfo, AccountInfo, bytes]:
        e = await Enclave.connect(net)
        try:
            alice = await e.account(ALICE)
            sub = await e.submit(transfer(ALICE, BOB.public_key, 3 * UNIT, alice.nonce, net))
            seen = await statuses(sub)
            assert seen[-1].name == "InSidechainBlock", seen
            included_in = bytes(seen[-1].value)
            alice_after, bob_after = await e.account(ALICE), await e.account(BOB)
            assert alice_after.data.free == alice.data.free - 3 * UNIT - TRANSFER_FEE
            assert alice_after.nonce == alice.nonce + 1
            header = await e.header()
            return header, included_in, alice_after, bob_after, header_hash(header)
        finally:
            await e.close()

    header, included_in, alice, bob, head_hash = run(before())
    served = run(served_blocks(v, net.shard))
    assert included_in in {header_hash(b["block"]["header"]) for b in served}

    assert v.stop() == 0  # SIGTERM: a clean stop
    assert not v.enclave_running()
    v.start(timeout=60)

    async def after() -> None:
        e = await Enclave.connect(net)
        try:
            now = await wait_height_above(e, header["block_number"])
            assert now > header["block_number"]
            # balances and nonces of before the restart
            assert await e.account(ALICE) == alice
            assert await e.account(BOB) == bob
            # and the next transfer takes the next nonce
            sub = await e.submit(transfer(ALICE, BOB.public_key, UNIT, alice.nonce, net))
            assert (await statuses(sub))[-1].name == "InSidechainBlock"
            assert (await e.account(BOB)).data.free == bob.data.free + UNIT
        finally:
            await e.close()

    run(after())
    # the blocks after the restart continue the pre-restart head, one by one
    continued = run(served_blocks(v, net.shard, head_hash))
    assert continued, "no block after the pre-restart head is served"
    first = continued[0]["block"]["header"]
    assert first["parent_hash"] == head_hash
    assert first["block_number"] == header["block_number"] + 1
    everything = run(served_blocks(v, net.shard))
    numbers = [b["block"]["header"]["block_number"] for b in everything]
    assert numbers == list(range(1, len(numbers) + 1))


# --------------------------------------------------------------------------------------------
# Whole-chain properties and the valid-block control (last: the control exposes a storage bug
# that stalls the served chain)


def test_served_chain_replays_state_root_to_state_root(net: Net) -> None:
    """A replica that applies the served blocks' diffs in order must find each block's apriori
    root equal to the previous block's aposteriori root; otherwise peers cannot import the
    chain. Runs after the restart test on purpose: today the parentchain blocks a restarting
    validateer syncs before its sidechain starts are applied to the shard state outside any
    sidechain block (`Enclave.sync_parentchain` passes no pool submitter while `self.sidechain`
    is None), so the first block after a restart starts from another root."""
    secrets = enclave_secrets(net.validateer)
    blocks = run(served_blocks(net.validateer, net.shard))
    previous: bytes | None = None
    breaks: list[int] = []
    for block in blocks:
        data = block["block"]["block_data"]
        payload = StatePayload.decode(
            aead.decrypt(secrets.state_key, bytes(data["encrypted_state_diff"]), DIFF_AAD)
        )
        if previous is not None and bytes(payload["state_hash_apriori"]) != previous:
            breaks.append(block["block"]["header"]["block_number"])
        previous = bytes(payload["state_hash_aposteriori"])
    assert not breaks, (
        f"{len(breaks)} of {len(blocks)} blocks do not start from their parent's state root "
        f"(first: #{breaks[:5]})"
    )


def test_valid_peer_block_is_imported_stored_and_the_chain_goes_on(net: Net) -> None:
    secrets = enclave_secrets(net.validateer)

    async def scenario() -> tuple[bytes, int]:
        e = await Enclave.connect(net)
        try:
            made: dict[str, Any] = {}

            async def build() -> dict[str, Any]:
                h = await current_head(e, net, secrets)
                made["block"] = block_on(
                    h, secrets.signing, net.shard, sealed_diff(secrets, h.root, h.root, [])
                )
                return made["block"]

            reason = await until_not_raced(e, build, (RACED_PARENT, RACED_ROOT))
            assert reason == "ok"
            ours = made["block"]["block"]["header"]
            assert (await e.header())["block_number"] >= ours["block_number"]
            await wait_height_above(e, ours["block_number"] + 2)
            return header_hash(ours), ours["block_number"]
        finally:
            await e.close()

    ours_hash, ours_number = run(scenario())
    time.sleep(2 * SLOT_MS / 1000)
    served = run(served_blocks(net.validateer, net.shard))
    served_hashes = [header_hash(b["block"]["header"]) for b in served]
    assert ours_hash in served_hashes, (
        f"the imported block #{ours_number} is not in the sidechain DB "
        f"(it ends at #{served[-1]['block']['header']['block_number']})"
    )
    assert served[-1]["block"]["header"]["block_number"] > ours_number
    assert height_metric(net.validateer) > ours_number
