"""The enclave's direct-invocation JSON-RPC (trusted WSS, port 2000): the original's methods and encodings.

Most results are hex(SCALE(RpcReturnValue { value, do_watch, status })) with
DirectRequestStatus Ok 0 | TrustedOperationStatus(..) 1 | Error 2; on Error, `value` is
SCALE(String message). Bad input never raises out of a handler: it becomes an Error return value,
as the original does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import base58

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import (
    H256,
    AccountId32,
    Bytes,
    Enum,
    EnumValue,
    Option,
    ScaleDecodeError,
    Struct,
    Tuple,
    boolean,
    text,
    variant,
)
from integritee.rpc.server import RpcServer

if TYPE_CHECKING:
    from .app import Enclave

log = logging.getLogger("integritee.enclave.rpc")

VERSION = "0.16.0-python"

TrustedOperationStatus = Enum(
    "itp_types::TrustedOperationStatus",
    [
        variant("Submitted", 0),
        variant("Future", 1),
        variant("Ready", 2),
        variant("Broadcast", 3),
        variant("InSidechainBlock", 4, (None, H256)),
        variant("Retracted", 5),
        variant("FinalityTimeout", 6),
        variant("Finalized", 7),
        variant("Usurped", 8),
        variant("Dropped", 9),
        variant("Invalid", 10),
    ],
)
DirectRequestStatus = Enum(
    "itp_types::DirectRequestStatus",
    [
        variant("Ok", 0),
        variant("TrustedOperationStatus", 1, (None, TrustedOperationStatus)),
        variant("Error", 2),
    ],
)
RpcReturnValue = Struct(
    "itp_types::RpcReturnValue",
    [("value", Bytes), ("do_watch", boolean), ("status", DirectRequestStatus)],
)
Request = Struct("itp_types::Request", [("shard", H256), ("cyphertext", Bytes)])
ParentchainId = Enum(
    "itp_types::parentchain::ParentchainId",
    [variant("Integritee", 0), variant("TargetA", 1), variant("TargetB", 2)],
)
ShardVault = Tuple(AccountId32, ParentchainId)


def ok(value: bytes) -> str:
    return to_hex(
        RpcReturnValue.encode({"value": value, "do_watch": False, "status": EnumValue("Ok")})
    )


def error(message: str) -> str:
    return to_hex(
        RpcReturnValue.encode(
            {"value": text.encode(message), "do_watch": False, "status": EnumValue("Error")}
        )
    )


def decode_request(params: Any) -> dict[str, Any]:
    if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], str):
        raise ValueError("expected one hex-encoded Request")
    return Request.decode(from_hex(params[0]))


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
