"""Trusted call / getter / operation encodings against hand-built bytes and the original's vectors."""

from __future__ import annotations

import base58
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integritee.codec.scale import EnumValue, ScaleDecodeError
from integritee.crypto.hashing import blake2_256
from integritee.crypto.keys import Keypair, dev_keypair
from integritee.trusted import calls as T

ALICE = dev_keypair("Alice")
BOB = dev_keypair("Bob")
MRENCLAVE = bytes(range(32))
SHARD = bytes(range(32, 64))


def test_direct_call_transfer_layout() -> None:
    call = T.balance_transfer(ALICE.public_key, BOB.public_key, 1000)
    tcs = T.sign_call(call, ALICE, 0, MRENCLAVE, SHARD)
    top = tcs.into_trusted_operation(direct=True)
    encoded = T.TrustedOperation.encode(top)
    expected = (
        b"\x01"  # TrustedOperation::direct_call
        + b"\x02"  # TrustedCall::balance_transfer
        + ALICE.public_key
        + BOB.public_key
        + (1000).to_bytes(16, "little")
        + b"\x00\x00\x00\x00"  # nonce u32
        + b"\x00"  # delegate None
        + b"\x01"  # MultiSignature::Sr25519
        + tcs.signature.value
    )
    assert encoded == expected
    assert len(encoded) == 1 + 1 + 32 + 32 + 16 + 4 + 1 + 1 + 64
    assert T.trusted_operation_hash(top) == blake2_256(expected)
    decoded = T.TrustedOperation.decode(encoded)
    assert decoded.name == "direct_call"
    assert decoded.value == tcs
    assert T.TrustedOperation.encode(tcs.into_trusted_operation(direct=False))[0] == 0


def test_signing_payload_and_verification() -> None:
    call = T.balance_transfer(ALICE.public_key, BOB.public_key, 7)
    payload = T.call_signing_payload(call, 21, MRENCLAVE, SHARD)
    assert payload == T.TrustedCall.encode(call) + (21).to_bytes(4, "little") + MRENCLAVE + SHARD
    tcs = T.sign_call(call, ALICE, 21, MRENCLAVE, SHARD)
    assert tcs.delegate is None and tcs.signer == ALICE.public_key
    assert ALICE.verify(payload, tcs.signature.value)
    assert tcs.verify_signature(MRENCLAVE, SHARD)
    assert not tcs.verify_signature(SHARD, SHARD)  # other mrenclave
    assert not tcs.verify_signature(MRENCLAVE, MRENCLAVE)  # other shard
    other_nonce = T.TrustedCallSigned(call, 22, None, tcs.signature)
    assert not other_nonce.verify_signature(MRENCLAVE, SHARD)
    forged = T.TrustedCallSigned(call, 21, None, EnumValue("Sr25519", BOB.sign(payload)))
    assert not forged.verify_signature(MRENCLAVE, SHARD)
    garbage = T.TrustedCallSigned(call, 21, None, EnumValue("Sr25519", b"\x00" * 3))
    assert not garbage.verify_signature(MRENCLAVE, SHARD)


def test_bytes_wrapped_signature_and_ed25519() -> None:
    key = Keypair.from_seed(b"\x07" * 32, "ed25519")
    call = T.noop(key.public_key)
    payload = T.call_signing_payload(call, 3, MRENCLAVE, SHARD)
    wrapped = b"<Bytes>" + payload + b"</Bytes>"
    assert T.wrap_bytes(payload) == wrapped
    tcs = T.TrustedCallSigned(call, 3, None, EnumValue("Ed25519", key.sign(wrapped)))
    assert tcs.verify_signature(MRENCLAVE, SHARD)
    assert T.TrustedCallSignedCodec.encode(tcs)[-65] == 0  # MultiSignature::Ed25519


def test_signing_with_another_key_names_the_delegate() -> None:
    call = T.balance_transfer(ALICE.public_key, BOB.public_key, 1)
    tcs = T.sign_call(call, BOB, 0, MRENCLAVE, SHARD)
    assert tcs.delegate == BOB.public_key
    assert tcs.signer == BOB.public_key and tcs.sender == ALICE.public_key
    assert tcs.verify_signature(MRENCLAVE, SHARD)
    encoded = tcs.encode()
    assert encoded[1 + 32 + 32 + 16 + 4 :][:33] == b"\x01" + BOB.public_key
    assert T.TrustedCallSigned.decode(encoded) == tcs


