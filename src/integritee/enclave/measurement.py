"""MRENCLAVE: the fingerprint of the code the enclave runs.

SHA-256 over every Python file of the packages the enclave process loads (the enclave package and
the shared layer it imports), in a fixed order: for each file, its path relative to the
`integritee` package, a zero byte, its length (8 bytes big-endian) and its bytes. Change a line of
trusted code and the fingerprint, and with it the default shard, changes. Under Gramine the same
files are measured by the loader into the real MRENCLAVE; in simulation this value stands in.
"""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import integritee

# The packages the enclave process imports; service, node and cli are deliberately absent.
TRUSTED_PACKAGES = (
    "enclave",
    "teeio",
    "codec",
    "crypto",
    "trie",
    "storage",
    "rpc",
    "attestation",
    "parentchain",
    "trusted",
)


def trusted_files(root: Path | None = None) -> list[Path]:
    base = root or Path(integritee.__file__).parent
    files = [base / "__init__.py"]
    for package in TRUSTED_PACKAGES:
        files.extend(sorted((base / package).rglob("*.py")))
    return files


def measure(root: Path | None = None) -> bytes:
    base = root or Path(integritee.__file__).parent
    digest = hashlib.sha256()
    for path in trusted_files(base):
        data = path.read_bytes()
        digest.update(path.relative_to(base).as_posix().encode() + b"\0")
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.digest()


@cache
def mrenclave() -> bytes:
    return measure()
