"""Sealing: encrypting enclave secrets at rest under a platform sealing key.

Owns the sealing key providers, the sealed-blob format and atomic sealed files.

Providers (`SealingKeyProvider.key() -> 32 bytes`):
- `SimulationSealing(path)`: 32 random bytes in a key file that lives OUTSIDE the data dir (a
  copied or leaked data dir then carries no key). Created once, atomically (written to a temp
  file, fsynced, hard-linked into place so that a concurrent creator's key is never overwritten),
  mode 0600; refused later if its permissions are opened to group/others or its size is wrong.
  Default location: `default_simulation_key_path()` = `$INTEGRITEE_SEALING_KEY`, else
  `$XDG_CONFIG_HOME/integritee/sim_sealing_key`, else `~/.config/integritee/sim_sealing_key`.
- `GramineSealing(path="/dev/attestation/keys/_sgx_mrenclave")`: Gramine exposes the SGX
  MRENCLAVE-bound sealing key there as 16 raw bytes (EGETKEY output). We never use it directly:
  the AES-256 key is HKDF-SHA256(ikm = those 16 bytes, salt = none, info =
  b"integritee/sealing-key/v1", length = 32). The derivation widens the key to AES-256 and keeps
  our use of it separate from any other use of the same platform key (Gramine warns against
  sharing one key between encrypted mounts and application crypto).

Sealed blob: `version (1 byte, = 1) ++ aead.encrypt(key, plaintext, aad)` with
`aad = b"integritee/sealed/v1/" ++ utf8(label)`. The label names what is sealed ("shielding-key",
"state-key", ...): a blob sealed under one label does not unseal under another, so a sealed
shielding key cannot be fed back as a state key. The version byte is inside the aad too.

Sealed files are written atomically: temp file in the same directory, fsync, rename over the
target, fsync the directory. A crash leaves either the old or the new file, never a partial one;
the temp file is removed on failure.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from integritee.crypto import aead
from integritee.crypto.hashing import BytesLike

SEALING_KEY_LEN = 32
GRAMINE_KEY_LEN = 16
GRAMINE_MRENCLAVE_KEY_PATH = "/dev/attestation/keys/_sgx_mrenclave"
GRAMINE_HKDF_INFO = b"integritee/sealing-key/v1"
SEAL_FORMAT_VERSION = 1
_AAD_PREFIX = b"integritee/sealed/v1/"
_MAX_LABEL_BYTES = 256
SIM_KEY_ENV = "INTEGRITEE_SEALING_KEY"


class SealingError(Exception):
    """A sealing key that cannot be obtained, or a sealed blob/file that cannot be unsealed."""


class SealedFileMissing(SealingError):
    """The sealed file does not exist (callers typically create the secret then)."""


@runtime_checkable
class SealingKeyProvider(Protocol):
    def key(self) -> bytes:
        """The 32-byte AES-256 sealing key of this platform."""
        ...


def default_simulation_key_path() -> Path:
    """`$INTEGRITEE_SEALING_KEY`, else `$XDG_CONFIG_HOME` or `~/.config` + `integritee/sim_sealing_key`."""
    env = os.environ.get(SIM_KEY_ENV)
    if env:
        return Path(env).expanduser()
    config = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(config).expanduser() / "integritee" / "sim_sealing_key"


def _fsync_dir(directory: Path) -> None:
    # Makes a rename/link durable; some filesystems refuse to open or fsync directories.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


def _write_fd(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


class SimulationSealing:
    """Sealing key from a local key file (no SGX): as safe as the file's permissions."""

    def __init__(self, path: Path | str, *, data_dir: Path | str | None = None) -> None:
        self.path = Path(path).expanduser()
        if data_dir is not None:
            key_abs = self.path.resolve()
            data_abs = Path(data_dir).expanduser().resolve()
            if key_abs == data_abs or data_abs in key_abs.parents:
                raise SealingError(
                    f"simulation sealing key {self.path} must live outside the data dir {data_dir}"
                )
        self._key: bytes | None = None

    def key(self) -> bytes:
        if self._key is None:
            self._key = self._load_or_create()
        return self._key

    def _load_or_create(self) -> bytes:
        try:
            return self._read()
        except FileNotFoundError:
            pass
        try:
            self._create()
        except OSError as exc:
            raise SealingError(f"cannot create sealing key file {self.path}: {exc}") from exc
        try:
            return self._read()
        except FileNotFoundError as exc:
            raise SealingError(f"sealing key file {self.path} vanished after creation") from exc

    def _create(self) -> None:
        directory = self.path.parent
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = _temp_path(self.path)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            try:
                os.fchmod(fd, 0o600)  # exact mode regardless of the umask
                _write_fd(fd, secrets.token_bytes(SEALING_KEY_LEN))
            finally:
                os.close(fd)
            try:
                # link, not rename: never replaces a key another process created meanwhile.
                os.link(tmp, self.path)
            except FileExistsError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EXDEV):
                    raise
                self._create_without_link()
            _fsync_dir(directory)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    def _create_without_link(self) -> None:
        # Filesystems without hard links: exclusive create in place. A crash mid-write leaves a
        # short file, which `_read` reports precisely instead of using.
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        try:
            os.fchmod(fd, 0o600)
            _write_fd(fd, secrets.token_bytes(SEALING_KEY_LEN))
        finally:
            os.close(fd)

    def _read(self) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise SealingError(f"cannot open sealing key file {self.path}: {exc}") from exc
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise SealingError(f"sealing key {self.path} is not a regular file")
            if st.st_mode & 0o077:
                raise SealingError(
                    f"sealing key file {self.path} has mode {stat.S_IMODE(st.st_mode):o}: "
                    "group/others must have no access (chmod 600)"
                )
            data = os.read(fd, SEALING_KEY_LEN + 1)
        except OSError as exc:
            raise SealingError(f"cannot read sealing key file {self.path}: {exc}") from exc
        finally:
            os.close(fd)
        if len(data) != SEALING_KEY_LEN:
            raise SealingError(
                f"sealing key file {self.path} holds {len(data)}"
                f"{'+' if len(data) > SEALING_KEY_LEN else ''} bytes, expected {SEALING_KEY_LEN}"
            )
        return data

    def __repr__(self) -> str:
        return f"SimulationSealing({str(self.path)!r})"


