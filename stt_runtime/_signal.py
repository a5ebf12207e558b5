"""Wake-up signals: the small interface the shared facades (sessions, streams, the DHT) wait on.

Each binding implements it over its own loop's primitives (``stt_asyncio``: asyncio futures;
``stt_anyio``: anyio or trio events), so the facades never import an event loop."""

from __future__ import annotations


class Signal:
    """Interface: ``await wait()`` until the next ``set()``; a waiter cancelled meanwhile must
    leave nothing behind."""

    __slots__ = ()

    async def wait(self) -> None:
        raise NotImplementedError

    def set(self) -> None:
        raise NotImplementedError


__all__ = ["Signal"]
