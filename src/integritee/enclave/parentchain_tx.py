"""Extrinsics the enclave sends to the parentchain, signed inside the enclave with its own key.

Calls are encoded with the RuntimeCall codec decoded from the chain's own metadata (the light
client verified it from `:code`), so the enclave never depends on node code. Nonces come from a
local cache that only moves forward: a stale nonce from the untrusted side cannot make the enclave
reuse one, at worst an extrinsic is refused and re-sent with the next.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from integritee.codec.scale import Codec, EnumValue
from integritee.crypto.keys import Keypair
from integritee.parentchain.extrinsic import mortal_era_value, sign_and_encode
from integritee.teeio.messages import ChainInfo

ERA_PERIOD = 64


class ParentchainTxBuilder:
    def __init__(self, signer: Keypair, call_codec: Callable[[], Codec]) -> None:
        self.signer = signer
        self._call_codec = call_codec
        self.next_nonce = 0

    def call(self, pallet: str, name: str, **args: Any) -> bytes:
        return self._call_codec().encode(EnumValue(pallet, EnumValue(name, args)))

    def observe_nonce(self, chain_nonce: int) -> None:
        """Raise the local nonce to what the chain reports; never lower it."""
        self.next_nonce = max(self.next_nonce, chain_nonce)

    def sign(
        self,
        call_bytes: bytes,
        chain: ChainInfo,
        *,
        signer: Keypair | None = None,
        nonce: int | None = None,
        era_birth: tuple[int, bytes] | None = None,
    ) -> bytes:
        """Sign with the enclave key (or another enclave-held key such as the shard vault's).

        `era_birth` = (number, hash) of a recent finalized block makes the extrinsic mortal.
        """
        key = signer or self.signer
        if nonce is None:
            nonce = self.next_nonce
            self.next_nonce += 1
        era: Any = "Immortal"
        birth_hash = None
        if era_birth is not None:
            era = mortal_era_value(ERA_PERIOD, era_birth[0])
            birth_hash = era_birth[1]
        return sign_and_encode(
            call_bytes,
            key,
            nonce=nonce,
            genesis_hash=chain.genesis_hash,
            spec_version=chain.spec_version,
            tx_version=chain.transaction_version,
            era=era,
            birth_hash=birth_hash,
        )
