"""Executive: block initialisation and finalisation, extrinsic validation and application.

The same checks run in the transaction pool (`validate_transaction`, against the best state) and
in block execution (`apply_extrinsic`): signed extensions in the order of the metadata, the fee
withdrawn before dispatch and kept even when the call fails, nonce incremented, events emitted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from integritee.codec.scale import EnumValue
from integritee.crypto.keys import verify_multi_signature
from integritee.parentchain.extrinsic import (
    Extrinsic,
    ExtrinsicFormatError,
    decode_extrinsic,
    era_from_value,
)

from .construct import call_pays_fee, call_weight, dispatch_transactional, runtime_call
from .context import BlockContext
from .framework import NONE, DispatchError, Origin
from .pallets import balances as balances_mod
from .pallets import consensus as consensus_mod
from .pallets import system as system_mod
from .pallets import timestamp as timestamp_mod
from .pallets.transaction_payment import EXTRINSIC_BASE_WEIGHT, compute_fee, transaction_payment

MAX_BLOCK_WEIGHT = 2_000_000_000_000
NORMAL_DISPATCH_RATIO_PERCENT = 75
MAX_BLOCK_LENGTH = 5 * 1024 * 1024
MAX_NORMAL_WEIGHT = MAX_BLOCK_WEIGHT * NORMAL_DISPATCH_RATIO_PERCENT // 100
MAX_NORMAL_LENGTH = MAX_BLOCK_LENGTH * NORMAL_DISPATCH_RATIO_PERCENT // 100

# Calls allowed as bare (unsigned) extrinsics: the inherents.
INHERENTS = {("Timestamp", "set")}


class InvalidTransaction(Exception):
    """Substrate's TransactionValidityError::Invalid(kind) with its human message."""

    MESSAGES = {
        "Call": "Transaction call is not expected",
        "Payment": "Inability to pay some fees (e.g. account balance too low)",
        "Future": "Transaction will be valid in the future",
        "Stale": "Transaction is outdated",
        "BadProof": "Transaction has a bad signature",
        "AncientBirthBlock": "Transaction has an ancient birth block",
        "ExhaustsResources": "Transaction would exhaust the block limits",
        "BadMandatory": "A call was labelled as mandatory, but resulted in an Error.",
        "MandatoryValidation": "Transaction dispatch is mandatory; transactions must not be validated.",
        "BadSigner": "Invalid signing address",
    }

    def __init__(self, kind: str, detail: str = "") -> None:
        self.kind = kind
        self.detail = detail
        super().__init__(self.MESSAGES.get(kind, kind) + (f": {detail}" if detail else ""))

    @property
    def message(self) -> str:
        return self.MESSAGES.get(self.kind, self.kind)


@dataclass(frozen=True)
class ChainParams:
    """What execution needs to know about the chain it runs on."""

    genesis_hash: bytes
    minimum_period_ms: int = timestamp_mod.MINIMUM_PERIOD_MS


@dataclass
class ValidTransaction:
    xt: Extrinsic
    priority: int
    requires: list[bytes]
    provides: list[bytes]
    longevity: int
    fee: int
    weight: int


@dataclass
class ApplyOutcome:
    ok: bool
    error: DispatchError | None
    weight: int
    fee: int


def decode(raw: bytes) -> Extrinsic:
    return decode_extrinsic(raw, runtime_call())


def _tag(who: bytes, nonce: int) -> bytes:
    return who + nonce.to_bytes(4, "little")


def _check_era(
    xt: Extrinsic, current: int, block_hash: Callable[[int], bytes | None], genesis: bytes
) -> tuple[bytes, int]:
    """The birth block hash the signature commits to, and the remaining longevity."""
    assert xt.era is not None
    try:
        era = era_from_value(xt.era)
    except ExtrinsicFormatError as e:
        raise InvalidTransaction("BadProof", str(e)) from None
    if era is None:
        return genesis, 2**64 - 1
    birth = era.birth(current)
    if birth > current:
        raise InvalidTransaction("AncientBirthBlock")
    if era.death(current) <= current:
        raise InvalidTransaction("AncientBirthBlock")
    birth_hash = genesis if birth == 0 else block_hash(birth)
    if birth_hash is None:
        raise InvalidTransaction("AncientBirthBlock")
    return birth_hash, era.death(current) - current


def check_signed(
    ctx: BlockContext,
    xt: Extrinsic,
    block_hash: Callable[[int], bytes | None],
    *,
    verify_signature: bool = True,
    allow_future: bool = False,
) -> tuple[int, int, int]:
    """Run the signed extensions' checks; returns (fee, weight, longevity). Does not write state."""
    from .construct import SPEC_VERSION, TRANSACTION_VERSION

    assert xt.signer is not None and xt.signature is not None
    if xt.signer == bytes(32):
        raise InvalidTransaction("BadSigner")
    birth_hash, longevity = _check_era(xt, ctx.number, block_hash, ctx.chain.genesis_hash)
    if verify_signature:
        payload = xt.signing_payload(
            SPEC_VERSION, TRANSACTION_VERSION, ctx.chain.genesis_hash, birth_hash
        )
        if not verify_multi_signature(xt.signature.name, xt.signature.value, payload, xt.signer):
            raise InvalidTransaction("BadProof")
    account = system_mod.Account.get(ctx.state, xt.signer)
    if xt.nonce < account.nonce:
        raise InvalidTransaction("Stale")
    if xt.nonce > account.nonce and not allow_future:
        raise InvalidTransaction("Future")
    try:
        weight = call_weight(xt.call)
    except (KeyError, TypeError) as e:
        raise InvalidTransaction("Call", str(e)) from None
    fee = compute_fee(len(xt.raw), weight, xt.tip, call_pays_fee(xt.call))
    if weight + EXTRINSIC_BASE_WEIGHT > MAX_NORMAL_WEIGHT or len(xt.raw) > MAX_NORMAL_LENGTH:
        raise InvalidTransaction("ExhaustsResources")
    # Fee payment must keep the account alive (FRAME withdraws with Preservation::Preserve).
    if (
        xt.nonce == account.nonce
        and fee
        and (
            account.data.free < fee
            or account.data.free - fee + account.data.reserved < balances_mod.EXISTENTIAL_DEPOSIT
        )
    ):
        raise InvalidTransaction("Payment")
    return fee, weight, longevity


