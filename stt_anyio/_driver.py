"""The anyio binding's driver: the node's own task waits until the socket is readable (or the
endpoint's deadline), drains it, runs due timers and sends; API calls wake it by cancelling its
wait. ``STTNode`` (``node.py``) adds the lifetime and the API around it."""

from __future__ import annotations

import math
from typing import Any

import anyio

from stt_proto import Identity, Node
from stt_runtime._signal import Signal
from stt_runtime.node_core import NodeCore
from stt_runtime.session import dispatch_events
from stt_runtime.udp_io import drain_bounded

from ._backend import ANYIO, Primitives, Scope
from ._signal import AnyioSignal
from .session import Session
from .websocket import WebSocketIO


class AnyioDriver(NodeCore[Session]):
    """The loop-facing half of the anyio ``STTNode``: its clock, signals and socket waits."""

    _ws: WebSocketIO | None

    def __init__(self, identity: Identity | None, settings: dict[str, Any]) -> None:
        self._primitives: Primitives = ANYIO  # bound to the running backend by start()
        super().__init__(Session, identity, settings)
        self._wait_scope: Scope | None = None  # the driver's wait; cancelled to wake it

    def _new_signal(self) -> Signal:
        return AnyioSignal(self._primitives.event)

    def _now(self) -> float:
        return self._primitives.now()

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

    async def _drive_websocket(self, endpoint: Node) -> None:
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
            if timers or not scope.cancelled_caught:
                # A wait that a kick cut short says nothing about the socket: reading it
                # then cost an empty read (a raised BlockingIOError) per kick. Input that
                # came meanwhile keeps the socket readable, and the next wait returns at once.
                self._drain()

    def _drain(self) -> None:
        """Socket input, bounded by time and count (``udp_io.drain_bounded``): the driver then
        sends, and its next wait on the still-readable socket lets other tasks run first."""
        udp, endpoint = self._udp, self._endpoint
        if udp is None or endpoint is None:
            return
        drain_bounded(udp, endpoint.receive_datagram, self._now)

    def _service(self, timers: bool = False) -> None:
        """Send what the endpoint has ready (``NodeCore._poll``) and hand out its events. Due
        deadlines run only when the driver's wait reached its deadline (``timers``). The
        events go out from here, not from inside the poll, so that a datagram's way to
        ``stream.receive()`` stays short (docs/architecture.md)."""
        endpoint = self._endpoint
        if endpoint is not None:
            self._poll(endpoint, timers)
            dispatch_events(endpoint, self._sessions, self._wrap, self._accepted,
                            self._accept_signal)
            self.dht.dispatch(endpoint)

    def _send(self) -> None:
        sock, udp, out = self._sock, self._udp, self._out
        if self._ws is not None:
            self._send_websocket(self._ws)
            return
        if sock is None or udp is None or sock.fileno() < 0:
            out.clear()
            return
        udp.send(out)


__all__ = ["AnyioDriver"]
