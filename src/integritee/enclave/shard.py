"""One shard in the enclave: its state, and what each verified parentchain block does to it.

Indirect invocation: from every imported block at or after the shard's creation block, the
successful `EnclaveBridge.invoke` calls for this shard are decrypted with the shielding key and
executed, `EnclaveBridge.shield_funds` credits the decrypted beneficiary, and `Balances.Transfer`
events into the shard vault credit the sender. Blocks that executed something are confirmed with
`confirm_processed_parentchain_block` and the merkle root of the executed calls; unshielding
produces the payout extrinsics (vault proxy transfer or `EnclaveBridge.unshield_funds`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from integritee.codec.scale import EnumValue, ScaleDecodeError
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair
from integritee.crypto.shielding import ShieldingError, ShieldingKey
from integritee.storage.kv import KVStore, WriteBatch
from integritee.trusted.calls import (
    TrustedCall,
    balance_shield,
    balance_shield_through_enclave_bridge_pallet,
)

from .light_client import VerifiedBlock
from .stf import ShardState, Stf, TrustedCallSigned
from .stf.executor import ParentchainCall

log = logging.getLogger("integritee.enclave.shard")

PARENTCHAIN = "Integritee"


def merkle_root(leaves: list[bytes]) -> bytes:
    """Binary blake2_256 merkle root (an odd node is carried up); zero hash when empty."""
    if not leaves:
        return bytes(32)
    level = list(leaves)
    while len(level) > 1:
        nxt = [blake2_256(level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def vault_keypair(state_key: bytes, shard: bytes) -> Keypair:
    """The shard vault's key, derived from the shard's state key so every validateer of the shard
    (which all hold the state key after provisioning) can act for the vault."""
    return Keypair.from_seed(
        blake2_256(b"integritee/shard-vault/v1" + state_key + shard), "ed25519"
    )


def shard_signer(state_key: bytes, shard: bytes) -> Keypair:
    """The shard's enclave account in the STF (fees, shields): shared by every validateer of the
    shard like the vault, so whichever of them authors a block may run the enclave's calls."""
    return Keypair.from_seed(
        blake2_256(b"integritee/shard-signer/v1" + state_key + shard), "ed25519"
    )


@dataclass
class BlockEffects:
    executed: list[bytes] = field(default_factory=list)
    parentchain_calls: list[ParentchainCall] = field(default_factory=list)
    # the block carried something for this shard (executed or not): it gets confirmed, so a
    # client waiting for ProcessedParentchainBlock learns the outcome instead of timing out
    relevant: bool = False
    # sidechain mode: the block's work, executed by the sidechain block that passes the block
    inbox: list[EnumValue] = field(default_factory=list)


