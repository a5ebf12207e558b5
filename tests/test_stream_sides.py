"""Unit tests of one stream's send and receive sides (reassembly, message cutting, retransmit)."""

from __future__ import annotations

import itertools
import tracemalloc

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.errors import BufferTooSmall, ProtocolViolation
from stt_proto.streams import RecvSide, SendSide
from stt_proto.varint import encode_varint


def framed(*messages: bytes) -> bytes:
    return b"".join(encode_varint(len(m)) + m for m in messages)


def test_late_ack_of_data_declared_lost_cancels_its_retransmission() -> None:
    send = SendSide(max_data=1 << 20)
    send.write_message(bytes(100))
    start, stop, _, _ = send.next_range(1000, 1 << 20)
    send.on_lost(start, stop, False)
    assert send.retransmit
    send.on_acked(start, stop, False)  # the "lost" packet was only late
    assert not send.retransmit
    assert not send.has_data(1 << 20)


def test_read_spanning_chunks_and_inside_one_chunk() -> None:
    send = SendSide(max_data=1 << 20)
    send.write_message(b"abc")
    send.write_message(b"defgh")
    whole = framed(b"abc", b"defgh")
    assert bytes(send.read(0, len(whole))) == whole
    assert bytes(send.read(1, 3)) == b"ab"  # inside the first message's chunk
    assert bytes(send.read(2, 7)) == whole[2:7]


def test_a_small_message_leaves_as_one_view_with_its_prefix() -> None:
    """Messages up to SMALL_MESSAGE are stored with their prefix in one chunk, so a frame
    takes them without a join; larger ones keep the caller's bytes uncopied."""
    from stt_proto.streams import SMALL_MESSAGE

    send = SendSide(max_data=1 << 30)
    small, large = bytearray(b"s" * SMALL_MESSAGE), bytes(SMALL_MESSAGE + 1)
    send.write_message(small)
    send.write_message(memoryview(b"view"))
    send.write_message(large)
    small[0] = 0  # the caller may reuse its buffer once write_message returns
    whole = framed(b"s" * SMALL_MESSAGE, b"view", large)
    assert send.buffered_end == len(whole)
    assert isinstance(send.read(0, len(framed(b"s" * SMALL_MESSAGE))), memoryview)
    assert bytes(send.read(0, len(whole))) == whole
    assert send._chunks[-1] is large


@pytest.mark.parametrize("step", [1, 2, 3, 7, 64, 10_000])
def test_messages_cut_from_arbitrary_fragments(step: int) -> None:
    messages = [b"", b"x", bytes(range(200)) * 3, b"", b"tail"]
    data = framed(*messages)
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    for offset in range(0, len(data), step):
        recv.on_data(offset, memoryview(data)[offset : offset + step], False)
    out = []
    while (message := recv.pop_message()) is not None:
        out.append(message)
    assert out == messages
    assert all(type(m) is bytes for m in out)
    assert recv.unread_bytes == 0
    assert recv.credit() == len(data)


def test_out_of_order_fragments_reassemble() -> None:
    data = framed(b"hello", bytes(5000), b"world")
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    pieces = [(o, data[o : o + 100]) for o in range(0, len(data), 100)]
    for offset, piece in reversed(pieces):
        recv.on_data(offset, piece, False)
    out = []
    while (message := recv.pop_message()) is not None:
        out.append(message)
    assert out == [b"hello", bytes(5000), b"world"]


def test_non_minimal_length_prefix_is_a_protocol_violation() -> None:
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    with pytest.raises(ProtocolViolation, match="minimally"):
        recv.on_data(0, b"\x40\x05hello", False)  # 5 encoded in two bytes


def test_oversized_message_is_refused_as_soon_as_its_prefix_arrives() -> None:
    recv = RecvSide(window=1 << 20, max_message=1000)
    with pytest.raises(ProtocolViolation, match="max_message_size"):
        recv.on_data(0, encode_varint(1001), False)


