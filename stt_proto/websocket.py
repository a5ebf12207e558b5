"""WebSocket framing for the websocket transport (sans-I/O: wsproto turns bytes into STT
datagrams and back; the runtimes move the bytes).

Each STT datagram travels as one binary WebSocket message over a TCP connection. Everything from
the network is hostile: a message larger than any STT datagram, a text message or a broken frame
raises :class:`WsError`, and the runtime drops that one connection (the sessions on it then time
out or recover elsewhere). The transport's limits (queues, connection caps, timeouts) and its
socket options are the runtimes' (``stt_runtime.websocket``).
"""

from __future__ import annotations

from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .packet import DATA_KEY_PHASE, VERSION
from .peer_text import sanitize

MAX_MESSAGE = 65536  # above max_frame_size (65,507): anything longer is not an STT datagram
MAX_HANDSHAKE = 16384  # bytes of HTTP upgrade we accept before giving up on a peer
PATH = "/stt"
MESSAGE_TOO_BIG = 1009
POLICY_VIOLATION = 1008
NORMAL_CLOSE_CODES = (1000, 1001, 1005)  # normal, going away, no code given


class WsError(Exception):
    """The peer broke the WebSocket protocol; the connection must be dropped."""


class WsFramer:
    """One WebSocket connection's framing state (client or server side)."""

    def __init__(self, client: bool, host: str = "", port: int = 0) -> None:
        self._ws = WSConnection(ConnectionType.CLIENT if client else ConnectionType.SERVER)
        self.open = False  # the upgrade completed
        self.closed = False
        self._partial: list[bytes] = []
        self._partial_size = 0
        self._handshake_bytes = 0
        self._ping: bytes | None = None  # the latest PING's payload, not yet answered
        self.pending = b""  # bytes to write to the peer
        if client:
            self.pending = self._ws.send(Request(host=f"{host}:{port}", target=PATH))

    def take_output(self, pong: bool = True) -> bytes:
        """The bytes to write now. ``pong=False`` (the connection is congested) holds the
        PONG owed for the latest PING back: later PINGs replace it, so a flood of PINGs
        never makes more than one PONG of output."""
        out, self.pending = self.pending, b""
        if pong and self._ping is not None:
            out += self._pong()
        return out

    @property
    def buffered(self) -> int:
        """Bytes waiting in this framer for the peer (a held PONG included)."""
        return len(self.pending) + (0 if self._ping is None else len(self._ping) + 2)

    def _pong(self) -> bytes:
        payload, self._ping = self._ping, None
        if payload is None or not self.open:
            return b""
        try:
            return self._ws.send(Pong(payload=payload))
        except LocalProtocolError:
            return b""

    def encode(self, datagram: bytes | bytearray | memoryview) -> bytes:
        """The bytes of one binary message carrying ``datagram``."""
        return self._ws.send(BytesMessage(data=bytes(datagram)))

    def close(self, code: int = 1000) -> bytes:
        """Bytes of a close frame, if the connection is open; marks it closed."""
        pong = self._pong()  # owed before the close frame (nothing may follow it)
        was_open, self.open, self.closed = self.open, False, True
        if not was_open:
            return b""
        try:
            return pong + self._ws.send(CloseConnection(code=code))
        except LocalProtocolError:
            return pong

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the peer; returns the complete datagrams they finish. Raises
        :class:`WsError` when the peer broke the protocol; :attr:`closed` says it closed."""
        if self.closed:
            raise WsError("connection closed")
        if not data:
            return []  # wsproto reads b"" as end of stream; runtimes report EOF otherwise
        if not self.open:
            self._handshake_bytes += len(data)
            if self._handshake_bytes > MAX_HANDSHAKE:
                raise WsError("WebSocket upgrade request too large")
        try:
            self._ws.receive_data(data)
            datagrams: list[bytes] = []
            for event in self._ws.events():
                if self.closed:
                    break
                self._on_event(event, datagrams)
        except (RemoteProtocolError, LocalProtocolError, RuntimeError) as exc:
            # RuntimeError: h11's complaint about bytes after the peer's close
            self.closed = True
            raise WsError(f"WebSocket protocol error: {exc}") from None
        return datagrams

    def _on_event(self, event: object, datagrams: list[bytes]) -> None:
        ws = self._ws
        if isinstance(event, Request):
            if event.target != PATH:
                self.pending += ws.send(RejectConnection(status_code=404))
                self.closed = True
                raise WsError(f"WebSocket request for {event.target!r}, not {PATH}")
            self.pending += ws.send(AcceptConnection())
            self.open = True
        elif isinstance(event, AcceptConnection):
            self.open = True
        elif isinstance(event, RejectConnection):
            self.closed = True
            raise WsError(f"the peer rejected the WebSocket upgrade ({event.status_code})")
        elif isinstance(event, BytesMessage):
            self._partial_size += len(event.data)
            if self._partial_size > MAX_MESSAGE:
                self.pending += self.close(MESSAGE_TOO_BIG)
                raise WsError(f"WebSocket message over {MAX_MESSAGE} bytes")
            self._partial.append(bytes(event.data))
            if event.message_finished:
                datagrams.append(b"".join(self._partial))
                self._partial, self._partial_size = [], 0
        elif isinstance(event, TextMessage):
            self.pending += self.close(POLICY_VIOLATION)
            raise WsError("text WebSocket message (STT sends binary only)")
        elif isinstance(event, Ping):
            self._ping = bytes(event.payload)  # answered by take_output: one PONG per batch
        elif isinstance(event, CloseConnection):
            self._ping = None  # no PONG is owed once the peer has closed (RFC 6455 5.5.2)
            if self.open:
                self.pending += ws.send(event.response())
            self.open = False
            self.closed = True  # the caller sees it after the datagrams that came before
            if event.code not in NORMAL_CLOSE_CODES:  # wsproto reports broken framing so
                raise WsError(f"WebSocket closed with code {event.code}: "
                              f"{sanitize(event.reason or '')}")


def is_data(datagram: bytes | bytearray | memoryview) -> bool:
    """Whether an outgoing datagram is an STT DATA packet: the node seals those only once a
    session's handshake has completed, so one leaving on a connection shows it is in use."""
    return len(datagram) > 1 and datagram[0] == VERSION and datagram[1] in DATA_KEY_PHASE


__all__ = ["MAX_HANDSHAKE", "MAX_MESSAGE", "MESSAGE_TOO_BIG", "NORMAL_CLOSE_CODES", "PATH",
           "POLICY_VIOLATION", "WsError", "WsFramer", "is_data"]
