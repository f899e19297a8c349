"""The parentchain TEE commands of integritee-cli: the enclave registry and its SGX collateral.

- `list-workers`: the enclaves in `Teerex.SovereignEnclaves`, printed exactly as the original
  CLI prints them (`number of enclaves registered: N`, then one `Enclave` block each).
- `register-tcb-info` / `register-quoting-enclave`: submit an Intel-signed collateral document
  (`{"tcbInfo": {...}, "signature": "<hex>"}` / `{"enclaveIdentity": ..., "signature": ...}`)
  with its issuer certificate chain (PEM file) to Teerex. The chain verifies them against its
  trusted root and its own clock; a rejection is reported with the dispatch error's name and what
  it means.
- `register-sim-enclave`: a dev tool. It registers an enclave with a DCAP quote from the sim-dcap
  provider (a software quoting enclave under the dev PKI whose root a `--dev` chain trusts), with
  report_data[0..32] = the signer's ed25519 key, so Teerex's full DCAP verification can be
  exercised on a dev chain without SGX hardware. Real chains trust Intel's root and reject it.

Documents and chains are checked locally for their form before anything is sent (a clear message
for a wrong file beats a dispatch error); their signatures and validity are the chain's to judge.
`register(group)` adds the commands to a click group.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import base58
import click

from integritee import attestation
from integritee.cli.accounts import resolve_signer, ss58
from integritee.cli.chain_client import (
    ChainClient,
    ChainEvent,
    ExtrinsicResult,
    describe_dispatch_error,
)
from integritee.cli.context import KEYSTORE_PATH, CliConfig, CliError, pass_config
from integritee.cli.keystore import LocalKeystore
from integritee.codec.scale import EnumValue, ScaleDecodeError
from integritee.crypto import Keypair, blake2_128, twox128
from integritee.parentchain.tee_types import MultiEnclave, fingerprint, instance_url

TEEREX = "Teerex"
KEYS_PAGE_SIZE = 1000
VALUES_BATCH_SIZE = 100
MAX_CHAIN_FILE_SIZE = 64 * 1024
MAX_DOCUMENT_SIZE = 256 * 1024
_STATUS_NAMES = {"inBlock": "InBlock", "in_block": "InBlock", "finalized": "Finalized"}
_ACCOUNT_LEN = 32
_HASH_LEN = 16

# Fixed defaults of register-sim-enclave, so that repeated dev runs name the same enclave.
DEV_SIM_MRENCLAVE = hashlib.sha256(b"integritee sim-dcap dev enclave").digest()
DEV_SIM_MRSIGNER = hashlib.sha256(b"integritee sim-dcap dev enclave signer").digest()

# What a Teerex rejection means for the user submitting collateral or a quote.
TEEREX_ERROR_HINTS: dict[str, str] = {
    "CertificateChainIsInvalid": (
        "the certificate chain does not verify up to the chain's trusted root CA, or one of its "
        "certificates is not valid at the chain's time"
    ),
    "CollateralIsInvalid": (
        "the collateral is not valid at the chain's time (expired or not yet issued)"
    ),
    "TcbInfoIsInvalid": "the TCB info document is malformed or its signature does not verify",
    "EnclaveIdentitySignatureIsInvalid": "the QE identity signature does not verify",
    "EnclaveIdentityDecodingError": "the QE identity document is malformed",
    "QeHasRejectedEnclave": (
        "the quote does not match the registered quoting enclave identity (or none is "
        "registered: run register-quoting-enclave first)"
    ),
    "MissingTcbInfoForFmspc": (
        "no TCB info is registered for the platform's FMSPC (run register-tcb-info first)"
    ),
    "TcbInfoIsOutdated": "the platform's TCB is not covered by the registered TCB info",
    "SenderIsNotAttestedEnclave": "report_data[0..32] of the quote is not the sender's key",
    "SgxModeIsNotAllowed": "debug-mode enclaves are not allowed on this chain",
    "SkippingAttestationIsNotAllowed": "this chain does not allow registration without attestation",
    "RaProofIsTooLong": "the attestation proof exceeds 5000 bytes",
    "EnclaveUrlIsTooLong": "the worker URL exceeds 256 bytes",
    "DcapQuoteDecodingError": "the quote is not a well-formed DCAP v3 quote",
    "IsvEnclaveReportSignatureIsInvalid": "the quote's signatures do not verify",
}


# -- the enclave registry -----------------------------------------------------------------------


@dataclass(frozen=True)
class RegisteredEnclave:
    """One entry of `Teerex.SovereignEnclaves`: the registering account and its enclave."""

    signer: bytes
    enclave: EnumValue

    @property
    def mrenclave(self) -> bytes:
        return fingerprint(self.enclave)

    @property
    def timestamp(self) -> int:
        return int(self.enclave.value["timestamp"])

    @property
    def url(self) -> bytes | None:
        return instance_url(self.enclave)


def _storage_prefix(pallet: str, item: str) -> bytes:
    return twox128(pallet.encode()) + twox128(item.encode())


def _account_of_key(key: bytes, prefix: bytes) -> bytes:
    """The AccountId of a Blake2_128Concat map key, checked against its hash."""
    rest = key[len(prefix) :]
    if not key.startswith(prefix) or len(rest) != _HASH_LEN + _ACCOUNT_LEN:
        raise CliError(f"node returned a malformed SovereignEnclaves key 0x{key.hex()}")
    account = rest[_HASH_LEN:]
    if blake2_128(account) != rest[:_HASH_LEN]:
        raise CliError(f"node returned a SovereignEnclaves key with a wrong hash 0x{key.hex()}")
    return account


def _hex_bytes(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise CliError(f"node returned a malformed {what}: {value!r:.100}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise CliError(f"node returned a malformed {what}: {value!r:.100}") from None


def sovereign_enclaves(
    chain: ChainClient, block_hash: str | None = None
) -> list[RegisteredEnclave]:
    """Every entry of `Teerex.SovereignEnclaves` at one block (the best one by default), in
    storage key order, decoded with the project's own `MultiEnclave` codec."""
    if block_hash is None:
        block_hash = chain.rpc("chain_getBlockHash")
    prefix = _storage_prefix(TEEREX, "SovereignEnclaves")
    keys: list[str] = []
    start: str | None = None
    while True:
        page = chain.rpc(
            "state_getKeysPaged", ["0x" + prefix.hex(), KEYS_PAGE_SIZE, start, block_hash]
        )
        if not isinstance(page, list):
            raise CliError(f"node returned a malformed key page: {page!r:.100}")
        keys.extend(page)
        if len(page) < KEYS_PAGE_SIZE:
            break
        start = page[-1]
    values: dict[str, str] = {}
    for i in range(0, len(keys), VALUES_BATCH_SIZE):
        batch = keys[i : i + VALUES_BATCH_SIZE]
        reply = chain.rpc("state_queryStorageAt", [batch, block_hash])
        try:
            for change_set in reply:
                for key, value in change_set["changes"]:
                    if value is not None:
                        values[key] = value
        except (TypeError, KeyError, ValueError) as e:
            raise CliError(f"node returned a malformed storage reply: {e!r}") from None
    out = []
    for key in keys:
        if key not in values:  # listed but without a value: nothing to show
            continue
        signer = _account_of_key(_hex_bytes(key, "storage key"), prefix)
        out.append(_decode_enclave(signer, _hex_bytes(values[key], "enclave")))
    return out


