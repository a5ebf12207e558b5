"""What both runtimes' websocket transports share beyond the framing (``stt_proto.websocket``):
their limits and the options of a connection's TCP socket.

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


__all__ = ["CLOSE_LINGER", "DIAL_TIMEOUT", "HANDSHAKE_IDLE_TIMEOUT", "MAX_CONNECTIONS",
           "UPGRADE_TIMEOUT", "WRITE_HIGH_WATER", "WRITE_LOW_WATER", "reset_on_close",
           "tune_stream_socket"]
