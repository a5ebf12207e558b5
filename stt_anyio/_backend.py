"""The four anyio calls on the driver's per-packet path, bound once to the running backend.

* Speed: every anyio call finds its backend through sniffio and a registry lookup first,
  about a microsecond each, and a ping-pong round trip made about fifteen of them (clock
  reads, the driver's cancel scope and readiness wait, stream wake-ups). On trio, anyio's
  trio backend ends in trio's own functions, so a node started on trio binds those directly
  (cancellation is unchanged: anyio on trio *is* trio's cancellation), and trio's clock,
  a MockClock included, stays the node's.
* The clock on asyncio: anyio's is ``loop.time()``, which uvloop caches per loop iteration in
  whole milliseconds, so every RTT sample on a fast path read 0 or 1 ms (as in
  ``stt_asyncio.node``). There the node reads ``time.monotonic()``, the clock asyncio's own
  loop uses and uvloop's counts in the same epoch, so cancel-scope deadlines still compare.
* The node's own task: ``spawn`` starts it outside the caller's task tree (trio's system
  nursery; a plain task of the asyncio loop), so ``start()`` enters no task group or cancel
  scope that ``close()`` would have to exit from the same task: nodes may be closed in any
  order, from any task.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import socket
import time
from collections.abc import Awaitable, Callable, Coroutine
from types import TracebackType
from typing import Any, Protocol

import anyio
import attrs
import sniffio


class Event(Protocol):
    """What ``anyio.Event`` and ``trio.Event`` share."""

    def set(self) -> object: ...
    async def wait(self) -> None: ...


class Scope(Protocol):
    """What ``anyio.CancelScope`` and ``trio.CancelScope`` share, as the driver uses it."""

    @property
    def deadline(self) -> float: ...
    @deadline.setter
    def deadline(self, value: float) -> None: ...
    @property
    def cancelled_caught(self) -> bool: ...
    def cancel(self) -> object: ...
    def __enter__(self) -> Scope: ...
    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 traceback: TracebackType | None) -> bool | None: ...


@attrs.frozen(slots=True)
class Primitives:
    """``now()``, a new event, a cancel scope with a deadline (``math.inf``: none), a wait
    until a socket is readable, and ``spawn`` of a task outside the caller's task tree."""

    backend: str
    now: Callable[[], float]
    event: Callable[[], Event]
    scope: Callable[[float], Scope]
    wait_readable: Callable[[socket.socket], Awaitable[None]]
    spawn: Callable[[Callable[[], Coroutine[Any, Any, None]]], None]


def _anyio_scope(deadline: float = math.inf) -> Scope:
    return anyio.CancelScope(deadline=deadline)


_TASKS: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to its tasks


def _asyncio_spawn(function: Callable[[], Coroutine[Any, Any, None]]) -> None:
    task = asyncio.get_running_loop().create_task(function())
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


ANYIO = Primitives("anyio", anyio.current_time, anyio.Event, _anyio_scope, anyio.wait_readable,
                   _asyncio_spawn)


ASYNCIO = Primitives("asyncio", time.monotonic, anyio.Event, _anyio_scope, anyio.wait_readable,
                     _asyncio_spawn)


def bind() -> Primitives:
    """The primitives for the backend running the calling task."""
    backend = sniffio.current_async_library()
    if backend == "asyncio":
        return ASYNCIO
    if backend != "trio":
        return ANYIO
    import trio

    def trio_scope(deadline: float = math.inf) -> Scope:
        return trio.CancelScope(deadline=deadline)

    def trio_spawn(function: Callable[[], Coroutine[Any, Any, None]]) -> None:
        trio.lowlevel.spawn_system_task(function, context=contextvars.copy_context())

    return Primitives("trio", trio.current_time, trio.Event, trio_scope,
                      trio.lowlevel.wait_readable, trio_spawn)


__all__ = ["ANYIO", "ASYNCIO", "Event", "Primitives", "Scope", "bind"]
