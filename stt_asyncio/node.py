"""``STTNode`` for asyncio: owns a non-blocking UDP socket and one timer, and drives the
``stt_proto`` node core (``stt_proto.Node``: the endpoint and the DHT beside it) with them.

The socket is read with ``loop.add_reader`` and drained (by ``stt_runtime.udp_io.UdpIO``, with
GRO where the kernel has it) into one reused buffer, every datagram before timers run and output
is sent; output leaves in GSO runs or one ``sendto`` each, and waits for a writer callback on
EAGAIN. No task per datagram, one timer handle per node. What does not depend on the loop is
``stt_runtime.node_core.NodeCore``'s.
"""

from __future__ import annotations

import asyncio
from typing import Any

from stt_proto import HandshakeTimeout, Identity, UsageError
from stt_runtime.node_core import CLOSE_LINGER
from stt_runtime.session import Session
from stt_runtime.workers import Handler, WorkerPool, worker_specs

from ._driver import AsyncioDriver
from .websocket import WebSocketIO
from .workers import asyncio_worker, serve_sessions, supervise


class STTNode(AsyncioDriver):
    """A node: one socket, any number of sessions. See ``docs/api.md`` for every argument; the
    driver (socket callbacks, timer) is ``_driver.AsyncioDriver``'s."""

    def __init__(self, identity: Identity | None = None, **settings: Any) -> None:
        super().__init__(identity, settings)

    # -- lifetime ---------------------------------------------------------------------------------

    async def start(self) -> None:
        if self._sock is not None or self._ws is not None:
            raise UsageError("the node is already started")
        self._loop = asyncio.get_running_loop()
        if self.settings.socket.transport == "websocket":
            if self.settings.socket.workers > 1:
                raise UsageError("workers > 1 needs the UDP transport")
            ws = WebSocketIO(self._loop, self._on_datagram, self._tune_stream_socket,
                             handshake_timeout=self.config.session.handshake_timeout)
            await ws.listen(self.settings.socket.host, self.settings.socket.port)
            self._ws = ws
            self._endpoint = self._new_endpoint(ws.address[1])
            return
        sock = self._bind_udp()
        self._loop.add_reader(sock.fileno(), self._on_readable)

    async def close(self) -> None:
        """Close every session gracefully (peers see CLOSE), then the socket."""
        if (self._sock is None and self._ws is None) or self._closed:
            return
        endpoint = self._endpoint
        if endpoint is not None:
            # Let data already handed to send() be acknowledged first (bounded), then CLOSE.
            deadline = self._now() + CLOSE_LINGER
            while (self._now() < deadline
                   and not all(s.is_idle for s in endpoint.sessions.values())):
                await asyncio.sleep(0.005)
        self._closed = True
        if endpoint is not None:
            endpoint.close(self._now())
        self._service()
        for _ in range(20):  # let the CLOSE packets leave a full socket buffer
            if not self._out:
                break
            await asyncio.sleep(0.005)
        loop = self._loop
        if self._ws is not None:
            await self._ws.close()
        elif self._sock is not None:
            if loop is not None:
                loop.remove_reader(self._sock.fileno())
                if self._writing:
                    loop.remove_writer(self._sock.fileno())
            self._sock.close()
        if self._group is not None:
            self._group.close()  # worker 0's sockets for the other workers
        if self._timer is not None:
            self._timer.cancel()
        self._wake_everyone()

    # -- sessions ---------------------------------------------------------------------------------

    async def connect(self, peer_addr: tuple[str, int], peer_id: bytes,
                      timeout: float | None = None) -> Session:
        """Handshake with ``peer_addr``, which must prove it is ``peer_id``. Each call makes a
        new session. Raises HandshakeTimeout, AuthenticationError or ConnectionRefused."""
        proto, session, peer_addr = await self._dial(peer_addr, peer_id, timeout)
        try:
            if timeout is None:
                await session._wait_confirmed()
            else:
                try:
                    # A deadline on this task: wait_for made a second Task per connect.
                    async with asyncio.timeout(timeout):
                        await session._wait_confirmed()
                except HandshakeTimeout:
                    raise
                except TimeoutError:
                    raise HandshakeTimeout(
                        f"no handshake with {peer_addr[0]}:{peer_addr[1]} within {timeout:g} s"
                    ) from None
        except BaseException:
            proto.close(0, "connect abandoned", self._now())  # nothing left half-open
            self._kick()
            raise
        return session

    async def serve(self, handler: Handler) -> None:
        """Run ``await handler(session)`` for every inbound session until the node closes or
        this is cancelled (which cancels the handlers). With ``workers=N`` the node serves from N
        processes sharing its port (``stt_runtime.workers``); ``handler`` must then be a
        module-level function, and this process handles only the sessions steered to it."""
        self._require_endpoint()
        if self.settings.socket.workers == 1:
            await serve_sessions(self, handler)
            return
        loop = asyncio.get_running_loop()
        runtime = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        assert self._group is not None  # made by start() for workers > 1
        pool = WorkerPool(asyncio_worker, worker_specs(self, handler, runtime, STTNode),
                          self._group)
        await loop.run_in_executor(None, pool.start)
        self._pool = pool
        supervisor = asyncio.ensure_future(supervise(pool))
        try:
            await serve_sessions(self, handler)
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
            await asyncio.shield(loop.run_in_executor(None, pool.stop))
            self._pool = None

    def get_stats(self) -> dict[str, Any]:
        stats = self._require_endpoint().get_stats() if self._endpoint else None
        loop = self._loop
        return self._stats(f"{type(loop).__module__}.{type(loop).__name__}" if loop else None,
                           stats)
