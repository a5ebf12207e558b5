"""Carries DHT messages over STT sessions opened for the purpose.

Each contact gets one session (``Purpose.DHT``), opened on first use and closed after sitting
idle; each side sends its messages as stream messages on a stream it opens itself and reads any
stream the peer opens. Messages wait (a bounded few) while the handshake runs. Because the
handshake proves the peer's node id, the DHT only ever hears from authenticated contacts. A
session that fails, or dies with messages still queued, tells the DHT the contact is unreachable.

:class:`DHTLinks` is the endpoint's :class:`~stt_proto.endpoint.SessionService`: the node core
(``node.py``) sets it there, and the endpoint calls :meth:`DHTLinks.adopt` and
:meth:`DHTLinks.touch` for DHT-purpose sessions without knowing what the DHT is.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from ..errors import STTError
from ..events import (
    Address,
    HandshakeCompleted,
    SessionTerminated,
    StreamEnded,
    StreamOpened,
    StreamReadable,
    StreamResetByPeer,
)
from ..session import Session
from .ids import Contact
from .service import DHT

MAX_QUEUED = 64  # messages held per contact while its handshake runs
MAX_LINKS = 256  # DHT sessions kept open; the least recently used closes past this
IDLE_TIMEOUT = 60.0  # seconds a DHT session may sit unused before it closes

Connect = Callable[[Address, bytes, float], Session]


@attrs.define(slots=True, eq=False)
class _Link:
    session: Session
    last_used: float
    queue: list[bytes] = attrs.field(factory=list)
    out_stream: int | None = None
    read_streams: set[int] = attrs.field(factory=set)  # open streams the peer may write on


class DHTLinks:
    def __init__(self, dht: DHT, connect: Connect, *, advertised_ports: bool = False,
                 max_links: int = MAX_LINKS, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.dht = dht
        self._connect = connect
        # Over WebSocket a peer's source port is its TCP client port, not its listening one:
        # then the port the DHT message announces is the one to remember.
        self._advertised_ports = advertised_ports
        self.max_links = max_links
        self.idle_timeout = idle_timeout
        self._by_peer: dict[bytes, _Link] = {}  # the session each contact's messages go out on
        self._by_session: dict[bytes, _Link] = {}  # every DHT session, by session id
        self._touched: dict[bytes, Session] = {}
        self._next_check: float | None = None  # when idle links are next looked for
        self.dropped = 0  # messages dropped: queue or send buffer full

    def __len__(self) -> int:
        return len(self._by_session)

    @property
    def pending(self) -> bool:
        return bool(self._touched) or self.dht.has_output

    def touch(self, session: Session) -> None:
        """A DHT session did something: its events are read at the next :meth:`service`."""
        self._touched[session.local_cid] = session

    def adopt(self, session: Session, now: float) -> None:
        """An inbound session whose initiator opened it for the DHT."""
        link = self._add(session, now)
        if session.peer_id is not None:
            self._by_peer.setdefault(session.peer_id, link)
        self.touch(session)
        self._limit(now)

    def _add(self, session: Session, now: float) -> _Link:
        link = self._by_session[session.local_cid] = _Link(session, now)
        if self._next_check is None or len(self._by_session) == 1:
            self._next_check = now + self.idle_timeout / 4
        return link

    # -- the pump ---------------------------------------------------------------------------------

    def service(self, now: float) -> None:
        """Read what DHT sessions received into the DHT, then send what the DHT has to say."""
        while self._touched:
            touched = self._touched
            self._touched = {}
            for session in touched.values():
                self._read(session, now)
        for contact, data in self.dht.messages_to_send():
            self._send(contact, data, now)

    def _read(self, session: Session, now: float) -> None:
        link = self._by_session.get(session.local_cid)
        if link is None:
            while session.next_event() is not None:
                pass
            return
        while (event := session.next_event()) is not None:
            if isinstance(event, HandshakeCompleted):
                self._by_peer.setdefault(event.peer_id, link)
                queued, link.queue = link.queue, []
                for data in queued:
                    self._write(link, data)
            elif isinstance(event, StreamOpened | StreamReadable | StreamEnded
                            | StreamResetByPeer):
                link.read_streams.add(event.stream_id)  # an ended one: read its last messages
            elif isinstance(event, SessionTerminated):
                self._drop(link, now)
                return
        peer_id = session.peer_id
        if peer_id is None or not session.is_established:
            return
        host, port = session.remote_address
        done = []
        for stream_id in link.read_streams:
            while (message := session.receive_message(stream_id)) is not None:
                link.last_used = now
                if self._advertised_ports and len(message) >= 3:
                    port = int.from_bytes(message[1:3], "big") or port
                self.dht.receive(Contact(peer_id, (host, port)), message, now)
            finished, _, reset = session.stream_state(stream_id)
            if finished or reset is not None or not session.is_stream_open(stream_id):
                done.append(stream_id)
        # A peer that opens a stream per message must not leave one entry each behind: every
        # packet on the link reads through this set. Our half of its stream closes too, so the
        # session forgets the stream (we never write on the peer's streams).
        for stream_id in done:
            link.read_streams.discard(stream_id)
            if stream_id != link.out_stream and session.is_stream_open(stream_id):
                session.close_stream(stream_id)

    def _send(self, contact: Contact, data: bytes, now: float) -> None:
        link = self._by_peer.get(contact.node_id)
        if link is None or link.session.is_closed:
            link = self._add(self._connect(contact.address, contact.node_id, now), now)
            self._by_peer[contact.node_id] = link
            self._limit(now)
        link.last_used = now
        if not link.session.is_established:
            if len(link.queue) < MAX_QUEUED:
                link.queue.append(data)
            else:
                self.dropped += 1  # its RPC times out like a lost datagram's
            return
        self._write(link, data)

    def _write(self, link: _Link, data: bytes) -> None:
        session = link.session
        if not session.is_established:
            self.dropped += 1
            return
        for _ in range(2):
            try:
                if link.out_stream is None:
                    link.out_stream = session.open_stream()
                if not session.send_message(link.out_stream, data):
                    self.dropped += 1
                return
            except STTError:
                # The peer stopped our stream (STOP_SENDING), allows no more streams, or
                # smaller messages: never an exception out of the endpoint. Abandon the stream
                # (reset, so the session forgets it) and try once on a fresh one.
                if link.out_stream is not None:
                    session.reset_stream(link.out_stream)
                link.out_stream = None
        self.dropped += 1  # its RPC times out like a lost datagram's

    def _drop(self, link: _Link, now: float) -> None:
        session = link.session
        self._by_session.pop(session.local_cid, None)
        peer_id = session.peer_id or session.expected_peer_id
        if peer_id is not None and self._by_peer.get(peer_id) is link:
            del self._by_peer[peer_id]
        if peer_id is not None and (link.queue or not session.confirmed):
            self.dht.peer_unreachable(peer_id, now)

    # -- idle links -------------------------------------------------------------------------------

    def _limit(self, now: float) -> None:
        excess = len(self._by_session) - self.max_links
        if excess > 0:
            idle = sorted(self._by_session.values(), key=lambda link: link.last_used)
            for link in idle[:excess]:
                link.session.close(0, "DHT link no longer needed", now)

    def get_timer(self) -> float | None:
        return self._next_check if self._by_session else None

    def handle_timer(self, now: float) -> None:
        """Close links idle for ``idle_timeout`` (checked every quarter of it)."""
        if self._next_check is not None and now < self._next_check:
            return
        self._next_check = now + self.idle_timeout / 4
        for link in list(self._by_session.values()):
            if now - link.last_used >= self.idle_timeout and not link.session.is_closed:
                link.session.close(0, "DHT link idle", now)
                link.last_used = now  # closing: do not come back every tick
