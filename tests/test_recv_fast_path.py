"""RecvSide.on_data's in-order fast path against its general twin, on_data_general, state by
state: whatever frames arrive (in order, reordered, overlapping, duplicated, with a FIN, past
the window, with malformed message prefixes), a side that may take the fast path and one that
never does return the same, raise the same and hold the same messages and counters."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.errors import ProtocolViolation
from stt_proto.streams import RecvSide
from stt_proto.varint import encode_varint

WINDOW = 4096
MAX_MESSAGE = 1500


def _observed(side: RecvSide) -> tuple[Any, ...]:
    return (side.read_offset, side._highest, side.final_size, side.finished, side.unread_bytes,
            side.message_bytes, side.messages_cut, side._parts_bytes, side._head,
            side.held_bytes, side.buffered_bytes, side.credit(), list(side.messages))


def _apply(take: Callable[[int, bytes | memoryview, bool], int], offset: int,
           data: memoryview, fin: bool) -> tuple[str, Any]:
    try:
        return "ok", take(offset, data, fin)
    except ProtocolViolation as exc:
        return "violation", str(exc)


@st.composite
def _streams(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    """Mostly well-formed messages; sometimes raw bytes (non-minimal or oversized prefixes).
    With the offsets where a prefix or a message ends: frames cut there hit the edge cases
    (a message completed exactly by a frame's last byte)."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(min_size=1, max_size=3000)), []
    messages = draw(st.lists(st.binary(max_size=1200), min_size=1, max_size=6))
    data, edges = b"", []
    for message in messages:
        prefix = encode_varint(len(message))
        edges += [len(data) + len(prefix) - 1, len(data) + len(prefix)]
        data += prefix + message
        edges.append(len(data))
    return data, edges


@settings(max_examples=500, deadline=None)
@given(st.data())
def test_the_fast_path_does_what_the_general_path_does(draw: st.DataObject) -> None:
    data, edges = draw.draw(_streams())
    size = len(data)
    # In-order frames ending at random offsets and at the edges, then extra frames anywhere
    # (past the end too: beyond the window, refused), each maybe with a FIN; ``then``
    # 1 reads a message after the frame.
    ends = draw.draw(st.lists(st.one_of(st.integers(1, size), *(
        [st.sampled_from(edges)] if edges else [])), max_size=12))
    bounds = sorted({0, size, *(end for end in ends if end > 0)})
    frames = [(a, b - a, 2) for a, b in itertools.pairwise(bounds)]
    frames += draw.draw(st.lists(st.tuples(
        st.integers(0, size + 50), st.integers(0, 1400), st.integers(0, 6)), max_size=10))
    frames = draw.draw(st.permutations(frames)) if draw.draw(st.booleans()) else frames
    flags = draw.draw(st.lists(st.integers(0, 6), min_size=len(frames),
                               max_size=len(frames)))
    fast, general = RecvSide(WINDOW, MAX_MESSAGE), RecvSide(WINDOW, MAX_MESSAGE)
    wire = memoryview(data + bytes(WINDOW * 2))  # bytes past ``data``: room to overrun
    for (start, length, flag), then in zip(frames, flags, strict=True):
        piece = wire[start : start + length]
        fin = flag == 0 or (flag == 2 and start + length == size and then == 0)
        outcome = _apply(fast.on_data, start, piece, fin)
        assert outcome == _apply(general.on_data_general, start, piece, fin)
        assert _observed(fast) == _observed(general)
        if outcome[0] != "ok":
            return  # the session fails here: nothing more arrives on this stream
        if then == 1:
            assert fast.pop_message() == general.pop_message()


def test_the_fast_path_is_taken_for_in_order_data() -> None:
    """So that the equality above is about the fast path: in-order frames leave ``_received``
    empty (the general path records every frame there)."""
    message = encode_varint(3000) + bytes(3000)
    fast, general = RecvSide(WINDOW, 4000), RecvSide(WINDOW, 4000)
    for offset in range(0, len(message), 1000):
        piece = memoryview(message)[offset : offset + 1000]
        assert fast.on_data(offset, piece, False) == general.on_data_general(offset, piece,
                                                                             False)
    assert fast.pop_message() == general.pop_message() == bytes(3000)
    assert not fast._received and general._received
