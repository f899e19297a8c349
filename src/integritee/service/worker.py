"""The validateer's life cycle on the untrusted side (start-up order of the original).

1. launch the enclave and initialise it (its trusted WSS server starts);
2. initialise the enclave's light client from the genesis header and a proof of the authorities
   and the runtime metadata (or resume it);
3. dev chains: fund the enclave account from //Alice;
4. register the enclave on Teerex unless it already is (extrinsics built and signed in the enclave);
5. sync the parentchain into the enclave in batches, submitting what the enclave asks to send;
6. establish the shard role from EnclaveBridge.ShardStatus (read with a proof the enclave checks);
   a joiner (another validateer is primary) is provisioned by MU-RA from the peer with the
   highest last activity, then claims its place among the shard's validateers;
7. catch up on sidechain blocks from a peer, then start producing in the enclave's Aura slots;
8. follow finalized heads; broadcast produced blocks to the peers; serve /is_initialized and
   /metrics; SIGTERM stops everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

from aiohttp import web

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import EnumValue
from integritee.crypto.hashing import blake2_128_concat, storage_prefix
from integritee.crypto.keys import Keypair
from integritee.rpc.errors import RpcError
from integritee.rpc.server import RpcServer
from integritee.teeio.messages import (
    AccountNonceRequest,
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

from .config import ServiceConfig
from .enclave_host import EnclaveHost
from .metrics import ServiceMetrics
from .node_client import NodeClient, SubmissionError
from .parentchain_fetch import fetch_blocks, fetch_genesis_init
from .peers import Peers
from .sidechain_db import SidechainDb, start_pruning
from .untrusted_rpc import UntrustedRpc

log = logging.getLogger("integritee.service")

DEV_FUNDING = 1_000 * 10**12  # 1000 TEER: registration fees plus the shard vault's proxy deposit


class Validateer:
    def __init__(self, config: ServiceConfig) -> None:
        self.config = config
        self.host = EnclaveHost(config.data_dir, config.sealing_key, config.log_level)
        self.node: NodeClient | None = None
        self.info: EnclaveInfo | None = None
        self.synced_number = 0
        self.registered = False
        self.role: ShardRole | None = None
        self.stop_event = asyncio.Event()
        config.data_dir.mkdir(parents=True, exist_ok=True)
        if config.clean_reset:
            self._clean_reset()
        self.sidechain_db = SidechainDb.open_in(config.data_dir)
        self.metrics = ServiceMetrics(self)
        self._http: web.AppRunner | None = None
        self.sidechain_number = 0
        self.untrusted_server = RpcServer(name="untrusted")
        UntrustedRpc(self.sidechain_db).register(self.untrusted_server)
        self._background: set[asyncio.Task[Any]] = set()
        self.peers: Peers | None = None

    # --- the whole life cycle
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop_event.set)
        self._register_ocalls()
        try:
            await self.host.start()
            self.info = await self.host.ecall(Ecall.INIT, self._init_request(), EnclaveInfo)
            log.info(
                "enclave account 0x%s, shard %s",
                self.info.signing_public_key.hex(),
                to_hex(self.info.shard),
            )
            await self._start_http()
            self.node = await NodeClient.connect(self.config.node_endpoint)
            await self._init_light_client()
            if self.config.dev:
                await self._dev_funding()
            await self._register()
            await self._sync_to_finalized()
            self.peers = Peers(self.info.shard, self.info.signing_public_key)
            await self._init_shard()
            stored = self.sidechain_db.last_block(self.info.shard)
            await self.host.ecall(
                Ecall.START_SIDECHAIN,
                SidechainStart(
                    self.config.slot_duration_ms,
                    produce=False,
                    stored_number=stored.number if stored else 0,
                    stored_hash=stored.hash if stored else None,
                ),
                EnclaveStatus,
            )
            await self._catch_up()
            await self.host.ecall(
                Ecall.START_SIDECHAIN, SidechainStart(self.config.slot_duration_ms), EnclaveStatus
            )
            log.info(
                "validateer initialised: %s of shard %s",
                self.role.role if self.role else "?",
                to_hex(self.info.shard),
            )
            await self._follow()
            return 0
        finally:
            await self._shutdown()

    def _init_request(self) -> InitRequest:
        c = self.config
        return InitRequest(
            data_dir=str(c.data_dir),
            dev=c.dev,
            attestation=c.attestation,
            trusted_host=c.bind_host,
            trusted_port=c.trusted_port,
            trusted_url=c.trusted_external,
            untrusted_url=c.untrusted_external,
            mu_ra_url=c.mu_ra_external,
            shard=c.shard,
            shard_vault=c.shard_vault,
            mu_ra_port=c.mu_ra_port,
        )

    def _clean_reset(self) -> None:
        import shutil

        for name in ("enclave_db", "sidechain_db"):
            shutil.rmtree(self.config.data_dir / name, ignore_errors=True)
        log.info("clean reset: purged light client, shards and sidechain DB (sealed keys kept)")

    # --- steps
    async def _init_light_client(self) -> None:
        assert self.node is not None
        status = await self.host.ecall(Ecall.LIGHT_CLIENT_STATUS, {}, LightClientStatus)
        if status.initialized:
            if status.genesis_hash != self.node.chain.genesis_hash:  # type: ignore[union-attr]
                raise ConnectionError(
                    "the enclave's light client follows another chain; use --clean-reset"
                )
            self.synced_number = status.last_number
            log.info("light client resumed at #%d", status.last_number)
            return
        header, proof = await fetch_genesis_init(self.node.client)
        await self.host.ecall(
            Ecall.INIT_LIGHT_CLIENT, LightClientInit(header, proof), LightClientStatus
        )
        log.info("light client initialised from genesis")

    async def _dev_funding(self) -> None:
        assert self.node is not None and self.info is not None
        account = await self.node.account(self.info.signing_public_key)
        if account.data.free >= DEV_FUNDING // 2:
            return
        alice = Keypair.from_uri("//Alice")
        call = self.node.call(
            "Balances",
            "transfer_keep_alive",
            dest=_id(self.info.signing_public_key),
            value=DEV_FUNDING,
        )
        await self.node.sign_and_submit(alice, call)
        log.info("dev: funded the enclave account with %d from //Alice", DEV_FUNDING)

    async def _register(self) -> None:
        assert self.node is not None and self.info is not None and self.node.metadata is not None
        entry = self.node.metadata.storage("Teerex", "SovereignEnclaves")
        raw = await self.node.storage(entry.key(self.info.signing_public_key))
        if raw is not None:
            enclave = entry.decode_value(raw)
            sgx = enclave.value
            if bytes(sgx["mr_enclave"]) == self.info.mrenclave:
                self.registered = True
                log.info("enclave already registered")
                return
        request = RegistrationRequest(
            chain=self.node.chain,  # type: ignore[arg-type]
            nonce=await self.node.next_nonce(self.info.signing_public_key),
            worker_url=self.config.trusted_external,
            with_collateral=self.config.attestation == "sim-dcap",
        )
        batch = await self.host.ecall(Ecall.REGISTRATION_EXTRINSICS, request, Extrinsics)
        for xt in batch.extrinsics:
            await self.node.submit(xt, wait="finalized")
        self.registered = True
        log.info("registered the enclave on the parentchain (%s)", self.config.attestation)

    async def _sync_to_finalized(self) -> None:
        assert self.node is not None
        finalized, _ = await self.node.finalized_head()
        while self.synced_number < finalized and not self.stop_event.is_set():
            end = min(finalized, self.synced_number + self.config.sync_batch)
            catching_up = end - self.synced_number > 1
            blocks = await fetch_blocks(
                self.node.client, self.synced_number + 1, end, extra_keys=(self._status_key(),)
            )
            await self._import(blocks)
            if catching_up:
                log.info("parentchain sync: #%d of #%d", self.synced_number, finalized)
            finalized, _ = await self.node.finalized_head()

    async def _import(self, blocks: list[Any]) -> None:
        assert self.node is not None
        assert self.info is not None
        request = SyncRequest(
            chain=self.node.chain,  # type: ignore[arg-type]
            blocks=[b.to_json() for b in blocks],
            enclave_nonce=await self.node.next_nonce(self.info.signing_public_key),
        )
        result = await self.host.ecall(Ecall.SYNC_PARENTCHAIN, request, SyncResult)
        self.synced_number = result.last_number
        self.metrics.parentchain_block.set(result.last_number)
        await self._send(result.extrinsics)
        if self.peers is not None:
            try:
                await self.peers.refresh(self.node)
            except (RpcError, OSError, TimeoutError, ValueError) as e:
                log.warning("reading the shard's validateers failed: %s", e)
            self.metrics.peer_count.set(len(self.peers.peers))

    async def _send(self, extrinsics: list[bytes]) -> None:
        assert self.node is not None
        for xt in extrinsics:
            try:
                await self.node.submit(xt, wait="inBlock")
            except (SubmissionError, RpcError) as e:
                log.warning("enclave extrinsic not applied: %s", e)

    def _status_key(self) -> bytes:
        assert self.info is not None
        return storage_prefix("EnclaveBridge", "ShardStatus") + blake2_128_concat(self.info.shard)

    async def _init_shard(self) -> None:
        assert self.node is not None and self.info is not None
        await self._sync_to_finalized()
        block_hash = from_hex(await self.node.rpc("chain_getBlockHash", [self.synced_number]))
        key = self._status_key()
        proof = await self.node.read_proof([key], block_hash)
        self.role = await self.host.ecall(
            Ecall.INIT_SHARD, ShardInit(block_hash, proof, self.node.chain), ShardRole
        )  # type: ignore[arg-type]
        if not self.role.provisioned:
            self.role = await self._onboard()
        for xt in self.role.extrinsics:
            try:
                await self.node.submit(xt, wait="finalized")
            except (SubmissionError, RpcError) as e:
                # e.g. a shard that is not the enclave's fingerprint and has no shard config yet
                log.warning("shard set-up extrinsic not applied: %s", e)
        log.info("shard role: %s", self.role.role)

    async def _onboard(self) -> ShardRole:
        """MU-RA provisioning from the peer with the highest last activity (then the next)."""
        assert self.node is not None and self.info is not None and self.peers is not None
        self.metrics.onboarding.state("provisioning")
        while not self.stop_event.is_set():
            await self.peers.refresh(self.node)
            for peer in self.peers.by_activity():
                try:
                    url = await self.peers.mu_ra_url(peer)
                    log.info(
                        "on-boarding: provisioning from 0x%s at %s", peer.signer.hex()[:12], url
                    )
                    request = ProvisionRequest(
                        url,
                        self.node.chain,
                        await self.node.next_nonce(self.info.signing_public_key),
                    )  # type: ignore[arg-type]
                    role = await self.host.ecall(Ecall.PROVISION, request, ShardRole)
                except (RpcError, OSError, TimeoutError, ValueError) as e:
                    log.warning("on-boarding from %s failed: %s", peer.trusted_url, e)
                    continue
                status = await self.host.ecall(Ecall.LIGHT_CLIENT_STATUS, {}, LightClientStatus)
                self.synced_number = status.last_number
                await self._sync_to_finalized()
                self.metrics.onboarding.state("catching_up")
                log.info("on-boarding: provisioned; light client at #%d", status.last_number)
                return role  # type: ignore[no-any-return]
            log.warning("on-boarding: no peer could provision the shard; retrying")
            await asyncio.sleep(3)
        raise ConnectionError("stopped while on-boarding")

    async def _catch_up(self) -> None:
        """Import the sidechain blocks the peers have beyond the enclave's head."""
        assert self.node is not None and self.info is not None and self.peers is not None
        await self.peers.refresh(self.node)
        if not self.peers.peers:
            self.metrics.onboarding.state("done")
            return
        status = await self.host.ecall(Ecall.STATUS, {}, EnclaveStatus)
        head = status.sidechain_hash or bytes(32)
        for _ in range(100):  # pages of blocks
            blocks = await self.peers.fetch_blocks(head, self.info.shard)
            if not blocks:
                break
            result = await self.host.ecall(
                Ecall.IMPORT_SIDECHAIN_BLOCKS, SidechainBlocks(blocks), SidechainHead
            )
            if result.hash is None or result.hash == head:
                break
            head = result.hash
            log.info("sidechain catch-up: at #%d", result.number)
        self.metrics.onboarding.state("done")

    async def _follow(self) -> None:
        """Import new finalized blocks as they come, until stopped; survive node restarts."""
        while not self.stop_event.is_set():
            try:
                await self._follow_once()
            except (ConnectionError, OSError, TimeoutError, RpcError) as e:
                if self.stop_event.is_set():
                    break
                log.warning("lost the parentchain node (%s); reconnecting", e)
                await self._reconnect()

    async def _follow_once(self) -> None:
        assert self.node is not None
        sub = await self.node.client.subscribe(
            "chain_subscribeFinalizedHeads", [], "chain_unsubscribeFinalizedHeads"
        )
        wake = asyncio.Event()

        async def pump() -> None:
            async for _header in sub:
                wake.set()
            raise ConnectionError("the finalized-heads subscription ended")

        pump_task = asyncio.create_task(pump())
        stop_wait = asyncio.create_task(self.stop_event.wait())
        try:
            while not self.stop_event.is_set():
                wake_wait = asyncio.create_task(wake.wait())
                done, _ = await asyncio.wait(
                    {stop_wait, wake_wait, pump_task}, return_when=asyncio.FIRST_COMPLETED
                )
                wake_wait.cancel()
                if pump_task in done:
                    pump_task.result()  # raises why the subscription ended
                wake.clear()
                if self.stop_event.is_set():
                    break
                await self._sync_to_finalized()
        finally:
            pump_task.cancel()
            stop_wait.cancel()

    async def _reconnect(self) -> None:
        if self.node is not None:
            with contextlib.suppress(Exception):
                await self.node.close()
        while not self.stop_event.is_set():
            try:
                self.node = await NodeClient.connect(self.config.node_endpoint, timeout=30)
                log.info("reconnected to the parentchain node")
                return
            except ConnectionError as e:
                log.warning("%s; retrying", e)
                await asyncio.sleep(2)

    # --- ocalls: what the enclave asks of its host
    def _register_ocalls(self) -> None:
        server = self.host.ocall_server
        server.add_method(Ocall.STORE_SIDECHAIN_BLOCKS, self._ocall_store_blocks)
        server.add_method(Ocall.SEND_EXTRINSICS, self._ocall_send_extrinsics)
        server.add_method(Ocall.FETCH_SIDECHAIN_BLOCKS, self._ocall_fetch_blocks)
        server.add_method(Ocall.ACCOUNT_NONCE, self._ocall_account_nonce)

    async def _ocall_fetch_blocks(self, params: Any) -> Any:
        request = from_json(FetchBlocksRequest, params[0])
        if self.peers is None:
            return to_json(SidechainBlocks([]))
        blocks = await self.peers.fetch_blocks(request.from_hash, request.shard)
        return to_json(SidechainBlocks(blocks))

    async def _ocall_account_nonce(self, params: Any) -> int:
        request = from_json(AccountNonceRequest, params[0])
        if self.node is None:
            raise RpcError(-32000, "no parentchain node connection")
        return await self.node.next_nonce(request.account)

    def _ocall_store_blocks(self, params: Any) -> int:
        message = from_json(SidechainBlocks, params[0])
        if message.revert_to is not None and self.info is not None:
            self.sidechain_db.truncate_above(self.info.shard, message.revert_to)
        if message.produced and self.peers is not None:
            self.peers.broadcast(message.blocks)
        result = self.sidechain_db.store_blocks(message.blocks)
        last = self.sidechain_db.last_block(self.info.shard) if self.info else None
        if last is not None:
            self.sidechain_number = last.number
        return (
            len(message.blocks)
            if result is None
            else len(getattr(result, "stored", message.blocks))
        )

    def _ocall_send_extrinsics(self, params: Any) -> int:
        message = from_json(Extrinsics, params[0])
        task = asyncio.create_task(self._send(message.extrinsics))
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return len(message.extrinsics)

    # --- untrusted HTTP: /is_initialized (and /metrics when enabled)
    async def _start_http(self) -> None:
        app = web.Application()
        app.router.add_get("/is_initialized", self._is_initialized)
        self._http = web.AppRunner(app, access_log=None)
        await self._http.setup()
        await web.TCPSite(self._http, self.config.bind_host, self.config.http_port).start()
        if self.config.enable_metrics:
            await self.metrics.start(self.config.bind_host, self.config.metrics_port)
        await self.untrusted_server.start(self.config.bind_host, self.config.untrusted_port)
        self._background.add(
            start_pruning(self.sidechain_db, keep_newest=self.config.sidechain_keep_blocks)
        )

    def initialized(self) -> bool:
        """Registered, the shard has a primary, and a first sidechain block exists (as the original)."""
        return self.registered and self.role is not None and self.sidechain_number > 0

    async def _is_initialized(self, request: web.Request) -> web.Response:
        if self.initialized():
            return web.Response(text="I am initialized.")
        return web.Response(status=404, text="not initialized")

    async def _shutdown(self) -> None:
        log.info("stopping the validateer")
        if self.peers is not None:
            await self.peers.close()
        if self.node is not None:
            await self.node.close()
        await self.host.stop()
        await self.untrusted_server.stop()
        for task in list(self._background):
            task.cancel()
        self.sidechain_db.close()
        await self.metrics.stop()
        if self._http is not None:
            await self._http.cleanup()


def _id(account: bytes) -> EnumValue:
    return EnumValue("Id", account)
