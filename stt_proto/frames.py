"""The frame codec: frames (``frame_types.py``, re-exported here) to bytes and back.

Each frame starts with a varint type. Codecs are pure functions: :func:`encode_frame` appends to a
``bytearray``; :func:`parse_frames` returns the frames of a payload or raises a
:class:`~stt_proto.errors.FrameError` or :class:`~stt_proto.errors.DecodeError` saying
what was wrong.
Byte-level layouts are in ``docs/wire-format.md``.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable

from .errors import DecodeError, FrameError
from .frame_types import (
    MAX_ACK_RANGES,
    MAX_FILL_FRAMES,
    MAX_FRAMES_PER_PACKET,
    MAX_REASON_BYTES,
    NON_ACK_ELICITING,
    PATH_DATA_LEN,
    AckFrame,
    CloseFrame,
    DataBlockedFrame,
    DatagramFrame,
    Frame,
    FrameType,
    HandshakeDoneFrame,
    KeyUpdateFrame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    ResetStreamFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    is_ack_eliciting,
)
from .varint import MAX_VARINT, decode_varint, encode_varint

_U32 = struct.Struct(">I").unpack_from
_U64 = struct.Struct(">Q").unpack_from
# A bulk STREAM frame header: 1-byte id, a 4-byte offset (16 KiB to 1 GiB) or an 8-byte one
# (past 1 GiB: a transfer at 1 GB/s is there within a second), then a 2-byte length (frames
# under 16 KiB) or a 4-byte one (64 KB frames).
_BULK_STREAM_HEADER = struct.Struct(">BBIH").pack
_BULK_STREAM_HEADER_LONG = struct.Struct(">BBII").pack
_FAR_STREAM_HEADER = struct.Struct(">BBQH").pack
_FAR_STREAM_HEADER_LONG = struct.Struct(">BBQI").pack

Buffer = bytes | bytearray | memoryview

# -- encoding ---------------------------------------------------------------------------------


_ACK_TYPE = bytes((FrameType.ACK,))


def _check(value: int, what: str) -> int:
    if not 0 <= value <= MAX_VARINT:
        raise ValueError(f"{what} {value} outside 0..2**62-1")
    return value


def encode_stream_frame(out: bytearray, stream_id: int, offset: int,
                        data: bytes | bytearray | memoryview, fin: bool) -> None:
    """Append a STREAM frame without building a :class:`StreamFrame` (the send hot path)."""
    _encode_stream_header(out, stream_id, offset, len(data), fin)
    out += data


def _encode_stream_header(out: bytearray, stream_id: int, offset: int, length: int,
                          fin: bool) -> None:
    """Append a STREAM frame's type, id, offset and length: all of it but the data."""
    out.append(0x09 if fin else 0x08)
    if stream_id < 0x40:
        out.append(stream_id)
    else:
        out += encode_varint(stream_id)
    if offset < 0x40:
        out.append(offset)
    elif 0x4000 <= offset < 0x4000_0000:  # a transfer's usual offsets, 16 KiB to 1 GiB
        out += (offset | 0x8000_0000).to_bytes(4, "big")
    elif 0x4000_0000 <= offset <= MAX_VARINT:  # and past 1 GiB
        out += (offset | 0xC000_0000_0000_0000).to_bytes(8, "big")
    else:
        out += encode_varint(offset)
    if 0x40 <= length < 0x4000:
        out += (length | 0x4000).to_bytes(2, "big")
    else:
        out += encode_varint(length)


def stream_frame_bytes(stream_id: int, offset: int, data: bytes | memoryview) -> bytes:
    """A STREAM frame without FIN as one ``bytes`` (a bulk transfer's packet payload), made
    with a single copy of ``data``. A transfer's usual fields (a small id, an offset from
    16 KiB on, a length from 64 B to 1 GiB) take one struct pack; any other form is encoded
    as by :func:`encode_stream_frame`, to the same bytes."""
    length = len(data)
    if stream_id < 0x40 and 0x4000 <= offset <= MAX_VARINT and 0x40 <= length < 0x4000_0000:
        short = length < 0x4000
        if offset < 0x4000_0000:
            pack = _BULK_STREAM_HEADER if short else _BULK_STREAM_HEADER_LONG
            offset |= 0x8000_0000
        else:
            pack = _FAR_STREAM_HEADER if short else _FAR_STREAM_HEADER_LONG
            offset |= 0xC000_0000_0000_0000
        return pack(0x08, stream_id, offset, length | (0x4000 if short else 0x8000_0000)) + data
    out = bytearray()
    _encode_stream_header(out, stream_id, offset, length, False)
    return bytes(out) + data


