"""Runtime metadata V14, assembled from codec descriptors.

Owns the description of a runtime for metadata purposes (`PalletMeta`, `StorageEntryMeta`,
`ConstantMeta`, `SignedExtensionMeta`) and `build_metadata_v14`, which returns exactly what
`state_getMetadata` serves: b"meta" ++ 0x0e ++ SCALE(RuntimeMetadataV14). Types are registered in
the order frame-metadata uses (pallet by pallet: storage, calls, event, constants, error; then the
extrinsic, its signed extensions, and the runtime type), so ids are stable for a given runtime.

The builder checks what real clients rely on and a runtime can get wrong: pallet indices equal the
variant indices of RuntimeCall and RuntimeEvent, the extrinsic type has the params Address, Call,
Signature, Extra, storage defaults and constants decode exactly with their types. Mistakes raise
`MetadataError` here instead of surfacing as a client that cannot decode a block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from integritee.codec.registry import PortableRegistry, RegistryError, VariantTypeDef
from integritee.codec.scale import (
    Codec,
    Enum,
    Field,
    ScaleDecodeError,
    Variant,
    encode_compact,
    resolve,
    unit,
)

MAGIC = b"meta"
V14 = 14

# StorageHasher as numbered in frame-metadata
HASHERS: dict[str, int] = {
    "Blake2_128": 0,
    "Blake2_256": 1,
    "Blake2_128Concat": 2,
    "Twox128": 3,
    "Twox256": 4,
    "Twox64Concat": 5,
    "Identity": 6,
}
MODIFIERS: dict[str, int] = {"Optional": 0, "Default": 1}

EXTRINSIC_PATH = ("sp_runtime", "generic", "unchecked_extrinsic", "UncheckedExtrinsic")
EXTRINSIC_PARAMS = ("Address", "Call", "Signature", "Extra")


class MetadataError(ValueError):
    """The runtime description is inconsistent or cannot be served to clients."""


@dataclass(frozen=True)
class StorageEntryMeta:
    """A storage item. `key` None with no hashers is a plain value; one hasher is a map keyed by
    `key`; several hashers are an n-map whose `key` is a Tuple with one item per hasher.

    `default` is what a client decodes when the key is absent: the SCALE value for "Default"
    entries, b"\\x00" (None) for "Optional" ones.
    """

    name: str
    modifier: str  # "Optional" | "Default"
    value: Codec
    default: bytes = b"\x00"
    key: Codec | None = None
    hashers: tuple[str, ...] = ()
    docs: tuple[str, ...] = ()


@dataclass(frozen=True)
class ConstantMeta:
    name: str
    codec: Codec
    value: bytes  # the SCALE encoding of the constant
    docs: tuple[str, ...] = ()


@dataclass(frozen=True)
class PalletMeta:
    """A pallet. `calls`, `event` and `error` are the pallet's own enums (e.g. path
    pallet_balances::pallet::Call). Storage is emitted when there are entries or a
    `storage_prefix` is given; the prefix defaults to the pallet name."""

    name: str
    index: int
    storage_prefix: str | None = None
    storage: Sequence[StorageEntryMeta] = field(default_factory=tuple)
    calls: Codec | None = None
    event: Codec | None = None
    error: Codec | None = None
    constants: Sequence[ConstantMeta] = field(default_factory=tuple)


@dataclass(frozen=True)
class SignedExtensionMeta:
    """`ty` is what the extension adds to the extrinsic, `additional_signed` what it adds to the
    signed payload only; an extension that adds nothing uses `()` for both."""

    identifier: str
    ty: Codec = unit
    additional_signed: Codec = unit


# ---------------------------------------------------------------------------------------------
# Outer enums


def runtime_call_enum(crate: str, pallets: Sequence[PalletMeta]) -> Enum:
    """`<crate>::RuntimeCall`: one variant per pallet with calls, named and indexed like it."""
    return Enum(
        f"{crate}::RuntimeCall",
        [
            Variant(
                p.name,
                p.index,
                (
                    Field(
                        None,
                        p.calls,
                        "self::sp_api_hidden_includes_construct_runtime::hidden_include::"
                        f"dispatch::CallableCallFor<{p.name}, Runtime>",
                    ),
                ),
            )
            for p in pallets
            if p.calls is not None
        ],
    )


def runtime_event_enum(crate: str, pallets: Sequence[PalletMeta]) -> Enum:
    """`<crate>::RuntimeEvent`: one variant per pallet with events, named and indexed like it."""
    return Enum(
        f"{crate}::RuntimeEvent",
        [
            Variant(p.name, p.index, (Field(None, p.event, _event_type_name(p.event)),))
            for p in pallets
            if p.event is not None
        ],
    )


def _event_type_name(event: Codec) -> str:
    path = resolve(event).path
    return f"{path[0]}::Event<Runtime>" if path else "Event<Runtime>"


# ---------------------------------------------------------------------------------------------
# Assembly


def build_metadata_v14(
    pallets: Sequence[PalletMeta],
    extrinsic_type: Codec,
    extrinsic_version: int,
    signed_extensions: Sequence[SignedExtensionMeta],
    runtime_type: Codec,
) -> bytes:
    """b"meta" ++ 0x0e ++ SCALE(RuntimeMetadataV14) for the described runtime.

    Raises MetadataError for an inconsistent description, including a type that a portable
    registry cannot express.
    """
    try:
        return _build(pallets, extrinsic_type, extrinsic_version, signed_extensions, runtime_type)
    except RegistryError as e:
        raise MetadataError(f"type registry: {e}") from e


def _build(
    pallets: Sequence[PalletMeta],
    extrinsic_type: Codec,
    extrinsic_version: int,
    signed_extensions: Sequence[SignedExtensionMeta],
    runtime_type: Codec,
) -> bytes:
    _check_pallets(pallets)
    _check_extrinsic_type(extrinsic_type)
    if not 0 <= extrinsic_version <= 255:
        raise MetadataError(f"extrinsic version {extrinsic_version} is not a u8")
    identifiers = [s.identifier for s in signed_extensions]
    if len(set(identifiers)) != len(identifiers):
        raise MetadataError(f"duplicate signed extension in {identifiers}")

    registry = PortableRegistry()
    body = bytearray()
    body += encode_compact(len(pallets))
    pallet_ids: dict[str, dict[str, int]] = {}
    for p in pallets:
        pallet_ids[p.name] = _encode_pallet(p, registry, body)

    extrinsic_id = registry.register(extrinsic_type)
    body += encode_compact(extrinsic_id)
    body.append(extrinsic_version)
    body += encode_compact(len(signed_extensions))
    for s in signed_extensions:
        _text(s.identifier, body)
        body += encode_compact(registry.register(s.ty))
        body += encode_compact(registry.register(s.additional_signed))
    body += encode_compact(registry.register(runtime_type))

    _check_outer_enums(pallets, pallet_ids, extrinsic_id, registry)

    out = bytearray(MAGIC)
    out.append(V14)
    registry.encode_into(out)
    out += body
    return bytes(out)


def _text(s: str, out: bytearray) -> None:
    raw = s.encode()
    out += encode_compact(len(raw))
    out += raw


def _texts(items: Sequence[str], out: bytearray) -> None:
    out += encode_compact(len(items))
    for s in items:
        _text(s, out)


def _bytes(b: bytes, out: bytearray) -> None:
    out += encode_compact(len(b))
    out += b


def _encode_pallet(p: PalletMeta, registry: PortableRegistry, out: bytearray) -> dict[str, int]:
    """Appends PalletMetadata; returns the type ids of its calls/event/error enums."""
    _text(p.name, out)
    if p.storage or p.storage_prefix is not None:
        out.append(1)
        _text(p.storage_prefix if p.storage_prefix is not None else p.name, out)
        out += encode_compact(len(p.storage))
        for entry in p.storage:
            _encode_storage_entry(p, entry, registry, out)
    else:
        out.append(0)
    ids: dict[str, int] = {}
    for what, codec in (("calls", p.calls), ("event", p.event)):
        if codec is None:
            out.append(0)
        else:
            ids[what] = registry.register(codec)
            out.append(1)
            out += encode_compact(ids[what])
    out += encode_compact(len(p.constants))
    for c in p.constants:
        _check_decodes(c.codec, c.value, f"{p.name}.{c.name}: constant value")
        _text(c.name, out)
        out += encode_compact(registry.register(c.codec))
        _bytes(c.value, out)
        _texts(c.docs, out)
    if p.error is None:
        out.append(0)
    else:
        ids["error"] = registry.register(p.error)
        out.append(1)
        out += encode_compact(ids["error"])
    out.append(p.index)
    return ids


def _encode_storage_entry(
    p: PalletMeta, e: StorageEntryMeta, registry: PortableRegistry, out: bytearray
) -> None:
    where = f"{p.name}.{e.name}"
    if e.modifier not in MODIFIERS:
        raise MetadataError(f"{where}: modifier {e.modifier!r} is not Optional or Default")
    if e.modifier == "Optional":
        if e.default != b"\x00":
            raise MetadataError(f"{where}: an Optional entry's default must be 0x00 (None)")
    else:
        _check_decodes(e.value, e.default, f"{where}: default")
    _text(e.name, out)
    out.append(MODIFIERS[e.modifier])
    if e.key is None:
        if e.hashers:
            raise MetadataError(f"{where}: hashers given without a key type")
        out.append(0)
        out += encode_compact(registry.register(e.value))
    else:
        if not e.hashers:
            raise MetadataError(f"{where}: a map needs at least one hasher")
        for h in e.hashers:
            if h not in HASHERS:
                raise MetadataError(f"{where}: unknown hasher {h!r}")
        if len(e.hashers) > 1:
            key = resolve(e.key)
            items = getattr(key, "items", None)
            if key.kind != "tuple" or items is None or len(items) != len(e.hashers):
                raise MetadataError(
                    f"{where}: {len(e.hashers)} hashers need a tuple key of as many items"
                )
        out.append(1)
        out += encode_compact(len(e.hashers))
        out += bytes(HASHERS[h] for h in e.hashers)
        out += encode_compact(registry.register(e.key))
        out += encode_compact(registry.register(e.value))
    _bytes(e.default, out)
    _texts(e.docs, out)


def _check_decodes(codec: Codec, value: bytes, what: str) -> None:
    try:
        codec.decode(value)
    except (ScaleDecodeError, ValueError) as e:
        raise MetadataError(f"{what} 0x{value.hex()} does not decode: {e}") from None


def _check_pallets(pallets: Sequence[PalletMeta]) -> None:
    names: set[str] = set()
    indices: set[int] = set()
    for p in pallets:
        if not 0 <= p.index <= 255:
            raise MetadataError(f"pallet {p.name}: index {p.index} is not a u8")
        if p.name in names or p.index in indices:
            raise MetadataError(f"pallet {p.name}: duplicate name or index {p.index}")
        names.add(p.name)
        indices.add(p.index)
        entry_names = [e.name for e in p.storage]
        if len(set(entry_names)) != len(entry_names):
            raise MetadataError(f"pallet {p.name}: duplicate storage entry names")
        for what, codec in (("calls", p.calls), ("event", p.event), ("error", p.error)):
            if codec is not None and resolve(codec).kind != "variant":
                raise MetadataError(f"pallet {p.name}: {what} must be an enum, got {codec!r}")
        if p.error is not None:
            indices_in_order = [v.index for v in resolve(p.error).variants]  # type: ignore[attr-defined]
            if indices_in_order != list(range(len(indices_in_order))):
                # substrate-interface finds a module error by list position, not by variant index
                raise MetadataError(f"pallet {p.name}: error indices must be 0..n-1 in order")
        if p.calls is not None:
            for v in resolve(p.calls).variants:  # type: ignore[attr-defined]
                if any(f.name is None for f in v.fields):
                    # clients address call arguments by name
                    raise MetadataError(f"{p.name}.{v.name}: call arguments must be named")


def _check_extrinsic_type(extrinsic_type: Codec) -> None:
    ext = resolve(extrinsic_type)
    names = tuple(name for name, _ in ext.params)
    if ext.path != EXTRINSIC_PATH or names != EXTRINSIC_PARAMS:
        raise MetadataError(
            f"extrinsic type must be {'::'.join(EXTRINSIC_PATH)} with params "
            f"{', '.join(EXTRINSIC_PARAMS)}; got {'::'.join(ext.path)} with {names}"
        )
    if any(p is None for _, p in ext.params):
        raise MetadataError("every extrinsic type param needs a type")


def _check_outer_enums(
    pallets: Sequence[PalletMeta],
    pallet_ids: dict[str, dict[str, int]],
    extrinsic_id: int,
    registry: PortableRegistry,
) -> None:
    """RuntimeCall (the extrinsic's Call param) and any `<crate>::RuntimeEvent` must have exactly
    one variant per pallet with calls/events, at the pallet's index, wrapping the pallet's enum."""
    call_id = next(p.ty for p in registry[extrinsic_id].params if p.name == "Call")
    assert call_id is not None
    _check_outer(registry, call_id, "RuntimeCall", pallets, pallet_ids, "calls")
    for t in registry.types:
        if len(t.path) == 2 and t.path[1] == "RuntimeEvent":
            _check_outer(registry, t.id, "RuntimeEvent", pallets, pallet_ids, "event")


def _check_outer(
    registry: PortableRegistry,
    type_id: int,
    label: str,
    pallets: Sequence[PalletMeta],
    pallet_ids: dict[str, dict[str, int]],
    what: str,
) -> None:
    t = registry[type_id]
    if len(t.path) != 2 or t.path[1] != label or not isinstance(t.type_def, VariantTypeDef):
        raise MetadataError(f"{label} must be an enum with path <crate>::{label}, got {t.path}")
    variants = {v.index: v for v in t.type_def.variants}
    expected = {p.index: p for p in pallets if what in pallet_ids[p.name]}
    if set(variants) != set(expected):
        raise MetadataError(
            f"{label} variant indices {sorted(variants)} differ from the pallets' {sorted(expected)}"
        )
    for index, p in expected.items():
        v = variants[index]
        if v.name != p.name or [f.ty for f in v.fields] != [pallet_ids[p.name][what]]:
            raise MetadataError(
                f"{label} variant {v.name!r} at {index} must wrap exactly pallet {p.name}'s {what}"
            )
