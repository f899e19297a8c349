"""Wire types of the trusted side: trusted calls and getters, their signatures, trusted operations.

Declared once as SCALE codecs with the original's variant indices and field orders
(`ita_stf::TrustedCall`, `ita_stf::Getter`, `itp_stf_primitives::types::TrustedOperation`):

- `TrustedCall` (explicit indices): noop 0, timestamp_set 1, balance_transfer 2,
  balance_unshield 3, balance_shield 4, balance_transfer_with_note 5,
  balance_shield_through_enclave_bridge_pallet 6, balance_unshield_through_enclave_bridge_pallet 7,
  send_note 20, add_session_proxy 30, balance_set_balance 255 (dev shards only). The original's
  other variants (note_bloat, assets, guess-the-number, EVM, ...) fail to decode with
  `UnsupportedVariantError` naming the variant.
- `TrustedCallSigned { call, nonce: u32, delegate: Option<AccountId>, signature: MultiSignature }`
  signed over `SCALE(call) ++ SCALE(nonce) ++ mrenclave ++ shard` (or that payload wrapped in
  `<Bytes>`..`</Bytes>`, as polkadot-js extensions sign raw bytes) by the delegate if set, else by
  the call's sender (its first field).
- `Getter = public(PublicGetter) 0 | trusted(TrustedGetterSigned) 1`; a trusted getter is signed
  over `SCALE(getter)` (or its `<Bytes>` form).
- `TrustedOperation = indirect_call 0 | direct_call 1 | get 2`; its hash is blake2_256 of its
  encoding.

Enum values are `EnumValue`s (see `integritee.codec.scale`); the constructor helpers (`noop`,
`balance_transfer`, ...) build them. Account ids, hashes, shards and mrenclaves are 32-byte
`bytes`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from integritee.codec.scale import (
    H256,
    Buffer,
    Bytes,
    Codec,
    Enum,
    EnumValue,
    FixedBytes,
    Option,
    ScaleDecodeError,
    ScaleEncodeError,
    Struct,
    Variant,
    u32,
    u64,
    variant,
)
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair, verify_multi_signature
from integritee.parentchain.primitives import AccountId, AccountInfo, AccountInfoCodec, Balance
from integritee.parentchain.primitives import MultiSignature as MultiSignature
from integritee.parentchain.tee_types import Request as Request

__all__ = [
    "AccountId",
    "AccountInfo",
    "AccountInfoCodec",
    "Getter",
    "MultiSignature",
    "PARENTCHAIN_IDS",
    "ParentchainId",
    "PublicGetter",
    "Request",
    "SessionProxyCredentials",
    "SessionProxyCredentialsCodec",
    "SessionProxyRole",
    "TrustedCall",
    "TrustedCallSigned",
    "TrustedCallSignedCodec",
    "TrustedGetter",
    "TrustedGetterSigned",
    "TrustedGetterSignedCodec",
    "TrustedOperation",
    "UnsupportedVariantError",
    "call_signing_payload",
    "sign_call",
    "sign_getter",
    "trusted_operation_hash",
    "wrap_bytes",
]

Moment = u64
ShardIdentifier = H256

BYTES_PREFIX = b"<Bytes>"
BYTES_POSTFIX = b"</Bytes>"


class UnsupportedVariantError(ScaleDecodeError):
    """A variant the original defines but this enclave does not implement (e.g. EVM calls)."""


class _PartialEnum(Enum):
    """An enum of which only some of the original's variants are implemented here.

    Decoding a known-but-unimplemented index names the variant instead of reporting an unknown
    index, so a client learns that its call exists but is not served by this enclave.
    """

    def __init__(
        self, path: str, variants: Sequence[Variant], unsupported: Mapping[int, str]
    ) -> None:
        super().__init__(path, variants)
        self.unsupported = dict(unsupported)

    def decode_from(self, data: Buffer, pos: int) -> tuple[EnumValue, int]:
        if pos < len(data):
            name = self.unsupported.get(data[pos])
            if name is not None:
                raise UnsupportedVariantError(
                    f"{self.display_name}::{name} (index {data[pos]}) is not supported by this enclave"
                )
        return super().decode_from(data, pos)


class _NoAssetId(Codec):
    """`AssetId` in a position where only `None` is served: this enclave holds no assets."""

    kind = "variant"
    path = ("ita_assets_map", "AssetId")

    def encode_into(self, value: Any, out: bytearray) -> None:
        raise ScaleEncodeError("assets are not supported by this enclave")

    def decode_from(self, data: Buffer, pos: int) -> tuple[Any, int]:
        raise UnsupportedVariantError("assets (AssetId) are not supported by this enclave")

    def _make_type_key(self) -> tuple[Any, ...]:
        return ("no-asset-id",)


# ---------------------------------------------------------------------------------------------
# Parentchain ids and session proxies

ParentchainId = Enum(
    "itp_types::parentchain::ParentchainId",
    [variant("Integritee", 0), variant("TargetA", 1), variant("TargetB", 2)],
)
PARENTCHAIN_IDS: tuple[str, ...] = ("Integritee", "TargetA", "TargetB")

SessionProxyRole = Enum(
    "pallet_session_proxy::SessionProxyRole",
    [
        variant("ReadBalance", 0),
        variant("ReadAny", 1),
        variant("NonTransfer", 2),
        variant("Any", 3),
        variant("TransferAllowance", 4, (None, Balance, "Balance")),
    ],
    params=[("Balance", Balance)],
)


@dataclass(frozen=True)
class SessionProxyCredentials:
    """What a delegate may do for its delegator: `role` is a SessionProxyRole value (or name)."""

    role: EnumValue | str
    expiry: int | None = None
    seed: bytes = bytes(32)

    @property
    def role_name(self) -> str:
        return self.role if isinstance(self.role, str) else self.role.name


SessionProxyCredentialsCodec = Struct(
    "pallet_session_proxy::SessionProxyCredentials",
    [
        ("role", SessionProxyRole, "SessionProxyRole<Balance>"),
        ("expiry", Option(Moment), "Option<u64>"),
        ("seed", FixedBytes(32), "[u8; 32]"),
    ],
    cls=SessionProxyCredentials,
    params=[("Balance", Balance)],
)

# ---------------------------------------------------------------------------------------------
# Trusted calls

_ACC = (None, AccountId, "AccountId")
_BAL = (None, Balance, "Balance")
_SHARD = (None, ShardIdentifier, "ShardIdentifier")
_PID = (None, ParentchainId, "ParentchainId")
_NOTE = (None, Bytes, "Vec<u8>")

TrustedCall = _PartialEnum(
    "ita_stf::trusted_call::TrustedCall",
    [
        variant("noop", 0, _ACC),
        variant("timestamp_set", 1, _ACC, (None, Moment, "Moment"), _PID),
        variant("balance_transfer", 2, _ACC, _ACC, _BAL),
        variant("balance_unshield", 3, _ACC, _ACC, _BAL, _SHARD),
        variant("balance_shield", 4, _ACC, _ACC, _BAL, _PID),
        variant("balance_transfer_with_note", 5, _ACC, _ACC, _BAL, _NOTE),
        variant("balance_shield_through_enclave_bridge_pallet", 6, _ACC, _ACC, _BAL),
        variant("balance_unshield_through_enclave_bridge_pallet", 7, _ACC, _ACC, _BAL, _SHARD),
        variant("send_note", 20, _ACC, _ACC, _NOTE),
        variant(
            "add_session_proxy",
            30,
            _ACC,
            _ACC,
            (None, SessionProxyCredentialsCodec, "SessionProxyCredentials<Balance>"),
        ),
        variant("balance_set_balance", 255, _ACC, _ACC, _BAL, _BAL),
    ],
    unsupported={
        10: "note_bloat",
        11: "waste_time",
        12: "spam_extrinsics",
        42: "assets_transfer",
        43: "assets_unshield",
        44: "assets_shield",
        45: "assets_transfer_with_note",
        46: "force_unshield_all",
        50: "guess_the_number",
        90: "evm_withdraw",
        91: "evm_call",
        92: "evm_create",
        93: "evm_create2",
    },
)


def noop(who: bytes) -> EnumValue:
    return EnumValue("noop", who)


def timestamp_set(enclave: bytes, now: int, parentchain_id: str = "Integritee") -> EnumValue:
    return EnumValue("timestamp_set", (enclave, now, parentchain_id))


def balance_transfer(sender: bytes, to: bytes, amount: int) -> EnumValue:
    return EnumValue("balance_transfer", (sender, to, amount))


def balance_unshield(sender: bytes, beneficiary: bytes, amount: int, shard: bytes) -> EnumValue:
    return EnumValue("balance_unshield", (sender, beneficiary, amount, shard))


def balance_shield(enclave: bytes, who: bytes, amount: int, parentchain_id: str) -> EnumValue:
    return EnumValue("balance_shield", (enclave, who, amount, parentchain_id))


def balance_transfer_with_note(sender: bytes, to: bytes, amount: int, note: bytes) -> EnumValue:
    return EnumValue("balance_transfer_with_note", (sender, to, amount, note))


def balance_shield_through_enclave_bridge_pallet(
    enclave: bytes, who: bytes, amount: int
) -> EnumValue:
    return EnumValue("balance_shield_through_enclave_bridge_pallet", (enclave, who, amount))


def balance_unshield_through_enclave_bridge_pallet(
    sender: bytes, beneficiary: bytes, amount: int, shard: bytes
) -> EnumValue:
    return EnumValue(
        "balance_unshield_through_enclave_bridge_pallet", (sender, beneficiary, amount, shard)
    )


def send_note(sender: bytes, to: bytes, note: bytes) -> EnumValue:
    return EnumValue("send_note", (sender, to, note))


def add_session_proxy(
    delegator: bytes, delegate: bytes, credentials: SessionProxyCredentials
) -> EnumValue:
    return EnumValue("add_session_proxy", (delegator, delegate, credentials))


def balance_set_balance(root: bytes, who: bytes, free: int, reserved: int = 0) -> EnumValue:
    return EnumValue("balance_set_balance", (root, who, free, reserved))


def call_sender(call: EnumValue) -> bytes:
    """The account a call acts for: the first field of every implemented variant."""
    value = call.value
    return bytes(value[0] if isinstance(value, tuple) else value)


def wrap_bytes(data: bytes) -> bytes:
    """The `<Bytes>`..`</Bytes>` wrapping that polkadot-js `signRaw` applies before signing."""
    return BYTES_PREFIX + bytes(data) + BYTES_POSTFIX


def call_signing_payload(call: EnumValue, nonce: int, mrenclave: bytes, shard: bytes) -> bytes:
    """`SCALE(call) ++ SCALE(nonce u32) ++ mrenclave[32] ++ shard[32]`."""
    if len(mrenclave) != 32 or len(shard) != 32:
        raise ValueError("mrenclave and shard must be 32 bytes each")
    return TrustedCall.encode(call) + u32.encode(nonce) + bytes(mrenclave) + bytes(shard)


def _signature_of(keypair: Keypair, payload: bytes) -> EnumValue:
    name = "Sr25519" if keypair.crypto == "sr25519" else "Ed25519"
    return EnumValue(name, keypair.sign(payload))


def _verify(signature: EnumValue, payload: bytes, signer: bytes) -> bool:
    if not isinstance(signature, EnumValue):
        return False
    if verify_multi_signature(signature.name, signature.value, payload, signer):
        return True
    return verify_multi_signature(signature.name, signature.value, wrap_bytes(payload), signer)


@dataclass(frozen=True)
class TrustedCallSigned:
    call: EnumValue
    nonce: int
    delegate: bytes | None
    signature: EnumValue

    @property
    def sender(self) -> bytes:
        return call_sender(self.call)

    @property
    def signer(self) -> bytes:
        """Who must have signed: the delegate if one is named, else the sender."""
        return self.delegate if self.delegate is not None else self.sender

    def signing_payload(self, mrenclave: bytes, shard: bytes) -> bytes:
        return call_signing_payload(self.call, self.nonce, mrenclave, shard)

    def verify_signature(self, mrenclave: bytes, shard: bytes) -> bool:
        """True if the signer signed the payload for this mrenclave and shard (plain or
        `<Bytes>`-wrapped); malformed values are simply not valid."""
        try:
            payload = self.signing_payload(mrenclave, shard)
        except (ScaleEncodeError, ValueError, TypeError):
            return False
        return _verify(self.signature, payload, self.signer)

    def call_hash(self) -> bytes:
        """blake2_256(SCALE(call)): the original's `call_hash` of an unshielding."""
        return blake2_256(TrustedCall.encode(self.call))

    def encode(self) -> bytes:
        return TrustedCallSignedCodec.encode(self)

    @classmethod
    def decode(cls, data: bytes) -> TrustedCallSigned:
        value: TrustedCallSigned = TrustedCallSignedCodec.decode(data)
        return value

    def into_trusted_operation(self, direct: bool) -> EnumValue:
        return EnumValue("direct_call" if direct else "indirect_call", self)


