"""`python -m integritee.enclave`: the enclave process the service launches.

It opens (or creates) its sealed keys, serves ecalls on a Unix socket given by the service, and
serves clients on the trusted port once initialised. SIGTERM or the shutdown ecall stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from integritee.crypto.sealing import SealingError, detect_sealing_provider
from integritee.rpc.server import RpcServer
from integritee.teeio.messages import Ecall

from .app import Enclave

log = logging.getLogger("integritee.enclave")


async def serve(
    data_dir: Path, ecall_socket: str, ocall_socket: str | None, sealing_key: str | None
) -> int:
    try:
        sealing = detect_sealing_provider(sealing_key, data_dir=data_dir)
        enclave = Enclave(data_dir, sealing, ocall_socket)
    except SealingError as e:
        log.error("cannot open the enclave's sealed keys: %s", e)
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = RpcServer(name="ecall", max_request_bytes=256 * 1024 * 1024)
    enclave.register_ecalls(server)
    server.add_method(Ecall.SHUTDOWN, lambda params: stop.set() or True)
    await server.start_unix(ecall_socket)
    watcher = asyncio.create_task(_exit_with_parent(stop))
    try:
        await stop.wait()
    finally:
        log.info("enclave shutting down")
        watcher.cancel()
        await server.stop()
        await enclave.close()
        with contextlib.suppress(OSError):
            os.unlink(ecall_socket)
    return 0


async def _exit_with_parent(stop: asyncio.Event) -> None:
    """Stop when the service that launched us is gone (e.g. killed with -9): no orphan enclaves."""
    parent = os.getppid()
    while not stop.is_set():
        await asyncio.sleep(0.5)
        if os.getppid() != parent:
            log.warning("the service process is gone; stopping")
            stop.set()


def _freeze_survivors(phase: str, info: dict[str, int]) -> None:
    """After a full collection, move its survivors out of the collector's sight: the shard state
    (trie nodes by the hundred thousand) is long-lived, and every later full collection would scan
    it again, pausing block production for a third of a second at 100,000 accounts. Garbage cycles
    were just collected, so nothing collectable is frozen; later cycles are collected as usual."""
    if phase == "stop" and info.get("generation") == 2:
        gc.freeze()


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m integritee.enclave", description=__doc__)
    parser.add_argument("--data-dir", required=True, type=Path)
    parser.add_argument("--ecall-socket", required=True)
    parser.add_argument("--ocall-socket", default=None, help="the service's ocall socket")
    parser.add_argument(
        "--sealing-key", default=None, help="simulation sealing key file (outside the data dir)"
    )
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args()
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)-5s [enclave] %(name)s: %(message)s",
        stream=sys.stderr,
    )
    args.data_dir.mkdir(parents=True, exist_ok=True)
    # RSA decryptions run in executor threads and release the GIL while they compute; with the
    # default 5 ms switch interval they wait that long for it after each one while the event loop
    # is busy, which caps the RSA path far below what the CPU can decrypt (BENCHMARKS.md)
    sys.setswitchinterval(0.0002)
    gc.callbacks.append(_freeze_survivors)
    return asyncio.run(serve(args.data_dir, args.ecall_socket, args.ocall_socket, args.sealing_key))


if __name__ == "__main__":
    sys.exit(main())
