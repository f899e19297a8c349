"""Shared fixtures: a dev node process on free ports, stopped after the test (also on failure)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from procs import NodeProcess  # noqa: E402


@pytest.fixture(scope="module")
def dev_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    node = NodeProcess(tmp_path_factory.mktemp("node"), block_time_ms=300)
    try:
        node.start()
        yield node
    finally:
        node.stop()
