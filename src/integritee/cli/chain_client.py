"""Parentchain access for CLI commands, on top of py-substrate-interface.

Owns the connection (`ChainClient.connect`), account queries, signing and submitting
extrinsics with a watch until InBlock or Finalized (every terminal status of the transaction
pool ends the wait), decoding the events an extrinsic triggered, metadata, and following new
blocks with their events. Every failure surfaces as `CliError` with a one-line reason:
unreachable node, timeouts, rejected (invalid) transactions, failed dispatches.

substrate-interface is imported on first connect only, so commands that never talk to the
node (keystore commands, `--help`) start fast.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from integritee.cli.context import CliError
from integritee.codec.scale import encode_compact
from integritee.crypto import Keypair, blake2_256

log = logging.getLogger("integritee.cli")

WaitFor = Literal["none", "in_block", "finalized"]
DEFAULT_TIMEOUT = 60.0
# Statuses after which the pool will not include the transaction any more.
_FAILED_STATUSES = ("invalid", "dropped", "usurped", "finalityTimeout")


@dataclass(frozen=True)
class ChainEvent:
    """One decoded event record of `System.Events`."""

    pallet: str
    name: str
    attributes: Any
    phase: str
    extrinsic_idx: int | None = None

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> ChainEvent:
        phase = record.get("phase")
        idx = record.get("extrinsic_idx")
        if isinstance(phase, dict):  # older scalecodec shape: {"ApplyExtrinsic": idx}
            (phase, idx) = next(iter(phase.items()))
        phase_text = f"{phase}({idx})" if phase == "ApplyExtrinsic" else str(phase)
        return cls(
            pallet=str(record.get("module_id")),
            name=str(record.get("event_id")),
            attributes=record.get("attributes"),
            phase=phase_text,
            extrinsic_idx=idx if phase == "ApplyExtrinsic" else None,
        )

    @property
    def qualified_name(self) -> str:
        return f"{self.pallet}.{self.name}"


@dataclass(frozen=True)
class BlockRef:
    number: int
    hash: str
    parent_hash: str


@dataclass
class ExtrinsicResult:
    """The outcome of a submitted extrinsic; `block_hash` is None when not waited for."""

    extrinsic_hash: str
    status: str
    block_hash: str | None = None
    events: list[ChainEvent] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return not any(e.qualified_name == "System.ExtrinsicFailed" for e in self.events)


def header_hash(header: dict[str, Any]) -> str:
    """The block hash of a JSON-RPC header: blake2_256 of its SCALE encoding."""
    try:
        number = header["number"]
        num = int(number, 16) if isinstance(number, str) else int(number)
        logs = header.get("digest", {}).get("logs", [])
        encoded = b"".join(
            [
                bytes.fromhex(header["parentHash"][2:]),
                encode_compact(num),
                bytes.fromhex(header["stateRoot"][2:]),
                bytes.fromhex(header["extrinsicsRoot"][2:]),
                encode_compact(len(logs)),
                *(bytes.fromhex(item[2:]) for item in logs),
            ]
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CliError(f"node sent a malformed block header: {e!r}") from None
    return "0x" + blake2_256(encoded).hex()


def describe_dispatch_error(error: Any, metadata: Any = None) -> str:
    """`Pallet.Error` for module errors (looked up in the metadata), else the variant path."""
    if isinstance(error, dict) and "Module" in error:
        module = error["Module"]
        if isinstance(module, dict):
            pallet_index, error_index = module.get("index"), module.get("error")
        else:
            pallet_index, error_index = module[0], module[1]
        if isinstance(error_index, str):  # [u8; 4] since Substrate 0.9.25: first byte counts
            error_index = int(error_index[2:4], 16)
        if metadata is not None:
            with contextlib.suppress(Exception):
                pallet = next(p for p in metadata.pallets if p.value["index"] == pallet_index)
                err = metadata.get_module_error(pallet_index, error_index)
                return f"{pallet.name}.{err.name}"
        return f"Module(pallet {pallet_index}, error {error_index})"
    if isinstance(error, dict):
        return ".".join(f"{k}.{describe_dispatch_error(v)}" for k, v in error.items())
    return str(error)


def _request_error_text(error: Any) -> str:
    arg = error.args[0] if getattr(error, "args", None) else error
    if isinstance(arg, dict):
        message = str(arg.get("message", "error"))
        data = arg.get("data")
        code = arg.get("code")
        text = f"{message}: {data}" if data else message
        return f"{text} (code {code})" if code is not None else text
    return str(arg)


@contextlib.contextmanager
def node_errors(url: str, action: str = "talking to", what: str = "request") -> Iterator[None]:
    """Turn substrate-interface / websocket / socket failures into one-line `CliError`s."""
    from substrateinterface.exceptions import SubstrateRequestException
    from websocket import WebSocketException, WebSocketTimeoutException

    try:
        yield
    except CliError:
        raise
    except SubstrateRequestException as e:
        raise CliError(f"the node at {url} rejected the {what}: {_request_error_text(e)}") from e
    except (WebSocketTimeoutException, TimeoutError) as e:
        raise CliError(f"timed out {action} the node at {url}") from e
    except (WebSocketException, OSError) as e:
        raise CliError(f"connection to the node at {url} failed: {e or type(e).__name__}") from e


@dataclass
class TypeNames:
    """Readable names for the types of a V14 portable registry (as decoded by scalecodec)."""

    types: list[dict[str, Any]]

    def name(self, type_id: int, depth: int = 0) -> str:
        if depth > 8 or not 0 <= type_id < len(self.types):
            return f"#{type_id}"
        ty = self.types[type_id]["type"]
        path, params = ty.get("path") or [], ty.get("params") or []
        args = [self.name(p["type"], depth + 1) for p in params if p.get("type") is not None]
        if path:
            return path[-1] + (f"<{', '.join(args)}>" if args else "")
        kind, body = next(iter(ty["def"].items()))
        if kind == "primitive":
            return str(body)
        if kind == "sequence":
            return f"Vec<{self.name(body['type'], depth + 1)}>"
        if kind == "array":
            return f"[{self.name(body['type'], depth + 1)}; {body['len']}]"
        if kind == "compact":
            return f"Compact<{self.name(body['type'], depth + 1)}>"
        if kind == "tuple":
            return "(" + ", ".join(self.name(t, depth + 1) for t in body) + ")"
        if kind == "composite":
            fields = body.get("fields") or []
            inner = ", ".join(self.name(f["type"], depth + 1) for f in fields)
            return f"({inner})" if len(fields) != 1 else inner
        return kind

    def variant_list(self, ref: Any) -> list[dict[str, Any]]:
        if not isinstance(ref, dict):
            return []
        type_id = ref.get("ty", ref.get("type"))
        if not isinstance(type_id, int) or not 0 <= type_id < len(self.types):
            return []
        definition = self.types[type_id]["type"]["def"]
        return list(definition.get("variant", {}).get("variants", []))

    def variants(self, ref: Any) -> list[str]:
        """`name(arg: Type, ..)` for each variant of a call, event or error enum."""
        out = []
        for v in self.variant_list(ref):
            args = ", ".join(
                f"{f.get('name') or '_'}: {f.get('typeName') or self.name(f['type'])}"
                for f in v.get("fields") or []
            )
            out.append(f"{v['name']}({args})")
        return out

    def storage(self, entry: dict[str, Any]) -> str:
        kind, body = next(iter(entry["type"].items()))
        if kind == "Map":
            hashers = ", ".join(body.get("hashers", []))
            return (
                f"{entry['name']}: {self.name(body['key'])} -> {self.name(body['value'])}"
                f" [{hashers}]"
            )
        return f"{entry['name']}: {self.name(body)}"


@cache
def _signer_class() -> type:
    from substrateinterface import Keypair as SiKeypair
    from substrateinterface import KeypairType

    class _Signer(SiKeypair):  # type: ignore[misc]
        """substrate-interface's Keypair, signing with the project's own key."""

        def __init__(self, pair: Keypair) -> None:
            crypto = KeypairType.SR25519 if pair.crypto == "sr25519" else KeypairType.ED25519
            super().__init__(public_key=pair.public_key, ss58_format=42, crypto_type=crypto)
            self._pair = pair

        def sign(self, data: Any) -> bytes:
            if hasattr(data, "data"):  # ScaleBytes
                raw = bytes(data.data)
            elif isinstance(data, str):
                raw = bytes.fromhex(data[2:]) if data.startswith("0x") else data.encode()
            else:
                raw = bytes(data)
            return self._pair.sign(raw)

    return _Signer


class ChainClient:
    """A connection to a parentchain node (use `connect`; close it, or use `with`)."""

    def __init__(self, substrate: Any, url: str) -> None:
        self.substrate = substrate
        self.url = url

    @classmethod
    def connect(cls, url: str, timeout: float = DEFAULT_TIMEOUT) -> ChainClient:
        log.debug("connecting to %s", url)
        with node_errors(url, "connecting to"):
            from substrateinterface import SubstrateInterface

            try:
                substrate = SubstrateInterface(url=url, ws_options={"timeout": timeout})
            except (OSError, ConnectionError) as e:
                raise CliError(f"cannot connect to the node at {url}: {e}") from e
            substrate.init_runtime()
        log.debug("connected to %s (%s)", url, substrate.runtime_version)
        return cls(substrate, url)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.substrate.close()

    def __enter__(self) -> ChainClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _errors(
        self, action: str = "talking to", what: str = "request"
    ) -> contextlib.AbstractContextManager[None]:
        return node_errors(self.url, action, what)

    # -- queries ----------------------------------------------------------------------------

    @property
    def ss58_format(self) -> int:
        return int(self.substrate.ss58_format or 42)

    def rpc(self, method: str, params: list[Any] | None = None, what: str = "request") -> Any:
        with self._errors(what=what):
            reply = self.substrate.rpc_request(method, params or [])
        if "error" in reply:
            raise CliError(f"{method} failed: {_request_error_text(reply['error'])}")
        return reply.get("result")

    def query(self, pallet: str, item: str, params: list[Any] | None = None) -> Any:
        with self._errors():
            return self.substrate.query(pallet, item, params or []).value

    def account_info(self, account_id: bytes) -> dict[str, Any]:
        info = self.query("System", "Account", ["0x" + account_id.hex()])
        if not isinstance(info, dict):
            raise CliError(f"node returned an unexpected System.Account value: {info!r:.200}")
        return info

    def free_balance(self, account_id: bytes) -> int:
        return int(self.account_info(account_id)["data"]["free"])

    def nonce(self, account_id: bytes) -> int:
        from integritee.crypto import ss58_encode

        return int(self.rpc("system_accountNextIndex", [ss58_encode(account_id, 42)]))

    def events(self, block_hash: str | None = None) -> list[ChainEvent]:
        with self._errors():
            records = self.substrate.get_events(block_hash)
        return [ChainEvent.from_record(r.value) for r in records]

    # -- extrinsics -------------------------------------------------------------------------

    def compose_call(self, pallet: str, function: str, params: dict[str, Any]) -> Any:
        with self._errors():
            try:
                return self.substrate.compose_call(pallet, function, params)
            except ValueError as e:
                raise CliError(f"cannot compose {pallet}.{function}: {e}") from None

    def sign(self, call: Any, signer: Keypair, nonce: int | None = None) -> Any:
        if nonce is None:
            nonce = self.nonce(signer.public_key)
        with self._errors():
            return self.substrate.create_signed_extrinsic(
                call, _signer_class()(signer), nonce=nonce
            )

    def submit(self, extrinsic: Any, wait: WaitFor = "in_block") -> ExtrinsicResult:
        """Submit a signed extrinsic; with a wait, also fetch the events it triggered."""
        data = str(extrinsic.data)
        xt_hash = "0x" + blake2_256(bytes.fromhex(data[2:])).hex()
        if wait == "none":
            self.rpc("author_submitExtrinsic", [data], what="transaction")
            log.info("extrinsic %s submitted", xt_hash)
            return ExtrinsicResult(xt_hash, "ready")
        final: dict[str, Any] = {}

        def on_status(message: dict[str, Any], _nr: int, sub_id: Any) -> Any:
            if final:  # substrate-interface keeps feeding notifications queued meanwhile
                return final
            status = message["params"]["result"]
            name, value = next(iter(status.items())) if isinstance(status, dict) else (status, None)
            log.debug("extrinsic %s: %s", xt_hash, status)
            if name in _FAILED_STATUSES:
                final.update(status=name, block=value)
                return final
            if name == "finalized" or (name == "inBlock" and wait == "in_block"):
                if name != "finalized":
                    with contextlib.suppress(Exception):
                        self.substrate.rpc_request("author_unwatchExtrinsic", [sub_id])
                final.update(status=name, block=value)
                return final
            return None

        with self._errors("waiting for an extrinsic on", "transaction"):
            self.substrate.rpc_request(
                "author_submitAndWatchExtrinsic", [data], result_handler=on_status
            )
        status, block_hash = final["status"], final.get("block")
        if status in _FAILED_STATUSES:
            raise CliError(f"extrinsic {xt_hash} was not included: transaction {status}")
        if not isinstance(block_hash, str):
            raise CliError(f"node reported extrinsic {xt_hash} {status} without a block hash")
        result = ExtrinsicResult(
            xt_hash, status, block_hash, self.extrinsic_events(block_hash, xt_hash)
        )
        log.info("extrinsic %s is %s in block %s", xt_hash, status, block_hash)
        return result

    def extrinsic_events(self, block_hash: str, xt_hash: str) -> list[ChainEvent]:
        block = self.rpc("chain_getBlock", [block_hash])
        try:
            extrinsics = block["block"]["extrinsics"]
            hashes = ["0x" + blake2_256(bytes.fromhex(x[2:])).hex() for x in extrinsics]
        except (KeyError, TypeError, ValueError) as e:
            raise CliError(f"node sent a malformed block {block_hash}: {e!r}") from None
        if xt_hash not in hashes:
            raise CliError(f"extrinsic {xt_hash} is not in block {block_hash}")
        idx = hashes.index(xt_hash)
        return [e for e in self.events(block_hash) if e.extrinsic_idx == idx]

    def submit_call(
        self,
        call: Any,
        signer: Keypair,
        wait: WaitFor = "in_block",
        nonce: int | None = None,
        check_success: bool = True,
    ) -> ExtrinsicResult:
        """Sign and submit `call`; a failed dispatch raises `CliError` unless told not to."""
        result = self.submit(self.sign(call, signer, nonce), wait)
        if check_success and not result.success:
            failed = next(e for e in result.events if e.qualified_name == "System.ExtrinsicFailed")
            attrs = failed.attributes if isinstance(failed.attributes, dict) else {}
            reason = describe_dispatch_error(attrs.get("dispatch_error"), self.substrate.metadata)
            raise CliError(
                f"extrinsic {result.extrinsic_hash} failed in block {result.block_hash}: {reason}"
            )
        return result

    # -- metadata ---------------------------------------------------------------------------

    def metadata_value(self) -> Any:
        return self.substrate.metadata.value

    def metadata_summary(self) -> dict[str, Any]:
        """Pallets with their index, calls, events, storage items, constants and errors."""
        v14 = self.metadata_value()[1]["V14"]
        names = TypeNames(v14["types"]["types"])
        summary: dict[str, Any] = {}
        for pallet in v14["pallets"]:
            constants: dict[str, Any] = {}
            for const in pallet.get("constants") or []:
                try:
                    value = self.substrate.get_constant(pallet["name"], const["name"]).value
                except Exception:  # undecodable: show what the metadata holds
                    value = const.get("value")
                constants[const["name"]] = value
            summary[pallet["name"]] = {
                "index": pallet["index"],
                "calls": names.variants(pallet.get("calls")),
                "events": names.variants(pallet.get("event")),
                "storage": [
                    names.storage(e) for e in (pallet.get("storage") or {}).get("entries", [])
                ],
                "constants": constants,
                "errors": [v["name"] for v in names.variant_list(pallet.get("error"))],
            }
        return summary

    # -- following the chain ----------------------------------------------------------------

    def follow_blocks(self, on_block: Callable[[BlockRef, list[ChainEvent]], bool]) -> None:
        """Call `on_block` for each new best block with its events until it returns True."""

        stopped: dict[str, int] = {}

        def on_header(message: dict[str, Any], _nr: int, sub_id: Any) -> Any:
            if stopped:  # substrate-interface keeps feeding notifications queued meanwhile
                return stopped
            header = message["params"]["result"]
            block_hash = header_hash(header)
            number = header["number"]
            ref = BlockRef(
                number=int(number, 16) if isinstance(number, str) else int(number),
                hash=block_hash,
                parent_hash=str(header.get("parentHash")),
            )
            if on_block(ref, self.events(block_hash)):
                with contextlib.suppress(Exception):
                    self.substrate.rpc_request("chain_unsubscribeNewHeads", [sub_id])
                stopped["at"] = ref.number
                return stopped
            return None

        with self._errors("waiting for blocks from"):
            self.substrate.rpc_request("chain_subscribeNewHeads", [], result_handler=on_header)
