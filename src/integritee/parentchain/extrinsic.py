"""Extrinsics v4: decoding, mortal eras, signed extensions and the signing payload.

Format (as Substrate): Compact(len) ++ version byte (0x84 signed, 0x04 bare) ++ [MultiAddress
sender ++ MultiSignature ++ extra] ++ call. Extra = Era ++ Compact(nonce) ++ Compact(tip);
additional signed data = spec_version ++ tx_version ++ genesis hash ++ era birth hash.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from integritee.codec.scale import (
    Codec,
    Compact,
    EnumValue,
    Newtype,
    ScaleDecodeError,
    decode_compact,
    encode_compact,
    u32,
    u128,
    unit,
)
from integritee.crypto.hashing import blake2_256
from integritee.parentchain.primitives import Era, Hash, MultiAddress, MultiSignature

MAX_EXTRINSIC_BYTES = 5 * 1024 * 1024


class ExtrinsicFormatError(ValueError):
    """The bytes are not a well-formed extrinsic (maps to InvalidTransaction/BadProof or a decode error)."""


@dataclass(frozen=True)
class SignedExtension:
    identifier: str
    extra: Codec
    additional: Codec


def _compact_newtype(path: str, inner: Codec, type_name: str) -> Codec:
    return Newtype(path, Compact(inner), type_name)


CheckNonceCodec = _compact_newtype(
    "frame_system::extensions::check_nonce::CheckNonce", u32, "T::Nonce"
)
ChargeTransactionPaymentCodec = _compact_newtype(
    "pallet_transaction_payment::ChargeTransactionPayment", u128, "BalanceOf<T>"
)
SIGNED_EXTENSIONS = (
    SignedExtension("CheckNonZeroSender", unit, unit),
    SignedExtension("CheckSpecVersion", unit, u32),
    SignedExtension("CheckTxVersion", unit, u32),
    SignedExtension("CheckGenesis", unit, Hash),
    SignedExtension("CheckMortality", Era, Hash),
    SignedExtension("CheckNonce", CheckNonceCodec, unit),
    SignedExtension("CheckWeight", unit, unit),
    SignedExtension("ChargeTransactionPayment", ChargeTransactionPaymentCodec, unit),
)


# ---------------------------------------------------------------------------------------------
# Mortal eras


@dataclass(frozen=True)
class MortalEra:
    period: int
    phase: int

    def birth(self, current: int) -> int:
        return (max(current, self.phase) - self.phase) // self.period * self.period + self.phase

    def death(self, current: int) -> int:
        return self.birth(current) + self.period


def era_from_value(value: EnumValue) -> MortalEra | None:
    """None for Immortal; otherwise the decoded (period, phase). Raises on invalid eras."""
    if value.name == "Immortal":
        return None
    first = int(value.name[len("Mortal") :])
    encoded = first | (value.value << 8)
    period = 2 << (encoded % (1 << 4))
    quantize_factor = max(period >> 12, 1)
    phase = (encoded >> 4) * quantize_factor
    if period < 4 or phase >= period:
        raise ExtrinsicFormatError("invalid mortal era")
    return MortalEra(period, phase)


def mortal_era_value(period: int, current: int) -> EnumValue:
    """Encode a mortal era starting at `current` (as clients do), for tests and the CLI."""
    period = 1 << max(2, min(16, (max(period, 4) - 1).bit_length()))
    period = min(period, 1 << 16)
    phase = current % period
    quantize_factor = max(period >> 12, 1)
    quantized_phase = phase // quantize_factor * quantize_factor
    trailing = (period & -period).bit_length() - 1
    encoded = min(15, max(1, trailing - 1)) | ((quantized_phase // quantize_factor) << 4)
    return EnumValue(f"Mortal{encoded & 0xFF}", encoded >> 8)


# ---------------------------------------------------------------------------------------------
# Extrinsic decoding


@dataclass
class Extrinsic:
    raw: bytes  # full encoding including the compact length prefix
    hash: bytes
    call: EnumValue
    call_bytes: bytes
    signer: bytes | None = None
    signature: EnumValue | None = None
    era: EnumValue | None = None
    nonce: int = 0
    tip: int = 0
    extra_bytes: bytes = b""

    @property
    def signed(self) -> bool:
        return self.signer is not None

    def signing_payload(
        self, spec_version: int, tx_version: int, genesis: bytes, birth_hash: bytes
    ) -> bytes:
        payload = (
            self.call_bytes
            + self.extra_bytes
            + spec_version.to_bytes(4, "little")
            + tx_version.to_bytes(4, "little")
            + genesis
            + birth_hash
        )
        return blake2_256(payload) if len(payload) > 256 else payload


def decode_extrinsic(raw: bytes, call_codec: Codec) -> Extrinsic:
    if len(raw) > MAX_EXTRINSIC_BYTES:
        raise ExtrinsicFormatError("extrinsic too large")
    try:
        length, pos = decode_compact(raw, 0)
        if length != len(raw) - pos:
            raise ExtrinsicFormatError(f"length prefix {length} != {len(raw) - pos} bytes")
        version = raw[pos]
        pos += 1
        if version & 0x7F != 4:
            raise ExtrinsicFormatError(f"unsupported extrinsic version {version & 0x7F}")
        if version & 0x80:
            address, pos = MultiAddress.decode_from(raw, pos)
            if address.name != "Id":
                raise ExtrinsicFormatError(f"unsupported address kind {address.name}")
            signature, pos = MultiSignature.decode_from(raw, pos)
            extra_start = pos
            era, pos = Era.decode_from(raw, pos)
            nonce, pos = decode_compact(raw, pos)
            tip, pos = decode_compact(raw, pos)
            extra = raw[extra_start:pos]
            call, end = call_codec.decode_from(raw, pos)
            if end != len(raw):
                raise ExtrinsicFormatError("trailing bytes after the call")
            if nonce > 0xFFFFFFFF:
                raise ExtrinsicFormatError("nonce out of range")
            return Extrinsic(
                raw,
                blake2_256(raw),
                call,
                raw[pos:],
                address.value,
                signature,
                era,
                nonce,
                tip,
                extra,
            )
        call, end = call_codec.decode_from(raw, pos)
        if end != len(raw):
            raise ExtrinsicFormatError("trailing bytes after the call")
        return Extrinsic(raw, blake2_256(raw), call, raw[pos:])
    except ScaleDecodeError as e:
        raise ExtrinsicFormatError(str(e)) from None
    except IndexError:
        raise ExtrinsicFormatError("unexpected end of extrinsic") from None
    except RecursionError:
        raise ExtrinsicFormatError("call nested too deeply") from None


def encode_bare(call_bytes: bytes) -> bytes:
    body = b"\x04" + call_bytes
    return encode_compact(len(body)) + body


def encode_signed(
    call_bytes: bytes,
    signer: bytes,
    signature: EnumValue,
    era: Any,
    nonce: int,
    tip: int = 0,
) -> bytes:
    body = (
        b"\x84"
        + MultiAddress.encode(EnumValue("Id", signer))
        + MultiSignature.encode(signature)
        + Era.encode(era)
        + encode_compact(nonce)
        + encode_compact(tip)
        + call_bytes
    )
    return encode_compact(len(body)) + body


def extra_bytes(era: Any, nonce: int, tip: int = 0) -> bytes:
    return Era.encode(era) + encode_compact(nonce) + encode_compact(tip)


def sign_and_encode(
    call_bytes: bytes,
    signer: Any,
    *,
    nonce: int,
    genesis_hash: bytes,
    spec_version: int,
    tx_version: int,
    era: Any = "Immortal",
    birth_hash: bytes | None = None,
    tip: int = 0,
) -> bytes:
    """Sign a call with a `Keypair` (sr25519 or ed25519) and encode the extrinsic, as a wallet does."""
    extra = extra_bytes(era, nonce, tip)
    payload = (
        call_bytes
        + extra
        + spec_version.to_bytes(4, "little")
        + tx_version.to_bytes(4, "little")
        + genesis_hash
        + (birth_hash or genesis_hash)
    )
    if len(payload) > 256:
        payload = blake2_256(payload)
    variant = "Sr25519" if signer.crypto == "sr25519" else "Ed25519"
    return encode_signed(
        call_bytes, signer.public_key, EnumValue(variant, signer.sign(payload)), era, nonce, tip
    )
