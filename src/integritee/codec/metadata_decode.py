"""Runtime metadata V14 read back into codec descriptors: the inverse of `metadata.py`.

Owns `decode_metadata_v14`, which turns the bytes a node serves (`state_getMetadata`, or its
genesis `:code`) into a `RuntimeMetadata`: one codec per registry type (built by
`registry_decode.py`), the pallets with their call/event/error enums, storage entries (keys,
value codecs, defaults) and constants, the RuntimeCall / RuntimeEvent / `Vec<EventRecord>` codecs
and the signed extensions. Code that must not import the node's runtime (the enclave) uses it to
decode parentchain events and extrinsics and to encode the calls it sends; the values are the ones
the node's own codecs produce (dicts, `EnumValue`s, bytes, transparent newtypes).

Decoding is strict: magic and version, exact consumption, ids and references in range, pallet and
outer-enum consistency. Malformed bytes raise `MalformedMetadata` (both a `MetadataError` and a
`ScaleDecodeError`); well-formed but unusable metadata raises `MetadataError`. The work is bounded
by the limits of `registry_decode` (number of types, nesting depth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from integritee.codec.metadata import HASHERS as HASHER_CODES
from integritee.codec.metadata import MAGIC, V14, MetadataError
from integritee.codec.registry import PortableType, VariantTypeDef
from integritee.codec.registry_decode import (
    MAX_TYPE_DEPTH,
    MAX_TYPES,
    MalformedMetadata,
    Reader,
    StructClasses,
    build_codecs,
    read_portable_registry,
)
from integritee.codec.scale import Buffer, Codec, EnumValue, ScaleDecodeError, resolve
from integritee.crypto.hashing import CONCAT_HASH_LEN, HASHERS, Hasher, twox128

__all__ = [
    "Constant",
    "MalformedMetadata",
    "MetadataError",
    "PalletMetadata",
    "RuntimeMetadata",
    "SignedExtension",
    "StorageEntry",
    "decode_metadata_v14",
]

HASHER_NAMES: dict[int, str] = {code: name for name, code in HASHER_CODES.items()}
MODIFIER_NAMES = ("Optional", "Default")
EVENT_RECORD_PATH = ("frame_system", "EventRecord")


# ---------------------------------------------------------------------------------------------
# The decoded description


@dataclass(frozen=True)
class StorageEntry:
    """A storage item of a pallet. `keys` has one codec per hasher (the items of the metadata's
    tuple key for an n-map); `key_codec` is the key type as the metadata states it."""

    pallet_prefix: str
    name: str
    modifier: str  # "Optional" | "Default"
    hashers: tuple[str, ...]
    key_codec: Codec | None
    keys: tuple[Codec, ...]
    value: Codec
    default: bytes
    docs: tuple[str, ...] = ()
    prefix: bytes = field(default=b"", repr=False)  # twox128(pallet_prefix) ++ twox128(name)
    _hash_fns: tuple[Hasher, ...] = field(default=(), repr=False, compare=False)

    def key(self, *keys: Any) -> bytes:
        """The full storage key: prefix ++ hasher(SCALE(key)) for each key."""
        if len(keys) != len(self.keys):
            raise TypeError(f"{self.pallet_prefix}.{self.name} takes {len(self.keys)} key(s)")
        return self.partial_key(*keys)

    def partial_key(self, *keys: Any) -> bytes:
        """The key prefix of all entries whose first keys are `keys` (none: the whole map)."""
        if len(keys) > len(self.keys):
            raise TypeError(f"{self.pallet_prefix}.{self.name} takes {len(self.keys)} key(s)")
        out = self.prefix
        for hasher, codec, k in zip(self._hash_fns, self.keys, keys, strict=False):
            out += hasher(codec.encode(k))
        return out

    def decode_value(self, raw: Buffer | None) -> Any:
        """Decode a stored value; an absent one (None) is the default, or None if Optional."""
        if raw is None:
            return None if self.modifier == "Optional" else self.value.decode(self.default)
        return self.value.decode(raw)

    def decode_key(self, storage_key: Buffer) -> tuple[Any, ...]:
        """The keys of a full storage key of this entry (its hashers must keep the key)."""
        data = bytes(storage_key)
        if not data.startswith(self.prefix):
            raise ScaleDecodeError(f"{self.pallet_prefix}.{self.name}: key has another prefix")
        pos = len(self.prefix)
        out = []
        for hasher, codec in zip(self.hashers, self.keys, strict=True):
            skip = CONCAT_HASH_LEN.get(hasher)
            if skip is None:
                raise ValueError(f"{self.pallet_prefix}.{self.name}: {hasher} hides the key")
            pos += skip
            if pos > len(data):
                raise ScaleDecodeError(f"{self.pallet_prefix}.{self.name}: key too short")
            value, pos = codec.decode_from(data, pos)
            out.append(value)
        if pos != len(data):
            raise ScaleDecodeError(f"{self.pallet_prefix}.{self.name}: trailing key bytes")
        return tuple(out)


@dataclass(frozen=True)
class Constant:
    name: str
    codec: Codec
    value: bytes  # the SCALE encoding
    docs: tuple[str, ...] = ()

    def decoded(self) -> Any:
        return self.codec.decode(self.value)


@dataclass(frozen=True)
class SignedExtension:
    """`extra` goes into the extrinsic, `additional` into the signed payload only."""

    identifier: str
    extra: Codec
    additional: Codec
    extra_type: int = -1
    additional_type: int = -1


@dataclass(frozen=True)
class PalletMetadata:
    name: str
    index: int
    storage_prefix: str | None
    storage_entries: Mapping[str, StorageEntry]
    calls: Codec | None
    event: Codec | None
    error: Codec | None
    constants: Mapping[str, Constant]
    calls_type: int | None = None
    event_type: int | None = None
    error_type: int | None = None

    def storage(self, name: str) -> StorageEntry:
        try:
            return self.storage_entries[name]
        except KeyError:
            raise KeyError(f"pallet {self.name} has no storage entry {name!r}") from None

    def constant(self, name: str) -> Any:
        """The decoded value of a constant."""
        try:
            c = self.constants[name]
        except KeyError:
            raise KeyError(f"pallet {self.name} has no constant {name!r}") from None
        return c.decoded()

    def call_index(self, name: str) -> tuple[int, int]:
        """(pallet index, call index): the first two bytes of the encoded RuntimeCall."""
        calls = resolve(self.calls) if self.calls is not None else None
        variant = getattr(calls, "by_name", {}).get(name)
        if variant is None:
            raise KeyError(f"pallet {self.name} has no call {name!r}")
        return self.index, variant.index


@dataclass(frozen=True)
class RuntimeMetadata:
    """What metadata V14 says about a runtime, with codecs ready to encode and decode."""

    portable_types: Sequence[PortableType]
    types: Sequence[Codec]  # index == type id
    pallets: Sequence[PalletMetadata]
    extrinsic_type: int
    extrinsic_version: int
    signed_extensions: Sequence[SignedExtension]
    runtime_type: int
    call_type: int | None
    event_type: int | None
    events_type: int | None
    _by_name: dict[str, PalletMetadata] = field(init=False, repr=False, compare=False)
    _by_index: dict[int, PalletMetadata] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {p.name: p for p in self.pallets})
        object.__setattr__(self, "_by_index", {p.index: p for p in self.pallets})

    # --- pallets

    def pallet(self, name: str) -> PalletMetadata:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no pallet {name!r}") from None

    def pallet_by_index(self, index: int) -> PalletMetadata:
        try:
            return self._by_index[index]
        except KeyError:
            raise KeyError(f"no pallet at index {index}") from None

    def storage(self, pallet: str, name: str) -> StorageEntry:
        return self.pallet(pallet).storage(name)

    def constant(self, pallet: str, name: str) -> Any:
        return self.pallet(pallet).constant(name)

    # --- outer types

    @property
    def call_codec(self) -> Codec:
        """RuntimeCall: the extrinsic type's `Call` param (or the `<crate>::RuntimeCall`)."""
        return self._outer(self.call_type, "RuntimeCall")

    @property
    def event_codec(self) -> Codec:
        """RuntimeEvent: frame_system::EventRecord's `E` param (or the `<crate>::RuntimeEvent`)."""
        return self._outer(self.event_type, "RuntimeEvent")

    @property
    def events_codec(self) -> Codec:
        """`Vec<EventRecord>`: the value type of System.Events."""
        return self._outer(self.events_type, "System.Events")

    def _outer(self, type_id: int | None, what: str) -> Codec:
        if type_id is None:
            raise MetadataError(f"the metadata has no {what} type")
        return self.types[type_id]

    @property
    def extrinsic_params(self) -> dict[str, Codec | None]:
        """The extrinsic type's params by name (Address, Call, Signature, Extra)."""
        t = self.portable_types[self.extrinsic_type]
        return {p.name: None if p.ty is None else self.types[p.ty] for p in t.params}

    def types_with_path(self, path: str) -> list[Codec]:
        """Every type whose path is `path` ("a::b::C"); generic types may have several."""
        segments = tuple(path.split("::"))
        return [self.types[t.id] for t in self.portable_types if t.path == segments]

    # --- conveniences

    def encode_call(self, pallet: str, call: str, args: Mapping[str, Any] | None = None) -> bytes:
        return self.call_codec.encode(EnumValue(pallet, EnumValue(call, dict(args or {}))))

    def decode_call(self, data: Buffer) -> EnumValue:
        """Decode a RuntimeCall; a call nested too deeply (Sudo in Sudo in ...) is an error."""
        try:
            value: EnumValue = self.call_codec.decode(data)
        except RecursionError:
            # scale.py's codecs recurse per nesting level and have no depth limit of their own
            raise ScaleDecodeError("RuntimeCall: calls nested too deeply") from None
        return value

    def module_error(self, index: int, error: Buffer) -> tuple[str, str]:
        """(pallet, error name) of a `DispatchError::Module { index, error }`."""
        pallet = self.pallet_by_index(index)
        enum = resolve(pallet.error) if pallet.error is not None else None
        variant = getattr(enum, "by_index", {}).get(error[0] if len(error) else -1)
        if variant is None:
            raise KeyError(f"pallet {pallet.name} has no error {bytes(error).hex()}")
        return pallet.name, variant.name


