"""FRAME-like declarations: pallets declare calls, storage, events, errors and constants.

A pallet module creates one `Pallet` and declares on it; the runtime derives dispatch, storage keys
and metadata V14 from those declarations. Storage items read and write through a `StateAccess`
(the block's overlay), so a pallet never touches the trie or the database directly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from integritee.codec.metadata import ConstantMeta, PalletMeta, StorageEntryMeta
from integritee.codec.scale import (
    Codec,
    Enum,
    EnumValue,
    Field,
    Tuple,
    Variant,
    as_field,
)
from integritee.crypto.hashing import HASHERS, twox128
from integritee.parentchain.primitives import DispatchError as DispatchErrorCodec

log = logging.getLogger("integritee.node.runtime")

KEY_CACHE_SIZE = 65536


class StateAccess(Protocol):
    def get(self, key: bytes) -> bytes | None: ...

    def set(self, key: bytes, value: bytes) -> None: ...

    def delete(self, key: bytes) -> None: ...

    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


# ---------------------------------------------------------------------------------------------
# Origins and dispatch errors


@dataclass(frozen=True)
class Origin:
    kind: str  # "signed" | "root" | "none"
    who: bytes | None = None

    @staticmethod
    def signed(who: bytes) -> Origin:
        return Origin("signed", who)


ROOT = Origin("root")
NONE = Origin("none")


class DispatchError(Exception):
    """A failed dispatch; `value` is the DispatchError enum value as it appears in events."""

    def __init__(self, value: EnumValue, text: str = "") -> None:
        super().__init__(text or f"{value.name}")
        self.value = value

    @staticmethod
    def bad_origin() -> DispatchError:
        return DispatchError(EnumValue("BadOrigin", None), "BadOrigin")

    @staticmethod
    def token(name: str) -> DispatchError:
        return DispatchError(EnumValue("Token", EnumValue(name, None)), f"Token::{name}")

    @staticmethod
    def arithmetic(name: str) -> DispatchError:
        return DispatchError(EnumValue("Arithmetic", EnumValue(name, None)), f"Arithmetic::{name}")

    @staticmethod
    def other(text: str) -> DispatchError:
        return DispatchError(EnumValue("Other", None), text)

    def encode(self) -> bytes:
        return DispatchErrorCodec.encode(self.value)


def ensure_signed(origin: Origin) -> bytes:
    if origin.kind != "signed" or origin.who is None:
        raise DispatchError.bad_origin()
    return origin.who


def ensure_root(origin: Origin) -> None:
    if origin.kind != "root":
        raise DispatchError.bad_origin()


def ensure_none(origin: Origin) -> None:
    if origin.kind != "none":
        raise DispatchError.bad_origin()


# ---------------------------------------------------------------------------------------------
# Storage declarations


class StorageItem:
    """A storage value or (n-)map: key derivation, typed get/put and metadata."""

    def __init__(
        self,
        pallet: Pallet,
        name: str,
        value: Codec,
        keys: Sequence[tuple[str, Codec]] = (),
        default: Any = None,
        optional: bool = False,
        docs: Sequence[str] = (),
    ) -> None:
        self.pallet = pallet
        self.name = name
        self.value = value
        self.keys = tuple(keys)
        self.optional = optional
        self.docs = tuple(docs)
        self.prefix = twox128(pallet.storage_prefix.encode()) + twox128(name.encode())
        self._hashers = [HASHERS[h] for h, _ in self.keys]
        self.default = default
        # Hashing keys costs more than the rest of a storage access; hot keys repeat per block.
        self._key_cache: dict[tuple[Any, ...], bytes] = {}
        self.default_bytes = b"\x00" if optional else value.encode(default)

    def key(self, *keys: Any) -> bytes:
        try:
            cached = self._key_cache.get(keys)
        except TypeError:  # unhashable key values (e.g. lists) are simply not cached
            return self._make_key(keys)
        if cached is not None:
            return cached
        out = self._make_key(keys)
        if len(self._key_cache) >= KEY_CACHE_SIZE:
            self._key_cache.clear()
        self._key_cache[keys] = out
        return out

    def _make_key(self, keys: tuple[Any, ...]) -> bytes:
        if len(keys) != len(self.keys):
            raise TypeError(f"{self.pallet.name}.{self.name} takes {len(self.keys)} key(s)")
        out = self.prefix
        for hasher, (_, codec), k in zip(self._hashers, self.keys, keys, strict=True):
            out += hasher(codec.encode(k))
        return out

    def get(self, state: StateAccess, *keys: Any) -> Any:
        raw = state.get(self.key(*keys))
        if raw is None:
            return None if self.optional else self.value.decode(self.default_bytes)
        return self.value.decode(raw)

    def exists(self, state: StateAccess, *keys: Any) -> bool:
        return state.get(self.key(*keys)) is not None

    def put(self, state: StateAccess, *keys_and_value: Any) -> None:
        *keys, value = keys_and_value
        state.set(self.key(*keys), self.value.encode(value))

    def remove(self, state: StateAccess, *keys: Any) -> None:
        state.delete(self.key(*keys))

    def iter(self, state: StateAccess) -> Iterator[tuple[bytes, Any]]:
        """(raw key suffix, value) for every entry of a map."""
        plen = len(self.prefix)
        for k, v in state.iter_prefix(self.prefix):
            yield k[plen:], self.value.decode(v)

    def meta(self) -> StorageEntryMeta:
        key_codec: Codec | None
        if not self.keys:
            key_codec = None
        elif len(self.keys) == 1:
            key_codec = self.keys[0][1]
        else:
            key_codec = Tuple(*(c for _, c in self.keys))
        return StorageEntryMeta(
            name=self.name,
            modifier="Optional" if self.optional else "Default",
            value=self.value,
            default=self.default_bytes,
            key=key_codec,
            hashers=tuple(h for h, _ in self.keys),
            docs=self.docs,
        )


# ---------------------------------------------------------------------------------------------
# Calls, events, errors, constants


@dataclass
class CallDecl:
    name: str
    index: int
    fields: tuple[Field, ...]
    handler: Callable[..., Any]
    weight: int | Callable[..., int]
    pays_fee: bool = True
    docs: tuple[str, ...] = ()

    def weight_of(self, args: dict[str, Any]) -> int:
        return self.weight(**args) if callable(self.weight) else self.weight


@dataclass
class Pallet:
    name: str
    index: int
    crate: str
    storage_prefix: str = ""
    calls: dict[str, CallDecl] = field(default_factory=dict)
    events: list[Variant] = field(default_factory=list)
    errors: list[Variant] = field(default_factory=list)
    constants: list[ConstantMeta] = field(default_factory=list)
    storage: list[StorageItem] = field(default_factory=list)
    on_initialize: Callable[[Any], None] | None = None
    on_finalize: Callable[[Any], None] | None = None

    def __post_init__(self) -> None:
        self.storage_prefix = self.storage_prefix or self.name
        self._call_enum: Enum | None = None
        self._event_enum: Enum | None = None
        self._error_enum: Enum | None = None
        self._error_index: dict[str, int] = {}

    # --- storage
    def value(
        self, name: str, codec: Codec, default: Any = None, optional: bool = False
    ) -> StorageItem:
        item = StorageItem(self, name, codec, (), default, optional)
        self.storage.append(item)
        return item

    def map(
        self,
        name: str,
        hasher: str,
        key: Codec,
        value: Codec,
        default: Any = None,
        optional: bool = False,
    ) -> StorageItem:
        item = StorageItem(self, name, value, ((hasher, key),), default, optional)
        self.storage.append(item)
        return item

    def double_map(
        self,
        name: str,
        key1: tuple[str, Codec],
        key2: tuple[str, Codec],
        value: Codec,
        default: Any = None,
        optional: bool = False,
    ) -> StorageItem:
        item = StorageItem(self, name, value, (key1, key2), default, optional)
        self.storage.append(item)
        return item

    # --- calls
    def call(
        self,
        index: int,
        *,
        name: str | None = None,
        weight: int | Callable[..., int] = 100_000_000,
        pays_fee: bool = True,
        fields_: dict[str, Codec | tuple[Codec, str]] | None = None,
        **args: Codec | tuple[Codec, str],
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Declare a call; arguments in order as keywords (or `fields_` for names like `weight`)."""
        args = {**(fields_ or {}), **args}
        fields = tuple(
            as_field((name, *spec)) if isinstance(spec, tuple) else Field(name, spec)  # type: ignore[arg-type]
            for name, spec in args.items()
        )

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            call_name = name or fn.__name__
            doc = tuple(
                line.strip() for line in (fn.__doc__ or "").strip().splitlines() if line.strip()
            )
            self.calls[call_name] = CallDecl(call_name, index, fields, fn, weight, pays_fee, doc)
            self._call_enum = None
            return fn

        return register

    @property
    def call_enum(self) -> Enum | None:
        if not self.calls:
            return None
        if self._call_enum is None:
            self._call_enum = Enum(
                f"{self.crate}::pallet::Call",
                [Variant(c.name, c.index, c.fields, c.docs) for c in self.calls.values()],
                params=[("T", None)],
            )
        return self._call_enum

    # --- events
    def event(self, name: str, index: int, *fields: Any) -> None:
        self.events.append(Variant(name, index, tuple(as_field(f) for f in fields)))
        self._event_enum = None

    @property
    def event_enum(self) -> Enum | None:
        if not self.events:
            return None
        if self._event_enum is None:
            self._event_enum = Enum(
                f"{self.crate}::pallet::Event", self.events, params=[("T", None)]
            )
        return self._event_enum

    # --- errors
    def error(self, *names: str) -> None:
        """Declare errors in order; their index is their position, as in FRAME."""
        for name in names:
            idx = len(self.errors)
            self.errors.append(Variant(name, idx))
            self._error_index[name] = idx
        self._error_enum = None

    @property
    def error_enum(self) -> Enum | None:
        if not self.errors:
            return None
        if self._error_enum is None:
            self._error_enum = Enum(
                f"{self.crate}::pallet::Error", self.errors, params=[("T", None)]
            )
        return self._error_enum

    def err(self, name: str) -> DispatchError:
        idx = self._error_index[name]
        return DispatchError(
            EnumValue("Module", {"index": self.index, "error": bytes((idx, 0, 0, 0))}),
            f"{self.name}::{name}",
        )

    # --- constants
    def constant(self, name: str, codec: Codec, value: Any, docs: Sequence[str] = ()) -> Any:
        self.constants.append(ConstantMeta(name, codec, codec.encode(value), tuple(docs)))
        return value

    def meta(self) -> PalletMeta:
        return PalletMeta(
            name=self.name,
            index=self.index,
            storage_prefix=self.storage_prefix if self.storage else None,
            storage=[s.meta() for s in self.storage],
            calls=self.call_enum,
            event=self.event_enum,
            error=self.error_enum,
            constants=list(self.constants),
        )
