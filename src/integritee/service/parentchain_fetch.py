"""Fetching parentchain blocks for the enclave's light client (untrusted side).

Owns the RPC calls that gather what the light client needs: the genesis header with a read proof
of `:code`, `Grandpa.Authorities` and `Grandpa.CurrentSetId` (to initialize it), and per block the
SCALE header, the raw extrinsics, the GRANDPA justification (engine "FRNK") and a read proof of
`System.Events`. `FetchedBlock.to_json()` is exactly the JSON form of the enclave's
`ParentchainBlockInput` (the service cannot import enclave code; the wire format is the contract).

Requests are pipelined over one WebSocket: the hashes of a range come from `chain_getBlockHash`
called with lists of numbers, then blocks and proofs are requested concurrently (bounded by `concurrency`),
and `sync_batches` fetches the next batch while the caller imports the current one.

Nothing here is trusted by the enclave; the checks below (header hash = requested hash, numbers
consecutive) only catch a misbehaving node early with a precise error.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import encode_compact
from integritee.crypto.hashing import blake2_256, storage_prefix
from integritee.rpc.client import RpcClient

CODE_KEY = b":code"
GRANDPA_AUTHORITIES_KEY = storage_prefix("Grandpa", "Authorities")
GRANDPA_SET_ID_KEY = storage_prefix("Grandpa", "CurrentSetId")
GENESIS_KEYS = (CODE_KEY, GRANDPA_AUTHORITIES_KEY, GRANDPA_SET_ID_KEY)
EVENTS_KEY = storage_prefix("System", "Events")
GRANDPA_ENGINE = b"FRNK"

DEFAULT_BATCH = 1000
DEFAULT_CONCURRENCY = 128
HASHES_PER_CALL = 1000  # numbers per chain_getBlockHash call (keeps requests small)
REQUEST_TIMEOUT = 60.0


class FetchError(RuntimeError):
    """The node's answers are missing or malformed."""


@dataclass(frozen=True)
class FetchedBlock:
    """One block as handed to the enclave (the fields of its `ParentchainBlockInput`)."""

    number: int
    hash: bytes
    header: bytes  # SCALE
    extrinsics: list[bytes]
    justification: bytes | None
    events_proof: list[bytes]

    def to_json(self) -> dict[str, Any]:
        """The enclave's `ParentchainBlockInput` JSON."""
        return {
            "header": to_hex(self.header),
            "extrinsics": [to_hex(x) for x in self.extrinsics],
            "justification": None if self.justification is None else to_hex(self.justification),
            "eventsProof": [to_hex(n) for n in self.events_proof],
        }


Requester = Callable[[str, list[Any]], Awaitable[Any]]


def _requester(client: RpcClient, concurrency: int) -> Requester:
    limit = asyncio.Semaphore(concurrency)

    async def request(method: str, params: list[Any]) -> Any:
        async with limit:
            return await client.request(method, params, timeout=REQUEST_TIMEOUT)

    return request


