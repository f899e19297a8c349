"""Metadata V14 read back into codecs: agreement with the node's own codecs, exactness, hostility.

The node's metadata is decoded without the node's types; calls, events, storage keys and values
encoded by the node must decode to equal values through the decoded codecs and re-encode to the
same bytes. A real chain (in-process, blocks authored through the pool and executive) provides
System.Events and storage values. Random descriptor trees go through build -> decode -> round trip.
Crafted type tables check the limits: every failure is a MetadataError/ScaleDecodeError, quickly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import random
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integritee.codec.metadata import (
    EXTRINSIC_PATH,
    ConstantMeta,
    MetadataError,
    PalletMeta,
    SignedExtensionMeta,
    StorageEntryMeta,
    build_metadata_v14,
    runtime_call_enum,
)
from integritee.codec.metadata_decode import (
    MalformedMetadata,
    RuntimeMetadata,
    _read_pallet,
    decode_metadata_v14,
)
from integritee.codec.registry import (
    ArrayDef,
    CompositeDef,
    FieldDef,
    PortableType,
    PrimitiveDef,
    SequenceDef,
    TupleDef,
    TypeDef,
    TypeParam,
    VariantDef,
    VariantTypeDef,
)
from integritee.codec.registry_decode import (
    BitSequenceDef,
    CharCodec,
    Reader,
    UnsupportedCodec,
    ZeroSizeVec,
    read_portable_registry,
)
from integritee.codec.scale import (
    H256,
    AccountId32,
    Array,
    Bytes,
    Codec,
    Compact,
    Enum,
    EnumValue,
    FixedBytes,
    Lazy,
    Newtype,
    Option,
    Result,
    ScaleDecodeError,
    ScaleEncodeError,
    SInt,
    Struct,
    Tuple,
    Vec,
    boolean,
    encode_compact,
    i8,
    i16,
    i32,
    i64,
    i128,
    text,
    u8,
    u16,
    u32,
    u64,
    u128,
    u256,
    unit,
    variant,
)
from integritee.crypto.hashing import twox64_concat, twox128
from integritee.crypto.keys import Keypair
from integritee.node.block_builder import build_block
from integritee.node.blockchain import Blockchain
from integritee.node.chain_spec import CODE_KEY, ChainSpec, GenesisConfig
from integritee.node.runtime import executive
from integritee.node.runtime.construct import (
    SPEC_VERSION,
    TRANSACTION_VERSION,
    metadata_bytes,
    runtime_call,
    runtime_event,
)
from integritee.node.runtime.context import BlockContext
from integritee.node.runtime.executive import ChainParams
from integritee.node.runtime.pallets import enclave_bridge, system, teerex
from integritee.node.txpool import TxPool
from integritee.parentchain.extrinsic import sign_and_encode
from integritee.parentchain.primitives import AccountData, AccountInfo
from integritee.storage.overlay import Overlay

ALICE = Keypair.from_uri("//Alice")
BOB = Keypair.from_uri("//Bob")
CHARLIE = Keypair.from_uri("//Charlie")
UNIT = 10**12
MRENCLAVE = bytes(range(32))
H1 = bytes(range(100, 132))
H2 = bytes(range(200, 232))


@pytest.fixture(scope="module")
def node_metadata() -> bytes:
    return metadata_bytes()


@pytest.fixture(scope="module")
def md(node_metadata: bytes) -> RuntimeMetadata:
    return decode_metadata_v14(node_metadata)


def _plain(value: Any) -> Any:
    """Dataclass values (the node's AccountInfo) as the dicts a decoded codec yields."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return value


# ---------------------------------------------------------------------------------------------
# The node's metadata


def test_decodes_the_node_metadata_quickly(node_metadata: bytes) -> None:
    best = min(_timed(lambda: decode_metadata_v14(node_metadata)) for _ in range(3))
    assert best < 0.1, f"decoding {len(node_metadata)} bytes took {best * 1000:.1f} ms"


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def test_structure(md: RuntimeMetadata) -> None:
    assert [(p.name, p.index) for p in md.pallets][:3] == [
        ("System", 0),
        ("Timestamp", 3),
        ("Sudo", 5),
    ]
    assert md.pallet_by_index(54) is md.pallet("EnclaveBridge")
    assert md.extrinsic_version == 4
    assert [s.identifier for s in md.signed_extensions] == [
        "CheckNonZeroSender",
        "CheckSpecVersion",
        "CheckTxVersion",
        "CheckGenesis",
        "CheckMortality",
        "CheckNonce",
        "CheckWeight",
        "ChargeTransactionPayment",
    ]
    mortality = md.signed_extensions[4]
    assert mortality.extra.encode(EnumValue("Immortal")) == b"\x00"
    assert mortality.additional.encode(H1) == H1
    assert md.signed_extensions[5].extra.encode(5) == b"\x14"
    assert md.call_codec.path == ("integritee_node_runtime", "RuntimeCall")
    assert md.event_codec.path == ("integritee_node_runtime", "RuntimeEvent")
    params = md.extrinsic_params
    assert list(params) == ["Address", "Call", "Signature", "Extra"]
    assert params["Call"] is md.call_codec
    assert md.types_with_path("sp_core::crypto::AccountId32")[0].encode(H1) == H1
    assert md.pallet("EnclaveBridge").call_index("confirm_processed_parentchain_block") == (54, 1)
    assert md.pallet("System").constant("SS58Prefix") == 13
    assert md.constant("Balances", "ExistentialDeposit") == 500
    assert md.pallet("System").constant("Version")["spec_version"] == SPEC_VERSION
    assert md.module_error(10, bytes([2, 0, 0, 0])) == ("Balances", "InsufficientBalance")
    with pytest.raises(KeyError):
        md.pallet("Nope")
    with pytest.raises(KeyError):
        md.pallet_by_index(200)
    with pytest.raises(KeyError):
        md.pallet("System").storage("Nope")
    with pytest.raises(KeyError):
        md.pallet("Balances").call_index("nope")
    # every codec is a real descriptor, not a forward reference
    assert all(not isinstance(c, Lazy) for c in md.types)


def test_types_section_reencodes_byte_exact(node_metadata: bytes) -> None:
    r = Reader(node_metadata, 5)
    types = read_portable_registry(r)
    out = bytearray(encode_compact(len(types)))
    for t in types:
        t.encode_into(out)
    assert bytes(out) == node_metadata[5 : r.pos]


def _rebuild(md: RuntimeMetadata) -> bytes:
    """The metadata built again from the decoded descriptors alone."""
    pallets = [
        PalletMeta(
            name=p.name,
            index=p.index,
            storage_prefix=p.storage_prefix,
            storage=[
                StorageEntryMeta(
                    e.name, e.modifier, e.value, e.default, e.key_codec, e.hashers, e.docs
                )
                for e in p.storage_entries.values()
            ],
            calls=p.calls,
            event=p.event,
            error=p.error,
            constants=[
                ConstantMeta(c.name, c.codec, c.value, c.docs) for c in p.constants.values()
            ],
        )
        for p in md.pallets
    ]
    return build_metadata_v14(
        pallets,
        md.types[md.extrinsic_type],
        md.extrinsic_version,
        [SignedExtensionMeta(s.identifier, s.extra, s.additional) for s in md.signed_extensions],
        md.types[md.runtime_type],
    )


def test_descriptors_rebuild_the_same_metadata(md: RuntimeMetadata, node_metadata: bytes) -> None:
    # paths, params, docs, type names, ids: everything the node declared survives the round trip
    assert _rebuild(md) == node_metadata


def _call(pallet: str, name: str, **args: Any) -> EnumValue:
    return EnumValue(pallet, EnumValue(name, args))


CALLS = [
    _call("Balances", "transfer_keep_alive", dest=EnumValue("Id", H1), value=5 * UNIT),
    _call("Balances", "transfer_allow_death", dest=EnumValue("Address20", bytes(20)), value=0),
    _call("Timestamp", "set", now=1_700_000_000_000),
    _call(
        "Sudo",
        "sudo",
        call=_call(
            "Sudo",
            "sudo",
            call=_call("Balances", "force_set_balance", who=EnumValue("Id", H2), new_free=7),
        ),
    ),
    _call("EnclaveBridge", "invoke", request={"shard": H1, "cyphertext": b"\x01\x02secret"}),
    _call(
        "EnclaveBridge",
        "confirm_processed_parentchain_block",
        shard=H1,
        block_hash=H2,
        block_number=42,
        trusted_calls_merkle_root=bytes(32),
    ),
    _call(
        "Teerex",
        "register_sgx_enclave",
        proof=b"proof bytes",
        worker_url=b"wss://localhost:2000",
        attestation_method=EnumValue("Dcap", {"proxied": True}),
    ),
    _call(
        "Teerex",
        "register_sgx_enclave",
        proof=MRENCLAVE,
        worker_url=None,
        attestation_method=EnumValue("Ias"),
    ),
    _call("System", "remark", remark=b""),
]


@pytest.mark.parametrize("value", CALLS, ids=lambda v: f"{v.name}.{v.value.name}")
def test_calls_agree_with_the_node(md: RuntimeMetadata, value: EnumValue) -> None:
    raw = runtime_call().encode(value)
    assert md.call_codec.decode(raw) == runtime_call().decode(raw) == value
    assert md.call_codec.encode(value) == raw
    assert md.encode_call(value.name, value.value.name, value.value.value) == raw
    assert md.decode_call(raw) == value


def test_calls_reject_what_the_node_rejects(md: RuntimeMetadata) -> None:
    raw = runtime_call().encode(CALLS[0])
    for bad in (raw[:-1], raw + b"\x00", bytes([99]) + raw[1:], raw[:1] + bytes([77]) + raw[2:]):
        with pytest.raises(ScaleDecodeError):
            runtime_call().decode(bad)
        with pytest.raises(ScaleDecodeError):
            md.call_codec.decode(bad)
    with pytest.raises(ScaleEncodeError):
        md.encode_call("Balances", "no_such_call")
    # Sudo(Sudo(...)) thousands deep: a decode error, not a RecursionError
    with pytest.raises(ScaleDecodeError, match="nested"):
        md.decode_call(bytes([5, 0]) * 3000 + bytes([0, 0, 0]))


def _event(pallet: str, name: str, payload: Any) -> EnumValue:
    return EnumValue(pallet, EnumValue(name, payload))


DISPATCH_INFO = {
    "weight": {"ref_time": 123_456, "proof_size": 0},
    "class": EnumValue("Normal"),
    "pays_fee": EnumValue("Yes"),
}
EVENTS = [
    _event("System", "ExtrinsicSuccess", {"dispatch_info": DISPATCH_INFO}),
    _event(
        "System",
        "ExtrinsicFailed",
        {
            "dispatch_error": EnumValue("Module", {"index": 10, "error": bytes([2, 0, 0, 0])}),
            "dispatch_info": DISPATCH_INFO,
        },
    ),
    _event("Balances", "Transfer", {"from": H1, "to": H2, "amount": 10**20}),
    _event(
        "EnclaveBridge",
        "ShieldFunds",
        {"shard": H1, "encrypted_beneficiary": b"\xff" * 384, "amount": 77},
    ),
    _event(
        "Teerex",
        "AddedSgxEnclave",
        {
            "registered_by": H1,
            "worker_url": None,
            "tcb_status": EnumValue("Ok"),
            "attestation_method": EnumValue("Skip", {"proxied": False}),
        },
    ),
    _event("Teerex", "RemovedSovereignEnclave", H2),
    _event("Sudo", "Sudid", {"sudo_result": EnumValue("Err", EnumValue("BadOrigin"))}),
]


@pytest.mark.parametrize("value", EVENTS, ids=lambda v: f"{v.name}.{v.value.name}")
def test_events_agree_with_the_node(md: RuntimeMetadata, value: EnumValue) -> None:
    raw = runtime_event().encode(value)
    assert md.event_codec.decode(raw) == value
    assert md.event_codec.encode(value) == raw
    records = [
        {"phase": EnumValue("ApplyExtrinsic", 1), "event": value, "topics": [H1]},
        {"phase": EnumValue("Finalization"), "event": value, "topics": []},
    ]
    raw_records = system.Events.value.encode(records)
    assert md.events_codec.decode(raw_records) == records
    assert md.events_codec.encode(records) == raw_records


def test_storage_keys_agree_with_the_node(md: RuntimeMetadata) -> None:
    account = md.storage("System", "Account")
    assert account.key(H1) == system.Account.key(H1)
    assert account.decode_key(account.key(H1)) == (H1,)
    assert account.partial_key() == account.prefix == twox128(b"System") + twox128(b"Account")
    status = md.storage("EnclaveBridge", "ShardStatus")
    assert status.key(H2) == enclave_bridge.ShardStatus.key(H2)
    sovereign = md.storage("Teerex", "SovereignEnclaves")
    assert sovereign.key(H1) == teerex.SovereignEnclaves.key(H1)
    assert md.storage("System", "Number").key() == system.Number.key()
    block_hash = md.storage("System", "BlockHash")
    assert block_hash.key(7) == system.BlockHash.key(7)
    assert block_hash.decode_key(system.BlockHash.key(7)) == (7,)
    with pytest.raises(TypeError):
        account.key()
    with pytest.raises(TypeError):
        account.partial_key(H1, H2)
    with pytest.raises(ScaleDecodeError):
        account.decode_key(block_hash.key(7))
    with pytest.raises(ScaleDecodeError):
        account.decode_key(account.key(H1) + b"\x00")
    # defaults: Default entries decode their default, Optional ones are None
    assert account.decode_value(None) == dataclasses.asdict(AccountInfo())
    assert sovereign.decode_value(None) is None
    assert md.storage("System", "Events").decode_value(None) == []


# ---------------------------------------------------------------------------------------------
# A real chain: genesis :code, System.Events and storage values written by the runtime


def _author(chain: Blockchain, params: ChainParams, txs: Sequence[tuple[Keypair, bytes]]) -> None:
    pool = TxPool()
    nonces: dict[bytes, int] = {}
    for signer, call_bytes in txs:
        who = signer.public_key
        nonce = nonces.get(who, system.Account.get(chain.head_state, who).nonce)
        nonces[who] = nonce + 1
        raw = sign_and_encode(
            call_bytes,
            signer,
            nonce=nonce,
            genesis_hash=chain.genesis_hash,
            spec_version=SPEC_VERSION,
            tx_version=TRANSACTION_VERSION,
        )
        ctx = BlockContext(
            Overlay(chain.head_state.get), chain.best_number + 1, chain.best_hash, params
        )
        valid = executive.validate_transaction(ctx, raw, chain.hash_at)
        pool.insert(valid, system.Account.get(chain.head_state, who).nonce)
    slot = chain.best_number + 1
    built = build_block(chain, params, pool, ALICE, slot, slot * 1000, deadline=float("inf"))
    assert len(built.included) == len(txs)
    chain.commit_block(built.block)


@pytest.fixture
def chain(tmp_path: Path) -> Iterator[Blockchain]:
    config = GenesisConfig(
        endowed={k.public_key: 1000 * UNIT for k in (ALICE, BOB, CHARLIE)},
        sudo_key=ALICE.public_key,
        aura_authorities=[ALICE.public_key],
        grandpa_authorities=[Keypair.from_uri("//Alice", "ed25519").public_key],
        allow_skipping_attestation=True,
        sgx_allow_debug_mode=True,
    )
    c = Blockchain.open(tmp_path / "db", ChainSpec("Test", "test", "Development", config.storage()))
    yield c
    c.close()


def test_real_chain_events_and_storage(chain: Blockchain) -> None:
    # what the enclave does: read the metadata from genesis storage, then use only it
    code = chain.head_state.get(CODE_KEY)
    assert code is not None
    md = decode_metadata_v14(code)
    params = ChainParams(chain.genesis_hash, minimum_period_ms=1)
    register = md.encode_call(
        "Teerex",
        "register_sgx_enclave",
        {
            "proof": MRENCLAVE,
            "worker_url": b"wss://127.0.0.1:2000",
            "attestation_method": EnumValue("Skip", {"proxied": False}),
        },
    )
    transfer = md.encode_call(
        "Balances",
        "transfer_keep_alive",
        {"dest": EnumValue("Id", CHARLIE.public_key), "value": 3 * UNIT},
    )
    shield = md.encode_call(
        "EnclaveBridge",
        "shield_funds",
        {"shard": MRENCLAVE, "incognito_account_encrypted": b"\x07" * 64, "amount": UNIT},
    )
    _author(chain, params, [(BOB, register), (ALICE, transfer), (CHARLIE, shield)])
    confirm = md.encode_call(
        "EnclaveBridge",
        "confirm_processed_parentchain_block",
        {
            "shard": MRENCLAVE,
            "block_hash": chain.best_hash,
            "block_number": chain.best_number,
            "trusted_calls_merkle_root": bytes(32),
        },
    )
    _author(chain, params, [(BOB, confirm)])
    state = chain.head_state

    raw_events = state.get(md.storage("System", "Events").key())
    assert raw_events is not None
    events = md.events_codec.decode(raw_events)
    assert events == system.Events.get(state)
    assert md.events_codec.encode(events) == raw_events
    processed = [e["event"].value for e in events if e["event"].name == "EnclaveBridge"]
    assert processed[0].name == "ProcessedParentchainBlock"

    # block 1's events, read from that block's state
    block1 = chain.hash_at(1)
    assert block1 is not None
    raw1 = chain.state_at(block1).get(md.storage("System", "Events").key())
    assert raw1 is not None
    events1 = md.events_codec.decode(raw1)
    names = [f"{e['event'].name}.{e['event'].value.name}" for e in events1]
    for expected in (
        "Teerex.AddedSgxEnclave",
        "Balances.Transfer",
        "EnclaveBridge.ShieldFunds",
        "System.ExtrinsicSuccess",
    ):
        assert expected in names
    added = next(e["event"].value.value for e in events1 if e["event"].name == "Teerex")
    assert added["registered_by"] == BOB.public_key
    assert added["attestation_method"] == EnumValue("Skip", {"proxied": False})

    for entry, node_item, key in (
        (md.storage("System", "Account"), system.Account, CHARLIE.public_key),
        (md.storage("Teerex", "SovereignEnclaves"), teerex.SovereignEnclaves, BOB.public_key),
        (md.storage("EnclaveBridge", "ShardStatus"), enclave_bridge.ShardStatus, MRENCLAVE),
    ):
        raw = state.get(entry.key(key))
        assert raw is not None, entry.name
        value = entry.decode_value(raw)
        assert value == _plain(node_item.get(state, key))
        assert entry.value.encode(value) == raw
    status = md.storage("EnclaveBridge", "ShardStatus").decode_value(
        state.get(enclave_bridge.ShardStatus.key(MRENCLAVE))
    )
    assert status[0]["signer"] == BOB.public_key

    # with the caller's classes, values equal the node's dataclasses too
    typed = decode_metadata_v14(
        code,
        struct_classes={
            "frame_system::AccountInfo": AccountInfo,
            "pallet_balances::types::AccountData": AccountData,
        },
    )
    account = typed.storage("System", "Account")
    raw_account = state.get(account.key(ALICE.public_key))
    assert account.decode_value(raw_account) == system.Account.get(state, ALICE.public_key)


# ---------------------------------------------------------------------------------------------
# Property: random descriptor trees survive build -> decode with equal values and bytes


def _lst_codec() -> Enum:
    holder: dict[str, Enum] = {}
    holder["l"] = Enum(
        "test::List",
        [
            variant("Nil", 0),
            variant("Cons", 1, (None, u8, "u8"), (None, Lazy(lambda: holder["l"]))),
        ],
    )
    return holder["l"]


def _lst_value(items: list[int]) -> EnumValue:
    value = EnumValue("Nil")
    for item in reversed(items):
        value = EnumValue("Cons", (item, value))
    return value


_LIST = _lst_codec()


def _leaf() -> st.SearchStrategy[tuple[Codec, st.SearchStrategy[Any]]]:
    return st.sampled_from(
        [
            (u8, st.integers(0, 255)),
            (u16, st.integers(0, 2**16 - 1)),
            (u32, st.integers(0, 2**32 - 1)),
            (u64, st.integers(0, 2**64 - 1)),
            (u128, st.integers(0, 2**128 - 1)),
            (u256, st.integers(0, 2**256 - 1)),
            (i8, st.integers(-(2**7), 2**7 - 1)),
            (i16, st.integers(-(2**15), 2**15 - 1)),
            (i32, st.integers(-(2**31), 2**31 - 1)),
            (i64, st.integers(-(2**63), 2**63 - 1)),
            (i128, st.integers(-(2**127), 2**127 - 1)),
            (SInt(256), st.integers(-(2**255), 2**255 - 1)),
            (boolean, st.booleans()),
            (
                CharCodec(),
                st.characters(max_codepoint=0xD7FF) | st.characters(min_codepoint=0xE000),
            ),
            (Compact(u32), st.integers(0, 2**32 - 1)),
            (Compact(u128), st.integers(0, 2**128 - 1)),
            (text, st.text(max_size=5)),
            (unit, st.just(())),
            (Bytes, st.binary(max_size=6)),
            (H256, st.binary(min_size=32, max_size=32)),
            (Struct("test::Empty", []), st.just({})),
            (_LIST, st.lists(st.integers(0, 255), max_size=4).map(_lst_value)),
        ]
    )


def _tagged(name: str) -> Callable[[Any], EnumValue]:
    return lambda v: EnumValue(name, v)


def _extend(
    children: st.SearchStrategy[tuple[Codec, st.SearchStrategy[Any]]],
) -> st.SearchStrategy[tuple[Codec, st.SearchStrategy[Any]]]:
    # Vec<u8> / [u8; N] are bytes-valued in decoded metadata: build them as Bytes / FixedBytes
    not_u8 = children.filter(lambda c: c[0] is not u8)

    def struct(fields: dict[str, tuple[Codec, Any]]) -> tuple[Codec, Any]:
        codec = Struct(
            "test::S", [(n, c, f"T{n}") for n, (c, _) in fields.items()], params=[("T", None)]
        )
        return codec, st.fixed_dictionaries({n: s for n, (_, s) in fields.items()})

    def enum(arms: list[tuple[int, Any]]) -> tuple[Codec, Any]:
        variants = []
        values = []
        for i, (shape, payload) in enumerate(arms):
            name = f"V{i}"
            if shape == 0:
                variants.append(variant(name, i * 2))
                values.append(st.just(EnumValue(name)))
            elif shape == 1:
                variants.append(variant(name, i * 2, (None, payload[0])))
                values.append(payload[1].map(_tagged(name)))
            elif shape == 2:
                variants.append(variant(name, i * 2, (None, payload[0]), (None, u8)))
                values.append(st.tuples(payload[1], st.integers(0, 255)).map(_tagged(name)))
            else:
                variants.append(variant(name, i * 2, ("x", payload[0], "X")))
                values.append(payload[1].map(lambda v, n=name: EnumValue(n, {"x": v})))
        return Enum("test::E", variants, docs=["an enum"]), st.one_of(values)

    return st.one_of(
        not_u8.map(lambda c: (Vec(c[0]), st.lists(c[1], max_size=3))),
        children.map(lambda c: (Option(c[0]), st.none() | c[1])),
        st.tuples(children, children).map(
            lambda p: (
                Result(p[0][0], p[1][0]),
                st.one_of(
                    p[0][1].map(lambda v: EnumValue("Ok", v)),
                    p[1][1].map(lambda v: EnumValue("Err", v)),
                ),
            )
        ),
        st.lists(children, min_size=1, max_size=3).map(
            lambda cs: (Tuple(*(c for c, _ in cs)), st.tuples(*(s for _, s in cs)))
        ),
        st.dictionaries(
            st.sampled_from(["a", "b", "c", "value", "who"]), children, min_size=1, max_size=3
        ).map(struct),
        st.lists(st.tuples(st.integers(0, 3), children), min_size=1, max_size=3).map(enum),
        st.integers(0, 4).map(lambda n: (FixedBytes(n), st.binary(min_size=n, max_size=n))),
        not_u8.map(lambda c: (Array(c[0], 2), st.lists(c[1], min_size=2, max_size=2))),
        children.map(lambda c: (Newtype("test::N", c[0], "Inner"), c[1])),
    )


_codecs = st.recursive(_leaf(), _extend, max_leaves=6)


def _test_runtime(codec: Codec) -> tuple[bytes, Enum]:
    calls = Enum(
        "pallet_test::pallet::Call",
        [variant("put", 0, ("x", codec, "X"))],
        params=[("T", None)],
    )
    event = Enum(
        "pallet_test::pallet::Event",
        [variant("Put", 0, ("x", codec, "X"))],
        params=[("T", None)],
    )
    pallets = [
        PalletMeta(
            "Test",
            7,
            storage=[
                StorageEntryMeta("Value", "Optional", codec),
                StorageEntryMeta("ByKey", "Optional", u8, key=codec, hashers=("Twox64Concat",)),
            ],
            calls=calls,
            event=event,
        )
    ]
    call = runtime_call_enum("test_runtime", pallets)
    extrinsic = Newtype(EXTRINSIC_PATH, Bytes, "Vec<u8>")
    extrinsic.params = (
        ("Address", AccountId32),
        ("Call", call),
        ("Signature", FixedBytes(64)),
        ("Extra", unit),
    )
    built = build_metadata_v14(pallets, extrinsic, 4, [], Struct("test_runtime::Runtime", []))
    return built, call


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_random_descriptors_round_trip(data: st.DataObject) -> None:
    codec, values = data.draw(_codecs)
    built, runtime_call_codec = _test_runtime(codec)
    md = decode_metadata_v14(built)
    assert _rebuild(md) == built
    pallet = md.pallet("Test")
    mine = pallet.storage("Value").value
    value = data.draw(values)
    raw = codec.encode(value)
    assert mine.decode(raw) == value
    assert mine.encode(value) == raw
    call = EnumValue("Test", EnumValue("put", {"x": value}))
    call_raw = runtime_call_codec.encode(call)
    assert md.call_codec.decode(call_raw) == call
    assert md.call_codec.encode(call) == call_raw
    by_key = pallet.storage("ByKey")
    assert by_key.key(value) == by_key.prefix + twox64_concat(raw)
    assert by_key.decode_key(by_key.key(value)) == (value,)


# ---------------------------------------------------------------------------------------------
# Junk and hostile metadata


def test_rejects_wrong_magic_version_and_trailing_bytes(node_metadata: bytes) -> None:
    for junk in (b"", b"meta", b"atem\x0e" + node_metadata[5:], b"\x00" * 10):
        with pytest.raises(MalformedMetadata):
            decode_metadata_v14(junk)
    for version in (13, 15, 0):
        with pytest.raises(MetadataError, match="version"):
            decode_metadata_v14(node_metadata[:4] + bytes([version]) + node_metadata[5:])
    with pytest.raises(MalformedMetadata, match="trailing"):
        decode_metadata_v14(node_metadata + b"\x00")
    # both error families catch malformed input
    with pytest.raises(ScaleDecodeError):
        decode_metadata_v14(node_metadata[:-1])


def test_every_truncation_fails_cleanly() -> None:
    built, _ = _test_runtime(Struct("test::S", [("a", Option(u32)), ("b", Vec(text))]))
    for cut in range(len(built)):
        with pytest.raises(MetadataError):
            decode_metadata_v14(built[:cut])


def test_mutations_fail_cleanly_or_decode(node_metadata: bytes) -> None:
    rng = random.Random(1234)
    failures = 0
    for _ in range(150):
        data = bytearray(node_metadata)
        for _ in range(rng.randint(1, 3)):
            data[rng.randrange(5, len(data))] = rng.randrange(256)
        try:
            md = decode_metadata_v14(bytes(data))
        except MetadataError:
            failures += 1
            continue
        # whatever decoded is usable: its codecs raise only codec errors
        for codec in md.types[:40]:
            with contextlib.suppress(ScaleDecodeError):
                codec.decode(b"\xff" * 3 + b"\x00" * 200)
    assert failures > 50


def _pallet_offsets(data: bytes) -> list[int]:
    """The byte offset of each pallet's index byte."""
    r = Reader(data, 5)
    read_portable_registry(r)
    offsets = []
    for i in range(r.count()):
        _read_pallet(r, i)
        offsets.append(r.pos - 1)
    return offsets


def test_rejects_inconsistent_pallets(node_metadata: bytes, md: RuntimeMetadata) -> None:
    offsets = _pallet_offsets(node_metadata)
    balances_at = [p.name for p in md.pallets].index("Balances")
    moved = bytearray(node_metadata)
    moved[offsets[balances_at]] = 99
    with pytest.raises(MetadataError, match="RuntimeCall"):
        decode_metadata_v14(bytes(moved))
    clash = bytearray(node_metadata)
    clash[offsets[balances_at]] = 0
    with pytest.raises(MetadataError, match="duplicate pallet"):
        decode_metadata_v14(bytes(clash))


def test_type_count_limit(node_metadata: bytes) -> None:
    with pytest.raises(MetadataError, match="limit"):
        decode_metadata_v14(node_metadata, max_types=50)


# Crafted type tables: raw metadata with no pallets, so any table can be tried.


def _raw(types: Sequence[PortableType], extrinsic: int = 0, runtime: int = 0) -> bytes:
    out = bytearray(b"meta\x0e")
    out += encode_compact(len(types))
    for t in types:
        if isinstance(t.type_def, BitSequenceDef):
            # registry.py never emits a BitSequence: write that one entry by hand
            assert not t.path and not t.params
            out += encode_compact(t.id) + b"\x00\x00\x07"
            out += encode_compact(t.type_def.store) + encode_compact(t.type_def.order) + b"\x00"
        else:
            t.encode_into(out)
    out += b"\x00"  # no pallets
    out += encode_compact(extrinsic) + b"\x04" + b"\x00" + encode_compact(runtime)
    return bytes(out)


def _t(
    i: int, d: Any, path: tuple[str, ...] = (), params: tuple[TypeParam, ...] = ()
) -> PortableType:
    return PortableType(i, path, params, d)


U8 = PrimitiveDef("u8")


def test_crafted_tables_decode_to_project_codecs() -> None:
    types = [
        _t(0, U8),
        _t(1, PrimitiveDef("char")),
        _t(2, PrimitiveDef("i256")),
        _t(3, TupleDef(())),
        _t(4, SequenceDef(3)),  # Vec<()>
        _t(5, ArrayDef(3, 3)),  # [(); 3]
        _t(6, cast_def(BitSequenceDef(0, 3))),
        _t(7, CompositeDef((FieldDef("bits", 6, None), FieldDef("n", 0, None)))),
        _t(8, SequenceDef(0)),
        _t(9, ArrayDef(4, 0)),
        _t(10, CompositeDef((FieldDef(None, 0, None), FieldDef(None, 8, None)))),
        # an Option-shaped enum whose path is not Option stays an Enum
        _t(
            11,
            VariantTypeDef(
                (VariantDef("None", (), 0), VariantDef("Some", (FieldDef(None, 0, None),), 1))
            ),
            ("my", "Maybe"),
            (TypeParam("T", 0),),
        ),
        _t(
            12,
            VariantTypeDef(
                (VariantDef("None", (), 0), VariantDef("Some", (FieldDef(None, 0, None),), 1))
            ),
            ("Option",),
            (TypeParam("T", 0),),
        ),
        _t(13, ArrayDef(0, 0)),  # [u8; 0]
        _t(14, SequenceDef(13)),  # Vec<[u8; 0]>
        _t(15, CompositeDef(())),
        _t(16, SequenceDef(15)),  # Vec<Empty>
    ]
    md = decode_metadata_v14(_raw(types))
    c = md.types
    assert c[0] is u8 and isinstance(c[1], CharCodec) and c[3] is unit
    assert c[1].decode(c[1].encode("é")) == "é"
    with pytest.raises(ScaleDecodeError):
        c[1].decode((0xD800).to_bytes(4, "little"))
    with pytest.raises(ScaleEncodeError):
        c[1].encode("ab")
    assert c[2].decode(c[2].encode(-(2**255))) == -(2**255)
    assert isinstance(c[4], ZeroSizeVec) and c[4].decode(b"\x08") == [(), ()]
    with pytest.raises(ScaleDecodeError, match="limit"):
        c[4].decode(encode_compact(2**40))  # costs no input per item: capped, not a hang
    assert c[5].decode(b"") == [(), (), ()]
    assert isinstance(c[6], UnsupportedCodec)
    with pytest.raises(ScaleDecodeError, match="BitSequence"):
        c[7].decode(b"\x00\x00")
    with pytest.raises(ScaleEncodeError, match="BitSequence"):
        c[6].encode([True])
    assert c[8] is Bytes or c[8].decode(b"\x08\x01\x02") == b"\x01\x02"
    assert c[9].decode(b"abcd") == b"abcd"
    assert c[10].decode(b"\x05\x04\x09") == {"0": 5, "1": b"\x09"}
    assert c[11].decode(b"\x01\x07") == EnumValue("Some", 7)
    assert isinstance(c[12], Option) and c[12].decode(b"\x01\x07") == 7
    # Vecs of other zero-sized items decode too (scale.Vec would demand a byte per item)
    assert c[14].decode(b"\x0c") == [b"", b"", b""]
    assert c[16].decode(b"\x08") == [{}, {}]
    assert c[16].encode([{}, {}]) == b"\x08"
    with pytest.raises(ScaleDecodeError, match="limit"):
        c[16].decode(encode_compact(2**20))


def cast_def(d: Any) -> TypeDef:
    return d  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("types", "match"),
    [
        ([_t(0, SequenceDef(5))], "refers to type 5"),
        ([_t(1, U8)], "ids must be 0..N-1"),
        ([_t(0, CompositeDef((FieldDef("me", 0, None),)))], "no finite encoding"),
        (
            [_t(0, TupleDef((1,))), _t(1, ArrayDef(2, 0))],
            "no finite encoding",
        ),
        ([_t(0, TupleDef(())), _t(1, ArrayDef(2**32 - 1, 0))], "zero-sized"),
        (
            [_t(0, U8), _t(1, CompositeDef((FieldDef("a", 0, None), FieldDef("a", 0, None))))],
            "duplicate field",
        ),
        (
            [
                _t(0, U8),
                _t(1, VariantTypeDef((VariantDef("A", (), 0), VariantDef("B", (), 0)))),
            ],
            "duplicate variant",
        ),
    ],
)
def test_crafted_tables_rejected(types: list[PortableType], match: str) -> None:
    with pytest.raises(MetadataError, match=match):
        decode_metadata_v14(_raw(types))


