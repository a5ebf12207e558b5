"""Varints, frames, packet headers and handshake payloads: round-trips and hostile input."""

from __future__ import annotations

import contextlib

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto import frames as F
from stt_proto.errors import CryptoError, DecodeError, FrameError, PacketError, ProtocolError
from stt_proto.handshake_payload import (
    Setting,
    TransportSettings,
    decode_payload,
    decode_preference,
    negotiate_cipher,
)
from stt_proto.packet import (
    PacketCipher,
    PacketType,
    build_long_packet,
    parse_packet,
)
from stt_proto.varint import MAX_VARINT, decode_varint, encode_varint, varint_size

varints = st.integers(0, MAX_VARINT)
small = st.integers(0, 1 << 30)


@given(varints)
def test_varint_round_trip(value: int) -> None:
    raw = encode_varint(value)
    assert len(raw) == varint_size(value)
    assert decode_varint(raw + b"junk") == (value, len(raw))


@given(varints)
def test_truncated_varint_raises_decode_error(value: int) -> None:
    raw = encode_varint(value)
    for cut in range(len(raw)):
        with pytest.raises(DecodeError):
            decode_varint(raw[:cut])


def test_varint_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        encode_varint(MAX_VARINT + 1)
    with pytest.raises(ValueError):
        encode_varint(-1)


@st.composite
def ack_frames(draw: st.DrawFn) -> F.AckFrame:
    count = draw(st.integers(1, 20))
    top = draw(st.integers(0, 1 << 40))
    ranges = []
    hi = top
    for _ in range(count):
        lo = max(0, hi - draw(st.integers(0, 50)))
        ranges.append((lo, hi))
        hi = lo - draw(st.integers(2, 100))
        if hi < 0:
            break
    return F.AckFrame(tuple(ranges), draw(small))


data = st.binary(max_size=300)
frames = st.one_of(
    st.builds(F.PaddingFrame, st.integers(1, 40)),
    st.just(F.PingFrame()),
    ack_frames(),
    st.builds(F.StreamFrame, varints, small, data, st.booleans()),
    st.builds(F.ResetStreamFrame, varints, varints, varints),
    st.builds(F.StopSendingFrame, varints, varints),
    st.builds(F.MaxDataFrame, varints),
    st.builds(F.MaxStreamDataFrame, varints, varints),
    st.builds(F.MaxStreamsFrame, varints),
    st.builds(F.DataBlockedFrame, varints),
    st.builds(F.StreamDataBlockedFrame, varints, varints),
    st.builds(F.DatagramFrame, data),
    st.builds(F.CloseFrame, varints, st.text(max_size=100), st.booleans()),
    st.builds(F.KeyUpdateFrame, varints),
    st.just(F.HandshakeDoneFrame()),
)


def _merge_padding(items: list[F.Frame]) -> list[F.Frame]:
    merged: list[F.Frame] = []
    for frame in items:
        if isinstance(frame, F.PaddingFrame) and merged and isinstance(merged[-1], F.PaddingFrame):
            merged[-1] = F.PaddingFrame(merged[-1].length + frame.length)
        else:
            merged.append(frame)
    return merged


@given(st.lists(frames, min_size=1, max_size=8))
def test_frames_round_trip(items: list[F.Frame]) -> None:
    assert F.parse_frames(F.encode_frames(items)) == _merge_padding(items)


