"""The enclave's secrets: created on first start, sealed in the data dir, never leave the process.

- signing key (ed25519): the enclave's parentchain account, sidechain block signer, RA-TLS key;
- shielding key (RSA-3072): clients encrypt trusted operations and shielded accounts to it;
- state key (AES-256): encrypts the shard state at rest.

Each is sealed with the platform sealing key under its own label, so one sealed file can never be
unsealed as another. Only public parts (public keys, the shielding key JSON) are handed out.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from integritee.crypto.keys import Keypair
from integritee.crypto.sealing import (
    SealedFileMissing,
    SealingKeyProvider,
    seal_to_file,
    unseal_from_file,
)
from integritee.crypto.shielding import ShieldingKey

log = logging.getLogger("integritee.enclave.keys")

SIGNING_LABEL = "integritee/enclave/signing-key/v1"
SHIELDING_LABEL = "integritee/enclave/shielding-key/v1"
STATE_KEY_LABEL = "integritee/enclave/state-key/v1"


@dataclass
class EnclaveKeys:
    signing: Keypair
    shielding: ShieldingKey
    state_key: bytes

    @classmethod
    def load_or_create(cls, sealed_dir: Path, provider: SealingKeyProvider) -> EnclaveKeys:
        sealed_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        signing_seed = _load_or_create(
            sealed_dir / "signing_key.sealed", provider, SIGNING_LABEL, lambda: os.urandom(32)
        )
        shielding_der = _load_or_create(
            sealed_dir / "shielding_key.sealed",
            provider,
            SHIELDING_LABEL,
            lambda: ShieldingKey.generate().to_bytes(),
        )
        state_key = _load_or_create(
            sealed_dir / "state_key.sealed", provider, STATE_KEY_LABEL, lambda: os.urandom(32)
        )
        return cls(
            Keypair.from_seed(signing_seed, "ed25519"),
            ShieldingKey.from_bytes(shielding_der),
            state_key,
        )

    def replace_shared(
        self, shielding_der: bytes, state_key: bytes, sealed_dir: Path, provider: SealingKeyProvider
    ) -> None:
        """Adopt the shard's shared keys received from a peer enclave (mutual RA provisioning)."""
        self.shielding = ShieldingKey.from_bytes(shielding_der)
        self.state_key = state_key
        seal_to_file(provider, sealed_dir / "shielding_key.sealed", shielding_der, SHIELDING_LABEL)
        seal_to_file(provider, sealed_dir / "state_key.sealed", state_key, STATE_KEY_LABEL)


def _load_or_create(path: Path, provider: SealingKeyProvider, label: str, create) -> bytes:  # type: ignore[no-untyped-def]
    try:
        return unseal_from_file(provider, path, label)
    except SealedFileMissing:
        secret: bytes = create()
        seal_to_file(provider, path, secret, label)
        log.info("created and sealed %s", path.name)
        return secret
