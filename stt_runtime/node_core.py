"""What both bindings' ``STTNode`` share: settings, presets, the endpoint's lifetime checks,
accepting sessions, the poll that seals output and hands out events, the websocket transport's
hooks and the node's statistics.

A binding (``stt_asyncio``, ``stt_anyio``) subclasses :class:`NodeCore` and adds only what
depends on its event loop: how the socket is waited on, the timer, the wake-up signal type,
``start``/``close``, ``connect``'s timeout and ``serve``'s task handling. Every protocol
decision stays in ``stt_proto``.
"""

from __future__ import annotations

import functools
import socket
import time
import warnings
from collections import deque
from collections.abc import AsyncIterator
from typing import Any, Generic, Protocol, Self, TypeVar

from stt_proto import EndpointStats, Identity, Node, UsageError
from stt_proto import Session as ProtoSession
from stt_proto.packet import Datagram

from ._address import check_dial, dial_host, open_udp_socket
from ._signal import Signal
from .dht import NodeDHT
from .session import DatagramBudget, Session
from .settings import NodeSettings, SocketSettings, preset_kwargs
from .udp_io import UdpIO
from .websocket import tune_stream_socket
from .workers import WorkerGroup, WorkerPool, bind_shared, join_group

SEND_BATCH = 32  # datagrams sealed per batch: a window of them at once would churn the heap
CLOSE_LINGER = 2.0  # seconds close() waits for sent data to be acknowledged
# A kick defers the endpoint's poll to the loop's next pass, which comes after every task ready
# now has run its step. A kick owed longer than this (CPU time other tasks spent meanwhile) is
# polled at once by the next one: a burst of 2,000 connects (a key pair each, 30-70 us) had
# held every INITIAL until the last had run, 0.1-0.15 s with the peer idle.
KICK_DEFER_MAX = 0.0005
# check_dial parses both addresses (ipaddress, ~20 us a connect); a pair that passed passes
# again, and a refused one raises every time (lru_cache keeps no exception).
_check_dial = functools.lru_cache(maxsize=256)(check_dial)

Address = tuple[str, int]
SessionT = TypeVar("SessionT", bound=Session)


class WsTransport(Protocol):
    """The websocket transport as the shared node code sees it (each binding has one)."""

    protocol_errors: int
    dropped_sends: int

    @property
    def address(self) -> Address: ...

    def send(self, datagram: Datagram, addr: Address) -> None: ...

    async def ensure(self, addr: Address, timeout: float) -> None: ...


