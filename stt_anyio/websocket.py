"""The websocket transport on anyio (trio or asyncio): STT datagrams as binary WebSocket
messages over TCP. One reader and one writer task per connection, all in the node's task group;
each connection's write queue is bounded and a full queue drops the datagram as UDP would (STT's
recovery resends it), so a slow peer never grows memory.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from stt_asyncio._address import plain_host
from stt_asyncio._ws import DIAL_TIMEOUT, WsError, WsFramer
from stt_proto import ConnectionRefused, HandshakeTimeout

Address = tuple[str, int]
WRITE_QUEUE = 256  # WebSocket messages waiting for TCP, per connection
READ_SIZE = 65536


class _Connection:
    def __init__(self, io: WebSocketIO, stream: anyio.abc.SocketStream, client: bool,
                 key: Address) -> None:
        self.io = io
        self.stream = stream
        self.key = key
        self.framer = WsFramer(client, *key)
        self.opened = anyio.Event()
        self.failed = False
        self._send: MemoryObjectSendStream[bytes]
        self._receive: MemoryObjectReceiveStream[bytes]
        self._send, self._receive = anyio.create_memory_object_stream[bytes](WRITE_QUEUE)
        self._scope: anyio.CancelScope | None = None
        with contextlib.suppress(Exception):
            io.tune(stream.extra(anyio.abc.SocketAttribute.raw_socket))

    async def run(self) -> None:
        try:
            async with anyio.create_task_group() as group:
                self._scope = group.cancel_scope
                group.start_soon(self._writer)
                self._queue_output()
                await self._reader()
                group.cancel_scope.cancel()
        finally:
            self.failed = True
            self.opened.set()
            self.io.unregister(self)
            self._send.close()
            self._receive.close()
            with anyio.CancelScope(shield=True), contextlib.suppress(Exception):
                await self.stream.aclose()

    async def _reader(self) -> None:
        framer = self.framer
        while not framer.closed:
            try:
                data = await self.stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):
                return
            try:
                datagrams = framer.feed(data)
            except WsError:
                self.io.protocol_errors += 1
                self._queue_output()
                await self._drain(0.1)
                return
            self._queue_output()
            if framer.open and not self.opened.is_set():
                self.io.register(self)
                self.opened.set()
            for datagram in datagrams:
                self.io.deliver(datagram, self.key)
        await self._drain(0.1)

    async def _writer(self) -> None:
        async for chunk in self._receive:
            try:
                await self.stream.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                if self._scope is not None:
                    self._scope.cancel()
                return

    async def _drain(self, seconds: float) -> None:
        """Give queued output (a close or reject frame) a moment to leave."""
        with anyio.move_on_after(seconds):
            while self._receive.statistics().current_buffer_used:
                await anyio.sleep(0.002)

    def _queue_output(self) -> None:
        out = self.framer.take_output()
        if out:
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                self._send.send_nowait(out)

    def send(self, datagram: bytes | bytearray) -> bool:
        if not self.framer.open:
            return False
        try:
            self._send.send_nowait(self.framer.encode(datagram))
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        return True

    async def close(self) -> None:
        out = self.framer.close()
        if out:
            with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
                self._send.send_nowait(out)
        await self._drain(0.2)
        if self._scope is not None:
            self._scope.cancel()


class WebSocketIO:
    """Datagram I/O for one node over WebSocket connections, keyed by peer address."""

    def __init__(self, group: anyio.abc.TaskGroup, deliver: Callable[[bytes, Address], None],
                 tune: Callable[[socket.socket], Any]) -> None:
        self.group = group
        self.deliver = deliver
        self.tune = tune
        self._listener: anyio.abc.SocketListener | None = None
        self._connections: dict[Address, _Connection] = {}
        self._dialling: dict[Address, _Connection] = {}
        self._all: set[_Connection] = set()
        self._dials: set[Address] = set()
        self._closing = False
        self.protocol_errors = 0
        self.dropped_sends = 0

    async def listen(self, host: str | None, port: int) -> None:
        """Listen on ``host`` (None: every interface; anyio makes that one dual-stack socket)."""
        multi = await anyio.create_tcp_listener(local_host=host, local_port=port)
        listener = self._listener = cast(anyio.abc.SocketListener, multi.listeners[0])
        for extra in multi.listeners[1:]:  # one address family is enough for one host
            await extra.aclose()

        async def accept_loop() -> None:
            while True:
                try:
                    stream = await listener.accept()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                except OSError:
                    await anyio.sleep(0.01)  # e.g. out of file descriptors: try again shortly
                    continue
                peer = stream.extra(anyio.abc.SocketAttribute.remote_address)
                connection = _Connection(self, stream, False,
                                         (plain_host(str(peer[0])), int(peer[1])))
                self._all.add(connection)
                self.group.start_soon(connection.run)

        self.group.start_soon(accept_loop)

    @property
    def address(self) -> Address:
        if self._listener is None:
            raise RuntimeError("not listening")
        local = self._listener.extra(anyio.abc.SocketAttribute.local_address)
        return str(local[0]), int(local[1])

    def register(self, connection: _Connection) -> None:
        self._dialling.pop(connection.key, None)
        self._connections[connection.key] = connection

    def unregister(self, connection: _Connection) -> None:
        self._all.discard(connection)
        if self._connections.get(connection.key) is connection:
            del self._connections[connection.key]
        if self._dialling.get(connection.key) is connection:
            del self._dialling[connection.key]

    async def ensure(self, addr: Address, timeout: float) -> None:
        """Have an open connection to ``addr`` (dial it if needed)."""
        if addr in self._connections:
            return
        connection: _Connection | None = None
        with anyio.move_on_after(timeout) as scope:
            connection = self._dialling.get(addr)
            if connection is None:
                try:
                    stream = await anyio.connect_tcp(addr[0], addr[1])
                except OSError as exc:
                    raise ConnectionRefused(
                        f"nothing accepts WebSocket connections at {addr[0]}:{addr[1]} "
                        f"({exc.strerror or exc})") from None
                connection = _Connection(self, stream, True, addr)
                self._all.add(connection)
                self._dialling[addr] = connection
                self.group.start_soon(connection.run)
            await connection.opened.wait()
        if scope.cancelled_caught or connection is None:
            raise HandshakeTimeout(f"no WebSocket connection to {addr[0]}:{addr[1]} within "
                                   f"{timeout:g} s")
        if connection.failed:
            raise ConnectionRefused(f"the WebSocket upgrade to {addr[0]}:{addr[1]} failed")

    def send(self, datagram: bytes | bytearray, addr: Address) -> None:
        connection = self._connections.get(addr)
        if connection is None:
            self._dial_later(addr)
        if connection is None or not connection.send(datagram):
            self.dropped_sends += 1

    def _dial_later(self, addr: Address) -> None:
        """Output to an address with no connection (a DHT contact, or a peer whose connection
        broke): dial it in the background; the session's retransmissions go out once it opens."""
        if addr in self._dialling or addr in self._dials or self._closing:
            return
        self._dials.add(addr)

        async def dial() -> None:
            try:
                with contextlib.suppress(HandshakeTimeout, ConnectionRefused):
                    await self.ensure(addr, DIAL_TIMEOUT)
            finally:
                self._dials.discard(addr)

        self.group.start_soon(dial)

    async def close(self) -> None:
        self._closing = True
        if self._listener is not None:
            await self._listener.aclose()
        for connection in list(self._all):
            await connection.close()
