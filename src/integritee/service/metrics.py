"""Prometheus metrics of the validateer's untrusted side (the original's metric names)."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, Enum, Gauge, ProcessCollector, generate_latest

from .sidechain_db import register_sidechain_metrics

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class ServiceMetrics:
    def __init__(self, validateer: Any) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        register_sidechain_metrics(validateer.sidechain_db, self.registry)
        self.parentchain_block = Gauge(
            "integritee_worker_enclave_stf_runtime_parentchain_processed_block_number",
            "Last parentchain block imported by the enclave",
            registry=self.registry,
        )
        self.peer_count = Gauge(
            "integritee_worker_enclave_sidechain_peer_count",
            "Other validateers of the shard known from the parentchain",
            registry=self.registry,
        )
        self.onboarding = Enum(
            "integritee_worker_onboarding",
            "Where the validateer is in joining its shard",
            states=["starting", "provisioning", "catching_up", "done"],
            registry=self.registry,
        )
        self._runner: web.AppRunner | None = None

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE}
        )

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