def test_small_views_do_not_pin_large_packets() -> None:
    """A peer sending 1-byte frames in big packets cannot make us hold big packets alive."""
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    packet = bytes(60_000)
    recv.on_data(0, b"\x7f\xff", False)  # header only: a 16,383-byte message follows
    recv.on_data(2, memoryview(packet)[:1], False)
    assert recv._assembly is not None and recv._assembly.peek().obj is not packet  # copied
    recv.on_data(10, memoryview(packet)[:1], False)  # out of order, also compacted
    assert all(len(s) == 1 and not isinstance(s, memoryview) for s in recv._segments.values())


def test_what_is_left_of_a_packet_after_cutting_does_not_pin_it() -> None:
    """A whole small message is cut straight from the packet's view; the start of the next
    message, left over, is copied rather than kept as a view of the big packet."""
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    chunk = encode_varint(2) + b"ab" + encode_varint(5) + b"c"
    packet = bytearray(60_000)
    packet[:len(chunk)] = chunk
    recv.on_data(0, memoryview(bytes(packet))[:len(chunk)], False)
    assert recv.pop_message() == b"ab"
    assert recv._assembly is not None  # the next message's prefix is taken already, "c" copied
    assert bytes(recv._assembly.peek()) == b"c" and recv._assembly.peek().obj is not packet
    recv.on_data(len(chunk), b"defg", False)
    message = recv.pop_message()
    assert message == b"cdefg" and type(message) is bytes


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_mix_of_in_order_reordered_overlapping_and_duplicate_fragments(
        draw: st.DataObject) -> None:
    """In-order data takes a fast path that skips the duplicate bookkeeping; whatever mix of
    in-order, early, overlapping and repeated fragments arrives, the messages come out exact."""
    messages = draw.draw(st.lists(st.binary(max_size=300), min_size=1, max_size=8))
    data = framed(*messages)
    cuts = sorted(set(draw.draw(st.lists(st.integers(0, len(data)), max_size=12))))
    bounds = [0, *cuts, len(data)]
    pieces = [(a, b) for a, b in itertools.pairwise(bounds) if b > a]
    extra = draw.draw(st.lists(st.tuples(st.integers(0, len(data)), st.integers(0, 40)),
                               max_size=6))  # overlapping repeats
    pieces += [(a, min(len(data), a + n)) for a, n in extra if n]
    order = draw.draw(st.permutations(pieces))
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    for a, b in order:
        recv.on_data(a, memoryview(data)[a:b], b == len(data))
    out = []
    while (message := recv.pop_message()) is not None:
        out.append(message)
    assert out == messages
    assert recv.finished and recv.read_offset == len(data)


def test_a_message_completed_in_the_assembly_is_made_when_it_is_read() -> None:
    """A message that spans frames stays in the stream's reassembly buffer once complete: its
    bytes object is made by the read, so a reader that keeps up has one alive while the next
    is made, not a burst of them made together and freed together."""
    big = bytes(range(256)) * 1024
    data = framed(b"a", big, b"b", big)
    recv = RecvSide(window=1 << 22, max_message=1 << 20)
    for offset in range(0, len(data), 60_000):
        recv.on_data(offset, memoryview(data)[offset:offset + 60_000], False)
    assert [m if isinstance(m, int) else bytes(m) for m in recv.messages] == \
        [b"a", len(big), b"b", len(big)]
    assert recv._assembly is not None and recv._assembly.held == 2 * len(big)
    assert recv.unread_bytes == len(data)
    assert [recv.pop_message() for _ in range(4)] == [b"a", big, b"b", big]
    assert recv.unread_bytes == 0 and recv._assembly.held == 0


