"""The enclave's parentchain light client: what the enclave believes about the parentchain.

Owns `ParentchainBlockInput` (one block as the untrusted service hands it over: SCALE header,
raw extrinsics, optional GRANDPA justification, read proof of `System.Events`), its JSON and
SCALE forms, and `LightClient`, which imports such blocks only after checking them:

- ancestry: parent hash = hash of the last imported block, number = last + 1;
- body: `ordered_trie_root(extrinsics, state_version=0)` = the header's extrinsics root;
- events: the value of `System.Events` comes only from a strict read proof against the header's
  state root, decoded with the runtime metadata proven at genesis (`:code`);
- finality: a block carrying a GRANDPA justification must be signed by more than 2/3 of the
  current authority set (by count and by weight). A block without one is only accepted as an
  ancestor of a justified block of the SAME batch: a batch's blocks are imported up to its last
  justified block, and an unjustified tail is rejected (`UnjustifiedBlocks`) and not imported;
- authority set changes: GRANDPA's `ScheduledChange` consensus digest (engine "FRNK",
  `ConsensusLog` variant 1) signalled in block N with delay D is enacted by block N + D, which
  must itself carry a justification of the old set; afterwards the new set signs, set id + 1.
  Forced changes are refused (they need a trusted party's decision a light client cannot make).
  Runtime upgrades (a `RuntimeEnvironmentUpdated` digest) are refused too: the metadata proven
  at genesis decodes the chain's events and calls, and a stale one could misread them silently.

Imported blocks are final, so the client keeps one chain: the last header, the authority set,
and the state roots of the last `RECENT_BLOCKS` blocks, against which `verify_storage` checks read
proofs (e.g. `EnclaveBridge.ShardStatus`). A rejected block leaves the client exactly as after the
batch's last justified block before it (a rejected first block: unchanged); the exception names
the block and carries the blocks that were imported (`.imported`).

`to_bytes`/`from_bytes` (versioned SCALE) serialize the client; `save`/`load` seal it to a file
atomically, so a caller that saves after each batch loses at most one batch on a crash.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.metadata_decode import MetadataError, RuntimeMetadata, decode_metadata_v14
from integritee.codec.scale import (
    H256,
    Bytes,
    EnumValue,
    FixedBytes,
    Option,
    ScaleDecodeError,
    ScaleEncodeError,
    Struct,
    Tuple,
    Vec,
    u8,
    u32,
    u64,
)
from integritee.crypto import sealing
from integritee.crypto.hashing import blake2_256, storage_prefix
from integritee.parentchain.extrinsic import Extrinsic, ExtrinsicFormatError, decode_extrinsic
from integritee.parentchain.finality import GRANDPA_ENGINE, FinalityError, verify_justification
from integritee.parentchain.primitives import Header, HeaderCodec
from integritee.trie import InvalidProof, TrieError, ordered_trie_root, verify_proof

CODE_KEY = b":code"
GRANDPA_AUTHORITIES_KEY = storage_prefix("Grandpa", "Authorities")
GRANDPA_SET_ID_KEY = storage_prefix("Grandpa", "CurrentSetId")
GENESIS_KEYS = (CODE_KEY, GRANDPA_AUTHORITIES_KEY, GRANDPA_SET_ID_KEY)
EVENTS_KEY = storage_prefix("System", "Events")

RECENT_BLOCKS = 256
SEAL_LABEL = "parentchain-light-client"
STATE_VERSION = 1
MAX_AUTHORITIES = 10_000

AuthorityList = Vec(Tuple(FixedBytes(32), u64))
ScheduledChangeCodec = Struct(
    "sp_consensus_grandpa::ScheduledChange",
    [("next_authorities", AuthorityList), ("delay", u32)],
)
SCHEDULED_CHANGE = 1
FORCED_CHANGE = 2


# ---------------------------------------------------------------------------------------------
# Errors


class LightClientError(Exception):
    """A rejected input. `block_number`/`index` locate the offending block of a batch (when there
    is one); `imported` lists the blocks of the batch that were imported before it."""

    def __init__(
        self, message: str, *, block_number: int | None = None, index: int | None = None
    ) -> None:
        super().__init__(message)
        self.block_number = block_number
        self.index = index
        self.imported: list[VerifiedBlock] = []


class BlockInputError(LightClientError):
    """Malformed boundary data (JSON, hex, SCALE) for a block."""


class InitializationError(LightClientError):
    """The genesis header or its state proof is unusable."""


class AncestryError(LightClientError):
    """The block does not extend the last imported block (parent hash or number)."""


class ExtrinsicsRootMismatch(LightClientError):
    """The extrinsics do not match the header's extrinsics root."""


