"""pallet_transaction_payment (index 11): length- and weight-based fees paid by the sender.

fee = base_fee + length * TRANSACTION_BYTE_FEE + weight_to_fee(weight), plus the tip. Fees are
burned (the original sends them to a treasury, which this runtime does not have).
"""

from __future__ import annotations

from integritee.codec.scale import Newtype, u8, u128
from integritee.parentchain.primitives import AccountId, Balance

from ..framework import Pallet

EXTRINSIC_BASE_WEIGHT = 125_000_000
TRANSACTION_BYTE_FEE = 1_000_000
WEIGHT_TO_FEE_DIVISOR = 10  # 1 unit of fee per 10 ref_time picoseconds
OPERATIONAL_FEE_MULTIPLIER = 5

transaction_payment = Pallet("TransactionPayment", 11, "pallet_transaction_payment")
FixedU128 = Newtype("sp_arithmetic::fixed_point::FixedU128", u128, "u128")
NextFeeMultiplier = transaction_payment.value("NextFeeMultiplier", FixedU128, default=10**18)
transaction_payment.constant("OperationalFeeMultiplier", u8, OPERATIONAL_FEE_MULTIPLIER)
transaction_payment.event(
    "TransactionFeePaid",
    0,
    ("who", AccountId, "T::AccountId"),
    ("actual_fee", Balance, "BalanceOf<T>"),
    ("tip", Balance, "BalanceOf<T>"),
)


def compute_fee(length: int, weight: int, tip: int = 0, pays_fee: bool = True) -> int:
    """The partial fee (without tip) plus the tip, as `TransactionPaymentApi_query_info` predicts."""
    if not pays_fee:
        return tip
    total_weight = EXTRINSIC_BASE_WEIGHT + weight
    return total_weight // WEIGHT_TO_FEE_DIVISOR + length * TRANSACTION_BYTE_FEE + tip
