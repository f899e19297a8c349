"""Entry point of integritee-cli: the `main` click group, its global options, error handling.

Global options (as the original): `-u/--node-url`, `-p/--node-port`, `-U/--worker-url`,
`-P/--trusted-worker-port`, plus `--log-level`. They become a `CliConfig` context object.
Command modules each expose `register(group)`; to add one (the `trusted` subgroup), append its
module path to `COMMAND_MODULES`.

Any failure ends as one `Error: ...` line on stderr with a non-zero exit code, never a
traceback (`--log-level debug` logs the traceback of unexpected errors).
"""

from __future__ import annotations

import importlib
import logging
import sys
from typing import Any

import click

from integritee.cli.context import (
    DEFAULT_NODE_PORT,
    DEFAULT_NODE_URL,
    DEFAULT_TRUSTED_WORKER_PORT,
    DEFAULT_WORKER_URL,
    CliConfig,
    CliError,
)

log = logging.getLogger("integritee.cli")

COMMAND_MODULES: tuple[str, ...] = (
    "integritee.cli.base_commands",
    "integritee.cli.tee_commands",
    "integritee.cli.trusted_commands",
)
LOG_LEVELS = ("error", "warning", "info", "debug")
EXIT_INTERRUPTED = 130
_PORT = click.IntRange(0, 65535)


def _user_error(exc: Exception) -> str | None:
    """The message of an exception that is the user's or the environment's fault."""
    from integritee.cli.accounts import AccountError
    from integritee.cli.keystore import KeystoreError

    if isinstance(exc, AccountError | KeystoreError):
        return str(exc)
    if isinstance(exc, ConnectionError | TimeoutError):
        return f"network error: {exc}"
    return None


class CliGroup(click.Group):
    """A group that reports every failure of its commands as a clean `CliError`."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(EXIT_INTERRUPTED)
        except Exception as e:
            message = _user_error(e)
            if message is not None:
                raise CliError(message) from e
            log.debug("unexpected error", exc_info=True)
            raise CliError(f"unexpected {type(e).__name__}: {e}") from e


def _setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("[%(levelname)s %(name)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    # Libraries (substrate-interface, websocket) stay quiet unless debugging.
    root.setLevel(logging.DEBUG if level == "debug" else logging.WARNING)
    logging.getLogger("integritee").setLevel(level.upper())


@click.group(cls=CliGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-u", "--node-url", default=DEFAULT_NODE_URL, show_default=True, help="Parentchain node URL."
)
@click.option(
    "-p", "--node-port", default=DEFAULT_NODE_PORT, type=_PORT, show_default=True,
    help="Parentchain node RPC port.",
)  # fmt: skip
@click.option(
    "-U", "--worker-url", default=DEFAULT_WORKER_URL, show_default=True,
    help="Worker (validateer) trusted RPC URL.",
)  # fmt: skip
@click.option(
    "-P", "--trusted-worker-port", default=DEFAULT_TRUSTED_WORKER_PORT, type=_PORT,
    show_default=True, help="Worker trusted RPC port.",
)  # fmt: skip
@click.option(
    "--log-level",
    type=click.Choice(LOG_LEVELS, case_sensitive=False),
    default="info",
    show_default=True,
    help="Log verbosity (logs go to stderr).",
)
@click.version_option(package_name="integritee", prog_name="integritee-cli")
@click.pass_context
def main(
    ctx: click.Context,
    node_url: str,
    node_port: int,
    worker_url: str,
    trusted_worker_port: int,
    log_level: str,
) -> None:
    """Client of the Integritee parentchain node and its validateers."""
    _setup_logging(log_level.lower())
    ctx.obj = CliConfig(
        node_url=node_url,
        node_port=node_port,
        worker_url=worker_url,
        trusted_worker_port=trusted_worker_port,
        log_level=log_level.lower(),
    )


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(main)


if __name__ == "__main__":
    main(prog_name="integritee-cli")