def test_original_dapp_extension_signed_call() -> None:
    # ita_stf trusted_call.rs `extension_dapp_verify_signature_works`: signed in a browser with
    # polkadot-js `signRaw`, i.e. over the <Bytes>-wrapped payload.
    raw = bytes(
        [
            3, 6, 72, 250, 19, 15, 144, 30, 85, 114, 224, 117, 219, 65, 218, 30, 241, 136, 74, 157,
            10, 202, 233, 233, 100, 255, 63, 64, 102, 81, 215, 65, 60, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0,
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 73, 110, 99, 111, 103, 110, 105, 116, 101, 101, 84, 101,
            115, 116, 110, 101, 116, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 48, 51, 1,
            0, 0, 0, 0, 1, 54, 194, 196, 95, 0, 150, 174, 244, 180, 4, 197, 64, 98, 123, 229, 37,
            222, 44, 232, 93, 170, 211, 231, 95, 157, 7, 88, 164, 204, 179, 171, 14, 68, 138, 43,
            37, 155, 15, 245, 130, 224, 239, 138, 44, 83, 46, 63, 200, 86, 5, 182, 47, 195, 144,
            170, 1, 108, 60, 4, 72, 201, 22, 212, 143,
        ]
    )  # fmt: skip
    tcs = T.TrustedCallSigned.decode(raw)
    assert tcs.call.name == "balance_unshield"
    sender, beneficiary, amount, shard = tcs.call.value
    assert (
        beneficiary == bytes(32) and amount == 10 and shard == b"IncogniteeTestnet000000000000003"
    )
    assert tcs.nonce == 1 and tcs.delegate is None and tcs.signature.name == "Sr25519"
    assert tcs.encode() == raw
    mrenclave = base58.b58decode("8weGnjvG3nh6UzoYjqaTjpWjX1ouNPioA1K5134DJc5j")
    shard_id = base58.b58decode("5wePd1LYa5M49ghwgZXs55cepKbJKhj5xfzQGfPeMS7c")
    assert tcs.verify_signature(mrenclave, shard_id)
    assert not tcs.verify_signature(mrenclave, bytes(32))


DAPP_GETTER = bytes(
    [
        1, 0, 6, 72, 250, 19, 15, 144, 30, 85, 114, 224, 117, 219, 65, 218, 30, 241, 136, 74,
        157, 10, 202, 233, 233, 100, 255, 63, 64, 102, 81, 215, 65, 60, 0, 1, 192, 224, 67,
        233, 49, 104, 156, 159, 245, 26, 136, 60, 88, 123, 174, 171, 67, 215, 124, 223, 112,
        16, 133, 35, 138, 241, 36, 68, 27, 41, 63, 14, 103, 132, 201, 130, 216, 43, 81, 123,
        71, 149, 215, 191, 100, 58, 182, 123, 229, 188, 245, 130, 66, 202, 126, 51, 137, 140,
        56, 44, 176, 239, 51, 131,
    ]
)  # fmt: skip


def test_original_dapp_extension_signed_getter() -> None:
    getter = T.Getter.decode(DAPP_GETTER)
    assert getter.name == "trusted"
    signed = getter.value
    assert signed.getter.name == "account_info" and signed.delegate is None
    assert signed.verify_signature()
    assert T.Getter.encode(getter) == DAPP_GETTER
    tampered = bytearray(DAPP_GETTER)
    tampered[5] ^= 1  # another account: the signature no longer fits
    assert not T.Getter.decode(bytes(tampered)).value.verify_signature()


