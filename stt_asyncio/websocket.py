"""The websocket transport on asyncio: STT datagrams as binary WebSocket messages over TCP.

For networks that pass only TCP. The node listens for WebSocket upgrades on its host and port and
dials one connection per peer address it connects to; every session to that address shares it.
One protocol object per connection, driven by callbacks (no task per message). Writes never
queue without bound: while TCP pushes back, datagrams are dropped as UDP would drop them and
STT's recovery resends them, and PONGs are held back (reading goes on, so two nodes sending
bulk both ways never wait on each other). The limits are those of :mod:`stt_runtime.websocket`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast

from stt_proto import ConnectionRefused, HandshakeTimeout
from stt_proto.packet import Datagram
from stt_proto.websocket import WsError, WsFramer, is_data
from stt_runtime import websocket as _ws
from stt_runtime._address import plain_host
from stt_runtime.websocket import DIAL_TIMEOUT, Address, WebSocketIOBase, reset_on_close


class _Connection(asyncio.Protocol):
    def __init__(self, io: WebSocketIO, client: bool, key: Address | None = None) -> None:
        self.io = io
        self.key = key  # for dialled connections, the address the user asked for
        self.inbound = not client
        self.framer = WsFramer(client, *(key or ("", 0)))
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.sent_data = False  # an STT DATA packet went out: a handshake completed on it
        self.opened: asyncio.Future[None] = io.loop.create_future()
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = stream = cast(asyncio.Transport, transport)
        if self.inbound and not self.io.admit(self):
            self._shut(graceful=False)
            return
        stream.set_write_buffer_limits(_ws.WRITE_HIGH_WATER, _ws.WRITE_LOW_WATER)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.io.tune(sock)
        if self.key is None:
            peer = transport.get_extra_info("peername")
            self.key = (plain_host(peer[0]), peer[1])  # an IPv4 peer on a dual-stack socket
        self._arm(_ws.UPGRADE_TIMEOUT if self.inbound else None)  # ensure() times dials
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            datagrams = self.framer.feed(data)
        except WsError:
            self.io.protocol_errors += 1
            self._shut(graceful=False)
            return
        self._flush()
        if self.framer.open and not self.opened.done():
            self.opened.set_result(None)
            self.io.register(self)
            self._arm(self.io.handshake_timeout if self.inbound else None)
        key = self.key
        if key is not None:
            for datagram in datagrams:
                self.io.deliver(datagram, key)
        if self.framer.closed:
            self._shut(graceful=True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._arm(None)
        self.io.unregister(self)
        if not self.opened.done():
            self.opened.set_exception(ConnectionRefused("the WebSocket connection closed "
                                                        "before the upgrade completed"))
            self.opened.exception()  # retrieved: nobody may be waiting any more

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False
        self._flush()  # a PONG held while congested

    def send(self, datagram: Datagram) -> bool:
        if not self.sent_data and is_data(datagram):
            self.sent_data = True
        if self.paused or not self.framer.open or self.transport is None:
            return False
        self.transport.write(self.framer.encode(datagram))
        return True

    @property
    def buffered(self) -> int:
        """Bytes of output queued for this connection (transport and framer)."""
        transport = self.transport
        queued = 0 if transport is None or transport.is_closing() else \
            transport.get_write_buffer_size()
        return queued + self.framer.buffered

    def close(self) -> None:
        """Close gracefully: a close frame, then FIN once the (bounded) output has left."""
        if self.transport is not None and not self.transport.is_closing():
            self.framer.pending += self.framer.close()
            self._shut(graceful=True)

    def abort(self) -> None:
        """Reset the connection now (even one already closing gracefully)."""
        self._arm(None)
        if self.transport is not None:
            reset_on_close(self.transport.get_extra_info("socket"))
            self.transport.abort()

    def _flush(self, final: bool = False) -> None:
        """Write the framer's output, unless TCP is pushing back (``final``: the last output
        before closing, a few bytes at most, goes anyway)."""
        transport = self.transport
        if (self.paused and not final) or transport is None or transport.is_closing():
            return  # output stays in the framer: bounded, PONGs coalesced
        out = self.framer.take_output()
        if out:
            transport.write(out)

    def _shut(self, graceful: bool) -> None:
        """End the connection: gracefully (output flushed, FIN, aborted if the peer has not
        taken it within CLOSE_LINGER) or not (RST now, whatever is queued dropped)."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self._flush(final=True)  # a close frame or rejection
        if graceful:
            transport.close()
            self._arm(_ws.CLOSE_LINGER, closing=True)
            return
        self.abort()

    def _arm(self, delay: float | None, closing: bool = False) -> None:
        """(Re)start the connection's one timer, or stop it (``None``)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if delay is not None:
            self._timer = self.io.loop.call_later(delay, self._expired, closing)

    def _expired(self, closing: bool) -> None:
        """The upgrade, the first STT handshake or a graceful close took too long."""
        self._timer = None
        if closing:
            self.abort()
            return
        if self.framer.open and (self.sent_data or not self.inbound):
            return
        self.io.timeouts += 1
        self._shut(graceful=False)


class WebSocketIO(WebSocketIOBase[_Connection]):
    """Datagram I/O for one node over WebSocket connections, keyed by peer address."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes, Address], None],
                 tune: Callable[[socket.socket], Any],
                 handshake_timeout: float | None = None) -> None:
        super().__init__(deliver, tune, handshake_timeout)
        self.loop = loop
        self._server: asyncio.Server | None = None
        self._dials: set[asyncio.Task[None]] = set()

    async def listen(self, host: str | None, port: int) -> None:
        """Listen on ``host`` (None: every interface, IPv4 and IPv6 on one dual-stack socket,
        so one port whatever ``port=0`` picks)."""
        if host is None and socket.has_dualstack_ipv6():
            sock = socket.create_server(("::", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True)
            self._server = await self.loop.create_server(
                lambda: self.track(_Connection(self, client=False)), sock=sock)
            return
        self._server = await self.loop.create_server(
            lambda: self.track(_Connection(self, client=False)),
            "0.0.0.0" if host is None else host, port)

    @property
    def address(self) -> Address:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def ensure(self, addr: Address, timeout: float) -> None:
        """Have an open connection to ``addr`` (dial it if needed)."""
        if addr in self._connections:
            return
        connection = self._dialling.get(addr)
        if connection is None:
            self.check_dial_cap(addr)
            connection = self.track(_Connection(self, client=True, key=addr))
            self._dialling[addr] = connection
            try:
                await asyncio.wait_for(
                    self.loop.create_connection(lambda: connection, addr[0], addr[1]), timeout)
            except TimeoutError:
                self.unregister(connection)
                raise HandshakeTimeout(f"no TCP connection to {addr[0]}:{addr[1]} within "
                                       f"{timeout:g} s") from None
            except OSError as exc:
                self.unregister(connection)
                raise ConnectionRefused(f"nothing accepts WebSocket connections at "
                                        f"{addr[0]}:{addr[1]} ({exc.strerror or exc})") from None
        try:
            await asyncio.wait_for(asyncio.shield(connection.opened), timeout)
        except TimeoutError:
            connection.close()
            raise HandshakeTimeout(f"no WebSocket upgrade from {addr[0]}:{addr[1]} within "
                                   f"{timeout:g} s") from None

    def _dial_later(self, addr: Address) -> None:
        """Output to an address with no connection (a DHT contact, or a peer whose connection
        broke): dial it in the background; the session's retransmissions go out once it opens."""
        if addr in self._dialling or self._closing:
            return

        async def dial() -> None:
            with contextlib.suppress(HandshakeTimeout, ConnectionRefused):
                await self.ensure(addr, DIAL_TIMEOUT)

        task = self.loop.create_task(dial())
        self._dials.add(task)
        task.add_done_callback(self._dials.discard)

    @property
    def backlogged(self) -> bool:
        return any(c.paused for c in self._connections.values())

    async def close(self) -> None:
        self._closing = True
        for task in list(self._dials):
            task.cancel()
        for connection in list(self._all):
            connection.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for _ in range(50):  # let the transports finish closing
            if not self._all:
                break
            await asyncio.sleep(0.002)
        for connection in list(self._all):  # a peer that does not read: reset it
            connection.abort()
