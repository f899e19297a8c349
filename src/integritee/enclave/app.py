"""The enclave process: its secrets, its identity, and the ecalls the service may make.

Everything secret (signing, shielding and state keys, the plaintext shard state) lives in this
process only. The service reaches it through the ecall socket with the typed messages of
`integritee.teeio.messages`; clients reach it through the trusted WSS server it serves itself.
"""

from __future__ import annotations

import asyncio
import collections
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
from integritee.crypto.keys import Keypair
from integritee.crypto.sealing import SealingError, SealingKeyProvider, seal, unseal
from integritee.parentchain.tee_types import SidechainBlockConfirmation
from integritee.rpc.client import RpcClient
from integritee.rpc.errors import RpcError
from integritee.rpc.server import RpcServer
from integritee.storage.kv import KVStore
from integritee.teeio.messages import (
    AccountNonceRequest,
    ChainInfo,
    Ecall,
    EnclaveInfo,
    EnclaveStatus,
    Extrinsics,
    FetchBlocksRequest,
    InitRequest,
    LightClientInit,
    LightClientStatus,
    Ocall,
    ProvisionRequest,
    RegistrationRequest,
    ShardInit,
    ShardRole,
    SidechainBlocks,
    SidechainHead,
    SidechainStart,
    SyncRequest,
    SyncResult,
    from_json,
    to_json,
)
from integritee.trusted.sidechain import (
    FINALIZATION_INTERVAL,
    ZERO_HASH,
    SidechainHeaderCodec,
    SignedBlockCodec,
    summary,
    verify_block_signature,
)

from . import mu_ra
from .keys import EnclaveKeys
from .l1_view import ParentchainView
from .light_client import SEAL_LABEL, LightClient, LightClientError, ParentchainBlockInput
from .measurement import mrenclave
from .parentchain_tx import ParentchainTxBuilder
from .provisioning import ProvisioningError, build_bundle, parse_bundle, ra_identity, ra_verifier
from .shard import Shard, merkle_root, vault_keypair
from .sidechain import PROPOSAL_SHARE, BlockImportError, Sidechain, UnknownParentchainHead
from .stf import ShardState, Stf
from .stf.executor import UnshieldFromVault
from .stf.getters import GetterError, execute_getter
from .tls import server_context
from .top_pool import TopPool
from .trusted_rpc import TrustedRpc

log = logging.getLogger("integritee.enclave")

NOT_READY = -32010
LIGHT_CLIENT_KEY = b"light_client"
IMPORT_QUEUE_LIMIT = 1024  # peer blocks waiting for their parentchain head or a gap fetch
# covers the vault's proxy deposit (~20.04 TEER), the existential deposit and fees
VAULT_FUNDING = 30 * 10**12


