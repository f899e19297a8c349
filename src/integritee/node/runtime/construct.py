"""The runtime: its pallets, the derived RuntimeCall/RuntimeEvent types, dispatch and metadata.

Like `construct_runtime!`, this module lists the pallets with their indices; everything else
(call and event enums, dispatch tables, metadata V14) is derived from the pallets' declarations.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from integritee.codec.metadata import PalletMeta, SignedExtensionMeta, build_metadata_v14
from integritee.codec.scale import Bytes, Enum, EnumValue, Field, Struct, Tuple, Variant
from integritee.parentchain.extrinsic import SIGNED_EXTENSIONS
from integritee.parentchain.primitives import MultiAddress, MultiSignature

from .context import BlockContext
from .framework import DispatchError, Origin, Pallet
from .pallets.balances import balances
from .pallets.consensus import aura, grandpa
from .pallets.enclave_bridge import enclave_bridge
from .pallets.proxy import proxy
from .pallets.sidechain import sidechain
from .pallets.sudo import sudo
from .pallets.system import set_version_constant, system
from .pallets.teerex import teerex
from .pallets.timestamp import timestamp
from .pallets.transaction_payment import transaction_payment

RUNTIME_CRATE = "integritee_node_runtime"

SPEC_NAME = "integritee-solo"
IMPL_NAME = "integritee-solo"
SPEC_VERSION = 410
IMPL_VERSION = 1
TRANSACTION_VERSION = 8
STATE_VERSION = 1

# Runtime API ids: blake2b-64 of the trait names, with the versions clients expect.
RUNTIME_APIS: list[tuple[bytes, int]] = [
    (bytes.fromhex("df6acb689907609b"), 5),  # Core
    (bytes.fromhex("37e397fc7c91f5e4"), 2),  # Metadata
    (bytes.fromhex("bc9d89904f5b923f"), 1),  # AccountNonceApi
    (bytes.fromhex("37c8bb1350a9a2a8"), 4),  # TransactionPaymentApi
    (bytes.fromhex("40fe3ad401f8959a"), 6),  # BlockBuilder
    (bytes.fromhex("d2bc9897eed08f15"), 3),  # TaggedTransactionQueue
]

RUNTIME_VERSION: dict[str, Any] = {
    "spec_name": SPEC_NAME,
    "impl_name": IMPL_NAME,
    "authoring_version": 1,
    "spec_version": SPEC_VERSION,
    "impl_version": IMPL_VERSION,
    "apis": RUNTIME_APIS,
    "transaction_version": TRANSACTION_VERSION,
    "state_version": STATE_VERSION,
}
set_version_constant(RUNTIME_VERSION)

_pallets: list[Pallet] = [
    system,
    timestamp,
    sudo,
    proxy,
    balances,
    transaction_payment,
    aura,
    grandpa,
    teerex,
    sidechain,
    enclave_bridge,
]


def register_pallet(pallet: Pallet) -> None:
    """Add a pallet (e.g. the TEE pallets) before the runtime types are first used."""
    if _built:
        raise RuntimeError("pallets must be registered before the runtime is built")
    _pallets.append(pallet)


_built = False


def pallets() -> Sequence[Pallet]:
    return sorted(_pallets, key=lambda p: p.index)


def _pallet_enum(kind: str) -> Enum:
    global _built
    _built = True
    variants = []
    for p in pallets():
        inner = p.call_enum if kind == "Call" else p.event_enum
        if inner is None:
            continue
        type_name = (
            f"self::sp_api_hidden_includes_construct_runtime::hidden_include::dispatch::CallableCallFor<{p.name}, Runtime>"
            if kind == "Call"
            else f"{p.crate}::Event<Runtime>"
        )
        variants.append(Variant(p.name, p.index, (Field(None, inner, type_name),)))
    return Enum(f"{RUNTIME_CRATE}::Runtime{kind}", variants)


@cache
def runtime_call() -> Enum:
    return _pallet_enum("Call")


@cache
def runtime_event() -> Enum:
    return _pallet_enum("Event")


def __getattr__(name: str) -> Any:
    if name == "RuntimeCall":
        return runtime_call()
    if name == "RuntimeEvent":
        return runtime_event()
    raise AttributeError(name)


@cache
def _dispatch_table() -> dict[str, Pallet]:
    return {p.name: p for p in pallets()}


def call_decl(call: EnumValue) -> Any:
    pallet = _dispatch_table()[call.name]
    return pallet.calls[call.value.name]


def call_weight(call: EnumValue) -> int:
    decl = call_decl(call)
    return decl.weight_of(call.value.value or {})


def call_pays_fee(call: EnumValue) -> bool:
    return call_decl(call).pays_fee


def dispatch(ctx: BlockContext, origin: Origin, call: EnumValue) -> None:
    """Dispatch a decoded RuntimeCall; raises DispatchError on failure (changes are not rolled back)."""
    decl = call_decl(call)
    decl.handler(ctx, origin, **(call.value.value or {}))


def dispatch_transactional(
    ctx: BlockContext, origin: Origin, call: EnumValue
) -> DispatchError | None:
    """Dispatch in a storage transaction: on error, its changes (not its caller's) are rolled back."""
    ctx.state.start_transaction()
    events_before = len(ctx.events)
    try:
        dispatch(ctx, origin, call)
    except DispatchError as e:
        ctx.state.rollback_transaction()
        del ctx.events[events_before:]
        return e
    ctx.state.commit_transaction()
    return None


@cache
def metadata_bytes() -> bytes:
    extrinsic_type = Struct(
        "sp_runtime::generic::unchecked_extrinsic::UncheckedExtrinsic",
        [(None, Bytes, "Vec<u8>")],
        params=[
            ("Address", MultiAddress),
            ("Call", runtime_call()),
            ("Signature", MultiSignature),
            ("Extra", _extra_tuple()),
        ],
    )
    runtime_type = Struct(f"{RUNTIME_CRATE}::Runtime", [])
    metas: list[PalletMeta] = [p.meta() for p in pallets()]
    return build_metadata_v14(
        pallets=metas,
        extrinsic_type=extrinsic_type,
        extrinsic_version=4,
        signed_extensions=[
            SignedExtensionMeta(e.identifier, e.extra, e.additional) for e in SIGNED_EXTENSIONS
        ],
        runtime_type=runtime_type,
    )


def _extra_tuple() -> Any:
    return Tuple(*(e.extra for e in SIGNED_EXTENSIONS))
