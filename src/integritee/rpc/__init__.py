"""JSON-RPC 2.0 over HTTP and WebSocket: the server with subscriptions and the clients."""

from integritee.rpc.client import RpcClient, Subscription, http_request, rpc_call
from integritee.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    OVERSIZED_REQUEST,
    OVERSIZED_RESPONSE,
    PARSE_ERROR,
    SERVER_IS_BUSY,
    TOO_MANY_SUBSCRIPTIONS,
    RpcConnectionError,
    RpcError,
)
from integritee.rpc.server import RpcServer, SubscriptionSink

__all__ = [
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "OVERSIZED_REQUEST",
    "OVERSIZED_RESPONSE",
    "PARSE_ERROR",
    "SERVER_IS_BUSY",
    "TOO_MANY_SUBSCRIPTIONS",
    "RpcClient",
    "RpcConnectionError",
    "RpcError",
    "RpcServer",
    "Subscription",
    "SubscriptionSink",
    "http_request",
    "rpc_call",
]