class GramineSealing:
    """Sealing key derived from Gramine's MRENCLAVE-bound SGX sealing key."""

    def __init__(self, path: Path | str = GRAMINE_MRENCLAVE_KEY_PATH) -> None:
        self.path = Path(path)
        self._key: bytes | None = None

    def key(self) -> bytes:
        if self._key is None:
            try:
                with open(self.path, "rb") as f:
                    raw = f.read(GRAMINE_KEY_LEN + 1)
            except OSError as exc:
                raise SealingError(f"cannot read Gramine sealing key {self.path}: {exc}") from exc
            if len(raw) != GRAMINE_KEY_LEN:
                raise SealingError(
                    f"Gramine sealing key {self.path} has {len(raw)}"
                    f"{'+' if len(raw) > GRAMINE_KEY_LEN else ''} bytes, expected {GRAMINE_KEY_LEN}"
                )
            self._key = derive_gramine_key(raw)
        return self._key

    def __repr__(self) -> str:
        return f"GramineSealing({str(self.path)!r})"


def derive_gramine_key(raw: bytes) -> bytes:
    """HKDF-SHA256(ikm=raw 16-byte SGX key, no salt, info=GRAMINE_HKDF_INFO) -> 32 bytes."""
    return HKDF(
        algorithm=hashes.SHA256(), length=SEALING_KEY_LEN, salt=None, info=GRAMINE_HKDF_INFO
    ).derive(raw)


def detect_sealing_provider(
    simulation_key_path: Path | str | None = None, *, data_dir: Path | str | None = None
) -> SealingKeyProvider:
    """Gramine's key when running under Gramine-SGX, else the simulation key file."""
    if Path(GRAMINE_MRENCLAVE_KEY_PATH).exists():
        return GramineSealing()
    path = simulation_key_path if simulation_key_path is not None else default_simulation_key_path()
    return SimulationSealing(path, data_dir=data_dir)


def _aad(label: str) -> bytes:
    if not isinstance(label, str) or not label:
        raise SealingError(f"label must be a non-empty str, got {label!r}")
    try:
        encoded = label.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise SealingError(f"label is not encodable as UTF-8: {exc}") from exc
    if len(encoded) > _MAX_LABEL_BYTES:
        raise SealingError(f"label longer than {_MAX_LABEL_BYTES} bytes")
    return _AAD_PREFIX + encoded


def _provider_key(provider: SealingKeyProvider) -> bytes:
    key = provider.key()
    if not isinstance(key, bytes) or len(key) != SEALING_KEY_LEN:
        raise SealingError(
            f"{provider!r} returned a sealing key that is not {SEALING_KEY_LEN} bytes"
        )
    return key


def seal(provider: SealingKeyProvider, plaintext: BytesLike, label: str) -> bytes:
    """version(1) ++ AES-256-GCM(plaintext), bound to `label`."""
    aad = _aad(label)
    try:
        blob = aead.encrypt(_provider_key(provider), plaintext, aad)
    except aead.AeadError as exc:
        raise SealingError(f"cannot seal {label!r}: {exc}") from exc
    return bytes([SEAL_FORMAT_VERSION]) + blob


def unseal(provider: SealingKeyProvider, blob: BytesLike, label: str) -> bytes:
    """Inverse of `seal`; `SealingError` on another key, another label or any tampering."""
    aad = _aad(label)
    if not isinstance(blob, bytes | bytearray | memoryview):
        raise SealingError(f"sealed blob must be bytes, got {type(blob).__name__}")
    data = bytes(blob)
    if not data:
        raise SealingError(f"sealed {label!r} is empty")
    if data[0] != SEAL_FORMAT_VERSION:
        raise SealingError(f"sealed {label!r} has unknown format version {data[0]}")
    try:
        return aead.decrypt(_provider_key(provider), data[1:], aad)
    except aead.AeadError as exc:
        raise SealingError(
            f"cannot unseal {label!r}: wrong sealing key, wrong label or tampered data ({exc})"
        ) from exc


def write_atomic(path: Path | str, data: bytes, mode: int = 0o600) -> None:
    """Replace `path` with `data` atomically and durably (temp + fsync + rename + dir fsync)."""
    target = Path(path)
    tmp = _temp_path(target)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        try:
            os.fchmod(fd, mode)
            _write_fd(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise SealingError(f"cannot write {target}: {exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def seal_to_file(
    provider: SealingKeyProvider, path: Path | str, plaintext: BytesLike, label: str
) -> None:
    """Seal `plaintext` under `label` and write it atomically to `path` (mode 0600)."""
    write_atomic(path, seal(provider, plaintext, label))


def unseal_from_file(provider: SealingKeyProvider, path: Path | str, label: str) -> bytes:
    """Read and unseal `path`; `SealedFileMissing` if it does not exist."""
    try:
        blob = Path(path).read_bytes()
    except FileNotFoundError as exc:
        raise SealedFileMissing(f"sealed file {path} does not exist") from exc
    except OSError as exc:
        raise SealingError(f"cannot read sealed file {path}: {exc}") from exc
    return unseal(provider, blob, label)