@settings(max_examples=500)
@given(st.binary(max_size=200))
def test_arbitrary_payload_raises_only_protocol_errors(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        F.parse_frames(raw)


BOUNDARIES = [0, 0x3F, 0x40, 0x3FFF, 0x4000, 0x3FFF_FFFF, 0x4000_0000, (1 << 62) - 1]


@pytest.mark.parametrize("stream_id", BOUNDARIES)
@pytest.mark.parametrize("offset", BOUNDARIES)
@pytest.mark.parametrize("length", [0, 0x3F, 0x40, 0x3FFF, 0x4000, 65_000])
def test_stream_fields_at_every_varint_boundary(stream_id: int, offset: int, length: int) -> None:
    """The receive path reads the usual STREAM field forms by indexing: every form decodes,
    and every truncation is a DecodeError."""
    out = bytearray()
    data = bytes(range(256)) * (length // 256) + bytes(length % 256)
    F.encode_stream_frame(out, stream_id, offset, data, False)
    raw = memoryview(bytes(out))
    if offset + length > MAX_VARINT:
        with pytest.raises(FrameError):
            F.decode_stream_fields(raw, 1)
        return
    got_id, got_offset, got_data, end = F.decode_stream_fields(raw, 1)
    assert (got_id, got_offset, bytes(got_data), end) == (stream_id, offset, data, len(out))
    header = len(out) - length
    for cut in range(1, header):
        with pytest.raises(DecodeError):
            F.decode_stream_fields(raw[:cut], 1)


@pytest.mark.parametrize("stream_id", BOUNDARIES)
@pytest.mark.parametrize("offset", BOUNDARIES[:-1])
@pytest.mark.parametrize("length", [0, 0x3F, 0x40, 0x3FFF, 0x4000, 65_000])
def test_bulk_stream_frame_bytes_equal_the_general_encoder(stream_id: int, offset: int,
                                                           length: int) -> None:
    """stream_frame_bytes packs a transfer's usual field forms at once: every form, inside
    and outside the packed one, gives exactly encode_stream_frame's bytes."""
    data = memoryview(bytes(range(256)) * (length // 256) + bytes(length % 256))
    out = bytearray()
    F.encode_stream_frame(out, stream_id, offset, data, False)
    assert F.stream_frame_bytes(stream_id, offset, data) == bytes(out)


@given(st.integers(0, (1 << 62) - 1), st.integers(0, (1 << 62) - 1), st.integers(0, 70_000))
def test_stream_frame_bytes_equal_the_general_encoder_for_any_fields(
        stream_id: int, offset: int, length: int) -> None:
    """The fast path (one struct pack, offsets to 1 GiB and past it) and the general one
    give encode_stream_frame's bytes for every id, offset and length."""
    data = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    out = bytearray()
    F.encode_stream_frame(out, stream_id, offset, memoryview(data), False)
    assert F.stream_frame_bytes(stream_id, offset, memoryview(data)) == bytes(out)
    assert F.stream_frame_bytes(stream_id, offset, data) == bytes(out)


@given(st.lists(frames, min_size=1, max_size=4), st.data())
def test_truncated_frames_never_escape(items: list[F.Frame], draw: st.DataObject) -> None:
    raw = F.encode_frames(items)
    cut = draw.draw(st.integers(0, len(raw)))
    with contextlib.suppress(ProtocolError):
        F.parse_frames(raw[:cut])


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "no frames"),
        (b"\x3f", "unknown frame type"),
        (F.encode_varint(0x02) + encode_varint(3) + b"\x00\x00" + encode_varint(9), "below"),
        (b"\x02\x05\x00" + encode_varint(300), "ranges exceeds"),
        (b"\x1c\x00\x02\xff\xfe", "UTF-8"),
        (b"\x08\x01\x00\x10abc", "claims 16 bytes"),
        (b"\x1c\x00" + encode_varint(2000) + bytes(2000), "exceeds 1024"),
    ],
)
def test_specific_frame_errors_name_the_problem(raw: bytes, message: str) -> None:
    with pytest.raises(DecodeError, match=message):
        F.parse_frames(raw)


@given(ack_frames(), st.binary(max_size=8))
def test_ack_fields_decode_as_the_frame_does(frame: F.AckFrame, tail: bytes) -> None:
    """The receive path reads ACKs with decode_ack_fields, without a frame object: the same
    ranges, delay and end as the ACK frame's own decoder, and the same errors on truncation."""
    out = bytearray()
    F.encode_ack(out, frame.ranges, frame.ack_delay)
    encoded = bytes(out) + tail
    ranges, delay, end = F.decode_ack_fields(memoryview(encoded), 1)
    assert (ranges, delay, end) == (frame.ranges, frame.ack_delay, len(out))
    for cut in range(1, len(out)):
        with pytest.raises(DecodeError):
            F.decode_ack_fields(memoryview(encoded[:cut]), 1)


def test_ack_encoding_rejects_bad_ranges() -> None:
    with pytest.raises(ValueError):
        F.encode_frames([F.AckFrame(((5, 9), (4, 4)))])
    with pytest.raises(ValueError):
        F.encode_frames([F.AckFrame(())])


def test_close_reason_is_truncated_to_limit() -> None:
    frame = F.CloseFrame(1, "x" * 5000)
    (decoded,) = F.parse_frames(F.encode_frames([frame]))
    assert isinstance(decoded, F.CloseFrame)
    assert len(decoded.reason) == F.MAX_REASON_BYTES


def test_ack_eliciting_classification() -> None:
    assert not F.is_ack_eliciting([F.AckFrame(((0, 0),)), F.PaddingFrame(3)])
    assert F.is_ack_eliciting([F.PingFrame()])


# -- packets ------------------------------------------------------------------------------------

CID = b"\x01" * 8


@given(st.sampled_from([PacketType.INITIAL, PacketType.HANDSHAKE, PacketType.FINISH,
                        PacketType.RETRY, PacketType.REFUSE]),
       st.binary(min_size=8, max_size=8), st.binary(min_size=8, max_size=8),
       st.binary(max_size=64), st.binary(max_size=200), st.integers(0, 5))
def test_long_header_round_trip(ptype: PacketType, dcid: bytes, scid: bytes, token: bytes,
                                body: bytes, code: int) -> None:
    raw = build_long_packet(ptype, dcid, scid, body, token=token, refuse_code=code)
    packet = parse_packet(raw)
    assert (packet.type, packet.dcid, packet.scid) == (ptype, dcid, scid)
    if ptype in (PacketType.INITIAL, PacketType.RETRY):
        assert packet.token == token
    if ptype is PacketType.REFUSE:
        assert packet.refuse_code == code
    assert bytes(packet.body) == body


@settings(max_examples=500)
@given(st.binary(max_size=120))
def test_arbitrary_datagrams_raise_only_packet_errors(raw: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        parse_packet(raw)


@pytest.mark.parametrize("cipher", PacketCipher.NAMES)
@given(pn=st.integers(0, 1 << 40), phase=st.integers(0, 1),
       payload=st.binary(min_size=1, max_size=500))
def test_sealed_packet_round_trip(cipher: str, pn: int, phase: int, payload: bytes) -> None:
    key = bytes(range(32))
    raw = PacketCipher(cipher, key).seal(CID, pn, phase, payload)
    packet = parse_packet(raw)
    assert (packet.type, packet.packet_number, packet.key_phase) == (PacketType.DATA, pn, phase)
    assert PacketCipher(cipher, key).open(packet) == payload


@pytest.mark.parametrize("pn", [0, 0x3F, 0x40, 0x3FFF, 0x4000, 0x3FFF_FFFF, 0x4000_0000,
                                (1 << 62) - 1])
@pytest.mark.parametrize("form", [bytes, bytearray, memoryview])
def test_packet_number_forms_parse_from_any_buffer(pn: int, form: type) -> None:
    """parse_packet reads the 1-, 2- and 4-byte packet numbers by indexing, the 8-byte one
    with decode_varint; each boundary, from the buffer types the runtimes hand in."""
    raw = PacketCipher("AESGCM", bytes(32)).seal(CID, pn, 1, b"x")
    packet = parse_packet(form(raw))
    assert (packet.packet_number, packet.key_phase, packet.dcid) == (pn, 1, CID)
    assert bytes(packet.header) + bytes(packet.body) == raw
    assert PacketCipher("AESGCM", bytes(32)).open(packet) == b"x"
    with pytest.raises(PacketError, match="too short"):
        parse_packet(form(raw[:-1 - len(b"x")]))  # the tag, but no payload byte


@pytest.mark.parametrize("cipher", PacketCipher.NAMES)
def test_any_flipped_bit_fails_authentication(cipher: str) -> None:
    key = bytes(32)
    raw = PacketCipher(cipher, key).seal(CID, 77, 0, b"frames")
    for index in range(len(raw)):
        forged = bytearray(raw)
        forged[index] ^= 0x01
        try:
            packet = parse_packet(forged)
        except PacketError:
            continue
        with pytest.raises(CryptoError):
            PacketCipher(cipher, key).open(packet)


def test_next_generation_key_differs_and_is_deterministic() -> None:
    a = PacketCipher("AESGCM", bytes(32))
    assert a.next_generation().key != a.key
    assert a.next_generation().key == PacketCipher("AESGCM", bytes(32)).next_generation().key


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\x01", "shorter"),
        (b"\x02\x06" + CID + b"\x00" * 20, "version"),
        (b"\x01\x26" + CID + b"\x00" * 20, "reserved"),
        (b"\x01\x09" + CID + b"\x00" * 20, "unknown packet type"),
        (b"\x01\x06" + CID + b"\x00" * 5, "too short"),
        (b"\x01\x11" + CID * 2, "key phase"),
        (b"\x01\x01" + CID * 2 + encode_varint(300), "exceeds"),
        (b"\x01\x01" + CID * 2 + b"\x05ab", "truncated"),
    ],
)
def test_specific_packet_errors(raw: bytes, message: str) -> None:
    with pytest.raises(PacketError, match=message):
        parse_packet(raw)


