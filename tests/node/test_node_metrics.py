"""The node's Prometheus endpoint: parseable exposition, Substrate's metric names, live values.

Scrapes http://127.0.0.1:<prometheus-port>/metrics of the shared dev node and checks the values
against what the node's JSON-RPC says (block heights, pool sizes) and against calls the test made
itself (RPC counters).
"""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from substrateinterface import Keypair

from procs import NodeProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape_text(node: NodeProcess) -> tuple[str, str]:
    url = f"http://127.0.0.1:{node.prometheus_port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.status == 200
        return resp.headers["Content-Type"], resp.read().decode()


def scrape(node: NodeProcess) -> Samples:
    _ctype, text = scrape_text(node)
    out: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def compact(n: int) -> bytes:
    if n < 1 << 6:
        return bytes([n << 2])
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    return ((n << 2) | 2).to_bytes(4, "little")


def rpc(node: NodeProcess, method: str, params: list[Any] | None = None) -> Any:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).encode()
    req = urllib.request.Request(node.http_url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        return json.loads(resp.read())


def test_exposition_parses_and_has_substrate_metrics(dev_node: NodeProcess) -> None:
    ctype, text = scrape_text(dev_node)
    assert ctype.startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "substrate_block_height",
        "substrate_ready_transactions_number",
        "substrate_rpc_calls",
    ):
        assert name in families, sorted(families)
    assert families["substrate_block_height"].type == "gauge"
    statuses = {s.labels["status"] for s in families["substrate_block_height"].samples}
    assert {"best", "finalized"} <= statuses
    assert families["substrate_ready_transactions_number"].type == "gauge"
    assert families["substrate_rpc_calls"].type == "counter"


def test_block_height_grows_and_matches_rpc(dev_node: NodeProcess) -> None:
    first = scrape(dev_node)
    best0 = value(first, "substrate_block_height", status="best")
    finalized0 = value(first, "substrate_block_height", status="finalized")
    assert best0 >= 1
    assert 0 <= finalized0 <= best0
    dev_node.wait_for_block(int(best0) + 2, timeout=10)
    second = scrape(dev_node)
    best1 = value(second, "substrate_block_height", status="best")
    finalized1 = value(second, "substrate_block_height", status="finalized")
    assert best1 >= best0 + 2
    assert finalized1 >= finalized0 and finalized1 <= best1
    # Same figures as the RPC (a block may land between the two reads).
    header = rpc(dev_node, "chain_getHeader")["result"]
    assert int(header["number"], 16) - best1 in (0, 1, 2)
    fin_hash = rpc(dev_node, "chain_getFinalizedHead")["result"]
    fin_number = int(rpc(dev_node, "chain_getHeader", [fin_hash])["result"]["number"], 16)
    assert fin_number >= finalized1


def test_rpc_call_counter_counts(dev_node: NodeProcess) -> None:
    before = scrape(dev_node)
    n = 7
    for _ in range(n):
        assert rpc(dev_node, "system_version")["result"]
    for _ in range(3):
        assert rpc(dev_node, "chain_getBlockHash", ["xyz"])["error"]["code"] == -32602
    after = scrape(dev_node)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("substrate_rpc_calls_total", method="system_version", is_error="false") == n
    assert delta("substrate_rpc_calls_total", method="chain_getBlockHash", is_error="true") == 3
    assert delta("substrate_rpc_calls_time_seconds_count", method="system_version") == n
    # Unknown method names are counted under one label (no label explosion from garbage input).
    unknown_before = value(after, "substrate_rpc_calls_total", method="<unknown>", is_error="true")
    for i in range(4):
        assert rpc(dev_node, f"bogus_method_{i}")["error"]["code"] == -32601
    final = scrape(dev_node)
    assert (
        value(final, "substrate_rpc_calls_total", method="<unknown>", is_error="true")
        == unknown_before + 4
    )
    assert not any("bogus_method" in dict(labels).get("method", "") for _n, labels in final)


def test_pool_metrics_follow_the_pool(dev_node: NodeProcess) -> None:
    # A transaction with a nonce gap waits in the future queue, visible in the metrics.
    eve = Keypair.create_from_uri("//Eve")
    bob = Keypair.create_from_uri("//Bob")
    version = rpc(dev_node, "state_getRuntimeVersion")["result"]
    genesis = bytes.fromhex(rpc(dev_node, "chain_getBlockHash", [0])["result"][2:])
    nonce = rpc(dev_node, "system_accountNextIndex", [eve.ss58_address])["result"] + 3
    call = bytes([10, 3, 0]) + bob.public_key + compact(100)  # Balances.transfer_keep_alive
    extra = b"\x00" + compact(nonce) + compact(0)
    payload = (
        call
        + extra
        + version["specVersion"].to_bytes(4, "little")
        + version["transactionVersion"].to_bytes(4, "little")
        + genesis
        + genesis
    )
    body = b"\x84\x00" + eve.public_key + b"\x01" + eve.sign(payload) + extra + call
    xt = compact(len(body)) + body
    before = scrape(dev_node)
    reply = rpc(dev_node, "author_submitExtrinsic", ["0x" + xt.hex()])
    assert reply.get("result") == "0x" + hashlib.blake2b(xt, digest_size=32).hexdigest(), reply
    after = scrape(dev_node)
    assert (
        value(after, "substrate_future_transactions_number")
        == value(before, "substrate_future_transactions_number") + 1
    )
    assert value(after, "substrate_ready_transactions_number") >= 0
    assert len(rpc(dev_node, "author_pendingExtrinsics")["result"]) >= 1


def test_block_import_time_histogram_observes_blocks(dev_node: NodeProcess) -> None:
    before = scrape(dev_node)
    count0 = value(before, "substrate_block_verification_and_import_time_count")
    dev_node.wait_for_block(dev_node.best_number() + 2, timeout=10)
    time.sleep(0.05)
    after = scrape(dev_node)
    assert value(after, "substrate_block_verification_and_import_time_count") >= count0 + 2
    assert value(after, "substrate_block_verification_and_import_time_sum") > 0


def test_other_paths_are_not_found(dev_node: NodeProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(f"http://127.0.0.1:{dev_node.prometheus_port}/nope", timeout=10)
    assert exc.value.code == 404
