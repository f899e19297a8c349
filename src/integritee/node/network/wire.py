"""The p2p wire format: frames, the authenticated handshake, the messages, peer ids, addresses.

A connection carries frames: a 4-byte big-endian length, then that many bytes (at most
`MAX_FRAME`). The first two frames each way are the handshake:

1. `Hello` (magic "ITEE", protocol version, genesis hash, the node's ed25519 public key, a
   fresh 32-byte nonce, the port it listens on, its roles);
2. `Auth`: the ed25519 signature over
   "integritee-p2p-v1" ++ genesis ++ the *peer's* nonce ++ own public key ++ peer's public key.

Each side checks the other's signature over its own nonce, so a node proves it holds the key
of the identity it claims on this very connection and chain; a peer on another genesis is
refused before anything else is exchanged. Frames are not encrypted (chain data is public).

After the handshake every frame is one SCALE `Message` (an enum, see `Message` below).
Peer ids are shown like libp2p's (base58 of the identity multihash of the protobuf-encoded
ed25519 public key, "12D3KooW..."), so `/ip4/127.0.0.1/tcp/30333/p2p/12D3KooW...` works as a
boot node address; the 32-byte public key in hex is accepted in its place.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
from dataclasses import dataclass

import base58

from integritee.codec.scale import (
    H256,
    BytesCodec,
    Enum,
    FixedBytes,
    Option,
    ScaleDecodeError,
    Struct,
    Vec,
    u8,
    u16,
    u32,
    variant,
)
from integritee.crypto.keys import Keypair, verify
from integritee.parentchain.primitives import HeaderCodec

from ..finality_gadget import VoteCodec

MAGIC = b"ITEE"
PROTOCOL_VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
MAX_HANDSHAKE_FRAME = 1024
MAX_BLOCKS_PER_RESPONSE = 128
MAX_TXS_PER_MESSAGE = 256
MAX_PEERS_PER_MESSAGE = 64
AUTH_CONTEXT = b"integritee-p2p-v1"

ROLE_FULL = 1
ROLE_AUTHORITY = 4

# libp2p: identity multihash (0x00, length 36) of the protobuf PublicKey { Type: Ed25519, Data }.
_PEER_ID_PREFIX = bytes.fromhex("002408011220")


class WireError(ValueError):
    """Malformed or unacceptable data from a peer."""


class HandshakeError(WireError):
    pass


# --- frames


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


async def read_frame(reader: asyncio.StreamReader, max_size: int = MAX_FRAME) -> bytes:
    """One frame; WireError when it announces more than `max_size` bytes."""
    head = await reader.readexactly(4)
    length = int.from_bytes(head, "big")
    if length > max_size:
        raise WireError(f"frame of {length} bytes exceeds the limit of {max_size}")
    return await reader.readexactly(length)


# --- handshake

HelloCodec = Struct(
    "integritee_p2p::Hello",
    [
        ("magic", FixedBytes(4)),
        ("version", u32),
        ("genesis", H256),
        ("public_key", FixedBytes(32)),
        ("nonce", FixedBytes(32)),
        ("listen_port", u16),
        ("roles", u8),
    ],
)


@dataclass
class Hello:
    genesis: bytes
    public_key: bytes
    nonce: bytes
    listen_port: int
    roles: int

    def encode(self) -> bytes:
        return HelloCodec.encode(
            {
                "magic": MAGIC,
                "version": PROTOCOL_VERSION,
                "genesis": self.genesis,
                "public_key": self.public_key,
                "nonce": self.nonce,
                "listen_port": self.listen_port,
                "roles": self.roles,
            }
        )

    @classmethod
    def decode(cls, data: bytes) -> Hello:
        try:
            d = HelloCodec.decode(data)
        except ScaleDecodeError as e:
            raise HandshakeError(f"malformed hello: {e}") from None
        if d["magic"] != MAGIC:
            raise HandshakeError("not an integritee p2p peer (bad magic)")
        if d["version"] != PROTOCOL_VERSION:
            raise HandshakeError(f"unsupported protocol version {d['version']}")
        return cls(d["genesis"], d["public_key"], d["nonce"], d["listen_port"], d["roles"])

    @classmethod
    def new(cls, genesis: bytes, key: Keypair, listen_port: int, roles: int) -> Hello:
        return cls(genesis, key.public_key, os.urandom(32), listen_port, roles)


def auth_payload(genesis: bytes, nonce: bytes, signer: bytes, other: bytes) -> bytes:
    return AUTH_CONTEXT + genesis + nonce + signer + other


def sign_auth(key: Keypair, genesis: bytes, peer_nonce: bytes, peer_key: bytes) -> bytes:
    return key.sign(auth_payload(genesis, peer_nonce, key.public_key, peer_key))


def check_auth(
    signature: bytes, genesis: bytes, own_nonce: bytes, peer_key: bytes, own_key: bytes
) -> None:
    if len(signature) != 64 or not verify(
        "ed25519", auth_payload(genesis, own_nonce, peer_key, own_key), signature, peer_key
    ):
        raise HandshakeError("peer failed to prove its identity (bad handshake signature)")


# --- messages

BlockDataCodec = Struct(
    "integritee_p2p::BlockData",
    [
        ("header", HeaderCodec),
        ("body", BytesCodec(MAX_FRAME)),  # Vec<Extrinsic> as in the block body encoding
        ("justification", Option(BytesCodec(1024 * 1024))),
    ],
)
BlockStart = Enum(
    "integritee_p2p::BlockStart",
    [variant("Hash", 0, (None, H256)), variant("Number", 1, (None, u32))],
)
PeerAddrCodec = Struct(
    "integritee_p2p::PeerAddr",
    [("host", BytesCodec(255)), ("port", u16), ("id", FixedBytes(32))],
)
ASCENDING = 0
DESCENDING = 1

Message = Enum(
    "integritee_p2p::Message",
    [
        variant(
            "Status",
            0,
            ("best_number", u32),
            ("best_hash", H256),
            ("finalized_number", u32),
            ("finalized_hash", H256),
        ),
        # A new block, pushed whole (header, body, justification if known).
        variant("Block", 1, ("block", BlockDataCodec)),
        variant(
            "BlockRequest",
            2,
            ("id", u32),
            ("start", BlockStart),
            ("direction", u8),
            ("max", u32),
        ),
        variant(
            "BlockResponse",
            3,
            ("id", u32),
            ("blocks", Vec(BlockDataCodec, MAX_BLOCKS_PER_RESPONSE)),
        ),
        variant("Transactions", 4, ("extrinsics", Vec(BytesCodec(MAX_FRAME), MAX_TXS_PER_MESSAGE))),
        variant("Vote", 5, ("vote", VoteCodec)),
        variant(
            "Justification",
            6,
            ("hash", H256),
            ("number", u32),
            ("justification", BytesCodec(1024 * 1024)),
        ),
        variant("Peers", 7, ("peers", Vec(PeerAddrCodec, MAX_PEERS_PER_MESSAGE))),
    ],
)


def encode_message(name: str, fields: dict) -> bytes:
    return Message.encode((name, fields))


def decode_message(data: bytes) -> tuple[str, dict]:
    try:
        msg = Message.decode(data)
    except ScaleDecodeError as e:
        raise WireError(f"malformed message: {e}") from None
    return msg.name, msg.value


# --- peer ids and addresses


def peer_id(public_key: bytes) -> str:
    return base58.b58encode(_PEER_ID_PREFIX + public_key).decode()


def parse_peer_id(text: str) -> bytes:
    """The ed25519 public key of a libp2p-style peer id or of a 32-byte hex key."""
    t = text.strip()
    hexpart = t[2:] if t.startswith("0x") else t
    if len(hexpart) == 64:
        try:
            return bytes.fromhex(hexpart)
        except ValueError:
            pass
    try:
        raw = base58.b58decode(t)
    except ValueError:
        raise ValueError(f"not a peer id: {text!r}") from None
    if len(raw) != 38 or not raw.startswith(_PEER_ID_PREFIX):
        raise ValueError(f"not an ed25519 peer id: {text!r}")
    return raw[6:]


@dataclass(frozen=True)
class PeerAddress:
    host: str
    port: int
    peer: bytes | None = None  # expected identity, if known

    def multiaddr(self) -> str:
        try:
            proto = "ip6" if ipaddress.ip_address(self.host).version == 6 else "ip4"
        except ValueError:
            proto = "dns"
        out = f"/{proto}/{self.host}/tcp/{self.port}"
        return out + (f"/p2p/{peer_id(self.peer)}" if self.peer else "")


def parse_address(text: str) -> PeerAddress:
    """`/ip4|ip6|dns|dns4|dns6/HOST/tcp/PORT[/p2p/PEER]` or `HOST:PORT[/PEER]`."""
    t = text.strip()
    if t.startswith("/"):
        parts = t.split("/")[1:]
        if len(parts) not in (4, 6) or parts[0] not in ("ip4", "ip6", "dns", "dns4", "dns6"):
            raise ValueError(f"unsupported multiaddr {text!r}")
        if parts[2] != "tcp" or (len(parts) == 6 and parts[4] != "p2p"):
            raise ValueError(f"unsupported multiaddr {text!r} (need /tcp/PORT[/p2p/ID])")
        host, port_text = parts[1], parts[3]
        peer = parse_peer_id(parts[5]) if len(parts) == 6 else None
    else:
        addr, _, peer_text = t.partition("/")
        host, sep, port_text = addr.rpartition(":")
        if not sep or not host:
            raise ValueError(f"not an address {text!r} (HOST:PORT or a multiaddr)")
        host = host.strip("[]")
        peer = parse_peer_id(peer_text) if peer_text else None
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port in {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"bad port in {text!r}")
    return PeerAddress(host, port, peer)
