"""What every benchmark shares: sizes, loopback sockets and settings, summary statistics and the
receiver-side meter that times goodput the same way for STT and its baselines."""

from __future__ import annotations

import gc
import socket
import statistics
import time
from typing import Any

MiB = 1024 * 1024
RUNTIMES = ("asyncio", "uvloop", "trio")


def udp_pair() -> tuple[socket.socket, socket.socket]:
    """Two non-blocking UDP sockets on 127.0.0.1 with 8 MiB kernel buffers (the raw
    baselines' ends)."""
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * MiB)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * MiB)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    return a, b


def on_loopback(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` bound to 127.0.0.1 unless they name a host: a default node binds the
    dual-stack address, and its ``address`` (``::``) would be dialled over IPv6 loopback.
    Benchmarks run both ends on IPv4 loopback, like their raw-UDP baselines."""
    return {"host": "127.0.0.1", **settings}


def one_peer_sessions(count: int) -> dict[str, Any]:
    """Settings for a server that ``count`` sessions reach from one client (one identity, one
    address): the admission limits per identity and per address, defences against floods,
    are raised to ``count`` so that a benchmark measures the handshakes themselves."""
    return {"max_sessions_per_identity": max(1000, count),
            "max_half_open_per_address": max(1024, count), "max_half_open": max(4096, count)}


def run_timeout(count: int) -> float:
    """Seconds a run of ``count`` round trips may take in all: one timeout around the timed
    loop, never one per round trip (its cost would be measured with the round trip)."""
    return 10.0 + count * 0.02


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)


class Meter:
    """Bytes received after the first arrival, and the span from the first to the last: how
    every receiving end (in another process, or across the network) times goodput."""

    def __init__(self) -> None:
        self.bytes = 0
        self.first: float | None = None
        self.last = 0.0

    def note(self, count: int) -> None:
        now = time.perf_counter()
        if self.first is None:
            self.first = now  # the start of the span: its own bytes arrived before it
        else:
            self.bytes += count
        self.last = now

    def rate(self) -> float:
        span = self.last - (self.first or self.last)
        return self.bytes / span if span > 0 else 0.0


class GcClock:
    """Seconds the garbage collector runs while installed (``gc.callbacks``): a diagnostic
    beside a measurement, to tell the collector's share of a run's CPU."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.seconds += time.perf_counter() - self._started

    def install(self) -> GcClock:
        gc.callbacks.append(self)
        return self

    def remove(self) -> None:
        gc.callbacks.remove(self)