class EventsProofError(LightClientError):
    """The read proof of System.Events does not check against the header's state root."""


class BlockDecodeError(LightClientError):
    """Verified block data (extrinsics, events) that the runtime metadata cannot decode."""


class JustificationError(LightClientError):
    """A GRANDPA justification that does not prove finality against the current set."""


class UnjustifiedBlocks(LightClientError):
    """The batch ends with blocks no justification of the batch finalizes (not imported)."""


class AuthoritySetChangeError(LightClientError):
    """A GRANDPA authority set change the client cannot follow."""


class RuntimeUpgradeError(LightClientError):
    """A runtime upgrade: the metadata proven at genesis would no longer decode the chain."""


class UnknownBlock(LightClientError):
    """verify_storage for a block that is not among the recently imported ones."""


class StorageProofError(LightClientError):
    """A storage read proof that does not check against the block's state root."""


class LightClientStateError(LightClientError):
    """Persisted light-client state that cannot be restored."""


class LightClientStateMissing(LightClientStateError):
    """No persisted light-client state at the given path (initialize a new client)."""


# ---------------------------------------------------------------------------------------------
# Boundary type: one parentchain block as the untrusted side delivers it

_MAX_JSON_ITEMS = 1 << 20


def _hex_field(obj: dict[str, Any], name: str) -> bytes:
    value = obj.get(name)
    if not isinstance(value, str):
        raise BlockInputError(f"block input: {name!r} must be a hex string")
    try:
        return from_hex(value)
    except ValueError as e:
        raise BlockInputError(f"block input: {name!r}: {e}") from None


def _hex_list(obj: dict[str, Any], name: str) -> list[bytes]:
    value = obj.get(name)
    if not isinstance(value, list):
        raise BlockInputError(f"block input: {name!r} must be a list of hex strings")
    if len(value) > _MAX_JSON_ITEMS:
        raise BlockInputError(f"block input: {name!r} has more than {_MAX_JSON_ITEMS} items")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise BlockInputError(f"block input: {name}[{i}] must be a hex string")
        try:
            out.append(from_hex(item))
        except ValueError as e:
            raise BlockInputError(f"block input: {name}[{i}]: {e}") from None
    return out


@dataclass(frozen=True)
class ParentchainBlockInput:
    """One parentchain block for the light client; nothing in it is trusted."""

    header: bytes  # SCALE-encoded header
    extrinsics: list[bytes]  # raw extrinsics (with their compact length prefix)
    justification: bytes | None  # SCALE GrandpaJustification (engine FRNK), if the block has one
    events_proof: list[bytes]  # trie nodes of state_getReadProof([System.Events], block)

    def to_json(self) -> dict[str, Any]:
        return {
            "header": to_hex(self.header),
            "extrinsics": [to_hex(x) for x in self.extrinsics],
            "justification": None if self.justification is None else to_hex(self.justification),
            "eventsProof": [to_hex(n) for n in self.events_proof],
        }

    @classmethod
    def from_json(cls, obj: Any) -> ParentchainBlockInput:
        if not isinstance(obj, dict):
            raise BlockInputError("block input must be a JSON object")
        unknown = set(obj) - {"header", "extrinsics", "justification", "eventsProof"}
        if unknown:
            raise BlockInputError(f"block input: unknown field(s) {sorted(unknown)}")
        justification = None
        if obj.get("justification") is not None:
            justification = _hex_field(obj, "justification")
        return cls(
            header=_hex_field(obj, "header"),
            extrinsics=_hex_list(obj, "extrinsics"),
            justification=justification,
            events_proof=_hex_list(obj, "eventsProof"),
        )

    def encode(self) -> bytes:
        return ParentchainBlockInputCodec.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> ParentchainBlockInput:
        try:
            value: ParentchainBlockInput = ParentchainBlockInputCodec.decode(data)
        except ScaleDecodeError as e:
            raise BlockInputError(f"block input: {e}") from None
        return value


