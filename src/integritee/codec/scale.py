"""SCALE codec: type descriptors that encode, decode and describe themselves.

Every wire type of the project is a `Codec` instance built from the constructors here
(primitives, Compact, Vec, Option, Array, Tuple, Struct, Enum, Newtype). A descriptor knows how to
encode a Python value, decode one strictly (no trailing bytes when using `decode`), and exposes its
structure (`kind`, `path`, `params`, fields, variants) so that metadata V14 can be derived from the
same declaration. Nothing about a type is written twice.

Value conventions:
- integers -> int; bool -> bool; str -> str; Vec<u8>/[u8; N] -> bytes
- Vec<T> -> list; Option<T> -> None or the value; Tuple -> tuple
- Struct -> dict (or an instance of `cls` when given, e.g. a dataclass)
- Enum -> `EnumValue(name, value)`: value is None for a unit variant, the single value for one
  unnamed field, a tuple for several unnamed fields, a dict for named fields. Encoding also accepts
  a plain `str` for a unit variant and any (name, value) pair.
- Newtype (e.g. AccountId32, H256) is transparent: the value of its inner type.
"""

from __future__ import annotations

import struct as _struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple


class ScaleDecodeError(ValueError):
    """Raised when bytes are not a valid encoding of the expected type."""


class ScaleEncodeError(ValueError):
    """Raised when a Python value cannot be encoded as the requested type."""


class EnumValue(NamedTuple):
    name: str
    value: Any = None


Buffer = bytes | bytearray | memoryview

MAX_ZERO_SIZED_ITEMS = 65536


# ---------------------------------------------------------------------------------------------
# Compact integers (also used directly by the trie, extrinsics and headers)


def encode_compact(n: int) -> bytes:
    if n < 0:
        raise ScaleEncodeError(f"compact cannot encode negative {n}")
    if n < 1 << 6:
        return bytes((n << 2,))
    if n < 1 << 14:
        return ((n << 2) | 1).to_bytes(2, "little")
    if n < 1 << 30:
        return ((n << 2) | 2).to_bytes(4, "little")
    length = (n.bit_length() + 7) // 8
    if length > 67:
        raise ScaleEncodeError("compact integer too large")
    return bytes((((length - 4) << 2) | 3,)) + n.to_bytes(length, "little")


def decode_compact(data: Buffer, pos: int = 0) -> tuple[int, int]:
    try:
        b0 = data[pos]
    except IndexError:
        raise ScaleDecodeError("compact: unexpected end of input") from None
    mode = b0 & 3
    if mode == 0:
        return b0 >> 2, pos + 1
    if mode == 1:
        end = pos + 2
        if end > len(data):
            raise ScaleDecodeError("compact: unexpected end of input")
        v = int.from_bytes(data[pos:end], "little") >> 2
        if v < 1 << 6:
            raise ScaleDecodeError("compact: non-canonical encoding")
        return v, end
    if mode == 2:
        end = pos + 4
        if end > len(data):
            raise ScaleDecodeError("compact: unexpected end of input")
        v = int.from_bytes(data[pos:end], "little") >> 2
        if v < 1 << 14:
            raise ScaleDecodeError("compact: non-canonical encoding")
        return v, end
    length = (b0 >> 2) + 4
    end = pos + 1 + length
    if end > len(data):
        raise ScaleDecodeError("compact: unexpected end of input")
    v = int.from_bytes(data[pos + 1 : end], "little")
    if v < 1 << 30 or (length > 4 and v >> ((length - 1) * 8) == 0):
        raise ScaleDecodeError("compact: non-canonical encoding")
    return v, end


# ---------------------------------------------------------------------------------------------
# Base descriptor


