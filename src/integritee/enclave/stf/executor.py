"""The state transition function: executing signed trusted calls against a shard state.

`Stf.execute` applies one `TrustedCallSigned` the way the original's `TrustedCallSigned::execute`
and its STF executor do:

1. the signature must verify (by the delegate if one is named, else by the sender) over
   `SCALE(call) ++ SCALE(nonce) ++ mrenclave ++ shard` or its `<Bytes>` wrapping;
2. a delegate must hold a session proxy of the sender whose role allows the call (Any: all calls;
   NonTransfer: noop and send_note) and, if it has an expiry, has not expired;
3. the nonce must equal the sender's account nonce;
4. the fee is charged first (transferred to the enclave account);
5. the nonce is incremented;

Anything failing in 1-4 is a *rejection*: the state is untouched. After 5 the call is dispatched in
a storage transaction: if it fails, its own writes are undone but the fee and the nonce stay
(status `failed`), which is why a transfer beyond the balance still costs the fee and a nonce.

Fees (UNIT = 10^12, the shielding target's decimals): transfer, noop, send_note and
add_session_proxy UNIT/100; transfer_with_note additionally UNIT * len(note) / 10_000; unshield
(either way) 3 * UNIT/100; shielding, timestamp_set and balance_set_balance are free, shielding
instead credits the recipient `amount - amount / 571` and the enclave `amount / 571`.
balance_shield* and timestamp_set must be sent by the enclave account itself (indirect
invocation); balance_set_balance only exists on dev shards (`Stf(dev=True)`) and only for the
root account (Sudo.Key, //Alice on dev shards).

Unshielding burns the amount on the sidechain and returns a `ParentchainCall` instruction for the
enclave to submit: `UnshieldFromVault` (Proxy.proxy(vault, Balances.transfer_keep_alive)) when
the shard has a vault, else `UnshieldThroughEnclaveBridge` (EnclaveBridge.unshield_funds with
`call_hash = blake2_256(SCALE(trusted call))`, as the original).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from integritee.codec.scale import (
    EnumValue,
    ScaleDecodeError,
    ScaleEncodeError,
    encode_compact,
    u128,
)
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair, dev_keypair
from integritee.enclave.stf.runtime import (
    DispatchError,
    Event,
    Keys,
    Runtime,
    StateStorage,
    enclave_bridge_shard_config_key,
    enclave_bridge_shard_status_key,
    sidechain_confirmation_key,
)
from integritee.parentchain.primitives import AccountInfo, Header, MultiAddress
from integritee.parentchain.tee_types import UpgradableShardConfig
from integritee.trusted.calls import (
    PARENTCHAIN_IDS,
    TrustedCall,
    TrustedCallSigned,
    call_sender,
    sign_call,
)

log = logging.getLogger(__name__)

UNIT = 10**12
STF_TX_FEE_UNIT_DIVIDER = 100
STF_SHIELDING_FEE_AMOUNT_DIVIDER = 571
STF_BYTE_FEE_UNIT_DIVIDER = 10_000
STF_SESSION_PROXY_DEPOSIT_DIVIDER = 10
MORTALITY_PERIOD = 32
U128_MAX = (1 << 128) - 1

# The original's test genesis (feature "test"), used for dev shards.
DEV_ROOT = dev_keypair("Alice").public_key
DEV_ENDOWMENTS: tuple[tuple[bytes, int], ...] = (
    (Keypair.from_seed(b"12345678901234567890123456789012", "ed25519").public_key, 2 * UNIT),
    (Keypair.from_seed(b"22345678901234567890123456789012", "ed25519").public_key, UNIT),
    (DEV_ROOT, 10_000 * UNIT),
)
ENCLAVE_ACCOUNT_INITIAL_BALANCE = 1000

CallIndex = Callable[[str, str], bytes]
"""(pallet name, call name) -> the call's two index bytes in the parentchain's metadata."""


# ---------------------------------------------------------------------------------------------
# Parentchain calls produced by unshielding


@dataclass(frozen=True)
class Mortality:
    """Mortal era anchored at the last imported block of the target parentchain."""

    block_number: int
    block_hash: bytes
    period: int = MORTALITY_PERIOD


@dataclass(frozen=True)
class UnshieldFromVault:
    """Pay `amount` from the shard vault: `Proxy.proxy(vault, None,
    Balances.transfer_keep_alive(beneficiary, amount))` on the vault's parentchain."""

    parentchain_id: str
    vault: bytes
    beneficiary: bytes
    amount: int
    mortality: Mortality | None

    def encode_call(self, call_index: CallIndex) -> bytes:
        inner = (
            call_index("Balances", "transfer_keep_alive")
            + MultiAddress.encode(EnumValue("Id", self.beneficiary))
            + encode_compact(self.amount)
        )
        return (
            call_index("Proxy", "proxy")
            + MultiAddress.encode(EnumValue("Id", self.vault))
            + b"\x00"  # force_proxy_type: None
            + inner
        )


