"""JSON-RPC 2.0 error codes and the exceptions shared by the RPC server and client.

The codes beyond the JSON-RPC 2.0 specification follow jsonrpsee (the server library Substrate
uses), so Substrate clients see the same numbers from our servers as from a real node.
"""

from __future__ import annotations

from typing import Any

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# jsonrpsee server-error range
TOO_MANY_SUBSCRIPTIONS = -32006
OVERSIZED_REQUEST = -32007
OVERSIZED_RESPONSE = -32008
SERVER_IS_BUSY = -32009

_DEFAULT_MESSAGES = {
    PARSE_ERROR: "Parse error",
    INVALID_REQUEST: "Invalid request",
    METHOD_NOT_FOUND: "Method not found",
    INVALID_PARAMS: "Invalid params",
    INTERNAL_ERROR: "Internal error",
    TOO_MANY_SUBSCRIPTIONS: "Too many subscriptions on the connection",
    OVERSIZED_REQUEST: "Request is too big",
    OVERSIZED_RESPONSE: "Response is too big",
    SERVER_IS_BUSY: "Server is busy, try again later",
}


def default_message(code: int) -> str:
    """The conventional message for `code` ("Server error" for unknown codes)."""
    return _DEFAULT_MESSAGES.get(code, "Server error")


class RpcError(Exception):
    """A JSON-RPC error object: raised by handlers, and by the client for error replies."""

    def __init__(self, code: int, message: str | None = None, data: Any = None) -> None:
        self.code = int(code)
        self.message = message if message is not None else default_message(self.code)
        self.data = data
        super().__init__(self.code, self.message, data)

    def __str__(self) -> str:
        text = f"RPC error {self.code}: {self.message}"
        if self.data is not None:
            text += f" ({self.data!r})"
        return text

    def to_json(self) -> dict[str, Any]:
        """The `error` member of a JSON-RPC response."""
        obj: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            obj["data"] = self.data
        return obj

    @classmethod
    def from_json(cls, obj: Any) -> RpcError:
        """Build from a received `error` member, tolerating malformed ones from foreign servers."""
        if not isinstance(obj, dict):
            return cls(INTERNAL_ERROR, f"malformed error object: {obj!r}")
        code = obj.get("code")
        if not isinstance(code, int) or isinstance(code, bool):
            code = INTERNAL_ERROR
        message = obj.get("message")
        if not isinstance(message, str):
            message = default_message(code)
        return cls(code, message, obj.get("data"))


class RpcConnectionError(ConnectionError):
    """The RPC connection closed or failed before a reply arrived."""
