"""pallet_timestamp (index 3): the block's time, set once per block by an inherent."""

from __future__ import annotations

from integritee.codec.scale import Compact, boolean
from integritee.parentchain.primitives import Moment

from ..framework import DispatchError, Pallet, ensure_none

MINIMUM_PERIOD_MS = 3000

timestamp = Pallet("Timestamp", 3, "pallet_timestamp")
Now = timestamp.value("Now", Moment, default=0)
DidUpdate = timestamp.value("DidUpdate", boolean, default=False)
timestamp.constant("MinimumPeriod", Moment, MINIMUM_PERIOD_MS)


@timestamp.call(0, weight=10_000_000, pays_fee=False, now=(Compact(Moment), "T::Moment"))
def set(ctx, origin, now: int) -> None:  # noqa: A001 - the call's name on chain
    """Set the current time (inherent, once per block)."""
    ensure_none(origin)
    if DidUpdate.get(ctx.state):
        raise DispatchError.other("Timestamp must be updated only once in the block")
    previous = Now.get(ctx.state)
    if previous and now < previous + ctx.chain.minimum_period_ms:
        raise DispatchError.other("Timestamp must increment by at least MinimumPeriod")
    Now.put(ctx.state, now)
    DidUpdate.put(ctx.state, True)
    ctx.now_ms = now


def finalize(ctx) -> None:
    if not DidUpdate.get(ctx.state):
        raise RuntimeError("Timestamp must be updated once in the block")
    DidUpdate.remove(ctx.state)
