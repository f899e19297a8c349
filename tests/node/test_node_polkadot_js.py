"""polkadot.js (@polkadot/api v16) against a dev node: the second client-compatibility contract.

`polkadot_js/check.mjs` connects with `ApiPromise.create`, reads chain facts and `System.Account`,
signs a mortal `Balances.transfer_keep_alive` and follows it to InBlock and Finalized, checks the
events and the exact fee, follows new heads, reads Teerex and sends `EnclaveBridge.invoke`; it prints
one JSON line. Its node_modules live in a cache dir outside the repository, keyed by a hash of
package.json and installed once (under a file lock, so parallel runs do not race). The test skips
only when node/npm are missing or the registry cannot be reached; any other install error fails.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from procs import NodeProcess, rpc

PKG_DIR = Path(__file__).parent / "polkadot_js"
TEER = 10**12
INSTALL_TIMEOUT_S = 240
CHECK_TIMEOUT_S = 120

# npm's error codes (and messages) for a registry it could not reach; anything else is a real error.
_NETWORK_FAILURE = re.compile(
    r"\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ESOCKETTIMEDOUT|ENETUNREACH|"
    r"ENETDOWN|EHOSTUNREACH|EPROTO|ERR_SOCKET_TIMEOUT|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|"
    r"SELF_SIGNED_CERT_IN_CHAIN|E429|E5\d\d)\b"
    r"|network request to \S+ failed|npm (?:error|ERR!) network",
)


class NetworkFailure(Exception):
    """npm could not reach the registry (the only install failure that skips the test)."""


def cache_dir() -> Path:
    """The install dir for this exact package.json: ~/.cache/integritee-tests/polkadot-js/<hash>."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    digest = hashlib.sha256((PKG_DIR / "package.json").read_bytes()).hexdigest()[:16]
    return base / "integritee-tests" / "polkadot-js" / digest


def is_network_failure(npm_output: str) -> bool:
    return _NETWORK_FAILURE.search(npm_output) is not None


def failure_summary(npm_output: str) -> str:
    """npm's error code and the line naming the network failure, for a one-line skip reason."""
    lines = [
        line.strip()
        for line in npm_output.splitlines()
        if re.search(r"\bcode\b", line) or _NETWORK_FAILURE.search(line)
    ]
    return " / ".join(list(dict.fromkeys(lines))[:3]) or npm_output.strip()[-300:]


def install(target: Path) -> tuple[Path, float]:
    """node_modules for package.json in `target` (installed on first use); returns it and the
    seconds spent installing (0 when reused)."""
    target.mkdir(parents=True, exist_ok=True)
    stamp = target / ".installed"
    package_json = (PKG_DIR / "package.json").read_bytes()
    with open(target / ".lock", "w") as lock:
        # A concurrent run installs while we wait, then we find its stamp.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and (target / "package.json").read_bytes() == package_json:
            return target / "node_modules", 0.0
        stamp.unlink(missing_ok=True)
        (target / "package.json").write_bytes(package_json)
        t0 = time.monotonic()
        cmd = [
            "npm",
            "install",
            "--prefix",
            str(target),
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
            "--prefer-offline",
            # Fail fast on an unreachable registry instead of npm's minute-long backoff.
            "--fetch-retries=1",
            "--fetch-retry-mintimeout=2000",
            "--fetch-retry-maxtimeout=5000",
            "--fetch-timeout=60000",
        ]
        try:
            done = subprocess.run(
                cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, cwd=target
            )
        except subprocess.TimeoutExpired as e:
            raise NetworkFailure(f"npm install took over {INSTALL_TIMEOUT_S} s") from e
        output = done.stdout + done.stderr
        if done.returncode != 0:
            if is_network_failure(output):
                raise NetworkFailure(failure_summary(output))
            pytest.fail(f"npm install failed (exit {done.returncode}):\n{output[-4000:]}")
        if not (target / "node_modules" / "@polkadot" / "api" / "package.json").is_file():
            pytest.fail(f"npm install left no @polkadot/api in {target}:\n{output[-2000:]}")
        stamp.write_text(hashlib.sha256(package_json).hexdigest())
        return target / "node_modules", time.monotonic() - t0


@pytest.fixture(scope="module")
def node_modules() -> Path:
    for tool in ("node", "npm"):
        if shutil.which(tool) is None:
            pytest.skip(f"`{tool}` is not installed: polkadot.js check needs Node.js and npm")
    try:
        modules, seconds = install(cache_dir())
    except NetworkFailure as e:
        pytest.skip(f"npm registry unreachable, cannot install polkadot.js: {e}")
    if seconds:
        print(f"installed polkadot.js into {modules} in {seconds:.1f} s")
    return modules


