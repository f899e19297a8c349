"""pallet_proxy (index 7): accounts delegate the right to dispatch calls from their origin.

Owns the Proxies and Announcements storage, the integritee-node `ProxyType` with its call filter
(`InstanceFilter`), the deposits reserved for proxies and announcements, and pure proxies. The
validateers use it for the shard vault: the vault account adds later validateers as proxies, and
they pay out with `proxy(vault, None, Balances.transfer_keep_alive(..))`.

Deposits are reserved from the delegator's free balance exactly as integritee-node configures them
(`deposit(items, bytes)` = items * 20 TEER + bytes * 1 mTEER), so a vault needs about 20.04 TEER
above the existential deposit before it can add its first proxy.
"""

from __future__ import annotations

from typing import Any

from integritee.codec.scale import (
    Compact,
    Enum,
    EnumValue,
    Lazy,
    Option,
    Result,
    Struct,
    Tuple,
    u16,
    u32,
    unit,
    variant,
)
from integritee.crypto.hashing import blake2_256
from integritee.parentchain.primitives import AccountId, Balance, BlockNumber, Hash, MultiAddress
from integritee.parentchain.primitives import DispatchError as DispatchErrorCodec
from integritee.parentchain.tee_types import bounded_vec

from ..framework import DispatchError, Origin, Pallet, ensure_signed
from . import balances as balances_mod
from . import system as sys_pallet

TEER = 10**12
MILLITEER = 10**9


def _deposit(items: int, num_bytes: int) -> int:
    """integritee-node's storage deposit: 20 TEER per item, 1 mTEER per byte."""
    return items * 20 * TEER + num_bytes * MILLITEER


PROXY_DEPOSIT_BASE = _deposit(1, 8)
PROXY_DEPOSIT_FACTOR = _deposit(0, 33)
MAX_PROXIES = 32
MAX_PENDING = 32
ANNOUNCEMENT_DEPOSIT_BASE = _deposit(1, 8)
ANNOUNCEMENT_DEPOSIT_FACTOR = _deposit(0, 66)

proxy = Pallet("Proxy", 7, "pallet_proxy")

# ---------------------------------------------------------------------------------------------
# Types

PROXY_TYPES = ("Any", "NonTransfer", "Governance", "CancelProxy")
ProxyType = Enum(
    "integritee_node_runtime::ProxyType", [variant(n, i) for i, n in enumerate(PROXY_TYPES)]
)

ProxyDefinition = Struct(
    "pallet_proxy::ProxyDefinition",
    [
        ("delegate", AccountId, "AccountId"),
        ("proxy_type", ProxyType, "ProxyType"),
        ("delay", BlockNumber, "BlockNumber"),
    ],
    params=[("AccountId", AccountId), ("ProxyType", ProxyType), ("BlockNumber", BlockNumber)],
)

Announcement = Struct(
    "pallet_proxy::Announcement",
    [
        ("real", AccountId, "AccountId"),
        ("call_hash", Hash, "Hash"),
        ("height", BlockNumber, "BlockNumber"),
    ],
    params=[("AccountId", AccountId), ("Hash", Hash), ("BlockNumber", BlockNumber)],
)

Proxies = proxy.map(
    "Proxies",
    "Twox64Concat",
    AccountId,
    Tuple(bounded_vec(ProxyDefinition, MAX_PROXIES), Balance),
    default=([], 0),
)
Announcements = proxy.map(
    "Announcements",
    "Twox64Concat",
    AccountId,
    Tuple(bounded_vec(Announcement, MAX_PENDING), Balance),
    default=([], 0),
)

proxy.constant("ProxyDepositBase", Balance, PROXY_DEPOSIT_BASE)
proxy.constant("ProxyDepositFactor", Balance, PROXY_DEPOSIT_FACTOR)
proxy.constant("MaxProxies", u32, MAX_PROXIES)
proxy.constant("MaxPending", u32, MAX_PENDING)
proxy.constant("AnnouncementDepositBase", Balance, ANNOUNCEMENT_DEPOSIT_BASE)
proxy.constant("AnnouncementDepositFactor", Balance, ANNOUNCEMENT_DEPOSIT_FACTOR)

