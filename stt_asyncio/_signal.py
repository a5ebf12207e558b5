"""Wake-up signals: waiters sleep until the next ``set()``; cancellation-safe.

``Signal`` is the interface the shared session wrappers use; ``AsyncioSignal`` implements it
with asyncio futures (``stt_anyio`` has one over anyio events)."""

from __future__ import annotations

import asyncio


class Signal:
    """Interface: ``await wait()`` until ``set()`` is called."""

    async def wait(self) -> None:
        raise NotImplementedError

    def set(self) -> None:
        raise NotImplementedError


class AsyncioSignal(Signal):
    __slots__ = ("_waiters",)

    def __init__(self) -> None:
        self._waiters: list[asyncio.Future[None]] = []

    async def wait(self) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        finally:
            if future in self._waiters:
                self._waiters.remove(future)

    def set(self) -> None:
        waiters, self._waiters = self._waiters, []
        for future in waiters:
            if not future.done():
                future.set_result(None)
