"""Fixtures of the ported demos: a dev node and a validateer as real processes on free ports.

`demo_network` is one node (the shared module-scoped `dev_node`, 300 ms blocks) plus one
validateer (`procs.ValidateerProcess`: `run --dev` with Skip attestation, 300 ms sidechain
slots) for a whole test module, and a working directory for the CLI (its keystores). A module
chooses more `run` flags with a module-level `VALIDATEER_RUN_FLAGS` list (e.g.
`["--no-shard-vault"]` for the enclave-bridge demos). The validateer's log (service and enclave)
is `<work dir>/service.log`; tests read it to check what the enclave reported.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from procs import NodeProcess, ValidateerProcess

SLOT_DURATION_MS = 300
START_TIMEOUT = 90.0
# Blocks stay in the validateer's storage for the whole module, so a test can look any up.
KEEP_BLOCKS = ["--sidechain-keep-blocks", "10000"]


@dataclass(frozen=True)
class DemoNetwork:
    node: NodeProcess
    validateer: ValidateerProcess
    workdir: Path
    """The working directory of the CLI (its keystores live there)."""


@pytest.fixture(scope="module")
def demo_network(
    dev_node: NodeProcess,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> Iterator[DemoNetwork]:
    """A dev node and one validateer, for the whole module."""
    flags = list(getattr(request.module, "VALIDATEER_RUN_FLAGS", []))
    validateer = ValidateerProcess(
        tmp_path_factory.mktemp("validateer"),
        dev_node.rpc_port,
        slot_duration_ms=SLOT_DURATION_MS,
        run_flags=[*KEEP_BLOCKS, *flags],
    )
    try:
        validateer.start(timeout=START_TIMEOUT)
        yield DemoNetwork(dev_node, validateer, tmp_path_factory.mktemp("cli"))
    finally:
        validateer.stop()
