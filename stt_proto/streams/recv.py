"""The receiving half of a stream: out-of-order data is reassembled, in-order data is cut into
whole messages, and the peer is granted more window only as the application reads, so a
reader that stops throttles the sender. Buffered bytes stay within the window plus one
partial message."""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque

from ..errors import BufferTooSmall, DecodeError, ProtocolViolation
from ..rangeset import RangeSet
from ..varint import MAX_VARINT, decode_varint, varint_size
from .assembly import Assembly

Piece = bytes | bytearray | memoryview

# A receive side with nothing buffered holds this shared, immutable empty in place of each
# container it would otherwise own (a deque costs about 760 B, and an idle stream would hold
# two). Each write site swaps in a container of its own first; one that forgot to would raise
# AttributeError at once instead of leaking one stream's bytes into every other's.
_NONE: tuple[()] = ()
SEGMENT_MIN = 512  # out-of-order pieces below this are merged with their neighbours (copied)
# A window's last update stamped in the future: the next update counts as "used within an RTT"
# and doubles the window (the path, not the reader, used it up).
GROW_NEXT = float("inf")


def _compact(data: Piece) -> Piece:
    """A view is copied: it may be of the endpoint's receive buffer, which the next packet
    overwrites (``stt_proto/buffers.py``), and a copy also keeps buffered memory proportional to
    buffered bytes, whatever frame sizes a peer chooses."""
    if isinstance(data, memoryview):
        return bytes(data)
    return data


def _window_exceeded(end: int, limit: int) -> ProtocolViolation:
    return ProtocolViolation(f"stream data to offset {end} exceeds the window {limit}")