TrustedCallSignedCodec = Struct(
    "ita_stf::trusted_call::TrustedCallSigned",
    [
        ("call", TrustedCall, "TrustedCall"),
        ("nonce", u32, "Index"),
        ("delegate", Option(AccountId), "Option<AccountId>"),
        ("signature", MultiSignature, "Signature"),
    ],
    cls=TrustedCallSigned,
)


def sign_call(
    call: EnumValue, keypair: Keypair, nonce: int, mrenclave: bytes, shard: bytes
) -> TrustedCallSigned:
    """Sign like the original's `TrustedCall::sign`: a key other than the sender's becomes the
    delegate."""
    delegate = None if keypair.public_key == call_sender(call) else keypair.public_key
    payload = call_signing_payload(call, nonce, mrenclave, shard)
    return TrustedCallSigned(call, nonce, delegate, _signature_of(keypair, payload))


# ---------------------------------------------------------------------------------------------
# Getters

PublicGetter = _PartialEnum(
    "ita_stf::getter::PublicGetter",
    [
        variant("some_value", 0),
        variant("total_issuance", 1),
        variant("undistributed_fees", 2, (None, Option(_NoAssetId()), "Option<AssetId>")),
        variant("parentchains_info", 10),
        variant("note_buckets_info", 11),
        variant("shard_info", 12),
    ],
    unsupported={40: "asset_total_issuance", 50: "guess_the_number"},
)