def _decode_enclave(signer: bytes, raw: bytes) -> RegisteredEnclave:
    try:
        enclave = MultiEnclave.decode(raw)
        fingerprint(enclave)  # raises for enclave kinds other than Sgx
    except (ScaleDecodeError, ValueError) as e:
        raise CliError(f"cannot decode the enclave of {ss58(signer)}: {e}") from None
    return RegisteredEnclave(signer, enclave)


def _printable(data: bytes) -> str:
    # The URL is whatever the registering account sent: keep terminal control codes out.
    text = data.decode("utf-8", "replace")
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def format_enclave(entry: RegisteredEnclave) -> list[str]:
    """The original's lines for one enclave (its RA timestamp is the raw u64 of milliseconds)."""
    url = entry.url
    return [
        "Enclave",
        f"   signer: {ss58(entry.signer)}",
        f"   MRENCLAVE: {base58.b58encode(entry.mrenclave).decode()}",
        f"   RA timestamp: {entry.timestamp}",
        f"   URL: {'none' if url is None else _printable(url)}",
    ]


# -- submitting to Teerex -----------------------------------------------------------------------


def _connect(config: CliConfig) -> ChainClient:
    return ChainClient.connect(config.node_endpoint)


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def explain_teerex_failure(reason: str) -> str:
    """`Teerex.X` followed by what X means, when known."""
    pallet, _, name = reason.partition(".")
    hint = TEEREX_ERROR_HINTS.get(name) if pallet == TEEREX else None
    return f"{reason} ({hint})" if hint else reason


