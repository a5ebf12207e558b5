"""Awaitable faces of a session and its streams: thin wrappers over ``stt_proto``.

Every decision (what to send, when, whether a send fits) is the protocol core's; these classes
only wait for the events that the node's driver dispatches to them. They are independent of the
event loop: the node supplies the wake-up signal type (asyncio futures here, anyio events in
``stt_anyio``), so both runtimes share them. (Moved from ``stt_asyncio``; ``stt_runtime`` imports
no event loop.)
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, ClassVar, TypeVar

import attrs

from stt_proto import (
    HandshakeCompleted,
    SessionAccepted,
    SessionClosed,
    SessionTerminated,
    StreamClosed,
    StreamClosedLocally,
    StreamReset,
    STTError,
)
from stt_proto import Node as ProtoNode
from stt_proto import Session as ProtoSession
from stt_proto.events import (
    DatagramReceived,
    StreamEnded,
    StreamFlushed,
    StreamOpened,
    StreamReadable,
    StreamResetByPeer,
    StreamStopped,
    StreamWritable,
)
from stt_proto.stats import SessionStats, StreamStats

from ._signal import Signal

Read = TypeVar("Read", bytes, int)  # a message, or the size of one read into a buffer

if TYPE_CHECKING:
    from typing import Protocol

    class Node(Protocol):
        def _kick(self) -> None: ...
        def _send_now(self) -> None: ...
        def _flush(self) -> bool: ...
        def _now(self) -> float: ...
        def _new_signal(self) -> Signal: ...

        _datagram_budget: DatagramBudget

MAX_QUEUED_DATAGRAMS = 1024


class DatagramBudget:
    """Unread DATAGRAM payloads queued by every session of one node, against the node's
    ``datagram_budget``: per session the queue holds MAX_QUEUED_DATAGRAMS, but 10,000
    sessions x 1,024 x 64 KiB is far more than a node can hold. Past the budget a datagram
    is dropped and counted ("node_budget")."""

    __slots__ = ("limit", "queued")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.queued = 0  # bytes


# Streams the peer opened and ended before the application accepted them that still wait in
# the accept queue (see Session._drop_if_done).
MAX_ENDED_UNACCEPTED = 64


class Stream:
    """A reliable, ordered, message-preserving stream.

    The wrapper records how each half ended (a reset code per half, our own closes), because
    the core forgets a stream once both halves are done: its last error must still be raised
    to an application that holds the stream, and a reset must never read as a clean end.
    """

    # Slotted: a node may hold one per idle stream, thousands of them.
    __slots__ = ("__weakref__", "_flushed", "_queued", "_readable", "_recv_closed", "_reset",
                 "_send_closed", "_session", "_stopped", "_writable", "stream_id")

    # What this runtime raises (stt_anyio raises subclasses that are anyio's exceptions too).
    _end_error: ClassVar[type[StreamClosed]] = StreamClosed
    _reset_error: ClassVar[type[StreamReset]] = StreamReset
    _closed_error: ClassVar[type[StreamClosedLocally]] = StreamClosedLocally

    def __init__(self, session: Session, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._readable = session._node._new_signal()
        self._writable = session._node._new_signal()
        self._flushed = session._node._new_signal()
        self._send_closed = False  # our close(): no more sends
        self._recv_closed = False  # our aclose() (stt_anyio): no more receives
        self._reset: int | None = None  # the receiving half was aborted, by us or the peer
        self._stopped: int | None = None  # the sending half was aborted, by us or the peer
        self._queued = False  # waiting in the session's accept queue

    @property
    def is_closed(self) -> bool:
        """Both halves are done (closed, finished or reset), or the session is gone."""
        if self._session.is_closed:
            return True
        if not (self._send_closed or self._stopped is not None):
            return False
        return (self._recv_closed or self._reset is not None
                or self._session._proto.stream_state(self.stream_id)[0])

    def _wake_all(self) -> None:
        self._readable.set()
        self._writable.set()
        self._flushed.set()

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one message; waits while the send buffer is full (back-pressure)."""
        proto = self._session._proto
        payload = bytes(data)  # the caller may reuse its buffer once we return
        while True:
            if self._send_closed:
                raise self._closed_error(f"stream {self.stream_id} was closed for sending")
            if self._stopped is not None:
                raise self._reset_error(self._stopped)
            self._session._raise_if_closed()
            if proto.send_message(self.stream_id, payload):
                if proto.stream_no_delay(self.stream_id):
                    self._session._node._send_now()  # no wait for the next loop pass
                else:
                    self._session._node._kick()
                return
            await self._writable.wait()

    async def receive(self) -> bytes:
        """The next whole message; StreamClosed once the peer's close has been read through,
        StreamReset (with the code) if either side aborted the stream, whenever it happened."""
        proto, stream_id = self._session._proto, self.stream_id
        return await self._read(lambda: proto.receive_message(stream_id))

    async def receive_into(self, buffer: bytearray | memoryview) -> int:
        """The next whole message written into ``buffer`` (writable, bytes-like): its size.
        Nothing is allocated for the message: a large one is copied once, from the stream's
        reassembly buffer. Raises BufferTooSmall, the message left unread, if it does not fit;
        otherwise as :meth:`receive`."""
        view = memoryview(buffer)
        if view.readonly:
            raise TypeError("receive_into needs a writable buffer (a bytearray, for one)")
        if view.ndim != 1 or view.itemsize != 1:
            view = view.cast("B")
        proto, stream_id = self._session._proto, self.stream_id
        return await self._read(lambda: proto.receive_message_into(stream_id, view))

    async def _read(self, read: Callable[[], Read | None]) -> Read:
        proto = self._session._proto
        while True:
            if self._recv_closed:
                raise self._closed_error(f"stream {self.stream_id} was closed for receiving")
            if self._reset is not None:
                raise self._reset_error(self._reset)
            message = read()
            if message is not None:
                if proto.read_needs_poll():
                    self._session._node._kick()  # a window update is owed
                if self._send_closed or self._stopped is not None:
                    self._session._drop_if_done(self)  # this read may have finished it
                return message
            if proto.stream_state(self.stream_id)[0]:  # finished and read (or forgotten)
                self._session._drop_if_done(self)
                raise self._end_error(f"stream {self.stream_id} was closed by the peer")
            self._session._raise_if_closed()
            if self._session._node._flush():
                continue  # what this task wrote has left; the poll may have changed state
            await self._readable.wait()

    async def flush(self) -> None:
        """Return once every byte sent so far has been acknowledged by the peer."""
        proto = self._session._proto
        while True:
            if self._stopped is not None:
                raise self._reset_error(self._stopped)
            if proto.stream_state(self.stream_id)[1]:
                return
            self._session._raise_if_closed()
            await self._flushed.wait()

    async def close(self) -> None:
        """Half-close: queued data is sent, then FIN. This side can still receive."""
        if self._send_closed:
            return
        self._send_closed = True
        session = self._session
        if (not session.is_closed and self._stopped is None
                and session._proto.is_stream_open(self.stream_id)):
            session._proto.close_stream(self.stream_id)
            session._node._kick()
        self._writable.set()  # a send() blocked on back-pressure now fails at once

    async def reset(self, code: int = 0) -> None:
        """Abort both directions: the peer's receive() and send() raise StreamReset(code), and
        so do ours."""
        if self._reset is None:
            self._reset = code
        if self._stopped is None:
            self._stopped = code
        self._session._proto.reset_stream(self.stream_id, code)
        self._session._node._kick()
        self._wake_all()
        self._session._drop_if_done(self)

    async def _close_both(self, code: int = 0) -> None:
        """Close both directions: FIN after what is queued (if not sent yet), and STOP_SENDING
        so the peer's further sends fail with StreamReset(code). Our own later sends and
        receives raise ``_closed_error``."""
        await self.close()
        self._recv_closed = True
        session = self._session
        if self._reset is None:
            session._proto.stop_receiving(self.stream_id, code)
            session._node._kick()
        self._wake_all()
        session._drop_if_done(self)

    def get_stats(self) -> StreamStats:
        return self._session._proto.stream_stats(self.stream_id)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        """Messages until the peer's graceful close; a reset raises StreamReset."""
        while True:
            try:
                yield await self.receive()
            except StreamClosed:
                return


