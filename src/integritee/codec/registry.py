"""Portable type registry (scale-info v1 `PortableRegistry`) derived from codec descriptors.

Owns the translation of `Codec` descriptors into the type table of metadata V14: each distinct
type gets an id 0..N-1 in registration order, and `encode()` yields the SCALE bytes of
`Vec<PortableType>` exactly as Substrate clients (py-substrate-interface/scalecodec, polkadot.js)
read them.

A descriptor takes part through its `kind` and attributes, so codecs defined elsewhere work too:
  primitive -> `name` (bool, char, str, u8..u256, i8..i256)
  compact   -> `inner`                      sequence -> `inner`
  array     -> `inner`, `length`            tuple    -> `items` (unit = empty tuple)
  composite -> `fields` (Struct: named; Newtype: one unnamed field)
  variant   -> `variants` (Enum, Option, Result)
plus `path`, `params` ((name, Codec | None) pairs) and `docs` on every kind.

Deduplication is structural: two descriptors that would emit the same entry share one id. The
structural key is computed here rather than with `Codec.type_key()` because that method recurses
without bound on recursive types (RuntimeCall -> Sudo::Call -> Lazy(RuntimeCall)); here a reference
back to a type already on the walk becomes a relative back-reference, so recursive types get a
finite, canonical key. An id is reserved before a type's children are registered, so a `Lazy` that
resolves to a type being registered refers to that type's id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from integritee.codec import scale
from integritee.codec.scale import Codec, encode_compact, resolve


class RegistryError(ValueError):
    """A descriptor cannot be expressed in a portable registry."""


PRIMITIVES: dict[str, int] = {
    name: i
    for i, name in enumerate(
        (
            "bool",
            "char",
            "str",
            "u8",
            "u16",
            "u32",
            "u64",
            "u128",
            "u256",
            "i8",
            "i16",
            "i32",
            "i64",
            "i128",
            "i256",
        )
    )
}


# ---------------------------------------------------------------------------------------------
# The emitted table


@dataclass(frozen=True)
class TypeParam:
    name: str
    ty: int | None


@dataclass(frozen=True)
class FieldDef:
    name: str | None
    ty: int
    type_name: str | None
    docs: tuple[str, ...] = ()


@dataclass(frozen=True)
class VariantDef:
    name: str
    fields: tuple[FieldDef, ...]
    index: int
    docs: tuple[str, ...] = ()


@dataclass(frozen=True)
class CompositeDef:
    fields: tuple[FieldDef, ...]


@dataclass(frozen=True)
class VariantTypeDef:
    variants: tuple[VariantDef, ...]


@dataclass(frozen=True)
class SequenceDef:
    ty: int


@dataclass(frozen=True)
class ArrayDef:
    length: int
    ty: int


@dataclass(frozen=True)
class TupleDef:
    items: tuple[int, ...]


@dataclass(frozen=True)
class PrimitiveDef:
    name: str


@dataclass(frozen=True)
class CompactDef:
    ty: int


TypeDef = (
    CompositeDef | VariantTypeDef | SequenceDef | ArrayDef | TupleDef | PrimitiveDef | CompactDef
)


@dataclass(frozen=True)
class PortableType:
    id: int
    path: tuple[str, ...]
    params: tuple[TypeParam, ...]
    type_def: TypeDef
    docs: tuple[str, ...] = ()

    def encode_into(self, out: bytearray) -> None:
        out += encode_compact(self.id)
        out += encode_compact(len(self.path))
        for segment in self.path:
            _text(segment, out)
        out += encode_compact(len(self.params))
        for p in self.params:
            _text(p.name, out)
            _opt_id(p.ty, out)
        _encode_def(self.type_def, out)
        _texts(self.docs, out)


def _text(s: str, out: bytearray) -> None:
    raw = s.encode()
    out += encode_compact(len(raw))
    out += raw


def _texts(items: Sequence[str], out: bytearray) -> None:
    out += encode_compact(len(items))
    for s in items:
        _text(s, out)


def _opt_text(s: str | None, out: bytearray) -> None:
    if s is None:
        out.append(0)
    else:
        out.append(1)
        _text(s, out)


def _opt_id(ty: int | None, out: bytearray) -> None:
    if ty is None:
        out.append(0)
    else:
        out.append(1)
        out += encode_compact(ty)


def _fields(fields: Sequence[FieldDef], out: bytearray) -> None:
    out += encode_compact(len(fields))
    for f in fields:
        _opt_text(f.name, out)
        out += encode_compact(f.ty)
        _opt_text(f.type_name, out)
        _texts(f.docs, out)


def _encode_def(d: TypeDef, out: bytearray) -> None:
    if isinstance(d, CompositeDef):
        out.append(0)
        _fields(d.fields, out)
    elif isinstance(d, VariantTypeDef):
        out.append(1)
        out += encode_compact(len(d.variants))
        for v in d.variants:
            _text(v.name, out)
            _fields(v.fields, out)
            out.append(v.index)
            _texts(v.docs, out)
    elif isinstance(d, SequenceDef):
        out.append(2)
        out += encode_compact(d.ty)
    elif isinstance(d, ArrayDef):
        out.append(3)
        out += d.length.to_bytes(4, "little")
        out += encode_compact(d.ty)
    elif isinstance(d, TupleDef):
        out.append(4)
        out += encode_compact(len(d.items))
        for ty in d.items:
            out += encode_compact(ty)
    elif isinstance(d, PrimitiveDef):
        out.append(5)
        out.append(PRIMITIVES[d.name])
    else:
        out.append(6)
        out += encode_compact(d.ty)


# ---------------------------------------------------------------------------------------------
# What a descriptor emits, with its referenced types kept apart from the rest


@dataclass(frozen=True)
class _Shape:
    """One descriptor, split into referenced codecs and hashable data that is emitted as is.

    `layout` carries the non-reference part of the definition; `children` are the referenced
    types in the order the layout consumes them. The structural key and the emitted entry both come
    from this one description, so equal keys always mean equal entries.
    """

    tag: str
    path: tuple[str, ...]
    param_names: tuple[str, ...]
    params: tuple[Codec | None, ...]
    layout: Any
    children: tuple[Codec, ...]
    docs: tuple[str, ...]


# Option and Result are built-in generics in scale-info; their fields carry no type name.
_BUILTIN_GENERICS = (scale.Option, scale.Result)


def _field_layout(fields: Sequence[Any], with_names: bool) -> tuple[tuple[Any, ...], ...]:
    for f in fields:
        if not isinstance(f.codec, Codec):
            raise RegistryError(f"field {f.name!r} refers to {f.codec!r}, which is not a Codec")
    return tuple((f.name, f.shown_type_name if with_names else None, tuple(f.docs)) for f in fields)


def _shape(c: Codec) -> _Shape:
    kind = c.kind
    path = tuple(getattr(c, "path", ()) or ())
    raw_params = tuple(getattr(c, "params", ()) or ())
    docs = tuple(getattr(c, "docs", ()) or ())
    what = f"{c!r} (kind {kind!r})"
    try:
        param_names = tuple(str(name) for name, _ in raw_params)
        params = tuple(p for _, p in raw_params)
    except (TypeError, ValueError):
        raise RegistryError(f"{what}: params must be (name, Codec | None) pairs") from None
    layout: Any
    children: tuple[Codec, ...]
    try:
        if kind == "primitive":
            name = getattr(c, "name", None) or c.display_name
            if name not in PRIMITIVES:
                raise RegistryError(f"{what}: unknown primitive {name!r}")
            layout, children = name, ()
        elif kind in ("compact", "sequence"):
            layout, children = None, (c.inner,)  # type: ignore[attr-defined]
        elif kind == "array":
            length = c.length  # type: ignore[attr-defined]
            if not isinstance(length, int) or not 0 <= length < 1 << 32:
                raise RegistryError(f"{what}: array length {length!r} does not fit u32")
            layout, children = length, (c.inner,)  # type: ignore[attr-defined]
        elif kind == "tuple":
            items = tuple(c.items)  # type: ignore[attr-defined]
            layout, children = len(items), items
        elif kind == "composite":
            fields = tuple(c.fields)  # type: ignore[attr-defined]
            layout = _field_layout(fields, True)
            children = tuple(f.codec for f in fields)
        elif kind == "variant":
            with_names = not isinstance(c, _BUILTIN_GENERICS)
            variants = tuple(c.variants)  # type: ignore[attr-defined]
            seen_names: set[str] = set()
            seen_index: set[int] = set()
            vlayout = []
            vchildren: list[Codec] = []
            for v in variants:
                if not isinstance(v.index, int) or not 0 <= v.index <= 255:
                    raise RegistryError(f"{what}: variant {v.name!r} index {v.index!r} is not a u8")
                if v.name in seen_names or v.index in seen_index:
                    raise RegistryError(f"{what}: duplicate variant {v.name!r}/{v.index}")
                seen_names.add(v.name)
                seen_index.add(v.index)
                vlayout.append(
                    (v.name, v.index, tuple(v.docs), _field_layout(v.fields, with_names))
                )
                vchildren.extend(f.codec for f in v.fields)
            layout, children = tuple(vlayout), tuple(vchildren)
        else:
            raise RegistryError(f"{what}: kind cannot be described in metadata")
    except AttributeError as e:
        raise RegistryError(f"{what}: descriptor lacks {e.name or 'an attribute'}") from None
    for child in (*children, *(p for p in params if p is not None)):
        if not isinstance(child, Codec):
            raise RegistryError(f"{what}: refers to {child!r}, which is not a Codec")
    return _Shape(kind, path, param_names, params, layout, children, docs)


# ---------------------------------------------------------------------------------------------
# The registry


class PortableRegistry:
    """Assigns ids to codec descriptors and encodes the resulting `Vec<PortableType>`."""

    def __init__(self) -> None:
        self._types: list[PortableType | None] = []
        self._by_key: dict[int, int] = {}
        # id(codec) -> type id; `_pins` keeps every codec seen alive so no id() is ever reused
        self._by_identity: dict[int, int] = {}
        self._pins: dict[int, Codec] = {}
        # hash-consing of structural keys: each distinct shallow key tuple gets a small int
        self._interned: dict[tuple[Any, ...], int] = {}
        # id(codec) -> interned key of types that lie on no cycle (see _key_walk)
        self._closed_keys: dict[int, int] = {}
        self._depth = 0

    def __len__(self) -> int:
        return len(self._types)

    @property
    def types(self) -> Sequence[PortableType]:
        """The registered types, index == id."""
        return tuple(self._complete())

    def __getitem__(self, type_id: int) -> PortableType:
        t = self._types[type_id]
        if t is None:
            raise RegistryError(f"type {type_id} is still being registered")
        return t

    def id_of(self, codec: Codec) -> int | None:
        """The id of an already registered type (structurally), or None."""
        c = resolve(codec)
        found = self._by_identity.get(id(c))
        if found is not None:
            return found
        return self._by_key.get(self._key(c))

    def register(self, codec: Codec) -> int:
        """Register `codec` (and everything it refers to); returns its type id."""
        if self._depth == 0:
            mark = len(self._types)
            self._depth = 1
            try:
                return self._register(codec)
            except BaseException:
                self._rollback(mark)
                raise
            finally:
                self._depth = 0
        return self._register(codec)

    def encode(self) -> bytes:
        out = bytearray()
        self.encode_into(out)
        return bytes(out)

    def encode_into(self, out: bytearray) -> None:
        types = self._complete()
        out += encode_compact(len(types))
        for t in types:
            t.encode_into(out)

    # --- internals

    def _complete(self) -> list[PortableType]:
        done: list[PortableType] = []
        for i, t in enumerate(self._types):
            if t is None:
                raise RegistryError(f"type {i} is still being registered")
            done.append(t)
        return done

    def _register(self, codec: Codec) -> int:
        if not isinstance(codec, Codec):
            raise RegistryError(f"{codec!r} is not a Codec")
        c = resolve(codec)
        found = self._by_identity.get(id(c))
        if found is not None:
            return found
        key = self._key(c)
        found = self._by_key.get(key)
        if found is not None:
            self._remember(c, found)
            return found
        type_id = len(self._types)
        # reserve first: children that lead back to this type (via Lazy) find this id
        self._types.append(None)
        self._by_key[key] = type_id
        self._remember(c, type_id)
        shape = _shape(c)
        params = tuple(
            TypeParam(name, None if p is None else self._register(p))
            for name, p in zip(shape.param_names, shape.params, strict=True)
        )
        child_ids = [self._register(child) for child in shape.children]
        self._types[type_id] = PortableType(
            type_id, shape.path, params, _build_def(shape, child_ids), shape.docs
        )
        return type_id

    def _remember(self, c: Codec, type_id: int) -> None:
        self._by_identity[id(c)] = type_id
        self._pins[id(c)] = c

    def _rollback(self, mark: int) -> None:
        del self._types[mark:]
        self._by_key = {k: v for k, v in self._by_key.items() if v < mark}
        self._by_identity = {k: v for k, v in self._by_identity.items() if v < mark}

    def _key(self, c: Codec) -> int:
        return self._key_walk(c, {})[0]

    def _intern(self, key: tuple[Any, ...]) -> int:
        found = self._interned.get(key)
        if found is None:
            found = len(self._interned)
            self._interned[key] = found
        return found

    def _key_walk(self, codec: Codec, on_walk: dict[int, int]) -> tuple[int, int]:
        """(interned key, walk depth of the highest type the key refers back to).

        Keys are canonical: a walk from the type, cutting each cycle where it first comes back.
        Only types outside any cycle have their key cached, because a cycle member's key depends
        on where the walk entered the cycle.
        """
        c = resolve(codec)
        ident = id(c)
        depth = len(on_walk)
        at = on_walk.get(ident)
        if at is not None:
            # relative back-reference: the same for every walk that enters the cycle alike
            return self._intern(("rec", depth - at)), at
        cached = self._closed_keys.get(ident)
        if cached is not None:
            return cached, depth + 1
        shape = _shape(c)
        on_walk[ident] = depth
        highest = depth + 1
        try:
            param_keys: list[int | None] = []
            for p in shape.params:
                if p is None:
                    param_keys.append(None)
                else:
                    k, ref = self._key_walk(p, on_walk)
                    param_keys.append(k)
                    highest = min(highest, ref)
            child_keys = []
            for child in shape.children:
                k, ref = self._key_walk(child, on_walk)
                child_keys.append(k)
                highest = min(highest, ref)
        finally:
            del on_walk[ident]
        key = self._intern(
            (
                shape.tag,
                shape.path,
                shape.param_names,
                tuple(param_keys),
                shape.layout,
                tuple(child_keys),
                shape.docs,
            )
        )
        if highest > depth:
            # no path from here leads back to this type or above: not on a cycle
            self._closed_keys[ident] = key
            self._pins[ident] = c
        return key, highest


def _build_def(shape: _Shape, child_ids: Sequence[int]) -> TypeDef:
    ids: Iterator[int] = iter(child_ids)
    tag = shape.tag
    if tag == "primitive":
        return PrimitiveDef(shape.layout)
    if tag == "compact":
        return CompactDef(next(ids))
    if tag == "sequence":
        return SequenceDef(next(ids))
    if tag == "array":
        return ArrayDef(shape.layout, next(ids))
    if tag == "tuple":
        return TupleDef(tuple(ids))
    if tag == "composite":
        return CompositeDef(tuple(FieldDef(n, next(ids), tn, d) for n, tn, d in shape.layout))
    return VariantTypeDef(
        tuple(
            VariantDef(
                name, tuple(FieldDef(n, next(ids), tn, d) for n, tn, d in fields), index, docs
            )
            for name, index, docs, fields in shape.layout
        )
    )