def test_unknown_tags_are_malformed() -> None:
    good = _raw([_t(0, U8)])
    # the primitive code, then the TypeDef tag, then an Option tag in a param
    at = good.index(b"\x05\x03")
    for bad in (good[: at + 1] + b"\x0f" + good[at + 2 :], good[:at] + b"\x09" + good[at + 1 :]):
        with pytest.raises(MalformedMetadata):
            decode_metadata_v14(bad)
    bad_text = _raw([PortableType(0, ("ok",), (), U8)]).replace(b"ok", b"\xff\xfe")
    with pytest.raises(MalformedMetadata, match="UTF-8"):
        decode_metadata_v14(bad_text)


def test_deep_and_long_tables_are_bounded() -> None:
    n = 20_000
    # a chain of nested Vecs: far deeper than any walker may recurse
    chain = [_t(i, SequenceDef(i + 1)) for i in range(n - 1)] + [_t(n - 1, U8)]
    start = time.perf_counter()
    with pytest.raises(MetadataError, match="deeper"):
        decode_metadata_v14(_raw(chain))
    # the same chain declared leaf-first (ids descending) is caught by height, not stack depth
    reverse = [_t(0, U8)] + [_t(i, SequenceDef(i - 1)) for i in range(1, n)]
    with pytest.raises(MetadataError, match="deeper"):
        decode_metadata_v14(_raw(reverse))
    # a long cycle through enums (each level consumes a byte, so it is finite but deep)
    ring = [
        _t(i, VariantTypeDef((VariantDef("Next", (FieldDef(None, (i + 1) % n, None),), 0),)))
        for i in range(n)
    ]
    with pytest.raises(MetadataError, match="deeper"):
        decode_metadata_v14(_raw(ring))
    assert time.perf_counter() - start < 5
    # a modest depth is fine, and so is a short recursive type
    ok = [_t(i, SequenceDef(i + 1)) for i in range(60)] + [_t(60, U8)]
    assert decode_metadata_v14(_raw(ok)).types[0].decode(b"\x00") == []
    short_ring = ring[:1]
    short_ring = [
        _t(
            0,
            VariantTypeDef(
                (VariantDef("End", (), 0), VariantDef("Next", (FieldDef(None, 0, None),), 1))
            ),
        )
    ]
    assert decode_metadata_v14(_raw(short_ring)).types[0].decode(b"\x01\x01\x00") == EnumValue(
        "Next", EnumValue("Next", EnumValue("End"))
    )


def test_vec_length_beyond_input_is_malformed() -> None:
    good = _raw([_t(0, U8)])
    # claim 2**29 types in a tiny input
    bad = b"meta\x0e" + encode_compact(2**29) + good[6:]
    with pytest.raises(MalformedMetadata, match="exceeds"):
        decode_metadata_v14(bad)


def test_decoded_codecs_are_as_fast_as_the_nodes(md: RuntimeMetadata) -> None:
    records = [
        {"phase": EnumValue("ApplyExtrinsic", i), "event": e, "topics": []}
        for i, e in enumerate(EVENTS * 20)
    ]
    raw = system.Events.value.encode(records)
    node_codec, mine = system.Events.value, md.events_codec
    mine.decode(raw)  # resolve forward references once, as any first use does
    node_t = min(_timed(lambda: node_codec.decode(raw)) for _ in range(5))
    mine_t = min(_timed(lambda: mine.decode(raw)) for _ in range(5))
    assert mine_t < node_t * 2 + 0.002, (mine_t, node_t)