_A = ("T::AccountId",)
_PT = (ProxyType, "T::ProxyType")
_BN = (BlockNumber, "BlockNumberFor<T>")
proxy.event("ProxyExecuted", 0, ("result", Result(unit, DispatchErrorCodec), "DispatchResult"))
proxy.event(
    "PureCreated",
    1,
    ("pure", AccountId, *_A),
    ("who", AccountId, *_A),
    ("proxy_type", *_PT),
    ("disambiguation_index", u16, "u16"),
)
proxy.event(
    "Announced",
    2,
    ("real", AccountId, *_A),
    ("proxy", AccountId, *_A),
    ("call_hash", Hash, "CallHashOf<T>"),
)
proxy.event(
    "ProxyAdded",
    3,
    ("delegator", AccountId, *_A),
    ("delegatee", AccountId, *_A),
    ("proxy_type", *_PT),
    ("delay", *_BN),
)
proxy.event(
    "ProxyRemoved",
    4,
    ("delegator", AccountId, *_A),
    ("delegatee", AccountId, *_A),
    ("proxy_type", *_PT),
    ("delay", *_BN),
)
proxy.error(
    "TooMany",
    "NotFound",
    "NotProxy",
    "Unproxyable",
    "Duplicate",
    "NoPermission",
    "Unannounced",
    "NoSelfProxy",
)


# ---------------------------------------------------------------------------------------------
# ProxyType rules (integritee-node's InstanceFilter)

# NonTransfer is an allow-list in integritee-node: these pallets, and nothing that moves funds.
_NON_TRANSFER_PALLETS = frozenset(
    {"System", "Timestamp", "Grandpa", "Treasury", "Proxy", "Multisig"}
)


def _type_name(value: Any) -> str:
    name = value.name if isinstance(value, EnumValue) else str(value)
    if name not in PROXY_TYPES:
        raise ValueError(f"unknown proxy type {name!r}")
    return name


def type_allows(proxy_type: Any, call: EnumValue) -> bool:
    """`InstanceFilter::filter`: may a proxy of this type dispatch this RuntimeCall?"""
    kind = _type_name(proxy_type)
    if kind == "Any":
        return True
    if kind == "NonTransfer":
        return call.name in _NON_TRANSFER_PALLETS
    if kind == "Governance":
        return call.name == "Treasury"
    return call.name == "Proxy" and call.value.name == "reject_announcement"


def is_superset(a: Any, b: Any) -> bool:
    """`InstanceFilter::is_superset` of integritee-node's ProxyType."""
    x, y = _type_name(a), _type_name(b)
    if x == y or x == "Any":
        return True
    if y == "Any":
        return False
    return x == "NonTransfer"


def _origin_filter(def_type: Any, call: EnumValue) -> bool:
    """The filter do_proxy puts on the real account's origin."""
    if call.name == "Proxy":
        inner = call.value.name
        args = call.value.value or {}
        if inner in ("add_proxy", "remove_proxy") and not is_superset(def_type, args["proxy_type"]):
            return False
        if inner in ("remove_proxies", "kill_pure") and _type_name(def_type) != "Any":
            return False
    return type_allows(def_type, call)


def _def_key(d: dict[str, Any]) -> tuple[bytes, int, int]:
    # ProxyDefinition's derived Ord: delegate, then proxy type (variant order), then delay
    return (bytes(d["delegate"]), PROXY_TYPES.index(_type_name(d["proxy_type"])), d["delay"])


# ---------------------------------------------------------------------------------------------
# Deposits (ReservableCurrency on the balances kept in System.Account)


def _reserve(ctx: Any, who: bytes, amount: int) -> None:
    if amount == 0:
        return
    info = sys_pallet.Account.get(ctx.state, who)
    # the free balance keeps the account alive; deposits never eat into the existential deposit
    if info.data.free < amount + balances_mod.EXISTENTIAL_DEPOSIT:
        raise balances_mod.balances.err("InsufficientBalance")
    if info.data.reserved == 0:
        info.consumers += 1
    info.data.free -= amount
    info.data.reserved += amount
    sys_pallet.put_account(ctx, who, info)
    ctx.deposit_event(balances_mod.balances, "Reserved", {"who": who, "amount": amount})


