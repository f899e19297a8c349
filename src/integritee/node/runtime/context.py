"""The context a runtime call executes in: the block's state overlay, its number, and its events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from integritee.codec.scale import EnumValue
from integritee.storage.overlay import Overlay


@dataclass
class BlockContext:
    state: Overlay
    number: int
    parent_hash: bytes
    chain: Any  # the ChainSpec-derived runtime configuration (genesis hash, flags)
    now_ms: int = 0
    extrinsic_index: int | None = None
    events: list[tuple[EnumValue, EnumValue, list[bytes]]] = field(default_factory=list)
    finalizing: bool = False
    # Digest items the runtime deposits (e.g. GRANDPA's ScheduledChange); the block's header
    # carries them between the Aura pre-digest and the seal.
    digest_logs: list[EnumValue] = field(default_factory=list)

    def deposit_log(self, item: EnumValue) -> None:
        self.digest_logs.append(item)

    def deposit_event(
        self, pallet: Any, name: str, payload: Any = None, topics: list[bytes] | None = None
    ) -> None:
        if self.extrinsic_index is not None:
            phase = EnumValue("ApplyExtrinsic", self.extrinsic_index)
        else:
            phase = EnumValue("Finalization" if self.finalizing else "Initialization")
        self.events.append((phase, EnumValue(pallet.name, EnumValue(name, payload)), topics or []))
