"""Mutual-RA provisioning as the enclave uses it: what a provider hands out and a joiner adopts.

The wire protocol is `mu_ra`; this module decides the contents of its four frames and what each
side does with them:

- frame 0: the shielding key (RSA DER); frame 1: the state key;
- frame 2: `ShardExport { state snapshot, sidechain head header }`, one consistent point (both
  are read without yielding to the event loop, between two sidechain blocks);
- frame 3: `ParentchainExport { light client, parentchain view }`: the light client and what the
  shard's parentchain view holds from the state's parentchain head on (block index, authorities,
  the inbox of parentchain work not yet in a sidechain block).

The joiner writes everything in one batch after sealing the shared keys; a crash in between leaves
keys without a shard, and the next start provisions again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from integritee.attestation import SimDcapProvider
from integritee.attestation.ra_tls import RaIdentity, RaVerifier
from integritee.codec.scale import Bytes, Option, ScaleDecodeError, Struct
from integritee.trusted.sidechain import SidechainHeaderCodec

from .mu_ra import ProvisioningBundle

if TYPE_CHECKING:
    from .app import Enclave

ShardExport = Struct("ShardExport", [("state", Bytes), ("head", Option(SidechainHeaderCodec))])
ParentchainExport = Struct("ParentchainExport", [("light_client", Bytes), ("view", Bytes)])


class ProvisioningError(ValueError):
    pass


@dataclass
class Provisioned:
    shielding_key: bytes
    state_key: bytes
    state: bytes
    head: dict[str, Any] | None
    light_client: bytes
    view: bytes


def ra_identity(enclave: Enclave) -> RaIdentity:
    """This enclave's RA-TLS certificate for its signing key, with a fresh quote."""
    provider = enclave.attestation_provider()
    return RaIdentity.create(enclave.keys.signing, provider)


def ra_verifier(enclave: Enclave) -> RaVerifier:
    """Peers must run this enclave's MRENCLAVE; Skip peers only on dev chains, the sim-dcap dev
    root (with its collateral) only in dev mode."""
    dev = bool(enclave.init_request and enclave.init_request.dev)
    if not dev:
        # production peers are verified against Intel's root with the collateral registered on
        # the parentchain; that path is not wired yet, so refuse rather than trust blindly
        return RaVerifier(enclave.mrenclave)
    sim = SimDcapProvider(enclave.mrenclave, bytes(32), debug=True)
    qe_identity, tcb_info = sim.verified_collateral(int(time.time()))
    return RaVerifier(
        enclave.mrenclave,
        sim.trusted_root(),
        qe_identity,
        tcb_info,
        allow_skip=True,
        allow_debug=True,
    )


def build_bundle(enclave: Enclave, shard: bytes) -> ProvisioningBundle:
    """The provider's side: keys, state and parentchain view at one consistent point."""
    if shard != enclave.shard:
        raise ValueError(f"this enclave does not serve shard 0x{shard.hex()}")
    runtime = enclave.shard_runtime
    lc = enclave.light_client
    if runtime is None or runtime.state is None or lc is None:
        raise ValueError("this enclave has no shard state to provide yet")
    if runtime.state.has_changes():
        raise ValueError("a sidechain block is being produced; ask again")
    processed = runtime.processed_number()
    head = enclave.sidechain.last_header if enclave.sidechain else None
    recent = [(h, n) for h, n in lc.recent_blocks() if n >= processed]
    return ProvisioningBundle(
        shielding_key=enclave.keys.shielding.to_bytes(),
        state_key=enclave.keys.state_key,
        state=ShardExport.encode({"state": runtime.state.export(), "head": head}),
        light_client=ParentchainExport.encode(
            {"light_client": lc.to_bytes(), "view": enclave.view.export(processed, recent)}
        ),
    )


def parse_bundle(bundle: ProvisioningBundle) -> Provisioned:
    try:
        shard = ShardExport.decode(bundle.state)
        parentchain = ParentchainExport.decode(bundle.light_client)
    except ScaleDecodeError as e:
        raise ProvisioningError(f"the provisioned shard does not decode: {e}") from None
    return Provisioned(
        shielding_key=bundle.shielding_key,
        state_key=bundle.state_key,
        state=bytes(shard["state"]),
        head=shard["head"],
        light_client=bytes(parentchain["light_client"]),
        view=bytes(parentchain["view"]),
    )
