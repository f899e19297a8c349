"""Codec descriptors from a portable type registry: the inverse of `registry.py`.

Owns reading the `Vec<PortableType>` of metadata V14 (into registry.py's own `PortableType` /
`*Def` dataclasses) and turning that table into the project's `Codec` descriptors, one per type id,
so that values decoded through them equal the values the project's hand-declared codecs produce:

  Composite, named fields      -> Struct (dict values, or `struct_classes[path](**fields)`)
  Composite, one unnamed field -> Newtype (transparent: AccountId32 is its 32 bytes)
  Composite, other             -> Struct (no fields: {}; several unnamed: {"0": .., "1": ..})
  Variant "Option"/"Result"    -> Option (None or the value) / Result, by path and shape
  Variant, other               -> Enum (EnumValue values)
  Sequence of u8 / Array of u8 -> Bytes / FixedBytes (bytes values); other -> Vec / Array
                                  (ZeroSizeVec when the items may encode to no bytes)
  Tuple, Compact, Primitive    -> Tuple (`()` is `scale.unit`), Compact, u8..u256/i8..i256/...
  BitSequence                  -> UnsupportedCodec (the table still loads; using it raises)

Descriptors carry the table's paths, params, docs, field type names and variant docs, so feeding
them back to `PortableRegistry` re-emits the same entries. Recursive types are cut with `Lazy` on
the back-edge only; every other reference is the target codec itself.

The table may be hostile (it comes from a chain), so the work is bounded: at most `max_types`
types, every reference checked, nesting at most `max_depth` (the walkers of descriptors recurse),
no type that can only be infinitely large, and no array or Vec of zero-sized items whose length
would let a few input bytes cost unbounded decoding work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from integritee.codec import scale
from integritee.codec.metadata import MetadataError
from integritee.codec.registry import (
    PRIMITIVES,
    ArrayDef,
    CompactDef,
    CompositeDef,
    FieldDef,
    PortableType,
    PrimitiveDef,
    SequenceDef,
    TupleDef,
    TypeDef,
    TypeParam,
    VariantDef,
    VariantTypeDef,
)
from integritee.codec.scale import (
    Buffer,
    Codec,
    Field,
    Lazy,
    ScaleDecodeError,
    ScaleEncodeError,
    Variant,
    decode_compact,
)

MAX_TYPES = 1 << 16
MAX_TYPE_DEPTH = 128
# Decoding a zero-sized element consumes no input, so its count must be capped separately.
MAX_ZERO_SIZE_ITEMS = 1 << 16


class MalformedMetadata(MetadataError, ScaleDecodeError):
    """The bytes are not valid SCALE for metadata (truncated, bad tag, bad UTF-8, ...)."""


@dataclass(frozen=True)
class BitSequenceDef:
    """TypeDef 7: a `BitVec<store, order>`; read and kept, not decodable by this project."""

    store: int
    order: int


AnyTypeDef = TypeDef | BitSequenceDef

PRIMITIVE_NAMES: tuple[str, ...] = tuple(PRIMITIVES)


# ---------------------------------------------------------------------------------------------
# Reading SCALE


class Reader:
    """A cursor over metadata bytes; every read checks the input and raises MalformedMetadata."""

    __slots__ = ("data", "pos", "where")

    def __init__(self, data: Buffer, pos: int = 0) -> None:
        self.data = data
        self.pos = pos
        self.where = "metadata"

    def fail(self, message: str) -> MalformedMetadata:
        return MalformedMetadata(f"{self.where} (byte {self.pos}): {message}")

    def u8(self) -> int:
        pos = self.pos
        if pos >= len(self.data):
            raise self.fail("unexpected end of input")
        self.pos = pos + 1
        return self.data[pos]

    def u32(self) -> int:
        end = self.pos + 4
        if end > len(self.data):
            raise self.fail("unexpected end of input")
        v = int.from_bytes(self.data[self.pos : end], "little")
        self.pos = end
        return v

    def compact(self) -> int:
        try:
            v, self.pos = decode_compact(self.data, self.pos)
        except ScaleDecodeError as e:
            raise self.fail(str(e)) from None
        return v

    def type_id(self) -> int:
        v = self.compact()
        if v >= 1 << 32:
            raise self.fail(f"type id {v} does not fit u32")
        return v

    def count(self) -> int:
        """A Vec length; every item of metadata takes at least one byte."""
        n = self.compact()
        if n > len(self.data) - self.pos:
            raise self.fail(f"length {n} exceeds the remaining input")
        return n

    def raw(self) -> bytes:
        n = self.count()
        end = self.pos + n
        out = bytes(self.data[self.pos : end])
        self.pos = end
        return out

    def text(self) -> str:
        start = self.pos
        raw = self.raw()
        try:
            return raw.decode()
        except UnicodeDecodeError as e:
            self.pos = start
            raise self.fail(f"invalid UTF-8 text ({e.reason})") from None

    def texts(self) -> tuple[str, ...]:
        return tuple(self.text() for _ in range(self.count()))

    def flag(self) -> bool:
        """The tag of an Option."""
        tag = self.u8()
        if tag > 1:
            self.pos -= 1
            raise self.fail(f"invalid Option tag {tag}")
        return tag == 1

    def opt_text(self) -> str | None:
        return self.text() if self.flag() else None

    def opt_type_id(self) -> int | None:
        return self.type_id() if self.flag() else None

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def _read_fields(r: Reader) -> tuple[FieldDef, ...]:
    return tuple(
        FieldDef(r.opt_text(), r.type_id(), r.opt_text(), r.texts()) for _ in range(r.count())
    )


def _read_def(r: Reader) -> AnyTypeDef:
    tag = r.u8()
    if tag == 0:
        return CompositeDef(_read_fields(r))
    if tag == 1:
        variants = []
        for _ in range(r.count()):
            name = r.text()
            fields = _read_fields(r)
            variants.append(VariantDef(name, fields, r.u8(), r.texts()))
        return VariantTypeDef(tuple(variants))
    if tag == 2:
        return SequenceDef(r.type_id())
    if tag == 3:
        length = r.u32()
        return ArrayDef(length, r.type_id())
    if tag == 4:
        return TupleDef(tuple(r.type_id() for _ in range(r.count())))
    if tag == 5:
        code = r.u8()
        if code >= len(PRIMITIVE_NAMES):
            r.pos -= 1
            raise r.fail(f"unknown primitive type code {code}")
        return PrimitiveDef(PRIMITIVE_NAMES[code])
    if tag == 6:
        return CompactDef(r.type_id())
    if tag == 7:
        store = r.type_id()
        return BitSequenceDef(store, r.type_id())
    r.pos -= 1
    raise r.fail(f"unknown TypeDef variant {tag}")


def read_portable_registry(r: Reader, max_types: int = MAX_TYPES) -> list[PortableType]:
    """Read `Vec<PortableType>`; ids must be 0..N-1 in order and every reference below N."""
    n = r.count()
    if n > max_types:
        raise MetadataError(f"metadata declares {n} types, more than the limit {max_types}")
    types: list[PortableType] = []
    for i in range(n):
        r.where = f"type {i}"
        type_id = r.compact()
        if type_id != i:
            raise MetadataError(f"type entry {i} has id {type_id}: ids must be 0..N-1 in order")
        path = r.texts()
        params = tuple(TypeParam(r.text(), r.opt_type_id()) for _ in range(r.count()))
        type_def = _read_def(r)
        docs = r.texts()
        types.append(PortableType(i, path, params, cast(TypeDef, type_def), docs))
    r.where = "metadata"
    for t in types:
        for ref in _references(t):
            if ref >= n:
                raise MetadataError(f"type {t.id} refers to type {ref}, but there are only {n}")
    return types


def _def_children(d: AnyTypeDef) -> list[int]:
    if isinstance(d, CompositeDef):
        return [f.ty for f in d.fields]
    if isinstance(d, VariantTypeDef):
        return [f.ty for v in d.variants for f in v.fields]
    if isinstance(d, SequenceDef | CompactDef):
        return [d.ty]
    if isinstance(d, ArrayDef):
        return [d.ty]
    if isinstance(d, TupleDef):
        return list(d.items)
    if isinstance(d, BitSequenceDef):
        return [d.store, d.order]
    return []


def _references(t: PortableType) -> list[int]:
    return [p.ty for p in t.params if p.ty is not None] + _def_children(t.type_def)


def _unguarded_children(d: AnyTypeDef) -> list[int]:
    """References that decoding follows before consuming any byte of its own."""
    if isinstance(d, CompositeDef):
        return [f.ty for f in d.fields]
    if isinstance(d, TupleDef):
        return list(d.items)
    if isinstance(d, ArrayDef) and d.length > 0:
        return [d.ty]
    return []


# ---------------------------------------------------------------------------------------------
# Codecs that the project does not declare elsewhere


class CharCodec(Codec):
    """Rust `char`: a Unicode scalar value as u32; the Python value is a one-character str."""

    kind = "primitive"
    name = "char"

    @property
    def display_name(self) -> str:
        return "char"

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, str) or len(value) != 1 or 0xD800 <= ord(value) <= 0xDFFF:
            raise ScaleEncodeError(f"char: {value!r} is not one Unicode scalar value")
        out += ord(value).to_bytes(4, "little")

    def decode_from(self, data: Buffer, pos: int) -> tuple[str, int]:
        end = pos + 4
        if end > len(data):
            raise ScaleDecodeError("char: unexpected end of input")
        v = int.from_bytes(data[pos:end], "little")
        if v > 0x10FFFF or 0xD800 <= v <= 0xDFFF:
            raise ScaleDecodeError(f"char: {v:#x} is not a Unicode scalar value")
        return chr(v), end

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("prim", "char")


class UnsupportedCodec(Codec):
    """A type the project cannot represent (BitSequence): loading works, using it raises."""

    kind = "unsupported"

    def __init__(self, type_id: int, path: tuple[str, ...], reason: str) -> None:
        self.type_id = type_id
        self.path = path
        self.reason = reason

    @property
    def display_name(self) -> str:
        return self.path[-1] if self.path else f"type {self.type_id}"

    def encode_into(self, value: Any, out: bytearray) -> None:
        raise ScaleEncodeError(f"type {self.type_id} ({self.display_name}): {self.reason}")

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        raise ScaleDecodeError(f"type {self.type_id} ({self.display_name}): {self.reason}")

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("unsupported", self.type_id)


class ZeroSizeVec(scale.Vec):
    """`Vec<T>` of a type that may encode to no bytes (`()`, `[u8; 0]`, an empty struct).

    Such items cost no input, so the count cannot be checked against the remaining bytes (and
    must not be: `Vec<()>` of 5 is the single byte 0x14); it is capped instead.
    """

    def __init__(self, inner: Codec, max_items: int = MAX_ZERO_SIZE_ITEMS) -> None:
        super().__init__(inner)
        self.max_items = max_items

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        n, pos = decode_compact(data, pos)
        if n > self.max_items:
            raise ScaleDecodeError(
                f"{self.display_name}: {n} zero-sized items exceed the limit {self.max_items}"
            )
        if self.inner is scale.unit:
            return [()] * n, pos
        dec = self.inner.decode_from
        items = []
        for _ in range(n):
            item, pos = dec(data, pos)
            items.append(item)
        return items, pos


_FIXED_PRIMITIVES: dict[str, Codec] = {
    "bool": scale.boolean,
    "char": CharCodec(),
    "str": scale.text,
    "u8": scale.u8,
    "u16": scale.u16,
    "u32": scale.u32,
    "u64": scale.u64,
    "u128": scale.u128,
    "u256": scale.u256,
    "i8": scale.i8,
    "i16": scale.i16,
    "i32": scale.i32,
    "i64": scale.i64,
    "i128": scale.i128,
    "i256": scale.SInt(256),
}
_PRIMITIVE_SIZE: dict[str, int] = {
    "bool": 1,
    "char": 4,
    "str": 1,
    **{f"{s}{b}": b // 8 for s in "ui" for b in (8, 16, 32, 64, 128, 256)},
}


# ---------------------------------------------------------------------------------------------
# Building codecs


StructClasses = Mapping[str, Callable[..., Any]]


def build_codecs(
    types: Sequence[PortableType],
    *,
    max_depth: int = MAX_TYPE_DEPTH,
    struct_classes: StructClasses | None = None,
) -> list[Codec]:
    """One codec per type id (index == id). Raises MetadataError for a table that cannot be
    turned into usable codecs (infinitely large types, nesting beyond `max_depth`, duplicate
    variant names or indices, ...)."""
    min_sizes = _min_sizes(types)
    return _Builder(types, min_sizes, max_depth, struct_classes or {}).build_all()


def _min_sizes(types: Sequence[PortableType]) -> list[int]:
    """A lower bound of each type's encoded size (0: decoding may consume nothing).

    Walks only the references that decoding follows before consuming a byte of its own (struct
    fields, tuple items, array elements). A cycle among those is a type containing itself, which
    has no finite value and would make decoding recurse forever: it is rejected. Without such
    cycles that graph is acyclic, so every size is known once its references are done.
    """
    n = len(types)
    state = bytearray(n)  # 0 new, 1 on the walk, 2 done
    sizes = [0] * n
    children = [_unguarded_children(t.type_def) for t in types]
    for root in range(n):
        if state[root]:
            continue
        state[root] = 1
        stack: list[tuple[int, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            kids = children[node]
            if i == len(kids):
                state[node] = 2
                stack.pop()
                sizes[node] = _own_min_size(types[node].type_def, sizes)
                continue
            stack[-1] = (node, i + 1)
            child = kids[i]
            if state[child] == 1:
                raise MetadataError(f"type {child} contains itself: it has no finite encoding")
            if state[child] == 0:
                state[child] = 1
                stack.append((child, 0))
    return sizes


def _own_min_size(d: AnyTypeDef, sizes: Sequence[int]) -> int:
    cap = 1 << 40
    if isinstance(d, PrimitiveDef):
        return _PRIMITIVE_SIZE[d.name]
    if isinstance(d, CompositeDef):
        return min(sum(sizes[f.ty] for f in d.fields), cap)
    if isinstance(d, TupleDef):
        return min(sum(sizes[t] for t in d.items), cap)
    if isinstance(d, ArrayDef):
        return min(d.length * sizes[d.ty], cap)
    # variants, sequences, compacts and bit sequences start with at least one byte
    return 1


class _Builder:
    def __init__(
        self,
        types: Sequence[PortableType],
        min_sizes: list[int],
        max_depth: int,
        struct_classes: StructClasses,
    ) -> None:
        self.types = types
        self.max_depth = max_depth
        self.struct_classes = struct_classes
        n = len(types)
        self.codecs: list[Codec | None] = [None] * n
        self.height = [0] * n
        self.min_size = min_sizes
        self.on_walk = bytearray(n)
        self.lazies: dict[int, Lazy] = {}
        self.refs = [_references(t) for t in types]

    def build_all(self) -> list[Codec]:
        for root in range(len(self.types)):
            if self.codecs[root] is None:
                self._walk(root)
        return cast(list[Codec], self.codecs)

    def _walk(self, root: int) -> None:
        """Post-order walk without recursion: children first, back-edges become Lazy."""
        refs = self.refs
        self.on_walk[root] = 1
        stack: list[tuple[int, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            kids = refs[node]
            if i < len(kids):
                stack[-1] = (node, i + 1)
                child = kids[i]
                if self.codecs[child] is None and not self.on_walk[child]:
                    if len(stack) >= self.max_depth:
                        raise MetadataError(
                            f"type {root} nests deeper than {self.max_depth} levels (via {child})"
                        )
                    self.on_walk[child] = 1
                    stack.append((child, 0))
                continue
            stack.pop()
            self.on_walk[node] = 0
            height = 1 + max((self.height[k] for k in kids), default=0)
            if height > self.max_depth:
                raise MetadataError(f"type {node} nests deeper than {self.max_depth} levels")
            self.height[node] = height
            self.codecs[node] = self._build(self.types[node])

    def _ref(self, type_id: int) -> Codec:
        codec = self.codecs[type_id]
        if codec is not None:
            return codec
        lazy = self.lazies.get(type_id)
        if lazy is None:
            codecs = self.codecs

            def target(type_id: int = type_id) -> Codec:
                c = codecs[type_id]
                assert c is not None  # every type is built before any codec is used
                return c

            lazy = self.lazies[type_id] = Lazy(target)
        return lazy

    def _field(self, f: FieldDef) -> Field:
        return Field(f.name, self._ref(f.ty), f.type_name, f.docs)

    def _build(self, t: PortableType) -> Codec:
        d: AnyTypeDef = t.type_def
        try:
            codec = self._build_def(t, d)
        except MetadataError:
            raise
        except ValueError as e:  # the descriptors' own consistency checks
            raise MetadataError(f"type {t.id} ({'::'.join(t.path) or 'unnamed'}): {e}") from None
        if t.params and not isinstance(codec, scale.Option | scale.Result):
            codec.params = tuple(
                (p.name, None if p.ty is None else self._ref(p.ty)) for p in t.params
            )
        return codec

    def _build_def(self, t: PortableType, d: AnyTypeDef) -> Codec:
        types = self.types
        if isinstance(d, PrimitiveDef):
            return _FIXED_PRIMITIVES[d.name]
        if isinstance(d, CompactDef):
            return scale.Compact(self._ref(d.ty))
        if isinstance(d, SequenceDef):
            elem = types[d.ty].type_def
            if elem == PrimitiveDef("u8"):
                return scale.Bytes
            inner = self._ref(d.ty)
            if self.min_size[d.ty] == 0:
                return ZeroSizeVec(inner)
            return scale.Vec(inner)
        if isinstance(d, ArrayDef):
            if types[d.ty].type_def == PrimitiveDef("u8"):
                return scale.FixedBytes(d.length)
            if self.min_size[d.ty] == 0 and d.length > MAX_ZERO_SIZE_ITEMS:
                raise MetadataError(
                    f"type {t.id}: array of {d.length} zero-sized items exceeds the limit"
                )
            return scale.Array(self._ref(d.ty), d.length)
        if isinstance(d, TupleDef):
            if not d.items:
                return scale.unit
            return scale.Tuple(*(self._ref(i) for i in d.items))
        if isinstance(d, CompositeDef):
            return self._composite(t, d)
        if isinstance(d, VariantTypeDef):
            return self._variant(t, d)
        return UnsupportedCodec(t.id, t.path, "BitSequence types are not supported")

    def _composite(self, t: PortableType, d: CompositeDef) -> Codec:
        fields = d.fields
        if len(fields) == 1 and fields[0].name is None:
            f = fields[0]
            newtype = scale.Newtype(t.path, self._ref(f.ty), f.type_name)
            newtype.fields = (self._field(f),)
            newtype.docs = t.docs
            return newtype
        names = [f.name for f in fields if f.name is not None]
        if len(set(names)) != len(names):
            raise MetadataError(f"type {t.id}: duplicate field names {names}")
        cls = self.struct_classes.get("::".join(t.path)) if names else None
        return scale.Struct(t.path, [self._field(f) for f in fields], cls=cls, docs=t.docs)

    def _variant(self, t: PortableType, d: VariantTypeDef) -> Codec:
        vs = d.variants
        param_names = tuple(p.name for p in t.params)
        if t.path == ("Option",) and param_names == ("T",) and len(vs) == 2:
            none, some = sorted(vs, key=lambda v: v.index)
            if (
                (none.name, none.index, none.fields) == ("None", 0, ())
                and (some.name, some.index) == ("Some", 1)
                and len(some.fields) == 1
                and some.fields[0].name is None
                and t.params[0].ty == some.fields[0].ty
            ):
                option = scale.Option(self._ref(some.fields[0].ty))
                option.docs = t.docs
                return option
        if t.path == ("Result",) and param_names == ("T", "E") and len(vs) == 2:
            ok, err = sorted(vs, key=lambda v: v.index)
            if (
                (ok.name, ok.index, err.name, err.index) == ("Ok", 0, "Err", 1)
                and all(len(v.fields) == 1 and v.fields[0].name is None for v in (ok, err))
                and all(v.fields[0].type_name is None and not v.fields[0].docs for v in (ok, err))
                and (t.params[0].ty, t.params[1].ty) == (ok.fields[0].ty, err.fields[0].ty)
                and not ok.docs
                and not err.docs
            ):
                result = scale.Result(self._ref(ok.fields[0].ty), self._ref(err.fields[0].ty))
                result.docs = t.docs
                return result
        return scale.Enum(
            t.path,
            [Variant(v.name, v.index, tuple(self._field(f) for f in v.fields), v.docs) for v in vs],
            docs=t.docs,
        )
