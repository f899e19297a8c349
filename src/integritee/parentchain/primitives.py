"""Runtime primitive types of the parentchain, declared once as SCALE codecs.

These are the types a Substrate client sees in metadata (paths as in integritee-node) and that the
node uses on the wire: accounts, balances, addresses, signatures, eras, weights, headers, digests,
dispatch results and event records.
"""

from __future__ import annotations

import struct as _struct
from dataclasses import dataclass, field
from typing import Any

from integritee.codec.hexutil import to_hex
from integritee.codec.scale import (
    H256,
    AccountId32,
    Bytes,
    Compact,
    Enum,
    FixedBytes,
    Newtype,
    Struct,
    Tuple,
    Vec,
    text,
    u8,
    u32,
    u64,
    u128,
    unit,
    variant,
)
from integritee.crypto.hashing import blake2_256

AccountId = AccountId32
Balance = u128
BlockNumber = u32
Nonce = u32
Moment = u64
Hash = H256

MultiAddress = Enum(
    "sp_runtime::multiaddress::MultiAddress",
    [
        variant("Id", 0, (None, AccountId, "AccountId")),
        variant("Index", 1, (None, Compact(unit), "AccountIndex")),
        variant("Raw", 2, (None, Bytes, "Vec<u8>")),
        variant("Address32", 3, (None, FixedBytes(32), "[u8; 32]")),
        variant("Address20", 4, (None, FixedBytes(20), "[u8; 20]")),
    ],
    params=[("AccountId", AccountId), ("AccountIndex", unit)],
)

Ed25519Signature = Newtype("sp_core::ed25519::Signature", FixedBytes(64), "[u8; 64]")
Sr25519Signature = Newtype("sp_core::sr25519::Signature", FixedBytes(64), "[u8; 64]")
EcdsaSignature = Newtype("sp_core::ecdsa::Signature", FixedBytes(65), "[u8; 65]")

MultiSignature = Enum(
    "sp_runtime::MultiSignature",
    [
        variant("Ed25519", 0, (None, Ed25519Signature, "ed25519::Signature")),
        variant("Sr25519", 1, (None, Sr25519Signature, "sr25519::Signature")),
        variant("Ecdsa", 2, (None, EcdsaSignature, "ecdsa::Signature")),
    ],
)

# Era: Immortal (one zero byte) or MortalN(u8) where the variant byte is the first byte of the
# two-byte mortal encoding; that is exactly how Substrate's metadata describes it.
Era = Enum(
    "sp_runtime::generic::era::Era",
    [variant("Immortal", 0)] + [variant(f"Mortal{i}", i, (None, u8)) for i in range(1, 256)],
)

Weight = Struct(
    "sp_weights::weight_v2::Weight",
    [("ref_time", Compact(u64), "u64"), ("proof_size", Compact(u64), "u64")],
)

DispatchClass = Enum(
    "frame_support::dispatch::DispatchClass",
    [variant("Normal", 0), variant("Operational", 1), variant("Mandatory", 2)],
)
Pays = Enum("frame_support::dispatch::Pays", [variant("Yes", 0), variant("No", 1)])
DispatchInfo = Struct(
    "frame_support::dispatch::DispatchInfo",
    [
        ("weight", Weight, "Weight"),
        ("class", DispatchClass, "DispatchClass"),
        ("pays_fee", Pays, "Pays"),
    ],
)

ModuleError = Struct(
    "sp_runtime::ModuleError",
    [("index", u8, "u8"), ("error", FixedBytes(4), "[u8; MAX_MODULE_ERROR_ENCODED_SIZE]")],
)
TokenError = Enum(
    "sp_runtime::TokenError",
    [
        variant(n, i)
        for i, n in enumerate(
            [
                "FundsUnavailable",
                "OnlyProvider",
                "BelowMinimum",
                "CannotCreate",
                "UnknownAsset",
                "Frozen",
                "Unsupported",
                "CannotCreateHold",
                "NotExpendable",
                "Blocked",
            ]
        )
    ],
)
ArithmeticError = Enum(
    "sp_arithmetic::ArithmeticError",
    [variant("Underflow", 0), variant("Overflow", 1), variant("DivisionByZero", 2)],
)
TransactionalError = Enum(
    "sp_runtime::TransactionalError", [variant("LimitReached", 0), variant("NoLayer", 1)]
)
DispatchError = Enum(
    "sp_runtime::DispatchError",
    [
        variant("Other", 0),
        variant("CannotLookup", 1),
        variant("BadOrigin", 2),
        variant("Module", 3, (None, ModuleError, "ModuleError")),
        variant("ConsumerRemaining", 4),
        variant("NoProviders", 5),
        variant("TooManyConsumers", 6),
        variant("Token", 7, (None, TokenError, "TokenError")),
        variant("Arithmetic", 8, (None, ArithmeticError, "ArithmeticError")),
        variant("Transactional", 9, (None, TransactionalError, "TransactionalError")),
        variant("Exhausted", 10),
        variant("Corruption", 11),
        variant("Unavailable", 12),
        variant("RootNotAllowed", 13),
    ],
)


@dataclass
class AccountData:
    free: int = 0
    reserved: int = 0
    frozen: int = 0
    flags: int = 0


@dataclass
class AccountInfo:
    nonce: int = 0
    consumers: int = 0
    providers: int = 0
    sufficients: int = 0
    data: AccountData = field(default_factory=AccountData)


