"""Hex helpers for the 0x-prefixed strings used on every JSON-RPC interface."""

from __future__ import annotations


def to_hex(data: bytes | bytearray | memoryview) -> str:
    return "0x" + bytes(data).hex()


def from_hex(value: str, expected_len: int | None = None) -> bytes:
    """Parse a 0x-prefixed (or bare) hex string; raise ValueError with a precise reason."""
    if not isinstance(value, str):
        raise ValueError(f"expected a hex string, got {type(value).__name__}")
    raw = value[2:] if value[:2] in ("0x", "0X") else value
    if len(raw) % 2:
        raise ValueError("hex string has an odd number of digits")
    try:
        data = bytes.fromhex(raw)
    except ValueError:
        raise ValueError("invalid hex string") from None
    if expected_len is not None and len(data) != expected_len:
        raise ValueError(f"expected {expected_len} bytes, got {len(data)}")
    return data