def _block_input(**fields: Any) -> ParentchainBlockInput:
    return ParentchainBlockInput(**fields)


ParentchainBlockInputCodec = Struct(
    "integritee::ParentchainBlockInput",
    [
        ("header", Bytes),
        ("extrinsics", Vec(Bytes)),
        ("justification", Option(Bytes)),
        ("events_proof", Vec(Bytes)),
    ],
    cls=_block_input,
)
BlockBatchCodec = Vec(ParentchainBlockInputCodec)


def encode_block_batch(blocks: list[ParentchainBlockInput]) -> bytes:
    """SCALE Vec<ParentchainBlockInput>: the compact form for the ecall boundary."""
    return BlockBatchCodec.encode(blocks)


def decode_block_batch(data: bytes) -> list[ParentchainBlockInput]:
    try:
        blocks: list[ParentchainBlockInput] = BlockBatchCodec.decode(data)
    except ScaleDecodeError as e:
        raise BlockInputError(f"block batch: {e}") from None
    return blocks


def block_batch_to_json(blocks: list[ParentchainBlockInput]) -> str:
    return json.dumps([b.to_json() for b in blocks], separators=(",", ":"))


def block_batch_from_json(text: str | bytes) -> list[ParentchainBlockInput]:
    try:
        items = json.loads(text)
    except ValueError as e:
        raise BlockInputError(f"block batch: invalid JSON: {e}") from None
    if not isinstance(items, list):
        raise BlockInputError("block batch must be a JSON list")
    return [ParentchainBlockInput.from_json(item) for item in items]


# ---------------------------------------------------------------------------------------------
# Verified output


@dataclass
class VerifiedBlock:
    """A block the light client imported (it is final), with its decoded contents."""

    header: Header
    hash: bytes
    number: int
    extrinsics: list[Extrinsic]  # decoded; `.raw` holds the bytes
    events: list[Any]  # decoded frame_system::EventRecord dicts: phase, event, topics
    success: list[bool]  # per extrinsic index, from ExtrinsicSuccess / ExtrinsicFailed
    justified: bool = False  # carried its own justification (otherwise finalized by a descendant)
    storage: dict[bytes, bytes | None] = field(default_factory=dict)  # proven watch-key values

    def events_of(self, pallet: str, event: str) -> list[tuple[int | None, Any]]:
        """(extrinsic index or None, event fields) of every `pallet.event` in this block."""
        out = []
        for record in self.events:
            outer = record["event"]
            if outer.name == pallet and outer.value.name == event:
                phase = record["phase"]
                index = phase.value if phase.name == "ApplyExtrinsic" else None
                out.append((index, outer.value.value))
        return out


@dataclass(frozen=True)
class PendingChange:
    """A scheduled authority set change: enacted when block `enact_at` is finalized."""

    signaled_at: int
    enact_at: int
    next_authorities: list[tuple[bytes, int]]


_Authorities = list[tuple[bytes, int]]


@dataclass
class _Cursor:
    """The verification position while a batch is processed (committed at justified blocks)."""

    last_header: Header
    last_hash: bytes
    authorities: _Authorities
    set_id: int
    pending: PendingChange | None


# ---------------------------------------------------------------------------------------------
# Persisted form

