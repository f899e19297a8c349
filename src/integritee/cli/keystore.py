"""Substrate's file keystore (sc-keystore `LocalKeystore`), as the original CLI uses it.

One file per key in the keystore directory, named hex(key type id) ++ hex(public key), e.g.
`73723235<64 hex digits>` for an sr25519 key of type `sr25`. The content is the JSON string of
the key's secret URI (a fresh 12-word mnemonic for generated keys). Files are written with mode
0600, directories created with 0700. Keystores are not password protected.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from integritee.crypto import Keypair, SuriError, generate_mnemonic

SR25519_KEY_TYPE = b"sr25"
ED25519_KEY_TYPE = b"ed25"
KEY_TYPE_LEN = 4
PUBLIC_KEY_LEN = 32
# A secret URI is short; refusing big files keeps a stray file from being read into memory.
_MAX_KEY_FILE_BYTES = 8192


class KeystoreError(ValueError):
    """A keystore that cannot be read or written, or a key file that is malformed."""


def _check_key_type(key_type: bytes) -> None:
    if not isinstance(key_type, bytes) or len(key_type) != KEY_TYPE_LEN:
        raise KeystoreError(f"key type id must be {KEY_TYPE_LEN} bytes, got {key_type!r}")


@dataclass(frozen=True)
class LocalKeystore:
    """A keystore directory; nothing is created until a key is written."""

    path: Path

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> LocalKeystore:
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise KeystoreError(f"keystore path {p} exists and is not a directory")
        return cls(p)

    def key_file(self, key_type: bytes, public_key: bytes) -> Path:
        _check_key_type(key_type)
        return self.path / (key_type.hex() + bytes(public_key).hex())

    # -- writing --------------------------------------------------------------------------

    def generate(self, key_type: bytes = SR25519_KEY_TYPE, crypto: str = "sr25519") -> Keypair:
        """Create a key from a fresh mnemonic, store its phrase and return the pair."""
        return self.insert(generate_mnemonic(12), key_type, crypto)

    def insert(
        self, suri: str, key_type: bytes = SR25519_KEY_TYPE, crypto: str = "sr25519"
    ) -> Keypair:
        """Store the secret URI `suri` (validated first) and return its pair."""
        _check_key_type(key_type)
        try:
            pair = Keypair.from_uri(suri, crypto)
        except SuriError as e:
            raise KeystoreError(f"cannot store key: {e}") from None
        target = self.key_file(key_type, pair.public_key)
        try:
            self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            tmp = target.with_name(target.name + ".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(suri, f)
                f.flush()
                os.fsync(f.fileno())
            # Renaming makes the key appear complete or not at all.
            os.replace(tmp, target)
        except OSError as e:
            raise KeystoreError(f"cannot write key to keystore {self.path}: {e}") from None
        return pair

    # -- reading --------------------------------------------------------------------------

    def public_keys(self, key_type: bytes = SR25519_KEY_TYPE) -> list[bytes]:
        """Public keys of `key_type`, oldest file first (ties by name)."""
        _check_key_type(key_type)
        prefix = key_type.hex()
        found: list[tuple[int, str, bytes]] = []
        try:
            entries = list(os.scandir(self.path))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise KeystoreError(f"cannot read keystore {self.path}: {e}") from None
        for entry in entries:
            name = entry.name
            if not name.startswith(prefix) or len(name) != len(prefix) + 2 * PUBLIC_KEY_LEN:
                continue
            try:
                public = bytes.fromhex(name[len(prefix) :])
            except ValueError:
                continue
            with contextlib.suppress(OSError):
                if entry.is_file():
                    found.append((entry.stat().st_mtime_ns, name, public))
        found.sort()
        return [public for _, _, public in found]

    def secret_uri(self, public_key: bytes, key_type: bytes = SR25519_KEY_TYPE) -> str | None:
        """The stored secret URI of a key, or None when the keystore does not hold it."""
        path = self.key_file(key_type, public_key)
        try:
            with open(path, "rb") as f:
                raw = f.read(_MAX_KEY_FILE_BYTES + 1)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise KeystoreError(f"cannot read key file {path}: {e}") from None
        if len(raw) > _MAX_KEY_FILE_BYTES:
            raise KeystoreError(f"key file {path} is too large")
        try:
            suri = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise KeystoreError(f"key file {path} is not a JSON string") from None
        if not isinstance(suri, str):
            raise KeystoreError(f"key file {path} is not a JSON string")
        return suri

    def keypair(
        self, public_key: bytes, key_type: bytes = SR25519_KEY_TYPE, crypto: str = "sr25519"
    ) -> Keypair | None:
        """The pair for `public_key`, or None when the keystore does not hold it."""
        suri = self.secret_uri(public_key, key_type)
        if suri is None:
            return None
        path = self.key_file(key_type, public_key)
        try:
            pair = Keypair.from_uri(suri, crypto)
        except SuriError as e:
            raise KeystoreError(f"key file {path} holds an invalid secret: {e}") from None
        if pair.public_key != bytes(public_key):
            raise KeystoreError(f"key file {path} holds the secret of another public key")
        return pair
