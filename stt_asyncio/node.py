"""``STTNode`` for asyncio: owns a non-blocking UDP socket and one timer, and drives the
``stt_proto`` endpoint with them.

The socket is read with ``loop.add_reader`` and drained (by :class:`UdpIO`, with GRO where the
kernel has it) into one reused buffer, every datagram before timers run and output is sent;
output leaves in GSO runs or one ``sendto`` each, and waits for a writer callback on EAGAIN. No
task per datagram, one timer handle per node.
"""

from __future__ import annotations

import asyncio
import socket
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from stt_proto import (
    Endpoint,
    EndpointStats,
    HandshakeTimeout,
    Identity,
    NodeConfig,
    UsageError,
    preset,
)
from stt_proto import Session as ProtoSession

from ._address import check_dial, dial_host, open_udp_socket
from ._drain import drain_bounded
from ._signal import AsyncioSignal, Signal
from ._ws import tune_stream_socket
from .dht import NodeDHT
from .session import DatagramBudget, Session, dispatch_events
from .udp_io import UdpIO
from .websocket import WebSocketIO
from .workers import (
    Handler,
    WorkerPool,
    asyncio_worker,
    bind_shared,
    serve_sessions,
    supervise,
    worker_specs,
)

SEND_BATCH = 32  # datagrams sealed per batch: a window of them at once would churn the heap
CLOSE_LINGER = 2.0  # seconds close() waits for sent data to be acknowledged


