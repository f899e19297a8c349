"""Prometheus metrics of the node, served on the prometheus port at /metrics.

Gauges are read from the node at scrape time (block heights, pool sizes), so they are never stale;
counters and histograms (RPC calls, block import time) are updated as things happen.
"""

from __future__ import annotations

from collections.abc import Iterator

from aiohttp import web
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from .service import Node

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _NodeCollector(Collector):
    def __init__(self, node: Node) -> None:
        self.node = node

    def collect(self) -> Iterator[GaugeMetricFamily | CounterMetricFamily]:
        height = GaugeMetricFamily(
            "substrate_block_height", "Block height info of the chain", labels=["status"]
        )
        net = self.node.network
        height.add_metric(["best"], self.node.chain.best_number)
        height.add_metric(["finalized"], self.node.chain.finalized_number)
        if net is not None:
            height.add_metric(["sync_target"], net.sync_target())
        yield height
        if net is not None:
            yield GaugeMetricFamily(
                "substrate_sub_libp2p_peers_count",
                "Number of connected peers",
                value=len(net.peers),
            )
            yield GaugeMetricFamily(
                "substrate_sub_libp2p_is_major_syncing",
                "Whether the node is far behind its peers (1) or not (0)",
                value=1 if net.is_major_syncing() else 0,
            )
            yield CounterMetricFamily(
                "integritee_p2p_peers_banned",
                "Peers banned for misbehaviour since start",
                value=net.bans,
            )
            yield CounterMetricFamily(
                "integritee_p2p_blocks_imported",
                "Blocks received from peers and imported since start",
                value=net.blocks_from_peers,
            )
            yield CounterMetricFamily(
                "substrate_sub_libp2p_notifications_received",
                "Messages received from peers since start",
                value=net.messages_in,
            )
            yield CounterMetricFamily(
                "substrate_sub_libp2p_network_received_bytes",
                "Bytes received from peers since start",
                value=net.bytes_in,
            )
        yield GaugeMetricFamily(
            "substrate_finality_grandpa_round",
            "The current finality voting round",
            value=self.node.finality.current_round(),
        )
        yield GaugeMetricFamily(
            "substrate_ready_transactions_number",
            "Number of transactions in the ready queue",
            value=len(self.node.pool.ready),
        )
        yield GaugeMetricFamily(
            "substrate_future_transactions_number",
            "Number of transactions in the future queue",
            value=len(self.node.pool.future),
        )
        yield GaugeMetricFamily(
            "integritee_node_blocks_authored",
            "Blocks authored by this node since start",
            value=self.node.blocks_authored,
        )


class NodeMetrics:
    def __init__(self, node: Node) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(_NodeCollector(node))
        ProcessCollector(registry=self.registry)
        self.rpc_calls = Counter(
            "substrate_rpc_calls",
            "Number of RPC calls",
            ["method", "is_error"],
            registry=self.registry,
        )
        self.rpc_time = Histogram(
            "substrate_rpc_calls_time_seconds",
            "Time spent serving RPC calls",
            ["method"],
            registry=self.registry,
        )
        self.import_time = Histogram(
            "substrate_block_verification_and_import_time",
            "Time taken to build or verify and import a block",
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )
        node.new_head_listeners.append(
            lambda _header, _h: self.import_time.observe(node.last_import_seconds)
        )
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    def on_rpc(self, method: str, ok: bool, seconds: float) -> None:
        self.rpc_calls.labels(method, "false" if ok else "true").inc()
        self.rpc_time.labels(method).observe(seconds)

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE}
        )

    async def start(self, host: str, port: int) -> int:
        app = web.Application()
        app.router.add_get("/metrics", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self.port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
