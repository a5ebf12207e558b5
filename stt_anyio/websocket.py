"""The websocket transport on anyio (trio or asyncio): STT datagrams as binary WebSocket
messages over TCP. One reader, one writer and one watchdog task per connection, all in the node's
task group. Each connection's write queue is bounded (``WRITE_HIGH_WATER`` bytes, ``WRITE_QUEUE``
messages): above it a datagram is dropped as UDP would drop it (STT's recovery resends it) and
PONGs are held back, one for the latest PING, so a slow or hostile peer never grows memory.
Reading goes on meanwhile (two nodes sending bulk both ways never wait on each other). The
limits are those of :mod:`stt_runtime.websocket`, the same as the asyncio runtime's.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Callable
from typing import Any, cast

import anyio
import anyio.abc
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from stt_proto import ConnectionRefused, HandshakeTimeout
from stt_proto.packet import Datagram
from stt_proto.websocket import WsError, WsFramer, is_data
from stt_runtime import websocket as _ws
from stt_runtime._address import plain_host
from stt_runtime.websocket import DIAL_TIMEOUT, Address, WebSocketIOBase, reset_on_close

WRITE_QUEUE = 256  # WebSocket messages waiting for TCP, per connection
READ_SIZE = 65536
FINAL_DRAIN = 0.1  # seconds a close or rejection frame may take to leave before a reset


class _Connection:
    def __init__(self, io: WebSocketIO, stream: anyio.abc.SocketStream, client: bool,
                 key: Address) -> None:
        self.io = io
        self.stream = stream
        self.key = key
        self.inbound = not client
        self.framer = WsFramer(client, *key)
        self.opened = anyio.Event()
        self.upgraded = False
        self.failed = False
        self.sent_data = False  # an STT DATA packet went out: a handshake completed on it
        self.aborted = False  # end with a reset, not a graceful close
        self.queued = 0  # bytes in the write queue
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
                group.start_soon(self._watchdog)
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
                if self.aborted:
                    reset_on_close(self.stream.extra(anyio.abc.SocketAttribute.raw_socket))
                await self.stream.aclose()

    async def _reader(self) -> None:
        framer = self.framer
        while not framer.closed:
            try:
                data = await self.stream.receive(READ_SIZE)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError,
                    OSError):
                return
            if framer.closed:  # the node closed it meanwhile (begin_close): the peer's
                break  # close reply or late data is no protocol error; finish() ends it
            try:
                datagrams = framer.feed(data)
            except WsError:
                self.io.protocol_errors += 1
                self.aborted = True
                self._queue_output(final=True)  # a close frame or rejection
                await self._drain(FINAL_DRAIN)
                return
            self._queue_output()
            if framer.open and not self.opened.is_set():
                self.upgraded = True
                self.io.register(self)
                self.opened.set()
            for datagram in datagrams:
                self.io.deliver(datagram, self.key)
        await self._drain(_ws.CLOSE_LINGER)
        self.aborted = self.queued > 0  # the peer did not take our last output

    async def _writer(self) -> None:
        async for chunk in self._receive:
            try:
                await self.stream.send(chunk)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                self.abort()
                return
            self.queued -= len(chunk)
            if self.queued < _ws.WRITE_LOW_WATER and self.framer.buffered:
                self._queue_output()  # a PONG held while congested

    async def _watchdog(self) -> None:
        """Reset an accepted connection that has not upgraded within UPGRADE_TIMEOUT, or has
        carried no completed STT handshake within the handshake timeout after (dialled ones
        are timed by ensure())."""
        if not self.inbound:
            return
        with anyio.move_on_after(_ws.UPGRADE_TIMEOUT):
            await self.opened.wait()
        if self.upgraded:
            await anyio.sleep(self.io.handshake_timeout)
            if self.sent_data:
                return
        if not self.failed:
            self.io.timeouts += 1
            self.abort()

    async def _drain(self, seconds: float) -> None:
        """Give queued output (a close or reject frame) a moment to leave."""
        with anyio.move_on_after(seconds):
            while self.queued:
                await anyio.sleep(0.002)

    def _queue_output(self, final: bool = False) -> None:
        """Queue the framer's output, unless the connection is congested (the queue is over
        WRITE_HIGH_WATER bytes or full by count): then it stays in the framer, PONGs
        coalesced into one for the latest PING, and the writer takes it once it has caught
        up. ``final``: the last output before closing, a few bytes at most, goes anyway."""
        if not final and self.congested:
            return
        out = self.framer.take_output()
        if out and not self._put(out):
            # Full by count even so (final output): keep the bytes in the framer, where
            # the writer finds them once it has sent what is queued.
            self.framer.pending = out + self.framer.pending

    @property
    def congested(self) -> bool:
        """Whether output must wait: the write queue is over WRITE_HIGH_WATER bytes or
        holds WRITE_QUEUE messages (the writer takes held output once it has sent one)."""
        if self.queued >= _ws.WRITE_HIGH_WATER:
            return True
        stats = self._send.statistics()
        return stats.current_buffer_used >= stats.max_buffer_size

    def _put(self, data: bytes) -> bool:
        try:
            self._send.send_nowait(data)
        except (anyio.WouldBlock, anyio.BrokenResourceError, anyio.ClosedResourceError):
            return False
        self.queued += len(data)
        return True

    @property
    def buffered(self) -> int:
        """Bytes of output queued for this connection (write queue and framer)."""
        return self.queued + self.framer.buffered

    def send(self, datagram: Datagram) -> bool:
        if not self.sent_data and is_data(datagram):
            self.sent_data = True
        if not self.framer.open or self.queued >= _ws.WRITE_HIGH_WATER:
            return False
        return self._put(self.framer.encode(datagram))

    def abort(self) -> None:
        """Reset the connection now, dropping whatever is queued."""
        self.aborted = True
        if self._scope is not None:
            self._scope.cancel()

    def begin_close(self) -> None:
        """Queue a close frame (the node is closing); ``finish`` ends the connection."""
        self.framer.pending += self.framer.close()
        self._queue_output(final=True)

    def finish(self) -> None:
        self.aborted = self.aborted or self.queued > 0
        if self._scope is not None:
            self._scope.cancel()


class WebSocketIO(WebSocketIOBase[_Connection]):
    """Datagram I/O for one node over WebSocket connections, keyed by peer address."""

    def __init__(self, group: anyio.abc.TaskGroup, deliver: Callable[[bytes, Address], None],
                 tune: Callable[[socket.socket], Any],
                 handshake_timeout: float | None = None) -> None:
        super().__init__(deliver, tune, handshake_timeout)
        self.group = group
        self._listener: anyio.abc.SocketListener | None = None
        self._dials: set[Address] = set()

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
                if not self.admit():
                    with contextlib.suppress(Exception):
                        reset_on_close(stream.extra(anyio.abc.SocketAttribute.raw_socket))
                        await stream.aclose()
                    continue
                peer = stream.extra(anyio.abc.SocketAttribute.remote_address)
                connection = _Connection(self, stream, False,
                                         (plain_host(str(peer[0])), int(peer[1])))
                self.track(connection, inbound=True)
                self.group.start_soon(connection.run)

        self.group.start_soon(accept_loop)

    @property
    def address(self) -> Address:
        if self._listener is None:
            raise RuntimeError("not listening")
        local = self._listener.extra(anyio.abc.SocketAttribute.local_address)
        return str(local[0]), int(local[1])

    async def ensure(self, addr: Address, timeout: float) -> None:
        """Have an open connection to ``addr`` (dial it if needed)."""
        if addr in self._connections:
            return
        connection: _Connection | None = None
        with anyio.move_on_after(timeout) as scope:
            connection = self._dialling.get(addr)
            if connection is None:
                self.check_dial_cap(addr)
                try:
                    stream = await anyio.connect_tcp(addr[0], addr[1])
                except OSError as exc:
                    raise ConnectionRefused(
                        f"nothing accepts WebSocket connections at {addr[0]}:{addr[1]} "
                        f"({exc.strerror or exc})") from None
                connection = self.track(_Connection(self, stream, True, addr))
                self._dialling[addr] = connection
                self.group.start_soon(connection.run)
            await connection.opened.wait()
        if scope.cancelled_caught or connection is None:
            if connection is not None and not connection.upgraded:
                connection.abort()  # as the asyncio runtime closes it
            raise HandshakeTimeout(f"no WebSocket connection to {addr[0]}:{addr[1]} within "
                                   f"{timeout:g} s")
        if connection.failed:
            raise ConnectionRefused(f"the WebSocket upgrade to {addr[0]}:{addr[1]} failed")

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
        connections = list(self._all)
        for connection in connections:
            connection.begin_close()
        with anyio.move_on_after(0.1):  # close frames leave together, not one by one
            while any(c.queued for c in connections):
                await anyio.sleep(0.002)
        for connection in connections:
            connection.finish()  # a peer that has not taken its close frame is reset
