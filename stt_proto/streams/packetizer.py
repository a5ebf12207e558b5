"""Filling packets with stream data: the scheduler, the general packet filler and its two fast
paths, side by side.

Sending is scheduled by priority (higher first) and round-robin among equals; a stream that is
blocked by its own window is skipped, so it never holds up the others. :meth:`Packetizer.fill`
is the general filler and the reference. The fast paths do exactly what it would, for the one
case each is for, and decline every other:

- :meth:`Packetizer.write_small`: a dialogue's packet, one small frame of one stream
  (proven equal to ``fill`` in tests/test_streams_small.py);
- :meth:`Packetizer.bulk_source` and :meth:`Packetizer.write_full_frame`: a bulk transfer's
  run of full frames of one stream, which ``DataPlane._build_bulk`` sends without the
  scheduling per packet (proven equal to the general path in tests/test_dataplane_bulk.py).
"""

from __future__ import annotations

from collections import deque

from ..frames import (
    MAX_FILL_FRAMES,
    DataBlockedFrame,
    Frame,
    MaxStreamsFrame,
    StreamDataBlockedFrame,
    encode_frame,
    encode_stream_frame,
    stream_frame_bytes,
)
from .records import ControlSent, RetransmitItem, StreamRange
from .stream import Stream

STREAM_FRAME_OVERHEAD = 1 + 8 + 8 + 4  # type, id, offset, length varints at their largest

# A session with no stream in a given state holds this shared, immutable empty set instead of
# an empty set of its own (216 B each, and a session held three). Each add site swaps in a set
# of its own first, and a set that empties is swapped back; a site that forgot to swap would
# raise AttributeError at once instead of leaking stream ids into every other session.
_NO_IDS: frozenset[int] = frozenset()


