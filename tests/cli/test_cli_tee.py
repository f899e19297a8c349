"""integritee-cli TEE commands against a real dev node: collateral, sim-dcap enclaves, list-workers.

The dev chain trusts the sim-dcap root, so the sim-dcap collateral (written to files in Intel's
JSON document form, as a user gets them from Intel's PCS) registers, and an enclave with an
ed25519 key registers with a DCAP quote whose report data is that key; the real Intel collateral
in the shared fixtures is rejected with the dispatch error and its meaning. What the CLI prints
is checked against what the chain stores, read with substrate-interface.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import base58
import pytest
from substrateinterface import SubstrateInterface

from integritee.attestation import SimDcapProvider
from integritee.cli.context import CliError
from integritee.cli.tee_commands import (
    DEV_SIM_MRENCLAVE,
    DEV_SIM_MRSIGNER,
    RegisteredEnclave,
    explain_teerex_failure,
    format_enclave,
    parse_measurement,
)
from integritee.codec.scale import EnumValue
from integritee.crypto import Keypair, ss58_encode
from integritee.parentchain.tee_types import new_sgx_enclave
from procs import NodeProcess

CLI = str(Path(sys.executable).parent / "integritee-cli")
FIXTURES = Path("/work/shared/fixtures/sgx-dcap")
TEER = 10**12
ENCLAVE_SURI = "//TeeCliEnclave"
MRENCLAVE = bytes(range(32))
URL = "wss://127.0.0.1:2000"
SUCCESS_LINE = re.compile(
    r"\[\+\] (\w+)\. extrinsic hash: 0x[0-9a-f]{64} / status: InBlock\(0x[0-9a-f]{64}\)"
)


def run_cli(
    node: NodeProcess, *args: str, cwd: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "-p", str(node.rpc_port), *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    return result.stdout


def error(result: subprocess.CompletedProcess[str], code: int = 1) -> str:
    assert result.returncode == code, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def success_call(line: str) -> str:
    """The call named by the CLI's `[+] <call>. extrinsic hash: ... / status: InBlock(..)`."""
    match = SUCCESS_LINE.fullmatch(line)
    assert match, line
    return match.group(1)


def ed25519_ss58(suri: str) -> str:
    return Keypair.from_uri(suri, "ed25519").ss58_address()


