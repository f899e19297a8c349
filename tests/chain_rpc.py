"""What the multi-node tests ask of a running node over its JSON-RPC: heads, finality, slots,
balances, peers, transfers, and waiting for a condition with the nodes' logs on a timeout."""

from __future__ import annotations

import time
from collections.abc import Callable

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import EnumValue, u64
from integritee.crypto.keys import Keypair
from integritee.node.runtime.construct import SPEC_VERSION, TRANSACTION_VERSION, runtime_call
from integritee.node.runtime.pallets import system
from integritee.parentchain.extrinsic import sign_and_encode
from procs import NodeProcess, rpc


def wait(check: Callable[[], bool], timeout: float, what: str, nodes: list[NodeProcess]) -> None:
    """Poll `check` until true; on timeout fail with the tail of every node's log."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            logs = "\n".join(
                f"--- {n.base_path.name}\n{n.log_path.read_text()[-3000:]}"
                for n in nodes
                if n.log_path is not None and n.log_path.exists()
            )
            raise TimeoutError(f"{what} not reached in {timeout} s\n{logs}")
        time.sleep(0.1)


def header(n: NodeProcess, block_hash: str | None = None) -> dict:
    h = rpc(n.http_url, "chain_getHeader", [block_hash] if block_hash else [])
    assert isinstance(h, dict)
    return h


def hash_at(n: NodeProcess, number: int) -> str | None:
    return rpc(n.http_url, "chain_getBlockHash", [number])  # type: ignore[return-value]


def best(n: NodeProcess) -> tuple[int, str]:
    number = int(header(n)["number"], 16)
    return number, str(hash_at(n, number))


def finalized(n: NodeProcess) -> tuple[int, str]:
    h = str(rpc(n.http_url, "chain_getFinalizedHead"))
    return int(header(n, h)["number"], 16), h


def same_heads(nodes: list[NodeProcess]) -> bool:
    return len({best(n) for n in nodes}) == 1 and len({finalized(n) for n in nodes}) == 1


def slot(n: NodeProcess, block_hash: str) -> int:
    """The Aura slot in the block's pre-runtime digest."""
    for item in header(n, block_hash)["digest"]["logs"]:
        raw = from_hex(item)
        if raw[0] == 6 and raw[1:5] == b"aura":  # PreRuntime("aura", compact len ++ u64 slot)
            return u64.decode(raw[6:14])
    raise AssertionError("no Aura pre-digest")


def peers(n: NodeProcess) -> int:
    health = rpc(n.http_url, "system_health")
    assert isinstance(health, dict)
    return int(health["peers"])


def free_balance(n: NodeProcess, who: bytes) -> int:
    value = rpc(n.http_url, "state_getStorage", [to_hex(system.Account.key(who))])
    return 0 if value is None else int.from_bytes(from_hex(str(value))[16:32], "little")


def transfer(n: NodeProcess, sender: Keypair, dest: bytes, value: int) -> None:
    """Submit `Balances.transfer_keep_alive` signed by `sender` (not waiting for inclusion)."""
    call = runtime_call().encode(
        EnumValue(
            "Balances",
            EnumValue("transfer_keep_alive", {"dest": EnumValue("Id", dest), "value": value}),
        )
    )
    xt = sign_and_encode(
        call,
        sender,
        nonce=rpc(n.http_url, "system_accountNextIndex", [to_hex(sender.public_key)]),
        genesis_hash=from_hex(str(hash_at(n, 0))),
        spec_version=SPEC_VERSION,
        tx_version=TRANSACTION_VERSION,
    )
    rpc(n.http_url, "author_submitExtrinsic", [to_hex(xt)])
