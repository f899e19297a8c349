"""The enclave's direct-invocation JSON-RPC (trusted WSS, port 2000): the original's methods and encodings.

Results are hex(SCALE(RpcReturnValue)) as `integritee.trusted.rpc` declares them. Bad input
never raises out of a handler: it becomes an Error return value,
as the original does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import base58

from integritee.codec.scale import H256, Bytes, EnumValue, Option, ScaleDecodeError, text
from integritee.rpc.server import RpcServer
from integritee.trusted.rpc import ShardVault, decode_request, error, ok

if TYPE_CHECKING:
    from .app import Enclave

log = logging.getLogger("integritee.enclave.rpc")

VERSION = "0.16.0-python"


class TrustedRpc:
    def __init__(self, enclave: Enclave) -> None:
        self.enclave = enclave

    def register(self, server: RpcServer) -> None:
        m = server.add_method
        m(
            "author_getShieldingKey",
            lambda p: ok(text.encode(self.enclave.keys.shielding.public_key_json())),
        )
        m("author_getFingerprint", lambda p: ok(H256.encode(self.enclave.mrenclave)))
        m("author_getShard", lambda p: ok(H256.encode(self.enclave.shard)))
        m(
            "author_getMuRaUrl",
            lambda p: ok(text.encode(self.enclave.urls.mu_ra if self.enclave.urls else "")),
        )
        m(
            "author_getUntrustedUrl",
            lambda p: ok(text.encode(self.enclave.urls.untrusted if self.enclave.urls else "")),
        )
        m("author_getShardVault", self.get_shard_vault)
        m("state_executeGetter", self.execute_getter)
        m("system_version", lambda p: VERSION)
        m("system_name", lambda p: "integritee-enclave")
        m("system_health", lambda p: ok(text.encode("healthy")))

    def get_shard_vault(self, params: Any) -> str:
        vault = self.enclave.shard_vault()
        if vault is None:
            return error("shard vault not initialised")
        return ok(ShardVault.encode((vault, EnumValue("Integritee"))))

    def execute_getter(self, params: Any) -> str:
        try:
            request = decode_request(params)
        except (ValueError, ScaleDecodeError) as e:
            return error(f"invalid request: {e}")
        try:
            result = self.enclave.execute_getter(request["shard"], request["cyphertext"])
        except ValueError as e:
            log.info("getter refused: %s", e)
            return error(str(e))
        return ok(Option(Bytes).encode(result))


def shard_from_base58(value: str) -> bytes:
    raw = base58.b58decode(value)
    if len(raw) != 32:
        raise ValueError("a shard is 32 bytes")
    return raw