# ---------------------------------------------------------------------------------------------
# Decoding


@dataclass
class _RawEntry:
    name: str
    modifier: str
    hashers: tuple[str, ...]
    key: int | None
    value: int
    default: bytes
    docs: tuple[str, ...]


@dataclass
class _RawPallet:
    name: str
    storage_prefix: str | None
    entries: list[_RawEntry]
    calls: int | None
    event: int | None
    constants: list[tuple[str, int, bytes, tuple[str, ...]]]
    error: int | None
    index: int


def decode_metadata_v14(
    data: Buffer,
    *,
    max_types: int = MAX_TYPES,
    max_depth: int = MAX_TYPE_DEPTH,
    struct_classes: StructClasses | None = None,
) -> RuntimeMetadata:
    """Decode b"meta" ++ 0x0e ++ SCALE(RuntimeMetadataV14) exactly.

    `struct_classes` maps a struct's path ("frame_system::AccountInfo") to a class called with
    its fields as keywords, for callers that want e.g. dataclasses instead of dicts.
    Raises MalformedMetadata for bytes that are not valid SCALE and MetadataError for metadata
    that is inconsistent or beyond the limits.
    """
    if len(data) < 5 or bytes(data[:4]) != MAGIC:
        raise MalformedMetadata("metadata must start with the magic 'meta' and a version byte")
    if data[4] != V14:
        raise MetadataError(f"metadata version {data[4]} is not supported (only 14)")
    r = Reader(data, 5)
    types = read_portable_registry(r, max_types)
    raw_pallets = [_read_pallet(r, i) for i in range(r.count())]
    r.where = "extrinsic"
    extrinsic_type = r.type_id()
    extrinsic_version = r.u8()
    extensions = []
    for _ in range(r.count()):
        identifier = r.text()
        extensions.append((identifier, r.type_id(), r.type_id()))
    r.where = "runtime type"
    runtime_type = r.type_id()
    if not r.at_end():
        raise MalformedMetadata(f"{len(data) - r.pos} trailing byte(s) after the metadata")

    n = len(types)

    def check(ty: int | None, what: str) -> None:
        if ty is not None and ty >= n:
            raise MetadataError(f"{what} refers to type {ty}, but there are only {n}")

    for p in raw_pallets:
        for e in p.entries:
            check(e.key, f"{p.name}.{e.name} key")
            check(e.value, f"{p.name}.{e.name} value")
        for what in ("calls", "event", "error"):
            ty = getattr(p, what)
            check(ty, f"pallet {p.name} {what}")
            if ty is not None and not isinstance(types[ty].type_def, VariantTypeDef):
                raise MetadataError(f"pallet {p.name}: {what} type {ty} is not an enum")
        for cname, cty, _, _ in p.constants:
            check(cty, f"{p.name}.{cname}")
    check(extrinsic_type, "extrinsic")
    for identifier, ty, add in extensions:
        check(ty, f"signed extension {identifier}")
        check(add, f"signed extension {identifier}")
    check(runtime_type, "runtime type")
    _check_unique(raw_pallets, extensions)

    codecs = build_codecs(types, max_depth=max_depth, struct_classes=struct_classes)
    pallets = [_pallet(p, codecs) for p in raw_pallets]

    call_type = _find_call_type(types, extrinsic_type)
    event_type = _find_event_type(types)
    if call_type is not None:
        _check_outer(types, call_type, "RuntimeCall", raw_pallets, "calls")
    if event_type is not None:
        _check_outer(types, event_type, "RuntimeEvent", raw_pallets, "event")
    events_type = None
    for p in raw_pallets:
        if p.name == "System":
            events_type = next(
                (e.value for e in p.entries if e.name == "Events" and e.key is None), None
            )

    return RuntimeMetadata(
        portable_types=types,
        types=codecs,
        pallets=pallets,
        extrinsic_type=extrinsic_type,
        extrinsic_version=extrinsic_version,
        signed_extensions=[
            SignedExtension(identifier, codecs[ty], codecs[add], ty, add)
            for identifier, ty, add in extensions
        ],
        runtime_type=runtime_type,
        call_type=call_type,
        event_type=event_type,
        events_type=events_type,
    )