class Shard:
    def __init__(self, shard: bytes, db: KVStore, state_key: bytes, stf: Stf) -> None:
        self.shard = shard
        self.view = db.prefixed(b"shard/" + shard)
        self.state_key = state_key
        self.stf = stf
        self.state: ShardState | None = None
        self._defer = False

    # --- life cycle
    def load(self) -> bool:
        """Load an existing shard state; False when this enclave has none yet."""
        if next(iter(self.view.iter_prefix(b"")), None) is None:
            return False
        self.state = ShardState.load(self.view, self.state_key)
        return True

    @property
    def initialized(self) -> bool:
        return self.state is not None

    @property
    def signer(self) -> Keypair:
        return shard_signer(self.state_key, self.shard)

    def create(self, creation_header: Any, genesis_hash: bytes, with_vault: bool) -> Keypair | None:
        """Initialise a new shard as its primary; returns the vault key when it has one."""
        state = ShardState(self.state_key)
        self.stf.init_state(state, self.signer.public_key)
        self.stf.init_parentchain_genesis_hash(state, PARENTCHAIN, genesis_hash)
        self.stf.set_creation_block(state, PARENTCHAIN, creation_header)
        vault = vault_keypair(self.state_key, self.shard) if with_vault else None
        if vault is not None:
            self.stf.init_shard_vault(state, PARENTCHAIN, vault.public_key)
        self.state = state
        return vault

    def creation_number(self) -> int:
        assert self.state is not None
        info = self.stf.shard_creation_info(self.state).get(PARENTCHAIN)
        return int(info["number"]) if info else 0

    def vault(self) -> bytes | None:
        if self.state is None:
            return None
        vault = self.stf.shard_vault(self.state)
        return None if vault is None else vault[0]

    def commit(self, batch: WriteBatch) -> bytes:
        """Queue the state's changes into `batch` (a batch of the whole enclave DB)."""
        assert self.state is not None
        return self.state.commit(batch.prefixed(self.view.prefix))

    # --- indirect invocation
    def processed_number(self) -> int:
        """The last parentchain block whose work is in the state."""
        assert self.state is not None
        number = self.stf.parentchain_number(self.state, PARENTCHAIN)
        return self.creation_number() if number is None else number

    def process_block(
        self,
        block: VerifiedBlock,
        shielding: ShieldingKey,
        not_deposits_from: set[bytes],
        defer: bool = False,
    ) -> BlockEffects:
        """Extract the block's calls for this shard. Without `defer` they execute on the state at
        once (before the sidechain runs); with it they become the block's inbox, executed by the
        sidechain block that passes this block, so every state change is in a block peers import.

        Vault transfers from `not_deposits_from` (the validateers funding the vault) are no
        deposits."""
        effects = BlockEffects()
        state = self.state
        if state is None or block.number <= self.creation_number():
            return effects
        self._defer = defer
        vault = self.vault()
        for index, xt in enumerate(block.extrinsics):
            if not block.success[index]:
                continue
            call = xt.call
            pallet, name, args = call.name, call.value.name, call.value.value or {}
            if pallet != "EnclaveBridge":
                continue
            if name == "invoke" and bytes(args["request"]["shard"]) == self.shard:
                effects.relevant = True
                self._invoke(bytes(args["request"]["cyphertext"]), shielding, effects, block.number)
            elif name == "shield_funds" and bytes(args["shard"]) == self.shard:
                effects.relevant = True
                self._shield_through_bridge(args, shielding, effects, block.number)
        if vault is not None:
            signer = self.signer.public_key
            for _index, fields in block.events_of("Balances", "Transfer"):
                # deposits into the vault; the validateers' funding of the vault is not a deposit
                if bytes(fields["to"]) == vault and bytes(fields["from"]) not in not_deposits_from:
                    effects.relevant = True
                    call = balance_shield(
                        signer, bytes(fields["from"]), fields["amount"], PARENTCHAIN
                    )
                    self._run_enclave_call(call, effects, "vault shield")
        if not defer:
            self.stf.update_parentchain_block(state, PARENTCHAIN, block.header)
        return effects

    def _run_enclave_call(self, call: Any, effects: BlockEffects, what: str) -> None:
        assert self.state is not None
        if self._defer:
            effects.inbox.append(EnumValue("EnclaveCall", TrustedCall.encode(call)))
            effects.executed.append(blake2_256(TrustedCall.encode(call)))
            return
        self._record(
            self.stf.execute_indirect(self.state, self.shard, call, self.signer), effects, what
        )

    def execute_inbox(self, items: list[EnumValue]) -> BlockEffects:
        """Run a parentchain block's deferred work on the state (inside a sidechain block)."""
        assert self.state is not None
        effects = BlockEffects()
        for item in items:
            try:
                if item.name == "Call":
                    tcs = TrustedCallSigned.decode(item.value)
                    outcome = self.stf.execute(self.state, self.shard, tcs)
                    self._record(outcome, effects, "indirect call")
                else:
                    call = TrustedCall.decode(item.value)
                    outcome = self.stf.execute_indirect(self.state, self.shard, call, self.signer)
                    self._record(outcome, effects, "enclave call")
            except (ScaleDecodeError, ValueError) as e:
                log.warning("inbox item unusable, skipped: %s", e)
        return effects

    def _invoke(
        self, cyphertext: bytes, shielding: ShieldingKey, effects: BlockEffects, number: int
    ) -> None:
        assert self.state is not None
        try:
            plain = shielding.decrypt(cyphertext)
        except ShieldingError as e:
            log.warning("block #%d: invoke with undecryptable cyphertext ignored: %s", number, e)
            return
        if not plain or plain[0] not in (0, 1):
            log.warning("block #%d: invoke payload is not a trusted call, ignored", number)
            return
        try:
            tcs = TrustedCallSigned.decode(plain[1:])
        except (ScaleDecodeError, ValueError) as e:
            log.warning("block #%d: invoke payload does not decode, ignored: %s", number, e)
            return
        if self._defer:
            effects.inbox.append(EnumValue("Call", TrustedCallSigned.encode(tcs)))
            effects.executed.append(tcs.call_hash())
            return
        self._record(self.stf.execute(self.state, self.shard, tcs), effects, "indirect call")

    def _shield_through_bridge(
        self,
        args: dict[str, Any],
        shielding: ShieldingKey,
        effects: BlockEffects,
        number: int,
    ) -> None:
        assert self.state is not None
        try:
            who = shielding.decrypt(bytes(args["incognito_account_encrypted"]))
        except ShieldingError as e:
            log.warning(
                "block #%d: shield_funds with undecryptable beneficiary ignored: %s", number, e
            )
            return
        if len(who) != 32:
            log.warning(
                "block #%d: shield_funds beneficiary is %d bytes, ignored", number, len(who)
            )
            return
        call = balance_shield_through_enclave_bridge_pallet(
            self.signer.public_key, who, args["amount"]
        )
        self._run_enclave_call(call, effects, "bridge shield")

    def _record(self, outcome: Any, effects: BlockEffects, what: str) -> None:
        if outcome.rejected:
            log.info("%s rejected: %s", what, outcome.error)
            return
        if outcome.call_hash is not None:
            effects.executed.append(outcome.call_hash)
        effects.parentchain_calls.extend(outcome.parentchain_calls)
        if not outcome.ok:
            log.info("%s failed: %s", what, outcome.error)
