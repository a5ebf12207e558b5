"""``STTNode`` for anyio (trio or asyncio): a driver task owns a raw non-blocking UDP socket,
waits until it is readable (no per-datagram checkpoint, no 100-datagram queue), drains
every datagram, runs due timers and sends. API calls wake it by cancelling its wait.

The driver runs in the node's own task, outside the task tree of whoever called ``start()``
(trio's system nursery, or a plain asyncio task): ``start()`` enters no task group or cancel
scope of the caller, so ``close()`` works from any task and in any order across nodes."""

from __future__ import annotations

import logging
import math
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import anyio.abc
import sniffio

from stt_asyncio._address import check_dial, dial_host
from stt_asyncio._drain import drain_bounded
from stt_asyncio._signal import Signal
from stt_asyncio._ws import tune_stream_socket
from stt_asyncio.dht import NodeDHT
from stt_asyncio.node import (
    CLOSE_LINGER,
    SEND_BATCH,
    _endpoint_stats,
    _preset_kwargs,
    bind_udp,
    udp_stats,
)
from stt_asyncio.session import DatagramBudget, dispatch_events
from stt_asyncio.udp_io import UdpIO
from stt_asyncio.workers import Handler, WorkerPool, worker_specs
from stt_proto import Endpoint, HandshakeTimeout, Identity, NodeConfig, UsageError
from stt_proto import Session as ProtoSession

from ._backend import ANYIO, Event, Primitives, Scope, bind
from .session import Session
from .websocket import WebSocketIO
from .workers import anyio_worker, serve_sessions, supervise

log = logging.getLogger("stt.node")


class AnyioSignal(Signal):
    """A signal over the backend's events (``_backend``: trio's own on trio)."""

    __slots__ = ("_event", "_new_event")

    def __init__(self, new_event: Callable[[], Event] = ANYIO.event) -> None:
        self._event: Event | None = None  # made by the first waiter
        self._new_event = new_event

    async def wait(self) -> None:
        if self._event is None:
            self._event = self._new_event()
        await self._event.wait()

    def set(self) -> None:
        event, self._event = self._event, None
        if event is not None:
            event.set()