def _read_pallet(r: Reader, i: int) -> _RawPallet:
    r.where = f"pallet {i}"
    name = r.text()
    r.where = f"pallet {name}"
    prefix: str | None = None
    entries: list[_RawEntry] = []
    if r.flag():
        prefix = r.text()
        for _ in range(r.count()):
            entries.append(_read_entry(r, name))
    r.where = f"pallet {name}"
    calls = r.opt_type_id()
    event = r.opt_type_id()
    constants = []
    for _ in range(r.count()):
        cname = r.text()
        constants.append((cname, r.type_id(), r.raw(), r.texts()))
    error = r.opt_type_id()
    index = r.u8()
    return _RawPallet(name, prefix, entries, calls, event, constants, error, index)


def _read_entry(r: Reader, pallet: str) -> _RawEntry:
    name = r.text()
    r.where = f"storage {pallet}.{name}"
    modifier = r.u8()
    if modifier >= len(MODIFIER_NAMES):
        r.pos -= 1
        raise r.fail(f"invalid storage modifier {modifier}")
    kind = r.u8()
    hashers: tuple[str, ...] = ()
    key: int | None = None
    if kind == 0:
        value = r.type_id()
    elif kind == 1:
        names = []
        for _ in range(r.count()):
            code = r.u8()
            if code not in HASHER_NAMES:
                r.pos -= 1
                raise r.fail(f"unknown storage hasher {code}")
            names.append(HASHER_NAMES[code])
        if not names:
            raise MetadataError(f"{pallet}.{name}: a storage map needs at least one hasher")
        hashers = tuple(names)
        key = r.type_id()
        value = r.type_id()
    else:
        r.pos -= 1
        raise r.fail(f"invalid storage entry type {kind}")
    default = r.raw()
    docs = r.texts()
    return _RawEntry(name, MODIFIER_NAMES[modifier], hashers, key, value, default, docs)