def validate_transaction(
    ctx: BlockContext, raw: bytes, block_hash: Callable[[int], bytes | None]
) -> ValidTransaction:
    """Pool validation against the state after the best block (ctx.number = best + 1)."""
    try:
        xt = decode(raw)
    except ExtrinsicFormatError as e:
        raise InvalidTransaction("Call", f"could not decode: {e}") from None
    if not xt.signed:
        raise InvalidTransaction(
            "Call", "unsigned extrinsics are inherents and cannot be submitted"
        )
    fee, weight, longevity = check_signed(ctx, xt, block_hash, allow_future=True)
    account_nonce = system_mod.Account.get(ctx.state, xt.signer).nonce
    assert xt.signer is not None
    requires = [_tag(xt.signer, xt.nonce - 1)] if xt.nonce > account_nonce else []
    return ValidTransaction(
        xt=xt,
        priority=xt.tip,
        requires=requires,
        provides=[_tag(xt.signer, xt.nonce)],
        longevity=longevity,
        fee=fee,
        weight=weight,
    )


def initialize_block(ctx: BlockContext) -> None:
    system_mod.initialize(ctx)


def apply_extrinsic(
    ctx: BlockContext,
    xt: Extrinsic,
    index: int,
    block_hash: Callable[[int], bytes | None],
    *,
    verify_signature: bool = True,
) -> ApplyOutcome:
    """Apply one extrinsic. Raises InvalidTransaction when it may not be in the block at all."""
    ctx.extrinsic_index = index
    try:
        if not xt.signed:
            key = (xt.call.name, xt.call.value.name)
            if key not in INHERENTS:
                raise InvalidTransaction("Call", "not an inherent")
            error = dispatch_transactional(ctx, NONE, xt.call)
            if error is not None:
                raise InvalidTransaction("BadMandatory", str(error))
            weight = call_weight(xt.call)
            _emit_success(ctx, weight, pays=False, mandatory=True)
            return ApplyOutcome(True, None, weight, 0)

        fee, weight, _ = check_signed(ctx, xt, block_hash, verify_signature=verify_signature)
        assert xt.signer is not None
        who = xt.signer
        system_mod.inc_nonce(ctx, who)
        if fee:
            balances_mod.withdraw(ctx, who, fee, keep_alive=True)
            ctx.deposit_event(
                transaction_payment,
                "TransactionFeePaid",
                {"who": who, "actual_fee": fee - xt.tip, "tip": xt.tip},
            )
        error = dispatch_transactional(ctx, Origin.signed(who), xt.call)
        pays = call_pays_fee(xt.call)
        if error is None:
            _emit_success(ctx, weight, pays=pays)
        else:
            ctx.deposit_event(
                system_mod.system,
                "ExtrinsicFailed",
                {"dispatch_error": error.value, "dispatch_info": _info(weight, pays)},
            )
        return ApplyOutcome(error is None, error, weight, fee)
    finally:
        ctx.extrinsic_index = None


def _info(weight: int, pays: bool, mandatory: bool = False) -> dict:
    return {
        "weight": {
            "ref_time": weight + (0 if mandatory else EXTRINSIC_BASE_WEIGHT),
            "proof_size": 0,
        },
        "class": EnumValue("Mandatory" if mandatory else "Normal"),
        "pays_fee": EnumValue("Yes" if pays else "No"),
    }


def _emit_success(ctx: BlockContext, weight: int, pays: bool, mandatory: bool = False) -> None:
    ctx.deposit_event(
        system_mod.system, "ExtrinsicSuccess", {"dispatch_info": _info(weight, pays, mandatory)}
    )


def finalize_block(ctx: BlockContext, extrinsic_count: int) -> None:
    ctx.finalizing = True
    timestamp_mod.finalize(ctx)
    consensus_mod.finalize(ctx)
    system_mod.finalize(ctx, extrinsic_count)


def query_info(ctx: BlockContext, raw: bytes) -> dict:
    """TransactionPaymentApi_query_info: weight, class and the partial fee (without tip)."""
    try:
        xt = decode(raw)
    except ExtrinsicFormatError as e:
        raise ValueError(f"could not decode extrinsic: {e}") from None
    weight = call_weight(xt.call)
    pays = call_pays_fee(xt.call) and xt.signed
    partial_fee = compute_fee(len(raw), weight, 0, pays)
    return {
        "weight": {"ref_time": weight + EXTRINSIC_BASE_WEIGHT, "proof_size": 0},
        "class": EnumValue("Normal"),
        "partial_fee": partial_fee,
    }
