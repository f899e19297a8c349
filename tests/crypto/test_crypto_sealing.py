"""Sealing: simulation key file life cycle, Gramine key derivation, label binding, atomic files."""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.crypto import aead, sealing
from integritee.crypto.sealing import (
    GRAMINE_HKDF_INFO,
    GramineSealing,
    SealedFileMissing,
    SealingError,
    SealingKeyProvider,
    SimulationSealing,
    default_simulation_key_path,
    detect_sealing_provider,
    seal,
    seal_to_file,
    unseal,
    unseal_from_file,
)


class FixedKey:
    """A provider with a given key: lets the blob format be tested without files."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def key(self) -> bytes:
        return self._key


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]


def _hkdf_sha256(ikm: bytes, info: bytes, length: int) -> bytes:
    # RFC 5869 written out with hmac, independent of the `cryptography` HKDF under test.
    prk = hmac.new(b"\x00" * 32, ikm, hashlib.sha256).digest()
    out, block = b"", b""
    for i in range(1, -(-length // 32) + 1):
        block = hmac.new(prk, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
    return out[:length]


# --- simulation key file -------------------------------------------------------------------------


def test_simulation_key_created_once_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "cfg" / "integritee" / "sim_sealing_key"
    first = SimulationSealing(path)
    key = first.key()
    assert len(key) == 32
    assert path.read_bytes() == key
    assert _mode(path) == 0o600
    inode = path.stat().st_ino
    assert SimulationSealing(path).key() == key
    assert path.stat().st_ino == inode  # not rewritten
    assert _leftovers(path.parent) == []


def test_simulation_key_mode_ignores_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        SimulationSealing(tmp_path / "k").key()
    finally:
        os.umask(old)
    assert _mode(tmp_path / "k") == 0o600


def test_simulation_keys_differ_per_file(tmp_path: Path) -> None:
    assert SimulationSealing(tmp_path / "a").key() != SimulationSealing(tmp_path / "b").key()


def test_concurrent_creation_agrees_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "k"
    results: list[bytes] = []
    barrier = threading.Barrier(8)

    def create() -> None:
        barrier.wait()
        results.append(SimulationSealing(path).key())

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert path.read_bytes() == results[0]
    assert _leftovers(tmp_path) == []


def test_simulation_key_too_open_permissions(tmp_path: Path) -> None:
    path = tmp_path / "k"
    SimulationSealing(path).key()
    path.chmod(0o644)
    with pytest.raises(SealingError, match="mode 644.*chmod 600"):
        SimulationSealing(path).key()


@pytest.mark.parametrize("size", [0, 16, 31, 33, 64])
def test_simulation_key_wrong_size(tmp_path: Path, size: int) -> None:
    path = tmp_path / "k"
    path.write_bytes(b"\x01" * size)
    path.chmod(0o600)
    with pytest.raises(SealingError, match="expected 32"):
        SimulationSealing(path).key()
    assert path.read_bytes() == b"\x01" * size  # never replaced behind the user's back


def test_simulation_key_path_is_directory(tmp_path: Path) -> None:
    (tmp_path / "k").mkdir(mode=0o700)
    with pytest.raises(SealingError):
        SimulationSealing(tmp_path / "k").key()


def test_simulation_key_uncreatable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(SealingError, match="cannot (open|create) sealing key file"):
        SimulationSealing(blocker / "k").key()


def test_simulation_key_creation_failure_cleans_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_link(src: object, dst: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sealing.os, "link", failing_link)
    with pytest.raises(SealingError, match="cannot create sealing key file.*Input/output"):
        SimulationSealing(tmp_path / "k").key()
    assert list(tmp_path.iterdir()) == []


def test_simulation_key_without_hard_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def unsupported_link(src: object, dst: object) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(sealing.os, "link", unsupported_link)
    key = SimulationSealing(tmp_path / "k").key()
    assert (tmp_path / "k").read_bytes() == key
    assert _mode(tmp_path / "k") == 0o600
    assert _leftovers(tmp_path) == []


def test_simulation_key_must_be_outside_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(SealingError, match="outside the data dir"):
        SimulationSealing(data / "sealing_key", data_dir=data)
    with pytest.raises(SealingError, match="outside the data dir"):
        SimulationSealing(data / "sub" / ".." / "k", data_dir=data)
    SimulationSealing(tmp_path / "key", data_dir=data).key()


def test_default_simulation_key_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("INTEGRITEE_SEALING_KEY", str(tmp_path / "explicit"))
    assert default_simulation_key_path() == tmp_path / "explicit"
    monkeypatch.delenv("INTEGRITEE_SEALING_KEY")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    assert default_simulation_key_path() == tmp_path / "xdg" / "integritee" / "sim_sealing_key"
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert (
        default_simulation_key_path()
        == tmp_path / "home" / ".config" / "integritee" / "sim_sealing_key"
    )


def test_detect_provider_off_sgx(tmp_path: Path) -> None:
    if Path(sealing.GRAMINE_MRENCLAVE_KEY_PATH).exists():
        pytest.skip("running under Gramine")
    provider = detect_sealing_provider(tmp_path / "k")
    assert isinstance(provider, SimulationSealing)
    assert isinstance(provider, SealingKeyProvider)
    assert len(provider.key()) == 32


# --- Gramine ---------------------------------------------------------------------------------------


def test_gramine_key_is_hkdf_of_platform_key(tmp_path: Path) -> None:
    raw = bytes.fromhex("00112233445566778899aabbccddeeff")
    path = tmp_path / "_sgx_mrenclave"
    path.write_bytes(raw)
    provider = GramineSealing(path)
    assert isinstance(provider, SealingKeyProvider)
    key = provider.key()
    assert len(key) == 32
    assert key == _hkdf_sha256(raw, GRAMINE_HKDF_INFO, 32)
    assert key != raw + raw
    other = tmp_path / "other"
    other.write_bytes(bytes(16))
    assert GramineSealing(other).key() != key


@pytest.mark.parametrize("size", [0, 15, 17, 32])
def test_gramine_key_wrong_size(tmp_path: Path, size: int) -> None:
    path = tmp_path / "_sgx_mrenclave"
    path.write_bytes(b"\x07" * size)
    with pytest.raises(SealingError, match="expected 16"):
        GramineSealing(path).key()


def test_gramine_key_missing(tmp_path: Path) -> None:
    with pytest.raises(SealingError, match="cannot read Gramine sealing key"):
        GramineSealing(tmp_path / "absent").key()


def test_gramine_sealed_data_does_not_open_with_simulation_key(tmp_path: Path) -> None:
    path = tmp_path / "_sgx_mrenclave"
    path.write_bytes(os.urandom(16))
    blob = seal(GramineSealing(path), b"secret", "state-key")
    assert unseal(GramineSealing(path), blob, "state-key") == b"secret"
    with pytest.raises(SealingError):
        unseal(SimulationSealing(tmp_path / "sim"), blob, "state-key")


# --- blobs -----------------------------------------------------------------------------------------


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=2000), st.text(min_size=1, max_size=40))
def test_seal_round_trip(plaintext: bytes, label: str) -> None:
    provider = FixedKey(bytes(range(32)))
    blob = seal(provider, plaintext, label)
    assert blob[0] == 1
    assert len(blob) == 1 + 12 + len(plaintext) + 16
    assert unseal(provider, blob, label) == plaintext


def test_blob_is_aead_with_versioned_label() -> None:
    key = os.urandom(32)
    blob = seal(FixedKey(key), b"abc", "shielding-key")
    assert aead.decrypt(key, blob[1:], b"integritee/sealed/v1/shielding-key") == b"abc"


def test_unseal_with_other_key_fails() -> None:
    blob = seal(FixedKey(os.urandom(32)), b"secret", "state-key")
    with pytest.raises(SealingError, match="wrong sealing key, wrong label or tampered"):
        unseal(FixedKey(os.urandom(32)), blob, "state-key")


def test_unseal_with_other_label_fails() -> None:
    provider = FixedKey(os.urandom(32))
    blob = seal(provider, b"rsa private key", "shielding-key")
    for label in ("state-key", "shielding-ke", "shielding-key ", "Shielding-key"):
        with pytest.raises(SealingError):
            unseal(provider, blob, label)


def test_unseal_tampered_and_malformed() -> None:
    provider = FixedKey(os.urandom(32))
    blob = seal(provider, b"payload", "l")
    for pos in range(len(blob)):
        bad = bytearray(blob)
        bad[pos] ^= 0x04
        with pytest.raises(SealingError):
            unseal(provider, bytes(bad), "l")
    with pytest.raises(SealingError, match="empty"):
        unseal(provider, b"", "l")
    with pytest.raises(SealingError, match="unknown format version 2"):
        unseal(provider, b"\x02" + blob[1:], "l")
    with pytest.raises(SealingError):
        unseal(provider, blob[:20], "l")
    with pytest.raises(SealingError, match="must be bytes"):
        unseal(provider, "00", "l")  # type: ignore[arg-type]


@pytest.mark.parametrize("label", ["", None, b"bytes", "x" * 300, "\udc80"])
def test_bad_labels(label: object) -> None:
    provider = FixedKey(os.urandom(32))
    with pytest.raises(SealingError, match="label"):
        seal(provider, b"x", label)  # type: ignore[arg-type]


def test_bad_provider_key() -> None:
    with pytest.raises(SealingError, match="not 32 bytes"):
        seal(FixedKey(b"short"), b"x", "l")


# --- sealed files ----------------------------------------------------------------------------------


def test_seal_to_file_round_trip_and_overwrite(tmp_path: Path) -> None:
    provider = SimulationSealing(tmp_path / "sim_key")
    data = tmp_path / "data"
    data.mkdir()
    path = data / "shielding_key.bin"
    seal_to_file(provider, path, b"v1", "shielding-key")
    assert _mode(path) == 0o600
    assert unseal_from_file(provider, path, "shielding-key") == b"v1"
    seal_to_file(provider, path, b"version two", "shielding-key")
    assert unseal_from_file(provider, path, "shielding-key") == b"version two"
    assert _leftovers(data) == []
    with pytest.raises(SealingError):
        unseal_from_file(provider, path, "state-key")


def test_unseal_from_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SealedFileMissing, match="does not exist"):
        unseal_from_file(FixedKey(bytes(32)), tmp_path / "absent", "l")


def test_unseal_from_unreadable_path(tmp_path: Path) -> None:
    with pytest.raises(SealingError, match="cannot read sealed file"):
        unseal_from_file(FixedKey(bytes(32)), tmp_path, "l")  # a directory


def test_seal_to_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(SealingError, match="cannot write"):
        seal_to_file(FixedKey(bytes(32)), tmp_path / "no" / "such" / "f", b"x", "l")


def test_failed_write_leaves_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = FixedKey(os.urandom(32))
    path = tmp_path / "state_key.bin"
    seal_to_file(provider, path, b"old", "state-key")
    before = path.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(sealing.os, "fsync", failing_fsync)
    with pytest.raises(SealingError, match="Input/output error"):
        seal_to_file(provider, path, b"new", "state-key")
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert unseal_from_file(provider, path, "state-key") == b"old"
    assert _leftovers(tmp_path) == []


def test_interrupted_write_leaves_no_temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    provider = FixedKey(os.urandom(32))
    path = tmp_path / "f"

    def interrupted_replace(src: object, dst: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(sealing.os, "replace", interrupted_replace)
    with pytest.raises(KeyboardInterrupt):
        seal_to_file(provider, path, b"x", "l")
    monkeypatch.undo()
    assert not path.exists()
    assert list(tmp_path.iterdir()) == []