def _check_unique(
    pallets: Sequence[_RawPallet], extensions: Sequence[tuple[str, int, int]]
) -> None:
    names: set[str] = set()
    indices: set[int] = set()
    for p in pallets:
        if p.name in names or p.index in indices:
            raise MetadataError(f"pallet {p.name}: duplicate pallet name or index {p.index}")
        names.add(p.name)
        indices.add(p.index)
        entry_names = [e.name for e in p.entries]
        if len(set(entry_names)) != len(entry_names):
            raise MetadataError(f"pallet {p.name}: duplicate storage entry names")
        constant_names = [c[0] for c in p.constants]
        if len(set(constant_names)) != len(constant_names):
            raise MetadataError(f"pallet {p.name}: duplicate constant names")
    identifiers = [e[0] for e in extensions]
    if len(set(identifiers)) != len(identifiers):
        raise MetadataError(f"duplicate signed extension in {identifiers}")


def _pallet(p: _RawPallet, codecs: Sequence[Codec]) -> PalletMetadata:
    prefix = p.storage_prefix or ""
    pallet_hash = twox128(prefix.encode())
    entries: dict[str, StorageEntry] = {}
    for e in p.entries:
        key_codec = None if e.key is None else codecs[e.key]
        keys: tuple[Codec, ...] = ()
        if key_codec is not None:
            keys = (key_codec,)
            if len(e.hashers) > 1:
                items = getattr(resolve(key_codec), "items", None)
                if resolve(key_codec).kind != "tuple" or len(items or ()) != len(e.hashers):
                    raise MetadataError(
                        f"{p.name}.{e.name}: {len(e.hashers)} hashers need a tuple key "
                        "of as many items"
                    )
                keys = tuple(items or ())
        entries[e.name] = StorageEntry(
            pallet_prefix=prefix,
            name=e.name,
            modifier=e.modifier,
            hashers=e.hashers,
            key_codec=key_codec,
            keys=keys,
            value=codecs[e.value],
            default=e.default,
            docs=e.docs,
            prefix=pallet_hash + twox128(e.name.encode()),
            _hash_fns=tuple(HASHERS[h] for h in e.hashers),
        )
    return PalletMetadata(
        name=p.name,
        index=p.index,
        storage_prefix=p.storage_prefix,
        storage_entries=entries,
        calls=None if p.calls is None else codecs[p.calls],
        event=None if p.event is None else codecs[p.event],
        error=None if p.error is None else codecs[p.error],
        constants={
            name: Constant(name, codecs[ty], value, docs) for name, ty, value, docs in p.constants
        },
        calls_type=p.calls,
        event_type=p.event,
        error_type=p.error,
    )