def submit_teerex(
    chain: ChainClient, function: str, params: dict[str, Any], signer: Keypair
) -> ExtrinsicResult:
    """Sign and submit `Teerex.<function>`, wait until InBlock, print the original's success
    line; a failed dispatch raises `CliError` naming the error and its meaning."""
    call = chain.compose_call(TEEREX, function, params)
    result = chain.submit_call(call, signer, check_success=False)
    if not result.success:
        failed = next(e for e in result.events if e.qualified_name == "System.ExtrinsicFailed")
        attrs = failed.attributes if isinstance(failed.attributes, dict) else {}
        reason = describe_dispatch_error(attrs.get("dispatch_error"), chain.substrate.metadata)
        raise CliError(
            f"{function} was rejected: {explain_teerex_failure(reason)} "
            f"[extrinsic {result.extrinsic_hash} in block {result.block_hash}]"
        )
    click.echo(
        f"[+] {function}. extrinsic hash: {result.extrinsic_hash} / "
        f"status: {_STATUS_NAMES.get(result.status, result.status)}({result.block_hash})"
    )
    return result


def _event(result: ExtrinsicResult, name: str) -> ChainEvent | None:
    return next((e for e in result.events if e.qualified_name == f"{TEEREX}.{name}"), None)


def _attr(event: ChainEvent | None, key: str) -> Any:
    attrs = event.attributes if event is not None else None
    return attrs.get(key) if isinstance(attrs, dict) else None


