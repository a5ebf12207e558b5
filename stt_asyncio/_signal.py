"""``AsyncioSignal``: the shared facades' wake-up signal (``stt_runtime._signal``) over asyncio
futures; cancellation-safe."""

from __future__ import annotations

import asyncio

from stt_runtime._signal import Signal


class AsyncioSignal(Signal):
    """``loop``: the node's, where known. Python 3.11's ``asyncio.get_running_loop()`` makes
    a ``getpid`` system call (its fork check) on every call, once per wait otherwise."""

    __slots__ = ("_loop", "_waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        self._loop = loop
        # None until someone waits: sessions and streams hold several signals that never do
        self._waiters: list[asyncio.Future[None]] | None = None

    async def wait(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(future)
        try:
            await future
        finally:
            if self._waiters is not None and future in self._waiters:
                self._waiters.remove(future)

    def set(self) -> None:
        waiters, self._waiters = self._waiters, None
        if not waiters:
            return
        for future in waiters:
            if not future.done():
                future.set_result(None)


__all__ = ["AsyncioSignal"]