class STTNode:
    """A node on anyio (trio or asyncio): ``async with node:``, or ``start()`` and ``close()``
    from any task, in any order."""

    def __init__(self, identity: Identity | None = None, **settings: Any) -> None:
        self.config = NodeConfig.build(**settings)
        # Unread DATAGRAMs queued across sessions (stt_asyncio/session.py DatagramBudget).
        self._datagram_budget = DatagramBudget(self.config.datagram_budget)
        self.identity = identity or Identity.generate()
        self._endpoint: Endpoint | None = None
        self._sock: socket.socket | None = None
        self._ws: WebSocketIO | None = None  # the websocket transport, instead of _sock
        self._sessions: dict[bytes, Session] = {}
        self._accepted: deque[Session] = deque()
        self._accept_signal: Signal = AnyioSignal()
        self._out: deque[tuple[bytes | bytearray, tuple[str, int]]] = deque()
        self._granted = (0, 0)
        self._wait_scope: Scope | None = None
        self._primitives: Primitives = ANYIO  # bound to the running backend by start()
        self._scope: Scope | None = None  # the node's own task's; close() cancels it
        self._done: Event | None = None  # set when the node's own task has ended
        self._closing = False
        self._closed = False
        self._udp: UdpIO | None = None
        self._pool: WorkerPool | None = None
        self.dht = NodeDHT(self._require_endpoint, self._now, self._kick, self._new_signal)

    @classmethod
    def low_latency(cls, **overrides: Any) -> STTNode:
        return cls(**_preset_kwargs("low_latency", overrides))

    @classmethod
    def high_throughput(cls, **overrides: Any) -> STTNode:
        return cls(**_preset_kwargs("high_throughput", overrides))

    @classmethod
    def balanced(cls, **overrides: Any) -> STTNode:
        return cls(**_preset_kwargs("balanced", overrides))

    @property
    def node_id(self) -> bytes:
        return self.identity.node_id

    @property
    def address(self) -> tuple[str, int]:
        if self._ws is not None:
            return self._ws.address
        if self._sock is None:
            raise UsageError("the node is not started")
        host, port = self._sock.getsockname()[:2]
        return host, port

    # -- lifetime ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind and start the node's own task. That task lives outside the caller's task tree
        (``_backend.Primitives.spawn``), so ``close()`` may come from any task, and nodes may
        be closed in any order."""
        if self._done is not None:
            raise UsageError("the node is already started")
        if self.config.transport == "websocket" and self.config.workers > 1:
            raise UsageError("workers > 1 needs the UDP transport")
        primitives = self._primitives = bind()
        self._accept_signal = AnyioSignal(primitives.event)
        if self.config.transport != "websocket":
            sock, self._granted = bind_udp(self.config)
            self._sock = sock
            self._udp = UdpIO(sock, self.config.udp_offload)
            self._endpoint = self._new_endpoint(sock.getsockname()[1])
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
                    if self.config.transport == "websocket":
                        ws = WebSocketIO(group, self._on_datagram, self._tune_stream_socket,
                                         handshake_timeout=self.config.handshake_timeout)
                        try:
                            await ws.listen(self.config.host, self.config.port)
                        except Exception as exc:
                            failure.append(exc)
                            group.cancel_scope.cancel()
                            return
                        self._ws = ws
                        self._endpoint = self._new_endpoint(ws.address[1])
                    started.set()
                    await self._drive()
                    await anyio.sleep_forever()  # closing: until close() cancels the scope
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
        for session in self._sessions.values():
            session._wake_all()
        self._accept_signal.set()
        self.dht.close()

    def _new_endpoint(self, port: int) -> Endpoint:
        endpoint = Endpoint(self.config, self.identity)
        endpoint.dht.port = port  # announced to DHT peers, who may only see a client port
        return endpoint

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
        for session in self._sessions.values():
            session._wake_all()
        self._accept_signal.set()
        self.dht.close()
        if self._scope is not None:
            self._scope.cancel()
        with anyio.CancelScope(shield=True):  # the node's task ends at once once cancelled
            await self._done.wait()
        if self._sock is not None:
            self._sock.close()

    async def __aenter__(self) -> STTNode:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sessions ---------------------------------------------------------------------------------

    def _require_endpoint(self) -> Endpoint:
        if self._endpoint is None or self._closed:
            raise UsageError("the node is not running: use 'async with node'")
        return self._endpoint

    async def connect(self, peer_addr: tuple[str, int], peer_id: bytes,
                      timeout: float | None = None) -> Session:
        endpoint = self._require_endpoint()
        peer_addr = (dial_host(peer_addr[0]), peer_addr[1])
        if self._ws is not None:
            await self._ws.ensure(peer_addr,
                                  self.config.handshake_timeout if timeout is None else timeout)
        else:
            check_dial(self.config.host, peer_addr[0])
        proto = endpoint.connect(peer_addr, bytes(peer_id), self._now())
        session = self._wrap(proto)
        self._kick()
        try:
            with anyio.fail_after(math.inf if timeout is None else timeout):
                await session._wait_confirmed()
        except TimeoutError as exc:
            proto.close(0, "connect timed out", self._now())
            self._kick()
            if isinstance(exc, HandshakeTimeout):
                raise
            raise HandshakeTimeout(
                f"no handshake with {peer_addr[0]}:{peer_addr[1]} within {timeout:g} s") from None
        except BaseException:
            proto.close(0, "connect abandoned", self._now())
            self._kick()
            raise
        return session

    async def accept(self) -> Session:
        if self._endpoint is None:
            raise UsageError("the node is not started: use 'async with node' or 'await "
                             "node.start()'")  # nothing could ever arrive to wake a wait
        while not self._accepted:
            if self._closed:
                raise UsageError("the node is closed")
            await self._accept_signal.wait()
        return self._accepted.popleft()

    async def serve(self, handler: Handler) -> None:
        """Run ``await handler(session)`` for every inbound session until the node closes or
        this is cancelled (which cancels the handlers). With ``workers=N`` the node serves from N
        processes sharing its port, on this backend; ``handler`` must then be a module-level
        function, and this process handles only the peers hashed to it."""
        self._require_endpoint()
        if self.config.workers == 1:
            await serve_sessions(self, handler)
            return
        pool = WorkerPool(anyio_worker,
                          worker_specs(self, handler, sniffio.current_async_library()))
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

    async def sessions(self) -> AsyncIterator[Session]:
        """Every inbound session, until the node closes."""
        while True:
            try:
                yield await self.accept()
            except UsageError:
                return

    def workers_alive(self) -> int:
        """Spawned worker processes running now (0 outside ``serve``)."""
        return 0 if self._pool is None else self._pool.alive()

    def get_stats(self) -> dict[str, Any]:
        stats = self._require_endpoint().get_stats()
        return {
            "loop": f"anyio/{sniffio.current_async_library()}",
            "recv_buffer_granted": self._granted[0], "send_buffer_granted": self._granted[1],
            "transport": self.config.transport, **udp_stats(self._udp),
            **({} if self._ws is None else {
                "websocket_protocol_errors": self._ws.protocol_errors,
                "websocket_dropped_sends": self._ws.dropped_sends}),
            **_endpoint_stats(stats),
        }

    # -- the driver -------------------------------------------------------------------------------

    def _new_signal(self) -> Signal:
        return AnyioSignal(self._primitives.event)

    def _now(self) -> float:
        return self._primitives.now()

    def _wrap(self, proto: ProtoSession) -> Session:
        session = self._sessions.get(proto.session_id)
        if session is None:
            session = self._sessions[proto.session_id] = Session(self, proto)
        return session

    def _send_now(self) -> None:
        """Poll the endpoint at once (a no_delay stream's message leaves before send() returns).
        The driver is woken only if the socket is full; otherwise its wait's deadline is moved
        to the endpoint's, where that is earlier. Waking it cost a cancelled wait, an empty
        read and a second poll per message."""
        endpoint = self._endpoint
        if endpoint is None or self._closed:
            return
        self._service()
        scope = self._wait_scope
        if self._out or scope is None:
            self._kick()
            return
        deadline = endpoint.get_timer()
        if deadline is not None and deadline < scope.deadline:
            scope.deadline = deadline

    def _kick(self) -> None:
        scope = self._wait_scope
        if scope is not None:
            scope.cancel()

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram from the websocket transport (UDP datagrams come in _drain)."""
        endpoint = self._endpoint
        if endpoint is not None and not self._closed:
            endpoint.receive_datagram(data, addr, self._now())
            self._kick()

    def _tune_stream_socket(self, sock: socket.socket) -> None:
        granted = tune_stream_socket(sock, self.config.recv_buffer_size,
                                     self.config.send_buffer_size)
        if granted is not None:
            self._granted = granted

    async def _drive_websocket(self, endpoint: Endpoint) -> None:
        timers = True
        new_scope = self._primitives.scope
        while not self._closed:
            self._service(timers)
            deadline = endpoint.get_timer()
            with new_scope(math.inf if deadline is None else deadline) as scope:
                self._wait_scope = scope
                await anyio.sleep_forever()
            self._wait_scope = None
            timers = self._now() >= scope.deadline

    async def _drive(self) -> None:
        sock, endpoint = self._sock, self._endpoint
        if endpoint is not None and self._ws is not None:
            await self._drive_websocket(endpoint)
            return
        if sock is None or endpoint is None:
            return
        timers = True
        new_scope, wait_readable = self._primitives.scope, self._primitives.wait_readable
        while not self._closed:
            self._service(timers)
            timers = False
            if self._out:
                await anyio.wait_writable(sock)
                self._send()
                timers = True  # a full socket can hold the driver here past a deadline
                continue
            deadline = endpoint.get_timer()
            with new_scope(math.inf if deadline is None else deadline) as scope:
                self._wait_scope = scope
                await wait_readable(sock)
            self._wait_scope = None
            timers = self._now() >= scope.deadline  # (_send_now may have moved it earlier)
            self._drain()

    def _drain(self) -> None:
        """Socket input, bounded by time and count (stt_asyncio/_drain.py): the driver then
        sends, and its next wait on the still-readable socket lets other tasks run first."""
        udp, endpoint = self._udp, self._endpoint
        if udp is None or endpoint is None:
            return
        drain_bounded(udp, endpoint.receive_datagram, self._now)

    def _service(self, timers: bool = False) -> None:
        """Send what the endpoint has ready and hand out its events. Due deadlines run only
        when the driver's wait reached its deadline (``timers``): input and API calls never
        move a deadline to the past (see ``stt_asyncio.node.STTNode._service``)."""
        endpoint = self._endpoint
        if endpoint is None:
            return
        now = self._now()
        if timers:
            timer = endpoint.get_timer()
            if timer is not None and timer <= now:
                endpoint.handle_timer(now)
        while not self._out:  # bounded batches, each sent before the next is sealed
            batch = endpoint.datagrams_to_send(now, SEND_BATCH)
            if not batch:
                break
            self._out.extend(batch)
            self._send()
            if len(batch) < SEND_BATCH:
                break  # a short batch: the endpoint has nothing more ready now
        dispatch_events(endpoint, self._sessions, self._wrap, self._accepted,
                        self._accept_signal)
        self.dht.dispatch(endpoint)

    def _send(self) -> None:
        sock, udp, out = self._sock, self._udp, self._out
        if self._ws is not None:
            while out:
                data, addr = out.popleft()
                self._ws.send(data, addr)
            return
        if sock is None or udp is None or sock.fileno() < 0:
            out.clear()
            return
        udp.send(out)
