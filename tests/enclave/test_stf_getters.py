"""Getters: authorization of trusted getters and the encodings of public getter results."""

from __future__ import annotations

import pytest

from integritee.codec.scale import EnumValue, u128
from integritee.crypto.keys import Keypair, dev_keypair
from integritee.enclave.stf.executor import Stf
from integritee.enclave.stf.getters import (
    BucketRange,
    GetterError,
    ParentchainsInfo,
    SessionProxies,
    ShardInfo,
    execute_getter,
)
from integritee.enclave.stf.runtime import IS_NEW_LOGIC
from integritee.enclave.stf.state import ShardState
from integritee.parentchain.primitives import AccountInfoCodec, Header
from integritee.trusted import calls as T

U = 10**12
MRENCLAVE = b"\x07" * 32
SHARD = MRENCLAVE
ENCLAVE = Keypair.from_seed(b"\x11" * 32, "ed25519")
BOB = dev_keypair("Bob")
EVE = dev_keypair("Eve")


@pytest.fixture
def shard() -> tuple[Stf, ShardState]:
    stf = Stf(MRENCLAVE)
    state = ShardState(b"\x01" * 32)
    stf.init_state(state, ENCLAVE.public_key)
    call = T.balance_shield_through_enclave_bridge_pallet(ENCLAVE.public_key, BOB.public_key, U)
    assert stf.execute_indirect(state, SHARD, call, ENCLAVE).ok
    return stf, state


def trusted(getter: EnumValue, key: Keypair) -> bytes:
    return T.Getter.encode(EnumValue("trusted", T.sign_getter(getter, key)))


def public(name: str) -> bytes:
    return T.Getter.encode(EnumValue("public", name))


def test_account_info_for_the_owner(shard: tuple[Stf, ShardState]) -> None:
    stf, state = shard
    result = execute_getter(state, trusted(EnumValue("account_info", BOB.public_key), BOB))
    assert result is not None
    info = AccountInfoCodec.decode(result)
    assert info == stf.account_info(state, BOB.public_key)
    assert info.data.free == U - U // 571 and info.nonce == 0
    # the decoded form is accepted too
    decoded = T.Getter.decode(trusted(EnumValue("account_info", BOB.public_key), BOB))
    assert execute_getter(state, decoded, MRENCLAVE, SHARD) == result


def test_unknown_account_reads_as_default(shard: tuple[Stf, ShardState]) -> None:
    _, state = shard
    result = execute_getter(state, trusted(EnumValue("account_info", EVE.public_key), EVE))
    assert result == bytes(16) + bytes(48) + IS_NEW_LOGIC.to_bytes(16, "little")


def test_getter_signed_by_someone_else_is_refused(shard: tuple[Stf, ShardState]) -> None:
    _, state = shard
    # Eve signs a getter for Bob's account: she becomes the delegate, and holds no proxy
    with pytest.raises(GetterError, match="MissingPrivileges"):
        execute_getter(state, trusted(EnumValue("account_info", BOB.public_key), EVE))
    # Eve's signature presented as Bob's own
    getter = EnumValue("account_info", BOB.public_key)
    forged = T.TrustedGetterSigned(
        getter, None, EnumValue("Sr25519", EVE.sign(T.TrustedGetter.encode(getter)))
    )
    with pytest.raises(GetterError, match="bad signature"):
        execute_getter(state, T.Getter.encode(EnumValue("trusted", forged)))


def test_delegate_roles(shard: tuple[Stf, ShardState]) -> None:
    stf, state = shard
    reader = Keypair.from_seed(b"\x21" * 32, "ed25519")
    balance_only = Keypair.from_seed(b"\x22" * 32, "ed25519")
    for nonce, (key, role) in enumerate([(reader, "ReadAny"), (balance_only, "ReadBalance")]):
        creds = T.SessionProxyCredentials(role, None, bytes(32))
        call = T.add_session_proxy(BOB.public_key, key.public_key, creds)
        assert stf.execute(state, SHARD, T.sign_call(call, BOB, nonce, MRENCLAVE, SHARD)).ok
    info = execute_getter(state, trusted(EnumValue("account_info", BOB.public_key), reader))
    assert info == execute_getter(state, trusted(EnumValue("account_info", BOB.public_key), BOB))
    assert (
        execute_getter(state, trusted(EnumValue("account_info", BOB.public_key), balance_only))
        == info
    )
    with pytest.raises(GetterError, match="role ReadBalance may not read"):
        execute_getter(
            state,
            trusted(EnumValue("account_info_and_session_proxies", BOB.public_key), balance_only),
        )
    result = execute_getter(
        state, trusted(EnumValue("account_info_and_session_proxies", BOB.public_key), reader)
    )
    assert result is not None
    account, pos = AccountInfoCodec.decode_prefix(result)
    proxies = SessionProxies.decode(result[pos:])
    assert account.data.reserved == 2 * (U // 10) and account.consumers == 1
    assert sorted(p.role_name for p in proxies) == ["ReadAny", "ReadBalance"]
    essentials = execute_getter(
        state, trusted(EnumValue("account_essentials", BOB.public_key), BOB)
    )
    assert essentials == result + b"\x00"


def test_public_getters(shard: tuple[Stf, ShardState]) -> None:
    stf, state = shard
    assert execute_getter(state, public("some_value")) == (42).to_bytes(4, "little")
    issuance = 1000 + U
    assert execute_getter(state, public("total_issuance")) == u128.encode(issuance)
    fees = execute_getter(
        state, T.Getter.encode(EnumValue("public", EnumValue("undistributed_fees", None)))
    )
    assert fees is not None
    real = 1000 + U // 571
    assert real - U // 100 * 10 <= u128.decode(fees) <= real
    assert execute_getter(state, public("note_buckets_info")) == b"\x00\x00"
    assert BucketRange.decode(b"\x00\x00") == {"maybe_first": None, "maybe_last": None}

    stf.init_parentchain_genesis_hash(state, "Integritee", b"\x09" * 32)
    stf.update_parentchain_block(
        state, "Integritee", Header(b"\x00" * 32, 12, b"\x00" * 32, b"\x00" * 32, [])
    )
    info_bytes = execute_getter(state, public("parentchains_info"))
    assert info_bytes is not None
    info = ParentchainsInfo.decode(info_bytes)
    assert info["integritee"]["genesis_hash"] == b"\x09" * 32
    assert info["integritee"]["block_number"] == 12
    assert info["target_a"]["genesis_hash"] is None
    assert info["shielding_target"].name == "Integritee"

    shard_info = execute_getter(state, public("shard_info"))
    assert shard_info == b"\x00\x00\x00\x00"  # no config, no block, no status, Initializing
    stf.on_initialize(state, SHARD, 3, 1_000)
    assert ShardInfo.decode(execute_getter(state, public("shard_info")))["mode"].name == "Normal"


def test_bad_getters(shard: tuple[Stf, ShardState]) -> None:
    _, state = shard
    with pytest.raises(GetterError, match="invalid getter"):
        execute_getter(state, b"\x05")
    with pytest.raises(GetterError, match="asset_total_issuance.*not supported"):
        execute_getter(state, b"\x00\x28\x00")
    with pytest.raises(GetterError, match="AssetId"):
        execute_getter(state, b"\x00\x02\x01\x00")
    with pytest.raises(GetterError, match="invalid getter"):
        execute_getter(state, b"")
