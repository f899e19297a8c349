"""Attestation providers: sim-dcap round trips through the real verifier under the stable dev
root, Skip, Gramine's /dev/attestation protocol (temp directory), and the dev PKI's stability
across processes."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from integritee.attestation import (
    DEV_ROOT_CA_PEM,
    CertificateError,
    DevPki,
    ExpiredError,
    GramineDcapProvider,
    ProviderError,
    QuoteFormatError,
    RevokedError,
    SignatureError,
    SimDcapProvider,
    SkipProvider,
    TcbError,
    create_provider,
    dev_root_certificate,
    intel_sgx_root_ca,
    parse_quote,
    split_qe_identity_document,
    split_tcb_info_document,
    verify_qe_identity,
    verify_quote,
    verify_tcb_info,
)
from integritee.attestation.dev_pki import build_root_certificate

NOW = 1_750_000_000
MRENCLAVE = hashlib.sha256(b"test enclave").digest()
MRSIGNER = hashlib.sha256(b"test signer").digest()


def verify_with_collateral(provider: SimDcapProvider, quote: bytes, **kw: object):  # type: ignore[no-untyped-def]
    root = dev_root_certificate()
    qe = verify_qe_identity(*provider.qe_identity_collateral(), root, NOW)
    info = verify_tcb_info(*provider.tcb_info_collateral(), root, NOW)
    args: dict[str, object] = {
        "qe_identity": qe,
        "tcb_info": {info.fmspc: info},
        "trusted_root": root,
        "now": NOW,
    }
    args.update(kw)
    return verify_quote(quote, **args)  # type: ignore[arg-type]


def test_dev_root_is_pinned_and_reproducible() -> None:
    pinned = dev_root_certificate()
    assert build_root_certificate() == pinned
    assert pinned.public_bytes(Encoding.PEM) == DEV_ROOT_CA_PEM
    assert (
        hashlib.sha256(pinned.public_bytes(Encoding.DER)).hexdigest()
        == "f9ac5052ccb3f930f7232f3a9524f65874d8f795a6fd9a22fb5709a44945cc04"
    )
    assert DevPki().root_cert == pinned
    # The key is sha256(b"integritee dev sgx root ca") reduced into [1, n-1].
    n = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
    scalar = int.from_bytes(hashlib.sha256(b"integritee dev sgx root ca").digest(), "big")
    key = ec.derive_private_key(scalar % (n - 1) + 1, ec.SECP256R1())
    assert pinned.public_key() == key.public_key()
    assert pinned.subject == pinned.issuer
    assert SimDcapProvider(MRENCLAVE, MRSIGNER).dev_root_pem() == DEV_ROOT_CA_PEM


def test_dev_pki_is_identical_in_another_process() -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER)
    code = (
        "import hashlib,sys;"
        "from integritee.attestation import SimDcapProvider;"
        f"p=SimDcapProvider({MRENCLAVE!r},{MRSIGNER!r});"
        "h=hashlib.sha256();"
        "[h.update(x) for x in (p.dev_root_pem(),*p.qe_identity_collateral(),"
        "*p.tcb_info_collateral(),p.quote(b'x'))];"
        "sys.stdout.write(h.hexdigest())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    ).stdout
    local = hashlib.sha256()
    for part in (
        provider.dev_root_pem(),
        *provider.qe_identity_collateral(),
        *provider.tcb_info_collateral(),
        provider.quote(b"x"),
    ):
        local.update(part)
    assert out == local.hexdigest()


@pytest.mark.parametrize("debug", [False, True])
def test_sim_dcap_round_trip(debug: bool) -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER, debug=debug, isv_prod_id=7, isv_svn=3)
    report_data = hashlib.sha256(b"enclave signing key").digest() + b"\x5a" * 32
    quote = provider.quote(report_data)
    parsed = parse_quote(quote)
    assert parsed.report_body.report_data == report_data
    v = verify_with_collateral(provider, quote)
    assert v.mrenclave == MRENCLAVE and v.mrsigner == MRSIGNER
    assert v.report_data == report_data
    assert (v.isv_prod_id, v.isv_svn) == (7, 3)
    assert v.debug is debug
    assert v.build_mode == ("Debug" if debug else "Production")
    assert v.fmspc == provider.fmspc
    assert v.tcb_status == "UpToDate" and v.sgx_status == "Ok"


def test_short_report_data_is_zero_padded_and_long_rejected() -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER)
    v = verify_with_collateral(provider, provider.quote(b"\x01" * 32))
    assert v.report_data == b"\x01" * 32 + bytes(32)
    with pytest.raises(ProviderError, match="exceeds 64"):
        provider.quote(bytes(65))


def test_quote_from_another_dev_root_is_rejected() -> None:
    other = SimDcapProvider(MRENCLAVE, MRSIGNER, pki=DevPki(b"another dev root"))
    default = SimDcapProvider(MRENCLAVE, MRSIGNER)
    with pytest.raises(CertificateError, match="not the trusted root"):
        verify_with_collateral(default, other.quote(b"x"))
    # Its collateral does not verify under the default dev root either.
    with pytest.raises(CertificateError):
        verify_tcb_info(*other.tcb_info_collateral(), dev_root_certificate(), NOW)
    # ... but everything verifies under its own root.
    root = other.trusted_root()
    qe, info = other.verified_collateral(NOW)
    assert (
        verify_quote(
            other.quote(b"x"), qe_identity=qe, tcb_info=info, trusted_root=root, now=NOW
        ).mrenclave
        == MRENCLAVE
    )


def test_sim_quotes_do_not_verify_under_intel_root_and_vice_versa() -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER)
    with pytest.raises(CertificateError):
        verify_with_collateral(provider, provider.quote(b"x"), trusted_root=intel_sgx_root_ca())


def test_tampered_sim_quote_is_rejected() -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER)
    quote = provider.quote(b"x")
    for pos in (60, 48 + 64, 48 + 320, 500, 700, 1000, 1020):
        tampered = quote[:pos] + bytes([quote[pos] ^ 0x04]) + quote[pos + 1 :]
        with pytest.raises(SignatureError):
            verify_with_collateral(provider, tampered)


@pytest.mark.parametrize(
    ("tcb_status", "sgx"),
    [
        ("SWHardeningNeeded", "Ok"),
        ("ConfigurationNeeded", "ConfigurationNeeded"),
        ("OutOfDate", "GroupOutOfDate"),
        ("OutOfDateConfigurationNeeded", "GroupOutOfDate"),
    ],
)
def test_sim_platform_status_propagates(tcb_status: str, sgx: str) -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER, tcb_status=tcb_status)
    v = verify_with_collateral(provider, provider.quote(b"x"))
    assert (v.tcb_status, v.sgx_status) == (tcb_status, sgx)


def test_sim_revoked_platform_is_rejected() -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER, tcb_status="Revoked")
    with pytest.raises(TcbError, match="revoked"):
        verify_with_collateral(provider, provider.quote(b"x"))


def test_sim_platform_below_the_collateral_is_out_of_date() -> None:
    # Collateral of an up-to-date platform; this platform's PCESVN is one lower.
    current = SimDcapProvider(MRENCLAVE, MRSIGNER)
    older = SimDcapProvider(MRENCLAVE, MRSIGNER, pcesvn=current.pcesvn - 1, platform_seed=b"old")
    v = verify_with_collateral(current, older.quote(b"x"))
    assert v.platform_tcb_status == "OutOfDate"


def test_sim_pck_revocation_via_crl() -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER)
    quote = provider.quote(b"x")
    pki = provider.pki
    fine = pki.issue_crl(revoked_serials=[12345])
    assert verify_with_collateral(provider, quote, crls=[fine, pki.issue_crl(issuer="root")])
    revoked = pki.issue_crl(revoked_serials=[provider.pck_certificate.serial_number])
    with pytest.raises(RevokedError):
        verify_with_collateral(provider, quote, crls=[revoked])
    stale = pki.issue_crl(this_update=1600000000, next_update=1600000100)
    with pytest.raises(ExpiredError, match="CRL"):
        verify_with_collateral(provider, quote, crls=[stale])


def test_sim_collateral_documents_split_into_the_registration_triples() -> None:
    provider = SimDcapProvider(MRENCLAVE, MRSIGNER)
    body, sig, _chain = provider.qe_identity_collateral()
    assert split_qe_identity_document(provider.qe_identity_document()) == (body, sig)
    body, sig, _chain = provider.tcb_info_collateral()
    assert split_tcb_info_document(provider.tcb_info_document()) == (body, sig)


def test_skip_provider() -> None:
    provider = SkipProvider(MRENCLAVE)
    assert (provider.name, provider.method) == ("skip", "Skip")
    assert provider.quote(b"\x01" * 32) == MRENCLAVE
    with pytest.raises(ValueError):
        SkipProvider(b"short")


def test_create_provider() -> None:
    assert isinstance(create_provider("skip", mrenclave=MRENCLAVE), SkipProvider)
    sim = create_provider("sim-dcap", mrenclave=MRENCLAVE, mrsigner=MRSIGNER, debug=True)
    assert isinstance(sim, SimDcapProvider) and sim.method == "Dcap" and sim.debug
    assert isinstance(create_provider("gramine-dcap", mrenclave=MRENCLAVE), GramineDcapProvider)
    with pytest.raises(ValueError, match="unknown"):
        create_provider("ias", mrenclave=MRENCLAVE)


def _gramine_dir(tmp_path: Path, quote: bytes, kind: bytes = b"dcap") -> Path:
    directory = tmp_path / "attestation"
    directory.mkdir()
    (directory / "attestation_type").write_bytes(kind)
    (directory / "quote").write_bytes(quote)
    return directory


def test_gramine_provider_with_a_temp_directory(tmp_path: Path) -> None:
    sim = SimDcapProvider(MRENCLAVE, MRSIGNER)
    report_data = b"\x42" * 32
    directory = _gramine_dir(tmp_path, sim.quote(report_data))
    provider = GramineDcapProvider(directory)
    assert (provider.name, provider.method) == ("gramine-dcap", "Dcap")
    quote = provider.quote(report_data)
    assert (directory / "user_report_data").read_bytes() == report_data + bytes(32)
    v = verify_with_collateral(sim, quote)
    assert v.report_data == report_data + bytes(32)


def test_gramine_provider_failures(tmp_path: Path) -> None:
    sim = SimDcapProvider(MRENCLAVE, MRSIGNER)
    stale = _gramine_dir(tmp_path, sim.quote(b"other report data"))
    with pytest.raises(ProviderError, match="different report data"):
        GramineDcapProvider(stale).quote(b"mine")
    with pytest.raises(ProviderError, match="cannot use"):
        GramineDcapProvider(tmp_path / "missing").quote(b"x")
    epid = tmp_path / "epid"
    epid.mkdir()
    (epid / "attestation_type").write_bytes(b"epid")
    with pytest.raises(ProviderError, match="'epid'"):
        GramineDcapProvider(epid).quote(b"x")
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "quote").write_bytes(b"\x03\x00garbage")
    with pytest.raises(QuoteFormatError):
        GramineDcapProvider(garbage).quote(b"x")


def test_sim_provider_argument_validation() -> None:
    with pytest.raises(ValueError, match="mrenclave"):
        SimDcapProvider(b"x", MRSIGNER)
    with pytest.raises(ValueError, match="TCB status"):
        SimDcapProvider(MRENCLAVE, MRSIGNER, tcb_status="Fine")
    with pytest.raises(ValueError, match="tcb_components"):
        SimDcapProvider(MRENCLAVE, MRSIGNER, tcb_components=[1, 2])
