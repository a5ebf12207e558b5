"""Awaitable faces of a session and its streams: thin wrappers over ``stt_proto``.

Every decision (what to send, when, whether a send fits) is the protocol core's; these classes
only wait for the events that the node's driver dispatches to them. They are independent of the
event loop: the node supplies the wake-up signal type (asyncio futures here, anyio events in
``stt_anyio``), so both runtimes share them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar

from stt_proto import (
    Endpoint,
    HandshakeCompleted,
    SessionAccepted,
    SessionClosed,
    SessionTerminated,
    StreamClosed,
    StreamReset,
    STTError,
    UsageError,
)
from stt_proto import Session as ProtoSession
from stt_proto.events import (
    DatagramReceived,
    StreamEnded,
    StreamFlushed,
    StreamOpened,
    StreamReadable,
    StreamResetByPeer,
    StreamWritable,
)
from stt_proto.stats import SessionStats, StreamStats

from ._signal import Signal

if TYPE_CHECKING:
    from typing import Protocol

    class Node(Protocol):
        def _kick(self) -> None: ...
        def _send_now(self) -> None: ...
        def _now(self) -> float: ...
        def _new_signal(self) -> Signal: ...

MAX_QUEUED_DATAGRAMS = 1024


class Stream:
    """A reliable, ordered, message-preserving stream."""

    # Slotted: a node may hold one per idle stream, thousands of them.
    __slots__ = ("__weakref__", "_flushed", "_readable", "_send_closed", "_session", "_writable",
                 "stream_id")

    def __init__(self, session: Session, stream_id: int) -> None:
        self._session = session
        self.stream_id = stream_id
        self._readable = session._node._new_signal()
        self._writable = session._node._new_signal()
        self._flushed = session._node._new_signal()
        self._send_closed = False

    @property
    def is_closed(self) -> bool:
        if self._session.is_closed:
            return True
        finished, _, reset = self._session._proto.stream_state(self.stream_id)
        return reset is not None or (finished and self._send_closed)

    def _wake_all(self) -> None:
        self._readable.set()
        self._writable.set()
        self._flushed.set()

    async def send(self, data: bytes | bytearray | memoryview) -> None:
        """Queue one message; waits while the send buffer is full (back-pressure)."""
        proto = self._session._proto
        payload = bytes(data)  # the caller may reuse its buffer once we return
        while True:
            self._session._raise_if_closed()
            if self._send_closed:
                raise UsageError(f"stream {self.stream_id} was closed for sending")
            _, _, reset = proto.stream_state(self.stream_id)
            if reset is not None:
                raise StreamReset(reset)
            if proto.send_message(self.stream_id, payload):
                if proto.stream_no_delay(self.stream_id):
                    self._session._node._send_now()  # no wait for the next loop pass
                else:
                    self._session._node._kick()
                return
            await self._writable.wait()

    async def receive(self) -> bytes:
        """The next whole message; StreamClosed after the peer's close, StreamReset if aborted."""
        proto = self._session._proto
        while True:
            message = proto.receive_message(self.stream_id)
            if message is not None:
                if proto.read_needs_poll():
                    self._session._node._kick()  # a window update is owed
                return message
            finished, _, reset = proto.stream_state(self.stream_id)
            if reset is not None:
                raise StreamReset(reset)
            if finished:
                raise StreamClosed(f"stream {self.stream_id} was closed by the peer")
            self._session._raise_if_closed()
            await self._readable.wait()

    async def flush(self) -> None:
        """Return once every byte sent so far has been acknowledged by the peer."""
        proto = self._session._proto
        while True:
            _, flushed, reset = proto.stream_state(self.stream_id)
            if reset is not None:
                raise StreamReset(reset)
            if flushed:
                return
            self._session._raise_if_closed()
            await self._flushed.wait()

    async def close(self) -> None:
        """Half-close: queued data is sent, then FIN. This side can still receive."""
        if self._send_closed or self._session.is_closed:
            return
        self._send_closed = True
        self._session._proto.close_stream(self.stream_id)
        self._session._node._kick()

    async def reset(self, code: int = 0) -> None:
        """Abort both directions."""
        self._session._proto.reset_stream(self.stream_id, code)
        self._session._node._kick()
        self._wake_all()

    def get_stats(self) -> StreamStats:
        return self._session._proto.stream_stats(self.stream_id)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[bytes]:
        while True:
            try:
                yield await self.receive()
            except StreamClosed:
                return


class Session:
    """An authenticated, encrypted session with one peer."""

    stream_class: type[Stream] = Stream
    # Slotted, with lists for the two queues (an empty deque costs 760 B): a node may hold
    # 10,000 idle sessions.
    __slots__ = ("__weakref__", "_datagram_signal", "_datagrams", "_incoming",
                 "_incoming_signal", "_node", "_proto", "_state_signal", "_streams")

    def __init__(self, node: Node, proto: ProtoSession) -> None:
        self._node = node
        self._proto = proto
        self._streams: dict[int, Stream] = {}
        self._incoming: list[Stream] = []
        self._incoming_signal = node._new_signal()
        self._datagrams: list[bytes] = []
        self._datagram_signal = node._new_signal()
        self._state_signal = node._new_signal()  # handshake confirmed, or session ended

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
        return self._proto.get_stats()

    def _raise_if_closed(self) -> None:
        if self._proto.is_closed:
            error = self._proto.error
            raise error if error is not None else SessionClosed(0, "closed")

    # -- streams ----------------------------------------------------------------------------------

    def _stream(self, stream_id: int) -> Stream:
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._streams[stream_id] = self.stream_class(self, stream_id)
        return stream

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
            await self._incoming_signal.wait()
        return self._incoming.pop(0)

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
            await self._datagram_signal.wait()
        return self._datagrams.pop(0)  # at most MAX_QUEUED_DATAGRAMS: a short move

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
        self._incoming_signal.set()
        self._datagram_signal.set()
        self._state_signal.set()

    async def _wait_confirmed(self) -> None:
        """Until the handshake is confirmed; raises the session's error if it ends first."""
        while not self._proto.confirmed:
            self._raise_if_closed()
            if self._proto.is_terminated:
                raise self._proto.error or SessionClosed(0, "closed")
            await self._state_signal.wait()

    async def __aenter__(self) -> Session:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


SessionT = TypeVar("SessionT", bound="Session")


def dispatch_events(endpoint: Endpoint, sessions: dict[bytes, SessionT],
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
    while (event := proto.next_event()) is not None:
        # Event classes are final (frozen attrs classes), so ``type(...) is`` is isinstance
        # at a fraction of the cost; the stream events of a dialogue come first.
        kind = type(event)
        if kind is StreamReadable or kind is StreamEnded:
            session._stream(event.stream_id)._readable.set()  # type: ignore[union-attr]
        elif kind is StreamFlushed:
            session._stream(event.stream_id)._flushed.set()  # type: ignore[union-attr]
        elif isinstance(event, StreamWritable):
            session._stream(event.stream_id)._writable.set()
        elif isinstance(event, StreamResetByPeer):
            session._stream(event.stream_id)._wake_all()
        elif isinstance(event, StreamOpened):
            session._incoming.append(session._stream(event.stream_id))
            session._incoming_signal.set()
        elif isinstance(event, DatagramReceived):
            if len(session._datagrams) < MAX_QUEUED_DATAGRAMS:
                session._datagrams.append(event.data)
            session._datagram_signal.set()
        elif isinstance(event, HandshakeCompleted):
            session._state_signal.set()
        elif isinstance(event, SessionTerminated):
            session._wake_all()
