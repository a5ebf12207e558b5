"""The websocket transport on asyncio: STT datagrams as binary WebSocket messages over TCP.

For networks that pass only TCP. The node listens for WebSocket upgrades on its host and port and
dials one connection per peer address it connects to; every session to that address shares it.
One protocol object per connection, driven by callbacks (no task per message). Writes never
queue without bound: while TCP pushes back, datagrams are dropped as UDP would drop them and
STT's recovery resends them.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

from stt_proto import ConnectionRefused, HandshakeTimeout

from ._address import plain_host
from ._ws import DIAL_TIMEOUT, WsError, WsFramer

Address = tuple[str, int]


class _Connection(asyncio.Protocol):
    def __init__(self, io: WebSocketIO, client: bool, key: Address | None = None) -> None:
        self.io = io
        self.key = key  # for dialled connections, the address the user asked for
        self.framer = WsFramer(client, *(key or ("", 0)))
        self.transport: asyncio.Transport | None = None
        self.paused = False
        self.opened: asyncio.Future[None] = io.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            self.io.tune(sock)
        if self.key is None:
            peer = transport.get_extra_info("peername")
            self.key = (plain_host(peer[0]), peer[1])  # an IPv4 peer on a dual-stack socket
        self._flush()

    def data_received(self, data: bytes) -> None:
        try:
            datagrams = self.framer.feed(data)
        except WsError:
            self.io.protocol_errors += 1
            self._flush()
            self._abort()
            return
        self._flush()
        if self.framer.open and not self.opened.done():
            self.opened.set_result(None)
            self.io.register(self)
        key = self.key
        if key is not None:
            for datagram in datagrams:
                self.io.deliver(datagram, key)
        if self.framer.closed:
            self._abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.io.unregister(self)
        if not self.opened.done():
            self.opened.set_exception(ConnectionRefused("the WebSocket connection closed "
                                                        "before the upgrade completed"))
            self.opened.exception()  # retrieved: nobody may be waiting any more

    def pause_writing(self) -> None:
        self.paused = True

    def resume_writing(self) -> None:
        self.paused = False

    def send(self, datagram: bytes | bytearray) -> bool:
        if self.paused or not self.framer.open or self.transport is None:
            return False
        self.transport.write(self.framer.encode(datagram))
        return True

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            out = self.framer.close()
            if out:
                self.transport.write(out)
            self.transport.close()

    def _flush(self) -> None:
        out = self.framer.take_output()
        if out and self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.close()


class WebSocketIO:
    """Datagram I/O for one node over WebSocket connections, keyed by peer address."""

    def __init__(self, loop: asyncio.AbstractEventLoop, deliver: Callable[[bytes, Address], None],
                 tune: Callable[[socket.socket], Any]) -> None:
        self.loop = loop
        self.deliver = deliver
        self.tune = tune
        self._server: asyncio.Server | None = None
        self._connections: dict[Address, _Connection] = {}
        self._dialling: dict[Address, _Connection] = {}
        self._all: set[_Connection] = set()
        self._dials: set[asyncio.Task[None]] = set()
        self._closing = False
        self.protocol_errors = 0
        self.dropped_sends = 0

    async def listen(self, host: str | None, port: int) -> None:
        """Listen on ``host`` (None: every interface, IPv4 and IPv6 on one dual-stack socket,
        so one port whatever ``port=0`` picks)."""
        if host is None and socket.has_dualstack_ipv6():
            sock = socket.create_server(("::", port), family=socket.AF_INET6,
                                        dualstack_ipv6=True)
            self._server = await self.loop.create_server(
                lambda: self._track(_Connection(self, client=False)), sock=sock)
            return
        self._server = await self.loop.create_server(
            lambda: self._track(_Connection(self, client=False)),
            "0.0.0.0" if host is None else host, port)

    @property
    def address(self) -> Address:
        if self._server is None or not self._server.sockets:
            raise RuntimeError("not listening")
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def _track(self, connection: _Connection) -> _Connection:
        self._all.add(connection)
        return connection

    def register(self, connection: _Connection) -> None:
        if connection.key is not None:
            self._dialling.pop(connection.key, None)
            self._connections[connection.key] = connection

    def unregister(self, connection: _Connection) -> None:
        self._all.discard(connection)
        key = connection.key
        if key is not None:
            if self._connections.get(key) is connection:
                del self._connections[key]
            if self._dialling.get(key) is connection:
                del self._dialling[key]

    async def ensure(self, addr: Address, timeout: float) -> None:
        """Have an open connection to ``addr`` (dial it if needed)."""
        if addr in self._connections:
            return
        connection = self._dialling.get(addr)
        if connection is None:
            connection = self._track(_Connection(self, client=True, key=addr))
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

    def send(self, datagram: bytes | bytearray, addr: Address) -> None:
        connection = self._connections.get(addr)
        if connection is None:
            self._dial_later(addr)
        if connection is None or not connection.send(datagram):
            self.dropped_sends += 1

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
