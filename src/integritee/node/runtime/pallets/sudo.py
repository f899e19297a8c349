"""pallet_sudo (index 5): a single key may dispatch calls as root."""

from __future__ import annotations

from integritee.codec.scale import EnumValue, Lazy, Option, Result, unit
from integritee.parentchain.primitives import AccountId, MultiAddress, Weight
from integritee.parentchain.primitives import DispatchError as DispatchErrorCodec

from ..framework import ROOT, Origin, Pallet, ensure_signed
from .balances import lookup

sudo = Pallet("Sudo", 5, "pallet_sudo")
Key = sudo.value("Key", AccountId, optional=True)


def _runtime_call():
    from ..construct import RuntimeCall

    return RuntimeCall


_call = (Lazy(_runtime_call), "Box<<T as Config>::RuntimeCall>")
_result = (Result(unit, DispatchErrorCodec), "DispatchResult")

sudo.event("Sudid", 0, ("sudo_result", *_result))
sudo.event(
    "KeyChanged",
    1,
    ("old", Option(AccountId), "Option<T::AccountId>"),
    ("new", AccountId, "T::AccountId"),
)
sudo.event("KeyRemoved", 2)
sudo.event("SudoAsDone", 3, ("sudo_result", *_result))
sudo.error("RequireSudo")


def _ensure_sudo(ctx, origin) -> bytes:
    who = ensure_signed(origin)
    if Key.get(ctx.state) != who:
        raise sudo.err("RequireSudo")
    return who


def _dispatch_as(ctx, origin: Origin, call) -> EnumValue:
    from ..construct import dispatch_transactional

    error = dispatch_transactional(ctx, origin, call)
    return EnumValue("Ok", ()) if error is None else EnumValue("Err", error.value)


def _inner_weight(call) -> int:
    from ..construct import call_weight

    return 10_000_000 + call_weight(call)


@sudo.call(0, name="sudo", weight=_inner_weight, call=_call)
def sudo_call(ctx, origin, call) -> None:
    """Dispatch a call with Root origin."""
    _ensure_sudo(ctx, origin)
    ctx.deposit_event(sudo, "Sudid", {"sudo_result": _dispatch_as(ctx, ROOT, call)})


@sudo.call(
    1,
    weight=lambda call, weight: 10_000_000 + weight["ref_time"],
    fields_={"call": _call, "weight": (Weight, "Weight")},
)
def sudo_unchecked_weight(ctx, origin, call, weight) -> None:
    """Dispatch a call with Root origin and a given weight."""
    _ensure_sudo(ctx, origin)
    ctx.deposit_event(sudo, "Sudid", {"sudo_result": _dispatch_as(ctx, ROOT, call)})


@sudo.call(2, weight=10_000_000, new=(MultiAddress, "AccountIdLookupOf<T>"))
def set_key(ctx, origin, new) -> None:
    """Authenticates the current sudo key and sets the given account as the new sudo."""
    old = _ensure_sudo(ctx, origin)
    new_key = lookup(new)
    Key.put(ctx.state, new_key)
    ctx.deposit_event(sudo, "KeyChanged", {"old": old, "new": new_key})


@sudo.call(
    3,
    weight=lambda who, call: _inner_weight(call),
    who=(MultiAddress, "AccountIdLookupOf<T>"),
    call=_call,
)
def sudo_as(ctx, origin, who, call) -> None:
    """Dispatch a call with a Signed origin of the given account."""
    _ensure_sudo(ctx, origin)
    result = _dispatch_as(ctx, Origin.signed(lookup(who)), call)
    ctx.deposit_event(sudo, "SudoAsDone", {"sudo_result": result})


@sudo.call(4, weight=10_000_000)
def remove_key(ctx, origin) -> None:
    """Permanently removes the sudo key."""
    _ensure_sudo(ctx, origin)
    Key.remove(ctx.state)
    ctx.deposit_event(sudo, "KeyRemoved")