def _hex(value: Any, what: str, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise FetchError(f"{what}: expected a hex string, got {type(value).__name__}")
    try:
        return from_hex(value, length)
    except ValueError as e:
        raise FetchError(f"{what}: {e}") from None


def _byte_list(value: Any, what: str) -> bytes:
    """Substrate serializes `[u8; 4]` and `Vec<u8>` in justifications as lists of numbers."""
    if isinstance(value, str):
        return _hex(value, what)
    if isinstance(value, list) and all(
        isinstance(b, int) and not isinstance(b, bool) and 0 <= b <= 255 for b in value
    ):
        return bytes(value)
    raise FetchError(f"{what}: expected bytes as a list of numbers or a hex string")


def header_bytes(header: Any, what: str = "header") -> tuple[int, bytes]:
    """(number, SCALE encoding) of a header in its JSON-RPC form; digest logs are kept verbatim."""
    if not isinstance(header, dict):
        raise FetchError(f"{what}: expected a JSON object")
    number_text = header.get("number")
    if not isinstance(number_text, str):
        raise FetchError(f"{what}: number must be a hex string")
    try:
        number = int(number_text, 16)
    except ValueError:
        raise FetchError(f"{what}: invalid number {number_text!r}") from None
    if not 0 <= number <= 0xFFFFFFFF:
        raise FetchError(f"{what}: number {number} is not a u32")
    digest = header.get("digest")
    logs = digest.get("logs") if isinstance(digest, dict) else None
    if not isinstance(logs, list):
        raise FetchError(f"{what}: digest.logs must be a list")
    out = bytearray(_hex(header.get("parentHash"), f"{what} parentHash", 32))
    out += encode_compact(number)
    out += _hex(header.get("stateRoot"), f"{what} stateRoot", 32)
    out += _hex(header.get("extrinsicsRoot"), f"{what} extrinsicsRoot", 32)
    out += encode_compact(len(logs))
    for i, log in enumerate(logs):
        out += _hex(log, f"{what} digest log {i}")
    return number, bytes(out)


def grandpa_justification(justifications: Any, what: str = "block") -> bytes | None:
    """The GRANDPA ("FRNK") justification of a `chain_getBlock` reply's `justifications`."""
    if justifications is None:
        return None
    if not isinstance(justifications, list):
        raise FetchError(f"{what}: justifications must be a list or null")
    for item in justifications:
        if not isinstance(item, list) or len(item) != 2:
            raise FetchError(f"{what}: a justification must be an [engine, data] pair")
        if _byte_list(item[0], f"{what} justification engine") == GRANDPA_ENGINE:
            return _byte_list(item[1], f"{what} justification")
    return None


def _proof(reply: Any, what: str) -> list[bytes]:
    if not isinstance(reply, dict) or not isinstance(reply.get("proof"), list):
        raise FetchError(f"{what}: state_getReadProof reply without a proof list")
    return [_hex(n, f"{what} proof node") for n in reply["proof"]]


async def fetch_genesis_init(client: RpcClient) -> tuple[bytes, list[bytes]]:
    """(SCALE genesis header, read proof of :code, Grandpa.Authorities, Grandpa.CurrentSetId)."""
    genesis_hex = await client.request("chain_getBlockHash", [0], timeout=REQUEST_TIMEOUT)
    if genesis_hex is None:
        raise FetchError("the node has no block #0")
    genesis_hash = _hex(genesis_hex, "genesis hash", 32)
    header_json, proof_reply = await asyncio.gather(
        client.request("chain_getHeader", [genesis_hex], timeout=REQUEST_TIMEOUT),
        client.request(
            "state_getReadProof",
            [[to_hex(k) for k in GENESIS_KEYS], genesis_hex],
            timeout=REQUEST_TIMEOUT,
        ),
    )
    number, header = header_bytes(header_json, "genesis header")
    if number != 0 or blake2_256(header) != genesis_hash:
        raise FetchError("the genesis header does not hash to the genesis hash")
    return header, _proof(proof_reply, "genesis")


async def finalized_number(client: RpcClient) -> int:
    """Number of the node's finalized head."""
    head = await client.request("chain_getFinalizedHead", [], timeout=REQUEST_TIMEOUT)
    header = await client.request("chain_getHeader", [head], timeout=REQUEST_TIMEOUT)
    if header is None:
        raise FetchError(f"the finalized head {head} has no header")
    return header_bytes(header, "finalized header")[0]


async def _fetch_block(
    request: Requester, number: int, block_hash: bytes, extra_keys: tuple[bytes, ...] = ()
) -> FetchedBlock:
    h = to_hex(block_hash)
    what = f"block #{number}"
    keys = [to_hex(k) for k in (EVENTS_KEY, *extra_keys)]
    block_reply, proof_reply = await asyncio.gather(
        request("chain_getBlock", [h]), request("state_getReadProof", [keys, h])
    )
    if not isinstance(block_reply, dict) or not isinstance(block_reply.get("block"), dict):
        raise FetchError(f"{what} 0x{block_hash.hex()}: the node does not have it")
    block = block_reply["block"]
    got_number, header = header_bytes(block.get("header"), f"{what} header")
    if got_number != number or blake2_256(header) != block_hash:
        raise FetchError(f"{what}: the header the node returned is not block 0x{block_hash.hex()}")
    raw_extrinsics = block.get("extrinsics")
    if not isinstance(raw_extrinsics, list):
        raise FetchError(f"{what}: extrinsics must be a list")
    return FetchedBlock(
        number=number,
        hash=block_hash,
        header=header,
        extrinsics=[_hex(x, f"{what} extrinsic") for x in raw_extrinsics],
        justification=grandpa_justification(block_reply.get("justifications"), what),
        events_proof=_proof(proof_reply, what),
    )


async def fetch_blocks(
    client: RpcClient,
    from_number: int,
    to_number: int,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
    extra_keys: tuple[bytes, ...] = (),
) -> list[FetchedBlock]:
    """Blocks `from_number..=to_number` of the node's canonical chain, oldest first; each
    block's read proof covers `System.Events` and `extra_keys` (what the enclave watches)."""
    if from_number < 0 or to_number < from_number - 1:
        raise ValueError(f"invalid block range {from_number}..{to_number}")
    if to_number < from_number:
        return []
    request = _requester(client, concurrency)
    numbers = list(range(from_number, to_number + 1))
    chunks = [numbers[i : i + HASHES_PER_CALL] for i in range(0, len(numbers), HASHES_PER_CALL)]
    replies = await asyncio.gather(*(request("chain_getBlockHash", [c]) for c in chunks))
    hashes: list[Any] = []
    for chunk, reply in zip(chunks, replies, strict=True):
        if not isinstance(reply, list) or len(reply) != len(chunk):
            raise FetchError("chain_getBlockHash with a list did not return one hash per number")
        hashes.extend(reply)
    parsed = []
    for n, h in zip(numbers, hashes, strict=True):
        if h is None:
            raise FetchError(f"the node has no block #{n}")
        parsed.append(_hex(h, f"hash of block #{n}", 32))
    return list(
        await asyncio.gather(
            *(_fetch_block(request, n, h, extra_keys) for n, h in zip(numbers, parsed, strict=True))
        )
    )


async def sync_batches(
    client: RpcClient,
    start: int,
    end: int,
    batch: int = DEFAULT_BATCH,
    *,
    concurrency: int = DEFAULT_CONCURRENCY,
) -> AsyncIterator[list[FetchedBlock]]:
    """Blocks `start..=end` in batches of at most `batch`; the next batch is fetched while the
    caller processes the current one. Stopping the iteration cancels the prefetch."""
    if batch < 1:
        raise ValueError("batch size must be at least 1")

    def spawn(first: int) -> asyncio.Task[list[FetchedBlock]]:
        last = min(first + batch - 1, end)
        return asyncio.ensure_future(fetch_blocks(client, first, last, concurrency=concurrency))

    if start > end:
        return
    task: asyncio.Task[list[FetchedBlock]] | None = spawn(start)
    first = start
    try:
        while task is not None:
            blocks = await task
            first += batch
            task = spawn(first) if first <= end else None
            yield blocks
    finally:
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
