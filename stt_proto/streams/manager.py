"""All streams of a session: ids, limits, connection-level flow control, and the translation
between stream state and incoming STREAM / flow-control frames, acknowledgements and losses.
Filling packets is the :class:`~.packetizer.Packetizer` base's part.

Ids: the initiator opens even ids, the responder odd ones, so they never collide. Each side may
have at most the peer's ``max_concurrent_streams`` open at once; MAX_STREAMS raises that allowance
as streams finish.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..budget import MemoryBudget, SessionBudget
from ..errors import ProtocolViolation, StreamLimitError, UsageError
from ..events import (
    StreamEnded,
    StreamFlushed,
    StreamOpened,
    StreamReadable,
    StreamResetByPeer,
    StreamStopped,
    StreamWritable,
)
from ..frames import (
    DataBlockedFrame,
    Frame,
    MaxDataFrame,
    MaxStreamDataFrame,
    MaxStreamsFrame,
    ResetStreamFrame,
    StopSendingFrame,
    StreamDataBlockedFrame,
)
from ..handshake_payload import TransportSettings
from ..varint import MAX_VARINT
from .packetizer import _NO_IDS, Packetizer
from .records import RetransmitItem, StreamRange
from .recv import GROW_NEXT as _GROW_NEXT  # (a stamp in the future: the next update grows)
from .stream import Stream


class StreamManager(Packetizer):
    """Every stream of one session, and the session's share of flow control."""

    # Slotted: a node may hold 10,000 idle sessions, and a __dict__ each costs KiBs.
    __slots__ = ("_blocked_writers", "_budget", "_conn_gap_full", "_conn_window_at", "_emit",
                 "_is_initiator", "_local", "_local_allowed", "_next_local_index", "_no_delay",
                 "_peer", "_peer_closed", "_peer_opened", "_send_buffer", "_window_dirty",
                 "bytes_received", "bytes_sent", "conn_consumed", "conn_received",
                 "conn_recv_max", "conn_recv_window", "max_recv_window", "send_buffer_floor")

    def __init__(self, *, is_initiator: bool, local: TransportSettings,
                 peer: TransportSettings, send_buffer: int, recv_buffer: int,
                 no_delay: bool, emit: Callable[[Any], None]) -> None:
        super().__init__(peer.initial_max_data, local.max_concurrent_streams)
        self._is_initiator = is_initiator
        self._local = local
        self._peer = peer
        self._emit = emit
        self._send_buffer = send_buffer
        self.send_buffer_floor = 0  # raised to 2 x cwnd so the buffer never starves the pipe
        self._no_delay = no_delay
        self._next_local_index = 0
        self._local_allowed = peer.max_concurrent_streams  # cumulative streams we may open
        self._peer_opened = 0  # highest peer stream index + 1
        self._peer_closed = 0
        # connection-level flow control (the sending half's is the Packetizer's)
        self.conn_recv_max = local.initial_max_data
        self.conn_recv_window = local.initial_max_data
        self.conn_received = 0
        self.conn_consumed = 0  # session-level credit given back (sum of stream credits)
        self._budget: SessionBudget | None = None  # the node's memory budget (budget.py)
        self._window_dirty: set[int] | frozenset[int] = _NO_IDS
        self._conn_window_at = 0.0
        self._conn_gap_full = False  # a gap fills the session's window: grow it at once
        self.max_recv_window = max(recv_buffer * 4, local.initial_max_data)
        self._blocked_writers: set[int] | frozenset[int] = _NO_IDS
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
            blocked = self._blocked_writers
            if isinstance(blocked, frozenset):
                blocked = self._blocked_writers = set()
            blocked.add(stream_id)
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

    def receive_message(self, stream_id: int,
                        into: memoryview | None = None) -> bytes | int | None:
        stream = self.streams.get(stream_id)  # (into: RecvSide.pop_message_into)
        if stream is None:
            return None
        recv = stream.recv
        message = recv.pop_message() if into is None else recv.pop_message_into(into)
        if message is not None:
            stream.bytes_received += message if isinstance(message, int) else len(message)
            stream.messages_received += 1
            budget = self._budget
            if budget is not None and budget._reservations:  # a read may end one (no call)
                budget.on_read(stream)
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
            recv.discard_messages()
            recv.unread_bytes = 0  # discarded counts as taken (credit)
            if self._budget is not None:
                self._budget.on_read(stream)
        self._maybe_forget(stream)

    # -- flow control -----------------------------------------------------------------------------

    def collect_window_updates(self, now: float, srtt: float) -> None:
        """Queue MAX_STREAM_DATA / MAX_DATA where the application has freed a quarter of a
        window (RecvSide.window_update says why). Only streams that received or released data
        since the last call are looked at."""
        dirty, self._window_dirty = self._window_dirty, _NO_IDS
        budget = self._budget
        grow_conn = False
        for stream_id in dirty:
            stream = self.streams.get(stream_id)
            if stream is None:
                continue
            recv = stream.recv
            credit = recv.credit()
            self.conn_consumed += credit - recv.reported
            recv.reported = credit
            if budget is not None and recv._head is not None:  # only a partial message asks
                credit = budget.stream_credit(stream, credit)
            limit = recv.window_update(now, srtt, self.max_recv_window, credit)
            if limit is not None:
                self._control.append(MaxStreamDataFrame(stream.stream_id, limit))
                if recv.window > self.conn_recv_window >> 1:  # a stream's window grew: the
                    grow_conn = True  # session's keeps twice it, as at the start
        if budget is not None and budget.charged:  # window growth to give back
            budget.settle(self.conn_recv_max, self.conn_consumed)
        gap_full, self._conn_gap_full = self._conn_gap_full, False
        if gap_full or grow_conn or self._conn_update_due(self.conn_consumed):
            if (gap_full or grow_conn or now - self._conn_window_at < srtt) and (
                    budget is None or not budget.budget.over):
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
            if budget is not None and recv._head is not None:
                credit = budget.stream_credit(stream, credit, ask=False)
            if recv.final_size is not None:
                continue
            if recv.gap_full and recv.window < self.max_recv_window and min(
                    credit + min(recv.window * 2, self.max_recv_window), MAX_VARINT) \
                    > recv.max_data:
                return True
            if recv.update_due(credit) and min(credit + recv.window, MAX_VARINT) > recv.max_data:
                return True
        return (self._conn_gap_full and self.conn_recv_window < 2 * self.max_recv_window) \
            or self._conn_update_due(consumed)

    def _conn_update_due(self, consumed: int) -> bool:
        """RecvSide.update_due for the session's window, ``consumed`` bytes taken."""
        return self.conn_recv_max - consumed <= self.conn_recv_window - (self.conn_recv_window >> 2)

    @property
    def windows_dirty(self) -> bool:
        return bool(self._window_dirty)

    def attach_budget(self, budget: MemoryBudget, wake: Callable[[], None]) -> None:
        """Ask the node's ``budget`` from now on (budget.py); ``wake()`` asks the endpoint to
        build this session's output when a queued reservation is granted."""
        if self._budget is None:
            self._budget = SessionBudget(budget, self._local.initial_max_data,
                                         self._mark_window, wake, self.streams)

    def compact(self) -> None:
        """Idle: also let go of the streams' emptied assemblies (Packetizer.compact)."""
        super().compact()
        for stream in self.streams.values():
            stream.recv.release_assembly()

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
        """A flow-control or stream-control frame. (STREAM frames take :meth:`on_stream_data`:
        the session decodes them in place, without a frame object.)"""
        if isinstance(frame, MaxStreamDataFrame):
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
                recv.discard_messages()
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
        elif isinstance(frame, StreamDataBlockedFrame):
            # Our window, not the path, held the peer back (a gap waiting for a retransmission
            # holds the reads, and the "used within an RTT" growth with them): the next update
            # doubles it, within max_recv_window and the node's budget.
            blocked = self.streams.get(frame.stream_id)
            if blocked is None:
                return
            recv = blocked.recv
            if frame.limit >= recv.max_data:
                recv.window_updated_at = _GROW_NEXT
            elif recv.final_size is None and recv.reset_code is None:
                # Blocked at a limit we raised since: the update was lost (or is late). Said
                # again now, the peer waits one round trip, not until our loss detection
                # declares the update lost (a probe timeout when only ACKs follow it).
                self._resend(MaxStreamDataFrame(frame.stream_id, recv.max_data))
        elif isinstance(frame, DataBlockedFrame):
            if frame.limit >= self.conn_recv_max:  # the same for the connection's window
                self._conn_window_at = _GROW_NEXT
            else:
                self._resend(MaxDataFrame(self.conn_recv_max))
        else:  # pragma: no cover - the session routes only these frames here
            raise ProtocolViolation(f"unexpected {type(frame).__name__}")

    def on_stream_data(self, stream_id: int, offset: int, data: bytes | memoryview,
                       fin: bool) -> None:
        """A STREAM frame's contents, as the session's receive path decodes them."""
        stream = self.streams.get(stream_id) or self._peer_stream(stream_id)
        if stream is None or stream.recv.reset_code is not None:
            return
        recv = stream.recv
        had, cut = recv.message_bytes, recv.messages_cut
        grown = recv.on_data(offset, data, fin)
        dirty = self._window_dirty
        if isinstance(dirty, frozenset):
            dirty = self._window_dirty = set()
        dirty.add(stream_id)
        self.conn_received += grown
        if self.conn_received > self.conn_recv_max:
            raise ProtocolViolation("peer exceeded the session's flow-control window")
        if recv.gap_full and (recv._highest - recv.read_offset) * 2 >= self.conn_recv_window:
            # Half the session's window is behind one stream's gap: it doubles now, as a stream's
            self._conn_gap_full = True
        if recv.message_bytes != had or recv.messages_cut != cut:
            self.bytes_received += recv.message_bytes - had
            self._emit(StreamReadable(stream_id))
        if recv.final_size is not None and recv.finished and not stream.end_reported:
            stream.end_reported = True
            self._emit(StreamEnded(stream_id))
            if not recv.messages:  # read through: a FIN alone may be the stream's last word
                self._maybe_forget(stream)

    def _resend(self, frame: MaxDataFrame | MaxStreamDataFrame) -> None:
        """Queue a window update again unless it waits already (BLOCKED frames, however many,
        cost one frame each)."""
        if frame not in self._control:
            self._control.append(frame)

    # -- acknowledgement and loss -----------------------------------------------------------------

    def on_items_acked(self, items: Sequence[RetransmitItem]) -> None:
        """What newly acknowledged packets carried, in packet order. A bulk transfer's ACK
        covers dozens of packets holding consecutive ranges of one stream: each such run is
        applied as one range (the same outcome as one by one, at a fraction of the cost)."""
        sid = start = stop = -1  # the run so far (none while sid < 0)
        fin = False
        for item in items:
            if type(item) is not StreamRange:
                continue
            if sid >= 0:
                if item.stream_id == sid and item.start == stop and not fin:
                    stop, fin = item.stop, item.fin
                    continue
                self._stream_range_acked(sid, start, stop, fin)
            sid, start, stop, fin = item.stream_id, item.start, item.stop, item.fin
        if sid >= 0:
            self._stream_range_acked(sid, start, stop, fin)

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

    def on_item_lost(self, item: RetransmitItem) -> None:
        """A packet carrying ``item`` was lost: its stream range is queued again, and its
        control frame sent again if still current."""
        if type(item) is StreamRange:
            stream = self.streams.get(item.stream_id)
            if stream is not None:
                stream.send.on_lost(item.start, item.stop, item.fin)
                self._make_ready(stream)
            return
        frame = item.frame
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
        # A BLOCKED frame still true goes again: the peer answers one at a limit it has raised
        # since by saying its update again (on_frame), so a lost update costs a round trip.
        elif isinstance(frame, StreamDataBlockedFrame):
            stream = self.streams.get(frame.stream_id)
            if stream is not None and stream.send.max_data == frame.limit \
                    and stream.send.sent_end >= frame.limit and stream.send.reset_sent is None:
                self._control.append(frame)
        elif isinstance(frame, DataBlockedFrame) and frame.limit == self.conn_send_max \
                and self.conn_sent >= frame.limit:
            self._control.append(frame)

    # -- forgetting finished streams --------------------------------------------------------------

    def _maybe_forget(self, stream: Stream) -> None:
        # The cheap test first: a stream of ours still open for sending (most ACKs and reads)
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

    def _mark_window(self, stream_id: int) -> None:
        dirty = self._window_dirty
        if isinstance(dirty, frozenset):
            dirty = self._window_dirty = set()
        dirty.add(stream_id)

    def _drop_blocked(self, stream_id: int) -> None:
        blocked = self._blocked_writers
        if isinstance(blocked, set):
            blocked.discard(stream_id)
            if not blocked:
                self._blocked_writers = _NO_IDS


__all__ = ["StreamManager"]
