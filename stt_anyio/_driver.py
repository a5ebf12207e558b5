"""The anyio binding's driver: the node's own task waits until the socket is readable (or the
endpoint's deadline), drains it, runs due timers and sends; API calls wake it by cancelling its
wait. ``STTNode`` (``node.py``) adds the lifetime and the API around it."""

from __future__ import annotations

import math
import socket
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
        self._wait_deadline = math.inf  # the endpoint's deadline that wait is for
        self._kicked = False  # a kick moved the wait's deadline to the past (see _kick)
        self._timers = True  # the driver's next poll runs due deadlines

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
        self._resume_wait(endpoint)

    def _resume_wait(self, endpoint: Node) -> None:
        """After a poll outside the driver: its wait goes on (a kick's wake taken back, where
        not yet delivered), until the endpoint's deadline where that is earlier; a full
        socket wakes it at once (it waits until writable)."""
        scope = self._wait_scope
        if scope is None:
            return
        if self._out:
            scope.cancel()
            return
        deadline = endpoint.get_timer()
        if deadline is not None and deadline < self._wait_deadline:
            self._wait_deadline = deadline
        if scope.deadline != self._wait_deadline:  # (a scope already cancelled stays so)
            scope.deadline = self._wait_deadline

    def _kick(self) -> None:
        """Wake the driver for a poll at the scheduler's next pass: its wait's deadline moves
        to the past. On trio a deadline is looked at once per pass, so a task that waits on
        the node before then (``_flush``) polls itself and takes the wake back; elsewhere
        (anyio on asyncio) the scope is cancelled at once, as by ``cancel()``. A poll owed
        for ``KICK_DEFER_MAX`` behind other tasks' steps runs now."""
        if self._kicked:
            if self._kick_overdue():
                self._flush()
            return
        scope = self._wait_scope
        if scope is not None:
            self._kicked = True
            self._note_kick()
            scope.deadline = -math.inf

    def _flush(self) -> bool:
        """Run now the poll a kick asked for, if one is pending; True if it ran. The facades
        call it before a task waits on the node (``Stream.receive``): an answer written just
        before the next read leaves in this task's step, and on trio the driver, not yet
        woken, keeps waiting (a task switch and a cancelled wait less per message)."""
        endpoint = self._endpoint
        if not self._kicked or endpoint is None or self._closed:
            return False
        self._service()
        self._resume_wait(endpoint)
        return True

    async def _drive_websocket(self, endpoint: Node) -> None:
        timers = True
        new_scope = self._primitives.scope
        while not self._closed:
            self._service(timers)
            deadline = endpoint.get_timer()
            self._wait_deadline = math.inf if deadline is None else deadline
            with new_scope(self._wait_deadline) as scope:
                self._wait_scope = scope
                await anyio.sleep_forever()
            self._wait_scope = None
            timers = self._now() >= self._wait_deadline

    async def _drive(self) -> None:
        sock, endpoint = self._sock, self._endpoint
        if endpoint is not None and self._ws is not None:
            await self._drive_websocket(endpoint)
            return
        if sock is None or endpoint is None:
            return
        self._timers = True
        new_scope = self._primitives.scope
        while not self._closed:
            # One cancel scope for as many waits as end with the socket readable (a new
            # scope per datagram cost its setup and teardown); a kick or a deadline that
            # cancels it ends it, and the next wait gets a new one.
            with new_scope(math.inf) as scope:
                await self._waits(sock, endpoint, scope)
            self._wait_scope = None
            if self._closed:
                return
            # (_send_now may have moved the deadline earlier; a kick moves the scope's)
            self._timers = self._now() >= self._wait_deadline
            if self._timers:
                # A wait that a kick cut short says nothing about the socket: reading it
                # then cost an empty read (a raised BlockingIOError) per kick. Input that
                # came meanwhile keeps the socket readable, and the next wait returns at once.
                self._drain()

    async def _waits(self, sock: socket.socket, endpoint: Node, scope: Scope) -> None:
        """Service, wait until the socket is readable (or ``scope``, at the endpoint's
        deadline or an earlier one not yet passed, is cancelled: then this raises), drain;
        again."""
        wait_readable = self._primitives.wait_readable
        while not self._closed:
            timers = self._timers
            self._service(timers)
            self._timers = False
            if self._out:
                scope.deadline = math.inf  # (a full socket may hold it past a deadline)
                await anyio.wait_writable(sock)
                self._send()
                self._timers = True
                continue
            deadline = endpoint.get_timer()
            new = math.inf if deadline is None else deadline
            # The wait keeps an earlier deadline that has not passed (as the asyncio
            # driver's timer does): it ends early, the poll finds nothing due and the next
            # wait takes the endpoint's. Moved later on every wait (an ACK's timer, then the
            # sent packet's), it cost the backend a deadline update per message.
            if new < scope.deadline or timers:
                scope.deadline = new
            self._wait_deadline = scope.deadline
            self._wait_scope = scope
            await wait_readable(sock)
            self._wait_scope = None
            self._timers = self._now() >= self._wait_deadline
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
        self._kicked = False
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