@dataclass(frozen=True)
class UnshieldThroughEnclaveBridge:
    """`EnclaveBridge.unshield_funds(shard, beneficiary, amount, call_hash)` on Integritee."""

    shard: bytes
    beneficiary: bytes
    amount: int
    call_hash: bytes
    mortality: Mortality | None
    parentchain_id: str = "Integritee"

    def encode_call(self, call_index: CallIndex) -> bytes:
        return (
            call_index("EnclaveBridge", "unshield_funds")
            + self.shard
            + self.beneficiary
            + u128.encode(self.amount)
            + self.call_hash
        )


ParentchainCall = UnshieldFromVault | UnshieldThroughEnclaveBridge


@dataclass
class CallOutcome:
    """What executing one trusted call did.

    status: "success"; "failed" (fee charged and nonce used, the call's own changes undone);
    "rejected" (state untouched; `error_kind` is one of "malformed", "bad_signature",
    "unavailable", "unauthorized", "stale_nonce", "future_nonce", "missing_funds",
    "no_enclave_account").
    """

    status: str
    error: str | None = None
    error_kind: str | None = None
    parentchain_calls: list[ParentchainCall] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    call_hash: bytes | None = None

    @property
    def ok(self) -> bool:
        return self.status == "success"

    @property
    def rejected(self) -> bool:
        return self.status == "rejected"


