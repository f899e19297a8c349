"""The sgx-runtime the STF dispatches into: storage layout and the FRAME rules it relies on.

Owns the shard state's storage layout (FRAME key derivation, `twox128(pallet) ++ twox128(item) ++
hasher(key)`, and the pallet names of the original's `ita_sgx_runtime`) and the behaviour of the
pallets the trusted calls use, as in the original (substrate polkadot-v0.9.42):

| item | key | value |
|---|---|---|
| System.Account | Blake2_128Concat(AccountId) | frame_system::AccountInfo |
| Balances.TotalIssuance | - | u128 |
| Timestamp.Now / DidUpdate | - | u64 / bool |
| Sudo.Key | - | AccountId (root; dev shards: //Alice) |
| Sudo.Enclave_Account_Key | - | AccountId (the enclave's signer account, fee recipient) |
| ShardManagement.ShardModeRegistry | - | ShardMode (u8 enum) |
| ShardManagement.UpgradableShardConfigRegistry | - | (UpgradableShardConfig, BlockNumber) |
| Parentchain{Integritee,TargetA,TargetB}.ShardVault | - | AccountId |
| ... .ParentchainGenesisHash, .ParentHash, .BlockHash, .CreationBlockHash | - | H256 |
| ... .Number, .CreationBlockNumber | - | u32 |
| ... .Now, .CreationTimestamp | - | u64 |
| SessionProxy.SessionProxies | Blake2_128Concat(delegator) ++ Blake2_128Concat(delegate) | (SessionProxyCredentials, Balance deposit) |
| `L1MirrorFor<ParentchainId>` ++ parentchain key | - | mirrored parentchain storage |

Balances follow pallet_balances with ExistentialDeposit 500: accounts are created (provider
reference) when their free balance reaches the ED and reaped, nonce and all, when it falls below
it without reserves (the dust leaves the total issuance); new account data carries the
`IS_NEW_LOGIC` flag (1 << 127) as FRAME's default `ExtraFlags`. Transfers are
`transfer_allow_death` (fungible `Expendable`); `force_set_balance` wipes balances below the ED
and moves the total issuance by the difference. Every public mutating operation is transactional:
it raises `DispatchError` with its own writes undone.

Not stored, unlike the original: trusted notes (the notes pallet's history). Note-producing calls
still enforce the note size limit, so a call that the original would refuse is refused here too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Protocol, TypeVar

from integritee.codec.scale import (
    H256,
    Enum,
    Tuple,
    boolean,
    encode_compact,
    u32,
    u64,
    u128,
    variant,
)
from integritee.crypto.hashing import blake2_128_concat, storage_prefix
from integritee.parentchain.primitives import (
    AccountData,
    AccountId,
    AccountInfo,
    AccountInfoCodec,
)
from integritee.parentchain.tee_types import UpgradableShardConfig
from integritee.trusted.calls import (
    PARENTCHAIN_IDS,
    SessionProxyCredentials,
    SessionProxyCredentialsCodec,
)

T = TypeVar("T")

EXISTENTIAL_DEPOSIT = 500
IS_NEW_LOGIC = 1 << 127
MAX_CONSUMERS = 16
U128_MAX = (1 << 128) - 1
U32_MAX = (1 << 32) - 1
MAX_PROXIES_PER_OWNER = 10
MAX_NOTE_SIZE = 512
ENCLAVE_ACCOUNT_KEY = "Enclave_Account_Key"

PARENTCHAIN_PALLETS: dict[str, str] = {
    "Integritee": "ParentchainIntegritee",
    "TargetA": "ParentchainTargetA",
    "TargetB": "ParentchainTargetB",
}

ShardMode = Enum(
    "pallet_shard_management::ShardMode",
    [
        variant("Initializing", 0),
        variant("Normal", 1),
        variant("MaintenanceOngoing", 2),
        variant("Retired", 3),
    ],
)
ShardConfigAndBlock = Tuple(UpgradableShardConfig, u32)
SessionProxyEntry = Tuple(SessionProxyCredentialsCodec, u128)


# ---------------------------------------------------------------------------------------------
# Storage keys


class Keys:
    """Storage keys of the shard state (see the module docstring for the layout)."""

    ACCOUNT_PREFIX = storage_prefix("System", "Account")
    TOTAL_ISSUANCE = storage_prefix("Balances", "TotalIssuance")
    TIMESTAMP_NOW = storage_prefix("Timestamp", "Now")
    TIMESTAMP_DID_UPDATE = storage_prefix("Timestamp", "DidUpdate")
    SUDO_KEY = storage_prefix("Sudo", "Key")
    ENCLAVE_ACCOUNT = storage_prefix("Sudo", ENCLAVE_ACCOUNT_KEY)
    SHARD_MODE = storage_prefix("ShardManagement", "ShardModeRegistry")
    SHARD_CONFIG = storage_prefix("ShardManagement", "UpgradableShardConfigRegistry")
    SESSION_PROXIES = storage_prefix("SessionProxy", "SessionProxies")

    @staticmethod
    def account(who: bytes) -> bytes:
        return _account_key(bytes(who))

    @staticmethod
    def parentchain(parentchain_id: str, item: str) -> bytes:
        try:
            pallet = PARENTCHAIN_PALLETS[parentchain_id]
        except KeyError:
            raise ValueError(f"unknown parentchain id {parentchain_id!r}") from None
        return storage_prefix(pallet, item)

    @staticmethod
    def session_proxies_of(delegator: bytes) -> bytes:
        return Keys.SESSION_PROXIES + blake2_128_concat(delegator)

    @staticmethod
    def session_proxy(delegator: bytes, delegate: bytes) -> bytes:
        return Keys.session_proxies_of(delegator) + blake2_128_concat(delegate)

    @staticmethod
    def parentchain_mirror(parentchain_id: str, parentchain_key: bytes) -> bytes:
        """Where a mirrored parentchain storage entry lives (`L1MirrorFor<Id>` ++ key)."""
        if parentchain_id not in PARENTCHAIN_IDS:
            raise ValueError(f"unknown parentchain id {parentchain_id!r}")
        return b"L1MirrorFor" + parentchain_id.encode() + bytes(parentchain_key)


@lru_cache(maxsize=1 << 16)
def _account_key(who: bytes) -> bytes:
    # hot: every balance operation reads and writes accounts by this key
    return Keys.ACCOUNT_PREFIX + blake2_128_concat(who)


# Parentchain storage the enclave mirrors into the shard state (keys as on the parentchain).
def enclave_bridge_shard_config_key(shard: bytes) -> bytes:
    return storage_prefix("EnclaveBridge", "ShardConfigRegistry") + blake2_128_concat(shard)


def enclave_bridge_shard_status_key(shard: bytes) -> bytes:
    return storage_prefix("EnclaveBridge", "ShardStatus") + blake2_128_concat(shard)


def sidechain_confirmation_key(shard: bytes) -> bytes:
    return storage_prefix("Sidechain", "LatestSidechainBlockConfirmation") + blake2_128_concat(
        shard
    )


# ---------------------------------------------------------------------------------------------
# Errors and events


class DispatchError(Exception):
    """A failed dispatch; the message reads like the original's Debug output of the error
    (`Token(FundsUnavailable)`, `Module(Balances::InsufficientBalance)`, `ConsumerRemaining`)."""


def _module(pallet: str, error: str) -> DispatchError:
    return DispatchError(f"Module({pallet}::{error})")


def _token(error: str) -> DispatchError:
    return DispatchError(f"Token({error})")


def _arithmetic(error: str) -> DispatchError:
    return DispatchError(f"Arithmetic({error})")


@dataclass
class Event:
    pallet: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        args = ", ".join(
            f"{k}=0x{v.hex()}" if isinstance(v, bytes) else f"{k}={v}"
            for k, v in self.fields.items()
        )
        return f"{self.pallet}.{self.name}({args})"


class StateStorage(Protocol):
    """What the runtime needs of a state: `ShardState` provides it."""

    def get(self, key: bytes) -> bytes | None: ...
    def set(self, key: bytes, value: bytes) -> None: ...
    def delete(self, key: bytes) -> None: ...
    def iter_prefix(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...
    def start_transaction(self) -> None: ...
    def commit_transaction(self) -> None: ...
    def rollback_transaction(self) -> None: ...


def default_account_data() -> AccountData:
    return AccountData(0, 0, 0, IS_NEW_LOGIC)


def default_account_info() -> AccountInfo:
    """`System::account` of an unknown account."""
    return AccountInfo(0, 0, 0, 0, default_account_data())


def _is_default_data(d: AccountData) -> bool:
    return d.free == 0 and d.reserved == 0 and d.frozen == 0 and d.flags == IS_NEW_LOGIC


def note_size(payload: bytes) -> int:
    """Encoded size of `TimestampedTrustedNote { timestamp: u64, version: u16,
    note: TrustedNote::SuccessfulTrustedCall(payload) }`."""
    return 8 + 2 + 1 + len(encode_compact(len(payload))) + len(payload)


# ---------------------------------------------------------------------------------------------
# The runtime


class Runtime:
    """The pallets of the sgx-runtime over one state; `events` collects what dispatches emit."""

    def __init__(self, state: StateStorage) -> None:
        self.state = state
        self.events: list[Event] = []
        # decoded accounts by storage key, valid while the state still holds the same bytes
        # object: a transfer reads its three accounts about a dozen times
        self._accounts: dict[bytes, tuple[bytes, AccountInfo]] = {}

    def transactional(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a storage transaction: on any exception its writes and events are
        undone and the exception propagates."""
        self.state.start_transaction()
        mark = len(self.events)
        try:
            result = fn(*args)
        except BaseException:
            self.state.rollback_transaction()
            del self.events[mark:]
            raise
        self.state.commit_transaction()
        return result

    def deposit_event(self, pallet: str, name: str, **fields: Any) -> None:
        self.events.append(Event(pallet, name, fields))

    # -- typed storage helpers -----------------------------------------------------------------

    def _get_value(self, key: bytes, codec: Any) -> Any:
        raw = self.state.get(key)
        return None if raw is None else codec.decode(raw)

    def _put_value(self, key: bytes, codec: Any, value: Any) -> None:
        self.state.set(key, codec.encode(value))

    # -- frame_system --------------------------------------------------------------------------

    def account(self, who: bytes) -> AccountInfo:
        """A fresh AccountInfo (callers may change it) of `who`'s stored account."""
        key = Keys.account(who)
        raw = self.state.get(key)
        if raw is None:
            return default_account_info()
        hit = self._accounts.get(key)
        if hit is not None and hit[0] is raw:
            info = hit[1]
        else:
            info = AccountInfoCodec.decode(raw)
            self._accounts[key] = (raw, info)
        d = info.data
        return AccountInfo(
            info.nonce,
            info.consumers,
            info.providers,
            info.sufficients,
            AccountData(d.free, d.reserved, d.frozen, d.flags),
        )

    def account_exists(self, who: bytes) -> bool:
        return self.state.get(Keys.account(who)) is not None

    def _put_account(self, who: bytes, info: AccountInfo) -> None:
        self.state.set(Keys.account(who), AccountInfoCodec.encode(info))

    def _remove_account(self, who: bytes) -> None:
        self.state.delete(Keys.account(who))

    def account_nonce(self, who: bytes) -> int:
        return self.account(who).nonce

    def inc_account_nonce(self, who: bytes) -> None:
        info = self.account(who)
        info.nonce = (info.nonce + 1) & U32_MAX
        self._put_account(who, info)

    def inc_providers(self, who: bytes) -> None:
        info = self.account(who)
        if info.providers == 0 and info.sufficients == 0:
            info.providers = 1
        else:
            info.providers += 1
        self._put_account(who, info)

    def dec_providers(self, who: bytes) -> None:
        if not self.account_exists(who):
            return
        info = self.account(who)
        if info.providers == 0:
            info.providers = 1  # as frame_system: a logic error upstream, treat as one
        if info.providers == 1 and info.consumers == 0 and info.sufficients == 0:
            self._remove_account(who)  # reaped
            self.deposit_event("System", "KilledAccount", account=who)
            return
        if info.providers == 1 and info.consumers > 0:
            raise DispatchError("ConsumerRemaining")
        info.providers -= 1
        self._put_account(who, info)

    def inc_consumers(self, who: bytes) -> None:
        info = self.account(who)
        if info.providers == 0:
            raise DispatchError("NoProviders")
        if info.consumers >= MAX_CONSUMERS:
            raise DispatchError("TooManyConsumers")
        info.consumers += 1
        self._put_account(who, info)

    def dec_consumers(self, who: bytes) -> None:
        info = self.account(who)
        if info.consumers > 0:
            info.consumers -= 1
        self._put_account(who, info)

    def can_dec_provider(self, who: bytes) -> bool:
        return _can_dec_provider(self.account(who))

    # -- pallet_balances -----------------------------------------------------------------------

    def total_issuance(self) -> int:
        value = self._get_value(Keys.TOTAL_ISSUANCE, u128)
        return 0 if value is None else int(value)

    def _set_total_issuance(self, value: int) -> None:
        self._put_value(Keys.TOTAL_ISSUANCE, u128, value)

    def _handle_dust(self, dust: int) -> None:
        # DustRemoval = (): the dust's negative imbalance is dropped, burning it.
        self._set_total_issuance(max(0, self.total_issuance() - dust))

    def free_balance(self, who: bytes) -> int:
        return self.account(who).data.free

    def _mutate_account(
        self,
        who: bytes,
        f: Callable[[AccountData, bool], T],
        info: AccountInfo | None = None,
    ) -> tuple[T, int | None]:
        """pallet_balances' `try_mutate_account` inside frame_system's `try_mutate_exists`:
        reference counting, reaping and dust. `info` is the account as just read (saves a
        read on hot paths). Callers are transactional."""
        if info is None:
            info = self.account(who)
        d = info.data
        is_new = _is_default_data(d)
        account = (
            default_account_data() if is_new else AccountData(d.free, d.reserved, d.frozen, d.flags)
        )
        did_provide = account.free >= EXISTENTIAL_DEPOSIT
        did_consume = not is_new and (account.reserved != 0 or account.frozen != 0)
        result = f(account, is_new)
        does_provide = account.free >= EXISTENTIAL_DEPOSIT
        does_consume = account.reserved != 0 or account.frozen != 0
        refs_changed = did_provide != does_provide or did_consume != does_consume
        if not did_provide and does_provide:
            self.inc_providers(who)
        if did_consume and not does_consume:
            self.dec_consumers(who)
        if not did_consume and does_consume:
            self.inc_consumers(who)
        if did_provide and not does_provide:
            self.dec_providers(who)  # may reap the account, so it goes last
        dust: int | None = None
        keep: AccountData | None = account
        if account.free < EXISTENTIAL_DEPOSIT and account.reserved == 0:
            keep = None
            if account.free:
                dust = account.free
        if refs_changed:
            info = self.account(who)
        if info.providers > 0 or info.sufficients > 0:
            info.data = keep if keep is not None else default_account_data()
            self._put_account(who, info)
        else:
            self._remove_account(who)
        if is_new and keep is not None:
            self.deposit_event("Balances", "Endowed", account=who, free_balance=account.free)
        if dust is not None:
            self.deposit_event("Balances", "DustLost", account=who, amount=dust)
        return result, dust

    def reducible_balance(self, who: bytes, preservation: str, force: bool) -> int:
        """What `who` can spend: "expendable", "protect" or "preserve"; `force` ignores
        freezes."""
        return _reducible(self.account(who), preservation, force)

    def _write_balance(self, who: bytes, amount: int, info: AccountInfo) -> int | None:
        max_reduction = _reducible(info, "expendable", True)

        def write(account: AccountData, _is_new: bool) -> None:
            if max(0, account.free - amount) > max_reduction:
                raise _module("Balances", "InsufficientBalance")
            account.free = amount

        return self._mutate_account(who, write, info)[1]

    def _decrease_balance(self, who: bytes, amount: int, preservation: str) -> int:
        # best effort, polite: what fungible::Mutate::transfer uses
        info = self.account(who)
        old = info.data.free
        amount = min(amount, _reducible(info, preservation, False))
        if old < amount:
            raise _token("FundsUnavailable")
        new = old - amount
        dust = self._write_balance(who, new, info)
        if dust:
            self._handle_dust(dust)
        return old - new

    def _increase_balance(self, who: bytes, amount: int) -> int:
        # best effort: an increase that leaves the account below the ED is dropped
        info = self.account(who)
        old = info.data.free
        new = min(U128_MAX, old + amount)
        if new < EXISTENTIAL_DEPOSIT or new == old:
            return 0
        dust = self._write_balance(who, new, info)
        if dust:
            self._handle_dust(dust)
        return new - old

    def _can_withdraw(self, who: bytes, amount: int) -> None:
        """fungible `can_withdraw(..).into_result(keep_nonzero = false)`."""
        if amount == 0:
            return
        if self.total_issuance() < amount:
            raise _arithmetic("Underflow")
        info = self.account(who)
        a = info.data
        if a.free < amount:
            raise _token("FundsUnavailable")
        new_free = a.free - amount
        if amount > _reducible(info, "expendable", False):
            raise _token("Frozen")
        if new_free < EXISTENTIAL_DEPOSIT and not _can_dec_provider(info):
            raise _token("OnlyProvider")
        if new_free + a.reserved < a.frozen:
            raise _token("Frozen")

    def _can_deposit(self, who: bytes, amount: int) -> None:
        """fungible `can_deposit(.., Extant).into_result()`."""
        if amount == 0:
            return
        a = self.account(who).data
        new_free = a.free + amount
        if new_free > U128_MAX:
            raise _arithmetic("Overflow")
        if new_free < EXISTENTIAL_DEPOSIT:
            raise _token("BelowMinimum")
        if a.reserved + new_free > U128_MAX:
            raise _arithmetic("Overflow")

    def transfer(self, source: bytes, dest: bytes, amount: int) -> None:
        """`Balances::transfer_allow_death`: the source may be reaped."""
        _check_balance(amount)
        self.transactional(self._transfer, source, dest, amount)

    def _transfer(self, source: bytes, dest: bytes, amount: int) -> None:
        self._can_withdraw(source, amount)
        self._can_deposit(dest, amount)
        self._decrease_balance(source, amount, "expendable")
        self._increase_balance(dest, amount)
        self.deposit_event("Balances", "Transfer", source=source, dest=dest, amount=amount)

    def force_set_balance(self, who: bytes, new_free: int) -> None:
        """`Balances::force_set_balance` (root): below the ED means zero."""
        _check_balance(new_free)
        self.transactional(self._force_set_balance, who, new_free)

    def _force_set_balance(self, who: bytes, new_free: int) -> None:
        if new_free < EXISTENTIAL_DEPOSIT:
            new_free = 0

        def set_free(account: AccountData, _is_new: bool) -> int:
            old = account.free
            account.free = new_free
            return old

        old_free, dust = self._mutate_account(who, set_free)
        if dust:
            self._handle_dust(dust)
        if new_free > old_free:
            self._set_total_issuance(min(U128_MAX, self.total_issuance() + new_free - old_free))
        elif new_free < old_free:
            self._set_total_issuance(max(0, self.total_issuance() - (old_free - new_free)))
        self.deposit_event("Balances", "BalanceSet", who=who, free=new_free)

    def reserve(self, who: bytes, amount: int) -> None:
        _check_balance(amount)
        if amount:
            self.transactional(self._reserve, who, amount)

    def _reserve(self, who: bytes, amount: int) -> None:
        def move(account: AccountData, _is_new: bool) -> None:
            if account.free < amount:
                raise _module("Balances", "InsufficientBalance")
            if account.reserved + amount > U128_MAX:
                raise _arithmetic("Overflow")
            account.free -= amount
            account.reserved += amount
            if account.free < account.frozen:
                raise _module("Balances", "LiquidityRestrictions")

        _, dust = self._mutate_account(who, move)
        if dust:
            self._handle_dust(dust)
        self.deposit_event("Balances", "Reserved", who=who, amount=amount)

    def unreserve(self, who: bytes, amount: int) -> int:
        """Move up to `amount` back to free; returns what could not be unreserved."""
        if amount == 0:
            return 0
        a = self.account(who).data
        if a.free + a.reserved == 0:
            return amount

        def move(account: AccountData, _is_new: bool) -> int:
            actual = min(account.reserved, amount)
            account.reserved -= actual
            account.free = min(U128_MAX, account.free + actual)
            return actual

        try:
            actual, dust = self.transactional(self._mutate_account, who, move)
        except DispatchError:
            return amount
        if dust:
            self._handle_dust(dust)
        self.deposit_event("Balances", "Unreserved", who=who, amount=actual)
        return amount - actual

    # -- sudo / enclave ------------------------------------------------------------------------

    def root_account(self) -> bytes | None:
        value = self._get_value(Keys.SUDO_KEY, AccountId)
        return None if value is None else bytes(value)

    def enclave_account(self) -> bytes | None:
        value = self._get_value(Keys.ENCLAVE_ACCOUNT, AccountId)
        return None if value is None else bytes(value)

    # -- parentchain pallets -------------------------------------------------------------------

    def parentchain_value(self, parentchain_id: str, item: str) -> Any:
        codec = _PARENTCHAIN_ITEMS[item]
        return self._get_value(Keys.parentchain(parentchain_id, item), codec)

    def set_parentchain_value(self, parentchain_id: str, item: str, value: Any) -> None:
        self._put_value(Keys.parentchain(parentchain_id, item), _PARENTCHAIN_ITEMS[item], value)

    def shard_vault(self) -> tuple[bytes, str] | None:
        """The first shard vault set on any parentchain (the original assumes at most one)."""
        for pid in PARENTCHAIN_IDS:
            vault = self.parentchain_value(pid, "ShardVault")
            if vault is not None:
                return bytes(vault), pid
        return None

    def shielding_target(self) -> str:
        vault = self.shard_vault()
        return vault[1] if vault else "Integritee"

    # -- timestamp -----------------------------------------------------------------------------

    def now(self) -> int | None:
        value = self._get_value(Keys.TIMESTAMP_NOW, u64)
        return None if value is None else int(value)

    def set_now(self, now: int) -> None:
        self._put_value(Keys.TIMESTAMP_NOW, u64, now)
        self._put_value(Keys.TIMESTAMP_DID_UPDATE, boolean, True)

    # -- shard management ----------------------------------------------------------------------

    def shard_mode(self) -> str:
        value = self._get_value(Keys.SHARD_MODE, ShardMode)
        return "Initializing" if value is None else str(value.name)

    def set_shard_mode(self, mode: str) -> None:
        if self.shard_mode() == "Retired":
            raise _module("ShardManagement", "Retired")
        self._put_value(Keys.SHARD_MODE, ShardMode, mode)

    def shard_config(self) -> tuple[dict[str, Any], int] | None:
        value = self._get_value(Keys.SHARD_CONFIG, ShardConfigAndBlock)
        return None if value is None else (value[0], int(value[1]))

    def set_shard_config(self, config: dict[str, Any], parentchain_block_number: int) -> None:
        """`ShardManagement::set_shard_config`: unchanged configs are ignored; a config in
        maintenance mode moves the shard to MaintenanceOngoing (unless retired)."""
        current = self.shard_config()
        if current is not None and current[0] == config:
            return
        if config["active_config"]["maintenance_mode"] and self.shard_mode() != "Retired":
            self.set_shard_mode("MaintenanceOngoing")
        self._put_value(Keys.SHARD_CONFIG, ShardConfigAndBlock, (config, parentchain_block_number))

    def in_maintenance_mode(self) -> bool:
        current = self.shard_config()
        return current is not None and bool(current[0]["active_config"]["maintenance_mode"])

    # -- session proxies -----------------------------------------------------------------------

    def session_proxy(
        self, delegator: bytes, delegate: bytes
    ) -> tuple[SessionProxyCredentials, int] | None:
        value = self._get_value(Keys.session_proxy(delegator, delegate), SessionProxyEntry)
        return None if value is None else (value[0], int(value[1]))

    def session_proxies_of(self, delegator: bytes) -> list[tuple[bytes, SessionProxyCredentials]]:
        prefix = Keys.session_proxies_of(delegator)
        out = []
        for key, raw in self.state.iter_prefix(prefix):
            credentials, _deposit = SessionProxyEntry.decode(raw)
            out.append((key[len(prefix) + 16 :], credentials))
        return out

    def add_proxy(
        self, delegator: bytes, delegate: bytes, credentials: SessionProxyCredentials, deposit: int
    ) -> None:
        """`SessionProxy::add_proxy` signed by the delegator."""
        self.transactional(self._add_proxy, delegator, delegate, credentials, deposit)

    def _add_proxy(
        self, delegator: bytes, delegate: bytes, credentials: SessionProxyCredentials, deposit: int
    ) -> None:
        if delegator == delegate:
            raise _module("SessionProxy", "SelfProxyForbidden")
        existing = self.session_proxy(delegator, delegate)
        if existing is not None:
            old = existing[1]
            if deposit > old:
                self.reserve(delegator, deposit - old)
            elif deposit < old:
                self.unreserve(delegator, old - deposit)
        else:
            count = sum(1 for _ in self.state.iter_prefix(Keys.session_proxies_of(delegator)))
            if count >= MAX_PROXIES_PER_OWNER:
                raise _module("SessionProxy", "TooManyProxies")
            self.reserve(delegator, deposit)
        self._put_value(
            Keys.session_proxy(delegator, delegate), SessionProxyEntry, (credentials, deposit)
        )

    # -- notes ---------------------------------------------------------------------------------

    @staticmethod
    def check_note(payload: bytes, link_to: int) -> None:
        """The notes pallet's admission rules for a note of `payload` (it is not stored)."""
        if link_to >= 3:
            raise _module("Notes", "TooManyLinkedAccounts")
        if note_size(payload) > MAX_NOTE_SIZE:
            raise _module("Notes", "NoteTooLong")