def _unreserve(ctx: Any, who: bytes, amount: int) -> None:
    info = sys_pallet.Account.get(ctx.state, who)
    actual = min(amount, info.data.reserved)
    if actual == 0:
        return
    info.data.reserved -= actual
    info.data.free += actual
    if info.data.reserved == 0 and info.consumers > 0:
        info.consumers -= 1
    sys_pallet.put_account(ctx, who, info)
    ctx.deposit_event(balances_mod.balances, "Unreserved", {"who": who, "amount": actual})


def _rejig(ctx: Any, who: bytes, old: int, new: int) -> None:
    if new > old:
        _reserve(ctx, who, new - old)
    elif new < old:
        _unreserve(ctx, who, old - new)


def proxy_deposit(num_proxies: int) -> int:
    return 0 if num_proxies == 0 else PROXY_DEPOSIT_BASE + PROXY_DEPOSIT_FACTOR * num_proxies


def _announcement_deposit(pending: int) -> int:
    if pending == 0:
        return 0
    return ANNOUNCEMENT_DEPOSIT_BASE + ANNOUNCEMENT_DEPOSIT_FACTOR * pending


# ---------------------------------------------------------------------------------------------
# The pallet's functions (other pallets and tests may call them)


def proxies_of(state: Any, real: bytes) -> list[dict[str, Any]]:
    return list(Proxies.get(state, real)[0])


def find_proxy(state: Any, real: bytes, delegate: bytes, force: Any = None) -> dict[str, Any]:
    for d in Proxies.get(state, real)[0]:
        if bytes(d["delegate"]) != delegate:
            continue
        if force is not None and _type_name(d["proxy_type"]) != _type_name(force):
            continue
        return d  # type: ignore[no-any-return]
    raise proxy.err("NotProxy")


def add_proxy_delegate(
    ctx: Any, delegator: bytes, delegatee: bytes, proxy_type: Any, delay: int
) -> None:
    if delegator == delegatee:
        raise proxy.err("NoSelfProxy")
    defs, deposit = Proxies.get(ctx.state, delegator)
    new = {"delegate": delegatee, "proxy_type": EnumValue(_type_name(proxy_type)), "delay": delay}
    key = _def_key(new)
    if any(_def_key(d) == key for d in defs):
        raise proxy.err("Duplicate")
    if len(defs) >= MAX_PROXIES:
        raise proxy.err("TooMany")
    defs = sorted([*defs, new], key=_def_key)
    new_deposit = proxy_deposit(len(defs))
    _rejig(ctx, delegator, deposit, new_deposit)
    Proxies.put(ctx.state, delegator, (defs, new_deposit))
    ctx.deposit_event(
        proxy,
        "ProxyAdded",
        {
            "delegator": delegator,
            "delegatee": delegatee,
            "proxy_type": new["proxy_type"],
            "delay": delay,
        },
    )


def remove_proxy_delegate(
    ctx: Any, delegator: bytes, delegatee: bytes, proxy_type: Any, delay: int
) -> None:
    if not Proxies.exists(ctx.state, delegator):
        raise proxy.err("NotFound")
    defs, old_deposit = Proxies.get(ctx.state, delegator)
    key = _def_key({"delegate": delegatee, "proxy_type": proxy_type, "delay": delay})
    kept = [d for d in defs if _def_key(d) != key]
    if len(kept) == len(defs):
        raise proxy.err("NotFound")
    new_deposit = proxy_deposit(len(kept))
    _rejig(ctx, delegator, old_deposit, new_deposit)
    if kept:
        Proxies.put(ctx.state, delegator, (kept, new_deposit))
    else:
        Proxies.remove(ctx.state, delegator)
    ctx.deposit_event(
        proxy,
        "ProxyRemoved",
        {
            "delegator": delegator,
            "delegatee": delegatee,
            "proxy_type": EnumValue(_type_name(proxy_type)),
            "delay": delay,
        },
    )


def remove_all_proxy_delegates(ctx: Any, delegator: bytes) -> None:
    _defs, deposit = Proxies.get(ctx.state, delegator)
    Proxies.remove(ctx.state, delegator)
    _unreserve(ctx, delegator, deposit)


def pure_account(spawner: bytes, proxy_type: Any, index: int, height: int, ext_index: int) -> bytes:
    """The account of a pure proxy: blake2_256 of the spawn parameters (as pallet_proxy)."""
    entropy = (
        b"modlpy/proxy____"
        + spawner
        + u32.encode(height)
        + u32.encode(ext_index)
        + ProxyType.encode(EnumValue(_type_name(proxy_type)))
        + u16.encode(index)
    )
    return blake2_256(entropy)