def _find_call_type(types: Sequence[PortableType], extrinsic_type: int) -> int | None:
    for param in types[extrinsic_type].params:
        if param.name == "Call" and param.ty is not None:
            return param.ty
    return _unique_outer(types, "RuntimeCall")


def _find_event_type(types: Sequence[PortableType]) -> int | None:
    for t in types:
        if t.path == EVENT_RECORD_PATH:
            for param in t.params:
                if param.name == "E" and param.ty is not None:
                    return param.ty
    return _unique_outer(types, "RuntimeEvent")


def _unique_outer(types: Sequence[PortableType], name: str) -> int | None:
    found = [t.id for t in types if len(t.path) == 2 and t.path[1] == name]
    return found[0] if len(found) == 1 else None


def _check_outer(
    types: Sequence[PortableType],
    type_id: int,
    label: str,
    pallets: Sequence[_RawPallet],
    what: str,
) -> None:
    """The outer enum has one variant per pallet with calls/events, at the pallet's index and
    named like it, wrapping exactly that pallet's enum: pallet_by_index relies on it."""
    d = types[type_id].type_def
    if not isinstance(d, VariantTypeDef):
        raise MetadataError(f"{label} (type {type_id}) is not an enum")
    variants = {v.index: v for v in d.variants}
    expected = {p.index: p for p in pallets if getattr(p, what) is not None}
    if set(variants) != set(expected):
        raise MetadataError(
            f"{label} variant indices {sorted(variants)} differ from the pallets' {sorted(expected)}"
        )
    for index, p in expected.items():
        v = variants[index]
        if v.name != p.name or [f.ty for f in v.fields] != [getattr(p, what)]:
            raise MetadataError(
                f"{label} variant {v.name!r} at {index} must wrap exactly pallet {p.name}'s {what}"
            )