# -- handshake payloads ----------------------------------------------------------------------------


@settings(max_examples=300)
@given(st.binary(max_size=100))
def test_payload_decoders_raise_only_protocol_errors(raw: bytes) -> None:
    for decoder in (decode_payload, TransportSettings.decode, decode_preference):
        with contextlib.suppress(ProtocolError):
            decoder(raw)  # type: ignore[operator]


@given(st.integers(1200, 65507), st.lists(st.integers(1, MAX_VARINT), min_size=6, max_size=6))
def test_settings_round_trip(frame: int, values: list[int]) -> None:
    """Every setting survives the trip, and the records are (Setting key, value) in the
    enum's order, each a varint pair: the wire form the peer reads."""
    settings_ = TransportSettings(frame, *values)
    raw = settings_.encode()
    assert TransportSettings.decode(raw) == settings_
    names = [field.name for field in attrs.fields(TransportSettings)]
    expected = b"".join(encode_varint(key) + encode_varint(getattr(settings_, name))
                        for key, name in zip(Setting, names, strict=True))
    assert raw == expected


def test_cipher_negotiation_rule() -> None:
    both = ("AESGCM", "ChaChaPoly")
    chacha_first = ("ChaChaPoly", "AESGCM")
    assert negotiate_cipher(both, both) == "AESGCM"
    assert negotiate_cipher(both, chacha_first) == "ChaChaPoly"
    assert negotiate_cipher(chacha_first, both) == "ChaChaPoly"
    assert negotiate_cipher(("ChaChaPoly",), ("ChaChaPoly",)) == "ChaChaPoly"


def test_frame_error_is_a_decode_error() -> None:
    assert issubclass(FrameError, DecodeError)
