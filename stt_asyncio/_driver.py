"""The asyncio binding's driver: ``loop.add_reader`` on the socket (drained in bounded
slices), one timer handle per node, a writer callback while the socket is full, and kicks that
coalesce API calls into one poll per loop pass. ``STTNode`` (``node.py``) adds the lifetime and
the API around it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from stt_proto import Identity
from stt_runtime._signal import Signal
from stt_runtime.node_core import NodeCore
from stt_runtime.session import Session, dispatch_events
from stt_runtime.udp_io import drain_bounded

from ._signal import AsyncioSignal
from .websocket import WebSocketIO


class AsyncioDriver(NodeCore[Session]):
    """The loop-facing half of the asyncio ``STTNode``: its clock, signals, socket callbacks
    and timer."""

    _ws: WebSocketIO | None

    def __init__(self, identity: Identity | None, settings: dict[str, Any]) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None  # (NodeCore makes a signal)
        super().__init__(Session, identity, settings)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._kick_handle: asyncio.Handle | None = None  # a kick's callback, until it is due
        self._writing = False

    def _new_signal(self) -> Signal:
        return AsyncioSignal(self._loop)

    def _now(self) -> float:
        # Not loop.time(): uvloop's is cached per iteration at millisecond resolution, which
        # rounds every RTT sample on loopback to 0 or 1 ms and confuses pacing and BBR.
        return time.monotonic()

    def _kick(self) -> None:
        """Service the endpoint soon (once, however many API calls asked), or now if the
        poll owed has waited ``KICK_DEFER_MAX`` behind other tasks' steps."""
        if self._kick_handle is not None:
            if self._kick_overdue():
                self._flush()
        elif self._loop is not None and not self._closed:
            self._kick_handle = self._loop.call_soon(self._kicked_service)
            self._note_kick()

    def _kicked_service(self) -> None:
        """The poll a kick deferred. It runs only while still owed: a poll since
        (``_send_now``, a readable socket, ``_flush``) cancels it, so a reader that answers
        each message at once pays no second, empty poll per message."""
        self._kick_handle = None  # (running: nothing to cancel)
        self._service()

    def _flush(self) -> bool:
        """Run now the poll a kick deferred, if one is pending; True if it ran. The facades
        call it before a task waits on the node (``Stream.receive``): an answer written just
        before the next read (an echo, a request/response loop) then leaves in this task's
        step instead of the loop's next pass, and what the task wrote before waiting (a
        message and its stream's close) still leaves together."""
        if self._kick_handle is None or self._closed:
            return False
        self._service()
        return True

    def _send_now(self) -> None:
        """Poll the endpoint at once (a no_delay stream's message leaves before send() returns)
        instead of on the next loop pass."""
        if self._endpoint is not None and not self._closed:
            self._service()

    def _on_readable(self) -> None:
        udp, endpoint = self._udp, self._endpoint
        if udp is None or endpoint is None:
            return
        # Bounded by time and count (udp_io.drain_bounded): what is left keeps the socket
        # readable, and the loop calls again once timers and other tasks have had their turn.
        drain_bounded(udp, endpoint.receive_datagram, self._now)
        self._service()

    def _service(self, timers: bool = False) -> None:
        """Send what the endpoint has ready (``NodeCore._poll``), hand out its events and
        re-arm the timer. The events go out from here, not from inside the poll, so that a
        datagram's way to ``stream.receive()`` stays short (docs/architecture.md). A kick's
        callback still pending has nothing left to do: it is cancelled, so an echo (a send
        that kicks, then a receive that flushes) costs the loop no empty callback per
        message."""
        handle = self._kick_handle
        if handle is not None:
            self._kick_handle = None
            handle.cancel()
        endpoint = self._endpoint
        if endpoint is None:
            return
        if self._ws is None and (self._sock is None or self._sock.fileno() < 0):
            return
        self._poll(endpoint, timers)
        dispatch_events(endpoint, self._sessions, self._wrap, self._accepted,
                        self._accept_signal)
        self.dht.dispatch(endpoint)
        self._arm_timer(endpoint.get_timer())

    def _send(self) -> None:
        sock, udp, out = self._sock, self._udp, self._out
        if self._ws is not None:
            self._send_websocket(self._ws)
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


__all__ = ["AsyncioDriver"]