class Session:
    """An authenticated, encrypted session with one peer."""

    stream_class: type[Stream] = Stream
    # Slotted, with lists for the two queues (an empty deque costs 760 B): a node may hold
    # 10,000 idle sessions. The wake-up signals are made on first use: most sessions never
    # wait on some of them (an accepted one on its handshake, many on datagrams), and each is
    # an object the garbage collector traverses in every full pass over thousands of sessions
    # (a 2,000-handshake burst runs one or two). A set() with no waiter is a no-op for every
    # Signal, so a signal made late misses nothing.
    __slots__ = ("__weakref__", "_datagram_bytes_dropped", "_datagram_bytes_queued",
                 "_datagram_signal", "_datagrams", "_datagrams_dropped",
                 "_datagrams_over_budget", "_incoming", "_incoming_signal", "_node", "_proto",
                 "_state_signal", "_streams")

    def __init__(self, node: Node, proto: ProtoSession) -> None:
        self._node = node
        self._proto = proto
        self._streams: dict[int, Stream] = {}
        self._incoming: list[Stream] = []  # streams the peer opened, unaccepted
        self._incoming_signal: Signal | None = None
        self._datagrams: list[bytes] = []  # received, unread
        self._datagram_signal: Signal | None = None
        self._datagrams_dropped = 0  # arrived while the receive queue was full
        self._datagram_bytes_dropped = 0
        self._datagrams_over_budget = 0  # dropped: the node's datagram_budget was spent
        self._datagram_bytes_queued = 0  # counted on the node's budget
        self._state_signal: Signal | None = None  # handshake confirmed, or session ended

    # -- identity ---------------------------------------------------------------------------------

    @property
    def peer_id(self) -> bytes:
        return self._proto.peer_id or b""

    @property
    def session_id(self) -> bytes:
        return self._proto.session_id

    @property
    def remote_address(self) -> tuple[str, int]:
        return self._proto.remote_address

    @property
    def is_closed(self) -> bool:
        return self._proto.is_closed

    def get_stats(self) -> SessionStats:
        """The core's counters, less the datagrams this runtime dropped because the application
        left MAX_QUEUED_DATAGRAMS unread: those count as dropped ("receive_queue_full"), not as
        bytes received."""
        stats = self._proto.get_stats()
        reasons = dict(stats.datagrams_dropped_by_reason)
        reasons["receive_queue_full"] = self._datagrams_dropped
        reasons["node_budget"] = self._datagrams_over_budget
        return attrs.evolve(
            stats, bytes_received=stats.bytes_received - self._datagram_bytes_dropped,
            datagrams_dropped=stats.datagrams_dropped + self._datagrams_dropped
            + self._datagrams_over_budget,
            datagrams_dropped_by_reason=reasons)

    def _session_error(self) -> STTError:
        """What callers get once the session is gone (stt_anyio adds anyio's class)."""
        error = self._proto.error
        return error if error is not None else SessionClosed(0, "closed")

    def _raise_if_closed(self) -> None:
        if self._proto.is_closed:
            raise self._session_error()

    # -- streams ----------------------------------------------------------------------------------

    def _stream(self, stream_id: int) -> Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._streams[stream_id] = self.stream_class(self, stream_id)
        return stream

    def _drop_if_done(self, stream: Stream) -> None:
        """Forget the wrapper once the core has forgotten its stream (no event can name it
        again): a peer resetting 100k streams must not leave 100k wrappers. An application
        that holds the wrapper keeps it, with its final state. An unaccepted one stays in the
        accept queue, so the application still learns that the peer aborted it (its receive()
        raises StreamReset), but at most MAX_ENDED_UNACCEPTED such streams wait there: past
        that the oldest leaves the queue unseen."""
        if self._proto.is_stream_open(stream.stream_id):
            return
        if self._streams.get(stream.stream_id) is stream:
            del self._streams[stream.stream_id]
        if stream._queued:
            ended = [s for s in self._incoming if not self._proto.is_stream_open(s.stream_id)]
            if len(ended) > MAX_ENDED_UNACCEPTED:
                oldest = ended[0]
                oldest._queued = False
                self._incoming.remove(oldest)

    def open_stream(self, max_frame_size: int | None = None, no_delay: bool | None = None,
                    priority: int = 0) -> Stream:
        """Open a stream (synchronous). Raises StreamLimitError past max_concurrent_streams."""
        self._raise_if_closed()
        stream_id = self._proto.open_stream(max_frame_size, no_delay, priority)
        return self._stream(stream_id)

    async def accept_stream(self) -> Stream:
        """The next stream the peer opened."""
        while not self._incoming:
            self._raise_if_closed()
            signal = self._incoming_signal
            if signal is None:
                signal = self._incoming_signal = self._node._new_signal()
            await signal.wait()
        stream = self._incoming.pop(0)  # at most max_concurrent_streams: a short move
        stream._queued = False
        return stream

    async def streams(self) -> AsyncIterator[Stream]:
        while True:
            try:
                yield await self.accept_stream()
            except STTError:
                return

    # -- datagrams --------------------------------------------------------------------------------

    async def send_datagram(self, data: bytes | bytearray | memoryview) -> None:
        """Send an unreliable message (dropped, and counted, if the queue is full)."""
        self._raise_if_closed()
        self._proto.send_datagram(data)
        self._node._kick()

    async def receive_datagram(self) -> bytes:
        while not self._datagrams:
            self._raise_if_closed()
            signal = self._datagram_signal
            if signal is None:
                signal = self._datagram_signal = self._node._new_signal()
            await signal.wait()
        data = self._datagrams.pop(0)  # at most MAX_QUEUED_DATAGRAMS: a short move
        if self._datagram_bytes_queued:
            self._datagram_bytes_queued -= len(data)
            self._node._datagram_budget.queued -= len(data)
        return data

    def _release_datagrams(self) -> None:
        """The session ended: what it still queues leaves the node's budget (it stays
        readable, at most MAX_QUEUED_DATAGRAMS, as long as the application keeps it)."""
        self._node._datagram_budget.queued -= self._datagram_bytes_queued
        self._datagram_bytes_queued = 0

    # -- closing ----------------------------------------------------------------------------------

    async def close(self, error_code: int = 0, reason: str = "") -> None:
        """Close gracefully; the peer sees SessionClosed with this code and reason."""
        if not self._proto.is_closed:
            self._proto.close(error_code, reason, self._node._now())
            self._node._kick()
            self._wake_all()

    def _wake_all(self) -> None:
        for stream in self._streams.values():
            stream._wake_all()
        for signal in (self._incoming_signal, self._datagram_signal, self._state_signal):
            if signal is not None:
                signal.set()

    async def _wait_confirmed(self) -> None:
        """Until the handshake is confirmed; raises the session's error if it ends first."""
        while not self._proto.confirmed:
            self._raise_if_closed()
            if self._proto.is_terminated:
                raise self._session_error()
            signal = self._state_signal
            if signal is None:
                signal = self._state_signal = self._node._new_signal()
            await signal.wait()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


