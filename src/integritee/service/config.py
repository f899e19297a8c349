"""The validateer's configuration, from the command line (defaults as the original)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Default external addresses name the loopback host; operators set -T/-U/-M for other hosts.
DEFAULT_HOST = "127.0.0.1"


@dataclass
class ServiceConfig:
    node_url: str
    node_port: int
    data_dir: Path
    ws_external: bool
    mu_ra_port: int
    trusted_port: int
    untrusted_port: int
    trusted_external: str
    untrusted_external: str
    mu_ra_external: str
    enable_metrics: bool
    metrics_port: int
    http_port: int
    clean_reset: bool
    sealing_key: str | None
    log_level: str
    shard: bytes | None = None
    dev: bool = False
    attestation: str = "skip"
    sync_batch: int = 500
    slot_duration_ms: int = 1000
    sidechain_keep_blocks: int = 100
    shard_vault: bool = True

    @classmethod
    def from_options(cls, o: dict[str, Any]) -> ServiceConfig:
        host = DEFAULT_HOST
        trusted_port = int(o["trusted_worker_port"])
        untrusted_port = int(o["untrusted_worker_port"])
        mu_ra_port = int(o["mu_ra_port"])
        return cls(
            node_url=str(o["node_url"]),
            node_port=int(o["node_port"]),
            data_dir=Path(o["data_dir"]).resolve(),
            ws_external=bool(o["ws_external"]),
            mu_ra_port=mu_ra_port,
            trusted_port=trusted_port,
            untrusted_port=untrusted_port,
            trusted_external=o["trusted_external_address"] or f"wss://{host}:{trusted_port}",
            untrusted_external=o["untrusted_external_address"] or f"ws://{host}:{untrusted_port}",
            mu_ra_external=o["mu_ra_external_address"] or f"{host}:{mu_ra_port}",
            enable_metrics=bool(o["enable_metrics"]),
            metrics_port=int(o["metrics_port"]),
            http_port=int(o["untrusted_http_port"]),
            clean_reset=bool(o["clean_reset"]),
            sealing_key=o["sealing_key"],
            log_level=str(o["log_level"]),
        )

    @property
    def bind_host(self) -> str:
        return "0.0.0.0" if self.ws_external else "127.0.0.1"

    @property
    def node_endpoint(self) -> str:
        return f"{self.node_url}:{self.node_port}"