class STTNode:
    """A node: one socket, any number of sessions. See ``shared/API.md`` for every argument."""

    def __init__(self, identity: Identity | None = None, **settings: Any) -> None:
        self.config = NodeConfig.build(**settings)
        # Unread DATAGRAMs queued across sessions (stt_asyncio/session.py DatagramBudget).
        self._datagram_budget = DatagramBudget(self.config.datagram_budget)
        self.identity = identity or Identity.generate()
        self._endpoint: Endpoint | None = None
        self._sock: socket.socket | None = None
        self._udp: UdpIO | None = None
        self._pool: WorkerPool | None = None
        self._ws: WebSocketIO | None = None  # the websocket transport, instead of _sock
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sessions: dict[bytes, Session] = {}
        self._accepted: deque[Session] = deque()
        self._accept_signal: Signal = AsyncioSignal()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._kicked = False
        self._out: deque[tuple[bytes | bytearray, tuple[str, int]]] = deque()
        self._writing = False
        self._granted = (0, 0)
        self._closed = False
        self.dht = NodeDHT(self._require_endpoint, self._now, self._kick, self._new_signal)

    # -- presets ----------------------------------------------------------------------------------

    @classmethod
    def low_latency(cls, **overrides: Any) -> STTNode:
        return cls(**_preset_kwargs("low_latency", overrides))

    @classmethod
    def high_throughput(cls, **overrides: Any) -> STTNode:
        return cls(**_preset_kwargs("high_throughput", overrides))

    @classmethod
    def balanced(cls, **overrides: Any) -> STTNode:
        return cls(**_preset_kwargs("balanced", overrides))

    # -- lifetime ---------------------------------------------------------------------------------

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

    async def start(self) -> None:
        if self._sock is not None or self._ws is not None:
            raise UsageError("the node is already started")
        self._loop = asyncio.get_running_loop()
        if self.config.transport == "websocket":
            if self.config.workers > 1:
                raise UsageError("workers > 1 needs the UDP transport")
            ws = WebSocketIO(self._loop, self._on_datagram, self._tune_stream_socket,
                             handshake_timeout=self.config.handshake_timeout)
            await ws.listen(self.config.host, self.config.port)
            self._ws = ws
            self._endpoint = self._new_endpoint(ws.address[1])
            return
        sock, self._granted = bind_udp(self.config)
        self._sock = sock
        self._udp = UdpIO(sock, self.config.udp_offload)
        self._endpoint = self._new_endpoint(sock.getsockname()[1])
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def _new_endpoint(self, port: int) -> Endpoint:
        endpoint = Endpoint(self.config, self.identity)
        endpoint.dht.port = port  # announced to DHT peers, who may only see a client port
        return endpoint

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
        if self._timer is not None:
            self._timer.cancel()
        for session in self._sessions.values():
            session._wake_all()
        self._accept_signal.set()
        self.dht.close()

    async def __aenter__(self) -> STTNode:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- sessions ---------------------------------------------------------------------------------

    def _require_endpoint(self) -> Endpoint:
        if self._endpoint is None or self._closed:
            raise UsageError("the node is not running: use 'async with node' or 'await "
                             "node.start()'")
        return self._endpoint

    async def connect(self, peer_addr: tuple[str, int], peer_id: bytes,
                      timeout: float | None = None) -> Session:
        """Handshake with ``peer_addr``, which must prove it is ``peer_id``. Each call makes a
        new session. Raises HandshakeTimeout, AuthenticationError or ConnectionRefused."""
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
            if timeout is None:
                await session._wait_confirmed()
            else:
                try:
                    await asyncio.wait_for(session._wait_confirmed(), timeout)
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

    async def accept(self) -> Session:
        """The next inbound session."""
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
        processes sharing its port (``stt_asyncio.workers``); ``handler`` must then be a
        module-level function, and this process handles only the peers hashed to it."""
        self._require_endpoint()
        if self.config.workers == 1:
            await serve_sessions(self, handler)
            return
        loop = asyncio.get_running_loop()
        runtime = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
        pool = WorkerPool(asyncio_worker, worker_specs(self, handler, runtime))
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

    def workers_alive(self) -> int:
        """Spawned worker processes running now (0 outside ``serve``)."""
        return 0 if self._pool is None else self._pool.alive()

    async def sessions(self) -> AsyncIterator[Session]:
        while True:
            try:
                yield await self.accept()
            except UsageError:
                return

    def get_stats(self) -> dict[str, Any]:
        stats = self._require_endpoint().get_stats() if self._endpoint else None
        loop = self._loop
        return {
            "loop": f"{type(loop).__module__}.{type(loop).__name__}" if loop else None,
            "recv_buffer_granted": self._granted[0],
            "send_buffer_granted": self._granted[1],
            "transport": self.config.transport,
            **udp_stats(self._udp),
            **({} if self._ws is None else {
                "websocket_protocol_errors": self._ws.protocol_errors,
                "websocket_dropped_sends": self._ws.dropped_sends}),
            **({} if stats is None else _endpoint_stats(stats)),
        }

    # -- the driver -------------------------------------------------------------------------------

    def _new_signal(self) -> Signal:
        return AsyncioSignal()

    def _now(self) -> float:
        # Not loop.time(): uvloop's is cached per iteration at millisecond resolution, which
        # rounds every RTT sample on loopback to 0 or 1 ms and confuses pacing and BBR.
        return time.monotonic()

    def _wrap(self, proto: ProtoSession) -> Session:
        session = self._sessions.get(proto.session_id)
        if session is None:
            session = self._sessions[proto.session_id] = Session(self, proto)
        return session

    def _kick(self) -> None:
        """Service the endpoint soon (once, however many API calls asked)."""
        if not self._kicked and self._loop is not None and not self._closed:
            self._kicked = True
            self._loop.call_soon(self._kicked_service)

    def _kicked_service(self) -> None:
        """The poll a kick deferred, unless one since (``_send_now``, a readable socket) has
        done its work: a reader that answers each message at once would otherwise pay a
        second, empty poll per message."""
        if self._kicked:
            self._service()

    def _send_now(self) -> None:
        """Poll the endpoint at once (a no_delay stream's message leaves before send() returns)
        instead of on the next loop pass."""
        if self._endpoint is not None and not self._closed:
            self._service()

    def _on_readable(self) -> None:
        udp, endpoint = self._udp, self._endpoint
        if udp is None or endpoint is None:
            return
        # Bounded by time and count (_drain.py): what is left keeps the socket readable, and
        # the loop calls again once timers and other tasks have had their turn.
        drain_bounded(udp, endpoint.receive_datagram, self._now)
        self._service()

    def _on_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        """A datagram from the websocket transport (UDP datagrams come in _on_readable)."""
        endpoint = self._endpoint
        if endpoint is not None and not self._closed:
            endpoint.receive_datagram(data, addr, self._now())
            self._kick()

    def _tune_stream_socket(self, sock: socket.socket) -> None:
        granted = tune_stream_socket(sock, self.config.recv_buffer_size,
                                     self.config.send_buffer_size)
        if granted is not None:
            self._granted = granted

    def _service(self, timers: bool = False) -> None:
        """Send what the endpoint has ready, hand out its events and re-arm the timer. Only
        the timer's own call (``timers``) runs due deadlines: the armed timer is never later
        than the endpoint's deadline, and input or an API call never moves a deadline to the
        past (an ACK owed at once is built by the poll itself), so the other calls would only
        pay a second deadline query to find nothing due."""
        self._kicked = False
        endpoint = self._endpoint
        if endpoint is None:
            return
        if self._ws is None and (self._sock is None or self._sock.fileno() < 0):
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
        self._dispatch(endpoint)
        self._arm_timer(endpoint.get_timer())

    def _send(self) -> None:
        sock, udp, out = self._sock, self._udp, self._out
        if self._ws is not None:
            while out:
                data, addr = out.popleft()
                self._ws.send(data, addr)
            return
        if sock is None or udp is None:
            return
        if not udp.send(out):
            if not self._writing and self._loop is not None:
                self._writing = True
                self._loop.add_writer(sock.fileno(), self._on_writable)
            return
        if self._writing and self._loop is not None:
            self._writing = False
            self._loop.remove_writer(sock.fileno())

    def _on_writable(self) -> None:
        self._send()
        if not self._out:
            self._kick()  # the endpoint may hold more than the last batch

    def _arm_timer(self, deadline: float | None) -> None:
        """Have ``_on_timer`` run by ``deadline``. A timer already armed for an earlier time is
        kept even when the deadline moved later or went away: it fires early, finds nothing due
        and re-arms. Replacing it on every change (a loss timer set and cleared per round trip)
        cost a cancelled handle and a new one each time."""
        armed = self._timer_at
        if deadline == armed or (armed is not None and (deadline is None or deadline > armed)):
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timer_at = deadline
        if deadline is not None and self._loop is not None:
            self._timer = self._loop.call_later(max(0.0, deadline - time.monotonic()),
                                                self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._service(timers=True)

    def _dispatch(self, endpoint: Endpoint) -> None:
        dispatch_events(endpoint, self._sessions, self._wrap, self._accepted,
                        self._accept_signal)
        self.dht.dispatch(endpoint)


def udp_stats(udp: UdpIO | None) -> dict[str, Any]:
    """The socket's counters as both runtimes report them in ``node.get_stats()``."""
    if udp is None:
        return {"send_errors": 0}
    return {"send_errors": udp.send_errors, "gso": udp.gso, "gro": udp.gro,
            "gso_sends": udp.gso_sends, "gro_reads": udp.gro_reads}


def _endpoint_stats(stats: EndpointStats) -> dict[str, Any]:
    """The endpoint's counters as both runtimes report them in ``node.get_stats()``."""
    return {
        "sessions_open": stats.sessions_open, "sessions_total": stats.sessions_total,
        "handshakes_ok": stats.handshakes_ok, "handshakes_failed": stats.handshakes_failed,
        "datagrams_in": stats.datagrams_in, "datagrams_out": stats.datagrams_out,
        "dropped": stats.dropped, **stats.dht,
    }


def _preset_kwargs(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    identity = overrides.pop("identity", None)
    config = preset(name, **overrides)
    fields = {f: getattr(config, f) for f in config.__slots__ if not f.startswith("__")}
    return {"identity": identity, **fields}


def bind_udp(config: NodeConfig) -> tuple[socket.socket, tuple[int, int]]:
    """The node's bound UDP socket (dual-stack for ``host=None``) and the buffer sizes the
    kernel granted; shared by both runtimes."""
    sock, host = open_udp_socket(config.host)
    try:
        granted = _apply_buffers(sock, config.recv_buffer_size, config.send_buffer_size)
        if config.workers > 1:
            bind_shared(sock, (host, config.port))
        else:
            sock.bind((host, config.port))
    except BaseException:
        sock.close()
        raise
    return sock, granted


def _apply_buffers(sock: socket.socket, recv: int, send: int) -> tuple[int, int]:
    """Ask for the buffer sizes; report what the kernel granted (Linux reports double)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send)
    got_recv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    got_send = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
    if got_recv < recv:
        warnings.warn(f"the kernel granted a {got_recv}-byte receive buffer instead of {recv}; "
                      f"raise net.core.rmem_max (sysctl -w net.core.rmem_max={recv})",
                      RuntimeWarning, stacklevel=4)
    if got_send < send:
        warnings.warn(f"the kernel granted a {got_send}-byte send buffer instead of {send}; "
                      f"raise net.core.wmem_max (sysctl -w net.core.wmem_max={send})",
                      RuntimeWarning, stacklevel=4)
    return got_recv, got_send