def _edit_announcements(ctx: Any, delegate: bytes, keep: Any) -> None:
    if not Announcements.exists(ctx.state, delegate):
        raise proxy.err("NotFound")
    pending, old_deposit = Announcements.get(ctx.state, delegate)
    kept = [a for a in pending if keep(a)]
    if len(kept) == len(pending):
        raise proxy.err("NotFound")
    new_deposit = _announcement_deposit(len(kept))
    _rejig(ctx, delegate, old_deposit, new_deposit)
    if kept:
        Announcements.put(ctx.state, delegate, (kept, new_deposit))
    else:
        Announcements.remove(ctx.state, delegate)


def _runtime_call() -> Any:
    from ..construct import RuntimeCall

    return RuntimeCall


def _call_hash(call: EnumValue) -> bytes:
    return blake2_256(_runtime_call().encode(call))


def _do_proxy(ctx: Any, def_type: Any, real: bytes, call: EnumValue) -> None:
    from ..construct import dispatch_transactional

    error: DispatchError | None
    if _origin_filter(def_type, call):
        error = dispatch_transactional(ctx, Origin.signed(real), call)
    else:
        error = sys_pallet.system.err("CallFiltered")
    result = EnumValue("Ok", ()) if error is None else EnumValue("Err", error.value)
    ctx.deposit_event(proxy, "ProxyExecuted", {"result": result})


# ---------------------------------------------------------------------------------------------
# Calls

_lookup = (MultiAddress, "AccountIdLookupOf<T>")
_call = (Lazy(_runtime_call), "Box<<T as Config>::RuntimeCall>")
_force = (Option(ProxyType), "Option<T::ProxyType>")
_hash = (Hash, "CallHashOf<T>")
PROXY_BASE_WEIGHT = 30_000_000


def _inner_weight(call: EnumValue) -> int:
    from ..construct import call_weight

    return PROXY_BASE_WEIGHT + call_weight(call)


@proxy.call(
    0,
    name="proxy",
    weight=lambda real, force_proxy_type, call: _inner_weight(call),
    real=_lookup,
    force_proxy_type=_force,
    call=_call,
)
def proxy_call(ctx, origin, real, force_proxy_type, call) -> None:
    """Dispatch the given `call` from an account that the sender is authorised for through
    `add_proxy`."""
    who = ensure_signed(origin)
    real_id = balances_mod.lookup(real)
    d = find_proxy(ctx.state, real_id, who, force_proxy_type)
    if d["delay"] != 0:
        raise proxy.err("Unannounced")
    _do_proxy(ctx, d["proxy_type"], real_id, call)


@proxy.call(1, weight=40_000_000, delegate=_lookup, proxy_type=_PT, delay=_BN)
def add_proxy(ctx, origin, delegate, proxy_type, delay: int) -> None:
    """Register a proxy account for the sender that is able to make calls on its behalf."""
    who = ensure_signed(origin)
    add_proxy_delegate(ctx, who, balances_mod.lookup(delegate), proxy_type, delay)


@proxy.call(2, weight=40_000_000, delegate=_lookup, proxy_type=_PT, delay=_BN)
def remove_proxy(ctx, origin, delegate, proxy_type, delay: int) -> None:
    """Unregister a proxy account for the sender."""
    who = ensure_signed(origin)
    remove_proxy_delegate(ctx, who, balances_mod.lookup(delegate), proxy_type, delay)


@proxy.call(3, weight=40_000_000)
def remove_proxies(ctx, origin) -> None:
    """Unregister all proxy accounts for the sender."""
    remove_all_proxy_delegates(ctx, ensure_signed(origin))


@proxy.call(4, weight=50_000_000, fields_={"proxy_type": _PT, "delay": _BN, "index": (u16, "u16")})
def create_pure(ctx, origin, proxy_type, delay: int, index: int) -> None:
    """Spawn a fresh account that is only accessible through a proxy of the sender."""
    who = ensure_signed(origin)
    pure = pure_account(who, proxy_type, index, ctx.number, ctx.extrinsic_index or 0)
    if Proxies.exists(ctx.state, pure):
        raise proxy.err("Duplicate")
    ptype = EnumValue(_type_name(proxy_type))
    deposit = PROXY_DEPOSIT_BASE + PROXY_DEPOSIT_FACTOR
    _reserve(ctx, who, deposit)
    Proxies.put(
        ctx.state, pure, ([{"delegate": who, "proxy_type": ptype, "delay": delay}], deposit)
    )
    ctx.deposit_event(
        proxy,
        "PureCreated",
        {"pure": pure, "who": who, "proxy_type": ptype, "disambiguation_index": index},
    )


