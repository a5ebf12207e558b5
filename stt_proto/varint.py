"""QUIC-style variable-length integers (RFC 9000, section 16): 1, 2, 4 or 8 bytes, 62-bit values.

The two high bits of the first byte give the length. Decoding takes a buffer and an offset and
returns ``(value, new_offset)``, raising :class:`DecodeError` on truncation so callers never see
IndexError or struct.error.
"""

from __future__ import annotations

import struct

from .errors import DecodeError

MAX_VARINT = (1 << 62) - 1
_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from


def varint_size(value: int) -> int:
    """Bytes needed to encode ``value``."""
    if value < 0x40:
        return 1
    if value < 0x4000:
        return 2
    if value < 0x4000_0000:
        return 4
    if value <= MAX_VARINT:
        return 8
    raise ValueError(f"varint value {value} exceeds 2**62-1")


def encode_varint(value: int) -> bytes:
    """Encode ``value`` (0 .. 2**62-1) in the shortest form."""
    if value < 0:
        raise ValueError(f"varint value {value} is negative")
    if value < 0x40:
        return bytes((value,))
    if value < 0x4000:
        return (value | 0x4000).to_bytes(2, "big")
    if value < 0x4000_0000:
        return (value | 0x8000_0000).to_bytes(4, "big")
    if value <= MAX_VARINT:
        return (value | 0xC000_0000_0000_0000).to_bytes(8, "big")
    raise ValueError(f"varint value {value} exceeds 2**62-1")


def decode_varint(buf: bytes | bytearray | memoryview, offset: int = 0) -> tuple[int, int]:
    """Decode one varint at ``offset``; return ``(value, offset_after)``."""
    # The one- and two-byte forms (most types, ids, lengths and ACK fields) by indexing: no
    # len() call, no slice, no int.from_bytes.
    try:
        first = buf[offset]
        if first < 0x40:
            return first, offset + 1
        if first < 0x80:
            return ((first & 0x3F) << 8) | buf[offset + 1], offset + 2
    except IndexError:
        end = len(buf)
        left = max(0, end - offset)
        raise DecodeError("truncated varint: no bytes left" if not left else
                          f"truncated varint: needs 2 bytes, {left} left") from None
    # The four- and eight-byte forms (packet numbers past 16,383, stream offsets past 16 KiB
    # and 1 GiB) with one unpack_from: no slice, no int.from_bytes (a fifth of the time).
    try:
        if first < 0xC0:
            return _U32(buf, offset)[0] & 0x3FFF_FFFF, offset + 4
        return _U64(buf, offset)[0] & MAX_VARINT, offset + 8
    except struct.error:
        length = 4 if first < 0xC0 else 8
        raise DecodeError(f"truncated varint: needs {length} bytes, "
                          f"{len(buf) - offset} left") from None
