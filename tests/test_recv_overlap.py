"""Out-of-order stream data is bounded by the window in bytes whatever the frame layout:
overlapping and duplicated frames are trimmed on arrival (issue 21, item 4)."""

from __future__ import annotations

import itertools
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.streams import SEGMENT_MIN, RecvSide
from stt_proto.varint import encode_varint

WINDOW = 1 << 20


def _check_segments(recv: RecvSide) -> None:
    """Segments are disjoint, above the read offset, indexed by their ends, and of two that
    touch, one holds at least SEGMENT_MIN bytes (tiny pieces are merged)."""
    segments = recv._segments or {}  # (an idle side holds the shared empty tuple)
    spans = sorted((start, start + len(data)) for start, data in segments.items())
    assert all(a > recv.read_offset for a, _ in spans)
    assert (recv._ends or {}) == {b: a for a, b in spans}
    for (a, b), (c, d) in itertools.pairwise(spans):
        assert b <= c
        assert b < c or max(b - a, d - c) >= SEGMENT_MIN


def _held(recv: RecvSide) -> int:
    """Every byte the receive side holds: out of order, in order not yet cut, and cut."""
    return recv.buffered_bytes + recv._parts_bytes + sum(
        m if isinstance(m, int) else len(m) for m in recv.messages)  # (an int: held whole)


def test_frames_each_one_byte_past_the_last_stay_within_the_window() -> None:
    """The issue's layout: 60,000 frames of 15.9 KB, each one byte past the last, all out of
    order (byte 0 missing). Before the fix each was buffered whole: 986 MiB."""
    frames, size = 60_000, 15_900
    body_len = frames + size - 4  # the message exactly ends with the last frame
    message = bytes(i * 7 % 251 for i in range(body_len))
    data = encode_varint(body_len) + message
    assert len(data) == frames + size
    recv = RecvSide(window=WINDOW, max_message=WINDOW)
    tracemalloc.start()
    for i in range(1, frames + 1):
        packet = data[i : i + size] + bytes(64)  # each frame a view of a packet of its own
        recv.on_data(i, memoryview(packet)[: min(size, len(data) - i)], False)
        if i % 1000 == 0:
            assert recv.buffered_bytes <= i + size <= WINDOW
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert recv.buffered_bytes == len(data) - 1  # each byte once
    # the first frame, kept as its view, and the run of one-byte pieces after it, merged
    assert len(recv._segments) == 2
    assert peak < 4 * len(data)  # was 60,000 packets held alive
    recv.on_data(0, data[:1], False)
    assert recv.pop_message() == message and recv.pop_message() is None
    assert recv.read_offset == len(data) and recv.buffered_bytes == 0


def test_frames_each_one_byte_before_the_last_deliver_exactly() -> None:
    """The mirror image: every frame starts one byte before the one held, so each adds a
    byte in front of a segment."""
    message = bytes(range(256)) * 20
    data = encode_varint(len(message)) + message
    recv = RecvSide(window=WINDOW, max_message=WINDOW)
    for i in range(len(data) - 1, 0, -1):
        recv.on_data(i, memoryview(data)[i : i + 300], False)
        assert recv.buffered_bytes == len(data) - i
        _check_segments(recv)
    assert len(recv._segments) <= len(data) // SEGMENT_MIN + 1  # not one per frame
    recv.on_data(0, data[:1], False)
    assert recv.pop_message() == message and recv.buffered_bytes == 0


_small = st.lists(st.binary(max_size=200), min_size=1, max_size=6)
# Messages and frames past SEGMENT_MIN, so pieces are kept as views as well as merged.
_large = st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_overlapping_duplicated_frames_in_any_order_deliver_the_message(
        draw: st.DataObject) -> None:
    """Frames of a message (a cover of it, plus arbitrary overlapping and repeated ones), in
    any order, as views of packets of their own: exactly the messages come out, and after
    every frame the bytes held out of order are exactly the distinct bytes received above
    the read offset, so never more than the window."""
    large = draw.draw(st.booleans())
    messages = draw.draw(_large if large else _small)
    data = b"".join(encode_varint(len(m)) + m for m in messages)
    cuts = sorted(set(draw.draw(st.lists(st.integers(0, len(data)), max_size=10))))
    bounds = [0, *cuts, len(data)]
    frames = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    extra = draw.draw(st.lists(st.tuples(st.integers(0, len(data)),
                                         st.integers(1, 2000 if large else 120)),
                               max_size=30))
    frames += [(a, min(len(data), a + n)) for a, n in extra if a < len(data)]
    frames += draw.draw(st.lists(st.sampled_from(frames), max_size=10))  # duplicates
    order = draw.draw(st.permutations(frames))
    window = len(data)  # as tight as the data allows
    recv = RecvSide(window=window, max_message=window)
    seen = bytearray(len(data))  # 1 where a byte has arrived
    out = []
    for a, b in order:
        packet = bytes(5) + data[a:b] + bytes(b - a)  # a view of a bigger packet
        recv.on_data(a, memoryview(packet)[5 : 5 + b - a], b == len(data))
        seen[a:b] = b"\x01" * (b - a)
        assert recv.buffered_bytes == seen.count(1, recv.read_offset)
        assert _held(recv) <= window
        _check_segments(recv)
        while (message := recv.pop_message()) is not None:
            out.append(message)
    assert out == messages
    assert recv.finished and recv.buffered_bytes == 0 and not recv._segments


def test_held_bytes_counts_the_message_being_assembled() -> None:
    """stream_stats' bytes_buffered_in: unread messages, the partial one and out-of-order
    pieces (it read 0 for a message still being assembled)."""
    body = bytes(range(256)) * 40
    wire = encode_varint(len(body)) + body
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    header = len(wire) - len(body)  # the length prefix, once read, is not held
    recv.on_data(0, wire[:4000], False)
    assert recv.held_bytes == 4000 - header
    recv.on_data(6000, wire[6000:8000], False)
    assert recv.held_bytes == 6000 - header
    recv.on_data(4000, wire[4000:], False)
    assert recv.held_bytes == len(wire)
    assert recv.pop_message() == body
    assert recv.held_bytes == 0