class NodeCore(Generic[SessionT]):
    """The loop-independent half of a node: one sans-I/O node core (``stt_proto.Node``: the
    endpoint and the DHT beside it, kept in ``_endpoint``), one socket (or the websocket
    transport), any number of sessions of the binding's ``Session`` class."""

    _ws: WsTransport | None  # the websocket transport, instead of _sock

    def __init__(self, session_class: type[SessionT], identity: Identity | None,
                 settings: dict[str, Any]) -> None:
        # The keywords split by layer (stt_runtime/settings.py): ``config`` is the core's.
        self.settings = NodeSettings.build(**settings)
        self.config = self.settings.endpoint
        # Unread DATAGRAMs queued across sessions (stt_runtime/session.py DatagramBudget).
        self._datagram_budget = DatagramBudget(self.settings.socket.datagram_budget)
        self.identity = identity or Identity.generate()
        self._session_class = session_class
        self._endpoint: Node | None = None  # the sans-I/O core the driver feeds
        self._sock: socket.socket | None = None
        self._udp: UdpIO | None = None
        self._ws = None
        self._pool: WorkerPool | None = None
        self._group: WorkerGroup | None = None  # workers=N: this process's place among them
        self._sessions: dict[bytes, SessionT] = {}
        self._accepted: deque[SessionT] = deque()
        self._accept_signal: Signal = self._new_signal()
        self._out: deque[tuple[Datagram, Address]] = deque()
        self._granted = (0, 0)
        self._closed = False
        self._kicked_at = 0.0  # when the kick now owed was asked for (_note_kick)
        self.dht = NodeDHT(self._require_endpoint, self._now, self._kick, self._new_signal)

    # -- what the binding provides ----------------------------------------------------------------

    async def start(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _new_signal(self) -> Signal:
        raise NotImplementedError

    def _now(self) -> float:
        raise NotImplementedError

    def _kick(self) -> None:
        """Service the endpoint soon (once, however many API calls asked)."""
        raise NotImplementedError

    def _send_now(self) -> None:
        """Poll the endpoint at once (a no_delay stream's message leaves before send()
        returns)."""
        raise NotImplementedError

    def _note_kick(self) -> None:
        """A kick is owed from now on (the binding deferred its poll)."""
        self._kicked_at = time.perf_counter()

    def _kick_overdue(self) -> bool:
        """The kick owed has waited KICK_DEFER_MAX: the binding polls at once (``_flush``)."""
        return time.perf_counter() - self._kicked_at > KICK_DEFER_MAX

    def _flush(self) -> bool:
        """Run a poll that a kick deferred now, before the calling task waits; True if one
        ran (the caller then looks again before it waits). Bindings that defer polls
        override it."""
        return False

    # -- presets ----------------------------------------------------------------------------------

    @classmethod
    def low_latency(cls, **overrides: Any) -> Self:
        return cls(**preset_kwargs("low_latency", overrides))

    @classmethod
    def high_throughput(cls, **overrides: Any) -> Self:
        return cls(**preset_kwargs("high_throughput", overrides))

    @classmethod
    def balanced(cls, **overrides: Any) -> Self:
        return cls(**preset_kwargs("balanced", overrides))

    # -- lifetime ---------------------------------------------------------------------------------

    @property
    def node_id(self) -> bytes:
        return self.identity.node_id

    @property
    def address(self) -> Address:
        if self._ws is not None:
            return self._ws.address
        if self._sock is None:
            raise UsageError("the node is not started")
        host, port = self._sock.getsockname()[:2]
        return host, port

    def _new_endpoint(self, port: int) -> Node:
        node = Node(self.config, self.identity,
                    advertised_ports=self.settings.socket.transport == "websocket")
        node.dht.port = port  # announced to DHT peers, who may only see a client port
        # _poll sends (or queues) each batch before it seals the next: large packets can be
        # sealed into reused buffers, so a transfer does not churn the process's heap
        node.endpoint.use_send_buffers(SEND_BATCH)
        return node

    def _bind_udp(self) -> socket.socket:
        """Bind the UDP socket and make the endpoint for it; with ``workers=N`` the socket is
        one of a group (``workers.join_group``), a spawned worker's handed to it."""
        group = self._group
        sock, self._granted = bind_udp(self.settings.socket) if group is None else group.take()
        self._sock = sock
        self._udp = UdpIO(sock, self.settings.socket.udp_offload)
        self._endpoint = self._new_endpoint(sock.getsockname()[1])
        self._group = join_group(self)
        return sock

    def _require_endpoint(self) -> Node:
        if self._endpoint is None or self._closed:
            raise UsageError("the node is not running: use 'async with node' or 'await "
                             "node.start()'")
        return self._endpoint

    def _wake_everyone(self) -> None:
        """The node ended: every wait on it (sessions, streams, accept, DHT calls) returns."""
        for session in self._sessions.values():
            session._wake_all()
        self._accept_signal.set()
        self.dht.close()

    # -- sessions ---------------------------------------------------------------------------------

    async def _dial(self, peer_addr: Address, peer_id: bytes,
                    timeout: float | None) -> tuple[ProtoSession, SessionT, Address]:
        """``connect``'s first half: the checks, the websocket connection if that is the
        transport, and the new session (its handshake started)."""
        endpoint = self._require_endpoint()
        peer_addr = (dial_host(peer_addr[0]), peer_addr[1])
        if self._ws is not None:
            await self._ws.ensure(peer_addr,
                                  self.config.session.handshake_timeout
                                  if timeout is None else timeout)
        else:
            _check_dial(self.settings.socket.host, peer_addr[0])
        proto = endpoint.connect(peer_addr, bytes(peer_id), self._now())
        session = self._wrap(proto)
        self._kick()
        return proto, session, peer_addr

    async def accept(self) -> SessionT:
        """The next inbound session."""
        if self._endpoint is None:
            raise UsageError("the node is not started: use 'async with node' or 'await "
                             "node.start()'")  # nothing could ever arrive to wake a wait
        while not self._accepted:
            if self._closed:
                raise UsageError("the node is closed")
            await self._accept_signal.wait()
        return self._accepted.popleft()

    async def sessions(self) -> AsyncIterator[SessionT]:
        """Every inbound session, until the node closes."""
        while True:
            try:
                yield await self.accept()
            except UsageError:
                return

    def workers_alive(self) -> int:
        """Spawned worker processes running now (0 outside ``serve``)."""
        return 0 if self._pool is None else self._pool.alive()

    def _stats(self, loop: str | None, stats: EndpointStats | None) -> dict[str, Any]:
        """``get_stats()``'s dictionary, the same keys in both bindings."""
        ws = self._ws
        return {
            "loop": loop,
            "recv_buffer_granted": self._granted[0],
            "send_buffer_granted": self._granted[1],
            "transport": self.settings.socket.transport,
            "steering": None if self._group is None else self._group.steering,
            **udp_stats(self._udp),
            **({} if ws is None else {"websocket_protocol_errors": ws.protocol_errors,
                                      "websocket_dropped_sends": ws.dropped_sends}),
            **({} if stats is None else endpoint_stats(stats)),
        }

    # -- the driver's shared steps ----------------------------------------------------------------

    def _wrap(self, proto: ProtoSession) -> SessionT:
        session = self._sessions.get(proto.session_id)
        if session is None:
            session = self._sessions[proto.session_id] = self._session_class(self, proto)
        return session

    def _on_datagram(self, data: bytes, addr: Address) -> None:
        """A datagram from the websocket transport (UDP datagrams come from the socket)."""
        endpoint = self._endpoint
        if endpoint is not None and not self._closed:
            endpoint.receive_datagram(data, addr, self._now())
            self._kick()

    def _tune_stream_socket(self, sock: socket.socket) -> None:
        granted = tune_stream_socket(sock, self.settings.socket.recv_buffer_size,
                                     self.settings.socket.send_buffer_size)
        if granted is not None:
            self._granted = granted

    def _send(self) -> None:
        """Send what ``_out`` holds; the binding waits for a full socket to drain."""
        raise NotImplementedError

    def _send_websocket(self, ws: WsTransport) -> None:
        out = self._out
        while out:
            data, addr = out.popleft()
            ws.send(data, addr)

    def _poll(self, endpoint: Node, timers: bool) -> None:
        """Run due deadlines and send what the endpoint has ready; the driver then hands out
        the events (``session.dispatch_events``, ``NodeDHT.dispatch``). Only the timer's own call
        (``timers``) runs due deadlines: the armed timer is never later than the endpoint's
        deadline, and input or an API call never moves a deadline to the past (an ACK owed at
        once is built by the poll itself), so other calls would only pay a second deadline
        query to find nothing due."""
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
            # the next batch's packets leave after this one's sealing and sending: stamped
            # with the time before them, their RTT samples would come out too long
            now = self._now()


def udp_stats(udp: UdpIO | None) -> dict[str, Any]:
    """The socket's counters as both runtimes report them in ``node.get_stats()``."""
    if udp is None:
        return {"send_errors": 0}
    return {"send_errors": udp.send_errors, "gso": udp.gso, "gro": udp.gro,
            "gso_sends": udp.gso_sends, "gro_reads": udp.gro_reads,
            "oversize_refused": udp.oversize_refused}


def endpoint_stats(stats: EndpointStats) -> dict[str, Any]:
    """The endpoint's counters as both runtimes report them in ``node.get_stats()``."""
    return {
        "sessions_open": stats.sessions_open, "sessions_total": stats.sessions_total,
        "handshakes_ok": stats.handshakes_ok, "handshakes_failed": stats.handshakes_failed,
        "datagrams_in": stats.datagrams_in, "datagrams_out": stats.datagrams_out,
        "dropped": stats.dropped, **stats.dht,
    }


def bind_udp(config: SocketSettings) -> tuple[socket.socket, tuple[int, int]]:
    """The node's bound UDP socket (dual-stack for ``host=None``) and the buffer sizes the
    kernel granted."""
    sock, host = open_udp_socket(config.host)
    try:
        granted = apply_buffers(sock, config.recv_buffer_size, config.send_buffer_size)
        if config.workers > 1:
            bind_shared(sock, (host, config.port))
        else:
            sock.bind((host, config.port))
    except BaseException:
        sock.close()
        raise
    return sock, granted


def apply_buffers(sock: socket.socket, recv: int, send: int) -> tuple[int, int]:
    """Ask for the buffer sizes; report what the kernel granted (Linux reports double)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, recv)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, send)
    got_recv = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2
    got_send = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2
    # stacklevel 5: apply_buffers, bind_udp, NodeCore._bind_udp, start(), start()'s caller
    if got_recv < recv:
        warnings.warn(f"the kernel granted a {got_recv}-byte receive buffer instead of {recv}; "
                      f"raise net.core.rmem_max (sysctl -w net.core.rmem_max={recv})",
                      RuntimeWarning, stacklevel=5)
    if got_send < send:
        warnings.warn(f"the kernel granted a {got_send}-byte send buffer instead of {send}; "
                      f"raise net.core.wmem_max (sysctl -w net.core.wmem_max={send})",
                      RuntimeWarning, stacklevel=5)
    return got_recv, got_send


__all__ = ["CLOSE_LINGER", "SEND_BATCH", "NodeCore", "WsTransport", "apply_buffers",
           "bind_udp", "endpoint_stats", "udp_stats"]
