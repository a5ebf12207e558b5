"""The sending half of a stream: every byte is kept until the peer acknowledges it (so lost
ranges can be resent), and nothing is sent past the peer's per-stream window."""

from __future__ import annotations

from bisect import bisect_right

from ..rangeset import RangeSet
from ..varint import encode_varint

SMALL_MESSAGE = 2048  # bytes up to which a message is stored in one chunk with its length prefix

# A send side with nothing unacknowledged holds this shared, immutable empty instead of two
# lists of its own (56 B each, and most streams of a dialogue are idle). ``_append`` swaps in
# lists first; a write site that forgot to would raise AttributeError at once instead of
# leaking one stream's chunks into every other's.
_NO_CHUNKS: tuple[()] = ()


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
        self._starts: list[int] | tuple[()] = _NO_CHUNKS  # chunk start offsets, ascending
        self._chunks: list[bytes] | tuple[()] = _NO_CHUNKS
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
        starts, chunks = self._starts, self._chunks
        if isinstance(starts, tuple) or isinstance(chunks, tuple):
            starts, chunks = self._starts, self._chunks = [], []
        starts.append(self.buffered_end)
        chunks.append(data)
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
        starts, chunks = self._starts, self._chunks
        if isinstance(starts, tuple) or isinstance(chunks, tuple):
            return  # nothing buffered (a FIN-only frame, or a duplicate ACK)
        acked_to = self.acked.prefix_end(0)
        drop = 0
        while drop < len(starts) and starts[drop] + len(chunks[drop]) <= acked_to:
            drop += 1
        if drop:
            del starts[:drop], chunks[:drop]
            if not starts:
                self._starts = self._chunks = _NO_CHUNKS

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
