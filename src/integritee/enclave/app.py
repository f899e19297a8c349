"""The enclave process: its secrets, its identity, and the ecalls the service may make.

Everything secret (signing, shielding and state keys, the plaintext shard state) lives in this
process only. The service reaches it through the ecall socket with the typed messages of
`integritee.teeio.messages`; clients reach it through the trusted WSS server it serves itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from integritee.attestation import SimDcapProvider, SkipProvider
from integritee.attestation.providers import GramineDcapProvider
from integritee.codec.scale import EnumValue
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair
from integritee.crypto.sealing import SealingError, SealingKeyProvider, seal, unseal
from integritee.parentchain.tee_types import SidechainBlockConfirmation
from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcError
from integritee.rpc.server import RpcServer
from integritee.storage.kv import KVStore
from integritee.teeio.messages import (
    ChainInfo,
    Ecall,
    EnclaveInfo,
    EnclaveStatus,
    Extrinsics,
    InitRequest,
    LightClientInit,
    LightClientStatus,
    Ocall,
    RegistrationRequest,
    ShardInit,
    ShardRole,
    SidechainBlocks,
    SidechainStart,
    SyncRequest,
    SyncResult,
    from_json,
    to_json,
)
from integritee.trusted.calls import TrustedOperation
from integritee.trusted.sidechain import FINALIZATION_INTERVAL, SignedBlockCodec

from .keys import EnclaveKeys
from .light_client import SEAL_LABEL, LightClient, LightClientError, ParentchainBlockInput
from .measurement import mrenclave
from .parentchain_tx import ParentchainTxBuilder
from .shard import Shard, merkle_root
from .sidechain import PROPOSAL_SHARE, Sidechain
from .stf import Stf
from .stf.executor import UnshieldFromVault
from .stf.getters import GetterError, execute_getter
from .tls import server_context
from .top_pool import TopPool
from .trusted_rpc import TrustedRpc

log = logging.getLogger("integritee.enclave")

NOT_READY = -32010
LIGHT_CLIENT_KEY = b"light_client"
# covers the vault's proxy deposit (~20.04 TEER), the existential deposit and fees
VAULT_FUNDING = 30 * 10**12


@dataclass
class Urls:
    trusted: str
    untrusted: str
    mu_ra: str


class PoolSubmit:
    """Where calls extracted from parentchain blocks go once the sidechain runs: the pool."""

    def __init__(self, pool: TopPool, stf: Stf | None) -> None:
        assert stf is not None
        self.pool = pool
        self.stf = stf

    def __call__(self, tcs: Any, state: Any) -> None:
        encoded = TrustedOperation.encode(tcs.into_trusted_operation(False))
        nonce = self.stf.account_nonce(state, tcs.sender)
        self.pool.submit(blake2_256(encoded), tcs, len(encoded), nonce, None, direct=False)

    def sign_enclave_call(self, state: Any, shard: bytes, call: Any, key: Keypair) -> Any:
        # the enclave's own calls already waiting in the pool come first
        queued = self.pool.ready() + self.pool.future()
        pending = sum(1 for op in queued if op.sender == key.public_key)
        return self.stf.sign_enclave_call(state, shard, call, key, pending=pending)


class Enclave:
    def __init__(
        self, data_dir: Path, sealing: SealingKeyProvider, ocall_socket: str | None = None
    ) -> None:
        self.data_dir = data_dir
        self.sealing = sealing
        self.ocall_socket = ocall_socket
        self._ocall_client: RpcClient | None = None
        self.pool = TopPool()
        self.sidechain: Sidechain | None = None
        self._slot_task: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[Any]] = set()
        self.sealed_dir = data_dir / "sealed"
        self.keys = EnclaveKeys.load_or_create(self.sealed_dir, sealing)
        self.mrenclave = mrenclave()
        self.shard = self.mrenclave
        self.urls: Urls | None = None
        self.init_request: InitRequest | None = None
        self.trusted_server: RpcServer | None = None
        self.trusted_rpc: TrustedRpc | None = None
        self.tx = ParentchainTxBuilder(self.keys.signing, self._call_codec)
        self._db: KVStore | None = None
        self._light_client_loaded = False
        self._light_client: LightClient | None = None
        self.stf: Stf | None = None
        self.shard_runtime: Shard | None = None
        self.registered = False
        self.role: str | None = None
        self._chain: ChainInfo | None = None
        log.info(
            "enclave up: MRENCLAVE %s, account 0x%s",
            _b58(self.mrenclave),
            self.keys.signing.public_key.hex(),
        )

    # --- parentchain metadata (verified by the light client from `:code`)
    def _call_codec(self) -> Any:
        if self.light_client is None:
            raise RpcError(
                NOT_READY, "the light client is not initialised: no verified parentchain metadata"
            )
        return self.light_client.metadata.call_codec

    @property
    def db(self) -> KVStore:
        """The enclave DB, opened on first use (identity queries must not lock it)."""
        if self._db is None:
            self._db = KVStore.open(self.data_dir / "enclave_db")
        return self._db

    @property
    def light_client(self) -> LightClient | None:
        if not self._light_client_loaded:
            self._light_client = self._load_light_client()
            self._light_client_loaded = True
        return self._light_client

    @light_client.setter
    def light_client(self, value: LightClient | None) -> None:
        self._light_client = value
        self._light_client_loaded = True

    def _load_light_client(self) -> LightClient | None:
        blob = self.db.get(LIGHT_CLIENT_KEY)
        if blob is None:
            return None
        try:
            return LightClient.from_bytes(unseal(self.sealing, blob, SEAL_LABEL))
        except (SealingError, LightClientError) as e:
            raise SealingError(f"the sealed light-client state is unusable: {e}") from None

    def _shard(self) -> Shard:
        if self.shard_runtime is None:
            dev = bool(self.init_request and self.init_request.dev)
            self.stf = Stf(self.mrenclave, dev=dev)
            self.shard_runtime = Shard(self.shard, self.db, self.keys.state_key, self.stf)
            if self.shard_runtime.load():
                # the loaded state is long-lived: keep it out of full GC passes (pauses at 100k accounts)
                gc.freeze()
                self.role = "primary"
                log.info(
                    "shard state loaded (created at parentchain #%d)",
                    self.shard_runtime.creation_number(),
                )
        return self.shard_runtime

    # --- ecall registration
    def register_ecalls(self, server: RpcServer) -> None:
        def typed(message_type: Any, handler: Any) -> Any:
            async def call(params: Any) -> Any:
                arg = from_json(
                    message_type, params[0] if isinstance(params, list) and params else params
                )
                return to_json(await handler(arg))

            return call

        server.add_method(Ecall.IDENTITY, lambda params: to_json(self.identity()))
        server.add_method(Ecall.INIT, typed(InitRequest, self.init))
        server.add_method(
            Ecall.REGISTRATION_EXTRINSICS, typed(RegistrationRequest, self.registration_extrinsics)
        )
        server.add_method(
            Ecall.LIGHT_CLIENT_STATUS, lambda params: to_json(self.light_client_status())
        )
        server.add_method(Ecall.INIT_LIGHT_CLIENT, typed(LightClientInit, self.init_light_client))
        server.add_method(Ecall.SYNC_PARENTCHAIN, typed(SyncRequest, self.sync_parentchain))
        server.add_method(Ecall.INIT_SHARD, typed(ShardInit, self.init_shard))
        server.add_method(Ecall.START_SIDECHAIN, typed(SidechainStart, self.start_sidechain))
        server.add_method(Ecall.STATUS, lambda params: to_json(self.status()))

    # --- ecalls
    def identity(self) -> EnclaveInfo:
        return EnclaveInfo(
            mrenclave=self.mrenclave,
            shard=self.shard,
            signing_public_key=self.keys.signing.public_key,
            shielding_public_key_json=self.keys.shielding.public_key_json(),
            trusted_port=self.trusted_server.port if self.trusted_server else 0,
        )

    async def init(self, request: InitRequest) -> EnclaveInfo:
        if request.shard is not None:
            self.shard = request.shard
        self.init_request = request
        self.urls = Urls(request.trusted_url, request.untrusted_url, request.mu_ra_url)
        if self.trusted_server is None:
            self.trusted_rpc = TrustedRpc(self)
            self.trusted_server = RpcServer(name="trusted")
            self.trusted_rpc.register(self.trusted_server)
            port = await self.trusted_server.start(
                request.trusted_host,
                request.trusted_port,
                ssl_context=server_context(self.keys.signing),
            )
            log.info("trusted RPC (WSS) on %s:%d", request.trusted_host, port)
        return self.identity()

    def attestation_provider(self) -> Any:
        mode = self.init_request.attestation if self.init_request else "skip"
        if mode == "skip":
            return SkipProvider(self.mrenclave)
        if mode == "sim-dcap":
            # a debug build on dev chains, as an SDK's simulation/debug enclave would be
            return SimDcapProvider(self.mrenclave, bytes(32), debug=True)
        if mode == "gramine-dcap":
            return GramineDcapProvider()
        raise RpcError(-32602, f"unknown attestation mode {mode!r}")

    async def registration_extrinsics(self, request: RegistrationRequest) -> Extrinsics:
        """Signed extrinsics that register this enclave (and, for sim-dcap, the dev collateral)."""
        self.tx.observe_nonce(request.nonce)
        provider = self.attestation_provider()
        out: list[bytes] = []
        if (
            provider.method == "Dcap"
            and request.with_collateral
            and isinstance(provider, SimDcapProvider)
        ):
            body, signature, chain = provider.qe_identity_collateral()
            call = self.tx.call(
                "Teerex",
                "register_quoting_enclave",
                enclave_identity=body,
                signature=signature,
                certificate_chain=chain,
            )
            out.append(self.tx.sign(call, request.chain))
            body, signature, chain = provider.tcb_info_collateral()
            call = self.tx.call(
                "Teerex",
                "register_tcb_info",
                tcb_info=body,
                signature=signature,
                certificate_chain=chain,
            )
            out.append(self.tx.sign(call, request.chain))
        report_data = self.keys.signing.public_key + bytes(32)
        proof = provider.quote(report_data)
        method = EnumValue(provider.method, {"proxied": False})
        call = self.tx.call(
            "Teerex",
            "register_sgx_enclave",
            proof=proof,
            worker_url=request.worker_url.encode(),
            attestation_method=method,
        )
        out.append(self.tx.sign(call, request.chain))
        log.info("prepared %d registration extrinsic(s) (%s attestation)", len(out), provider.name)
        return Extrinsics(out)

    # --- light client and parentchain sync
    def light_client_status(self) -> LightClientStatus:
        lc = self.light_client
        if lc is None:
            return LightClientStatus(initialized=False)
        return LightClientStatus(True, lc.genesis_hash, lc.last_number, lc.last_hash)

    async def init_light_client(self, request: LightClientInit) -> LightClientStatus:
        if self.light_client is not None:
            raise RpcError(-32602, "the light client is already initialised")
        try:
            lc = LightClient.initialize(request.genesis_header, request.proof)
        except LightClientError as e:
            raise RpcError(-32602, f"light client initialisation refused: {e}") from None
        self.db.put(LIGHT_CLIENT_KEY, seal(self.sealing, lc.to_bytes(), SEAL_LABEL))
        self.light_client = lc
        log.info("light client initialised at genesis 0x%s", lc.genesis_hash.hex())
        return self.light_client_status()

    async def sync_parentchain(self, request: SyncRequest) -> SyncResult:
        """Verify and import a batch of parentchain blocks; execute what they carry for the shard.

        The light-client state and the shard state are written in one batch: a crash loses at
        most this batch, never applies it twice."""
        lc = self._require_light_client()
        self._chain = request.chain
        try:
            blocks = [ParentchainBlockInput.from_json(b) for b in request.blocks]
        except LightClientError as e:
            raise RpcError(-32602, f"malformed block batch: {e}") from None
        try:
            verified = lc.import_blocks(blocks)
        except LightClientError as e:
            verified = list(getattr(e, "imported", []) or [])
            log.warning("parentchain block rejected: %s", e)
            if not verified:
                raise RpcError(-32011, f"parentchain block rejected: {e}") from None
        shard = self._shard()
        self.tx.observe_nonce(request.enclave_nonce)
        extrinsics: list[bytes] = []
        for block in verified:
            if not shard.initialized:
                continue
            effects = shard.process_block(
                block,
                self.keys.shielding,
                self.keys.signing,
                PoolSubmit(self.pool, self.stf) if self._sidechain_mode(shard) else None,
            )
            birth = (block.number, block.hash)
            for pcall in effects.parentchain_calls:
                extrinsics.append(self._payout(pcall, request.chain, birth))
            if effects.executed or effects.relevant:
                call = self.tx.call(
                    "EnclaveBridge",
                    "confirm_processed_parentchain_block",
                    shard=self.shard,
                    block_hash=block.hash,
                    block_number=block.number,
                    trusted_calls_merkle_root=merkle_root(effects.executed),
                )
                extrinsics.append(self.tx.sign(call, request.chain, era_birth=birth))
        with self.db.batch() as batch:
            if shard.initialized:
                shard.commit(batch)
            batch.put(LIGHT_CLIENT_KEY, seal(self.sealing, lc.to_bytes(), SEAL_LABEL))
        return SyncResult(last_number=lc.last_number, last_hash=lc.last_hash, extrinsics=extrinsics)

    def _payout(self, pcall: Any, chain: ChainInfo, birth: tuple[int, bytes]) -> bytes:
        def call_index(pallet: str, name: str) -> bytes:
            meta = self._require_light_client().metadata
            p = meta.pallet(pallet)
            return bytes((p.index,)) + bytes((p.call_index(name)[1],))

        call_bytes = pcall.encode_call(call_index)
        if isinstance(pcall, UnshieldFromVault):
            log.info("unshield %d to 0x%s from the vault", pcall.amount, pcall.beneficiary.hex())
        return self.tx.sign(call_bytes, chain, era_birth=birth)

    def _require_light_client(self) -> LightClient:
        if self.light_client is None:
            raise RpcError(NOT_READY, "the light client is not initialised")
        return self.light_client

    async def init_shard(self, request: ShardInit) -> ShardRole:
        """Decide this enclave's role from EnclaveBridge.ShardStatus (checked with the proof)."""
        lc = self._require_light_client()
        self.tx.observe_nonce(request.enclave_nonce)
        meta = lc.metadata
        entry = meta.storage("EnclaveBridge", "ShardStatus")
        key = entry.key(self.shard)
        try:
            values = lc.verify_storage(request.block_hash, [key], request.proof)
        except LightClientError as e:
            raise RpcError(-32602, f"shard status proof refused: {e}") from None
        raw = values.get(key)
        status = [] if raw is None else entry.decode_value(raw)
        shard = self._shard()
        me = self.keys.signing.public_key
        signers = [bytes(s["signer"]) for s in status]
        extrinsics: list[bytes] = []
        if shard.initialized:
            self.role = "primary" if not signers or signers[0] == me else "joiner"
        elif not signers or signers[0] == me:
            header = lc.last_header
            with_vault = self.init_request.shard_vault if self.init_request else True
            vault = shard.create(self.keys.signing, header, lc.genesis_hash, with_vault)
            with self.db.batch() as batch:
                shard.commit(batch)
            self.role = "primary"
            birth = (lc.last_number, lc.last_hash)
            if vault is not None:
                extrinsics += self._vault_extrinsics(vault, request.chain, birth)
            # claim the shard on the parentchain at once: the first confirmation makes this enclave
            # entry 0 of ShardStatus, so a validateer starting later finds a primary to join
            claim = self.tx.call(
                "EnclaveBridge",
                "confirm_processed_parentchain_block",
                shard=self.shard,
                block_hash=lc.last_hash,
                block_number=lc.last_number,
                trusted_calls_merkle_root=bytes(32),
            )
            extrinsics.append(self.tx.sign(claim, request.chain, era_birth=birth))
            log.info(
                "primary of new shard, created at parentchain #%d; %s",
                lc.last_number,
                f"vault 0x{vault.public_key.hex()}"
                if vault
                else "no vault (shielding through EnclaveBridge)",
            )
        else:
            raise RpcError(
                -32012,
                "another validateer is primary of this shard; joining needs mutual RA (not yet supported)",
            )
        return ShardRole(
            role=self.role or "primary",
            shard=self.shard,
            creation_block=shard.creation_number(),
            vault=shard.vault(),
            extrinsics=extrinsics,
        )

    # --- direct invocation
    def submit_operation(self, top_hash: bytes, tcs: Any, size: int, watcher: Any) -> str:
        runtime = self._shard()
        if runtime.state is None or self.stf is None:
            raise ValueError("the shard is not initialised yet")
        nonce = self.stf.account_nonce(runtime.state, tcs.sender)
        return self.pool.submit(top_hash, tcs, size, nonce, watcher)

    def _vault_extrinsics(
        self, vault: Keypair, chain: ChainInfo, birth: tuple[int, bytes]
    ) -> list[bytes]:
        """Fund the new vault and make this enclave its proxy (payouts: Proxy.proxy(vault, ..))."""
        me = self.keys.signing.public_key
        fund = self.tx.call(
            "Balances",
            "transfer_keep_alive",
            dest=EnumValue("Id", vault.public_key),
            value=VAULT_FUNDING,
        )
        add_proxy = self.tx.call(
            "Proxy", "add_proxy", delegate=EnumValue("Id", me), proxy_type=EnumValue("Any"), delay=0
        )
        return [
            self.tx.sign(fund, chain, era_birth=birth),
            self.tx.sign(add_proxy, chain, signer=vault, nonce=0, era_birth=birth),
        ]

    # --- reads for the trusted RPC
    def shard_vault(self) -> bytes | None:
        return self._shard().vault()

    def execute_getter(self, shard: bytes, getter: bytes) -> bytes | None:
        if shard != self.shard:
            raise ValueError("unknown shard")
        runtime = self._shard()
        if runtime.state is None:
            raise ValueError("the shard is not initialised yet")
        try:
            return execute_getter(runtime.state, getter, self.mrenclave, shard)
        except GetterError as e:
            raise ValueError(str(e)) from None

    def status(self) -> EnclaveStatus:
        lc = self.light_client
        return EnclaveStatus(
            registered=self.registered,
            role=self.role,
            light_client_number=lc.last_number if lc else 0,
            shard=self.shard,
        )

    # --- ocalls
    async def ocall(self, method: str, message: Any) -> Any:
        if self.ocall_socket is None:
            raise RuntimeError("no ocall socket: the enclave runs without a service")
        if self._ocall_client is None or self._ocall_client.closed:
            self._ocall_client = await RpcClient.connect("unix://" + self.ocall_socket, timeout=10)
        return await self._ocall_client.request(method, [to_json(message)], timeout=120)

    # --- sidechain
    async def start_sidechain(self, request: SidechainStart) -> EnclaveStatus:
        shard = self._shard()
        if shard.state is None:
            raise RpcError(NOT_READY, "the shard is not initialised")
        if self.sidechain is None:
            self.sidechain = Sidechain(
                shard,
                self.db,
                self.keys.signing,
                self.keys.state_key,
                request.slot_duration_ms,
                self._known_l1_block,
            )
            self._slot_task = asyncio.create_task(self._slot_loop(), name="sidechain-slots")
            log.info(
                "sidechain started at #%d, slot %d ms",
                self.sidechain.number,
                request.slot_duration_ms,
            )
        return self.status()

    def _sidechain_mode(self, shard: Shard) -> bool:
        """Once the shard has sidechain blocks, every state change must go through one (also
        while the sidechain restarts after a reboot)."""
        return (
            self.sidechain is not None or self.db.get(b"sidechain/head/" + shard.shard) is not None
        )

    def _known_l1_block(self, block_hash: bytes) -> bool:
        lc = self.light_client
        if lc is None:
            return False
        try:
            return lc.state_root(block_hash) is not None
        except LightClientError:
            return False

    async def _slot_loop(self) -> None:
        assert self.sidechain is not None
        duration = self.sidechain.slot_duration_ms
        last_slot = -1
        while True:
            now_ms = int(time.time() * 1000)
            slot = now_ms // duration
            if slot == last_slot:
                await asyncio.sleep(((slot + 1) * duration - now_ms) / 1000)
                continue
            last_slot = slot
            if not self.sidechain.is_author(slot):
                continue
            remaining = ((slot + 1) * duration - now_ms) / 1000
            try:
                await self._produce(slot, time.monotonic() + remaining * PROPOSAL_SHARE)
            except Exception:
                log.exception("sidechain block production in slot %d failed", slot)

    async def _produce(self, slot: int, deadline: float) -> None:
        sidechain, shard, lc = self.sidechain, self.shard_runtime, self.light_client
        assert (
            sidechain is not None
            and shard is not None
            and shard.state is not None
            and lc is not None
        )
        state, stf = shard.state, self.stf
        assert stf is not None

        skipped: set[bytes] = set()

        def execute(op: Any) -> Any:
            if op.sender in skipped:  # an earlier call of this sender did not go in
                return None
            outcome = stf.execute(state, self.shard, op.tcs, verify_signature=False)
            if outcome.rejected:
                skipped.add(op.sender)
                if outcome.error_kind != "future_nonce":  # still valid later: no ban
                    self.pool.remove_invalid(op.hash, outcome.error or "rejected")
                return None
            return outcome

        def record_parentchain_head() -> None:
            stf.update_parentchain_block(state, "Integritee", lc.last_header)

        produced = sidechain.propose(
            slot,
            lc.last_hash,
            self.pool.ready(),
            execute,
            deadline,
            prelude=record_parentchain_head,
        )
        info = sidechain.import_block(produced.block)
        sidechain.commit(produced.block, info)
        self.pool.on_executed(
            produced.executed, produced.hash, lambda who: stf.account_nonce(state, who)
        )
        log.debug(
            "produced sidechain block #%d with %d operation(s)", info.number, len(produced.executed)
        )
        if len(produced.executed):
            log.info(
                "sidechain block #%d 0x%s: %d operation(s)",
                info.number,
                produced.hash.hex()[:16],
                len(produced.executed),
            )
        await self.ocall(
            Ocall.STORE_SIDECHAIN_BLOCKS, SidechainBlocks([SignedBlockCodec.encode(produced.block)])
        )
        chain = self._chain
        if chain is None:
            return
        birth = (lc.last_number, lc.last_hash)
        extrinsics = [self._payout(c, chain, birth) for c in produced.parentchain_calls]
        if info.number % FINALIZATION_INTERVAL == 0:
            extrinsics.append(self._finalization_candidate(info, chain, birth))
        if extrinsics:
            await self.ocall(Ocall.SEND_EXTRINSICS, Extrinsics(extrinsics))

    def _finalization_candidate(
        self, info: Any, chain: ChainInfo, birth: tuple[int, bytes]
    ) -> bytes:
        """Every FINALIZATION_INTERVAL blocks the primary confirms a block on the parentchain,
        naming the previous confirmation as its ancestor (Sidechain.confirm_imported_sidechain_block)."""
        key = b"sidechain/confirmed/" + self.shard
        raw = self.db.get(key)
        ancestor = None if raw is None else SidechainBlockConfirmation.decode(raw)
        candidate = {"block_number": info.number, "block_header_hash": info.hash}
        call = self.tx.call(
            "Sidechain",
            "confirm_imported_sidechain_block",
            shard=self.shard,
            latest_finalized_ancestor=ancestor,
            finalization_candidate=candidate,
        )
        self.db.put(key, SidechainBlockConfirmation.encode(candidate))
        log.info("sidechain block #%d proposed for finalization on the parentchain", info.number)
        return self.tx.sign(call, chain, era_birth=birth)

    def import_sidechain_blocks(self, blocks: list[dict[str, Any]]) -> None:
        """Blocks from peers (sidechain_importBlock): verified and applied in order."""
        if self.sidechain is None:
            raise ValueError("the sidechain is not running")
        stf, state = self.stf, self.shard_runtime.state if self.shard_runtime else None
        imported: list[bytes] = []
        try:
            for block in blocks:
                info = self.sidechain.import_block(block)
                self.sidechain.commit(block, info)
                imported.append(SignedBlockCodec.encode(block))
                if stf is not None and state is not None:
                    tops = [bytes(h) for h in block["block"]["block_data"]["signed_top_hashes"]]
                    self.pool.on_executed(
                        tops, info.hash, lambda who: stf.account_nonce(state, who)
                    )
        finally:
            if imported:  # the service keeps every block the enclave accepted
                task = asyncio.get_running_loop().create_task(
                    self.ocall(Ocall.STORE_SIDECHAIN_BLOCKS, SidechainBlocks(imported))
                )
                self._background.add(task)
                task.add_done_callback(self._background.discard)

    async def close(self) -> None:
        if self._slot_task is not None:
            self._slot_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._slot_task
        if self._ocall_client is not None:
            await self._ocall_client.close()
        if self.trusted_server is not None:
            await self.trusted_server.stop()
        if self._db is not None:
            self._db.close()


def _b58(data: bytes) -> str:
    import base58

    return base58.b58encode(data).decode()