class RecvSide:
    """In-order bytes are cut into messages as they arrive: a message whole within a frame is
    copied once, straight from the packet; the bytes of one that is not are copied into the
    stream's :class:`Assembly`, a buffer reused from message to message, and out again when
    the message is read (into the reader's own buffer with :meth:`pop_message_into`). Nothing
    keeps a view of a packet: the endpoint opens the next packet into the same memory.

    Out-of-order bytes are kept as disjoint segments: a frame is trimmed on arrival to the
    parts nothing buffered or delivered covers yet, so whatever the frame layout (overlapping,
    duplicated, each one byte past the last), the bytes held never exceed the window. Small
    parts are merged into the segments they touch (see ``_store``), so tiny frames do not
    cost a segment each."""

    __slots__ = (
        "_assembly",
        "_ends",
        "_head",
        "_heap",
        "_highest",
        "_parts_bytes",
        "_prefix",
        "_received",
        "_segments",
        "consumed",
        "final_size",
        "gap_full",
        "max_data",
        "max_message",
        "message_bytes",
        "messages",
        "messages_cut",
        "read_offset",
        "reported",
        "reset_code",
        "unread_bytes",
        "window",
        "window_updated_at",
    )

    def __init__(self, window: int, max_message: int) -> None:
        self._segments: dict[int, Piece] | tuple[()] = _NONE
        self._ends: dict[int, int] | tuple[()] = _NONE  # a segment's end offset -> its start
        self._heap: list[int] | tuple[()] = _NONE  # segment starts (and starts merged away)
        self._received = RangeSet()
        self._highest = 0  # the highest offset received
        # the bodies of complete messages not yet read, then of the one still incomplete
        # (_parts_bytes of it)
        self._assembly: Assembly | None = None
        self._parts_bytes = 0
        self._head: int | None = None  # body length of the message being assembled, if known
        self._prefix = b""  # the start of a length prefix that continues in the next frame
        self.read_offset = 0  # everything below is in the assembly or already messages
        # complete messages: their bytes, or the length of one the assembly holds
        self.messages: deque[bytes | int] | tuple[()] = _NONE
        self.message_bytes = 0  # payload bytes of every message cut so far
        self.messages_cut = 0
        self.unread_bytes = 0  # bytes (with headers) of complete messages not yet read
        self.reported = 0  # credit already counted toward the session-level window
        self.window = window
        self.max_data = window  # the limit we advertised
        self.max_message = max_message
        self.final_size: int | None = None
        self.reset_code: int | None = None
        self.window_updated_at = 0.0
        self.gap_full = False  # half the window waits behind a gap: grow it at once

    @property
    def finished(self) -> bool:
        """The peer's FIN arrived and every byte before it was received and cut into messages."""
        return self.final_size is not None and self.read_offset == self.final_size \
            and self._parts_bytes == 0

    def on_data(self, offset: int, data: bytes | memoryview, fin: bool) -> int:
        """Take a STREAM frame; returns how many new bytes extend the highest offset seen.

        The fast path: in order, with nothing waiting out of order, no FIN, a transfer's
        common case. It does what :meth:`on_data_general` does for such a frame (proven
        state by state in tests/test_recv_fast_path.py), skipping what cannot apply: the
        data is all new, so neither the duplicate check nor ``_received`` is needed (it
        records only what arrived above read_offset, and everything below is known)."""
        if offset != self.read_offset or self._heap or fin or not data or \
                self.final_size is not None:
            return self.on_data_general(offset, data, fin)
        end = offset + len(data)
        if end > self.max_data:
            raise _window_exceeded(end, self.max_data)
        before = self._highest
        if end > before:
            self._highest = end
        self._take(data)
        return self._highest - before

    def on_data_general(self, offset: int, data: bytes | memoryview, fin: bool) -> int:
        """:meth:`on_data` for any frame: out of order, overlapping, duplicated, with a FIN."""
        end = offset + len(data)
        if end > self.max_data:
            raise _window_exceeded(end, self.max_data)
        if self.final_size is not None and end > self.final_size:
            raise ProtocolViolation("stream data past its final size")
        if fin:
            if self.final_size is not None and self.final_size != end:
                raise ProtocolViolation("stream final size changed")
            if end < self._highest:
                raise ProtocolViolation("stream final size below data already received")
            self.final_size = end
        before = self._highest
        if data and end > self.read_offset and not self._received.covers(offset, end):
            if end > before:
                self._highest = end
            if offset <= self.read_offset:
                self._received.add(offset, end)
                self._take(data[self.read_offset - offset:])
                if self._heap:
                    self._drain_segments()
            else:
                self._buffer(offset, data)  # (before _received records it)
                self._received.add(offset, end)
                held = self._highest - self.read_offset
                if held * 2 >= self.window and held > self.unread_bytes:
                    # Half the window is behind a gap (and more than the application left
                    # unread): with what is in flight the peer is at our limit or soon will
                    # be, held back by a retransmission (for several RTTs when it is lost
                    # again), and the reads, and with them the usual growth, wait for it.
                    # The window grows at once (window_update): the peer goes on past the
                    # gap, as it would with the larger window a lossy path needs. A slow
                    # reader holds unread bytes, not a gap: its window does not grow so.
                    self.gap_full = True
        return self._highest - before

    @property
    def buffered_bytes(self) -> int:
        """Bytes held out of order (in-order bytes not yet cut are ``_parts_bytes``)."""
        segments = self._segments
        return sum(len(segment) for segment in segments.values()) if segments else 0

    @property
    def held_bytes(self) -> int:
        """Every received byte the stream holds: complete messages not yet read, the message
        being assembled, and what arrived out of order."""
        return self.unread_bytes + self._parts_bytes + self.buffered_bytes

    def _buffer(self, offset: int, data: bytes | memoryview) -> None:
        """Keep the parts of an out-of-order frame that no segment holds yet. Called before
        ``_received`` records the frame: its ranges above ``read_offset`` are exactly what
        the segments hold, so the gaps between them are the new bytes."""
        segments, ends, heap = self._segments, self._ends, self._heap
        if isinstance(segments, tuple) or isinstance(ends, tuple) or isinstance(heap, tuple):
            segments, ends, heap = self._segments, self._ends, self._heap = {}, {}, []
        end = offset + len(data)
        starts, stops = self._received._starts, self._received._stops
        i = bisect_right(stops, offset)  # the first range that ends past ``offset``
        pos = offset
        count = len(starts)
        while pos < end:
            if i < count and starts[i] <= pos:
                pos = stops[i]  # held already: skip it
                i += 1
                continue
            stop = starts[i] if i < count and starts[i] < end else end
            self._store(segments, ends, heap, pos,
                        data[pos - offset : stop - offset] if stop - pos < len(data) else data)
            pos = stop

    @staticmethod
    def _store(segments: dict[int, Piece], ends: dict[int, int], heap: list[int], start: int,
               data: bytes | memoryview) -> None:
        """Add bytes no segment holds, as a segment of their own or merged with the segments
        either side. Merging copies, so full packets of an honest transfer stay views of their
        packets; small pieces are merged, and of two adjacent segments left unmerged one holds
        at least SEGMENT_MIN bytes: a peer's tiny frames cannot make a segment per byte, except
        with a gap between each (ranges of ``_received`` cost as much). A merged run is a
        bytearray, appended to in amortised O(1); a small segment after it, or one no longer
        than the run, is appended too, so each byte is copied O(log window) times at most."""
        size = len(data)
        first = ends.get(start)
        segment: Piece
        if first is not None and (type(segments[first]) is bytearray or (
                size < SEGMENT_MIN and len(segments[first]) < SEGMENT_MIN)):
            del ends[start]
            segment = segments[first]
            if type(segment) is not bytearray:
                segment = bytearray(segment)
            segment += data
        else:
            first, segment = start, _compact(data)
            heapq.heappush(heap, start)
        stop = start + size
        after = segments.get(stop)
        if after is not None and (len(after) < SEGMENT_MIN or (
                type(segment) is bytearray and len(after) <= len(segment))):
            if type(segment) is not bytearray:
                segment = bytearray(segment)
            segment += after
            del segments[stop], ends[stop + len(after)]  # its heap entry stays: skipped
        segments[first] = segment
        ends[first + len(segment)] = first

    def _take(self, data: Piece) -> None:
        """In-order bytes, cut into messages. A body whole in ``data`` (none of it held yet)
        is copied straight out of the packet; the body of one that is not is copied into the
        assembly, where it stays once complete until it is read (see :meth:`pop_message`)."""
        self.read_offset += len(data)
        pos, size = 0, len(data)
        while pos < size:
            length = self._head
            if length is None:
                pos = self._read_prefix(data, pos)
                length = self._head
                if length is None:
                    return  # the length prefix continues in the next frame
            partial = self._parts_bytes
            room = size - pos
            if not partial and room >= length:
                self._head = None
                self._deliver(bytes(data[pos:pos + length]), length)
                pos += length
                continue
            if not room:
                return
            count = length - partial if length - partial < room else room
            asm = self._assembly
            if asm is None:
                asm = self._assembly = Assembly()
            elif asm.capacity_after(count) > self.window:
                self._cut_held()
            asm.append(data if count == size else data[pos:pos + count])
            pos += count
            if partial + count < length:
                self._parts_bytes = partial + count
                return
            self._parts_bytes = 0
            self._head = None
            self._deliver(length, length)  # (held by the assembly until it is read)

    def _cut_held(self) -> None:
        """Give each message the assembly holds whole bytes of its own, before the assembly
        would grow past the window to keep them: unread messages then cost their own size,
        as they did when every message was cut as it completed, not twice that in a doubled
        buffer. (A reader that keeps up never gets here.)"""
        asm = self._assembly
        messages = self.messages
        if asm is None or isinstance(messages, tuple):
            return
        for index in range(len(messages)):
            item = messages[index]
            if isinstance(item, int):
                messages[index] = asm.take(item)

    def _read_prefix(self, data: Piece, pos: int) -> int:
        """Decode the next message's length prefix from ``data`` at ``pos`` (after the bytes of
        it an earlier frame left in ``_prefix``); returns where its body begins. A prefix still
        incomplete is kept, counted in ``_parts_bytes``, and ``_head`` stays None."""
        kept = self._prefix
        source: Piece = data
        start = pos
        if kept:
            source = kept + bytes(data[pos:pos + 8])
            start = 0
        try:
            length, after = decode_varint(source, start)
        except DecodeError:  # truncated: the prefix continues in the next frame
            self._prefix = bytes(source[start:])
            self._parts_bytes = len(self._prefix)
            return len(data)
        self._check_prefix(length, after - start)
        self._head = length
        if kept:
            self._prefix = b""
            self._parts_bytes = 0
            return pos + after - len(kept)
        return after

    def _drain_segments(self) -> None:
        heap, segments, ends = self._heap, self._segments, self._ends
        if isinstance(heap, tuple) or isinstance(segments, tuple) or isinstance(ends, tuple):
            return  # nothing held out of order
        while heap and heap[0] <= self.read_offset:
            offset = heapq.heappop(heap)
            data = segments.pop(offset, None)
            if data is None:
                continue  # merged into the segment before it
            end = offset + len(data)
            del ends[end]
            if end > self.read_offset:
                # (a bytearray's slice would copy it: a segment starting here goes whole)
                self._take(data if offset == self.read_offset else
                           data[self.read_offset - offset:])
        if not segments:
            self._segments = self._ends = self._heap = _NONE

    def _check_prefix(self, length: int, header: int) -> None:
        if length > self.max_message:
            raise ProtocolViolation(f"message of {length} bytes exceeds "
                                    f"max_message_size {self.max_message}")
        if header != varint_size(length):
            raise ProtocolViolation("message length prefix is not minimally encoded")

    def _deliver(self, message: bytes | int, length: int) -> None:
        """A message complete: its bytes, or its length where the assembly holds it."""
        messages = self.messages
        if isinstance(messages, tuple):
            messages = self.messages = deque()
        messages.append(message)
        self.unread_bytes += varint_size(length) + length
        self.message_bytes += length
        self.messages_cut += 1

    def release_assembly(self) -> None:
        """The session went idle: an empty assembly gives its buffer back."""
        asm = self._assembly
        if asm is not None and not asm.held:
            self._assembly = None

    def pop_message(self) -> bytes | None:
        """The next complete message, or None. One that the assembly holds is copied out now,
        as it is read, not when it completed: a reader that keeps up then has one such message
        alive while the next is made, and the allocator hands the next the block the last one
        freed. Made as they completed, a burst of large messages was freed together, and
        glibc gave the heap top back to the kernel and faulted it in again for each burst."""
        if not self.messages:
            return None
        item = self._pop()
        if isinstance(item, int):
            message = self._held_assembly().take(item)
            self._shrink_assembly()
        else:
            message = item
        self.unread_bytes -= len(message) + varint_size(len(message))
        return message

    def next_message_size(self) -> int | None:
        """The size of the next complete message, or None if there is none yet."""
        messages = self.messages
        if not messages:
            return None
        item = messages[0]
        return item if isinstance(item, int) else len(item)

    def pop_message_into(self, buffer: memoryview) -> int | None:
        """:meth:`pop_message` copied into ``buffer`` (a writable view of bytes): its size, or
        None. A message the assembly holds is copied once, and nothing is allocated for it.
        Raises :class:`BufferTooSmall`, the message left unread, if it does not fit."""
        length = self.next_message_size()
        if length is None:
            return None
        if length > len(buffer):
            raise BufferTooSmall(length, len(buffer))
        item = self._pop()
        if isinstance(item, int):
            self._held_assembly().take_into(buffer, item)
            self._shrink_assembly()
        else:
            buffer[:length] = item
        self.unread_bytes -= length + varint_size(length)
        return length

    def _pop(self) -> bytes | int:
        """The first of :attr:`messages` (the caller saw it is not empty), removed."""
        messages = self.messages
        if isinstance(messages, tuple):  # pragma: no cover - callers check
            raise AssertionError("no message to pop")
        item = messages.popleft()
        if not messages:
            self.messages = _NONE
        return item

    def _held_assembly(self) -> Assembly:
        asm = self._assembly
        if asm is None:  # pragma: no cover - a held message keeps its assembly
            raise AssertionError("a message held by an assembly that is gone")
        return asm

    def _shrink_assembly(self) -> None:
        """An assembly emptied by a read, larger than the window (grown for a message longer
        than the window, which is rare), is let go: its memory is kept no longer."""
        asm = self._assembly
        if asm is not None and not asm.held and asm.capacity > self.window:
            self._assembly = None

    def discard_messages(self) -> None:
        """Drop the complete messages not yet read (the stream was reset or stopped)."""
        messages = self.messages
        held = sum(item for item in messages if isinstance(item, int))
        if held:
            self._held_assembly().skip(held)
            self._shrink_assembly()
        self.messages = _NONE

    def credit(self) -> int:
        """The stream offset the application has taken off our hands (complete messages read,
        plus the partial message being assembled, which must be allowed to complete)."""
        return self.read_offset - self.unread_bytes

    def update_due(self, credit: int) -> bool:
        """Whether a quarter of the window is used up, reads granting ``credit``: the test
        for a window update (see :meth:`window_update`)."""
        return self.max_data - credit <= self.window - (self.window >> 2)

    def window_update(self, now: float, srtt: float, max_window: int,
                      credit: int = -1) -> int | None:
        """A new MAX_STREAM_DATA limit when a quarter of the window has been used, else None.
        The window doubles (up to ``max_window``) when that quarter was used within one RTT
        (the window is under four times what the path delivers in an RTT).
        ``credit``: the node's budget's say (budget.py), if not :meth:`credit`.

        A quarter, not half: an update lost on a lossy path is superseded by the next a
        quarter window later, before the peer reaches the old limit; at half, a peer that the
        window holds back sits at the limit until loss detection sends the update again.
        A window half held behind a gap (:attr:`gap_full`) doubles at once, read or not."""
        if credit < 0:
            credit = self.credit()
        if self.final_size is not None:
            return None
        grow = False
        if self.gap_full:  # (on_data_general says why)
            self.gap_full = False
            grow = self.window < max_window
        if not grow:
            if not self.update_due(credit):
                return None
            grow = now - self.window_updated_at < srtt and self.window < max_window
        if grow:
            self.window = min(self.window * 2, max_window)
        self.window_updated_at = now
        new_limit = min(credit + self.window, MAX_VARINT)
        if new_limit <= self.max_data:
            return None
        self.max_data = new_limit
        return new_limit