def encode_ack(out: bytearray, ranges: tuple[tuple[int, int], ...], ack_delay: int) -> None:
    """Append an ACK frame: ``ranges`` inclusive, highest first; ``ack_delay`` in us."""
    if not ranges or len(ranges) > MAX_ACK_RANGES:
        raise ValueError(f"an ACK frame holds 1..{MAX_ACK_RANGES} ranges")
    first, largest = ranges[0]
    if first > largest:
        raise ValueError("ACK range first > last")
    v = encode_varint
    out += b"".join((_ACK_TYPE, v(_check(largest, "largest acknowledged")),
                     v(_check(ack_delay, "ack delay")), v(len(ranges) - 1), v(largest - first)))
    previous_first = first
    for lo, hi in ranges[1:]:
        if not lo <= hi <= previous_first - 2:
            raise ValueError("ACK ranges must be disjoint, separated and descending")
        out += v(previous_first - hi - 2)
        out += v(hi - lo)
        previous_first = lo


def encode_frame(frame: Frame, out: bytearray) -> None:
    """Append the encoding of ``frame`` to ``out``."""
    v = encode_varint
    if isinstance(frame, StreamFrame):
        encode_stream_frame(out, _check(frame.stream_id, "stream id"),
                            _check(frame.offset, "offset"), frame.data, frame.fin)
    elif isinstance(frame, AckFrame):
        encode_ack(out, frame.ranges, frame.ack_delay)
    elif isinstance(frame, PaddingFrame):
        out += bytes(frame.length)
    elif isinstance(frame, PingFrame):
        out += v(FrameType.PING)
    elif isinstance(frame, ResetStreamFrame):
        out += v(FrameType.RESET_STREAM) + v(frame.stream_id) + v(frame.error_code)
        out += v(frame.final_size)
    elif isinstance(frame, StopSendingFrame):
        out += v(FrameType.STOP_SENDING) + v(frame.stream_id) + v(frame.error_code)
    elif isinstance(frame, MaxDataFrame):
        out += v(FrameType.MAX_DATA) + v(frame.maximum)
    elif isinstance(frame, MaxStreamDataFrame):
        out += v(FrameType.MAX_STREAM_DATA) + v(frame.stream_id) + v(frame.maximum)
    elif isinstance(frame, MaxStreamsFrame):
        out += v(FrameType.MAX_STREAMS) + v(frame.maximum)
    elif isinstance(frame, DataBlockedFrame):
        out += v(FrameType.DATA_BLOCKED) + v(frame.limit)
    elif isinstance(frame, StreamDataBlockedFrame):
        out += v(FrameType.STREAM_DATA_BLOCKED) + v(frame.stream_id) + v(frame.limit)
    elif isinstance(frame, DatagramFrame):
        out += v(FrameType.DATAGRAM) + v(len(frame.data))
        out += frame.data
    elif isinstance(frame, CloseFrame):
        reason = frame.reason.encode("utf-8")
        if len(reason) > MAX_REASON_BYTES:
            reason = reason[:MAX_REASON_BYTES].decode("utf-8", "ignore").encode("utf-8")
        kind = FrameType.APPLICATION_CLOSE if frame.application else FrameType.CLOSE
        out += v(kind) + v(frame.error_code) + v(len(reason))
        out += reason
    elif isinstance(frame, KeyUpdateFrame):
        out += v(FrameType.KEY_UPDATE) + v(frame.generation)
    elif isinstance(frame, HandshakeDoneFrame):
        out += v(FrameType.HANDSHAKE_DONE)
    elif isinstance(frame, (PathChallengeFrame, PathResponseFrame)):
        if len(frame.data) != PATH_DATA_LEN:
            raise ValueError(f"path data must be {PATH_DATA_LEN} bytes, got {len(frame.data)}")
        out += v(FrameType.PATH_CHALLENGE if isinstance(frame, PathChallengeFrame)
                 else FrameType.PATH_RESPONSE)
        out += frame.data
    else:  # pragma: no cover - the Union is exhaustive
        raise TypeError(f"not a frame: {frame!r}")


def encode_frames(frames: list[Frame]) -> bytes:
    out = bytearray()
    for frame in frames:
        encode_frame(frame, out)
    return bytes(out)


# -- decoding ---------------------------------------------------------------------------------

_Decoder = Callable[[Buffer, int], tuple[Frame, int]]


def _bytes(buf: Buffer, pos: int, what: str) -> tuple[bytes, int]:
    length, pos = decode_varint(buf, pos)
    end = pos + length
    if end > len(buf):
        raise DecodeError(f"{what} claims {length} bytes but only {len(buf) - pos} remain")
    return bytes(buf[pos:end]), end