AccountDataCodec = Struct(
    "pallet_balances::types::AccountData",
    [
        ("free", Balance, "Balance"),
        ("reserved", Balance, "Balance"),
        ("frozen", Balance, "Balance"),
        ("flags", Newtype("pallet_balances::types::ExtraFlags", u128, "u128"), "ExtraFlags"),
    ],
    cls=AccountData,
    params=[("Balance", Balance)],
)


class _AccountInfoStruct(Struct):
    """frame_system::AccountInfo with a fixed-layout fast path: it is read and written per transfer."""

    _head = _struct.Struct("<IIII")

    def encode_into(self, value: Any, out: bytearray) -> None:
        if type(value) is not AccountInfo:
            return super().encode_into(value, out)
        d = value.data
        out += self._head.pack(value.nonce, value.consumers, value.providers, value.sufficients)
        out += d.free.to_bytes(16, "little") + d.reserved.to_bytes(16, "little")
        out += d.frozen.to_bytes(16, "little") + d.flags.to_bytes(16, "little")

    def decode_from(self, data: Any, pos: int) -> tuple[AccountInfo, int]:
        end = pos + 80
        if end > len(data):
            return super().decode_from(data, pos)
        nonce, consumers, providers, sufficients = self._head.unpack_from(data, pos)
        b = bytes(data[pos + 16 : end])
        account_data = AccountData(
            int.from_bytes(b[0:16], "little"),
            int.from_bytes(b[16:32], "little"),
            int.from_bytes(b[32:48], "little"),
            int.from_bytes(b[48:64], "little"),
        )
        return AccountInfo(nonce, consumers, providers, sufficients, account_data), end


AccountInfoCodec = _AccountInfoStruct(
    "frame_system::AccountInfo",
    [
        ("nonce", Nonce, "Nonce"),
        ("consumers", u32, "RefCount"),
        ("providers", u32, "RefCount"),
        ("sufficients", u32, "RefCount"),
        ("data", AccountDataCodec, "AccountData"),
    ],
    cls=AccountInfo,
    params=[("Nonce", Nonce), ("AccountData", AccountDataCodec)],
)

Phase = Enum(
    "frame_system::Phase",
    [
        variant("ApplyExtrinsic", 0, (None, u32, "u32")),
        variant("Finalization", 1),
        variant("Initialization", 2),
    ],
)

ConsensusEngineId = FixedBytes(4)
DigestItem = Enum(
    "sp_runtime::generic::digest::DigestItem",
    [
        variant(
            "PreRuntime",
            6,
            (None, ConsensusEngineId, "ConsensusEngineId"),
            (None, Bytes, "Vec<u8>"),
        ),
        variant(
            "Consensus", 4, (None, ConsensusEngineId, "ConsensusEngineId"), (None, Bytes, "Vec<u8>")
        ),
        variant(
            "Seal", 5, (None, ConsensusEngineId, "ConsensusEngineId"), (None, Bytes, "Vec<u8>")
        ),
        variant("Other", 0, (None, Bytes, "Vec<u8>")),
        variant("RuntimeEnvironmentUpdated", 8),
    ],
)
# The header digest: `Digest { logs }` on the wire, the list of logs as a value.
Digest = Newtype("sp_runtime::generic::digest::Digest", Vec(DigestItem), "Vec<DigestItem>")


@dataclass
class Header:
    parent_hash: bytes
    number: int
    state_root: bytes
    extrinsics_root: bytes
    digest: list = field(default_factory=list)  # list of EnumValue DigestItems

    def encode(self) -> bytes:
        return HeaderCodec.encode(self)

    def hash(self) -> bytes:
        return blake2_256(self.encode())

    def to_json(self) -> dict:
        return {
            "parentHash": to_hex(self.parent_hash),
            "number": hex(self.number),
            "stateRoot": to_hex(self.state_root),
            "extrinsicsRoot": to_hex(self.extrinsics_root),
            "digest": {"logs": [to_hex(DigestItem.encode(d)) for d in self.digest]},
        }


BlakeTwo256 = Struct("sp_runtime::traits::BlakeTwo256", [])
HeaderCodec = Struct(
    "sp_runtime::generic::header::Header",
    [
        ("parent_hash", Hash, "Hash::Output"),
        ("number", Compact(BlockNumber), "Number"),
        ("state_root", Hash, "Hash::Output"),
        ("extrinsics_root", Hash, "Hash::Output"),
        ("digest", Digest, "Digest"),
    ],
    cls=Header,
    params=[("Number", BlockNumber), ("Hash", BlakeTwo256)],
)

RuntimeDbWeight = Struct(
    "sp_weights::RuntimeDbWeight", [("read", u64, "u64"), ("write", u64, "u64")]
)
RuntimeVersionCodec = Struct(
    "sp_version::RuntimeVersion",
    [
        ("spec_name", text, "RuntimeString"),
        ("impl_name", text, "RuntimeString"),
        ("authoring_version", u32, "u32"),
        ("spec_version", u32, "u32"),
        ("impl_version", u32, "u32"),
        ("apis", Vec(Tuple(FixedBytes(8), u32)), "ApisVec"),
        ("transaction_version", u32, "u32"),
        ("state_version", u8, "u8"),
    ],
)

Perbill = Newtype("sp_arithmetic::per_things::Perbill", u32, "u32")
