"""All streams of a session: ids, limits, connection-level flow control, scheduling, and the
translation between stream state and STREAM / flow-control frames.

Ids: the initiator opens even ids, the responder odd ones, so they never collide. Each side may
have at most the peer's ``max_concurrent_streams`` open at once; MAX_STREAMS raises that allowance
as streams finish. Sending is scheduled by priority (higher first) and round-robin among equals;
a stream that is blocked by its own window is skipped, so it never holds up the others.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from .budget import MemoryBudget, SessionBudget
from .errors import ProtocolViolation, StreamLimitError, UsageError
from .events import (
    StreamEnded,
    StreamFlushed,
    StreamOpened,
    StreamReadable,
    StreamResetByPeer,
    StreamStopped,
    StreamWritable,
)
from .frames import (
    MAX_FILL_FRAMES,
    DataBlockedFrame,
    Frame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    ResetStreamFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
    StreamFrame,
    encode_frame,
    encode_stream_frame,
    stream_frame_bytes,
)
from .handshake_payload import TransportSettings
from .stream import Stream
from .varint import MAX_VARINT

STREAM_FRAME_OVERHEAD = 1 + 8 + 8 + 4  # type, id, offset, length varints at their largest

# Every session with no stream in a given state shares this empty set: an empty set costs
# 216 B, and a session held three. Each add site swaps in a set of its own first, and a set
# that empties is swapped back, so an idle session holds none.
_NO_IDS: set[int] = set()


class StreamManager:
    """Every stream of one session, and the session's share of flow control."""

    # Slotted: a node may hold 10,000 idle sessions, and a __dict__ each costs KiBs.
    __slots__ = ("_blocked_writers", "_budget", "_conn_window_at", "_control", "_data_blocked_at",
                 "_emit", "_in_ready", "_is_initiator", "_local", "_local_allowed",
                 "_max_streams_pending",
                 "_next_local_index", "_no_delay", "_peer", "_peer_allowed", "_peer_closed",
                 "_peer_opened", "_ready", "_send_buffer", "_window_dirty", "bytes_received",
                 "bytes_sent", "conn_consumed", "conn_received", "conn_recv_max",
                 "conn_recv_window", "conn_send_max", "conn_sent", "max_recv_window",
                 "send_buffer_floor", "streams")

    def __init__(self, *, is_initiator: bool, local: TransportSettings,
                 peer: TransportSettings, send_buffer: int, recv_buffer: int,
                 no_delay: bool, emit: Any) -> None:
        self.streams: dict[int, Stream] = {}
        self._is_initiator = is_initiator
        self._local = local
        self._peer = peer
        self._emit = emit
        self._send_buffer = send_buffer
        self.send_buffer_floor = 0  # raised to 2 x cwnd so the buffer never starves the pipe
        self._no_delay = no_delay
        self._next_local_index = 0
        self._local_allowed = peer.max_concurrent_streams  # cumulative streams we may open
        self._peer_allowed = local.max_concurrent_streams  # cumulative the peer may open
        self._peer_opened = 0  # highest peer stream index + 1
        self._peer_closed = 0
        self._max_streams_pending = False
        # connection-level flow control
        self.conn_send_max = peer.initial_max_data
        self.conn_sent = 0  # highest new-data offsets summed over streams
        self.conn_recv_max = local.initial_max_data
        self.conn_recv_window = local.initial_max_data
        self.conn_received = 0
        self.conn_consumed = 0  # session-level credit given back (sum of stream credits)
        self._budget: SessionBudget | None = None  # the node's memory budget (budget.py)
        self._window_dirty: set[int] = _NO_IDS
        self._conn_window_at = 0.0
        self.max_recv_window = max(recv_buffer * 4, local.initial_max_data)
        self._control: list[Frame] = []  # usually empty; a deque's block costs 600 B a session
        self._ready: dict[int, deque[int]] = {}
        self._in_ready: set[int] = _NO_IDS
        self._blocked_writers: set[int] = _NO_IDS
        self._data_blocked_at = -1
        self.bytes_sent = 0
        self.bytes_received = 0

    # -- opening ----------------------------------------------------------------------------------

    def _local_id(self, index: int) -> int:
        return index * 2 + (0 if self._is_initiator else 1)

    def _is_local(self, stream_id: int) -> bool:
        return (stream_id % 2 == 0) == self._is_initiator

    def open(self, max_frame_size: int, no_delay: bool | None, priority: int) -> Stream:
        if self._next_local_index >= self._local_allowed:
            raise StreamLimitError(
                f"the peer allows {self._peer.max_concurrent_streams} concurrent streams and "
                f"all are in use")
        stream_id = self._local_id(self._next_local_index)
        self._next_local_index += 1
        stream = self._make(stream_id, local=True, max_frame_size=max_frame_size,
                            no_delay=self._no_delay if no_delay is None else no_delay,
                            priority=priority)
        return stream

    def _make(self, stream_id: int, *, local: bool, max_frame_size: int, no_delay: bool,
              priority: int) -> Stream:
        stream = Stream(stream_id, local=local, send_window=self._peer.initial_max_stream_data,
                        recv_window=self._local.initial_max_stream_data,
                        max_message=self._local.max_message_size,
                        max_frame_size=max_frame_size, no_delay=no_delay, priority=priority)
        self.streams[stream_id] = stream
        return stream

    def _peer_stream(self, stream_id: int) -> Stream | None:
        """The stream a peer frame names, opening it if new; None if it is already gone."""
        stream = self.streams.get(stream_id)
        if stream is not None:
            return stream
        if self._is_local(stream_id):
            if stream_id // 2 < self._next_local_index:
                return None  # one of ours, already finished
            raise ProtocolViolation(f"frame for stream {stream_id}, which we never opened")
        index = stream_id // 2
        if index < self._peer_opened:
            return None  # finished and forgotten
        if index >= self._peer_allowed:
            raise ProtocolViolation(f"peer opened stream {stream_id} beyond its allowance of "
                                    f"{self._peer_allowed} streams")
        # Opening a stream implicitly opens every lower id of the peer's (frames for them may
        # simply be late), so ids below _peer_opened are either live or finished.
        for lower in range(self._peer_opened, index + 1):
            lower_id = lower * 2 + (1 if self._is_initiator else 0)
            self._make(lower_id, local=False, max_frame_size=self._local.max_frame_size,
                       no_delay=self._no_delay, priority=0)
            self._emit(StreamOpened(lower_id))
        self._peer_opened = index + 1
        return self.streams[stream_id]

    @property
    def open_count(self) -> int:
        return len(self.streams)

    # -- application ------------------------------------------------------------------------------

    def get(self, stream_id: int) -> Stream:
        stream = self.streams.get(stream_id)
        if stream is None:
            raise UsageError(f"stream {stream_id} is not open")
        return stream

    def send_message(self, stream_id: int, data: bytes | bytearray | memoryview,
                     now: float, hold: float) -> bool:
        stream = self.get(stream_id)
        send = stream.send
        if stream.app_closed or send.fin_offset is not None or send.reset_sent is not None:
            raise UsageError(f"stream {stream_id} is closed for sending")
        if len(data) > self._peer.max_message_size:
            raise UsageError(f"message of {len(data)} bytes exceeds the peer's max_message_size "
                             f"{self._peer.max_message_size}")
        if send.unacked_bytes >= self.send_buffer_limit:
            if self._blocked_writers is _NO_IDS:
                self._blocked_writers = set()
            self._blocked_writers.add(stream_id)
            return False
        send.write_message(data)
        self.bytes_sent += len(data)
        stream.bytes_sent += len(data)
        stream.messages_sent += 1
        if not stream.no_delay and stream.hold_until is None:
            stream.hold_until = now + hold
        self._make_ready(stream)
        return True

    @property
    def send_buffer_limit(self) -> int:
        """Unacknowledged bytes a stream may hold before ``send_message`` refuses more."""
        return max(self._send_buffer, self.send_buffer_floor)

    def receive_message(self, stream_id: int) -> bytes | None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return None
        message = stream.recv.pop_message()
        if message is not None:
            stream.bytes_received += len(message)
            stream.messages_received += 1
            if self._budget is not None:
                self._budget.on_read(stream)
            self._mark_window(stream_id)
            self._maybe_forget(stream)
        return message

    def close_stream(self, stream_id: int) -> None:
        stream = self.get(stream_id)
        stream.app_closed = True
        if stream.send.fin_offset is None and stream.send.reset_sent is None:
            stream.send.fin_offset = stream.send.buffered_end
            self._make_ready(stream)

    def reset_stream(self, stream_id: int, error_code: int) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        send = stream.send
        if send.reset_sent is None and not (send.fin_offset is not None and send.fin_acked):
            send.reset_sent = error_code
            self._control.append(ResetStreamFrame(stream_id, error_code, send.sent_end))
        self.stop_receiving(stream_id, error_code)

    def stop_receiving(self, stream_id: int, error_code: int) -> None:
        """Abort only the receiving half: unread data is dropped and the peer is asked to stop
        sending (STOP_SENDING); our sending half, and a FIN already queued, go on."""
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        recv = stream.recv
        if recv.reset_code is None and not recv.finished:
            recv.reset_code = error_code
            self._control.append(StopSendingFrame(stream_id, error_code))
        if recv.messages:  # unread and never to be read: it would keep the stream alive
            recv.messages.clear()
            recv.unread_bytes = 0  # discarded counts as taken (credit)
            if self._budget is not None:
                self._budget.on_read(stream)
        self._maybe_forget(stream)

    # -- flow control -----------------------------------------------------------------------------

    def conn_credit_left(self) -> int:
        return self.conn_send_max - self.conn_sent

    def collect_window_updates(self, now: float, srtt: float) -> None:
        """Queue MAX_STREAM_DATA / MAX_DATA where the application has freed half a window.
        Only streams that received or released data since the last call are looked at."""
        dirty, self._window_dirty = self._window_dirty, _NO_IDS
        budget = self._budget
        for stream_id in dirty:
            stream = self.streams.get(stream_id)
            if stream is None:
                continue
            recv = stream.recv
            credit = recv.credit()
            self.conn_consumed += credit - recv.reported
            recv.reported = credit
            limit = recv.window_update(now, srtt, self.max_recv_window, credit if budget is None
                                       else budget.stream_credit(stream, credit))
            if limit is not None:
                self._control.append(MaxStreamDataFrame(stream.stream_id, limit))
        if budget is not None:
            budget.settle(self.conn_recv_max, self.conn_consumed)
        if self.conn_recv_max - self.conn_consumed <= self.conn_recv_window // 2:
            if now - self._conn_window_at < 2 * srtt and (budget is None
                                                          or not budget.budget.over):
                self.conn_recv_window = min(self.conn_recv_window * 2, 2 * self.max_recv_window)
            self._conn_window_at = now
            new_max = self.conn_consumed + self.conn_recv_window
            if budget is not None:  # growth past the initial window is charged
                new_max = budget.conn_limit(new_max, self.conn_consumed)
            if new_max > self.conn_recv_max:
                self.conn_recv_max = new_max
                self._control.append(MaxDataFrame(new_max))

    def updates_owed(self) -> bool:
        """Whether the next :meth:`collect_window_updates` would queue a frame, or control
        frames wait already: the test :meth:`collect_window_updates` applies, without its
        effects. A runtime polls after a read only then, not after every message."""
        budget = self._budget
        if self._control or self._max_streams_pending or (budget is not None
                                                          and budget.budget.woken):
            return True  # (woken: a read here let the node grant others a reservation)
        consumed = self.conn_consumed
        for stream_id in self._window_dirty:
            stream = self.streams.get(stream_id)
            if stream is None:
                continue
            recv = stream.recv
            credit = recv.credit()
            consumed += credit - recv.reported
            if budget is not None:
                credit = budget.stream_credit(stream, credit, ask=False)
            if recv.final_size is None and recv.max_data - credit <= recv.window // 2 \
                    and min(credit + recv.window, MAX_VARINT) > recv.max_data:
                return True
        return self.conn_recv_max - consumed <= self.conn_recv_window // 2

    @property
    def windows_dirty(self) -> bool:
        return bool(self._window_dirty)

    def attach_budget(self, budget: MemoryBudget, wake: Any) -> None:
        """Ask the node's ``budget`` from now on (budget.py); ``wake()`` asks the endpoint to
        build this session's output when a queued reservation is granted."""
        if self._budget is None:
            self._budget = SessionBudget(budget, self._local.initial_max_data,
                                         self._mark_window, wake)

    def detach_budget(self) -> None:
        """The session is gone: what it held of the budget goes back."""
        if self._budget is not None:
            self._budget.close()
            self._budget = None

    @property
    def budget(self) -> SessionBudget | None:
        return self._budget

    # -- incoming frames --------------------------------------------------------------------------

    def on_frame(self, frame: Frame) -> None:
        if isinstance(frame, StreamFrame):
            self._on_stream(frame)
        elif isinstance(frame, MaxStreamDataFrame):
            stream = self._peer_stream(frame.stream_id)
            if stream is not None and frame.maximum > stream.send.max_data:
                stream.send.max_data = frame.maximum
                self._make_ready(stream)
        elif isinstance(frame, MaxDataFrame):
            if frame.maximum > self.conn_send_max:
                self.conn_send_max = frame.maximum
                for stream in self.streams.values():
                    self._make_ready(stream)
        elif isinstance(frame, MaxStreamsFrame):
            self._local_allowed = max(self._local_allowed, frame.maximum)
        elif isinstance(frame, ResetStreamFrame):
            stream = self._peer_stream(frame.stream_id)
            if stream is not None and stream.recv.reset_code is None:
                recv = stream.recv
                if recv.final_size is not None and recv.final_size != frame.final_size:
                    raise ProtocolViolation("RESET_STREAM changes the final size")
                recv.reset_code = frame.error_code
                recv.messages.clear()
                self._emit(StreamResetByPeer(frame.stream_id, frame.error_code))
                self._maybe_forget(stream)
        elif isinstance(frame, StopSendingFrame):
            stream = self._peer_stream(frame.stream_id)
            if stream is not None and stream.send.reset_sent is None:
                stream.send.reset_sent = frame.error_code
                self._control.append(ResetStreamFrame(frame.stream_id, frame.error_code,
                                                      stream.send.sent_end))
                self._emit(StreamStopped(frame.stream_id, frame.error_code))
                self._maybe_forget(stream)
        elif isinstance(frame, DataBlockedFrame | StreamDataBlockedFrame):
            pass  # informational: our window updates follow the application's reads
        else:  # pragma: no cover - the session routes only these frames here
            raise ProtocolViolation(f"unexpected {type(frame).__name__}")

    def _on_stream(self, frame: StreamFrame) -> None:
        self.on_stream_data(frame.stream_id, frame.offset, frame.data, frame.fin)

    def on_stream_data(self, stream_id: int, offset: int, data: bytes | memoryview,
                       fin: bool) -> None:
        """A STREAM frame's contents (the session's receive path calls this directly)."""
        stream = self.streams.get(stream_id) or self._peer_stream(stream_id)
        if stream is None or stream.recv.reset_code is not None:
            return
        recv = stream.recv
        had, cut = recv.message_bytes, recv.messages_cut
        grown = recv.on_data(offset, data, fin)
        dirty = self._window_dirty
        if dirty is _NO_IDS:
            dirty = self._window_dirty = set()
        dirty.add(stream_id)
        self.conn_received += grown
        if self.conn_received > self.conn_recv_max:
            raise ProtocolViolation("peer exceeded the session's flow-control window")
        if recv.message_bytes != had or recv.messages_cut != cut:
            self.bytes_received += recv.message_bytes - had
            self._emit(StreamReadable(stream_id))
        if recv.final_size is not None and recv.finished and not stream.end_reported:
            stream.end_reported = True
            self._emit(StreamEnded(stream_id))

    # -- acknowledgement and loss -----------------------------------------------------------------

    def on_items_acked(self, items: list[tuple[Any, ...]]) -> None:
        """What newly acknowledged packets carried, in packet order. A bulk transfer's ACK
        covers dozens of packets holding consecutive ranges of one stream: each such run is
        applied as one range (the same outcome as one by one, at a fraction of the cost)."""
        run: tuple[Any, ...] | None = None
        for item in items:
            if item[0] != "stream":
                continue
            if run is not None:
                if item[1] == run[1] and item[2] == run[3] and not run[4]:
                    run = ("stream", run[1], run[2], item[3], item[4])
                    continue
                self._stream_range_acked(run[1], run[2], run[3], run[4])
            run = item
        if run is not None:
            self._stream_range_acked(run[1], run[2], run[3], run[4])

    def _stream_range_acked(self, stream_id: int, start: int, stop: int, fin: bool) -> None:
        stream = self.streams.get(stream_id)
        if stream is None:
            return
        send = stream.send
        was_flushed = send.all_acked
        send.on_acked(start, stop, fin)
        if send.all_acked and not was_flushed:
            self._emit(StreamFlushed(stream_id))
        if stream_id in self._blocked_writers and send.unacked_bytes < self.send_buffer_limit:
            self._drop_blocked(stream_id)
            self._emit(StreamWritable(stream_id))
        self._maybe_forget(stream)

    def on_item_lost(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "stream":
            _, stream_id, start, stop, fin = item
            stream = self.streams.get(stream_id)
            if stream is not None:
                stream.send.on_lost(start, stop, fin)
                self._make_ready(stream)
        elif kind == "control":
            frame = item[1]
            if isinstance(frame, ResetStreamFrame | StopSendingFrame):
                self._control.append(frame)
            elif isinstance(frame, MaxStreamsFrame):
                self._max_streams_pending = True
            elif isinstance(frame, MaxDataFrame) and frame.maximum == self.conn_recv_max:
                self._control.append(frame)
            elif isinstance(frame, MaxStreamDataFrame):
                stream = self.streams.get(frame.stream_id)
                if stream is not None and stream.recv.max_data == frame.maximum:
                    self._control.append(frame)

    # -- forgetting finished streams --------------------------------------------------------------

    def _maybe_forget(self, stream: Stream) -> None:
        # The cheap test first: it keeps every stream of ours still open for sending, which
        # is the usual case on every ACK and every read.
        if stream.local and not stream.app_closed and stream.send.reset_sent is None:
            return
        if not (stream.send_done and stream.recv_done):
            return
        del self.streams[stream.stream_id]
        self._drop_ready(stream.stream_id)
        self._drop_blocked(stream.stream_id)
        if not stream.local:
            self._peer_closed += 1
            self._peer_allowed = self._peer_closed + self._local.max_concurrent_streams
            self._max_streams_pending = True
        recv = stream.recv
        final = recv.final_size if recv.final_size is not None else recv.credit()
        self.conn_consumed += max(final, recv.credit()) - recv.reported
        if self._budget is not None:
            self._budget.on_forget(stream.stream_id)

    # -- scheduling and packet filling ------------------------------------------------------------

    def compact(self) -> None:
        """Idle: drop the emptied ready table and control list (see DataPlane.compact)."""
        if not self._ready:
            self._ready = {}
        if not self._control:
            self._control = []

    def _mark_window(self, stream_id: int) -> None:
        if self._window_dirty is _NO_IDS:
            self._window_dirty = set()
        self._window_dirty.add(stream_id)

    def _drop_ready(self, stream_id: int) -> None:
        self._in_ready.discard(stream_id)
        if not self._in_ready:
            self._in_ready = _NO_IDS

    def _drop_blocked(self, stream_id: int) -> None:
        self._blocked_writers.discard(stream_id)
        if not self._blocked_writers:
            self._blocked_writers = _NO_IDS

    def _make_ready(self, stream: Stream) -> None:
        sid = stream.stream_id
        if sid in self._in_ready:
            return
        if self._in_ready is _NO_IDS:
            self._in_ready = set()
        self._in_ready.add(sid)
        self._ready.setdefault(stream.priority, deque()).append(sid)

    def next_hold_deadline(self) -> float | None:
        deadlines = [s.hold_until for sid in self._in_ready
                     if (s := self.streams.get(sid)) is not None and s.hold_until is not None]
        return min(deadlines) if deadlines else None

    def has_pending(self) -> bool:
        return bool(self._control) or self._max_streams_pending or bool(self._in_ready)

    def fill(self, payload: bytearray, space: int, items: list[Any], now: float,
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
            items.append(("control", frame))
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
                    self._drop_ready(sid)
                    continue
                keep = self._write_stream(stream, payload, room, items, now, in_flight)
                if keep:
                    queue.append(sid)
                else:
                    self._drop_ready(sid)
            if not queue:
                del self._ready[priority]
        if self.conn_sent >= self.conn_send_max:  # _note_blocked's own first test, inline
            self._note_blocked()

    def write_small(self, payload: bytearray, space: int, items: list[Any], now: float,
                    in_flight: int) -> bool:
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
        items.append(("stream", sid, start, stop, False))
        stream.hold_until = None
        del ready[priority]
        self._drop_ready(sid)
        if self.conn_sent >= self.conn_send_max:
            self._note_blocked()
        return True

    def bulk_source(self, space: int) -> tuple[Stream, int, int] | None:
        """For a bulk transfer: ``(stream, chunk, count)`` when the session has nothing to send
        but new data of one stream, ``count`` full frames of ``chunk`` bytes of it. Those
        frames are what :meth:`fill` would write, one per packet, so the caller may write them
        with :meth:`write_full_frame` and skip the general scheduling; None otherwise."""
        if self._control or self._max_streams_pending or len(self._in_ready) != 1:
            return None
        stream = self.streams.get(next(iter(self._in_ready)))
        if stream is None:
            return None
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

    def write_full_frame(self, stream: Stream, chunk: int) -> tuple[bytes, tuple[Any, ...]]:
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
        return payload, ("stream", sid, start, stop, False)

    def _write_stream(self, stream: Stream, payload: bytearray, room: int,
                      items: list[Any], now: float, in_flight: int) -> bool:
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
        items.append(("stream", stream.stream_id, start, stop, fin))
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


__all__ = ["StreamManager"]