class Packetizer:
    """The sending half of :class:`~stt_proto.streams.manager.StreamManager`: which streams
    have something to send, and writing their frames into packets."""

    # Slotted: a node may hold 10,000 idle sessions, and a __dict__ each costs KiBs.
    __slots__ = ("_control", "_data_blocked_at", "_in_ready", "_max_streams_pending",
                 "_peer_allowed", "_ready", "conn_send_max", "conn_sent", "streams")

    def __init__(self, conn_send_max: int, peer_allowed: int) -> None:
        self.streams: dict[int, Stream] = {}
        self.conn_send_max = conn_send_max  # the peer's session-level window
        self.conn_sent = 0  # highest new-data offsets summed over streams
        self._peer_allowed = peer_allowed  # cumulative streams the peer may open (MAX_STREAMS)
        self._max_streams_pending = False
        self._control: list[Frame] = []  # usually empty; a deque's block costs 600 B a session
        self._ready: dict[int, deque[int]] = {}
        self._in_ready: set[int] | frozenset[int] = _NO_IDS
        self._data_blocked_at = -1

    def conn_credit_left(self) -> int:
        return self.conn_send_max - self.conn_sent

    # -- scheduling -------------------------------------------------------------------------------

    def compact(self) -> None:
        """Idle: drop the emptied ready table and control list (see DataPlane.compact)."""
        if not self._ready:
            self._ready = {}
        if not self._control:
            self._control = []

    def _drop_ready(self, stream_id: int) -> None:
        ready = self._in_ready
        if isinstance(ready, set):
            ready.discard(stream_id)
            if not ready:
                self._in_ready = _NO_IDS

    def _make_ready(self, stream: Stream) -> None:
        sid = stream.stream_id
        ready = self._in_ready
        if sid in ready:
            return
        if isinstance(ready, frozenset):
            ready = self._in_ready = set()
        ready.add(sid)
        self._ready.setdefault(stream.priority, deque()).append(sid)

    def next_hold_deadline(self) -> float | None:
        deadlines = [s.hold_until for sid in self._in_ready
                     if (s := self.streams.get(sid)) is not None and s.hold_until is not None]
        return min(deadlines) if deadlines else None

    def has_pending(self) -> bool:
        return bool(self._control) or self._max_streams_pending or bool(self._in_ready)

    # -- the general filler -----------------------------------------------------------------------

    def fill(self, payload: bytearray, space: int, items: list[RetransmitItem], now: float,
             in_flight: int) -> None:
        """Append control and STREAM frames to ``payload`` within ``space`` bytes, at most
        MAX_FILL_FRAMES of them (receivers refuse packets of very many frames)."""
        control = self._control
        if self._max_streams_pending:
            control.append(MaxStreamsFrame(self._peer_allowed))
            self._max_streams_pending = False
        taken = 0
        for frame in control:
            if len(items) >= MAX_FILL_FRAMES:
                break
            scratch = bytearray()
            encode_frame(frame, scratch)
            if len(scratch) > space - len(payload):
                break
            taken += 1
            payload += scratch
            items.append(ControlSent(frame))
        if taken:
            del control[:taken]
        if control:
            return
        ready = self._ready
        for priority in (tuple(ready) if len(ready) == 1 else sorted(ready, reverse=True)):
            queue = self._ready[priority]
            rounds = len(queue)
            while queue and rounds > 0:
                rounds -= 1
                room = space - len(payload) - STREAM_FRAME_OVERHEAD
                if room <= 0 or len(items) >= MAX_FILL_FRAMES:
                    return
                sid = queue.popleft()
                stream = self.streams.get(sid)
                if stream is None:
                    continue  # forgotten since it was queued (and dropped from _in_ready then)
                keep = self._write_stream(stream, payload, room, items, now, in_flight)
                if keep:
                    queue.append(sid)
                else:
                    self._drop_ready(sid)
            if not queue:
                del self._ready[priority]
        if self.conn_sent >= self.conn_send_max:  # _note_blocked's own first test, inline
            self._note_blocked()

    def _write_stream(self, stream: Stream, payload: bytearray, room: int,
                      items: list[RetransmitItem], now: float, in_flight: int) -> bool:
        send = stream.send
        credit = self.conn_send_max - self.conn_sent
        if not send.has_data(credit):
            if (send.sent_end < send.buffered_end and send.sent_end >= send.max_data
                    and send.blocked_at != send.max_data):
                send.blocked_at = send.max_data
                self._control.append(StreamDataBlockedFrame(stream.stream_id, send.max_data))
            return False
        limit = min(room, stream.max_frame_size - STREAM_FRAME_OVERHEAD)
        if not send.retransmit._stops and not self._may_send_now(stream, limit, in_flight, now):
            return True
        start, stop, fin, is_new = send.next_range(limit, credit)
        if is_new:
            self.conn_sent += stop - start
        data = send.read(start, stop) if stop > start else b""
        encode_stream_frame(payload, stream.stream_id, start, data, fin)
        items.append(StreamRange(stream.stream_id, start, stop, fin))
        if send.sent_end >= send.buffered_end:
            stream.hold_until = None
        return send.has_data(self.conn_send_max - self.conn_sent)

    def _may_send_now(self, stream: Stream, limit: int, in_flight: int, now: float) -> bool:
        """Small-message coalescing: without ``no_delay`` a partial frame waits while earlier
        data is unacknowledged, at most until ``hold_until``."""
        send = stream.send
        if stream.no_delay or in_flight == 0 or send.fin_offset is not None:
            return True
        if send.buffered_end - send.sent_end >= limit:
            return True
        return stream.hold_until is None or now >= stream.hold_until

    def _note_blocked(self) -> None:
        if (self.conn_credit_left() <= 0 and self._data_blocked_at != self.conn_send_max
                and any(s.send.sent_end < s.send.buffered_end for s in self.streams.values())):
            self._data_blocked_at = self.conn_send_max
            self._control.append(DataBlockedFrame(self.conn_send_max))

    # -- fast path: a dialogue's packet -----------------------------------------------------------

    def write_small(self, payload: bytearray, space: int, items: list[RetransmitItem],
                    now: float, in_flight: int) -> bool:
        """:meth:`fill` for a dialogue's usual packet: no control frame waits and one stream
        is ready, whose unsent data is all new, carries no FIN and fits in one frame. Writes
        exactly what :meth:`fill` would and returns True; returns False, having done
        nothing, in every other case (the caller then calls :meth:`fill`)."""
        ready = self._ready
        if self._control or self._max_streams_pending or len(ready) != 1:
            return False
        (priority, queue), = ready.items()
        if len(queue) != 1:
            return False
        sid = queue[0]
        stream = self.streams.get(sid)
        if stream is None:
            return False
        send = stream.send
        start, stop = send.sent_end, send.buffered_end
        limit = min(space - len(payload), stream.max_frame_size) - STREAM_FRAME_OVERHEAD
        if (send.retransmit._stops or send.reset_sent is not None or send.fin_offset is not None
                or not 0 < stop - start < limit or stop > send.max_data
                or stop - start > self.conn_send_max - self.conn_sent):
            return False
        if not (stream.no_delay or not in_flight or stream.hold_until is None
                or now >= stream.hold_until):
            return False  # held for coalescing (_may_send_now): fill() keeps it queued
        send.sent_end = stop
        self.conn_sent += stop - start
        encode_stream_frame(payload, sid, start, send.read(start, stop), False)
        items.append(StreamRange(sid, start, stop, False))
        stream.hold_until = None
        del ready[priority]
        self._drop_ready(sid)
        if self.conn_sent >= self.conn_send_max:
            self._note_blocked()
        return True

    # -- fast path: a bulk transfer's full frames -------------------------------------------------

    def bulk_source(self, space: int) -> tuple[Stream, int, int] | None:
        """For a bulk transfer: ``(stream, chunk, count)`` when the session has nothing to send
        but new data of one stream, ``count`` full frames of ``chunk`` bytes of it. Those
        frames are what :meth:`fill` would write, one per packet, so the caller may write them
        with :meth:`write_full_frame` and skip the general scheduling; None otherwise."""
        if self._control or self._max_streams_pending or len(self._in_ready) != 1:
            return None
        # (a stream in _in_ready is live: forgetting one drops it from _in_ready)
        stream = self.streams[next(iter(self._in_ready))]
        send = stream.send
        if send.retransmit._stops or send.reset_sent is not None:
            return None
        chunk = min(space, stream.max_frame_size) - STREAM_FRAME_OVERHEAD
        start = send.sent_end
        end = min(send.buffered_end, send.max_data, start + self.conn_send_max - self.conn_sent)
        if send.fin_offset is not None:
            end -= 1  # the frame that reaches the FIN carries it: fill() writes that one
        count = (end - start) // chunk if chunk > 0 else 0
        return (stream, chunk, count) if count > 0 else None

    def write_full_frame(self, stream: Stream, chunk: int) -> tuple[bytes, StreamRange]:
        """The next ``chunk`` new bytes of ``stream`` (see :meth:`bulk_source`) as a packet
        payload of one STREAM frame, and the item to remember for the packet."""
        send = stream.send
        start = send.sent_end
        stop = send.sent_end = start + chunk
        self.conn_sent += chunk
        sid = stream.stream_id
        payload = stream_frame_bytes(sid, start, send.read(start, stop))
        if stop >= send.buffered_end:
            stream.hold_until = None
        return payload, StreamRange(sid, start, stop, False)