def decode_stream_fields(buf: memoryview, pos: int) -> tuple[int, int, memoryview, int]:
    """A STREAM frame's body at ``pos`` (after the type byte) as ``(stream_id, offset, data,
    end)``, ``data`` a view into ``buf``: the receive hot path takes it without a frame
    object, and reads the usual varint forms (a 1-byte id, a 1-, 2- or 4-byte offset, a 1-, 2-
    or 4-byte length) by indexing or one unpack."""
    try:
        first = buf[pos]
        if first < 0x40:
            stream_id = first
            pos += 1
        else:
            stream_id, pos = decode_varint(buf, pos)
        first = buf[pos]
        if first >= 0x80:  # offsets from 16 KiB (4 bytes) and from 1 GiB (8): one unpack
            if first < 0xC0:
                offset = _U32(buf, pos)[0] & 0x3FFF_FFFF
                pos += 4
            else:
                offset = _U64(buf, pos)[0] & MAX_VARINT
                pos += 8
        elif first < 0x40:
            offset = first
            pos += 1
        else:
            offset, pos = decode_varint(buf, pos)
        first = buf[pos]
        if 0x40 <= first < 0x80:
            length = ((first & 0x3F) << 8) | buf[pos + 1]
            pos += 2
        elif 0x80 <= first < 0xC0:  # 16 KiB and longer: 64 KB frames
            length = _U32(buf, pos)[0] & 0x3FFF_FFFF
            pos += 4
        else:
            length, pos = decode_varint(buf, pos)
    except (IndexError, struct.error):
        raise DecodeError("truncated varint in a STREAM frame header") from None
    end = pos + length
    if end > len(buf):
        raise DecodeError(f"STREAM data claims {length} bytes but only {len(buf) - pos} remain")
    if offset + length > MAX_VARINT:
        raise FrameError("STREAM frame extends past the largest possible offset")
    return stream_id, offset, buf[pos:end], end


def _stream(buf: Buffer, pos: int, fin: bool) -> tuple[Frame, int]:
    stream_id, offset, data, pos = decode_stream_fields(memoryview(buf), pos)
    return StreamFrame(stream_id, offset, data, fin), pos


def decode_ack_fields(buf: Buffer, pos: int) -> tuple[tuple[tuple[int, int], ...], int, int]:
    """An ACK frame's body at ``pos`` (after the type byte) as ``(ranges, ack_delay, end)``:
    the receive path hands these to loss recovery without making a frame object."""
    largest, pos = decode_varint(buf, pos)
    delay, pos = decode_varint(buf, pos)
    count, pos = decode_varint(buf, pos)
    if count >= MAX_ACK_RANGES:
        raise FrameError(f"ACK frame with {count + 1} ranges exceeds {MAX_ACK_RANGES}")
    first_len, pos = decode_varint(buf, pos)
    if first_len > largest:
        raise FrameError("ACK first range goes below packet number 0")
    lo = largest - first_len
    if not count:
        return ((lo, largest),), delay, pos
    ranges = [(lo, largest)]
    for _ in range(count):
        gap, pos = decode_varint(buf, pos)
        length, pos = decode_varint(buf, pos)
        hi = lo - gap - 2
        if hi < 0 or length > hi:
            raise FrameError("ACK range goes below packet number 0")
        lo = hi - length
        ranges.append((lo, hi))
    return tuple(ranges), delay, pos


def _ack(buf: Buffer, pos: int) -> tuple[Frame, int]:
    ranges, delay, pos = decode_ack_fields(buf, pos)
    return AckFrame(ranges, delay), pos


def _close(buf: Buffer, pos: int, application: bool) -> tuple[Frame, int]:
    code, pos = decode_varint(buf, pos)
    raw, pos = _bytes(buf, pos, "CLOSE reason")
    if len(raw) > MAX_REASON_BYTES:
        raise FrameError(f"CLOSE reason of {len(raw)} bytes exceeds {MAX_REASON_BYTES}")
    try:
        reason = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError("CLOSE reason is not valid UTF-8") from None
    return CloseFrame(code, reason, application), pos


def _one(cls: Callable[..., Frame], fields: int) -> _Decoder:
    def decode(buf: Buffer, pos: int) -> tuple[Frame, int]:
        values = []
        for _ in range(fields):
            value, pos = decode_varint(buf, pos)
            values.append(value)
        return cls(*values), pos

    return decode


def _datagram(buf: Buffer, pos: int) -> tuple[Frame, int]:
    data, pos = _bytes(buf, pos, "DATAGRAM data")
    return DatagramFrame(data), pos


def _path(cls: Callable[[bytes], Frame]) -> _Decoder:
    def decode(buf: Buffer, pos: int) -> tuple[Frame, int]:
        end = pos + PATH_DATA_LEN
        if end > len(buf):
            raise DecodeError(f"path frame needs {PATH_DATA_LEN} bytes, {len(buf) - pos} remain")
        return cls(bytes(buf[pos:end])), end

    return decode


