"""One stream: a reliable, ordered byte stream carrying length-prefixed messages.

The send side keeps every byte until the peer acknowledges it (so lost ranges can be resent) and
respects the peer's per-stream window. The receive side reassembles out-of-order data, cuts it into
whole messages and grants the peer more window only as the application reads, so a reader that
stops throttles the sender. Buffered bytes stay within the window plus one partial message.
"""

from __future__ import annotations

import heapq
from bisect import bisect_right
from collections import deque
from typing import Any

from .errors import DecodeError, ProtocolViolation
from .rangeset import RangeSet
from .varint import MAX_VARINT, decode_varint, encode_varint, varint_size

# Every receive side with nothing buffered shares this one: a deque costs about 760 B and an
# idle stream would hold two. Each append site swaps in a fresh deque first; maxlen=0 keeps the
# shared one empty whatever happens.
_EMPTY: deque[Any] = deque(maxlen=0)
# Likewise for the other containers an idle stream leaves empty: a send side with nothing
# unacknowledged and a receive side with nothing out of order share these, and each write site
# replaces them with containers of its own first.
_NO_LIST: list[Any] = []
_NO_SEGMENTS: dict[int, bytes | bytearray | memoryview] = {}
_NO_ENDS: dict[int, int] = {}
SMALL_MESSAGE = 2048  # bytes up to which a message is stored in one chunk with its length prefix
SEGMENT_MIN = 512  # out-of-order pieces below this are merged with their neighbours (copied)


class SendSide:
    __slots__ = (
        "_chunks",
        "_starts",
        "acked",
        "blocked_at",
        "buffered_end",
        "error_code",
        "fin_acked",
        "fin_offset",
        "fin_sent",
        "max_data",
        "reset_sent",
        "retransmit",
        "sent_end",
    )

    def __init__(self, max_data: int) -> None:
        self._starts: list[int] = _NO_LIST  # chunk start offsets, ascending
        self._chunks: list[bytes] = _NO_LIST
        self.buffered_end = 0  # offset after the last byte written by the application
        self.sent_end = 0  # offset after the last byte sent at least once
        self.retransmit = RangeSet()  # lost ranges to send again
        self.acked = RangeSet()
        self.max_data = max_data  # the peer's window for this stream
        self.fin_offset: int | None = None
        self.fin_sent = False
        self.fin_acked = False
        self.reset_sent: int | None = None
        self.error_code = 0
        self.blocked_at = -1  # offset at which we last reported STREAM_DATA_BLOCKED

    # -- application side -------------------------------------------------------------------------

    def write_message(self, data: bytes | bytearray | memoryview) -> int:
        size = len(data)
        header = encode_varint(size)
        if size <= SMALL_MESSAGE:
            # One chunk with its prefix: it leaves as one view instead of a join of two, and
            # is released as one. Copying a small message costs less than either.
            self._append(header + data)
        else:
            self._append(header)
            self._append(bytes(data))
        return len(header) + size

    def _append(self, data: bytes) -> None:
        if self._starts is _NO_LIST:
            self._starts, self._chunks = [], []
        self._starts.append(self.buffered_end)
        self._chunks.append(data)
        self.buffered_end += len(data)

    @property
    def unacked_bytes(self) -> int:
        start = self._starts[0] if self._starts else self.buffered_end
        return self.buffered_end - start

    @property
    def all_acked(self) -> bool:
        if self.fin_offset is not None and not self.fin_acked:
            return False
        return self.acked.prefix_end(0) >= self.buffered_end

    # -- sending ----------------------------------------------------------------------------------

    def has_data(self, conn_credit: int) -> bool:
        if self.reset_sent is not None:
            return False
        if self.retransmit._stops:  # the list, not the set: no __bool__ call on the hot path
            return True
        if self.sent_end < self.buffered_end and self.sent_end < self.max_data and conn_credit > 0:
            return True
        return self.fin_offset is not None and not self.fin_sent and \
            self.sent_end == self.buffered_end

    def next_range(self, limit: int, conn_credit: int) -> tuple[int, int, bool, bool]:
        """The next ``(start, stop, fin, is_new)`` to send, at most ``limit`` bytes."""
        if self.retransmit._stops:
            start, stop = self.retransmit.pop_first(limit)  # type: ignore[misc]
            fin = self.fin_offset is not None and stop == self.fin_offset
            return start, stop, fin, False
        stop = min(self.buffered_end, self.sent_end + limit, self.max_data,
                   self.sent_end + conn_credit)
        start = self.sent_end
        self.sent_end = stop
        fin = self.fin_offset is not None and stop == self.fin_offset
        if fin:
            self.fin_sent = True
        return start, stop, fin, True

    def read(self, start: int, stop: int) -> bytes | memoryview:
        """Bytes ``[start, stop)`` of the stream (still buffered: they are not yet acked).
        A range inside one chunk, the common case, comes back as a view without copying."""
        starts, chunks = self._starts, self._chunks
        i = bisect_right(starts, start) - 1
        chunk_start = starts[i]
        chunk = chunks[i]
        if stop - chunk_start <= len(chunk):
            return memoryview(chunk)[start - chunk_start : stop - chunk_start]
        parts = []
        while start < stop:
            chunk_start = starts[i]
            chunk = chunks[i]
            end = min(len(chunk), stop - chunk_start)
            parts.append(memoryview(chunk)[start - chunk_start : end])
            start = chunk_start + end
            i += 1
        return b"".join(parts)

    def on_acked(self, start: int, stop: int, fin: bool) -> None:
        self.acked.add(start, stop)
        if self.retransmit._stops:
            self.retransmit.subtract(start, stop)  # a late ACK of data declared lost
        if fin:
            self.fin_acked = True
        acked_to = self.acked.prefix_end(0)
        starts, chunks = self._starts, self._chunks
        drop = 0
        while drop < len(starts) and starts[drop] + len(chunks[drop]) <= acked_to:
            drop += 1
        if drop:
            del starts[:drop], chunks[:drop]
            if not starts:
                self._starts = self._chunks = _NO_LIST

    def on_lost(self, start: int, stop: int, fin: bool) -> None:
        if self.reset_sent is not None:
            return
        if stop > start:
            self.retransmit.add(start, stop)
            for a, b in list(self.acked):
                if a < stop and b > start:
                    self.retransmit.subtract(a, b)
        elif fin and not self.fin_acked:
            self.fin_sent = False  # a lost FIN-only frame: send the FIN again