@dataclass
class Urls:
    trusted: str
    untrusted: str
    mu_ra: str


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
        self._view: ParentchainView | None = None
        self.mu_ra_server: mu_ra.MuRaServer | None = None
        self._import_queue: dict[bytes, dict[str, Any]] = {}
        self._production = asyncio.Lock()  # block production, queue drains and fork switches
        self._outbox: collections.deque[SidechainBlocks] = collections.deque()
        self._outbox_task: asyncio.Task[None] | None = None
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

    @property
    def view(self) -> ParentchainView:
        if self._view is None:
            self._view = ParentchainView(self.db, self.shard, self.keys.state_key)
        return self._view

    @property
    def _dev(self) -> bool:
        return bool(self.init_request and self.init_request.dev)

    def _shard(self) -> Shard:
        if self.shard_runtime is None:
            self.stf = Stf(self.mrenclave, dev=self._dev)
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
        server.add_method(Ecall.PROVISION, typed(ProvisionRequest, self.provision))
        server.add_method(
            Ecall.IMPORT_SIDECHAIN_BLOCKS, typed(SidechainBlocks, self.import_fetched_blocks)
        )
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
        if self.mu_ra_server is None:
            self.mu_ra_server = mu_ra.MuRaServer(
                ra_identity(self),
                ra_verifier(self),
                lambda shard, _account: build_bundle(self, shard),
                self._on_provisioned,
            )
            await self.mu_ra_server.start(request.trusted_host, request.mu_ra_port)
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
        status_entry = lc.metadata.storage("EnclaveBridge", "ShardStatus")
        status_key = status_entry.key(self.shard)
        try:
            verified = lc.import_blocks(blocks, [status_key])
        except LightClientError as e:
            verified = list(getattr(e, "imported", []) or [])
            log.warning("parentchain block rejected: %s", e)
            if not verified:
                raise RpcError(-32011, f"parentchain block rejected: {e}") from None
        shard = self._shard()
        view = self.view
        self.tx.observe_nonce(request.enclave_nonce)
        try:
            extrinsics = self._import_verified(
                request, verified, shard, view, status_entry, status_key
            )
        except BaseException:
            view.drop_staged()  # the batch was not written
            raise
        view.commit_staged()
        return SyncResult(last_number=lc.last_number, last_hash=lc.last_hash, extrinsics=extrinsics)

    def _import_verified(
        self,
        request: SyncRequest,
        verified: list[Any],
        shard: Shard,
        view: ParentchainView,
        status_entry: Any,
        status_key: bytes,
    ) -> list[bytes]:
        lc = self._require_light_client()
        extrinsics: list[bytes] = []
        deferred = shard.initialized and self._sidechain_mode(shard)
        with self.db.batch() as batch:
            for block in verified:
                view.record_block(batch, block.hash, block.number)
                raw = block.storage.get(status_key)
                signers = (
                    []
                    if raw is None
                    else [bytes(s["signer"]) for s in status_entry.decode_value(raw)]
                )
                if view.record_authorities(batch, block.number, signers):
                    log.info(
                        "shard validateers at parentchain #%d: %s",
                        block.number,
                        ", ".join("0x" + s.hex()[:12] for s in signers) or "none",
                    )
                if not shard.initialized:
                    continue
                funders = set(view.authorities_at(block.number)) | {self.keys.signing.public_key}
                effects = shard.process_block(block, self.keys.shielding, funders, defer=deferred)
                if effects.inbox:
                    view.add_inbox(batch, block.number, effects.inbox)
                birth = (block.number, block.hash)
                for pcall in effects.parentchain_calls:
                    extrinsics.append(self._payout(pcall, request.chain, birth))
                if effects.executed or effects.relevant:
                    extrinsics.append(
                        self._confirm(block.hash, block.number, effects.executed, request.chain)
                    )
            if shard.initialized:
                shard.commit(batch)
            batch.put(LIGHT_CLIENT_KEY, seal(self.sealing, lc.to_bytes(), SEAL_LABEL))
        return extrinsics

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
            if me not in signers:
                extrinsics.append(self._claim(request.chain))
        elif not [s for s in signers if s != me]:
            # nobody else holds the shard: create it (also after a clean reset of a lone primary)
            header = lc.last_header
            with_vault = self.init_request.shard_vault if self.init_request else True
            vault = shard.create(header, lc.genesis_hash, with_vault)
            with self.db.batch() as batch:
                shard.commit(batch)
            self.role = "primary"
            birth = (lc.last_number, lc.last_hash)
            if vault is not None:
                extrinsics += self._vault_extrinsics(vault, request.chain, birth)
            # claim the shard on the parentchain at once: the first confirmation makes this enclave
            # entry 0 of ShardStatus, so a validateer starting later finds a primary to join
            extrinsics.append(self._claim(request.chain))
            log.info(
                "primary of new shard, created at parentchain #%d; %s",
                lc.last_number,
                f"vault 0x{vault.public_key.hex()}"
                if vault
                else "no vault (shielding through EnclaveBridge)",
            )
        else:
            self.role = "joiner"
            log.info(
                "joiner: 0x%s is primary of this shard; provisioning by MU-RA", signers[0].hex()
            )
            return ShardRole(role="joiner", shard=self.shard, creation_block=0, provisioned=False)
        return ShardRole(
            role=self.role or "primary",
            shard=self.shard,
            creation_block=shard.creation_number(),
            vault=shard.vault(),
            extrinsics=extrinsics,
        )

    def _claim(self, chain: ChainInfo) -> bytes:
        """A confirmation that enters this enclave in ShardStatus: from then on it is one of the
        shard's validateers (Aura authorities of the sidechain)."""
        lc = self._require_light_client()
        return self._confirm(lc.last_hash, lc.last_number, [], chain)

    def _confirm(
        self, block_hash: bytes, number: int, executed: list[bytes], chain: ChainInfo
    ) -> bytes:
        """`confirm_processed_parentchain_block` of a parentchain block for this shard."""
        call = self.tx.call(
            "EnclaveBridge",
            "confirm_processed_parentchain_block",
            shard=self.shard,
            block_hash=block_hash,
            block_number=number,
            trusted_calls_merkle_root=merkle_root(executed),
        )
        return self.tx.sign(call, chain, era_birth=(number, block_hash))

    # --- mutual RA: joining a shard, and providing it
    async def provision(self, request: ProvisionRequest) -> ShardRole:
        """Fetch the shard's keys, state and parentchain view from a peer enclave (the joiner's
        side of MU-RA), adopt them, and claim a place among the shard's validateers."""
        if self._shard().initialized:
            raise RpcError(-32602, "this enclave already has the shard")
        self.tx.observe_nonce(request.enclave_nonce)
        host, port = _host_port(request.mu_ra_url)
        try:
            bundle = await mu_ra.request_provisioning(
                host,
                port,
                ra_identity(self),
                ra_verifier(self),
                self.shard,
                self.keys.signing.public_key,
            )
            received = parse_bundle(bundle)
            lc = LightClient.from_bytes(received.light_client)
            state = ShardState.from_snapshot(received.state_key, received.state)
        except (mu_ra.MuRaError, ProvisioningError, LightClientError, ValueError) as e:
            raise RpcError(-32013, f"provisioning from {request.mu_ra_url} failed: {e}") from None
        own = self.light_client
        if own is not None and own.genesis_hash != lc.genesis_hash:
            raise RpcError(-32013, "the provider follows another parentchain")
        self.keys.replace_shared(
            received.shielding_key, received.state_key, self.sealed_dir, self.sealing
        )
        self.tx = ParentchainTxBuilder(self.keys.signing, self._call_codec)
        self.tx.observe_nonce(request.enclave_nonce)
        self.shard_runtime, self._view = None, None
        view = self.view
        runtime = Shard(
            self.shard, self.db, self.keys.state_key, Stf(self.mrenclave, dev=self._dev)
        )
        try:
            with self.db.batch() as batch:
                state.write_all(batch.prefixed(runtime.view.prefix))
                view.import_(batch, received.view)
                if received.head is not None:
                    batch.put(
                        b"sidechain/head/" + self.shard, SidechainHeaderCodec.encode(received.head)
                    )
                batch.put(LIGHT_CLIENT_KEY, seal(self.sealing, lc.to_bytes(), SEAL_LABEL))
        except (ValueError, OSError) as e:  # nothing written; the next attempt starts over
            view.drop_staged()
            raise RpcError(-32013, f"the provisioned shard is unusable: {e}") from None
        view.commit_staged()
        self.light_client = lc
        shard = self._shard()
        self.role = "joiner"
        log.info(
            "provisioned by MU-RA from %s: shard state at sidechain #%d, parentchain #%d",
            request.mu_ra_url,
            received.head["block_number"] if received.head else 0,
            lc.last_number,
        )
        return ShardRole(
            role="joiner",
            shard=self.shard,
            creation_block=shard.creation_number(),
            vault=shard.vault(),
            extrinsics=[self._claim(request.chain)],
        )

    async def _on_provisioned(self, shard: bytes, account: bytes) -> None:
        """The provider's follow-up: the joiner becomes a proxy of the shard vault (payouts)."""
        runtime = self._shard()
        chain, lc = self._chain, self.light_client
        if runtime.vault() is None or chain is None or lc is None:
            return
        vault = vault_keypair(self.keys.state_key, shard)
        nonce = await self.ocall(Ocall.ACCOUNT_NONCE, AccountNonceRequest(vault.public_key))
        call = self.tx.call(
            "Proxy",
            "add_proxy",
            delegate=EnumValue("Id", account),
            proxy_type=EnumValue("Any"),
            delay=0,
        )
        xt = self.tx.sign(
            call, chain, signer=vault, nonce=int(nonce), era_birth=(lc.last_number, lc.last_hash)
        )
        await self.ocall(Ocall.SEND_EXTRINSICS, Extrinsics([xt]))
        log.info("added 0x%s as a proxy of the shard vault", account.hex())

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
        head = self.sidechain.head if self.sidechain else None
        return EnclaveStatus(
            registered=self.registered,
            role=self.role,
            light_client_number=lc.last_number if lc else 0,
            shard=self.shard,
            sidechain_number=head.number if head else 0,
            sidechain_hash=head.hash if head else None,
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
        created = False
        shard = self._shard()
        if shard.state is None:
            raise RpcError(NOT_READY, "the shard is not initialised")
        if self.sidechain is None:
            created = True
            self.sidechain = Sidechain(
                shard,
                self.db,
                self.keys.signing,
                self.keys.state_key,
                request.slot_duration_ms,
                self.view,
                [self.keys.signing.public_key] if self.role == "primary" else [],
            )
        if created:
            self._hand_over_unstored(request.stored_number, request.stored_hash)
        if request.produce and self._slot_task is None:
            self._slot_task = asyncio.create_task(self._slot_loop(), name="sidechain-slots")
            log.info(
                "sidechain started at #%d, slot %d ms",
                self.sidechain.number,
                request.slot_duration_ms,
            )
        return self.status()

    def _hand_over_unstored(self, stored_number: int, stored_hash: bytes | None) -> None:
        """Blocks this enclave committed that the service did not store (it was killed between
        the two): hand them over again, after dropping a stored block we no longer have."""
        sidechain = self.sidechain
        assert sidechain is not None
        head = sidechain.head
        if head is None or (stored_number == head.number and stored_hash == head.hash):
            return
        revert_to: int | None = None
        start = stored_number + 1
        if stored_number > head.number:
            revert_to, start = head.number, head.number + 1
        elif stored_number >= 1:
            ours = sidechain.block_at(stored_number)
            if ours is not None and summary(ours).hash != stored_hash:
                revert_to, start = stored_number - 1, stored_number
        blocks: list[bytes] = []
        for number in range(start, head.number + 1):
            block = sidechain.block_at(number)
            if block is None:
                log.warning("sidechain block #%d is no longer here to hand over", number)
                blocks = []
                continue
            blocks.append(SignedBlockCodec.encode(block))
        if blocks or revert_to is not None:
            log.info(
                "handing %d committed sidechain block(s) over to the service again", len(blocks)
            )
            self._hand_over(blocks, revert_to)

    def _sidechain_mode(self, shard: Shard) -> bool:
        """Once the shard has sidechain blocks, every state change must go through one (also
        while the sidechain restarts after a reboot)."""
        return (
            self.sidechain is not None or self.db.get(b"sidechain/head/" + shard.shard) is not None
        )

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
            try:
                async with self._production:
                    await self._drain_imports()
                    lc = self.light_client
                    if lc is None or not self.sidechain.is_author(slot, lc.last_hash):
                        continue
                    remaining = ((slot + 1) * duration - int(time.time() * 1000)) / 1000
                    if remaining <= 0:
                        continue
                    await self._produce(slot, time.monotonic() + remaining * PROPOSAL_SHARE)
            except Exception:
                log.exception("sidechain slot %d failed", slot)

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
        view = self.view
        header = lc.last_header
        processed = shard.processed_number()
        if header.number < processed:
            return  # the light client is behind the state (just provisioned): wait for the sync

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

        inbox_calls: list[Any] = []

        def parentchain_work() -> None:
            # the parentchain blocks this block passes: their indirect calls run here, once
            for number, items in view.inbox_between(processed, header.number):
                effects = shard.execute_inbox(items)
                inbox_calls.extend(effects.parentchain_calls)
                if items:
                    log.info("parentchain #%d: %d indirect call(s) executed", number, len(items))
            stf.update_parentchain_block(state, "Integritee", header)

        produced = sidechain.propose(
            slot,
            lc.last_hash,
            self.pool.ready(),
            execute,
            deadline,
            prelude=parentchain_work,
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
        self._hand_over([SignedBlockCodec.encode(produced.block)], produced=True)
        chain = self._chain
        if chain is None:
            return
        birth = (lc.last_number, lc.last_hash)
        calls = inbox_calls + list(produced.parentchain_calls)
        extrinsics = [self._payout(c, chain, birth) for c in calls]
        if info.number % FINALIZATION_INTERVAL == 0:
            extrinsics.append(self._finalization_candidate(info, chain, birth))
        if extrinsics:
            await self.ocall(Ocall.SEND_EXTRINSICS, Extrinsics(extrinsics))

    def _finalization_candidate(
        self, info: Any, chain: ChainInfo, birth: tuple[int, bytes]
    ) -> bytes:
        """Every FINALIZATION_INTERVAL blocks the author confirms a block on the parentchain,
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

    # --- importing peers' blocks
    def import_sidechain_blocks(self, blocks: list[dict[str, Any]]) -> None:
        """Blocks from peers (sidechain_importBlock). Forged or foreign blocks are refused at once;
        a block that extends the head is imported at once (its errors are the caller's); others
        (a gap, a parentchain head not imported yet, a competing block) wait in the import
        queue, drained at every slot."""
        sidechain = self.sidechain
        if sidechain is None:
            raise ValueError("the sidechain is not running")
        lc = self.light_client
        for block in blocks:
            header, data = block["block"]["header"], block["block"]["block_data"]
            if bytes(header["shard_id"]) != self.shard:
                raise BlockImportError("block of another shard")
            if not verify_block_signature(block):
                raise BlockImportError("bad block signature or block data hash")
            # only the shard's validateers may make this enclave queue or fetch anything
            try:
                authorities = sidechain.authorities_at(bytes(data["layer_one_head"]))
            except UnknownParentchainHead:
                authorities = sidechain.authorities_at(lc.last_hash) if lc else []
            if bytes(data["block_author"]) not in authorities:
                raise BlockImportError("author is not a validateer of this shard")
        if self._production.locked():
            self._enqueue(blocks)
            return
        imported: list[bytes] = []
        try:
            for i, block in enumerate(blocks):
                if self._extends_head(block):
                    try:
                        self._import_one(block)
                    except UnknownParentchainHead:
                        self._enqueue(blocks[i:])  # the parentchain sync may bring it
                        raise
                    imported.append(SignedBlockCodec.encode(block))
                    continue
                if self._competes(block):
                    self._enqueue(blocks[i:])
                    return
                info, number = summary(block), sidechain.number
                if info.number <= number:
                    raise BlockImportError(
                        f"block #{info.number} does not extend #{number} (stale)"
                    )
                self._enqueue(blocks[i:])
                raise BlockImportError(
                    f"block #{info.number} does not extend #{number} (parent mismatch or gap); "
                    "queued until the blocks between are fetched"
                )
        finally:
            self._hand_over(imported)

    def _extends_head(self, block: dict[str, Any]) -> bool:
        assert self.sidechain is not None
        info, head = summary(block), self.sidechain.head
        return info.number == self.sidechain.number + 1 and info.parent_hash == (
            head.hash if head else ZERO_HASH
        )

    def _import_one(self, block: dict[str, Any]) -> None:
        sidechain, stf = self.sidechain, self.stf
        assert sidechain is not None and stf is not None
        info = sidechain.import_block(block)
        sidechain.commit(block, info)
        state = self.shard_runtime.state if self.shard_runtime else None
        tops = [bytes(h) for h in block["block"]["block_data"]["signed_top_hashes"]]
        if state is not None:
            self.pool.on_executed(tops, info.hash, lambda who: stf.account_nonce(state, who))
        log.debug("imported sidechain block #%d 0x%s", info.number, info.hash.hex()[:16])

    def _enqueue(self, blocks: list[dict[str, Any]]) -> None:
        for block in blocks:
            if len(self._import_queue) >= IMPORT_QUEUE_LIMIT:
                log.warning("sidechain import queue full; block dropped")
                return
            self._import_queue[summary(block).hash] = block

    def _hand_over(
        self, encoded: list[bytes], revert_to: int | None = None, produced: bool = False
    ) -> None:
        """Hand blocks to the service for storage (and, when produced here, broadcast), strictly
        in the order the enclave committed them: one sender drains one outbox."""
        if not encoded and revert_to is None:
            return
        self._outbox.append(SidechainBlocks(encoded, produced=produced, revert_to=revert_to))
        if self._outbox_task is None or self._outbox_task.done():
            self._outbox_task = asyncio.get_running_loop().create_task(self._send_outbox())

    async def _send_outbox(self) -> None:
        while self._outbox:
            message = self._outbox[0]
            try:
                await self.ocall(Ocall.STORE_SIDECHAIN_BLOCKS, message)
            except RpcError as e:  # the service refused them: nothing to retry
                log.warning("the service did not take sidechain blocks: %s", e)
            except Exception as e:  # the connection failed: keep the order, retry
                log.warning("handing sidechain blocks to the service failed: %s", e)
                await asyncio.sleep(1)
                continue
            self._outbox.popleft()

    async def _drain_imports(self) -> None:
        """Import what the queue allows, in block order: the next block, a competing block with
        a lower hash (fork switch), or, on a gap, the missing blocks fetched from a peer. The
        service gets every change in the order it happened (the outbox keeps it)."""
        sidechain = self.sidechain
        if sidechain is None or not self._import_queue:
            return
        imported: list[bytes] = []

        def flush() -> None:
            self._hand_over(imported[:])
            imported.clear()

        try:
            progress = True
            while progress and self._import_queue:
                progress = False
                for block_hash, block in sorted(
                    self._import_queue.items(), key=lambda kv: summary(kv[1]).number
                ):
                    info = summary(block)
                    if info.number <= sidechain.number:
                        if self._competes(block) and not self._l1_known(block):
                            continue  # wait for its parentchain head before comparing chains
                        del self._import_queue[block_hash]
                        if self._competes(block) and self._switch_fork(block) is not None:
                            flush()
                            encoded = [SignedBlockCodec.encode(block)]
                            self._hand_over(encoded, revert_to=info.number - 1)
                            progress = True
                            break
                        continue
                    if not self._extends_head(block):
                        continue
                    try:
                        self._import_one(block)
                    except UnknownParentchainHead:
                        continue
                    except BlockImportError as e:
                        log.warning("queued sidechain block #%d rejected: %s", info.number, e)
                        del self._import_queue[block_hash]
                        continue
                    del self._import_queue[block_hash]
                    imported.append(SignedBlockCodec.encode(block))
                    progress = True
                    break
            # a gap, or a next block on another parent: the peers have blocks we lack
            if any(
                summary(b).number > sidechain.number and not self._extends_head(b)
                for b in self._import_queue.values()
            ):
                flush()
                fetched = await self._fetch_missing()
                if fetched is not None:
                    self._hand_over(fetched[0], fetched[1])
        finally:
            flush()

    def _l1_known(self, block: dict[str, Any]) -> bool:
        l1 = bytes(block["block"]["block_data"]["layer_one_head"])
        return self.view.number_of(l1) is not None

    def _competes(self, block: dict[str, Any]) -> bool:
        """A block at the head's height with the head's parent and a lower hash wins."""
        assert self.sidechain is not None
        head, info = self.sidechain.head, summary(block)
        return (
            head is not None
            and info.number == head.number
            and info.parent_hash == head.parent_hash
            and info.hash < head.hash
        )

    def _switch_fork(self, block: dict[str, Any]) -> dict[str, Any] | None:
        """Replace the head by a competing block; the head's operations return to the pool.
        Returns the replaced block, or None (and nothing changed) when the competitor fails."""
        sidechain, stf, runtime = self.sidechain, self.stf, self.shard_runtime
        assert sidechain is not None and stf is not None and runtime is not None
        reverted = sidechain.revert_head()
        try:
            self._import_one(block)
        except BlockImportError as e:
            log.warning("competing sidechain block #%d rejected: %s", summary(block).number, e)
            self._import_one(reverted)  # back to where we were
            return None
        self._return_to_pool([reverted])
        log.info(
            "fork: sidechain block #%d 0x%s replaces 0x%s (lower hash)",
            summary(block).number,
            summary(block).hash.hex()[:16],
            summary(reverted).hash.hex()[:16],
        )
        return reverted

    async def _fetch(self, from_hash: bytes) -> list[dict[str, Any]]:
        try:
            reply = await self.ocall(
                Ocall.FETCH_SIDECHAIN_BLOCKS, FetchBlocksRequest(from_hash, self.shard)
            )
            return [SignedBlockCodec.decode(b) for b in from_json(SidechainBlocks, reply).blocks]
        except (RpcError, ValueError, OSError, TimeoutError) as e:
            log.warning("fetching sidechain blocks from a peer failed: %s", e)
            return []

    async def _fetch_missing(self) -> tuple[list[bytes], int | None] | None:
        """Fill a gap from a peer: the blocks after our head. When the peer does not know our
        head but holds a longer chain, we are on a losing fork: step back (undo records) to the
        last block both chains share and import the peer's blocks from there; if they fail, our
        blocks are restored. Returns the imported blocks and the number reverted to."""
        sidechain = self.sidechain
        assert sidechain is not None
        head = sidechain.head
        blocks = await self._fetch(head.hash if head else ZERO_HASH)
        reverted: list[dict[str, Any]] = []
        if not blocks and head is not None:
            chain = await self._fetch(ZERO_HASH)  # the peer's stored chain
            by_number = {summary(b).number: summary(b).hash for b in chain}
            if not chain:
                return None
            top = max(by_number)
            # the longer chain wins; of two as long, the one whose head has the lower hash
            if top < head.number or (top == head.number and by_number[top] >= head.hash):
                return None
            while (
                sidechain.head is not None
                and by_number.get(sidechain.head.number, sidechain.head.hash) != sidechain.head.hash
                and len(reverted) < 8
            ):
                reverted.append(sidechain.revert_head())
            number = sidechain.number
            blocks = [b for b in chain if summary(b).number > number]
        imported: list[bytes] = []
        try:
            for block in blocks:
                if not self._extends_head(block):
                    break
                self._import_one(block)
                imported.append(SignedBlockCodec.encode(block))
                self._import_queue.pop(summary(block).hash, None)
        except BlockImportError as e:
            log.warning("fetched sidechain block rejected: %s", e)
        if reverted and sidechain.number < summary(reverted[0]).number:
            # the peer's chain did not carry us past where we were: back to ours
            while sidechain.number > summary(reverted[-1]).number - 1:
                sidechain.revert_head()
            for block in reversed(reverted):
                self._import_one(block)
            return None
        if imported:
            log.info(
                "fetched %d sidechain block(s) from a peer, now at #%d",
                len(imported),
                sidechain.number,
            )
        if reverted:
            self._return_to_pool(reverted)
            return imported, summary(reverted[-1]).number - 1
        return imported, None

    def _return_to_pool(self, blocks: list[dict[str, Any]]) -> None:
        stf, runtime = self.stf, self.shard_runtime
        if stf is None or runtime is None or runtime.state is None:
            return
        state = runtime.state
        tops = [bytes(h) for b in blocks for h in b["block"]["block_data"]["signed_top_hashes"]]
        back = self.pool.retract(tops, lambda who: stf.account_nonce(state, who))
        if back:
            log.info("%d operation(s) of replaced block(s) back in the pool", len(back))

    async def import_fetched_blocks(self, message: SidechainBlocks) -> SidechainHead:
        """Blocks the service fetched from a peer (catching up before producing)."""
        if self.sidechain is None:
            raise RpcError(NOT_READY, "the sidechain is not running")
        async with self._production:
            imported: list[bytes] = []
            try:
                blocks = [SignedBlockCodec.decode(raw) for raw in message.blocks]
                for i, block in enumerate(blocks):
                    if not self._extends_head(block):
                        continue
                    try:
                        self._import_one(block)
                    except UnknownParentchainHead:
                        self._enqueue(blocks[i:])  # after the next parentchain sync
                        break
                    imported.append(message.blocks[i])
            except BlockImportError as e:
                log.warning("caught-up sidechain block rejected: %s", e)
            finally:
                self._hand_over(imported)
        head = self.sidechain.head
        return SidechainHead(self.sidechain.number, head.hash if head else None)

    async def close(self) -> None:
        if self.mu_ra_server is not None:
            await self.mu_ra_server.stop()
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


def _host_port(url: str) -> tuple[str, int]:
    """`host:port`, also with a scheme (`tls://host:port`) as some configs write it."""
    rest = url.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise RpcError(-32602, f"MU-RA address {url!r} is not host:port")
    return host.strip("[]") or "127.0.0.1", int(port)


def _b58(data: bytes) -> str:
    import base58

    return base58.b58encode(data).decode()