class Codec:
    """A SCALE type. Subclasses implement `encode_into` and `decode_from`."""

    kind: str = "abstract"
    path: tuple[str, ...] = ()
    params: tuple[tuple[str, Codec | None], ...] = ()
    docs: tuple[str, ...] = ()

    def encode_into(self, value: Any, out: bytearray) -> None:
        raise NotImplementedError

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        raise NotImplementedError

    def encode(self, value: Any) -> bytes:
        out = bytearray()
        self.encode_into(value, out)
        return bytes(out)

    def decode(self, data: Buffer) -> Any:
        """Decode exactly one value; trailing bytes are an error."""
        value, pos = self.decode_from(data, 0)
        if pos != len(data):
            raise ScaleDecodeError(
                f"{self.display_name}: {len(data) - pos} trailing byte(s) after the value"
            )
        return value

    def decode_prefix(self, data: Buffer) -> tuple[Any, int]:
        return self.decode_from(data, 0)

    @property
    def display_name(self) -> str:
        return self.path[-1] if self.path else self.kind

    def type_key(self) -> tuple[Any, ...]:
        """Structural identity used to deduplicate types in a metadata registry."""
        key = getattr(self, "_type_key", None)
        if key is None:
            key = self._make_type_key()
            self._type_key = key
        return key

    def _make_type_key(self) -> tuple[Any, ...]:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.display_name}>"


def _need(data: Buffer, end: int, what: str | Codec) -> None:
    if end > len(data):
        name = what.display_name if isinstance(what, Codec) else what
        raise ScaleDecodeError(f"{name}: unexpected end of input")


# ---------------------------------------------------------------------------------------------
# Primitives


class UInt(Codec):
    kind = "primitive"

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.size = bits // 8
        self.max = (1 << bits) - 1
        self.name = f"u{bits}"
        fmt = {8: "<B", 16: "<H", 32: "<I", 64: "<Q"}.get(bits)
        self._struct = _struct.Struct(fmt) if fmt else None

    @property
    def display_name(self) -> str:
        return self.name

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= self.max:
            raise ScaleEncodeError(f"{self.name}: {value!r} out of range")
        out += value.to_bytes(self.size, "little")

    def decode_from(self, data: Buffer, pos: int) -> tuple[int, int]:
        end = pos + self.size
        if end > len(data):
            raise ScaleDecodeError(f"{self.name}: unexpected end of input")
        if self._struct is not None:
            return self._struct.unpack_from(data, pos)[0], end
        return int.from_bytes(data[pos:end], "little"), end

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("prim", self.name)


class SInt(Codec):
    kind = "primitive"

    def __init__(self, bits: int) -> None:
        self.bits = bits
        self.size = bits // 8
        self.name = f"i{bits}"
        self.min = -(1 << (bits - 1))
        self.max = (1 << (bits - 1)) - 1

    @property
    def display_name(self) -> str:
        return self.name

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, int) or not self.min <= value <= self.max:
            raise ScaleEncodeError(f"{self.name}: {value!r} out of range")
        out += value.to_bytes(self.size, "little", signed=True)

    def decode_from(self, data: Buffer, pos: int) -> tuple[int, int]:
        end = pos + self.size
        _need(data, end, self.name)
        return int.from_bytes(data[pos:end], "little", signed=True), end

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("prim", self.name)


class BoolCodec(Codec):
    kind = "primitive"
    name = "bool"

    @property
    def display_name(self) -> str:
        return "bool"

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, bool):
            raise ScaleEncodeError(f"bool: {value!r} is not a bool")
        out.append(1 if value else 0)

    def decode_from(self, data: Buffer, pos: int) -> tuple[bool, int]:
        _need(data, pos + 1, "bool")
        b = data[pos]
        if b > 1:
            raise ScaleDecodeError(f"bool: invalid byte {b}")
        return b == 1, pos + 1

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("prim", "bool")


class StrCodec(Codec):
    kind = "primitive"
    name = "str"

    def __init__(self, max_len: int | None = None) -> None:
        self.max_len = max_len

    @property
    def display_name(self) -> str:
        return "str"

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, str):
            raise ScaleEncodeError(f"str: {value!r} is not a str")
        raw = value.encode()
        out += encode_compact(len(raw))
        out += raw

    def decode_from(self, data: Buffer, pos: int) -> tuple[str, int]:
        n, pos = decode_compact(data, pos)
        if self.max_len is not None and n > self.max_len:
            raise ScaleDecodeError(f"str: length {n} exceeds {self.max_len}")
        end = pos + n
        _need(data, end, "str")
        try:
            return bytes(data[pos:end]).decode(), end
        except UnicodeDecodeError as e:
            raise ScaleDecodeError(f"str: invalid utf-8 ({e})") from None

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("prim", "str")