class _Rejected(Exception):
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _wrap(prefix: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except DispatchError as exc:
        raise DispatchError(f"{prefix}: {exc}") from exc


def _hex(account: bytes) -> str:
    return "0x" + bytes(account).hex()


# ---------------------------------------------------------------------------------------------
# The STF


class Stf:
    """Executes trusted calls for enclave `mrenclave`; `dev` enables the dev-only call and the
    test genesis; `unit` is one token of the shielding target (10^decimals)."""

    def __init__(self, mrenclave: bytes, *, dev: bool = False, unit: int = UNIT) -> None:
        if len(mrenclave) != 32:
            raise ValueError("mrenclave must be 32 bytes")
        self.mrenclave = bytes(mrenclave)
        self.dev = dev
        self.unit = unit

    # -- genesis -------------------------------------------------------------------------------

    def init_state(self, state: StateStorage, enclave_account: bytes) -> None:
        """A new shard's state: zero issuance, the enclave account (with 1000, above the ED) and,
        on dev shards, root //Alice and the original's test endowments."""
        rt = Runtime(state)
        rt._set_total_issuance(0)
        if self.dev:
            state.set(Keys.SUDO_KEY, DEV_ROOT)
            for account, amount in DEV_ENDOWMENTS:
                rt.force_set_balance(account, amount)
        state.set(Keys.ENCLAVE_ACCOUNT, bytes(enclave_account))
        rt.force_set_balance(bytes(enclave_account), ENCLAVE_ACCOUNT_INITIAL_BALANCE)

    # -- fees ----------------------------------------------------------------------------------

    def fee_for(self, call: EnumValue) -> int:
        one = self.unit
        name = call.name
        if name in ("balance_transfer", "noop", "send_note", "add_session_proxy"):
            return one // STF_TX_FEE_UNIT_DIVIDER
        if name == "balance_transfer_with_note":
            note = call.value[3]
            return one // STF_TX_FEE_UNIT_DIVIDER + min(U128_MAX, one * len(note)) // (
                STF_BYTE_FEE_UNIT_DIVIDER
            )
        if name in ("balance_unshield", "balance_unshield_through_enclave_bridge_pallet"):
            return one // STF_TX_FEE_UNIT_DIVIDER * 3
        return 0  # shielding (charged on the recipient), timestamp_set, balance_set_balance

    def shielding_fee(self, amount: int) -> int:
        return amount // STF_SHIELDING_FEE_AMOUNT_DIVIDER

    # -- execution -----------------------------------------------------------------------------

    def execute(
        self,
        state: StateStorage,
        shard: bytes,
        tcs: TrustedCallSigned,
        *,
        verify_signature: bool = True,
    ) -> CallOutcome:
        """Execute one signed call; never raises for bad input (see `CallOutcome`).

        `verify_signature=False` is for callers that checked the signature already (the pool)
        and for benchmarks; the signer's authorization and the nonce are always checked."""
        rt = Runtime(state)
        try:
            # the signed call (nonce included) names the call: two identical unshields are two
            # payouts, while every validateer executing the same call agrees on its hash
            call_hash = blake2_256(tcs.encode())
        except (ScaleEncodeError, ValueError, TypeError) as exc:
            return CallOutcome("rejected", f"malformed trusted call: {exc}", "malformed")
        try:
            # transactional, so that a rejection can never leave a fee or nonce behind
            rt.transactional(self._admit, rt, shard, tcs, verify_signature)
        except _Rejected as rej:
            return CallOutcome("rejected", str(rej), rej.kind, call_hash=call_hash)
        except (DispatchError, ScaleDecodeError, ValueError) as exc:
            return CallOutcome(
                "rejected", f"invalid state: {exc}", "malformed", call_hash=call_hash
            )

        calls: list[ParentchainCall] = []
        if not self._may_execute(rt, tcs.call):
            return CallOutcome("failed", "Filtered", events=rt.events, call_hash=call_hash)
        try:
            rt.transactional(self._dispatch, rt, bytes(shard), tcs.call, call_hash, calls)
        except DispatchError as exc:
            log.debug("trusted call 0x%s failed: %s", call_hash.hex(), exc)
            return CallOutcome("failed", str(exc), events=rt.events, call_hash=call_hash)
        except (ScaleDecodeError, ScaleEncodeError, ValueError, TypeError) as exc:
            log.warning("trusted call 0x%s failed on invalid data: %s", call_hash.hex(), exc)
            return CallOutcome(
                "failed", f"invalid call or state: {exc}", events=rt.events, call_hash=call_hash
            )
        return CallOutcome("success", None, None, calls, rt.events, call_hash)

    def _admit(
        self, rt: Runtime, shard: bytes, tcs: TrustedCallSigned, verify_signature: bool
    ) -> None:
        """Steps 1-5: everything before the call's own dispatch. Raises `_Rejected` with the
        state untouched, or returns with the fee charged and the nonce incremented."""
        call = tcs.call
        if verify_signature and not tcs.verify_signature(self.mrenclave, shard):
            raise _Rejected("bad_signature", f"bad signature (expected signer {_hex(tcs.signer)})")
        if call.name == "balance_set_balance" and not self.dev:
            raise _Rejected("unavailable", "balance_set_balance is only available on dev shards")
        sender = call_sender(call)
        self._authorize(rt, tcs, sender)
        expected = rt.account_nonce(sender)
        if tcs.nonce != expected:
            kind = "stale_nonce" if tcs.nonce < expected else "future_nonce"
            raise _Rejected(kind, f"InvalidNonce({tcs.nonce}, {expected})")
        fee = self.fee_for(call)
        if fee:
            enclave = rt.enclave_account()
            if enclave is None:
                raise _Rejected("no_enclave_account", "the shard state has no enclave account")
            try:
                rt.transfer(sender, enclave, fee)
            except DispatchError as exc:
                raise _Rejected("missing_funds", f"MissingFunds (fee {fee}: {exc})") from exc
        rt.inc_account_nonce(sender)

    def _authorize(self, rt: Runtime, tcs: TrustedCallSigned, sender: bytes) -> None:
        delegate = tcs.delegate
        if delegate is None:
            return
        entry = rt.session_proxy(sender, delegate)
        if entry is None:
            raise _Rejected(
                "unauthorized",
                f"MissingPrivileges({_hex(delegate)}): not a session proxy of {_hex(sender)}",
            )
        credentials = entry[0]
        now = rt.now()
        if credentials.expiry is not None and now is not None and now > credentials.expiry:
            raise _Rejected("unauthorized", f"MissingPrivileges({_hex(delegate)}): proxy expired")
        role = credentials.role_name
        if role == "Any" or (role == "NonTransfer" and tcs.call.name in ("noop", "send_note")):
            return
        raise _Rejected(
            "unauthorized",
            f"MissingPrivileges({_hex(delegate)}): role {role} may not send {tcs.call.name}",
        )

    def _may_execute(self, rt: Runtime, call: EnumValue) -> bool:
        if rt.in_maintenance_mode():
            return call.name in (
                "balance_shield",
                "balance_shield_through_enclave_bridge_pallet",
                "timestamp_set",
            )
        return True

    def _dispatch(
        self,
        rt: Runtime,
        shard: bytes,
        call: EnumValue,
        call_hash: bytes,
        calls: list[ParentchainCall],
    ) -> None:
        name, args = call.name, call.value
        if name == "noop":
            return
        if name in ("balance_transfer", "balance_transfer_with_note"):
            sender, to, amount = args[0], args[1], args[2]
            _wrap("Balance Transfer error", rt.transfer, sender, to, amount)
            self._store_note(call, [sender, to])
        elif name == "balance_unshield":
            sender, beneficiary, amount, call_shard = args
            if call_shard != shard:
                raise DispatchError("wrong shard")
            vault = rt.shard_vault()
            if vault is None:
                raise DispatchError("shard vault key hasn't been set")
            self._burn(rt, sender, amount)
            calls.append(
                UnshieldFromVault(vault[1], vault[0], beneficiary, amount, _mortality(rt, vault[1]))
            )
        elif name == "balance_unshield_through_enclave_bridge_pallet":
            sender, beneficiary, amount, call_shard = args
            if rt.shard_vault() is not None:
                raise DispatchError("shard vault key has been set. you may not use enclave bridge")
            if call_shard != shard:
                raise DispatchError("wrong shard")
            self._burn(rt, sender, amount)
            calls.append(
                UnshieldThroughEnclaveBridge(
                    shard, beneficiary, amount, call_hash, _mortality(rt, "Integritee")
                )
            )
        elif name == "balance_shield":
            enclave, who, amount, parentchain_id = args
            self._ensure_enclave(rt, enclave)
            vault = rt.shard_vault()
            if vault is None:
                raise DispatchError("NoShardVaultAssigned")
            if _pid(parentchain_id) != vault[1]:
                raise DispatchError("WrongParentchainIdForShardVault")
            self._store_note(call, [who])
            self._shield(rt, who, amount)
        elif name == "balance_shield_through_enclave_bridge_pallet":
            enclave, who, amount = args
            self._ensure_enclave(rt, enclave)
            if rt.shard_vault() is not None:
                raise DispatchError("EnclaveBridgeShieldingDisabledIfVaultAssigned")
            self._shield(rt, who, amount)
            self._store_note(call, [who])
        elif name == "timestamp_set":
            enclave, now, parentchain_id = args
            self._ensure_enclave(rt, enclave)
            pid = _pid(parentchain_id)
            if pid == "Integritee" and rt.parentchain_value(pid, "CreationTimestamp") is None:
                rt.set_parentchain_value(pid, "CreationTimestamp", now)
            rt.set_parentchain_value(pid, "Now", now)
        elif name == "send_note":
            sender, to, _note = args
            self._store_note(call, [sender, to])
        elif name == "add_session_proxy":
            delegator, delegate, credentials = args
            deposit = self.unit // STF_SESSION_PROXY_DEPOSIT_DIVIDER
            _wrap("SessionProxy add error", rt.add_proxy, delegator, delegate, credentials, deposit)
            self._store_note(call, [delegator])
        elif name == "balance_set_balance":
            root, who, free, _reserved = args
            if rt.root_account() != root:
                raise DispatchError(f"MissingPrivileges({_hex(root)})")
            _wrap("Balance Set Balance error", rt.force_set_balance, who, free)
            self._store_note(call, [who])
        else:  # pragma: no cover - the codec admits only the variants above
            raise DispatchError(f"unsupported trusted call {name}")

    def _ensure_enclave(self, rt: Runtime, account: bytes) -> None:
        if rt.enclave_account() != account:
            raise DispatchError("RequireEnclaveSignerAccount")

    def _store_note(self, call: EnumValue, link_to: list[bytes]) -> None:
        # The original keeps the call as a note; this enclave keeps no notes but enforces the
        # notes pallet's limits, so the same calls succeed or fail.
        _wrap("Store note error", Runtime.check_note, TrustedCall.encode(call), len(set(link_to)))

    def _burn(self, rt: Runtime, account: bytes, amount: int) -> None:
        free = rt.free_balance(account)
        if free < amount:
            raise DispatchError("MissingFunds")
        _wrap("Burn funds error", rt.force_set_balance, account, free - amount)

    def _shield(self, rt: Runtime, who: bytes, amount: int) -> None:
        fee = self.shielding_fee(amount)
        enclave = rt.enclave_account()
        if enclave is None:
            raise DispatchError("Shield funds error: no enclave account")
        enclave_free = rt.free_balance(enclave) + fee
        if enclave_free > U128_MAX:
            raise DispatchError("Shield funds error: Arithmetic(Overflow)")
        _wrap("Shield funds error", rt.force_set_balance, enclave, enclave_free)
        who_free = rt.free_balance(who) + amount - fee
        if who_free > U128_MAX:
            raise DispatchError("Shield funds error: Arithmetic(Overflow)")
        _wrap("Shield funds error", rt.force_set_balance, who, who_free)

    # -- calls made by the enclave itself (indirect invocation) --------------------------------

    def sign_enclave_call(
        self,
        state: StateStorage,
        shard: bytes,
        call: EnumValue,
        enclave_key: Keypair,
        pending: int = 0,
    ) -> TrustedCallSigned:
        """Sign `call` with the enclave key at the enclave account's nonce (+ `pending` calls
        of the enclave not yet executed), as the original's enclave signer does."""
        nonce = Runtime(state).account_nonce(enclave_key.public_key) + pending
        return sign_call(call, enclave_key, nonce, self.mrenclave, shard)

    def execute_indirect(
        self, state: StateStorage, shard: bytes, call: EnumValue, enclave_key: Keypair
    ) -> CallOutcome:
        """Sign `call` (e.g. a shield from the parentchain) with the enclave key and execute it."""
        return self.execute(state, shard, self.sign_enclave_call(state, shard, call, enclave_key))

    # -- parentchain pallets (driven by the enclave's parentchain import) ----------------------

    def update_parentchain_block(
        self, state: StateStorage, parentchain_id: str, header: Header
    ) -> None:
        """`Parentchain::set_block`: remember the last imported block (used for mortality)."""
        rt = Runtime(state)
        rt.set_parentchain_value(parentchain_id, "Number", header.number)
        rt.set_parentchain_value(parentchain_id, "ParentHash", header.parent_hash)
        rt.set_parentchain_value(parentchain_id, "BlockHash", header.hash())

    def parentchain_number(self, state: StateStorage, parentchain_id: str) -> int | None:
        """The last parentchain block recorded with `update_parentchain_block`."""
        value = Runtime(state).parentchain_value(parentchain_id, "Number")
        return None if value is None else int(value)

    def set_creation_block(self, state: StateStorage, parentchain_id: str, header: Header) -> None:
        rt = Runtime(state)
        rt.set_parentchain_value(parentchain_id, "CreationBlockNumber", header.number)
        rt.set_parentchain_value(parentchain_id, "CreationBlockHash", header.hash())

    def init_shard_vault(self, state: StateStorage, parentchain_id: str, vault: bytes) -> None:
        rt = Runtime(state)
        if rt.parentchain_value(parentchain_id, "ShardVault") is not None:
            raise DispatchError(
                f"Module(Parentchain{parentchain_id}::ShardVaultAlreadyInitialized)"
            )
        rt.set_parentchain_value(parentchain_id, "ShardVault", bytes(vault))

    def init_parentchain_genesis_hash(
        self, state: StateStorage, parentchain_id: str, genesis_hash: bytes
    ) -> None:
        rt = Runtime(state)
        if rt.parentchain_value(parentchain_id, "ParentchainGenesisHash") is not None:
            raise DispatchError(f"Module(Parentchain{parentchain_id}::GenesisAlreadyInitialized)")
        rt.set_parentchain_value(parentchain_id, "ParentchainGenesisHash", bytes(genesis_hash))

    def storage_keys_to_mirror(
        self, state: StateStorage, parentchain_id: str, shard: bytes
    ) -> list[bytes]:
        """Parentchain storage keys to read (with proof) and mirror into the state on each
        imported block of `parentchain_id`."""
        keys: list[bytes] = []
        if parentchain_id == "Integritee":
            keys += [
                enclave_bridge_shard_status_key(shard),
                enclave_bridge_shard_config_key(shard),
                sidechain_confirmation_key(shard),
            ]
        vault = Runtime(state).shard_vault()
        if vault is not None and vault[1] == parentchain_id:
            keys.append(Keys.account(vault[0]))
        return keys

    def mirror_parentchain_storage(
        self, state: StateStorage, parentchain_id: str, entries: Mapping[bytes, bytes | None]
    ) -> None:
        for key, value in entries.items():
            mirrored = Keys.parentchain_mirror(parentchain_id, key)
            if value is None:
                state.delete(mirrored)
            else:
                state.set(mirrored, bytes(value))

    def on_initialize(
        self, state: StateStorage, shard: bytes, integritee_block_number: int, now: int
    ) -> None:
        """Start of a sidechain block: timestamp, the mirrored shard config, shard mode."""
        rt = Runtime(state)
        rt.set_now(now)
        raw = state.get(
            Keys.parentchain_mirror("Integritee", enclave_bridge_shard_config_key(shard))
        )
        if raw is not None:
            try:
                config = UpgradableShardConfig.decode(raw)
            except ScaleDecodeError as exc:
                log.error("mirrored shard config does not decode: %s", exc)
            else:
                rt.set_shard_config(config, integritee_block_number)
        if rt.shard_mode() == "Initializing":
            rt.set_shard_mode("Normal")

    # -- queries -------------------------------------------------------------------------------

    def account_info(self, state: StateStorage, who: bytes) -> AccountInfo:
        return Runtime(state).account(who)

    def account_nonce(self, state: StateStorage, who: bytes) -> int:
        return Runtime(state).account_nonce(who)

    def enclave_account(self, state: StateStorage) -> bytes | None:
        return Runtime(state).enclave_account()

    def shard_vault(self, state: StateStorage) -> tuple[bytes, str] | None:
        return Runtime(state).shard_vault()

    def shard_creation_info(self, state: StateStorage) -> dict[str, dict[str, Any] | None]:
        """Per parentchain: {number, hash, timestamp} of the block the shard was created at."""
        rt = Runtime(state)
        out: dict[str, dict[str, Any] | None] = {}
        for pid in PARENTCHAIN_IDS:
            number = rt.parentchain_value(pid, "CreationBlockNumber")
            block_hash = rt.parentchain_value(pid, "CreationBlockHash")
            out[pid] = (
                None
                if number is None or block_hash is None
                else {
                    "number": number,
                    "hash": bytes(block_hash),
                    "timestamp": rt.parentchain_value(pid, "CreationTimestamp"),
                }
            )
        return out


def _pid(value: EnumValue | str) -> str:
    return value if isinstance(value, str) else str(value.name)


def _mortality(rt: Runtime, parentchain_id: str) -> Mortality | None:
    number = rt.parentchain_value(parentchain_id, "Number")
    block_hash = rt.parentchain_value(parentchain_id, "BlockHash")
    if number is None or block_hash is None:
        return None
    return Mortality(int(number), bytes(block_hash))