_ZERO_RUN = re.compile(rb"\x00*")  # a run of PADDING (see decode_frame)

_DECODERS: dict[int, _Decoder] = {
    FrameType.PING: lambda buf, pos: (PingFrame(), pos),
    FrameType.ACK: _ack,
    FrameType.RESET_STREAM: _one(ResetStreamFrame, 3),
    FrameType.STOP_SENDING: _one(StopSendingFrame, 2),
    FrameType.STREAM: lambda buf, pos: _stream(buf, pos, False),
    FrameType.STREAM_FIN: lambda buf, pos: _stream(buf, pos, True),
    FrameType.MAX_DATA: _one(MaxDataFrame, 1),
    FrameType.MAX_STREAM_DATA: _one(MaxStreamDataFrame, 2),
    FrameType.MAX_STREAMS: _one(MaxStreamsFrame, 1),
    FrameType.DATA_BLOCKED: _one(DataBlockedFrame, 1),
    FrameType.STREAM_DATA_BLOCKED: _one(StreamDataBlockedFrame, 2),
    FrameType.CLOSE: lambda buf, pos: _close(buf, pos, False),
    FrameType.APPLICATION_CLOSE: lambda buf, pos: _close(buf, pos, True),
    FrameType.KEY_UPDATE: _one(KeyUpdateFrame, 1),
    FrameType.HANDSHAKE_DONE: lambda buf, pos: (HandshakeDoneFrame(), pos),
    FrameType.PATH_CHALLENGE: _path(PathChallengeFrame),
    FrameType.PATH_RESPONSE: _path(PathResponseFrame),
    FrameType.DATAGRAM: _datagram,
}


def parse_frames(payload: Buffer) -> list[Frame]:
    """Decode every frame of a packet payload. An empty payload is an error (nothing to do),
    and so is one of more than :data:`MAX_FRAMES_PER_PACKET` frames (decoding stops there)."""
    frames: list[Frame] = []
    if not isinstance(payload, bytes):
        payload = bytes(payload)  # STREAM frames keep views into it: it must be immutable
    view = memoryview(payload)
    end = len(view)
    if end == 0:
        raise FrameError("packet payload holds no frames")
    pos = 0
    while pos < end:
        if len(frames) == MAX_FRAMES_PER_PACKET:
            raise FrameError(f"packet carries more than {MAX_FRAMES_PER_PACKET} frames")
        frame, pos = decode_frame(view, pos)
        frames.append(frame)
    return frames


def decode_frame(view: memoryview, pos: int) -> tuple[Frame, int]:
    """The frame at ``pos`` of a payload (a run of PADDING counts as one) and where the next
    begins. STREAM and DATAGRAM data are views into ``view``, which must be immutable."""
    kind = view[pos]
    if kind == 0:  # a run of PADDING: a path-MTU probe is KBs of it, so it is measured in C
        # (a loop per byte took ~2 ms per 16 KiB interpreted; any peer can send such runs)
        end = len(view)
        if bytes(view[pos:]) == bytes(end - pos):  # to the end, as senders pad: one memcmp
            return PaddingFrame(end - pos), end
        match = _ZERO_RUN.match(view, pos)
        stop = match.end() if match is not None else pos + 1
        return PaddingFrame(stop - pos), stop
    kind, pos = decode_varint(view, pos)
    decoder = _DECODERS.get(kind)
    if decoder is None:
        raise FrameError(f"unknown frame type {kind:#x}")
    return decoder(view, pos)


__all__ = [
    "MAX_ACK_RANGES",
    "MAX_REASON_BYTES",
    "MAX_FRAMES_PER_PACKET",
    "MAX_FILL_FRAMES",
    "FrameType",
    "PaddingFrame",
    "PingFrame",
    "AckFrame",
    "StreamFrame",
    "ResetStreamFrame",
    "StopSendingFrame",
    "MaxDataFrame",
    "MaxStreamDataFrame",
    "MaxStreamsFrame",
    "DataBlockedFrame",
    "StreamDataBlockedFrame",
    "DatagramFrame",
    "CloseFrame",
    "KeyUpdateFrame",
    "HandshakeDoneFrame",
    "PATH_DATA_LEN",
    "PathChallengeFrame",
    "PathResponseFrame",
    "Frame",
    "NON_ACK_ELICITING",
    "is_ack_eliciting",
    "Buffer",
    "decode_ack_fields",
    "decode_frame",
    "decode_stream_fields",
    "encode_ack",
    "encode_frame",
    "encode_frames",
    "encode_stream_frame",
    "parse_frames",
    "stream_frame_bytes",
]