u8 = UInt(8)
u16 = UInt(16)
u32 = UInt(32)
u64 = UInt(64)
u128 = UInt(128)
u256 = UInt(256)
i8 = SInt(8)
i16 = SInt(16)
i32 = SInt(32)
i64 = SInt(64)
i128 = SInt(128)
boolean = BoolCodec()
text = StrCodec()


# ---------------------------------------------------------------------------------------------
# Compact, sequences, arrays


class Compact(Codec):
    kind = "compact"

    def __init__(self, inner: Codec = u128) -> None:
        self.inner = inner

    @property
    def display_name(self) -> str:
        return f"Compact<{self.inner.display_name}>"

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ScaleEncodeError(f"compact: {value!r} is not an int")
        max_value = getattr(self.inner, "max", None)
        if max_value is not None and value > max_value:
            raise ScaleEncodeError(f"compact: {value} exceeds {self.inner.display_name}")
        out += encode_compact(value)

    def decode_from(self, data: Buffer, pos: int) -> tuple[int, int]:
        v, end = decode_compact(data, pos)
        max_value = getattr(self.inner, "max", None)
        if max_value is not None and v > max_value:
            raise ScaleDecodeError(f"compact: {v} exceeds {self.inner.display_name}")
        return v, end

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("compact", self.inner.type_key())


class Vec(Codec):
    kind = "sequence"

    def __init__(self, inner: Codec, max_len: int | None = None) -> None:
        self.inner = inner
        self.max_len = max_len

    @property
    def display_name(self) -> str:
        return f"Vec<{self.inner.display_name}>"

    def encode_into(self, value: Any, out: bytearray) -> None:
        if isinstance(value, str | bytes | bytearray | dict):
            raise ScaleEncodeError(f"{self.display_name}: expected a list, got {type(value)}")
        items = list(value)
        if self.max_len is not None and len(items) > self.max_len:
            raise ScaleEncodeError(f"{self.display_name}: {len(items)} > {self.max_len} items")
        out += encode_compact(len(items))
        enc = self.inner.encode_into
        for item in items:
            enc(item, out)

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        n, pos = decode_compact(data, pos)
        if self.max_len is not None and n > self.max_len:
            raise ScaleDecodeError(f"{self.display_name}: {n} > {self.max_len} items")
        if self.inner is unit:
            if n > MAX_ZERO_SIZED_ITEMS:  # they take no input, so only a cap bounds the work
                raise ScaleDecodeError(f"{self.display_name}: {n} zero-sized items")
        elif n > len(data) - pos:
            # every other element takes at least one byte: a huge count on short input is junk
            raise ScaleDecodeError(f"{self.display_name}: length {n} exceeds input")
        dec = self.inner.decode_from
        items = []
        for _ in range(n):
            item, pos = dec(data, pos)
            items.append(item)
        return items, pos

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("seq", self.inner.type_key())


class BytesCodec(Vec):
    """Vec<u8> with a `bytes` value."""

    def __init__(self, max_len: int | None = None) -> None:
        super().__init__(u8, max_len)

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, bytes | bytearray | memoryview):
            raise ScaleEncodeError(f"Vec<u8>: expected bytes, got {type(value).__name__}")
        if self.max_len is not None and len(value) > self.max_len:
            raise ScaleEncodeError(f"Vec<u8>: {len(value)} > {self.max_len} bytes")
        out += encode_compact(len(value))
        out += value

    def decode_from(self, data: Buffer, pos: int) -> tuple[bytes, int]:
        n, pos = decode_compact(data, pos)
        if self.max_len is not None and n > self.max_len:
            raise ScaleDecodeError(f"Vec<u8>: {n} > {self.max_len} bytes")
        end = pos + n
        _need(data, end, "Vec<u8>")
        return bytes(data[pos:end]), end


class Array(Codec):
    kind = "array"

    def __init__(self, inner: Codec, length: int) -> None:
        self.inner = inner
        self.length = length

    @property
    def display_name(self) -> str:
        return f"[{self.inner.display_name}; {self.length}]"

    def encode_into(self, value: Any, out: bytearray) -> None:
        items = list(value)
        if len(items) != self.length:
            raise ScaleEncodeError(f"{self.display_name}: got {len(items)} items")
        for item in items:
            self.inner.encode_into(item, out)

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        items = []
        for _ in range(self.length):
            item, pos = self.inner.decode_from(data, pos)
            items.append(item)
        return items, pos

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("array", self.length, self.inner.type_key())


