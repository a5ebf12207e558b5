"""``AnyioSignal``: the shared facades' wake-up signal (``stt_runtime._signal``) over the
running backend's events (``_backend``: trio's own on trio)."""

from __future__ import annotations

from collections.abc import Callable

from stt_runtime._signal import Signal

from ._backend import ANYIO, Event


class AnyioSignal(Signal):
    """A signal over the backend's events; each wait makes one event, on first use."""

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


__all__ = ["AnyioSignal"]