@proxy.call(
    5,
    weight=50_000_000,
    fields_={
        "spawner": _lookup,
        "proxy_type": _PT,
        "index": (u16, "u16"),
        "height": (Compact(BlockNumber), "BlockNumberFor<T>"),
        "ext_index": (Compact(u32), "u32"),
    },
)
def kill_pure(ctx, origin, spawner, proxy_type, index: int, height: int, ext_index: int) -> None:
    """Remove a previously spawned pure proxy (called by the pure account itself)."""
    who = ensure_signed(origin)
    spawner_id = balances_mod.lookup(spawner)
    if pure_account(spawner_id, proxy_type, index, height, ext_index) != who:
        raise proxy.err("NoPermission")
    _defs, deposit = Proxies.get(ctx.state, who)
    Proxies.remove(ctx.state, who)
    _unreserve(ctx, spawner_id, deposit)


@proxy.call(6, weight=40_000_000, real=_lookup, call_hash=_hash)
def announce(ctx, origin, real, call_hash: bytes) -> None:
    """Publish the hash of a proxy-call that will be made in the future."""
    who = ensure_signed(origin)
    real_id = balances_mod.lookup(real)
    if not any(bytes(d["delegate"]) == who for d in Proxies.get(ctx.state, real_id)[0]):
        raise proxy.err("NotProxy")
    pending, deposit = Announcements.get(ctx.state, who)
    if len(pending) >= MAX_PENDING:
        raise proxy.err("TooMany")
    pending = [*pending, {"real": real_id, "call_hash": call_hash, "height": ctx.number}]
    new_deposit = _announcement_deposit(len(pending))
    _rejig(ctx, who, deposit, new_deposit)
    Announcements.put(ctx.state, who, (pending, new_deposit))
    ctx.deposit_event(proxy, "Announced", {"real": real_id, "proxy": who, "call_hash": call_hash})


@proxy.call(7, weight=40_000_000, real=_lookup, call_hash=_hash)
def remove_announcement(ctx, origin, real, call_hash: bytes) -> None:
    """Remove a given announcement (by the proxy that made it); the deposit is returned."""
    who = ensure_signed(origin)
    real_id = balances_mod.lookup(real)
    _edit_announcements(
        ctx, who, lambda a: bytes(a["real"]) != real_id or bytes(a["call_hash"]) != call_hash
    )


@proxy.call(8, weight=40_000_000, delegate=_lookup, call_hash=_hash)
def reject_announcement(ctx, origin, delegate, call_hash: bytes) -> None:
    """Remove the given announcement of a delegate (by the proxied account)."""
    who = ensure_signed(origin)
    delegate_id = balances_mod.lookup(delegate)
    _edit_announcements(
        ctx,
        delegate_id,
        lambda a: bytes(a["real"]) != who or bytes(a["call_hash"]) != call_hash,
    )


@proxy.call(
    9,
    weight=lambda delegate, real, force_proxy_type, call: _inner_weight(call),
    delegate=_lookup,
    real=_lookup,
    force_proxy_type=_force,
    call=_call,
)
def proxy_announced(ctx, origin, delegate, real, force_proxy_type, call) -> None:
    """Dispatch an announced call once its delay has passed; removes the announcement."""
    ensure_signed(origin)
    delegate_id = balances_mod.lookup(delegate)
    real_id = balances_mod.lookup(real)
    d = find_proxy(ctx.state, real_id, delegate_id, force_proxy_type)
    call_hash = _call_hash(call)
    now = ctx.number

    def keep(a: dict[str, Any]) -> bool:
        return (
            bytes(a["real"]) != real_id
            or bytes(a["call_hash"]) != call_hash
            or now - a["height"] < d["delay"]
        )

    try:
        _edit_announcements(ctx, delegate_id, keep)
    except DispatchError:
        raise proxy.err("Unannounced") from None
    _do_proxy(ctx, d["proxy_type"], real_id, call)
