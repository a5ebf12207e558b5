"""``STTNode`` for anyio (trio or asyncio): a driver task owns a raw non-blocking UDP socket,
waits until it is readable (no per-datagram checkpoint, no 100-datagram queue), drains
every datagram, runs due timers and sends. API calls wake it by cancelling its wait. What does
not depend on the loop is ``stt_runtime.node_core.NodeCore``'s.

The driver runs in the node's own task, outside the task tree of whoever called ``start()``
(trio's system nursery, or a plain asyncio task): ``start()`` enters no task group or cancel
scope of the caller, so ``close()`` works from any task and in any order across nodes."""

from __future__ import annotations

import logging
import math
from typing import Any

import anyio
import anyio.abc
import sniffio

from stt_proto import HandshakeTimeout, Identity, UsageError
from stt_runtime.node_core import CLOSE_LINGER
from stt_runtime.workers import Handler, WorkerPool, worker_specs

from ._backend import Event, Scope, bind
from ._driver import AnyioDriver
from ._signal import AnyioSignal
from .session import Session
from .websocket import WebSocketIO
from .workers import anyio_worker, serve_sessions, supervise

log = logging.getLogger("stt.node")


class STTNode(AnyioDriver):
    """A node on anyio (trio or asyncio): ``async with node:``, or ``start()`` and ``close()``
    from any task, in any order. The driver loop is ``_driver.AnyioDriver``'s."""

    def __init__(self, identity: Identity | None = None, **settings: Any) -> None:
        super().__init__(identity, settings)
        self._scope: Scope | None = None  # the node's own task's; close() cancels it
        self._done: Event | None = None  # set when the node's own task has ended
        self._closing = False

    # -- lifetime ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start the node's own task. That task lives outside the caller's task tree
        (``_backend.Primitives.spawn``), so ``close()`` may come from any task, and nodes may
        be closed in any order."""
        if self._done is not None:
            raise UsageError("the node is already started")
        socket_settings = self.settings.socket
        if socket_settings.transport == "websocket" and socket_settings.workers > 1:
            raise UsageError("workers > 1 needs the UDP transport")
        primitives = self._primitives = bind()
        self._accept_signal = AnyioSignal(primitives.event)
        if socket_settings.transport != "websocket":
            self._bind_udp()
        self._scope = primitives.scope(math.inf)
        self._done = primitives.event()
        started = primitives.event()
        failure: list[BaseException] = []

        async def run() -> None:
            await self._run(started, failure)

        primitives.spawn(run)
        try:
            await started.wait()
        except BaseException:
            await self._abandon()  # cancelled while starting: stop the node's task too
            raise
        if failure:
            await self._abandon()
            raise failure[0]

    async def _abandon(self) -> None:
        """Stop a node whose start failed or was cancelled."""
        self._closed = self._closing = True
        if self._scope is not None:
            self._scope.cancel()
        if self._done is not None:
            with anyio.CancelScope(shield=True):
                await self._done.wait()
        if self._sock is not None:
            self._sock.close()
        if self._group is not None:
            self._group.close()

    async def _run(self, started: Event, failure: list[BaseException]) -> None:
        """The node's own task: its task group runs the driver and the websocket transport's
        connection tasks until ``close()`` cancels ``_scope``. It never raises (on trio a
        system task's exception would crash the run): a failure is logged and closes the
        node."""
        try:
            scope = self._scope
            if scope is None:
                return
            with scope:
                async with anyio.create_task_group() as group:
                    socket_settings = self.settings.socket
                    if socket_settings.transport == "websocket":
                        ws = WebSocketIO(group, self._on_datagram, self._tune_stream_socket,
                                         handshake_timeout=self.config.session.handshake_timeout)
                        try:
                            await ws.listen(socket_settings.host, socket_settings.port)
                        except Exception as exc:
                            failure.append(exc)
                            group.cancel_scope.cancel()
                            return
                        self._ws = ws
                        self._endpoint = self._new_endpoint(ws.address[1])
                    started.set()
                    # A task of its own, so that a datagram's route starts in the driver
                    # (docs/architecture.md); this one waits until close() cancels the scope.
                    group.start_soon(self._drive)
                    await anyio.sleep_forever()
        except Exception:
            log.exception("the node's driver failed; the node is closed")
            self._fail()
        finally:
            started.set()
            if self._done is not None:
                self._done.set()

    def _fail(self) -> None:
        """The driver failed: end every wait, as close() would."""
        self._closed = True
        self._wake_everyone()

    async def close(self) -> None:
        """Close every session gracefully (peers see CLOSE), then the socket. Any task may
        call it, in any order relative to other nodes."""
        if self._done is None or self._closing:
            return
        self._closing = True
        endpoint = self._endpoint
        if endpoint is not None and not self._closed:
            # Let data already handed to send() be acknowledged first (bounded), then CLOSE.
            with anyio.move_on_after(CLOSE_LINGER):
                while not all(s.is_idle for s in endpoint.sessions.values()):
                    await anyio.sleep(0.005)
        self._closed = True
        if endpoint is not None:
            endpoint.close(self._now())
        self._service()
        with anyio.move_on_after(0.1):  # let the CLOSE packets leave a full socket buffer
            while self._out and self._sock is not None:
                # polled, not wait_writable: the driver may be waiting for writability on
                # this socket, and trio allows one such waiter (BusyResourceError)
                await anyio.sleep(0.002)
                self._send()
        if self._ws is not None:
            await self._ws.close()
        self._wake_everyone()
        if self._scope is not None:
            self._scope.cancel()
        with anyio.CancelScope(shield=True):  # the node's task ends at once once cancelled
            await self._done.wait()
        if self._sock is not None:
            self._sock.close()
        if self._group is not None:
            self._group.close()  # worker 0's sockets for the other workers

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
                # The backend's own cancel scope (see _backend.py), not anyio.fail_after: half
                # the cost, which a burst of connects pays once each.
                with self._primitives.scope(self._now() + timeout) as scope:
                    await session._wait_confirmed()
                if scope.cancelled_caught:
                    raise HandshakeTimeout(f"no handshake with {peer_addr[0]}:{peer_addr[1]} "
                                           f"within {timeout:g} s")
        except TimeoutError:  # HandshakeTimeout: ours, or the session's handshake_timeout
            proto.close(0, "connect timed out", self._now())
            self._kick()
            raise
        except BaseException:
            proto.close(0, "connect abandoned", self._now())
            self._kick()
            raise
        return session

    async def serve(self, handler: Handler) -> None:
        """Run ``await handler(session)`` for every inbound session until the node closes or
        this is cancelled (which cancels the handlers). With ``workers=N`` the node serves from N
        processes sharing its port, on this backend; ``handler`` must then be a module-level
        function, and this process handles only the sessions steered to it."""
        self._require_endpoint()
        if self.settings.socket.workers == 1:
            await serve_sessions(self, handler)
            return
        assert self._group is not None  # made by start() for workers > 1
        pool = WorkerPool(anyio_worker,
                          worker_specs(self, handler, sniffio.current_async_library(),
                                       STTNode), self._group)
        await anyio.to_thread.run_sync(pool.start)
        self._pool = pool
        try:
            async with anyio.create_task_group() as group:
                group.start_soon(supervise, pool)
                await serve_sessions(self, handler)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(pool.stop)
            self._pool = None

    def get_stats(self) -> dict[str, Any]:
        stats = self._require_endpoint().get_stats()
        return self._stats(f"anyio/{sniffio.current_async_library()}", stats)
