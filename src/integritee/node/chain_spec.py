"""Chain specifications: the dev and local presets, genesis storage, and the chain spec JSON.

A spec carries the human part (name, id, properties, boot nodes) and the genesis storage. Presets
build the storage by running the genesis configuration through the pallets' storage declarations;
`build-spec --raw` writes it as `genesis.raw.top` like Substrate, and `--chain spec.json` loads it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integritee.attestation import DEV_ROOT_CA_PEM
from integritee.codec.hexutil import from_hex, to_hex
from integritee.crypto.keys import DEV_NAMES, Keypair, dev_keypair
from integritee.storage.overlay import Overlay

from .runtime.construct import metadata_bytes
from .runtime.context import BlockContext
from .runtime.executive import ChainParams
from .runtime.pallets import balances as balances_mod
from .runtime.pallets import consensus, sudo, system, teerex
from .runtime.pallets import transaction_payment as tp

ENDOWMENT = 1 << 60
CODE_KEY = b":code"
PROPERTIES = {"ss58Format": 13, "tokenDecimals": 12, "tokenSymbol": "TEER"}


class ChainSpecError(ValueError):
    pass


@dataclass
class GenesisConfig:
    endowed: dict[bytes, int] = field(default_factory=dict)
    sudo_key: bytes | None = None
    aura_authorities: list[bytes] = field(default_factory=list)  # sr25519 public keys
    grandpa_authorities: list[bytes] = field(default_factory=list)  # ed25519 public keys
    # Teerex: dev chains allow Skip and debug enclaves and trust the sim-dcap dev root.
    allow_skipping_attestation: bool = False
    sgx_allow_debug_mode: bool = False
    sgx_trusted_root: bytes | None = None  # None: Intel's SGX root CA

    def storage(self) -> dict[bytes, bytes]:
        """Genesis storage produced through the pallets' own storage declarations."""
        state = Overlay(lambda _k: None)
        ctx = BlockContext(
            state=state, number=0, parent_hash=bytes(32), chain=ChainParams(bytes(32))
        )
        for who, amount in self.endowed.items():
            balances_mod.deposit(ctx, who, amount)
        if self.sudo_key is not None:
            sudo.Key.put(state, self.sudo_key)
        consensus.AuraAuthorities.put(state, self.aura_authorities)
        consensus.GrandpaAuthorities.put(state, [(a, 1) for a in self.grandpa_authorities])
        tp.NextFeeMultiplier.put(state, 10**18)
        teerex.genesis_storage(
            state,
            allow_skipping=self.allow_skipping_attestation,
            allow_debug=self.sgx_allow_debug_mode,
            trusted_root_der=self.sgx_trusted_root,
        )
        system.ParentHash.put(state, bytes(32))
        # The runtime's "code": its metadata, so light clients (the enclaves) can decode the
        # chain's events and calls from state they verify with a storage proof.
        state.set(CODE_KEY, metadata_bytes())
        return {k: v for k, v in state.changes().items() if v is not None}


@dataclass
class ChainSpec:
    name: str
    id: str
    chain_type: str
    genesis: dict[bytes, bytes]
    properties: dict[str, Any] = field(default_factory=lambda: dict(PROPERTIES))
    boot_nodes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "chainType": self.chain_type,
            "bootNodes": self.boot_nodes,
            "telemetryEndpoints": None,
            "protocolId": "teer",
            "properties": self.properties,
            "codeSubstitutes": {},
            "genesis": {
                "raw": {
                    "top": {to_hex(k): to_hex(v) for k, v in sorted(self.genesis.items())},
                    "childrenDefault": {},
                }
            },
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChainSpec:
        try:
            top = data["genesis"]["raw"]["top"]
            genesis = {from_hex(k): from_hex(v) for k, v in top.items()}
            return cls(
                name=str(data["name"]),
                id=str(data["id"]),
                chain_type=str(data.get("chainType", "Live")),
                genesis=genesis,
                properties=dict(data.get("properties") or PROPERTIES),
                boot_nodes=list(data.get("bootNodes") or []),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ChainSpecError(f"not a raw chain spec: {e}") from None

    @classmethod
    def load(cls, path: str | Path) -> ChainSpec:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ChainSpecError(f"cannot read chain spec {path}: {e}") from None
        return cls.from_json(data)


def _dev_config(authorities: list[str], endowed_names: list[str]) -> GenesisConfig:
    return GenesisConfig(
        endowed={Keypair.from_uri(f"//{n}").public_key: ENDOWMENT for n in endowed_names},
        sudo_key=dev_keypair("Alice").public_key,
        aura_authorities=[dev_keypair(n).public_key for n in authorities],
        grandpa_authorities=[dev_keypair(n, "ed25519").public_key for n in authorities],
        allow_skipping_attestation=True,
        sgx_allow_debug_mode=True,
        sgx_trusted_root=DEV_ROOT_CA_PEM,
    )


def dev_spec() -> ChainSpec:
    config = _dev_config(["Alice"], list(DEV_NAMES) + [f"{n}//stash" for n in DEV_NAMES])
    return ChainSpec("Integritee Development", "dev", "Development", config.storage())


def local_spec() -> ChainSpec:
    config = _dev_config(["Alice", "Bob"], list(DEV_NAMES) + [f"{n}//stash" for n in DEV_NAMES])
    return ChainSpec("Integritee Local Testnet", "local_testnet", "Local", config.storage())


def resolve_chain(chain: str | None, dev: bool) -> ChainSpec:
    if chain in (None, ""):
        chain = "dev" if dev else "local"
    if chain == "dev":
        return dev_spec()
    if chain in ("local", "local_testnet"):
        return local_spec()
    return ChainSpec.load(chain)