@pytest.fixture(scope="module")
def substrate(dev_node: NodeProcess) -> Iterator[SubstrateInterface]:
    client = SubstrateInterface(url=dev_node.ws_url)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def collateral_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The sim-dcap collateral as Intel publishes collateral: signed JSON + issuer chain PEM."""
    sim = SimDcapProvider(MRENCLAVE, DEV_SIM_MRSIGNER)
    out = tmp_path_factory.mktemp("collateral")
    files = {
        "tcb_info": (out / "tcb_info.json", sim.tcb_info_document()),
        "tcb_chain": (out / "tcb_info_issuer_chain.pem", sim.tcb_info_collateral()[2]),
        "qe_identity": (out / "qe_identity.json", sim.qe_identity_document()),
        "qe_chain": (out / "qe_identity_issuer_chain.pem", sim.qe_identity_collateral()[2]),
    }
    for path, data in files.values():
        path.write_bytes(data)
    return {name: path for name, (path, _) in files.items()}


@pytest.fixture(scope="module")
def registered(
    dev_node: NodeProcess,
    collateral_files: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Any]:
    """Collateral and one sim-dcap enclave registered through the CLI, with the outputs."""
    cwd = tmp_path_factory.mktemp("cli")
    f = collateral_files
    outputs = {"before": ok(run_cli(dev_node, "list-workers", cwd=cwd))}
    outputs["qe"] = ok(
        run_cli(
            dev_node,
            "register-quoting-enclave",
            str(f["qe_identity"]),
            "--chain-file",
            str(f["qe_chain"]),
            cwd=cwd,
        )
    )
    outputs["tcb"] = ok(
        run_cli(
            dev_node,
            "register-tcb-info",
            str(f["tcb_info"]),
            "--chain-file",
            str(f["tcb_chain"]),
            "--signer",
            "//Bob",
            cwd=cwd,
        )
    )
    enclave = ed25519_ss58(ENCLAVE_SURI)
    ok(run_cli(dev_node, "transfer", "//Alice", enclave, str(10 * TEER), cwd=cwd))
    outputs["enclave"] = ok(
        run_cli(
            dev_node,
            "register-sim-enclave",
            "--signer",
            ENCLAVE_SURI,
            "--url",
            URL,
            "--mrenclave",
            "0x" + MRENCLAVE.hex(),
            cwd=cwd,
        )
    )
    outputs["after"] = ok(run_cli(dev_node, "list-workers", cwd=cwd))
    return outputs


def test_collateral_registration(registered: dict[str, Any], substrate: SubstrateInterface) -> None:
    qe_lines = registered["qe"].splitlines()
    assert success_call(qe_lines[0]) == "register_quoting_enclave"
    sim = SimDcapProvider(MRENCLAVE, DEV_SIM_MRSIGNER)
    qe_mrsigner = bytes.fromhex(sim.qe_identity_body()["mrsigner"])
    assert qe_lines[1] == (
        f"registered quoting enclave with mrsigner 0x{qe_mrsigner.hex()} and isvprodid 1"
    )
    tcb_lines = registered["tcb"].splitlines()
    assert success_call(tcb_lines[0]) == "register_tcb_info"
    assert tcb_lines[1] == f"registered TCB info for FMSPC {sim.fmspc.hex()}"
    stored = substrate.query("Teerex", "SgxTcbInfo", ["0x" + sim.fmspc.hex()]).value
    assert stored["tcb_levels"][0]["tcb_status"] == "UpToDate"
    qe = substrate.query("Teerex", "SgxQuotingEnclaveRegistry").value
    assert qe["mrsigner"] == "0x" + qe_mrsigner.hex()


def test_list_workers_shows_the_sim_enclave(
    registered: dict[str, Any], substrate: SubstrateInterface
) -> None:
    assert registered["before"] == "number of enclaves registered: 0\n"
    enclave = Keypair.from_uri(ENCLAVE_SURI, "ed25519")
    lines = registered["enclave"].splitlines()
    assert success_call(lines[0]) == "register_sgx_enclave"
    assert lines[1:] == [
        f"enclave signer: {enclave.ss58_address()}",
        f"MRENCLAVE: {base58.b58encode(MRENCLAVE).decode()}",
        "TCB status: Ok",
    ]
    stored = substrate.query("Teerex", "SovereignEnclaves", [enclave.ss58_address()]).value["Sgx"]
    assert stored["report_data"]["d"] == "0x" + (enclave.public_key + bytes(32)).hex()
    assert registered["after"].splitlines() == [
        "number of enclaves registered: 1",
        "Enclave",
        f"   signer: {ss58_encode(enclave.public_key, 42)}",
        f"   MRENCLAVE: {base58.b58encode(MRENCLAVE).decode()}",
        f"   RA timestamp: {stored['timestamp']}",
        f"   URL: {URL}",
    ]
    assert stored["timestamp"] > 1_600_000_000_000  # milliseconds of the chain's clock


def test_real_intel_collateral_is_rejected_on_the_dev_chain(
    dev_node: NodeProcess, tmp_path: Path
) -> None:
    tcb = error(
        run_cli(
            dev_node,
            "register-tcb-info",
            str(FIXTURES / "tcb_info.json"),
            "--chain-file",
            str(FIXTURES / "tcb_info_issuer_chain.pem"),
            cwd=tmp_path,
        )
    )
    assert tcb.startswith("Error: register_tcb_info was rejected: Teerex.CertificateChainIsInvalid")
    assert "trusted root" in tcb and re.search(r"extrinsic 0x[0-9a-f]{64} in block", tcb)
    qe = error(
        run_cli(
            dev_node,
            "register-quoting-enclave",
            str(FIXTURES / "qe_identity.json"),
            "--chain-file",
            str(FIXTURES / "qe_identity_issuer_chain.pem"),
            cwd=tmp_path,
        )
    )
    assert qe.startswith(
        "Error: register_quoting_enclave was rejected: Teerex.CertificateChainIsInvalid"
    )


def test_malformed_collateral_files_are_refused_before_sending(
    dev_node: NodeProcess, collateral_files: dict[str, Path], tmp_path: Path
) -> None:
    f = collateral_files
    wrong_kind = error(
        run_cli(
            dev_node,
            "register-tcb-info",
            str(f["qe_identity"]),
            "--chain-file",
            str(f["tcb_chain"]),
            cwd=tmp_path,
        )
    )
    assert wrong_kind == (
        "Error: invalid TCB info document: collateral document lacks 'tcbInfo' or 'signature'"
    )
    not_a_chain = error(
        run_cli(
            dev_node,
            "register-quoting-enclave",
            str(f["qe_identity"]),
            "--chain-file",
            str(f["qe_identity"]),
            cwd=tmp_path,
        )
    )
    assert not_a_chain.startswith(f"Error: invalid certificate chain in {f['qe_identity']}: ")
    broken = tmp_path / "broken.json"
    broken.write_text('{"tcbInfo": {"id": "SGX"}, "signature": "zz"}')
    assert "invalid TCB info document" in error(
        run_cli(
            dev_node,
            "register-tcb-info",
            str(broken),
            "--chain-file",
            str(f["tcb_chain"]),
            cwd=tmp_path,
        )
    )
    missing = run_cli(
        dev_node,
        "register-tcb-info",
        str(tmp_path / "nope.json"),
        "--chain-file",
        str(f["tcb_chain"]),
        cwd=tmp_path,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


def test_register_sim_enclave_needs_a_funded_signer(dev_node: NodeProcess, tmp_path: Path) -> None:
    who = ed25519_ss58("//TeeCliPauper")
    message = error(
        run_cli(dev_node, "register-sim-enclave", "--signer", "//TeeCliPauper", cwd=tmp_path)
    )
    assert message.startswith(f"Error: the enclave account {who} has no funds to pay fees")
    bad = error(
        run_cli(
            dev_node,
            "register-sim-enclave",
            "--signer",
            "//TeeCliPauper",
            "--mrenclave",
            "0x1234",
            cwd=tmp_path,
        )
    )
    assert bad == "Error: invalid MRENCLAVE '0x1234': 2 bytes, expected 32"


def test_debug_sim_enclave_with_its_own_collateral(
    dev_node: NodeProcess,
    registered: dict[str, Any],
    substrate: SubstrateInterface,
    tmp_path: Path,
) -> None:
    suri = "//TeeCliDebugEnclave"
    ok(run_cli(dev_node, "transfer", "//Alice", ed25519_ss58(suri), str(10 * TEER), cwd=tmp_path))
    out = ok(
        run_cli(
            dev_node,
            "register-sim-enclave",
            "--signer",
            suri,
            "--debug",
            "--with-collateral",
            cwd=tmp_path,
        )
    )
    calls = [m.group(1) for m in map(SUCCESS_LINE.fullmatch, out.splitlines()) if m]
    assert calls == ["register_quoting_enclave", "register_tcb_info", "register_sgx_enclave"]
    assert f"MRENCLAVE: {base58.b58encode(DEV_SIM_MRENCLAVE).decode()}" in out.splitlines()
    stored = substrate.query("Teerex", "SovereignEnclaves", [ed25519_ss58(suri)]).value["Sgx"]
    assert stored["build_mode"] == "Debug" and stored["url"] is None
    listing = ok(run_cli(dev_node, "list-workers", cwd=tmp_path)).splitlines()
    assert listing[0] == "number of enclaves registered: 2"
    signers = {line.removeprefix("   signer: ") for line in listing if "signer:" in line}
    assert signers == {ed25519_ss58(suri), ed25519_ss58(ENCLAVE_SURI)}
    assert "   URL: none" in listing


# -- without a node ---------------------------------------------------------------------------


def test_format_enclave_keeps_control_codes_out() -> None:
    enclave = new_sgx_enclave(
        report_data=bytes(64),
        mr_enclave=MRENCLAVE,
        mr_signer=bytes(32),
        timestamp=1_700_000_000_123,
        build_mode="Production",
        status="Invalid",
        attestation_method=EnumValue("Skip", {"proxied": False}),
        url=b"wss://a\x1b[31m\xff:2000",
    )
    lines = format_enclave(RegisteredEnclave(bytes(range(32)), enclave))
    assert lines == [
        "Enclave",
        f"   signer: {ss58_encode(bytes(range(32)), 42)}",
        f"   MRENCLAVE: {base58.b58encode(MRENCLAVE).decode()}",
        "   RA timestamp: 1700000000123",
        "   URL: wss://a\ufffd[31m\ufffd:2000",
    ]


def test_parse_measurement_and_error_hints() -> None:
    assert parse_measurement(base58.b58encode(MRENCLAVE).decode(), "MRENCLAVE") == MRENCLAVE
    assert parse_measurement("0x" + MRENCLAVE.hex(), "MRENCLAVE") == MRENCLAVE
    for bad in ("0xzz", "0OIl", "0x" + "00" * 31, base58.b58encode(bytes(33)).decode()):
        with pytest.raises(CliError, match="invalid MRENCLAVE"):
            parse_measurement(bad, "MRENCLAVE")
    assert explain_teerex_failure("Teerex.MissingTcbInfoForFmspc").endswith(
        "(no TCB info is registered for the platform's FMSPC (run register-tcb-info first))"
    )
    assert explain_teerex_failure("Balances.InsufficientBalance") == "Balances.InsufficientBalance"
