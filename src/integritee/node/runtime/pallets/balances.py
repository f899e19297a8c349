"""pallet_balances (index 10): free balances in System.Account, transfers, issuance.

The module-level functions (`transfer`, `withdraw`, `deposit`) are the currency API other pallets
use (fees, shielding, unshielding); the calls are thin wrappers around them.
"""

from __future__ import annotations

from integritee.codec.scale import Compact, EnumValue, boolean, u32
from integritee.parentchain.primitives import (
    AccountData,
    AccountId,
    AccountInfo,
    Balance,
    MultiAddress,
)

from ..framework import DispatchError, Pallet, ensure_root, ensure_signed
from . import system as sys_pallet

EXISTENTIAL_DEPOSIT = 500

balances = Pallet("Balances", 10, "pallet_balances")

TotalIssuance = balances.value("TotalIssuance", Balance, default=0)
InactiveIssuance = balances.value("InactiveIssuance", Balance, default=0)

balances.constant("ExistentialDeposit", Balance, EXISTENTIAL_DEPOSIT)
balances.constant("MaxLocks", u32, 50)
balances.constant("MaxReserves", u32, 50)
balances.constant("MaxFreezes", u32, 0)

_A = ("T::AccountId",)
balances.event("Endowed", 0, ("account", AccountId, *_A), ("free_balance", Balance, "T::Balance"))
balances.event("DustLost", 1, ("account", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.event(
    "Transfer",
    2,
    ("from", AccountId, *_A),
    ("to", AccountId, *_A),
    ("amount", Balance, "T::Balance"),
)
balances.event("BalanceSet", 3, ("who", AccountId, *_A), ("free", Balance, "T::Balance"))
balances.event("Reserved", 4, ("who", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.event("Unreserved", 5, ("who", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.event("Deposit", 7, ("who", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.event("Withdraw", 8, ("who", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.event("Slashed", 9, ("who", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.event("Minted", 10, ("who", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.event("Burned", 11, ("who", AccountId, *_A), ("amount", Balance, "T::Balance"))
balances.error(
    "VestingBalance",
    "LiquidityRestrictions",
    "InsufficientBalance",
    "ExistentialDeposit",
    "Expendability",
    "ExistingVestingSchedule",
    "DeadAccount",
    "TooManyReserves",
    "TooManyHolds",
    "TooManyFreezes",
    "IssuanceDeactivated",
    "DeltaZero",
)


def lookup(address) -> bytes:
    if isinstance(address, bytes):
        return address
    if address.name == "Id":
        return address.value
    if address.name == "Address32":
        return address.value
    raise DispatchError(EnumValue("CannotLookup", None), "CannotLookup")


def free_balance(ctx, who: bytes) -> int:
    return sys_pallet.Account.get(ctx.state, who).data.free


def _set_free(ctx, who: bytes, info: AccountInfo, new_free: int) -> None:
    """Apply a new free balance, creating or reaping the account around the existential deposit."""
    existed = info.providers > 0
    total = new_free + info.data.reserved
    if total >= EXISTENTIAL_DEPOSIT:
        info.data.free = new_free
        if not existed:
            info.providers = 1
            sys_pallet.put_account(ctx, who, info)
            ctx.deposit_event(sys_pallet.system, "NewAccount", {"account": who})
            ctx.deposit_event(balances, "Endowed", {"account": who, "free_balance": new_free})
            return
        sys_pallet.put_account(ctx, who, info)
        return
    # below the existential deposit: the account is reaped and the dust burned
    if new_free:
        TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) - new_free)
        ctx.deposit_event(balances, "DustLost", {"account": who, "amount": new_free})
    info.data = AccountData()
    info.providers = 0
    sys_pallet.put_account(ctx, who, info)


def transfer(ctx, source: bytes, dest: bytes, amount: int, keep_alive: bool) -> None:
    src = sys_pallet.Account.get(ctx.state, source)
    if src.data.free < amount:
        raise DispatchError.token("FundsUnavailable")
    remaining = src.data.free - amount
    if keep_alive and remaining + src.data.reserved < EXISTENTIAL_DEPOSIT and amount:
        raise DispatchError.token("NotExpendable")
    if source == dest or amount == 0:
        ctx.deposit_event(balances, "Transfer", {"from": source, "to": dest, "amount": amount})
        return
    dst = sys_pallet.Account.get(ctx.state, dest)
    if dst.providers == 0 and dst.data.free + amount < EXISTENTIAL_DEPOSIT:
        raise DispatchError.token("BelowMinimum")
    _set_free(ctx, source, src, remaining)
    dst = sys_pallet.Account.get(ctx.state, dest)
    _set_free(ctx, dest, dst, dst.data.free + amount)
    ctx.deposit_event(balances, "Transfer", {"from": source, "to": dest, "amount": amount})


def withdraw(ctx, who: bytes, amount: int, keep_alive: bool = True) -> None:
    """Remove `amount` from circulation (fees); keeps the account alive unless told otherwise."""
    info = sys_pallet.Account.get(ctx.state, who)
    if info.data.free < amount:
        raise DispatchError.token("FundsUnavailable")
    remaining = info.data.free - amount
    if keep_alive and remaining + info.data.reserved < EXISTENTIAL_DEPOSIT:
        raise DispatchError.token("NotExpendable")
    _set_free(ctx, who, info, remaining)
    TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) - amount)
    ctx.deposit_event(balances, "Withdraw", {"who": who, "amount": amount})


def deposit(ctx, who: bytes, amount: int) -> None:
    """Mint `amount` into `who` (genesis endowment, unshielding from a bonding account is a transfer)."""
    info = sys_pallet.Account.get(ctx.state, who)
    if info.providers == 0 and info.data.free + amount < EXISTENTIAL_DEPOSIT:
        raise DispatchError.token("BelowMinimum")
    _set_free(ctx, who, info, info.data.free + amount)
    TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) + amount)
    ctx.deposit_event(balances, "Deposit", {"who": who, "amount": amount})


TRANSFER_WEIGHT = 150_000_000

_dest = (MultiAddress, "AccountIdLookupOf<T>")
_value = (Compact(Balance), "T::Balance")


@balances.call(0, weight=TRANSFER_WEIGHT, dest=_dest, value=_value)
def transfer_allow_death(ctx, origin, dest, value: int) -> None:
    """Transfer some liquid free balance to another account; the sender may be reaped."""
    transfer(ctx, ensure_signed(origin), lookup(dest), value, keep_alive=False)


@balances.call(2, weight=TRANSFER_WEIGHT, source=_dest, dest=_dest, value=_value)
def force_transfer(ctx, origin, source, dest, value: int) -> None:
    """Exactly as `transfer_allow_death`, except the origin must be root and the source given."""
    ensure_root(origin)
    transfer(ctx, lookup(source), lookup(dest), value, keep_alive=False)


@balances.call(3, weight=TRANSFER_WEIGHT, dest=_dest, value=_value)
def transfer_keep_alive(ctx, origin, dest, value: int) -> None:
    """Transfer, keeping the sender above the existential deposit."""
    transfer(ctx, ensure_signed(origin), lookup(dest), value, keep_alive=True)


@balances.call(4, weight=TRANSFER_WEIGHT, dest=_dest, keep_alive=(boolean, "bool"))
def transfer_all(ctx, origin, dest, keep_alive: bool) -> None:
    """Transfer the entire transferable balance from the caller account."""
    who = ensure_signed(origin)
    info = sys_pallet.Account.get(ctx.state, who)
    amount = info.data.free - (EXISTENTIAL_DEPOSIT if keep_alive else 0)
    if amount > 0:
        transfer(ctx, who, lookup(dest), amount, keep_alive=keep_alive)


@balances.call(8, weight=TRANSFER_WEIGHT, who=_dest, new_free=_value)
def force_set_balance(ctx, origin, who, new_free: int) -> None:
    """Set the free balance of an account (root only)."""
    ensure_root(origin)
    target = lookup(who)
    info = sys_pallet.Account.get(ctx.state, target)
    old = info.data.free
    if new_free < EXISTENTIAL_DEPOSIT:
        new_free = 0
    _set_free(ctx, target, info, new_free)
    TotalIssuance.put(ctx.state, TotalIssuance.get(ctx.state) - old + new_free)
    ctx.deposit_event(balances, "BalanceSet", {"who": target, "free": new_free})