_PARENTCHAIN_ITEMS: dict[str, Any] = {
    "ShardVault": AccountId,
    "ParentchainGenesisHash": H256,
    "Number": u32,
    "Now": u64,
    "ParentHash": H256,
    "BlockHash": H256,
    "CreationBlockHash": H256,
    "CreationBlockNumber": u32,
    "CreationTimestamp": u64,
}


def _can_dec_provider(info: AccountInfo) -> bool:
    return info.consumers == 0 or info.providers > 1


def _reducible(info: AccountInfo, preservation: str, force: bool) -> int:
    """fungible `reducible_balance` of an account as read."""
    a = info.data
    untouchable = 0 if force else max(0, a.frozen - a.reserved)
    if (
        preservation == "preserve"
        or (preservation == "protect" and a.free != 0 and info.providers == 1)
        or (preservation == "expendable" and a.free != 0 and not _can_dec_provider(info))
    ):
        untouchable = max(untouchable, EXISTENTIAL_DEPOSIT)
    return max(0, a.free - untouchable)


def _check_balance(amount: object) -> None:
    if not isinstance(amount, int) or isinstance(amount, bool) or not 0 <= amount <= U128_MAX:
        raise DispatchError(f"invalid balance {amount!r}")


__all__ = [
    "DispatchError",
    "EXISTENTIAL_DEPOSIT",
    "Event",
    "IS_NEW_LOGIC",
    "Keys",
    "Runtime",
    "ShardMode",
    "default_account_info",
]
