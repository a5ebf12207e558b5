"""How much socket input one wake-up of a runtime's loop handles: bounded by count and by time.

Draining every waiting datagram (up to 4,096 reads) in one callback stalled the event loop for
seconds when each cost a handshake's cryptography: timers, other tasks and output all waited.
:func:`drain_bounded` reads in small slices and stops after ``DRAIN_TIME`` seconds or
``DRAIN_COUNT`` reads, whichever comes first; the socket stays readable, so the loop calls
again on its next pass, after whatever else was ready has run. Sessions share the work in the
order their datagrams arrived.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter

from .udp_io import Receive, UdpIO

DRAIN_SLICE = 16  # reads between two looks at the clock
DRAIN_TIME = 0.004  # seconds of input handling per wake-up, at most (plus one slice)
DRAIN_COUNT = 1024  # reads per wake-up, at most


def drain_bounded(udp: UdpIO, receive: Receive, clock: Callable[[], float], *,
                  budget: float = DRAIN_TIME, count: int = DRAIN_COUNT,
                  timer: Callable[[], float] = perf_counter) -> tuple[int, bool]:
    """Read from ``udp`` into ``receive`` (each slice stamped with ``clock()``) until the
    socket is empty, ``budget`` seconds of ``timer`` have passed or ``count`` reads are done.
    Returns the reads made and whether the socket may hold more (the bound was reached)."""
    start = timer()
    total = 0
    while True:
        want = count - total if count - total < DRAIN_SLICE else DRAIN_SLICE
        reads = udp.drain(receive, clock(), want)
        total += reads
        if reads < want:
            return total, False
        if total >= count or timer() - start >= budget:
            return total, True


__all__ = ["DRAIN_COUNT", "DRAIN_SLICE", "DRAIN_TIME", "drain_bounded"]