TrustedGetter = _PartialEnum(
    "ita_stf::getter::TrustedGetter",
    [
        variant("account_info", 0, _ACC),
        variant("account_info_and_session_proxies", 1, _ACC),
        variant("account_essentials", 2, _ACC),
    ],
    unsupported={
        10: "notes_for",
        40: "asset_balance",
        50: "guess_the_number",
        90: "evm_nonce",
        91: "evm_account_codes",
        92: "evm_account_storages",
    },
)


def getter_sender(getter: EnumValue) -> bytes:
    value = getter.value
    return bytes(value[0] if isinstance(value, tuple) else value)


@dataclass(frozen=True)
class TrustedGetterSigned:
    getter: EnumValue
    delegate: bytes | None
    signature: EnumValue

    @property
    def sender(self) -> bytes:
        return getter_sender(self.getter)

    @property
    def signer(self) -> bytes:
        return self.delegate if self.delegate is not None else self.sender

    def verify_signature(self) -> bool:
        try:
            payload = TrustedGetter.encode(self.getter)
        except (ScaleEncodeError, ValueError, TypeError):
            return False
        return _verify(self.signature, payload, self.signer)

    def encode(self) -> bytes:
        return TrustedGetterSignedCodec.encode(self)


TrustedGetterSignedCodec = Struct(
    "ita_stf::getter::TrustedGetterSigned",
    [
        ("getter", TrustedGetter, "TrustedGetter"),
        ("delegate", Option(AccountId), "Option<AccountId>"),
        ("signature", MultiSignature, "Signature"),
    ],
    cls=TrustedGetterSigned,
)