def test_getter_layouts() -> None:
    assert T.Getter.encode(EnumValue("public", "some_value")) == b"\x00\x00"
    assert T.Getter.encode(EnumValue("public", "total_issuance")) == b"\x00\x01"
    assert T.Getter.encode(EnumValue("public", "shard_info")) == b"\x00\x0c"
    assert T.Getter.encode(EnumValue("public", EnumValue("undistributed_fees", None))) == (
        b"\x00\x02\x00"
    )
    signed = T.sign_getter(EnumValue("account_info", ALICE.public_key), ALICE)
    encoded = T.Getter.encode(EnumValue("trusted", signed))
    assert encoded[:35] == b"\x01\x00" + ALICE.public_key + b"\x00"
    assert encoded[35] == 1 and len(encoded) == 35 + 65
    assert ALICE.verify(b"\x00" + ALICE.public_key, encoded[36:])
    top = T.TrustedOperation.encode(EnumValue("get", EnumValue("trusted", signed)))
    assert top == b"\x02" + encoded


def test_call_variant_indices_and_round_trip() -> None:
    a, b = ALICE.public_key, BOB.public_key
    credentials = T.SessionProxyCredentials(EnumValue("Any", None), 99, b"\x05" * 32)
    calls = {
        0: T.noop(a),
        1: T.timestamp_set(a, 123, "TargetA"),
        2: T.balance_transfer(a, b, 5),
        3: T.balance_unshield(a, b, 5, SHARD),
        4: T.balance_shield(a, b, 5, "TargetB"),
        5: T.balance_transfer_with_note(a, b, 5, b"hi"),
        6: T.balance_shield_through_enclave_bridge_pallet(a, b, 5),
        7: T.balance_unshield_through_enclave_bridge_pallet(a, b, 5, SHARD),
        20: T.send_note(a, b, b"note"),
        30: T.add_session_proxy(a, b, credentials),
        255: T.balance_set_balance(a, b, 5, 0),
    }
    for index, call in calls.items():
        encoded = T.TrustedCall.encode(call)
        assert encoded[0] == index
        decoded = T.TrustedCall.decode(encoded)
        assert decoded.name == call.name
        assert T.TrustedCall.encode(decoded) == encoded
        assert T.call_sender(decoded) == a
    assert T.TrustedCall.encode(calls[1])[-9:] == (123).to_bytes(8, "little") + b"\x01"
    assert T.TrustedCall.encode(calls[30])[65:] == b"\x03" + b"\x01" + (99).to_bytes(
        8, "little"
    ) + (b"\x05" * 32)
    assert T.TrustedCall.encode(calls[5])[-3:] == b"\x08hi"


def test_unsupported_and_unknown_variants_fail_clearly() -> None:
    with pytest.raises(T.UnsupportedVariantError, match="assets_transfer.*not supported"):
        T.TrustedCall.decode(b"\x2a" + bytes(100))
    with pytest.raises(T.UnsupportedVariantError, match="evm_call"):
        T.TrustedOperation.decode(b"\x01\x5b" + bytes(100))
    with pytest.raises(ScaleDecodeError, match="unknown variant index 99"):
        T.TrustedCall.decode(b"\x63" + bytes(64))
    with pytest.raises(T.UnsupportedVariantError, match="asset_total_issuance"):
        T.Getter.decode(b"\x00\x28" + bytes(10))
    with pytest.raises(T.UnsupportedVariantError, match="notes_for"):
        T.Getter.decode(b"\x01\x0a" + bytes(40))
    with pytest.raises(T.UnsupportedVariantError, match="AssetId"):
        T.Getter.decode(b"\x00\x02\x01\x00")
    with pytest.raises(ScaleDecodeError):
        T.TrustedOperation.decode(b"\x01\x02" + bytes(10))  # truncated
    with pytest.raises(ScaleDecodeError, match="trailing"):
        T.Getter.decode(b"\x00\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_only_raise_decode_errors(data: bytes) -> None:
    for codec in (T.TrustedOperation, T.Getter, T.TrustedCallSignedCodec):
        try:
            value = codec.decode(data)
        except ScaleDecodeError:
            continue
        assert codec.encode(value) == data


def test_request_is_the_shared_type() -> None:
    request = {"shard": SHARD, "cyphertext": b"\x01\x02"}
    assert T.Request.encode(request) == SHARD + b"\x08\x01\x02"