_PendingChangeCodec = Struct(
    "PendingChange",
    [("signaled_at", u32), ("enact_at", u32), ("next_authorities", AuthorityList)],
)
_StateCodec = Struct(
    "LightClientState",
    [
        ("version", u8),
        ("genesis_hash", H256),
        ("last_header", HeaderCodec),
        ("authorities", AuthorityList),
        ("set_id", u64),
        ("pending_change", Option(_PendingChangeCodec)),
        ("metadata", Bytes),
        ("recent", Vec(Tuple(H256, u32, H256))),  # (hash, number, state root), oldest first
    ],
)


# ---------------------------------------------------------------------------------------------
# The light client


def _decode_authorities(raw: bytes, what: str) -> _Authorities:
    try:
        authorities = [(bytes(k), w) for k, w in AuthorityList.decode(raw)]
    except ScaleDecodeError as e:
        raise AuthoritySetChangeError(f"{what}: malformed authority list: {e}") from None
    _check_authorities(authorities, what)
    return authorities


def _check_authorities(authorities: _Authorities, what: str) -> None:
    if not authorities:
        raise AuthoritySetChangeError(f"{what}: the authority set is empty")
    if len(authorities) > MAX_AUTHORITIES:
        raise AuthoritySetChangeError(f"{what}: more than {MAX_AUTHORITIES} authorities")
    if len({k for k, _ in authorities}) != len(authorities):
        raise AuthoritySetChangeError(f"{what}: duplicate authority in the set")
    if any(w == 0 for _, w in authorities):
        raise AuthoritySetChangeError(f"{what}: an authority has weight 0")


def _decode_header(raw: bytes, what: str, **loc: Any) -> Header:
    try:
        header: Header = HeaderCodec.decode(raw)
    except ScaleDecodeError as e:
        raise BlockInputError(f"{what}: malformed header: {e}", **loc) from None
    return header


def _scheduled_change(header: Header, **loc: Any) -> PendingChange | None:
    """The GRANDPA ScheduledChange signalled in the header's digest, if any."""
    found: PendingChange | None = None
    for item in header.digest:
        if item.name != "Consensus":
            continue
        engine, data = item.value
        if engine != GRANDPA_ENGINE or not data:
            continue
        kind = data[0]
        if kind == FORCED_CHANGE:
            raise AuthoritySetChangeError(
                f"block #{header.number} signals a forced authority set change, which a light "
                "client cannot follow",
                **loc,
            )
        if kind != SCHEDULED_CHANGE:
            continue  # OnDisabled, Pause, Resume: they do not change who signs justifications
        try:
            change = ScheduledChangeCodec.decode(data[1:])
        except ScaleDecodeError as e:
            raise AuthoritySetChangeError(
                f"block #{header.number}: malformed ScheduledChange: {e}", **loc
            ) from None
        if found is not None:
            raise AuthoritySetChangeError(
                f"block #{header.number} signals more than one authority set change", **loc
            )
        next_authorities = [(bytes(k), w) for k, w in change["next_authorities"]]
        try:
            _check_authorities(next_authorities, f"block #{header.number} ScheduledChange")
        except AuthoritySetChangeError as e:
            raise AuthoritySetChangeError(str(e), **loc) from None
        enact_at = header.number + change["delay"]
        if enact_at > 0xFFFFFFFF:
            raise AuthoritySetChangeError(
                f"block #{header.number}: ScheduledChange delay beyond the u32 block numbers",
                **loc,
            )
        found = PendingChange(header.number, enact_at, next_authorities)
    return found


