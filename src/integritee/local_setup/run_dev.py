"""`make run`: start a dev parentchain node, show it working with the CLI, keep it up until Ctrl-C.

This is the main job as far as the system exists so far (the parentchain); the full local setup
with validateers replaces it once those exist. `--demo-and-exit` runs the demo and stops.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

BIN = Path(sys.executable).parent


def _rpc(url: str, method: str, params: list | None = None) -> object:
    body = json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": method, "params": params or []}
    ).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        return json.loads(resp.read())["result"]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _pick_port(preferred: int) -> int:
    if _port_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cli(port: int, *args: str, cwd: Path) -> str:
    out = subprocess.run(
        [str(BIN / "integritee-cli"), "-p", str(port), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=120,
    )
    if out.returncode != 0:
        raise RuntimeError(f"integritee-cli {' '.join(args)} failed:\n{out.stderr}")
    return out.stdout.strip()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--demo-and-exit", action="store_true", help="run the demo, then stop everything"
    )
    parser.add_argument("--block-time-ms", type=int, default=1000)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="integritee-run-"))
    rpc_port = _pick_port(9944)
    metrics_port = _pick_port(9615)
    log_path = work / "node.log"
    print(f"Starting integritee-node --dev (logs: {log_path})")
    with open(log_path, "wb") as log:
        node = subprocess.Popen(
            [
                str(BIN / "integritee-node"),
                "--dev",
                "--base-path",
                str(work / "node"),
                "--rpc-port",
                str(rpc_port),
                "--prometheus-port",
                str(metrics_port),
                "--block-time-ms",
                str(args.block_time_ms),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    stop = False

    def on_signal(_signum: int, _frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    url = f"http://127.0.0.1:{rpc_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if node.poll() is not None:
                print(log_path.read_text()[-2000:])
                return 1
            try:
                if int(_rpc(url, "chain_getHeader")["number"], 16) >= 1:  # type: ignore[index]
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                print("node did not start producing blocks")
                return 1
            time.sleep(0.2)
        print(
            f"Node is producing blocks: RPC ws://127.0.0.1:{rpc_port} (HTTP on the same port), metrics http://127.0.0.1:{metrics_port}/metrics"
        )
        print("\nDemo: a transfer of 1 TEER from //Alice to //Bob with integritee-cli")
        before = int(_cli(rpc_port, "balance", "//Bob", cwd=work))
        print(f"  balance //Bob before: {before}")
        _cli(rpc_port, "transfer", "//Alice", "//Bob", "1000000000000", cwd=work)
        after = int(_cli(rpc_port, "balance", "//Bob", cwd=work))
        print(f"  balance //Bob after:  {after}  (+{after - before})")
        if after - before != 1_000_000_000_000:
            print("demo FAILED: Bob did not receive exactly 1 TEER")
            return 1
        print("demo OK")
        if args.demo_and_exit:
            return 0
        print("\nTry it yourself:")
        print(f"  .venv/bin/integritee-cli -p {rpc_port} balance //Alice")
        print(f"  .venv/bin/integritee-cli -p {rpc_port} transfer //Alice //Charlie 5000000000000")
        print(f"  .venv/bin/integritee-cli -p {rpc_port} listen -b 3")
        print("Ctrl-C stops the node.")
        while not stop and node.poll() is None:
            time.sleep(0.5)
        return 0
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGTERM)
            try:
                node.wait(15)
            except subprocess.TimeoutExpired:
                node.kill()
        print("node stopped")
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