class FixedBytes(Array):
    """[u8; N] with a `bytes` value."""

    def __init__(self, length: int) -> None:
        super().__init__(u8, length)

    def encode_into(self, value: Any, out: bytearray) -> None:
        if not isinstance(value, bytes | bytearray) or len(value) != self.length:
            raise ScaleEncodeError(
                f"[u8; {self.length}]: expected {self.length} bytes, got {value!r}"
            )
        out += value

    def decode_from(self, data: Buffer, pos: int) -> tuple[bytes, int]:
        end = pos + self.length
        _need(data, end, self)
        return bytes(data[pos:end]), end


class Tuple(Codec):
    kind = "tuple"

    def __init__(self, *items: Codec) -> None:
        self.items = items

    @property
    def display_name(self) -> str:
        return "(" + ", ".join(i.display_name for i in self.items) + ")"

    def encode_into(self, value: Any, out: bytearray) -> None:
        values = tuple(value)
        if len(values) != len(self.items):
            raise ScaleEncodeError(f"{self.display_name}: got {len(values)} items")
        for codec, v in zip(self.items, values, strict=True):
            codec.encode_into(v, out)

    def decode_from(self, data: Buffer, pos: int) -> tuple[tuple[Any, ...], int]:
        values = []
        for codec in self.items:
            v, pos = codec.decode_from(data, pos)
            values.append(v)
        return tuple(values), pos

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("tuple", tuple(i.type_key() for i in self.items))


unit = Tuple()


# ---------------------------------------------------------------------------------------------
# Named composites and variants


@dataclass(frozen=True)
class Field:
    """A field of a struct or enum variant; `type_name` is what metadata shows (e.g. T::Balance)."""

    name: str | None
    codec: Codec
    type_name: str | None = None
    docs: tuple[str, ...] = ()

    @property
    def shown_type_name(self) -> str:
        return self.type_name or self.codec.display_name


FieldSpec = Field | tuple[str | None, Codec] | tuple[str | None, Codec, str]


def as_field(spec: FieldSpec) -> Field:
    if isinstance(spec, Field):
        return spec
    if len(spec) == 2:
        return Field(spec[0], spec[1])
    return Field(spec[0], spec[1], spec[2])  # type: ignore[misc]