class LightClient:
    """GRANDPA light client of the parentchain (see the module docstring for the rules)."""

    def __init__(
        self,
        *,
        genesis_hash: bytes,
        last_header: Header,
        authorities: _Authorities,
        set_id: int,
        metadata_bytes: bytes,
        recent: OrderedDict[bytes, tuple[int, bytes]],
        pending_change: PendingChange | None = None,
    ) -> None:
        self._genesis_hash = genesis_hash
        self._last_header = last_header
        self._last_hash = last_header.hash()
        self._authorities = list(authorities)
        self._set_id = set_id
        self._pending = pending_change
        self._metadata_bytes = metadata_bytes
        self._metadata_hash = blake2_256(metadata_bytes)
        self._metadata: RuntimeMetadata | None = None
        self._recent = recent

    # --- construction

    @classmethod
    def initialize(
        cls,
        genesis_header: bytes,
        state_proof: list[bytes],
        *,
        expected_genesis_hash: bytes | None = None,
    ) -> LightClient:
        """A client at genesis; the proof must prove exactly `:code`, `Grandpa.Authorities` and
        `Grandpa.CurrentSetId` against the genesis state root. The genesis header itself is
        trusted (pin it with `expected_genesis_hash` where the chain is known)."""
        header = _decode_header(genesis_header, "genesis")
        if header.number != 0 or header.parent_hash != bytes(32):
            raise InitializationError(
                f"not a genesis header: number {header.number}, parent 0x{header.parent_hash.hex()}"
            )
        genesis_hash = header.hash()
        if expected_genesis_hash is not None and genesis_hash != expected_genesis_hash:
            raise InitializationError(
                f"genesis hash 0x{genesis_hash.hex()} is not the expected "
                f"0x{expected_genesis_hash.hex()}"
            )
        try:
            values = verify_proof(header.state_root, state_proof, GENESIS_KEYS)
        except (InvalidProof, TrieError) as e:
            raise InitializationError(f"genesis state proof: {e}") from None
        code = values[CODE_KEY]
        if not code:
            raise InitializationError("genesis state has no :code (runtime metadata)")
        if code[:4] != b"meta":
            raise InitializationError(":code of the genesis state is not runtime metadata")
        raw_authorities = values[GRANDPA_AUTHORITIES_KEY]
        if raw_authorities is None:
            raise InitializationError("genesis state has no Grandpa.Authorities")
        try:
            authorities = _decode_authorities(raw_authorities, "genesis Grandpa.Authorities")
        except AuthoritySetChangeError as e:
            raise InitializationError(str(e)) from None
        raw_set_id = values[GRANDPA_SET_ID_KEY]
        try:
            set_id = 0 if raw_set_id is None else u64.decode(raw_set_id)  # ValueQuery default 0
        except ScaleDecodeError as e:
            raise InitializationError(f"genesis Grandpa.CurrentSetId: {e}") from None
        recent: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        recent[genesis_hash] = (0, header.state_root)
        return cls(
            genesis_hash=genesis_hash,
            last_header=header,
            authorities=authorities,
            set_id=set_id,
            metadata_bytes=bytes(code),
            recent=recent,
        )

    # --- what the client knows

    @property
    def genesis_hash(self) -> bytes:
        return self._genesis_hash

    @property
    def last_header(self) -> Header:
        """The last imported (finalized) header."""
        return self._last_header

    @property
    def last_hash(self) -> bytes:
        return self._last_hash

    @property
    def last_number(self) -> int:
        return self._last_header.number

    @property
    def authorities(self) -> list[tuple[bytes, int]]:
        """The current GRANDPA authority set: (ed25519 public key, weight)."""
        return list(self._authorities)

    @property
    def set_id(self) -> int:
        return self._set_id

    @property
    def pending_change(self) -> PendingChange | None:
        return self._pending

    @property
    def metadata_bytes(self) -> bytes:
        return self._metadata_bytes

    @property
    def metadata_hash(self) -> bytes:
        """blake2_256 of the runtime metadata (the genesis :code)."""
        return self._metadata_hash

    @property
    def metadata(self) -> RuntimeMetadata:
        """The runtime metadata, decoded on first use (its codecs are cached with it)."""
        if self._metadata is None:
            try:
                self._metadata = decode_metadata_v14(self._metadata_bytes)
            except (MetadataError, ScaleDecodeError) as e:
                raise BlockDecodeError(f"the runtime metadata cannot be decoded: {e}") from None
        return self._metadata

    def recent_blocks(self) -> list[tuple[bytes, int]]:
        """(hash, number) of the blocks verify_storage accepts, oldest first."""
        return [(h, n) for h, (n, _root) in self._recent.items()]

    def number_of(self, block_hash: bytes) -> int | None:
        """The number of a recent imported block (None when not among them)."""
        entry = self._recent.get(bytes(block_hash))
        return None if entry is None else entry[0]

    def state_root(self, block_hash: bytes) -> bytes:
        entry = self._recent.get(bytes(block_hash))
        if entry is None:
            raise UnknownBlock(
                f"block 0x{bytes(block_hash).hex()} is not among the last {len(self._recent)} "
                "imported blocks"
            )
        return entry[1]

    # --- import

    def import_blocks(
        self, blocks: list[ParentchainBlockInput], watch_keys: Sequence[bytes] = ()
    ) -> list[VerifiedBlock]:
        """Verify and import `blocks` (consecutive, oldest first); returns them decoded.

        Each block's read proof must prove `System.Events` and exactly the `watch_keys`; their
        values come with the verified block (`VerifiedBlock.storage`).

        Blocks are committed at each justified block; an error stops the batch (nothing from
        the offending block on is imported) and carries the committed blocks in `.imported`.
        """
        cursor = _Cursor(
            self._last_header, self._last_hash, self._authorities, self._set_id, self._pending
        )
        imported: list[VerifiedBlock] = []
        tentative: list[VerifiedBlock] = []
        try:
            for index, block in enumerate(blocks):
                verified = self._verify_block(block, cursor, index, watch_keys)
                tentative.append(verified)
                if verified.justified:
                    self._commit(cursor, tentative)
                    imported.extend(tentative)
                    tentative = []
            if tentative:
                first, last = tentative[0].number, tentative[-1].number
                raise UnjustifiedBlocks(
                    f"blocks #{first}..#{last} are not finalized by a justification in the "
                    "batch (a batch must end with a justified block); they were not imported",
                    block_number=first,
                    index=len(blocks) - len(tentative),
                )
        except LightClientError as e:
            e.imported = imported
            raise
        return imported

    def _verify_block(
        self,
        block: ParentchainBlockInput,
        cursor: _Cursor,
        index: int,
        watch_keys: Sequence[bytes] = (),
    ) -> VerifiedBlock:
        if not isinstance(block, ParentchainBlockInput):
            raise BlockInputError(f"batch item {index} is not a ParentchainBlockInput", index=index)
        header = _decode_header(block.header, f"batch item {index}", index=index)
        n = header.number
        loc: dict[str, Any] = {"block_number": n, "index": index}
        expected = cursor.last_header.number + 1
        if n != expected:
            raise AncestryError(
                f"block #{n} does not follow the last imported block #{expected - 1}: "
                f"expected #{expected}",
                **loc,
            )
        if header.parent_hash != cursor.last_hash:
            raise AncestryError(
                f"block #{n}: parent hash 0x{header.parent_hash.hex()} is not the hash of the "
                f"last imported block #{expected - 1} 0x{cursor.last_hash.hex()}",
                **loc,
            )
        block_hash = blake2_256(block.header)

        root = ordered_trie_root(block.extrinsics, state_version=0)
        if root != header.extrinsics_root:
            raise ExtrinsicsRootMismatch(
                f"block #{n}: the {len(block.extrinsics)} extrinsics have root 0x{root.hex()}, "
                f"the header says 0x{header.extrinsics_root.hex()}",
                **loc,
            )

        if any(item.name == "RuntimeEnvironmentUpdated" for item in header.digest):
            # Decoding later events with the genesis metadata could silently misread them.
            raise RuntimeUpgradeError(
                f"block #{n} upgrades the runtime; following runtime upgrades is not supported",
                **loc,
            )
        change = _scheduled_change(header, **loc)
        if change is not None:
            if cursor.pending is not None:
                raise AuthoritySetChangeError(
                    f"block #{n} signals an authority set change while the one signalled in "
                    f"#{cursor.pending.signaled_at} is pending",
                    **loc,
                )
            cursor.pending = change

        justified = block.justification is not None
        if justified:
            self._check_justification(block.justification, block_hash, n, cursor, loc)
        elif cursor.pending is not None and cursor.pending.enact_at == n:
            raise JustificationError(
                f"block #{n} enacts the authority set change signalled in "
                f"#{cursor.pending.signaled_at} and must carry a justification",
                **loc,
            )

        try:
            values = verify_proof(header.state_root, block.events_proof, [EVENTS_KEY, *watch_keys])
        except (InvalidProof, TrieError) as e:
            raise EventsProofError(f"block #{n}: System.Events proof: {e}", **loc) from None
        storage = {bytes(k): values[bytes(k)] for k in watch_keys}
        metadata = self.metadata
        raw_events = values[EVENTS_KEY]
        try:
            events = [] if raw_events is None else metadata.events_codec.decode(raw_events)
        except (ScaleDecodeError, MetadataError) as e:
            raise BlockDecodeError(f"block #{n}: events do not decode: {e}", **loc) from None
        extrinsics = []
        call_codec = metadata.call_codec
        for i, raw in enumerate(block.extrinsics):
            try:
                extrinsics.append(decode_extrinsic(raw, call_codec))
            except ExtrinsicFormatError as e:
                raise BlockDecodeError(
                    f"block #{n}: extrinsic {i} does not decode: {e}", **loc
                ) from None
        success = _success_flags(events, len(extrinsics), n, loc)

        if justified and cursor.pending is not None and cursor.pending.enact_at == n:
            cursor.authorities = cursor.pending.next_authorities
            cursor.set_id += 1
            cursor.pending = None
        cursor.last_header = header
        cursor.last_hash = block_hash
        return VerifiedBlock(header, block_hash, n, extrinsics, events, success, justified, storage)

    def _check_justification(
        self,
        justification: bytes | None,
        block_hash: bytes,
        number: int,
        cursor: _Cursor,
        loc: dict[str, Any],
    ) -> None:
        assert justification is not None
        authorities = cursor.authorities
        try:
            verified = verify_justification(
                justification, block_hash, number, [k for k, _ in authorities], cursor.set_id
            )
        except FinalityError as e:
            raise JustificationError(
                f"block #{number}: justification rejected (set id {cursor.set_id}, "
                f"{len(authorities)} authorities): {e}",
                **loc,
            ) from None
        weights = dict(authorities)
        signed = sum(weights[k] for k in verified.signers)
        total = sum(weights.values())
        if signed * 3 <= total * 2:
            raise JustificationError(
                f"block #{number}: signers hold weight {signed} of {total}: more than 2/3 needed",
                **loc,
            )

    def _commit(self, cursor: _Cursor, blocks: list[VerifiedBlock]) -> None:
        self._last_header = cursor.last_header
        self._last_hash = cursor.last_hash
        self._authorities = list(cursor.authorities)
        self._set_id = cursor.set_id
        self._pending = cursor.pending
        for b in blocks:
            self._recent[b.hash] = (b.number, b.header.state_root)
        while len(self._recent) > RECENT_BLOCKS:
            self._recent.popitem(last=False)

    # --- storage reads

    def verify_storage(
        self, block_hash: bytes, keys: list[bytes], proof: list[bytes]
    ) -> dict[bytes, bytes | None]:
        """Values (None: absent) of exactly `keys` in the state of a recently imported block."""
        root = self.state_root(block_hash)
        try:
            return verify_proof(root, proof, keys)
        except (InvalidProof, TrieError) as e:
            raise StorageProofError(
                f"storage proof at block 0x{bytes(block_hash).hex()}: {e}"
            ) from None

    # --- persistence

    def to_bytes(self) -> bytes:
        pending = self._pending
        return _StateCodec.encode(
            {
                "version": STATE_VERSION,
                "genesis_hash": self._genesis_hash,
                "last_header": self._last_header,
                "authorities": self._authorities,
                "set_id": self._set_id,
                "pending_change": None
                if pending is None
                else {
                    "signaled_at": pending.signaled_at,
                    "enact_at": pending.enact_at,
                    "next_authorities": pending.next_authorities,
                },
                "metadata": self._metadata_bytes,
                "recent": [(h, n, root) for h, (n, root) in self._recent.items()],
            }
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> LightClient:
        if not data:
            raise LightClientStateError("light-client state is empty")
        if data[0] != STATE_VERSION:
            raise LightClientStateError(f"light-client state has unknown version {data[0]}")
        try:
            s = _StateCodec.decode(data)
        except ScaleDecodeError as e:
            raise LightClientStateError(f"light-client state: {e}") from None
        header: Header = s["last_header"]
        recent: OrderedDict[bytes, tuple[int, bytes]] = OrderedDict()
        for h, n, root in s["recent"]:
            recent[h] = (n, root)
        if not recent or len(recent) != len(s["recent"]):
            raise LightClientStateError("light-client state: recent blocks empty or duplicated")
        last_hash, (last_n, last_root) = next(reversed(recent.items()))
        if last_hash != header.hash() or last_n != header.number or last_root != header.state_root:
            raise LightClientStateError(
                "light-client state: the last header is not the newest recent block"
            )
        try:
            authorities = [(bytes(k), w) for k, w in s["authorities"]]
            _check_authorities(authorities, "light-client state")
            pending = None
            if s["pending_change"] is not None:
                p = s["pending_change"]
                next_authorities = [(bytes(k), w) for k, w in p["next_authorities"]]
                _check_authorities(next_authorities, "light-client state pending change")
                pending = PendingChange(p["signaled_at"], p["enact_at"], next_authorities)
        except AuthoritySetChangeError as e:
            raise LightClientStateError(str(e)) from None
        if s["metadata"][:4] != b"meta":
            raise LightClientStateError("light-client state: metadata is not runtime metadata")
        return cls(
            genesis_hash=s["genesis_hash"],
            last_header=header,
            authorities=authorities,
            set_id=s["set_id"],
            metadata_bytes=s["metadata"],
            recent=recent,
            pending_change=pending,
        )

    def save(self, path: Path | str, provider: sealing.SealingKeyProvider) -> None:
        """Seal the state to `path` atomically (old or new file after a crash, never partial)."""
        try:
            sealing.seal_to_file(provider, path, self.to_bytes(), SEAL_LABEL)
        except (sealing.SealingError, ScaleEncodeError) as e:
            raise LightClientStateError(f"cannot save the light client to {path}: {e}") from None

    @classmethod
    def load(cls, path: Path | str, provider: sealing.SealingKeyProvider) -> LightClient:
        try:
            data = sealing.unseal_from_file(provider, path, SEAL_LABEL)
        except sealing.SealedFileMissing:
            raise LightClientStateMissing(f"no light-client state at {path}") from None
        except sealing.SealingError as e:
            raise LightClientStateError(f"cannot load the light client from {path}: {e}") from None
        return cls.from_bytes(data)


def _success_flags(events: list[Any], count: int, n: int, loc: dict[str, Any]) -> list[bool]:
    flags: list[bool | None] = [None] * count
    for record in events:
        phase = record["phase"]
        if not isinstance(phase, EnumValue) or phase.name != "ApplyExtrinsic":
            continue
        outer = record["event"]
        if outer.name != "System" or outer.value.name not in (
            "ExtrinsicSuccess",
            "ExtrinsicFailed",
        ):
            continue
        i = phase.value
        if not 0 <= i < count:
            raise BlockDecodeError(
                f"block #{n}: dispatch result for extrinsic {i}, but the block has {count}", **loc
            )
        if flags[i] is not None:
            raise BlockDecodeError(f"block #{n}: two dispatch results for extrinsic {i}", **loc)
        flags[i] = outer.value.name == "ExtrinsicSuccess"
    missing = [i for i, f in enumerate(flags) if f is None]
    if missing:
        raise BlockDecodeError(
            f"block #{n}: no ExtrinsicSuccess/ExtrinsicFailed event for extrinsic(s) {missing}",
            **loc,
        )
    return [bool(f) for f in flags]
