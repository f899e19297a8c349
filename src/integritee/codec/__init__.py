"""SCALE codec (type descriptors usable for metadata) and hex helpers."""

from integritee.codec.hexutil import from_hex, to_hex
from integritee.codec.scale import decode_compact, encode_compact

__all__ = ["decode_compact", "encode_compact", "from_hex", "to_hex"]
