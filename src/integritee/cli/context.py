"""Shared pieces of every CLI command: global settings, the error type, parameter types.

`CliConfig` holds the global options (node and worker endpoints) and is stored as the click
context object; commands get it with `@pass_config`. `CliError` is the one exception a command
raises for a user-facing failure: click prints `Error: <message>` on stderr and exits with 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

KEYSTORE_PATH = "my_keystore"
U128_MAX = 2**128 - 1
DEFAULT_NODE_URL = "ws://127.0.0.1"
DEFAULT_NODE_PORT = 9944
DEFAULT_WORKER_URL = "wss://127.0.0.1"
DEFAULT_TRUSTED_WORKER_PORT = 2000

_URL_SCHEMES = ("ws://", "wss://", "http://", "https://")


class CliError(click.ClickException):
    """A failure to report to the user as one clear line on stderr, exit code 1."""


def endpoint(url: str, port: int) -> str:
    """`<url>:<port>` as the original CLI builds it; the URL must carry a ws/http scheme."""
    if not url.startswith(_URL_SCHEMES):
        raise CliError(f"invalid URL {url!r}: expected ws://, wss://, http:// or https://")
    return f"{url.rstrip('/')}:{port}"


@dataclass(frozen=True)
class CliConfig:
    """The global options of `integritee-cli`."""

    node_url: str = DEFAULT_NODE_URL
    node_port: int = DEFAULT_NODE_PORT
    worker_url: str = DEFAULT_WORKER_URL
    trusted_worker_port: int = DEFAULT_TRUSTED_WORKER_PORT
    log_level: str = "info"

    @property
    def node_endpoint(self) -> str:
        return endpoint(self.node_url, self.node_port)

    @property
    def worker_endpoint(self) -> str:
        return endpoint(self.worker_url, self.trusted_worker_port)


pass_config = click.make_pass_decorator(CliConfig)


class BalanceType(click.ParamType):
    """A u128 balance given as a plain integer (underscores allowed, like `1_000`)."""

    name = "balance"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, int) and not isinstance(value, bool):
            amount = value
        else:
            text = str(value).strip().replace("_", "")
            if not text.isdigit() or not text.isascii():
                self.fail(f"{value!r} is not a non-negative integer amount", param, ctx)
            amount = int(text)
        if not 0 <= amount <= U128_MAX:
            self.fail(f"{value!r} does not fit a u128 balance", param, ctx)
        return amount


BALANCE = BalanceType()