def _compact(data: bytes | bytearray | memoryview) -> bytes | bytearray | memoryview:
    """A view that would pin a much larger packet is copied: buffered memory stays proportional
    to buffered bytes, whatever frame sizes a peer chooses."""
    if isinstance(data, memoryview) and len(data) * 2 < len(data.obj):  # type: ignore[arg-type]
        return bytes(data)
    return data


class RecvSide:
    """In-order bytes are kept as views of the decrypted packets they arrived in; a message is
    copied exactly once, when it is complete (large messages never grow a reassembly buffer).

    Out-of-order bytes are kept as disjoint segments: a frame is trimmed on arrival to the
    parts nothing buffered or delivered covers yet, so whatever the frame layout (overlapping,
    duplicated, each one byte past the last), the bytes held never exceed the window. Small
    parts are merged into the segments they touch (see ``_store``), so tiny frames do not
    cost a segment each."""

    __slots__ = (
        "_ends",
        "_head",
        "_heap",
        "_highest",
        "_parts",
        "_parts_bytes",
        "_received",
        "_segments",
        "consumed",
        "final_size",
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
        self._segments: dict[int, bytes | bytearray | memoryview] = _NO_SEGMENTS
        self._ends: dict[int, int] = _NO_ENDS  # a segment's end offset -> its start
        self._heap: list[int] = _NO_LIST  # segment starts (and starts since merged away)
        self._received = RangeSet()
        self._highest = 0  # the highest offset received
        self._parts: deque[bytes | bytearray | memoryview] = _EMPTY  # in-order bytes not yet cut
        self._parts_bytes = 0
        self._head: int | None = None  # body length of the message being assembled, if known
        self.read_offset = 0  # everything below is in _parts or already messages
        self.messages: deque[bytes] = _EMPTY
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

    @property
    def finished(self) -> bool:
        """The peer's FIN arrived and every byte before it was received and cut into messages."""
        return self.final_size is not None and self.read_offset == self.final_size \
            and self._parts_bytes == 0

    def on_data(self, offset: int, data: bytes | memoryview, fin: bool) -> int:
        """Take a STREAM frame; returns how many new bytes extend the highest offset seen."""
        end = offset + len(data)
        if end > self.max_data:
            raise ProtocolViolation(f"stream data to offset {end} exceeds the window "
                                    f"{self.max_data}")
        if offset == self.read_offset and not self._heap and not fin and data and \
                self.final_size is None:
            # In order with nothing waiting out of order, a transfer's common case. The data
            # is all new, so neither the duplicate check nor ``_received`` is needed: it
            # records only what arrived above read_offset, and everything below is known.
            before = self._highest
            if end > before:
                self._highest = end
            parts = self._parts
            if parts is _EMPTY:
                parts = self._parts = deque()
            parts.append(data)
            self._parts_bytes += end - offset
            self.read_offset = end
            head = self._head
            if head is None or self._parts_bytes >= head:
                self._cut_messages()
                parts = self._parts
            # Compacted after cutting (see _compact): only what is left of this packet, the
            # last part if any, can pin it, and a small message cut whole is copied once.
            if parts:
                last = parts[-1]
                if type(last) is memoryview and len(last) * 2 < len(last.obj):  # type: ignore[arg-type]
                    parts[-1] = bytes(last)
            return self._highest - before
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
            if offset <= self.read_offset:
                self._received.add(offset, end)
                self._take(data[self.read_offset - offset:])
                if self._heap:
                    self._drain_segments()
            else:
                self._buffer(offset, data)  # (before _received records it)
                self._received.add(offset, end)
            if end > before:
                self._highest = end
            self._cut_messages()
        return self._highest - before

    @property
    def buffered_bytes(self) -> int:
        """Bytes held out of order (in-order bytes not yet cut are ``_parts_bytes``)."""
        return sum(len(segment) for segment in self._segments.values())

    @property
    def held_bytes(self) -> int:
        """Every received byte the stream holds: complete messages not yet read, the message
        being assembled, and what arrived out of order."""
        return self.unread_bytes + self._parts_bytes + self.buffered_bytes

    def _buffer(self, offset: int, data: bytes | memoryview) -> None:
        """Keep the parts of an out-of-order frame that no segment holds yet. Called before
        ``_received`` records the frame: its ranges above ``read_offset`` are exactly what
        the segments hold, so the gaps between them are the new bytes."""
        if self._segments is _NO_SEGMENTS:
            self._segments, self._ends, self._heap = {}, {}, []
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
            self._store(pos, data[pos - offset : stop - offset] if stop - pos < len(data)
                        else data)
            pos = stop

    def _store(self, start: int, data: bytes | memoryview) -> None:
        """Add bytes no segment holds, as a segment of their own or merged with the segments
        either side. Merging copies, so full packets of an honest transfer stay views of their
        packets; small pieces are merged, and of two adjacent segments left unmerged one holds
        at least SEGMENT_MIN bytes: a peer's tiny frames cannot make a segment per byte, except
        with a gap between each (ranges of ``_received`` cost as much). A merged run is a
        bytearray, appended to in amortised O(1); a small segment after it, or one no longer
        than the run, is appended too, so each byte is copied O(log window) times at most."""
        segments, ends = self._segments, self._ends
        size = len(data)
        first = ends.get(start)
        segment: bytes | bytearray | memoryview
        if first is not None and (type(segments[first]) is bytearray or (
                size < SEGMENT_MIN and len(segments[first]) < SEGMENT_MIN)):
            del ends[start]
            segment = segments[first]
            if type(segment) is not bytearray:
                segment = bytearray(segment)
            segment += data
        else:
            first, segment = start, _compact(data)
            heapq.heappush(self._heap, start)
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

    def _take(self, data: bytes | bytearray | memoryview) -> None:
        data = _compact(data)
        if self._parts is _EMPTY:
            self._parts = deque()
        self._parts.append(data)
        self._parts_bytes += len(data)
        self.read_offset += len(data)

    def _drain_segments(self) -> None:
        heap, segments = self._heap, self._segments
        while heap and heap[0] <= self.read_offset:
            offset = heapq.heappop(heap)
            data = segments.pop(offset, None)
            if data is None:
                continue  # merged into the segment before it
            end = offset + len(data)
            del self._ends[end]
            if end > self.read_offset:
                # (a bytearray's slice would copy it: a segment starting here goes whole)
                self._take(data if offset == self.read_offset else
                           data[self.read_offset - offset:])
        if not segments:
            self._segments, self._ends, self._heap = _NO_SEGMENTS, _NO_ENDS, _NO_LIST

    def _consume(self, count: int) -> bytes:
        """Remove and return the first ``count`` buffered bytes (one copy)."""
        parts = self._parts
        self._parts_bytes -= count
        first = parts[0]
        if len(first) >= count:
            if len(first) == count:
                parts.popleft()
                if not parts:
                    self._parts = _EMPTY
            else:
                parts[0] = memoryview(first)[count:]
            return bytes(first[:count])
        pieces = []
        while count:
            part = parts[0]
            if len(part) <= count:
                pieces.append(parts.popleft())
                count -= len(part)
            else:
                pieces.append(memoryview(part)[:count])
                parts[0] = memoryview(part)[count:]
                count = 0
        if not parts:
            self._parts = _EMPTY
        return b"".join(pieces)

    def _cut_messages(self) -> None:
        while True:
            parts = self._parts
            length = self._head
            if length is None:
                if not parts:
                    return
                first = parts[0]
                size = len(first)
                prefix = first if size >= 8 or len(parts) == 1 else b"".join(list(parts)[:8])
                try:
                    length, header = decode_varint(prefix, 0)
                except DecodeError:
                    return  # the length prefix is still incomplete
                if length > self.max_message:
                    raise ProtocolViolation(f"message of {length} bytes exceeds "
                                            f"max_message_size {self.max_message}")
                if header != varint_size(length):
                    raise ProtocolViolation("message length prefix is not minimally encoded")
                end = header + length
                if size >= end:
                    # The whole message in the first part, a small message's usual case: one
                    # copy of its body, without taking the prefix off first.
                    if size == end:
                        parts.popleft()
                        if not parts:
                            self._parts = _EMPTY
                    else:
                        parts[0] = memoryview(first)[end:]
                    self._parts_bytes -= end
                    if self.messages is _EMPTY:
                        self.messages = deque()
                    self.messages.append(bytes(first[header:end]))
                    self.unread_bytes += end
                    self.message_bytes += length
                    self.messages_cut += 1
                    continue
                self._consume(header)
                self._head = length
            if self._parts_bytes < length:
                return
            self._head = None
            if self.messages is _EMPTY:
                self.messages = deque()
            self.messages.append(self._consume(length) if length else b"")
            self.unread_bytes += varint_size(length) + length
            self.message_bytes += length
            self.messages_cut += 1

    def pop_message(self) -> bytes | None:
        if not self.messages:
            return None
        message = self.messages.popleft()
        if not self.messages:
            self.messages = _EMPTY
        self.unread_bytes -= len(message) + varint_size(len(message))
        return message

    def credit(self) -> int:
        """The stream offset the application has taken off our hands (complete messages read,
        plus the partial message being assembled, which must be allowed to complete)."""
        return self.read_offset - self.unread_bytes

    def window_update(self, now: float, srtt: float, max_window: int,
                      credit: int = -1) -> int | None:
        """A new MAX_STREAM_DATA limit when half the window has been used, else None.
        The window doubles (up to ``max_window``) when it was used up within two RTTs.
        ``credit``: the node's budget's say (budget.py), if not :meth:`credit`."""
        if credit < 0:
            credit = self.credit()
        if self.final_size is not None or self.max_data - credit > self.window // 2:
            return None
        if now - self.window_updated_at < 2 * srtt and self.window < max_window:
            self.window = min(self.window * 2, max_window)
        self.window_updated_at = now
        new_limit = min(credit + self.window, MAX_VARINT)
        if new_limit <= self.max_data:
            return None
        self.max_data = new_limit
        return new_limit


class Stream:
    """Both directions of one stream, with its per-stream settings."""

    __slots__ = (
        "app_closed",
        "bytes_received",
        "bytes_sent",
        "end_reported",
        "hold_until",
        "local",
        "max_frame_size",
        "messages_received",
        "messages_sent",
        "no_delay",
        "priority",
        "recv",
        "send",
        "stream_id",
    )

    def __init__(self, stream_id: int, *, local: bool, send_window: int, recv_window: int,
                 max_message: int, max_frame_size: int, no_delay: bool, priority: int) -> None:
        self.stream_id = stream_id
        self.local = local
        self.send = SendSide(send_window)
        self.recv = RecvSide(recv_window, max_message)
        self.max_frame_size = max_frame_size
        self.no_delay = no_delay
        self.priority = priority
        self.hold_until: float | None = None
        self.app_closed = False
        self.bytes_sent = 0  # application payload accepted by send_message
        self.bytes_received = 0  # application payload of messages handed to the reader
        self.messages_sent = 0
        self.messages_received = 0
        self.end_reported = False  # StreamEnded was emitted

    @property
    def send_done(self) -> bool:
        s = self.send
        return s.reset_sent is not None or (s.fin_offset is not None and s.fin_acked
                                            and s.all_acked)

    @property
    def recv_done(self) -> bool:
        r = self.recv
        return r.reset_code is not None or (r.finished and not r.messages)