def _read_file(path: Path, limit: int, what: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as e:
        raise CliError(f"cannot read the {what} {path}: {e.strerror or e}") from None
    if len(data) > limit:
        raise CliError(f"the {what} {path} exceeds {limit} bytes")
    return data


def _read_chain(path: Path) -> bytes:
    pem = _read_file(path, MAX_CHAIN_FILE_SIZE, "certificate chain file")
    try:
        attestation.load_pem_chain(pem)
    except attestation.AttestationError as e:
        raise CliError(f"invalid certificate chain in {path}: {e}") from None
    return pem


def _signer(text: str, crypto: str = "sr25519") -> Keypair:
    return resolve_signer(text, LocalKeystore.open(KEYSTORE_PATH), crypto)


def register_tcb_info_document(
    chain: ChainClient, document: bytes, chain_pem: bytes, signer: Keypair
) -> ExtrinsicResult:
    """Teerex.register_tcb_info with the exact signed body of an Intel TCB info document."""
    try:
        body, signature = attestation.split_tcb_info_document(document)
        attestation.parse_tcb_info(body)
    except attestation.AttestationError as e:
        raise CliError(f"invalid TCB info document: {e}") from None
    params = {"tcb_info": _hex(body), "signature": _hex(signature)}
    result = submit_teerex(
        chain, "register_tcb_info", {**params, "certificate_chain": _hex(chain_pem)}, signer
    )
    fmspc = _attr(_event(result, "SgxTcbInfoRegistered"), "fmspc")
    click.echo(f"registered TCB info for FMSPC {str(fmspc).removeprefix('0x')}")
    return result


def register_qe_identity_document(
    chain: ChainClient, document: bytes, chain_pem: bytes, signer: Keypair
) -> ExtrinsicResult:
    """Teerex.register_quoting_enclave with the exact signed body of an Intel QE identity."""
    try:
        body, signature = attestation.split_qe_identity_document(document)
        attestation.parse_qe_identity(body)
    except attestation.AttestationError as e:
        raise CliError(f"invalid QE identity document: {e}") from None
    params = {"enclave_identity": _hex(body), "signature": _hex(signature)}
    result = submit_teerex(
        chain, "register_quoting_enclave", {**params, "certificate_chain": _hex(chain_pem)}, signer
    )
    qe = _attr(_event(result, "SgxQuotingEnclaveRegistered"), "quoting_enclave")
    if isinstance(qe, dict):
        click.echo(
            f"registered quoting enclave with mrsigner {str(qe.get('mrsigner'))} and "
            f"isvprodid {qe.get('isvprodid')}"
        )
    return result


def parse_measurement(text: str, what: str) -> bytes:
    """A 32-byte MRENCLAVE/MRSIGNER given as base58 (the original's form) or 0x hex."""
    value = text.strip()
    try:
        raw = bytes.fromhex(value[2:]) if value.startswith("0x") else base58.b58decode(value)
    except ValueError:
        raise CliError(f"invalid {what} {value!r:.80}: expected base58 or 0x hex") from None
    if len(raw) != 32:
        raise CliError(f"invalid {what} {value!r:.80}: {len(raw)} bytes, expected 32")
    return raw


# -- commands -----------------------------------------------------------------------------------


@click.command("list-workers")
@pass_config
def list_workers(config: CliConfig) -> None:
    """Query the enclave registry (Teerex) and list all workers."""
    with _connect(config) as chain:
        enclaves = sovereign_enclaves(chain)
    click.echo(f"number of enclaves registered: {len(enclaves)}")
    for entry in enclaves:
        for line in format_enclave(entry):
            click.echo(line)


_DOCUMENT = click.Path(exists=True, dir_okay=False, path_type=Path)
_SIGNER_HELP = "Account paying for the extrinsic (//Name, 0x seed, keystore ss58, mnemonic)."


@click.command("register-tcb-info")
@click.argument("tcb_info_file", type=_DOCUMENT)
@click.option(
    "--chain-file", type=_DOCUMENT, required=True,
    help="PEM issuer chain of the TCB signing key (Intel's TCB-Info-Issuer-Chain).",
)  # fmt: skip
@click.option("--signer", default="//Alice", show_default=True, help=_SIGNER_HELP)
@pass_config
def register_tcb_info(
    config: CliConfig, tcb_info_file: Path, chain_file: Path, signer: str
) -> None:
    """Register Intel's TCB info for one FMSPC (`{"tcbInfo": {...}, "signature": "..."}`)."""
    document = _read_file(tcb_info_file, MAX_DOCUMENT_SIZE, "TCB info file")
    chain_pem = _read_chain(chain_file)
    pair = _signer(signer)
    with _connect(config) as chain:
        register_tcb_info_document(chain, document, chain_pem, pair)


@click.command("register-quoting-enclave")
@click.argument("qe_identity_file", type=_DOCUMENT)
@click.option(
    "--chain-file", type=_DOCUMENT, required=True,
    help="PEM issuer chain of the QE identity signing key (SGX-Enclave-Identity-Issuer-Chain).",
)  # fmt: skip
@click.option("--signer", default="//Alice", show_default=True, help=_SIGNER_HELP)
@pass_config
def register_quoting_enclave(
    config: CliConfig, qe_identity_file: Path, chain_file: Path, signer: str
) -> None:
    """Register Intel's quoting enclave identity (`{"enclaveIdentity": ..., "signature": ...}`)."""
    document = _read_file(qe_identity_file, MAX_DOCUMENT_SIZE, "QE identity file")
    chain_pem = _read_chain(chain_file)
    pair = _signer(signer)
    with _connect(config) as chain:
        register_qe_identity_document(chain, document, chain_pem, pair)


@click.command("register-sim-enclave")
@click.option(
    "--signer", required=True,
    help="The enclave's ed25519 key (//Name, 0x seed, keystore ss58, mnemonic); it signs and "
    "pays, so fund it first.",
)  # fmt: skip
@click.option("--url", default=None, help="Worker URL to register (e.g. wss://127.0.0.1:2000).")
@click.option("--debug", is_flag=True, help="Quote a debug-mode enclave.")
@click.option(
    "--mrenclave", default=None, help="MRENCLAVE (base58 or 0x hex); a fixed dev value if unset."
)
@click.option("--mrsigner", default=None, help="MRSIGNER (base58 or 0x hex).")
@click.option(
    "--with-collateral", is_flag=True,
    help="First register the sim-dcap QE identity and TCB info (needed once per chain).",
)  # fmt: skip
@pass_config
def register_sim_enclave(
    config: CliConfig,
    signer: str,
    url: str | None,
    debug: bool,
    mrenclave: str | None,
    mrsigner: str | None,
    with_collateral: bool,
) -> None:
    """DEV TOOL: register an enclave with a sim-dcap DCAP quote (full verification by Teerex).

    The quote comes from a software quoting enclave under the dev PKI, whose root only dev chains
    trust; its report_data[0..32] is the signer's ed25519 public key, as a real enclave's.
    """
    mr_enclave = parse_measurement(mrenclave, "MRENCLAVE") if mrenclave else DEV_SIM_MRENCLAVE
    mr_signer = parse_measurement(mrsigner, "MRSIGNER") if mrsigner else DEV_SIM_MRSIGNER
    if url is not None and len(url.encode()) > 256:
        raise CliError("the worker URL exceeds 256 bytes")
    pair = _signer(signer, "ed25519")
    sim = attestation.SimDcapProvider(mr_enclave, mr_signer, debug=debug)
    with _connect(config) as chain:
        if chain.free_balance(pair.public_key) == 0:
            who = ss58(pair.public_key)
            raise CliError(
                f"the enclave account {who} has no funds to pay fees: fund it first "
                f"(e.g. integritee-cli transfer //Alice {who} 1000000000000)"
            )
        if with_collateral:
            qe_chain = sim.qe_identity_collateral()[2]
            register_qe_identity_document(chain, sim.qe_identity_document(), qe_chain, pair)
            tcb_chain = sim.tcb_info_collateral()[2]
            register_tcb_info_document(chain, sim.tcb_info_document(), tcb_chain, pair)
        params = {
            "proof": _hex(sim.quote(pair.public_key)),
            "worker_url": None if url is None else _hex(url.encode()),
            "attestation_method": {"Dcap": {"proxied": False}},
        }
        result = submit_teerex(chain, "register_sgx_enclave", params, pair)
    status = _attr(_event(result, "AddedSgxEnclave"), "tcb_status")
    click.echo(f"enclave signer: {ss58(pair.public_key)}")
    click.echo(f"MRENCLAVE: {base58.b58encode(mr_enclave).decode()}")
    click.echo(f"TCB status: {status}")


COMMANDS: tuple[click.Command, ...] = (
    list_workers,
    register_tcb_info,
    register_quoting_enclave,
    register_sim_enclave,
)


def register(group: click.Group) -> None:
    for command in COMMANDS:
        group.add_command(command)