SessionT = TypeVar("SessionT", bound="Session")


def dispatch_events(endpoint: ProtoNode, sessions: dict[bytes, SessionT],
                    wrap: Callable[[ProtoSession], SessionT], accepted: deque[SessionT],
                    accept_signal: Signal) -> None:
    """Hand the endpoint's and its sessions' new events to the waiting wrappers."""
    while (event := endpoint.next_event()) is not None:
        if isinstance(event, SessionAccepted):
            proto = endpoint.sessions.get(event.session_id)
            if proto is not None:
                accepted.append(wrap(proto))
                accept_signal.set()
    for proto in endpoint.take_touched():
        session = sessions.get(proto.session_id)
        if session is None:
            while proto.next_event() is not None:  # not yet accepted: nothing waits on it
                pass
            continue
        _deliver(session, proto)
        if proto.is_terminated:
            sessions.pop(proto.session_id, None)


def _deliver(session: Session, proto: ProtoSession) -> None:
    streams = session._streams
    ended: list[Stream] | None = None  # streams the core may have forgotten in this pass
    while (event := proto.next_event()) is not None:
        # Event classes are final (frozen attrs classes), so ``type(...) is`` is isinstance
        # at a fraction of the cost; the stream events of a dialogue come first. A stream event
        # naming no wrapper is for a stream already forgotten: nothing waits on it.
        kind = type(event)
        if kind is StreamReadable or kind is StreamEnded:
            stream = streams.get(event.stream_id)  # type: ignore[union-attr]
            if stream is not None:
                stream._readable.set()
        elif kind is StreamFlushed:
            stream = streams.get(event.stream_id)  # type: ignore[union-attr]
            if stream is not None:
                stream._flushed.set()
                if stream._send_closed:  # the FIN's acknowledgement may finish it
                    ended = _note(ended, stream)
        elif isinstance(event, StreamWritable):
            stream = streams.get(event.stream_id)
            if stream is not None:
                stream._writable.set()
        elif isinstance(event, StreamResetByPeer | StreamStopped):
            stream = streams.get(event.stream_id)
            if stream is not None:
                if isinstance(event, StreamResetByPeer):
                    if stream._reset is None:
                        stream._reset = event.error_code
                elif stream._stopped is None:
                    stream._stopped = event.error_code
                stream._wake_all()
                ended = _note(ended, stream)
        elif isinstance(event, StreamOpened):
            stream = session._stream(event.stream_id)
            stream._queued = True
            session._incoming.append(stream)
            if session._incoming_signal is not None:
                session._incoming_signal.set()
        elif isinstance(event, DatagramReceived):
            size = len(event.data)
            budget = session._node._datagram_budget
            if len(session._datagrams) >= MAX_QUEUED_DATAGRAMS:
                session._datagrams_dropped += 1  # counted as dropped, and not as received
                session._datagram_bytes_dropped += size
            elif budget.queued + size > budget.limit:
                session._datagrams_over_budget += 1
                session._datagram_bytes_dropped += size
            else:
                session._datagrams.append(event.data)
                session._datagram_bytes_queued += size
                budget.queued += size
            if session._datagram_signal is not None:
                session._datagram_signal.set()
        elif isinstance(event, HandshakeCompleted):
            if session._state_signal is not None:
                session._state_signal.set()
        elif isinstance(event, SessionTerminated):
            session._release_datagrams()
            session._wake_all()
    if ended is not None:  # only now: a later event of this pass may still name the stream
        for stream in ended:
            session._drop_if_done(stream)


def _note(ended: list[Stream] | None, stream: Stream) -> list[Stream]:
    if ended is None:
        return [stream]
    ended.append(stream)
    return ended