def test_pop_message_into_copies_without_allocating() -> None:
    big = bytes(range(256)) * 4096  # 1 MiB
    data = framed(big, b"tail")
    recv = RecvSide(window=1 << 22, max_message=1 << 21)
    for offset in range(0, len(data), 65_000):
        recv.on_data(offset, memoryview(data)[offset:offset + 65_000], False)
    buffer = bytearray(1 << 21)
    view = memoryview(buffer)
    tracemalloc.start()
    try:
        size = recv.pop_message_into(view)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == len(big) and buffer[:size] == big
    assert peak < 4096  # no copy of the message was made on the way
    assert recv.next_message_size() == 4
    assert recv.pop_message_into(view) == 4 and buffer[:4] == b"tail"
    assert recv.pop_message_into(view) is None and recv.next_message_size() is None
    assert recv.unread_bytes == 0 and recv.credit() == len(data)


def test_a_buffer_too_small_leaves_the_message_unread() -> None:
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    recv.on_data(0, framed(b"hello", bytes(5000)), False)  # one cut, one whole in the frame
    with pytest.raises(BufferTooSmall, match="5 bytes") as error:
        recv.pop_message_into(memoryview(bytearray(4)))
    assert error.value.needed == 5 and isinstance(error.value, ValueError)
    assert recv.pop_message() == b"hello"
    with pytest.raises(BufferTooSmall):
        recv.pop_message_into(memoryview(bytearray(4999)))
    buffer = bytearray(5000)
    assert recv.pop_message_into(memoryview(buffer)) == 5000 and buffer == bytes(5000)


def test_discarding_held_messages_keeps_the_partial_one() -> None:
    """Messages held whole in the assembly are dropped with the rest; the one still
    incomplete behind them is not."""
    first, second = bytes(3000), bytes(range(200)) * 20
    data = framed(first, second)
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    recv.on_data(0, data[:1000], False)
    recv.on_data(1000, data[1000:4000], False)  # completes ``first``, starts ``second``
    assert recv.messages and recv._parts_bytes
    recv.discard_messages()
    assert not recv.messages
    recv.on_data(4000, data[4000:], False)
    assert recv.pop_message() == second


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_reads_with_and_without_a_buffer_interleave_exactly(draw: st.DataObject) -> None:
    """Messages cut from packets and messages held in the assembly, read in any mix of
    pop_message and pop_message_into, come out in order, and the accounting ends at zero."""
    messages = draw.draw(st.lists(st.binary(max_size=3000), min_size=1, max_size=10))
    data = framed(*messages)
    step = draw.draw(st.integers(1, 4000))
    recv = RecvSide(window=1 << 20, max_message=1 << 20)
    out: list[bytes] = []
    buffer = memoryview(bytearray(3000))
    for offset in range(0, len(data), step):
        recv.on_data(offset, memoryview(data)[offset:offset + step], offset + step >= len(data))
        while recv.next_message_size() is not None:
            if draw.draw(st.booleans()):
                size = recv.pop_message_into(buffer)
                assert size is not None
                out.append(bytes(buffer[:size]))
            else:
                message = recv.pop_message()
                assert message is not None
                out.append(message)
    assert out == messages
    assert recv.finished and recv.unread_bytes == 0 and recv.credit() == len(data)


def test_unread_messages_do_not_grow_the_assembly_past_the_window() -> None:
    """A reader that falls behind: complete messages the assembly holds are cut into bytes of
    their own rather than doubling the buffer past the window, so what is unread costs its own
    size, not twice it."""
    big = bytes(range(256)) * 1024  # 256 KiB
    messages = [big[i:] + bytes(i) for i in range(12)]  # 12 x 256 KiB, each distinct
    data = framed(*messages)
    window = 1 << 20
    recv = RecvSide(window=1 << 24, max_message=1 << 20)
    recv.window = window  # (the window as the stream's flow control has it now)
    for offset in range(0, len(data), 65_000):
        recv.on_data(offset, memoryview(data)[offset:offset + 65_000], False)
        assert recv._assembly is None or recv._assembly.capacity <= window
    assert any(isinstance(m, bytes) for m in recv.messages)  # cut early, in their turn
    out = [recv.pop_message() for _ in messages]
    assert out == messages and recv.pop_message() is None and recv.unread_bytes == 0
