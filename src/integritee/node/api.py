"""The node's JSON-RPC methods (Substrate's names, shapes and error codes).

Handlers parse their params strictly (bad params -> -32602 via ValueError/TypeError), return
`null` for unknown blocks or storage (clients treat errors as fatal), and map transaction pool
errors to Substrate's author error codes (1001 bad format, 1010-1016 pool errors).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import (
    Bytes,
    Option,
    ScaleDecodeError,
    Struct,
    Vec,
    decode_compact,
    u32,
    u128,
)
from integritee.crypto.hashing import blake2_256
from integritee.crypto.ss58 import ss58_decode_with_prefix
from integritee.parentchain.extrinsic import ExtrinsicFormatError
from integritee.parentchain.primitives import DispatchClass, Header, RuntimeVersionCodec, Weight
from integritee.rpc.errors import RpcError
from integritee.rpc.server import RpcServer

from .blockchain import Block
from .runtime import executive
from .runtime.construct import RUNTIME_VERSION, metadata_bytes
from .runtime.pallets.system import Account
from .service import Node
from .txpool import PoolError

log = logging.getLogger("integritee.node.api")

MAX_KEYS_PAGED = 1000
MAX_QUERY_KEYS = 1000

RuntimeDispatchInfo = Struct(
    "pallet_transaction_payment::types::RuntimeDispatchInfo",
    [("weight", Weight), ("class", DispatchClass), ("partial_fee", u128)],
)


def _param(params: Any, index: int, name: str, default: Any = None) -> Any:
    if isinstance(params, dict):
        return params.get(name, default)
    if not isinstance(params, list):
        raise TypeError("params must be an array or an object")
    return params[index] if index < len(params) else default


def _hex_param(
    params: Any, index: int, name: str, length: int | None = None, required: bool = True
) -> bytes | None:
    value = _param(params, index, name)
    if value is None:
        if required:
            raise ValueError(f"missing parameter {name!r}")
        return None
    try:
        return from_hex(value, length)
    except ValueError as e:
        raise ValueError(f"invalid {name}: {e}") from None


def _runtime_version_json() -> dict[str, Any]:
    v = RUNTIME_VERSION
    return {
        "specName": v["spec_name"],
        "implName": v["impl_name"],
        "authoringVersion": v["authoring_version"],
        "specVersion": v["spec_version"],
        "implVersion": v["impl_version"],
        "apis": [[to_hex(api_id), version] for api_id, version in v["apis"]],
        "transactionVersion": v["transaction_version"],
        "stateVersion": v["state_version"],
    }


def _pool_error(e: PoolError) -> RpcError:
    return RpcError(e.code, e.message, e.data)


class NodeApi:
    def __init__(self, node: Node, server: RpcServer, node_name: str, version: str) -> None:
        self.node = node
        self.chain = node.chain
        self.server = server
        self.node_name = node_name
        self.version = version
        self._register()

    # --- helpers
    def _block_hash(self, params: Any, index: int, name: str = "hash") -> bytes | None:
        """The block hash param, or the best hash when absent; None when the block is unknown."""
        h = _hex_param(params, index, name, 32, required=False)
        if h is None:
            return self.chain.best_hash
        return h if self.chain.maybe_header(h) is not None else None

    def _state(self, params: Any, index: int):
        h = self._block_hash(params, index, "at")
        if h is None:
            raise RpcError(
                4003, "Client error: UnknownBlock: State already discarded or unknown block"
            )
        return h, self.chain.state_at(h)

    def _register(self) -> None:
        s = self.server
        m = s.add_method
        m("system_name", lambda p: self.node_name)
        m("system_version", lambda p: self.version)
        m("system_chain", lambda p: self.node.config.spec.name)
        m("system_chainType", lambda p: self.node.config.spec.chain_type)
        m("system_properties", lambda p: self.node.config.spec.properties)
        m("system_health", self.health)
        m("system_peers", lambda p: [] if self.network is None else self.network.peer_infos())
        m("system_nodeRoles", lambda p: ["Authority"] if self.node.config.authority else ["Full"])
        m("system_localPeerId", lambda p: "" if self.network is None else self.network.peer_id)
        m(
            "system_localListenAddresses",
            lambda p: [] if self.network is None else self.network.listen_addresses(),
        )
        m("system_syncState", self.sync_state)
        m("system_accountNextIndex", self.account_next_index, aliases=["account_nextIndex"])
        m("chain_getBlockHash", self.get_block_hash, aliases=["chain_getHead"])
        m("chain_getHeader", self.get_header)
        m("chain_getBlock", self.get_block)
        m(
            "chain_getFinalizedHead",
            lambda p: to_hex(self.chain.finalized_hash),
            aliases=["chain_getFinalisedHead"],
        )
        m("state_getRuntimeVersion", self.runtime_version, aliases=["chain_getRuntimeVersion"])
        m("state_getMetadata", self.get_metadata)
        m("state_getStorage", self.get_storage, aliases=["state_getStorageAt"])
        m("state_getStorageHash", self.get_storage_hash, aliases=["state_getStorageHashAt"])
        m("state_getStorageSize", self.get_storage_size, aliases=["state_getStorageSizeAt"])
        m("state_getKeys", self.get_keys)
        m("state_getKeysPaged", self.get_keys_paged, aliases=["state_getKeysPagedAt"])
        m("state_getPairs", self.get_pairs)
        m("state_queryStorageAt", self.query_storage_at)
        m("state_getReadProof", self.get_read_proof)
        m("state_call", self.state_call, aliases=["state_callAt"])
        m("author_submitExtrinsic", self.submit_extrinsic)
        m("author_pendingExtrinsics", lambda p: [to_hex(x) for x in self.node.pool.pending()])
        m("payment_queryInfo", self.payment_query_info)
        s.add_subscription(
            "chain_subscribeNewHeads",
            "chain_unsubscribeNewHeads",
            "chain_newHead",
            self._sub_heads(self.node.new_head_listeners, lambda: self.chain.best_header),
            aliases=["chain_subscribeNewHead", "subscribe_newHead"],
            unsubscribe_aliases=["chain_unsubscribeNewHead", "unsubscribe_newHead"],
        )
        s.add_subscription(
            "chain_subscribeAllHeads",
            "chain_unsubscribeAllHeads",
            "chain_allHead",
            self._sub_heads(self.node.new_head_listeners, lambda: self.chain.best_header),
        )
        s.add_subscription(
            "chain_subscribeFinalizedHeads",
            "chain_unsubscribeFinalizedHeads",
            "chain_finalizedHead",
            self._sub_heads(
                self.node.finalized_listeners, lambda: self.chain.header(self.chain.finalized_hash)
            ),
            aliases=["chain_subscribeFinalisedHeads"],
            unsubscribe_aliases=["chain_unsubscribeFinalisedHeads"],
        )
        s.add_subscription(
            "state_subscribeRuntimeVersion",
            "state_unsubscribeRuntimeVersion",
            "state_runtimeVersion",
            self._sub_runtime_version,
            aliases=["chain_subscribeRuntimeVersion"],
            unsubscribe_aliases=["chain_unsubscribeRuntimeVersion"],
        )
        s.add_subscription(
            "state_subscribeStorage", "state_unsubscribeStorage", "state_storage", self._sub_storage
        )
        s.add_subscription(
            "author_submitAndWatchExtrinsic",
            "author_unwatchExtrinsic",
            "author_extrinsicUpdate",
            self._sub_extrinsic,
        )

    # --- system
    @property
    def network(self) -> Any:
        return self.node.network

    def health(self, params: Any) -> dict[str, Any]:
        net = self.network
        if net is None:
            return {"peers": 0, "isSyncing": False, "shouldHavePeers": False}
        return {
            "peers": len(net.peers),
            "isSyncing": net.is_major_syncing(),
            "shouldHavePeers": bool(net.targets)
            or self.node.config.spec.chain_type != "Development",
        }

    def sync_state(self, params: Any) -> dict[str, Any]:
        net = self.network
        best = self.chain.best_number
        return {
            "startingBlock": self.node.starting_block,
            "currentBlock": best,
            "highestBlock": best if net is None else net.sync_target(),
        }

    def account_next_index(self, params: Any) -> int:
        account = _param(params, 0, "accountId")
        if not isinstance(account, str):
            raise ValueError("accountId must be an SS58 address or hex public key")
        who = (
            from_hex(account, 32)
            if account.startswith("0x")
            else ss58_decode_with_prefix(account)[0]
        )
        return self.node.next_index(who)

    # --- chain
    def get_block_hash(self, params: Any) -> Any:
        value = _param(params, 0, "number")
        if isinstance(value, list):
            return [self._hash_of(v) for v in value]
        return self._hash_of(value)

    def _hash_of(self, value: Any) -> str | None:
        if value is None:
            return to_hex(self.chain.best_hash)
        if isinstance(value, bool):
            raise TypeError("block number must be a number or hex string")
        if isinstance(value, str):
            number = int(value, 16) if value.startswith("0x") else int(value)
        elif isinstance(value, int):
            number = value
        else:
            raise TypeError("block number must be a number or hex string")
        if not 0 <= number <= 0xFFFFFFFF:
            raise ValueError(f"block number {number} is not a u32")
        h = self.chain.hash_at(number)
        return None if h is None else to_hex(h)

    def get_header(self, params: Any) -> dict[str, Any] | None:
        h = self._block_hash(params, 0)
        return None if h is None else self.chain.header(h).to_json()

    def get_block(self, params: Any) -> dict[str, Any] | None:
        h = self._block_hash(params, 0)
        if h is None:
            return None
        header = self.chain.header(h)
        body = self.chain.body(h) or []
        justification = self.chain.justification(h)
        return {
            "block": {"header": header.to_json(), "extrinsics": [to_hex(x) for x in body]},
            "justifications": [[list(b"FRNK"), list(justification)]] if justification else None,
        }

    # --- state
    def runtime_version(self, params: Any) -> dict[str, Any] | None:
        if self._block_hash(params, 0, "at") is None:
            return None
        return _runtime_version_json()

    def get_metadata(self, params: Any) -> str:
        self._state(params, 0)
        return to_hex(metadata_bytes())

    def get_storage(self, params: Any) -> str | None:
        key = _hex_param(params, 0, "key")
        _h, trie = self._state(params, 1)
        value = trie.get(key)
        return None if value is None else to_hex(value)

    def get_storage_hash(self, params: Any) -> str | None:
        key = _hex_param(params, 0, "key")
        _h, trie = self._state(params, 1)
        value = trie.get(key)
        return None if value is None else to_hex(blake2_256(value))

    def get_storage_size(self, params: Any) -> int | None:
        key = _hex_param(params, 0, "key")
        _h, trie = self._state(params, 1)
        value = trie.get(key)
        return None if value is None else len(value)

    def get_keys(self, params: Any) -> list[str]:
        prefix = _hex_param(params, 0, "prefix")
        _h, trie = self._state(params, 1)
        out = []
        for k in trie.iter_keys(prefix):
            out.append(to_hex(k))
            if len(out) > 100_000:
                raise RpcError(-32000, "too many keys; use state_getKeysPaged")
        return out

    def get_keys_paged(self, params: Any) -> list[str]:
        prefix = _hex_param(params, 0, "prefix", required=False) or b""
        count = _param(params, 1, "count")
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            raise ValueError("count must be a non-negative integer")
        if count > MAX_KEYS_PAGED:
            raise RpcError(
                -32602, f"count exceeds maximum value. value: {count}, max: {MAX_KEYS_PAGED}"
            )
        start = _hex_param(params, 2, "startKey", required=False)
        _h, trie = self._state(params, 3)
        out = []
        for k in trie.iter_keys(prefix, start_after=start):
            if len(out) >= count:
                break
            out.append(to_hex(k))
        return out

    def get_pairs(self, params: Any) -> list[list[str]]:
        prefix = _hex_param(params, 0, "prefix")
        _h, trie = self._state(params, 1)
        out = []
        for k, v in trie.iter_prefix(prefix):
            out.append([to_hex(k), to_hex(v)])
            if len(out) > 100_000:
                raise RpcError(-32000, "too many pairs; use state_getKeysPaged")
        return out

    def query_storage_at(self, params: Any) -> list[dict[str, Any]]:
        keys = _param(params, 0, "keys")
        if not isinstance(keys, list) or len(keys) > MAX_QUERY_KEYS:
            raise ValueError(f"keys must be a list of at most {MAX_QUERY_KEYS} hex keys")
        parsed = [from_hex(k) for k in keys]
        h, trie = self._state(params, 1)
        changes = [[to_hex(k), None if (v := trie.get(k)) is None else to_hex(v)] for k in parsed]
        return [{"block": to_hex(h), "changes": changes}]

    def get_read_proof(self, params: Any) -> dict[str, Any]:
        keys = _param(params, 0, "keys")
        if not isinstance(keys, list) or len(keys) > MAX_QUERY_KEYS:
            raise ValueError(f"keys must be a list of at most {MAX_QUERY_KEYS} hex keys")
        parsed = [from_hex(k) for k in keys]
        h, trie = self._state(params, 1)
        return {"at": to_hex(h), "proof": [to_hex(n) for n in trie.read_proof(parsed)]}

    def state_call(self, params: Any) -> str:
        method = _param(params, 0, "name")
        if not isinstance(method, str):
            raise ValueError("name must be a runtime API method name")
        data = _hex_param(params, 1, "bytes", required=False) or b""
        h = self._block_hash(params, 2, "at")
        if h is None:
            raise RpcError(4003, "Client error: UnknownBlock: unknown block")
        handler = self._runtime_apis().get(method)
        if handler is None:
            raise RpcError(
                4003, f"Client error: Execution failed: Exported method {method} is not found"
            )
        try:
            return to_hex(handler(h, data))
        except (ScaleDecodeError, ExtrinsicFormatError, ValueError) as e:
            raise RpcError(4003, f"Client error: Execution failed: {e}") from None

    def _runtime_apis(self) -> dict[str, Callable[[bytes, bytes], bytes]]:
        return {
            "Core_version": lambda h, d: RuntimeVersionCodec.encode(RUNTIME_VERSION),
            "Metadata_metadata": lambda h, d: Bytes.encode(metadata_bytes()),
            "Metadata_metadata_versions": lambda h, d: Vec(u32).encode([14]),
            "Metadata_metadata_at_version": lambda h, d: Option(Bytes).encode(
                metadata_bytes() if u32.decode(d) == 14 else None
            ),
            "AccountNonceApi_account_nonce": self._api_account_nonce,
            "TransactionPaymentApi_query_info": self._api_query_info,
        }

    def _api_account_nonce(self, h: bytes, data: bytes) -> bytes:
        if len(data) != 32:
            raise ValueError("expected a 32-byte AccountId")
        return u32.encode(Account.get(self.chain.state_at(h), data).nonce)

    def _api_query_info(self, h: bytes, data: bytes) -> bytes:
        if len(data) < 4:
            raise ValueError("expected extrinsic ++ u32 length")
        raw = data[:-4]
        info = executive.query_info(self.node.context_at(h), raw)
        return RuntimeDispatchInfo.encode(info)

    def payment_query_info(self, params: Any) -> dict[str, Any]:
        raw = _hex_param(params, 0, "extrinsic")
        h = self._block_hash(params, 1, "at")
        if h is None:
            raise RpcError(4003, "Client error: UnknownBlock")
        try:
            info = executive.query_info(self.node.context_at(h), raw)
        except (ValueError, ExtrinsicFormatError) as e:
            raise RpcError(4003, f"Client error: Execution failed: {e}") from None
        return {
            "weight": {"ref_time": info["weight"]["ref_time"], "proof_size": 0},
            "class": "normal",
            "partialFee": str(info["partial_fee"]),
        }

    # --- author
    def _extrinsic_param(self, params: Any) -> bytes:
        raw = _hex_param(params, 0, "extrinsic")
        assert raw is not None
        try:
            length, pos = decode_compact(raw, 0)
        except ScaleDecodeError as e:
            raise RpcError(1001, "Extrinsic has invalid format", str(e)) from None
        if length != len(raw) - pos:
            raise RpcError(
                1001, "Extrinsic has invalid format", "length prefix does not match the data"
            )
        return raw

    def submit_extrinsic(self, params: Any) -> str:
        raw = self._extrinsic_param(params)
        try:
            return to_hex(self.node.submit(raw))
        except PoolError as e:
            raise _pool_error(e) from None

    def _sub_extrinsic(self, params: Any, sink: Any) -> None:
        raw = self._extrinsic_param(params)

        def watcher(status: Any) -> None:
            sink.send(status)
            if status in ("invalid", "dropped") or (
                isinstance(status, dict) and ("finalized" in status or "usurped" in status)
            ):
                sink.close()

        try:
            self.node.submit(raw, watcher)
        except PoolError as e:
            raise _pool_error(e) from None

    # --- subscriptions
    def _sub_heads(
        self, listeners: list, current: Callable[[], Header]
    ) -> Callable[[Any, Any], None]:
        def handler(params: Any, sink: Any) -> None:
            def on_head(header: Header, _h: bytes) -> None:
                sink.send(header.to_json())

            listeners.append(on_head)
            sink.on_close(lambda: listeners.remove(on_head))
            sink.send(current().to_json())

        return handler

    def _sub_runtime_version(self, params: Any, sink: Any) -> None:
        sink.send(_runtime_version_json())

    def _sub_storage(self, params: Any, sink: Any) -> None:
        keys = _param(params, 0, "keys")
        if keys is not None and (not isinstance(keys, list) or len(keys) > MAX_QUERY_KEYS):
            raise ValueError(f"keys must be a list of at most {MAX_QUERY_KEYS} hex keys")
        watched = None if keys is None else {from_hex(k) for k in keys}

        def on_block(block: Block, block_hash: bytes, changed: dict[bytes, bytes | None]) -> None:
            hits = [
                [to_hex(k), None if v is None else to_hex(v)]
                for k, v in changed.items()
                if watched is None or k in watched
            ]
            if hits:
                sink.send({"block": to_hex(block_hash), "changes": hits})

        self.node.block_listeners.append(on_block)
        sink.on_close(lambda: self.node.block_listeners.remove(on_block))
        if watched:
            trie = self.chain.head_state
            sink.send(
                {
                    "block": to_hex(self.chain.best_hash),
                    "changes": [
                        [to_hex(k), None if (v := trie.get(k)) is None else to_hex(v)]
                        for k in sorted(watched)
                    ],
                }
            )
