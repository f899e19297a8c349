"""The enclave's state transition function: shard state, trusted calls and getters.

- `types`: wire types (TrustedCall, TrustedCallSigned, TrustedOperation, Getter, ...).
- `state`: `ShardState`, the plaintext state in memory with its trie root, encrypted at rest.
- `runtime`: storage layout and the FRAME pallet rules (balances, system, session proxies).
- `executor`: `Stf`, executing signed calls (fees, nonces, shielding, unshielding).
- `getters`: `execute_getter`.
"""

from __future__ import annotations

from integritee.enclave.stf.executor import (
    CallOutcome,
    Mortality,
    ParentchainCall,
    Stf,
    UnshieldFromVault,
    UnshieldThroughEnclaveBridge,
)
from integritee.enclave.stf.getters import GetterError, execute_getter
from integritee.enclave.stf.runtime import DispatchError, Event, Keys, Runtime
from integritee.enclave.stf.state import ShardState, StateCorruptedError, StateError
from integritee.trusted.calls import (
    Getter,
    TrustedCall,
    TrustedCallSigned,
    TrustedGetterSigned,
    TrustedOperation,
    UnsupportedVariantError,
    sign_call,
    sign_getter,
    trusted_operation_hash,
)

__all__ = [
    "CallOutcome",
    "DispatchError",
    "Event",
    "Getter",
    "GetterError",
    "Keys",
    "Mortality",
    "ParentchainCall",
    "Runtime",
    "ShardState",
    "StateCorruptedError",
    "StateError",
    "Stf",
    "TrustedCall",
    "TrustedCallSigned",
    "TrustedGetterSigned",
    "TrustedOperation",
    "UnshieldFromVault",
    "UnshieldThroughEnclaveBridge",
    "UnsupportedVariantError",
    "execute_getter",
    "sign_call",
    "sign_getter",
    "trusted_operation_hash",
]
