"""The direct-invocation RPC's wire types: Request, RpcReturnValue, operation statuses.

Most results of the trusted RPC are hex(SCALE(RpcReturnValue { value, do_watch, status })) with
DirectRequestStatus Ok 0 | TrustedOperationStatus(..) 1 | Error 2; on Error, `value` is
SCALE(String message).
"""

from __future__ import annotations

from typing import Any

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import (
    H256,
    AccountId32,
    Bytes,
    Enum,
    EnumValue,
    Struct,
    Tuple,
    boolean,
    text,
    variant,
)

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
    """The one hex-encoded `Request` param of trusted RPC methods."""
    if not isinstance(params, list) or len(params) != 1 or not isinstance(params[0], str):
        raise ValueError("expected one hex-encoded Request")
    return Request.decode(from_hex(params[0]))