def sign_getter(getter: EnumValue, keypair: Keypair) -> TrustedGetterSigned:
    """Sign like the original's `TrustedGetter::sign` (a foreign key becomes the delegate)."""
    delegate = None if keypair.public_key == getter_sender(getter) else keypair.public_key
    return TrustedGetterSigned(
        getter, delegate, _signature_of(keypair, TrustedGetter.encode(getter))
    )


Getter = Enum(
    "ita_stf::getter::Getter",
    [
        variant("public", 0, (None, PublicGetter, "PublicGetter")),
        variant("trusted", 1, (None, TrustedGetterSignedCodec, "TrustedGetterSigned")),
    ],
)

# ---------------------------------------------------------------------------------------------
# Trusted operations

TrustedOperation = Enum(
    "itp_stf_primitives::types::TrustedOperation",
    [
        variant("indirect_call", 0, (None, TrustedCallSignedCodec, "TCS")),
        variant("direct_call", 1, (None, TrustedCallSignedCodec, "TCS")),
        variant("get", 2, (None, Getter, "G")),
    ],
)


def trusted_operation_hash(top: EnumValue) -> bytes:
    """blake2_256(SCALE(top)), the hash the pool and the watchers know an operation by."""
    return blake2_256(TrustedOperation.encode(top))