def run_check(node_modules: Path, workdir: Path, ws_url: str) -> dict[str, Any]:
    """Runs check.mjs from a scratch dir whose node_modules links to the cache; returns its JSON
    line (the script lives beside its modules because ES imports ignore NODE_PATH)."""
    (workdir / "node_modules").symlink_to(node_modules, target_is_directory=True)
    script = workdir / "check.mjs"
    shutil.copyfile(PKG_DIR / "check.mjs", script)
    shutil.copyfile(PKG_DIR / "package.json", workdir / "package.json")
    done = subprocess.run(
        ["node", str(script), ws_url],
        capture_output=True,
        text=True,
        timeout=CHECK_TIMEOUT_S,
        cwd=workdir,
    )
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert lines, f"check.mjs printed nothing (exit {done.returncode}):\n{done.stderr[-4000:]}"
    result = json.loads(lines[-1])
    assert done.returncode == 0 and result.get("ok") is True, (
        f"polkadot.js check failed (exit {done.returncode}): {result.get('error')}\n"
        f"warnings: {result.get('warnings')}\nstderr:\n{done.stderr[-3000:]}"
    )
    return result


def test_polkadot_js_against_dev_node(
    node_modules: Path, dev_node: NodeProcess, tmp_path: Path
) -> None:
    t0 = time.monotonic()
    result = run_check(node_modules, tmp_path, dev_node.ws_url)
    print(f"polkadot.js check: {time.monotonic() - t0:.2f} s, in-client {result['totalMs']} ms")

    assert result["warnings"] == []
    assert result["chain"] == "Integritee Development"
    assert result["runtime"]["specName"] == "integritee-solo"
    assert result["metadataVersion"] == 14
    assert result["ss58Prefix"] == result["registryChainSS58"] == 13
    assert result["properties"]["ss58Format"] == 13
    assert result["properties"]["tokenSymbol"] == ["TEER"]
    assert result["properties"]["tokenDecimals"] == [12]
    assert result["genesisHash"] == rpc(dev_node.http_url, "chain_getBlockHash", [0])
    assert result["signedExtensions"][:8] == [
        "CheckNonZeroSender",
        "CheckSpecVersion",
        "CheckTxVersion",
        "CheckGenesis",
        "CheckMortality",
        "CheckNonce",
        "CheckWeight",
        "ChargeTransactionPayment",
    ]
    assert int(result["alice"]["free"]) > TEER
    assert result["allowSkippingAttestation"] is True

    transfer = result["transfer"]
    assert transfer["amount"] == str(TEER)
    assert int(transfer["partialFee"]) > 0
    assert transfer["actualFee"] == transfer["partialFee"]
    assert transfer["class"] == "Normal"
    assert transfer["statuses"][-2:] == ["InBlock", "Finalized"]
    # Mortal by default: period a power of two, birth phase inside it.
    period = transfer["era"]["period"]
    assert period >= 4 and period & (period - 1) == 0
    assert 0 <= transfer["era"]["phase"] < period
    # The node agrees on where the transfer landed, and that it is final.
    number = transfer["blockNumber"]
    assert rpc(dev_node.http_url, "chain_getBlockHash", [number]) == transfer["block"]
    finalized = rpc(dev_node.http_url, "chain_getFinalizedHead")
    finalized_header = rpc(dev_node.http_url, "chain_getHeader", [finalized])
    assert isinstance(finalized_header, dict) and int(finalized_header["number"], 16) >= number

    heads = result["heads"]
    assert len(heads) == 2 and heads[1]["number"] > heads[0]["number"]

    invoke = result["invoke"]
    assert invoke["shard"] == "0x" + "ab" * 32
    assert invoke["statuses"][-2:] == ["InBlock", "Finalized"]


@pytest.mark.parametrize(
    ("output", "network"),
    [
        ("npm error code ENOTFOUND\nnpm error syscall getaddrinfo", True),
        ("npm ERR! code EAI_AGAIN\nnpm ERR! errno EAI_AGAIN", True),
        ("npm error network request to https://registry.npmjs.org/x failed", True),
        ("npm error code E503\nnpm error 503 Service Unavailable", True),
        ("npm error code ETARGET\nnpm error notarget No matching version", False),
        ("npm error code E404\nnpm error 404 Not Found - GET https://registry", False),
        ("npm error code EACCES\nnpm error syscall mkdir", False),
        ("npm error code EJSONPARSE", False),
    ],
)
def test_network_failure_classification(output: str, network: bool) -> None:
    assert is_network_failure(output) is network
