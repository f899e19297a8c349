"""Minimal strict DER reader and writer for the Intel SGX PCK certificate extension.

`cryptography` hands the SGX extension (OID 1.2.840.113741.1.13.1) over as opaque bytes, so its
inner SEQUENCE OF { OID, value } structure is decoded here. Only what that extension uses is
supported (single-byte tags, definite lengths, SEQUENCE, OID, INTEGER, OCTET STRING, ENUMERATED,
BOOLEAN); anything else, non-minimal lengths or trailing bytes raise `DerError`.
"""

from __future__ import annotations

from dataclasses import dataclass

TAG_BOOLEAN = 0x01
TAG_INTEGER = 0x02
TAG_OCTET_STRING = 0x04
TAG_OID = 0x06
TAG_ENUMERATED = 0x0A
TAG_SEQUENCE = 0x30

# The extension is a few hundred bytes; nesting is 3-4 levels deep.
_MAX_DEPTH = 8


class DerError(ValueError):
    """Malformed or unsupported DER."""


@dataclass(frozen=True)
class Tlv:
    tag: int
    value: bytes


def read_tlv(data: bytes, offset: int) -> tuple[Tlv, int]:
    """Read one TLV at `offset`; return it and the offset just past it."""
    if offset + 2 > len(data):
        raise DerError("truncated DER element header")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("multi-byte DER tags are not supported")
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError("indefinite DER length")
    else:
        count = first & 0x7F
        if count > 4:
            raise DerError("DER length too large")
        if pos + count > len(data):
            raise DerError("truncated DER length")
        length_bytes = data[pos : pos + count]
        if length_bytes[0] == 0:
            raise DerError("non-minimal DER length")
        length = int.from_bytes(length_bytes, "big")
        if length < 0x80:
            raise DerError("non-minimal DER length")
        pos += count
    end = pos + length
    if end > len(data):
        raise DerError("DER element longer than its container")
    return Tlv(tag, bytes(data[pos:end])), end


def read_all(data: bytes) -> list[Tlv]:
    """Read a concatenation of TLVs that must span `data` exactly."""
    out: list[Tlv] = []
    offset = 0
    while offset < len(data):
        tlv, offset = read_tlv(data, offset)
        out.append(tlv)
    return out


def read_single(data: bytes, tag: int) -> Tlv:
    """Read exactly one TLV of the given tag spanning all of `data`."""
    tlv, end = read_tlv(data, 0)
    if end != len(data):
        raise DerError("trailing bytes after DER element")
    expect_tag(tlv, tag)
    return tlv


def expect_tag(tlv: Tlv, tag: int) -> None:
    if tlv.tag != tag:
        raise DerError(f"expected DER tag 0x{tag:02x}, got 0x{tlv.tag:02x}")


def decode_oid(value: bytes) -> str:
    if not value:
        raise DerError("empty OID")
    arcs: list[int] = []
    acc = 0
    started = False
    for byte in value:
        if not started and byte == 0x80:
            raise DerError("non-minimal OID arc")
        started = True
        acc = (acc << 7) | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(acc)
            acc = 0
            started = False
    if started:
        raise DerError("truncated OID arc")
    first = arcs[0]
    head = [0, first] if first < 40 else [1, first - 40] if first < 80 else [2, first - 80]
    return ".".join(str(a) for a in head + arcs[1:])


def decode_unsigned(tlv: Tlv) -> int:
    """An INTEGER or ENUMERATED that must be non-negative and minimally encoded."""
    if tlv.tag not in (TAG_INTEGER, TAG_ENUMERATED):
        raise DerError(f"expected an INTEGER, got tag 0x{tlv.tag:02x}")
    value = tlv.value
    if not value:
        raise DerError("empty INTEGER")
    if value[0] & 0x80:
        raise DerError("negative INTEGER")
    if len(value) > 1 and value[0] == 0 and not value[1] & 0x80:
        raise DerError("non-minimal INTEGER")
    return int.from_bytes(value, "big")


def decode_boolean(tlv: Tlv) -> bool:
    expect_tag(tlv, TAG_BOOLEAN)
    if tlv.value == b"\x00":
        return False
    if tlv.value == b"\xff":
        return True
    raise DerError("invalid DER BOOLEAN")


def check_depth(depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise DerError("DER nesting too deep")


# -- writer ------------------------------------------------------------------------------------


def encode_tlv(tag: int, value: bytes) -> bytes:
    n = len(value)
    if n < 0x80:
        header = bytes([tag, n])
    else:
        length = n.to_bytes((n.bit_length() + 7) // 8, "big")
        header = bytes([tag, 0x80 | len(length)]) + length
    return header + value


def encode_oid(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = [40 * arcs[0] + arcs[1], *arcs[2:]]
    out = bytearray()
    for arc in body:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        out.extend(reversed(chunk))
    return encode_tlv(TAG_OID, bytes(out))


def encode_unsigned(value: int, tag: int = TAG_INTEGER) -> bytes:
    raw = value.to_bytes(max(1, (value.bit_length() + 7) // 8), "big")
    if raw[0] & 0x80:
        raw = b"\x00" + raw
    return encode_tlv(tag, raw)


def encode_sequence(*items: bytes) -> bytes:
    return encode_tlv(TAG_SEQUENCE, b"".join(items))
