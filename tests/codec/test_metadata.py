"""Metadata V14 built from codec descriptors, read back by scalecodec the way substrate-interface does.

The runtime below is a small but realistic slice of integritee-node (System 0, Sudo 5, Balances 10)
declared with the project's codecs. The point is the cross-check: a real client stack decodes the
metadata, then encodes calls and extrinsics to the same bytes as our codecs and decodes the bytes
our codecs produce (calls, extrinsics, event records, account info).
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

import pytest
import xxhash
from scalecodec.base import RuntimeConfigurationObject, ScaleBytes
from scalecodec.type_registry import load_type_registry_preset
from substrateinterface.storage import StorageKey

from integritee.codec.metadata import (
    ConstantMeta,
    MetadataError,
    PalletMeta,
    SignedExtensionMeta,
    StorageEntryMeta,
    build_metadata_v14,
    runtime_call_enum,
    runtime_event_enum,
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
    Result,
    Struct,
    Tuple,
    Vec,
    u8,
    u16,
    u32,
    u64,
    u128,
    unit,
    variant,
)

ALICE = bytes.fromhex("d43593c715fdd31c61141abd04a99fd6822c8558854ccde39a5684e7a56da27d")
BOB = bytes.fromhex("8eaf04151687736326c9fea17e25fc5287613693c912909cb226aa4794f26a48")
ALICE_SS58_42 = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
BOB_SS58_42 = "5FHneW46xGXgs5mUiveU4sbTyGBzmstUspZC92UhjJM694ty"

# ---------------------------------------------------------------------------------------------
# The runtime description

MultiAddress = Enum(
    "sp_runtime::multiaddress::MultiAddress",
    [
        variant("Id", 0, (None, AccountId32, "AccountId")),
        # integritee-node's AccountIndex is (), as in most Substrate runtimes
        variant("Index", 1, (None, Compact(unit), "AccountIndex")),
        variant("Raw", 2, (None, Bytes, "Vec<u8>")),
        variant("Address32", 3, (None, FixedBytes(32), "[u8; 32]")),
        variant("Address20", 4, (None, FixedBytes(20), "[u8; 20]")),
    ],
    params=[("AccountId", AccountId32), ("AccountIndex", unit)],
)
MultiSignature = Enum(
    "sp_runtime::MultiSignature",
    [
        variant(
            "Ed25519",
            0,
            (None, Newtype("sp_core::ed25519::Signature", FixedBytes(64)), "ed25519::Signature"),
        ),
        variant(
            "Sr25519",
            1,
            (None, Newtype("sp_core::sr25519::Signature", FixedBytes(64)), "sr25519::Signature"),
        ),
        variant(
            "Ecdsa",
            2,
            (None, Newtype("sp_core::ecdsa::Signature", FixedBytes(65)), "ecdsa::Signature"),
        ),
    ],
)
Era = Enum(
    "sp_runtime::generic::era::Era",
    [variant("Immortal", 0)] + [variant(f"Mortal{i}", i, (None, u8)) for i in range(1, 256)],
)
Weight = Struct(
    "sp_weights::weight_v2::Weight",
    [("ref_time", Compact(u64), "u64"), ("proof_size", Compact(u64), "u64")],
)
DispatchInfo = Struct(
    "frame_support::dispatch::DispatchInfo",
    [
        ("weight", Weight, "Weight"),
        (
            "class",
            Enum(
                "frame_support::dispatch::DispatchClass",
                [variant("Normal", 0), variant("Operational", 1), variant("Mandatory", 2)],
            ),
            "DispatchClass",
        ),
        ("pays_fee", Enum("frame_support::dispatch::Pays", [variant("Yes", 0), variant("No", 1)])),
    ],
)
DispatchError = Enum(
    "sp_runtime::DispatchError",
    [
        variant("Other", 0),
        variant("CannotLookup", 1),
        variant("BadOrigin", 2),
        variant(
            "Module",
            3,
            (
                None,
                Struct(
                    "sp_runtime::ModuleError",
                    [("index", u8, "u8"), ("error", FixedBytes(4), "[u8; 4]")],
                ),
                "ModuleError",
            ),
        ),
    ],
)
ExtraFlags = Newtype("pallet_balances::types::ExtraFlags", u128, "u128")
AccountData = Struct(
    "pallet_balances::types::AccountData",
    [
        ("free", u128, "Balance"),
        ("reserved", u128, "Balance"),
        ("frozen", u128, "Balance"),
        ("flags", ExtraFlags, "ExtraFlags"),
    ],
    params=[("Balance", u128)],
)
AccountInfo = Struct(
    "frame_system::AccountInfo",
    [
        ("nonce", u32, "Nonce"),
        ("consumers", u32, "RefCount"),
        ("providers", u32, "RefCount"),
        ("sufficients", u32, "RefCount"),
        ("data", AccountData, "AccountData"),
    ],
    params=[("Nonce", u32), ("AccountData", AccountData)],
)
Phase = Enum(
    "frame_system::Phase",
    [
        variant("ApplyExtrinsic", 0, (None, u32, "u32")),
        variant("Finalization", 1),
        variant("Initialization", 2),
    ],
)

SystemCall = Enum(
    "frame_system::pallet::Call",
    [variant("remark", 0, ("remark", Bytes, "Vec<u8>"))],
    params=[("T", None)],
)
SystemEvent = Enum(
    "frame_system::pallet::Event",
    [
        variant("ExtrinsicSuccess", 0, ("dispatch_info", DispatchInfo, "DispatchInfo")),
        variant(
            "ExtrinsicFailed",
            1,
            ("dispatch_error", DispatchError, "DispatchError"),
            ("dispatch_info", DispatchInfo, "DispatchInfo"),
        ),
    ],
    params=[("T", None)],
)
SystemError = Enum(
    "frame_system::pallet::Error",
    [variant("InvalidSpecName", 0), variant("CallFiltered", 1)],
    params=[("T", None)],
)
BalancesCall = Enum(
    "pallet_balances::pallet::Call",
    [
        variant(
            "transfer_allow_death",
            0,
            ("dest", MultiAddress, "AccountIdLookupOf<T>"),
            ("value", Compact(u128), "T::Balance"),
        ),
        variant(
            "transfer_keep_alive",
            3,
            ("dest", MultiAddress, "AccountIdLookupOf<T>"),
            ("value", Compact(u128), "T::Balance"),
        ),
    ],
    params=[("T", None), ("I", None)],
)
BalancesEvent = Enum(
    "pallet_balances::pallet::Event",
    [
        variant(
            "Endowed",
            0,
            ("account", AccountId32, "T::AccountId"),
            ("free_balance", u128, "T::Balance"),
        ),
        variant(
            "Transfer",
            2,
            ("from", AccountId32, "T::AccountId"),
            ("to", AccountId32, "T::AccountId"),
            ("amount", u128, "T::Balance"),
        ),
    ],
    params=[("T", None), ("I", None)],
)
BalancesError = Enum(
    "pallet_balances::pallet::Error",
    [
        variant("VestingBalance", 0),
        variant("LiquidityRestrictions", 1),
        variant("InsufficientBalance", 2),
    ],
    params=[("T", None), ("I", None)],
)
# Sudo's call holds a whole RuntimeCall: the recursion goes through Lazy
SudoCall = Enum(
    "pallet_sudo::pallet::Call",
    [
        variant("sudo", 0, ("call", Lazy(lambda: RuntimeCall), "Box<<T as Config>::RuntimeCall>")),
        variant("set_key", 2, ("new", MultiAddress, "AccountIdLookupOf<T>")),
    ],
    params=[("T", None)],
)
SudoEvent = Enum(
    "pallet_sudo::pallet::Event",
    [variant("Sudid", 0, ("sudo_result", Result(unit, DispatchError), "DispatchResult"))],
    params=[("T", None)],
)

PALLETS = [
    PalletMeta(
        name="System",
        index=0,
        storage_prefix="System",
        storage=[
            StorageEntryMeta(
                name="Account",
                modifier="Default",
                value=AccountInfo,
                default=bytes(80),
                key=AccountId32,
                hashers=("Blake2_128Concat",),
                docs=("The full account information for a particular account ID.",),
            ),
            StorageEntryMeta(
                name="Number", modifier="Default", value=u32, default=bytes(4), docs=()
            ),
            StorageEntryMeta(
                name="Events",
                modifier="Default",
                value=Vec(Lazy(lambda: EventRecord)),
                default=b"\x00",
            ),
            StorageEntryMeta(
                name="BlockHash",
                modifier="Default",
                value=H256,
                default=bytes(32),
                key=u32,
                hashers=("Twox64Concat",),
            ),
        ],
        calls=SystemCall,
        event=SystemEvent,
        error=SystemError,
        constants=[
            ConstantMeta("BlockHashCount", u32, u32.encode(2400)),
            ConstantMeta("SS58Prefix", u16, u16.encode(13), ("The designated SS58 prefix.",)),
        ],
    ),
    PalletMeta(
        name="Sudo",
        index=5,
        storage=[
            StorageEntryMeta(name="Key", modifier="Optional", value=AccountId32, default=b"\x00")
        ],
        calls=SudoCall,
        event=SudoEvent,
    ),
    PalletMeta(
        name="Balances",
        index=10,
        storage=[
            StorageEntryMeta(
                name="TotalIssuance", modifier="Default", value=u128, default=bytes(16)
            ),
            StorageEntryMeta(
                name="Allowance",
                modifier="Optional",
                value=u128,
                key=Tuple(AccountId32, AccountId32),
                hashers=("Blake2_128Concat", "Twox64Concat"),
            ),
        ],
        calls=BalancesCall,
        event=BalancesEvent,
        error=BalancesError,
        constants=[ConstantMeta("ExistentialDeposit", u128, u128.encode(500))],
    ),
]

RuntimeCall: Enum = runtime_call_enum("integritee_node_runtime", PALLETS)
RuntimeEvent = runtime_event_enum("integritee_node_runtime", PALLETS)
EventRecord: Struct = Struct(
    "frame_system::EventRecord",
    [("phase", Phase, "Phase"), ("event", RuntimeEvent, "E"), ("topics", Vec(H256), "Vec<T>")],
    params=[("E", RuntimeEvent), ("T", H256)],
)
Extra = Tuple(unit, unit, unit, unit, Era, Compact(u32), unit, Compact(u128))
UncheckedExtrinsic = Newtype(
    "sp_runtime::generic::unchecked_extrinsic::UncheckedExtrinsic", Bytes, "Vec<u8>"
)
UncheckedExtrinsic.params = (
    ("Address", MultiAddress),
    ("Call", RuntimeCall),
    ("Signature", MultiSignature),
    ("Extra", Extra),
)
SIGNED_EXTENSIONS = [
    SignedExtensionMeta("CheckNonZeroSender"),
    SignedExtensionMeta("CheckSpecVersion", unit, u32),
    SignedExtensionMeta("CheckTxVersion", unit, u32),
    SignedExtensionMeta("CheckGenesis", unit, H256),
    SignedExtensionMeta("CheckMortality", Era, H256),
    SignedExtensionMeta("CheckNonce", Compact(u32), unit),
    SignedExtensionMeta("CheckWeight"),
    SignedExtensionMeta("ChargeTransactionPayment", Compact(u128), unit),
]
Runtime = Struct("integritee_node_runtime::Runtime", [])


def build(pallets: list[PalletMeta] = PALLETS, extrinsic: Codec = UncheckedExtrinsic) -> bytes:
    return build_metadata_v14(pallets, extrinsic, 4, SIGNED_EXTENSIONS, Runtime)


# ---------------------------------------------------------------------------------------------
# Reading it back with scalecodec, as substrate-interface's init_runtime does


def _runtime_config(ss58_format: int | None = None) -> RuntimeConfigurationObject:
    rc = RuntimeConfigurationObject(ss58_format=ss58_format)
    rc.update_type_registry(load_type_registry_preset("core"))
    return rc


@pytest.fixture(scope="module")
def metadata_bytes() -> bytes:
    return build()


@pytest.fixture(scope="module")
def client(metadata_bytes: bytes) -> tuple[RuntimeConfigurationObject, Any]:
    rc = _runtime_config(ss58_format=42)
    m = rc.create_scale_object("MetadataVersioned", data=ScaleBytes(metadata_bytes))
    m.decode(check_remaining=True)
    rc.add_portable_registry(m)
    return rc, m


def _twox128(data: bytes) -> bytes:
    return xxhash.xxh64_digest(data, seed=0)[::-1] + xxhash.xxh64_digest(data, seed=1)[::-1]


def _blake2_128_concat(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=16).digest() + data


def test_header_and_determinism(metadata_bytes: bytes) -> None:
    assert metadata_bytes[:5] == b"meta\x0e"
    assert build() == metadata_bytes


def test_pallets_storage_and_constants(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    rc, m = client
    assert m.value[1]["V14"]["extrinsic"]["version"] == 4
    pallets = {p["name"].value: p for p in m.pallets}
    assert [(p["name"].value, p["index"].value) for p in m.pallets] == [
        ("System", 0),
        ("Sudo", 5),
        ("Balances", 10),
    ]
    system = pallets["System"]
    assert system.value["storage"]["prefix"] == "System"
    account = system.get_storage_function("Account")
    assert account.value["modifier"] == "Default"
    assert account.get_param_hashers() == ["Blake2_128Concat"]
    assert account.value["documentation"] == [
        "The full account information for a particular account ID."
    ]
    assert system.get_storage_function("Number").value["type"]["Plain"] is not None
    assert pallets["Sudo"].get_storage_function("Key").value["modifier"] == "Optional"
    allowance = pallets["Balances"].get_storage_function("Allowance")
    assert allowance.get_param_hashers() == ["Blake2_128Concat", "Twox64Concat"]
    assert len(allowance.get_params_type_string()) == 2

    # the SS58Prefix constant, decoded as substrate-interface's get_constant does
    ss58 = next(c for c in system["constants"] if c["name"] == "SS58Prefix")
    value = rc.create_scale_object(
        f"scale_info::{ss58['type'].value}", data=ScaleBytes(ss58["value"].value_object)
    )
    assert value.decode() == 13
    assert ss58["documentation"].value == ["The designated SS58 prefix."]

    # the weight-v2 probe of init_runtime succeeds
    rc.create_scale_object("sp_weights::weight_v2::Weight")

    assert [se for se in m.get_signed_extensions()] == [s.identifier for s in SIGNED_EXTENSIONS]


def test_calls_events_errors_lookup(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    _, m = client
    balances = m.get_pallet_by_index(10)
    assert balances.name == "Balances"
    calls = {c.value["index"]: c for c in balances.calls}
    assert calls[0].value["name"] == "transfer_allow_death"
    assert calls[3].value["name"] == "transfer_keep_alive"
    assert [(f["name"], f["typeName"]) for f in calls[0].value["fields"]] == [
        ("dest", "AccountIdLookupOf<T>"),
        ("value", "T::Balance"),
    ]
    assert {e.value["index"]: e.value["name"] for e in balances.events} == {
        0: "Endowed",
        2: "Transfer",
    }
    assert m.get_module_error(10, 2).value["name"] == "InsufficientBalance"
    assert m.get_pallet_by_index(5).calls[0].value["name"] == "sudo"


def _our_transfer(dest: bytes, value: int) -> EnumValue:
    return EnumValue(
        "Balances",
        EnumValue("transfer_allow_death", {"dest": EnumValue("Id", dest), "value": value}),
    )


def test_call_encoding_matches_scalecodec(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    rc, m = client
    call = rc.create_scale_object("Call", metadata=m)
    theirs = call.encode(
        {
            "call_module": "Balances",
            "call_function": "transfer_allow_death",
            "call_args": {"dest": BOB_SS58_42, "value": 10**12},
        }
    )
    ours = RuntimeCall.encode(_our_transfer(BOB, 10**12))
    assert ours[:2] == b"\x0a\x00"
    assert theirs.data == ours

    # and back: scalecodec decodes our bytes
    decoded = rc.create_scale_object("Call", data=ScaleBytes(ours), metadata=m)
    value = decoded.decode(check_remaining=True)
    assert value["call_module"] == "Balances"
    assert value["call_function"] == "transfer_allow_death"
    args = {a["name"]: a["value"] for a in value["call_args"]}
    # GenericMultiAddress shows the Id variant as the bare SS58 address
    assert args == {"dest": BOB_SS58_42, "value": 10**12}


def test_recursive_sudo_call(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    rc, m = client
    inner = _our_transfer(BOB, 7)
    ours = RuntimeCall.encode(EnumValue("Sudo", EnumValue("sudo", {"call": inner})))
    theirs = rc.create_scale_object("Call", metadata=m).encode(
        {
            "call_module": "Sudo",
            "call_function": "sudo",
            "call_args": {
                "call": {
                    "call_module": "Balances",
                    "call_function": "transfer_allow_death",
                    "call_args": {"dest": BOB_SS58_42, "value": 7},
                }
            },
        }
    )
    assert theirs.data == ours
    decoded = rc.create_scale_object("Call", data=ScaleBytes(ours), metadata=m)
    value = decoded.decode(check_remaining=True)
    nested = value["call_args"][0]["value"]
    assert (value["call_module"], value["call_function"]) == ("Sudo", "sudo")
    assert (nested["call_module"], nested["call_function"]) == ("Balances", "transfer_allow_death")


def _our_extrinsic(call: EnumValue, era: bytes, nonce: int, tip: int) -> bytes:
    sig = bytes(range(64))
    body = bytearray(b"\x84")
    body += MultiAddress.encode(EnumValue("Id", ALICE))
    body += MultiSignature.encode(EnumValue("Sr25519", sig))
    body += era
    body += Compact(u32).encode(nonce)
    body += Compact(u128).encode(tip)
    body += RuntimeCall.encode(call)
    return Bytes.encode(bytes(body))


@pytest.mark.parametrize(
    ("era_value", "era_bytes"),
    # mortal: period 64 at block 100 -> phase 36: (trailing_zeros(64) - 1) | (36 << 4) = 0x0245
    [("00", b"\x00"), ({"period": 64, "current": 100}, b"\x45\x02")],
)
def test_signed_extrinsic_matches_scalecodec(
    client: tuple[RuntimeConfigurationObject, Any], era_value: Any, era_bytes: bytes
) -> None:
    rc, m = client
    ours = _our_extrinsic(_our_transfer(BOB, 10**12), era_bytes, 5, 1)
    ext = rc.create_scale_object("Extrinsic", metadata=m)
    theirs = ext.encode(
        {
            "account_id": "0x" + ALICE.hex(),
            "signature_version": 1,
            "signature": "0x" + bytes(range(64)).hex(),
            "call_function": "transfer_allow_death",
            "call_module": "Balances",
            "call_args": {"dest": BOB_SS58_42, "value": 10**12},
            "era": era_value,
            "nonce": 5,
            "tip": 1,
        }
    )
    assert theirs.data == ours
    # the era itself is our Era enum: the variant byte is the first byte of the mortal encoding
    assert Era.decode(era_bytes).name == ("Immortal" if era_bytes == b"\x00" else "Mortal69")

    decoded = rc.create_scale_object("Extrinsic", data=ScaleBytes(ours), metadata=m)
    value = decoded.decode(check_remaining=True)
    assert value["address"] == ALICE_SS58_42
    assert value["nonce"] == 5
    assert value["tip"] == 1
    assert value["call"]["call_function"] == "transfer_allow_death"


def test_event_records_decode(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    rc, m = client
    info = {
        "weight": {"ref_time": 1_000_000, "proof_size": 0},
        "class": "Normal",
        "pays_fee": "Yes",
    }
    records = [
        {
            "phase": EnumValue("ApplyExtrinsic", 1),
            "event": EnumValue(
                "Balances", EnumValue("Transfer", {"from": ALICE, "to": BOB, "amount": 10**12})
            ),
            "topics": [],
        },
        {
            "phase": EnumValue("ApplyExtrinsic", 1),
            "event": EnumValue("System", EnumValue("ExtrinsicSuccess", {"dispatch_info": info})),
            "topics": [bytes(32)],
        },
        {
            "phase": EnumValue("Finalization"),
            "event": EnumValue("Sudo", EnumValue("Sudid", {"sudo_result": EnumValue("Ok", ())})),
            "topics": [],
        },
    ]
    raw = Vec(EventRecord).encode(records)

    _, m_ = client
    system = m_.get_metadata_pallet("System")
    events_type = system.get_storage_function("Events").get_value_type_string()
    obj = rc.create_scale_object(events_type, data=ScaleBytes(raw), metadata=m)
    decoded = obj.decode(check_remaining=True)
    assert [(e["module_id"], e["event_id"], e["phase"], e["extrinsic_idx"]) for e in decoded] == [
        ("Balances", "Transfer", "ApplyExtrinsic", 1),
        ("System", "ExtrinsicSuccess", "ApplyExtrinsic", 1),
        ("Sudo", "Sudid", "Finalization", None),
    ]
    assert decoded[0]["attributes"] == {"from": ALICE_SS58_42, "to": BOB_SS58_42, "amount": 10**12}
    assert decoded[1]["attributes"]["dispatch_info"]["weight"] == {
        "ref_time": 1_000_000,
        "proof_size": 0,
    }
    assert decoded[1]["topics"] == ["0x" + "00" * 32]
    assert decoded[2]["attributes"] == {"sudo_result": {"Ok": ()}}

    # an empty Events storage (its default) decodes too
    empty = rc.create_scale_object(events_type, data=ScaleBytes(b"\x00"), metadata=m)
    assert empty.decode(check_remaining=True) == []


def test_account_storage_key_and_value(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    rc, m = client
    key = StorageKey.create_from_storage_function(
        "System", "Account", [ALICE_SS58_42], runtime_config=rc, metadata=m
    )
    expected = _twox128(b"System") + _twox128(b"Account") + _blake2_128_concat(ALICE)
    assert key.to_hex() == "0x" + expected.hex()

    account = {
        "nonce": 3,
        "consumers": 0,
        "providers": 1,
        "sufficients": 0,
        "data": {"free": 10**15, "reserved": 0, "frozen": 7, "flags": 1 << 127},
    }
    raw = AccountInfo.encode(account)
    value_type = (
        m.get_metadata_pallet("System").get_storage_function("Account").get_value_type_string()
    )
    obj = rc.create_scale_object(value_type, data=ScaleBytes(raw), metadata=m)
    assert obj.decode(check_remaining=True) == account

    default = m.get_metadata_pallet("System").get_storage_function("Account")["default"]
    obj = rc.create_scale_object(value_type, data=ScaleBytes(default.value_object), metadata=m)
    assert obj.decode(check_remaining=True)["data"]["free"] == 0


def test_client_types_resolved(client: tuple[RuntimeConfigurationObject, Any]) -> None:
    """The path-based types substrate-interface relies on are bound to our registry entries."""
    rc, _ = client
    assert rc.get_decoder_class("Address") is rc.get_decoder_class(
        "sp_runtime::multiaddress::MultiAddress"
    )
    account_id = rc.create_scale_object("AccountId")
    assert account_id.encode(ALICE_SS58_42).data == ALICE
    era = rc.create_scale_object("sp_runtime::generic::era::Era")
    assert era.encode({"period": 64, "current": 100}).data == b"\x45\x02"
    sig = rc.create_scale_object("ExtrinsicSignature")
    assert sig.encode({"Sr25519": "0x" + "11" * 64}).data == b"\x01" + b"\x11" * 64


# ---------------------------------------------------------------------------------------------
# The builder refuses runtimes that clients would misread


def _with(pallet_index: int, **changes: Any) -> list[PalletMeta]:
    pallets = list(PALLETS)
    pallets[pallet_index] = dataclasses.replace(pallets[pallet_index], **changes)
    return pallets


def test_rejects_pallet_index_differing_from_runtime_call() -> None:
    # Balances moved to index 11 but RuntimeCall still says 10
    with pytest.raises(MetadataError, match="RuntimeCall"):
        build(_with(2, index=11))


def test_rejects_duplicate_pallet_index() -> None:
    with pytest.raises(MetadataError, match="duplicate"):
        build(_with(2, index=5))


def test_rejects_bad_storage_default() -> None:
    bad = StorageEntryMeta(name="Number", modifier="Default", value=u32, default=b"\x00")
    with pytest.raises(MetadataError, match="System.Number: default"):
        build(_with(0, storage=[bad]))
    bad = StorageEntryMeta(name="Key", modifier="Optional", value=AccountId32, default=bytes(32))
    with pytest.raises(MetadataError, match="Optional"):
        build(_with(1, storage=[bad]))
    bad = StorageEntryMeta(name="Key", modifier="Required", value=u32, default=bytes(4))
    with pytest.raises(MetadataError, match="modifier"):
        build(_with(1, storage=[bad]))


def test_rejects_bad_hashers() -> None:
    bad = StorageEntryMeta(
        name="M",
        modifier="Optional",
        value=u32,
        key=u32,
        hashers=("Blake2_128Concat", "Twox64Concat"),
    )
    with pytest.raises(MetadataError, match="tuple key"):
        build(_with(1, storage=[bad]))
    bad = StorageEntryMeta(name="M", modifier="Optional", value=u32, key=u32, hashers=("Sha256",))
    with pytest.raises(MetadataError, match="unknown hasher"):
        build(_with(1, storage=[bad]))
    bad = StorageEntryMeta(name="M", modifier="Optional", value=u32, key=u32)
    with pytest.raises(MetadataError, match="hasher"):
        build(_with(1, storage=[bad]))


def test_rejects_bad_constant() -> None:
    with pytest.raises(MetadataError, match="SS58Prefix"):
        build(_with(0, constants=[ConstantMeta("SS58Prefix", u16, b"\x0d")]))


def test_rejects_unnamed_call_arguments_and_non_enum_calls() -> None:
    calls = Enum("frame_system::pallet::Call", [variant("remark", 0, (None, Bytes))])
    with pytest.raises(MetadataError, match="named"):
        build(_with(0, calls=calls))
    with pytest.raises(MetadataError, match="enum"):
        build(_with(0, event=AccountInfo))


def test_registry_failures_are_metadata_errors() -> None:
    bad = StorageEntryMeta(name="Key", modifier="Optional", value=Array(u8, 1 << 32))
    with pytest.raises(MetadataError, match="type registry"):
        build(_with(1, storage=[bad]))


def test_rejects_error_indices_with_gaps() -> None:
    # substrate-interface looks errors up by list position, so FRAME's 0..n-1 numbering is required
    error = Enum("frame_system::pallet::Error", [variant("A", 0), variant("B", 2)])
    with pytest.raises(MetadataError, match="0..n-1"):
        build(_with(0, error=error))


def test_rejects_extrinsic_without_client_params() -> None:
    ext = Newtype("sp_runtime::generic::unchecked_extrinsic::UncheckedExtrinsic", Bytes)
    ext.params = (("Address", MultiAddress), ("Call", RuntimeCall), ("Signature", MultiSignature))
    with pytest.raises(MetadataError, match="Address, Call, Signature, Extra"):
        build(extrinsic=ext)


def test_rejects_event_enum_out_of_step() -> None:
    # a RuntimeEvent that lacks the Sudo variant while the Sudo pallet has events
    stale_event = runtime_event_enum("integritee_node_runtime", [PALLETS[0], PALLETS[2]])
    record = Struct(
        "frame_system::EventRecord",
        [("phase", Phase, "Phase"), ("event", stale_event, "E"), ("topics", Vec(H256), "Vec<T>")],
        params=[("E", stale_event), ("T", H256)],
    )
    system = PALLETS[0]
    storage = [
        *system.storage[:2],
        StorageEntryMeta(name="Events", modifier="Default", value=Vec(record), default=b"\x00"),
    ]
    with pytest.raises(MetadataError, match="RuntimeEvent"):
        build(_with(0, storage=storage))


def test_optional_and_result_are_builtin_generics(metadata_bytes: bytes) -> None:
    """Option<T>/Result<T, E> appear with the prelude paths and params scale-info gives them."""
    rc = _runtime_config()
    m = rc.create_scale_object("MetadataVersioned", data=ScaleBytes(metadata_bytes))
    m.decode()
    types = {t["id"]: t["type"] for t in m.portable_registry.value["types"]}
    results = [t for t in types.values() if t["path"] == ["Result"]]
    assert len(results) == 1
    assert [p["name"] for p in results[0]["params"]] == ["T", "E"]
    ok, err = results[0]["def"]["variant"]["variants"]
    assert (ok["name"], ok["index"], err["name"], err["index"]) == ("Ok", 0, "Err", 1)
    assert ok["fields"][0]["typeName"] is None
