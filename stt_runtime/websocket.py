"""What both runtimes' websocket transports share beyond the framing (``stt_proto.websocket``):
their limits, the options of a connection's TCP socket and the loop-independent half of their
``WebSocketIO`` (:class:`WebSocketIOBase`: connection tables, counters, caps, output by address).

Limits, the same in both runtimes (module attributes, read when used, so tests may patch them):
every connection's queued output is bounded (``WRITE_HIGH_WATER``: above it datagrams are
dropped and PINGs are answered by one PONG for the latest, as RFC 6455 allows), so a peer that
floods PINGs and never reads costs a bounded amount; a protocol error aborts the connection
(RST, nothing left queued); at most ``MAX_CONNECTIONS`` accepted (and, apart, dialled)
connections; an upgrade must finish within ``UPGRADE_TIMEOUT`` and an accepted connection must
carry a completed STT handshake within ``HANDSHAKE_IDLE_TIMEOUT`` of its upgrade.
"""

from __future__ import annotations

import contextlib
import socket
import struct
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from stt_proto import ConnectionRefused
from stt_proto.packet import Datagram

DIAL_TIMEOUT = 10.0  # seconds a background dial (for output with no connection) may take
WRITE_HIGH_WATER = 256 * 1024  # bytes queued for one connection's TCP before output is held
WRITE_LOW_WATER = 64 * 1024  # held output is released once the queue drains below this
MAX_CONNECTIONS = 512  # accepted connections per node; dialled ones are capped apart, alike
UPGRADE_TIMEOUT = 10.0  # seconds from TCP connect to a completed WebSocket upgrade
HANDSHAKE_IDLE_TIMEOUT = 10.0  # seconds from an accepted upgrade to the first STT DATA packet
CLOSE_LINGER = 2.0  # seconds a graceful close may take before the connection is aborted
_LINGER_OFF = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() resets and drops the queue


def reset_on_close(sock: object) -> None:
    """SO_LINGER 0 on a connection's socket: its coming close sends RST and drops what is
    queued at once, instead of lingering ESTABLISHED behind a peer that does not read."""
    setsockopt = getattr(sock, "setsockopt", None)
    if setsockopt is not None:
        with contextlib.suppress(OSError):
            setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_OFF)


def tune_stream_socket(sock: socket.socket, recv: int, send: int) -> tuple[int, int] | None:
    """TCP_NODELAY (datagrams must not wait for Nagle) and the node's buffer sizes on one
    WebSocket connection's socket; returns the granted sizes, or None if the OS refused."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send)
        return (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2,
                sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)
    return None


Address = tuple[str, int]


class WsConnection(Protocol):
    """One connection as the shared half of a runtime's transport sees it."""

    @property
    def key(self) -> Address | None:
        """The peer's address (None until an accepted connection knows it)."""

    @property
    def buffered(self) -> int:
        """Bytes of output queued for the peer."""

    def send(self, datagram: Datagram) -> bool:
        """Queue one datagram's message; False when it was dropped (congested, not open)."""


ConnT = TypeVar("ConnT", bound=WsConnection)


class WebSocketIOBase(Generic[ConnT]):
    """The loop-independent half of a runtime's ``WebSocketIO``: the connection tables, the
    counters ``get_stats`` reports, the caps and datagram output by address. A runtime adds
    listening, dialling (``ensure``, ``_dial_later``) and closing."""

    def __init__(self, deliver: Callable[[bytes, Address], None],
                 tune: Callable[[socket.socket], Any],
                 handshake_timeout: float | None = None) -> None:
        self.deliver = deliver
        self.tune = tune
        self._handshake_timeout = handshake_timeout
        self._connections: dict[Address, ConnT] = {}  # upgraded, by peer address
        self._dialling: dict[Address, ConnT] = {}  # dialled, upgrade not yet done
        self._all: set[ConnT] = set()
        self._inbound: set[ConnT] = set()  # accepted (not refused) connections
        self._closing = False
        self.protocol_errors = 0
        self.dropped_sends = 0
        self.refused_connections = 0  # accepted over MAX_CONNECTIONS, reset at once
        self.timeouts = 0  # connections reset for a slow upgrade or no STT handshake

    @property
    def handshake_timeout(self) -> float:
        """Seconds an accepted connection may go from its upgrade to a completed STT
        handshake (the node's ``handshake_timeout`` when it passes one)."""
        if self._handshake_timeout is not None:
            return self._handshake_timeout
        return HANDSHAKE_IDLE_TIMEOUT

    @property
    def connection_count(self) -> int:
        return len(self._all)

    @property
    def max_buffered(self) -> int:
        """The most output queued for any one connection, in bytes."""
        return max((c.buffered for c in self._all), default=0)

    def admit(self, connection: ConnT | None = None) -> bool:
        """Whether an accepted connection may stay: False (reset it at once, counted in
        ``refused_connections``) at MAX_CONNECTIONS or while closing. ``connection``, if
        given, is tracked as accepted, or forgotten when refused."""
        if len(self._inbound) >= MAX_CONNECTIONS or self._closing:
            self.refused_connections += 1
            if connection is not None:
                self._all.discard(connection)  # not counted as a dialled one either
            return False
        if connection is not None:
            self.track(connection, inbound=True)
        return True

    def track(self, connection: ConnT, inbound: bool = False) -> ConnT:
        """Count a new connection (``inbound``: an accepted one) until ``unregister``."""
        self._all.add(connection)
        if inbound:
            self._inbound.add(connection)
        return connection

    def check_dial_cap(self, addr: Address) -> None:
        """Raise ConnectionRefused when MAX_CONNECTIONS dialled connections exist already."""
        if len(self._all) - len(self._inbound) >= MAX_CONNECTIONS:
            raise ConnectionRefused(f"{MAX_CONNECTIONS} WebSocket connections dialled "
                                    f"already; not dialling {addr[0]}:{addr[1]}")

    def register(self, connection: ConnT) -> None:
        """An upgrade completed: output for its address goes there from now on."""
        key = connection.key
        if key is not None:
            self._dialling.pop(key, None)
            self._connections[key] = connection

    def unregister(self, connection: ConnT) -> None:
        """A connection ended: forget it wherever it is listed."""
        self._all.discard(connection)
        self._inbound.discard(connection)
        key = connection.key
        if key is not None:
            if self._connections.get(key) is connection:
                del self._connections[key]
            if self._dialling.get(key) is connection:
                del self._dialling[key]

    def send(self, datagram: Datagram, addr: Address) -> None:
        """One datagram to ``addr``: dropped (and counted) when it has no upgraded
        connection (one is dialled in the background) or the connection is congested."""
        connection = self._connections.get(addr)
        if connection is None:
            self._dial_later(addr)
        if connection is None or not connection.send(datagram):
            self.dropped_sends += 1

    def _dial_later(self, addr: Address) -> None:
        """Dial ``addr`` in the background (the runtime's task machinery)."""
        raise NotImplementedError


__all__ = ["CLOSE_LINGER", "DIAL_TIMEOUT", "HANDSHAKE_IDLE_TIMEOUT", "MAX_CONNECTIONS",
           "UPGRADE_TIMEOUT", "WRITE_HIGH_WATER", "WRITE_LOW_WATER", "Address", "WebSocketIOBase",
           "WsConnection", "reset_on_close", "tune_stream_socket"]
