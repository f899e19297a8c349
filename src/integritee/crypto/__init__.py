"""Cryptography shared by node, enclave, service and CLI.

Re-exports hashing (blake2, twox, storage hashers), SS58 addresses and sr25519/ed25519 keys.
Shielding (RSA-3072), AES-GCM and sealing live in their own modules of this package.
"""

from __future__ import annotations

from integritee.crypto.hashing import (
    CONCAT_HASH_LEN,
    HASHERS,
    blake2_128,
    blake2_128_concat,
    blake2_256,
    identity,
    storage_prefix,
    twox64,
    twox64_concat,
    twox128,
    twox256,
)
from integritee.crypto.keys import (
    DEV_NAMES,
    DEV_PHRASE,
    Junction,
    Keypair,
    SuriError,
    dev_keypair,
    generate_mnemonic,
    parse_suri,
    secp256k1_recover_compressed,
    validate_mnemonic,
    verify,
    verify_multi_signature,
)
from integritee.crypto.ss58 import (
    is_valid_ss58,
    ss58_decode,
    ss58_decode_with_prefix,
    ss58_encode,
)

__all__ = [
    "CONCAT_HASH_LEN",
    "DEV_NAMES",
    "DEV_PHRASE",
    "HASHERS",
    "Junction",
    "Keypair",
    "SuriError",
    "blake2_128",
    "blake2_128_concat",
    "blake2_256",
    "dev_keypair",
    "generate_mnemonic",
    "identity",
    "is_valid_ss58",
    "parse_suri",
    "secp256k1_recover_compressed",
    "ss58_decode",
    "ss58_decode_with_prefix",
    "ss58_encode",
    "storage_prefix",
    "twox128",
    "twox256",
    "twox64",
    "twox64_concat",
    "validate_mnemonic",
    "verify",
    "verify_multi_signature",
]

# Shielding (RSA-3072), AES-GCM and sealing: appended so concurrent additions merge cleanly.
from integritee.crypto import aead  # noqa: E402
from integritee.crypto.aead import AeadError  # noqa: E402
from integritee.crypto.sealing import (  # noqa: E402
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
from integritee.crypto.shielding import (  # noqa: E402
    ShieldingError,
    ShieldingKey,
    ShieldingPublicKey,
)

__all__ += [
    "AeadError",
    "GramineSealing",
    "SealedFileMissing",
    "SealingError",
    "SealingKeyProvider",
    "ShieldingError",
    "ShieldingKey",
    "ShieldingPublicKey",
    "SimulationSealing",
    "aead",
    "default_simulation_key_path",
    "detect_sealing_provider",
    "seal",
    "seal_to_file",
    "unseal",
    "unseal_from_file",
]