def _split_path(path: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(path, str):
        return tuple(p for p in path.split("::") if p)
    return tuple(path)


class Struct(Codec):
    """A composite with named fields; values are dicts or instances of `cls`."""

    kind = "composite"

    def __init__(
        self,
        path: str | Sequence[str],
        fields: Iterable[FieldSpec],
        cls: Callable[..., Any] | None = None,
        params: Sequence[tuple[str, Codec | None]] = (),
        docs: Sequence[str] = (),
    ) -> None:
        self.path = _split_path(path)
        self.fields = tuple(as_field(f) for f in fields)
        self.cls = cls
        self.params = tuple(params)
        self.docs = tuple(docs)
        self._names = tuple(f.name or str(i) for i, f in enumerate(self.fields))

    def encode_into(self, value: Any, out: bytearray) -> None:
        if type(value) is dict:
            try:
                for f, name in zip(self.fields, self._names, strict=True):
                    f.codec.encode_into(value[name], out)
            except KeyError as e:
                raise ScaleEncodeError(f"{self.display_name}: missing field {e}") from None
            return
        if isinstance(value, dict):
            get = value.__getitem__
        elif isinstance(value, tuple | list) and not hasattr(value, "_fields"):
            for f, v in zip(self.fields, value, strict=True):
                f.codec.encode_into(v, out)
            return
        else:

            def get(name: str) -> Any:
                return getattr(value, name)

        for f, name in zip(self.fields, self._names, strict=True):
            try:
                v = get(name)
            except (KeyError, AttributeError):
                raise ScaleEncodeError(f"{self.display_name}: missing field {name!r}") from None
            f.codec.encode_into(v, out)

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        values = {}
        for f, name in zip(self.fields, self._names, strict=True):
            values[name], pos = f.codec.decode_from(data, pos)
        if self.cls is not None:
            return self.cls(**values), pos
        return values, pos

    def _make_type_key(self) -> tuple[Any, ...]:
        return (
            "composite",
            self.path,
            tuple(p[1].type_key() if p[1] else None for p in self.params),
            tuple((f.name, f.codec.type_key(), f.type_name) for f in self.fields),
        )


class Newtype(Codec):
    """A composite with a single unnamed field whose value is transparent (e.g. AccountId32, H256)."""

    kind = "composite"

    def __init__(
        self, path: str | Sequence[str], inner: Codec, type_name: str | None = None
    ) -> None:
        self.path = _split_path(path)
        self.inner = inner
        self.fields = (Field(None, inner, type_name),)
        self.encode_into = inner.encode_into  # type: ignore[method-assign]
        self.decode_from = inner.decode_from  # type: ignore[method-assign]

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("newtype", self.path, self.inner.type_key())


@dataclass(frozen=True)
class Variant:
    name: str
    index: int
    fields: tuple[Field, ...] = ()
    docs: tuple[str, ...] = ()

    @property
    def named(self) -> bool:
        return bool(self.fields) and self.fields[0].name is not None


def variant(name: str, index: int, *fields: FieldSpec, docs: Sequence[str] = ()) -> Variant:
    return Variant(name, index, tuple(as_field(f) for f in fields), tuple(docs))


class Enum(Codec):
    """A tagged union with explicit variant indices."""

    kind = "variant"

    def __init__(
        self,
        path: str | Sequence[str],
        variants: Iterable[Variant],
        params: Sequence[tuple[str, Codec | None]] = (),
        docs: Sequence[str] = (),
    ) -> None:
        self.path = _split_path(path)
        self.variants = tuple(sorted(variants, key=lambda v: v.index))
        self.params = tuple(params)
        self.docs = tuple(docs)
        self.by_name = {v.name: v for v in self.variants}
        self.by_index = {v.index: v for v in self.variants}
        if len(self.by_name) != len(self.variants) or len(self.by_index) != len(self.variants):
            raise ValueError(f"{self.display_name}: duplicate variant name or index")

    def encode_into(self, value: Any, out: bytearray) -> None:
        if isinstance(value, str):
            name, payload = value, None
        else:
            try:
                name, payload = value
            except (TypeError, ValueError):
                raise ScaleEncodeError(f"{self.display_name}: cannot encode {value!r}") from None
        v = self.by_name.get(name)
        if v is None:
            raise ScaleEncodeError(f"{self.display_name}: unknown variant {name!r}")
        out.append(v.index)
        fields = v.fields
        if not fields:
            return
        if len(fields) == 1 and not v.named:
            fields[0].codec.encode_into(payload, out)
        elif v.named:
            if not isinstance(payload, dict):
                raise ScaleEncodeError(f"{self.display_name}::{name}: expected a dict of fields")
            for f in fields:
                if f.name not in payload:
                    raise ScaleEncodeError(f"{self.display_name}::{name}: missing {f.name!r}")
                f.codec.encode_into(payload[f.name], out)
        else:
            if not isinstance(payload, tuple | list):
                raise ScaleEncodeError(f"{self.display_name}::{name}: expected a tuple of fields")
            if len(payload) != len(fields):
                raise ScaleEncodeError(f"{self.display_name}::{name}: wrong number of fields")
            for f, p in zip(fields, payload, strict=True):
                f.codec.encode_into(p, out)

    def decode_from(self, data: Buffer, pos: int) -> tuple[EnumValue, int]:
        _need(data, pos + 1, self)
        v = self.by_index.get(data[pos])
        if v is None:
            raise ScaleDecodeError(f"{self.display_name}: unknown variant index {data[pos]}")
        pos += 1
        fields = v.fields
        if not fields:
            return EnumValue(v.name, None), pos
        if len(fields) == 1 and not v.named:
            payload, pos = fields[0].codec.decode_from(data, pos)
            return EnumValue(v.name, payload), pos
        if v.named:
            d = {}
            for f in fields:
                d[f.name], pos = f.codec.decode_from(data, pos)
            return EnumValue(v.name, d), pos
        items = []
        for f in fields:
            item, pos = f.codec.decode_from(data, pos)
            items.append(item)
        return EnumValue(v.name, tuple(items)), pos

    def _make_type_key(self) -> tuple[Any, ...]:
        return (
            "variant",
            self.path,
            tuple(p[1].type_key() if p[1] else None for p in self.params),
            tuple(
                (
                    v.name,
                    v.index,
                    tuple((f.name, f.codec.type_key(), f.type_name) for f in v.fields),
                )
                for v in self.variants
            ),
        )


class Option(Codec):
    """Option<T>: None or the inner value (Rust's Option<bool> too: 00 / 01 01 / 01 00)."""

    kind = "variant"
    path = ("Option",)

    def __init__(self, inner: Codec) -> None:
        self.inner = inner
        self.params = (("T", inner),)
        self.variants = (Variant("None", 0), Variant("Some", 1, (Field(None, inner),)))

    @property
    def display_name(self) -> str:
        return f"Option<{self.inner.display_name}>"

    def encode_into(self, value: Any, out: bytearray) -> None:
        if value is None:
            out.append(0)
        else:
            out.append(1)
            self.inner.encode_into(value, out)

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        _need(data, pos + 1, self)
        tag = data[pos]
        if tag == 0:
            return None, pos + 1
        if tag != 1:
            raise ScaleDecodeError(f"{self.display_name}: invalid tag {tag}")
        return self.inner.decode_from(data, pos + 1)

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("option", self.inner.type_key())


class Result(Codec):
    """Result<T, E> with values EnumValue('Ok', t) / EnumValue('Err', e)."""

    kind = "variant"
    path = ("Result",)

    def __init__(self, ok: Codec, err: Codec) -> None:
        self.ok, self.err = ok, err
        self.params = (("T", ok), ("E", err))
        self.variants = (
            Variant("Ok", 0, (Field(None, ok),)),
            Variant("Err", 1, (Field(None, err),)),
        )

    @property
    def display_name(self) -> str:
        return f"Result<{self.ok.display_name}, {self.err.display_name}>"

    def encode_into(self, value: Any, out: bytearray) -> None:
        name, payload = value
        if name == "Ok":
            out.append(0)
            self.ok.encode_into(payload, out)
        elif name == "Err":
            out.append(1)
            self.err.encode_into(payload, out)
        else:
            raise ScaleEncodeError(f"Result: unknown variant {name!r}")

    def decode_from(self, data: Buffer, pos: int) -> tuple[EnumValue, int]:
        _need(data, pos + 1, "Result")
        tag = data[pos]
        if tag == 0:
            v, pos = self.ok.decode_from(data, pos + 1)
            return EnumValue("Ok", v), pos
        if tag == 1:
            v, pos = self.err.decode_from(data, pos + 1)
            return EnumValue("Err", v), pos
        raise ScaleDecodeError(f"Result: invalid tag {tag}")

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("result", self.ok.type_key(), self.err.type_key())


class Lazy(Codec):
    """A forward reference, resolved on first use (for recursive types such as RuntimeCall)."""

    def __init__(self, resolve: Callable[[], Codec]) -> None:
        self._resolve = resolve
        self._target: Codec | None = None

    @property
    def target(self) -> Codec:
        if self._target is None:
            self._target = self._resolve()
            # after the first use, calls go straight to the target (hot paths: events, calls)
            self.encode_into = self._target.encode_into  # type: ignore[method-assign]
            self.decode_from = self._target.decode_from  # type: ignore[method-assign]
        return self._target

    @property
    def kind(self) -> str:  # type: ignore[override]
        return self.target.kind

    @property
    def display_name(self) -> str:
        return self.target.display_name

    def encode_into(self, value: Any, out: bytearray) -> None:
        self.target.encode_into(value, out)

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        return self.target.decode_from(data, pos)

    def type_key(self) -> tuple[Any, ...]:
        # A forward reference is identified by its target object: recursing would never end.
        return ("lazy", id(self.target))


def resolve(codec: Codec) -> Codec:
    while isinstance(codec, Lazy):
        codec = codec.target
    return codec


# ---------------------------------------------------------------------------------------------
# Common Substrate types

Bytes = BytesCodec()
H256 = Newtype("primitive_types::H256", FixedBytes(32), "[u8; 32]")
AccountId32 = Newtype("sp_core::crypto::AccountId32", FixedBytes(32), "[u8; 32]")
