"""Where one ping-pong round trip goes, across two processes: ``python -m stt_bench.stages``.

A client and an echo server, each in its own process on the same runtime (asyncio, uvloop or
trio), exchange 4-byte messages: the client on a ``no_delay`` stream, the server answering on
the stream it accepted (the node's default settings, as an application embeds the library).
Both ends stamp each stage with ``time.perf_counter_ns`` (``CLOCK_MONOTONIC`` on Linux, one
clock for every process), by wrapping runtime-level methods on their node's instances; the
compiled core cannot be wrapped, its calls are timed from outside (between two stamps):

* ``send called`` / ``resumed``: the application, just before ``send()`` and just after
  ``receive()`` returned;
* ``sealed``: the poll has sealed the datagram and hands it to the socket (``UdpIO.send``);
* ``sendto returned``: ``UdpIO.send`` returned;
* ``readable``: the loop runs the socket's callback (asyncio) or the driver task resumed
  from its readiness wait (anyio);
* ``read`` / ``opened``: the datagram was read, and the core's ``receive_datagram`` (which
  decrypts it and handles its frames) returned;
* ``drained``: ``UdpIO.drain`` returned (after one more read found the socket empty, or,
  when input is sparse, right after the one read: ``udp_io.drain_bounded``);
* ``signal set``: the stream's readable signal was set (the event handed to the reader).

It prints the median of each interval over the round trips, the raw UDP ping-pong (same
runtime, two processes) beside it, the CPU time each process spent per round trip (both
measured the same way), and per round trip how often each end serviced its endpoint, was
kicked, fired its timer and called the socket. docs/latency.md reads the results.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import multiprocessing
import os
import socket
import statistics
import time
from collections.abc import Callable, Coroutine
from typing import Any

from stt_runtime._signal import Signal

Stamp = tuple[str, int]
Mark = tuple[int, int]  # (perf_counter_ns, process_time_ns): this process's CPU time so far
ns = time.perf_counter_ns
cpu_ns = time.process_time_ns

# The round trip's stages in order: (which end, stage).
TIMELINE: tuple[tuple[str, str], ...] = (
    ("client", "send called"), ("client", "sealed"), ("client", "sendto returned"),
    ("server", "readable"), ("server", "read"), ("server", "opened"), ("server", "drained"),
    ("server", "signal set"), ("server", "resumed"), ("server", "send called"),
    ("server", "sealed"), ("server", "sendto returned"),
    ("client", "readable"), ("client", "read"), ("client", "opened"), ("client", "drained"),
    ("client", "signal set"), ("client", "resumed"),
)
# What is counted per round trip at each end.
COUNTED = ("service", "kick", "timer", "readable", "sendto returned", "datagram")
RUNTIMES = ("asyncio", "uvloop", "trio")
START_TIMEOUT = 60.0


class StampedSignal(Signal):
    """A stream's readable signal that stamps each ``set()`` before passing it on."""

    __slots__ = ("_inner", "_stamps")

    def __init__(self, inner: Signal, stamps: list[Stamp]) -> None:
        self._inner = inner
        self._stamps = stamps

    async def wait(self) -> None:
        await self._inner.wait()

    def set(self) -> None:
        self._stamps.append(("signal set", ns()))
        self._inner.set()


def _wrap(obj: Any, name: str, stamps: list[Stamp], enter: str | None,
          leave: str | None = None) -> None:
    """Replace ``obj.name`` (on the instance) by a call that stamps its entry and return."""
    original = getattr(obj, name)
    append = stamps.append

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if enter is not None:
            append((enter, ns()))
        try:
            return original(*args, **kwargs)
        finally:
            if leave is not None:
                append((leave, ns()))

    setattr(obj, name, wrapper)


def instrument_node(node: Any, stamps: list[Stamp]) -> None:
    """Before ``start()``: wrap the driver's methods that the loop or the driver task call."""
    if hasattr(node, "_on_readable"):  # stt_asyncio: the loop's reader callback
        _wrap(node, "_on_readable", stamps, "readable")
        _wrap(node, "_on_timer", stamps, "timer")
    else:  # stt_anyio: the driver task, resumed from its wait
        _wrap(node, "_drain", stamps, "readable")
    _wrap(node, "_service", stamps, "service")
    _wrap(node, "_kick", stamps, "kick")


def instrument_socket(node: Any, stamps: list[Stamp]) -> None:
    """After ``start()``: wrap the node's socket I/O."""
    udp = node._udp
    drain = udp.drain
    append = stamps.append

    def timed_drain(receive: Any, now: float, limit: int = 4096) -> int:
        def timed_receive(data: Any, addr: Any, when: float) -> object:
            append(("read", ns()))
            try:
                return receive(data, addr, when)
            finally:
                append(("opened", ns()))

        try:
            reads: int = drain(timed_receive, now, limit)
            return reads
        finally:
            append(("drained", ns()))

    udp.drain = timed_drain
    original = udp.send

    def send(out: Any) -> bool:
        append(("sealed", ns()))
        for _ in range(len(out)):
            append(("datagram", 0))
        try:
            result: bool = original(out)
            return result
        finally:
            append(("sendto returned", ns()))

    udp.send = send


def instrument_stream(stream: Any, stamps: list[Stamp]) -> None:
    stream._readable = StampedSignal(stream._readable, stamps)


# -- the two ends -----------------------------------------------------------------------------


def _run(runtime: str, main: Callable[[], Coroutine[Any, Any, None]]) -> None:
    if runtime == "trio":
        import trio

        trio.run(main)
    elif runtime == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())


def _node_class(runtime: str) -> Any:
    if runtime == "trio":
        from stt_anyio import STTNode as AnyioNode

        return AnyioNode
    from stt_asyncio import STTNode as AsyncioNode

    return AsyncioNode


async def _sleep(runtime: str, seconds: float) -> None:
    if runtime == "trio":
        import trio

        await trio.sleep(seconds)
    else:
        await asyncio.sleep(seconds)


def _pin(cpu: int | None) -> None:
    """Keep this process on one CPU (``--pin``): the two ends then never share one."""
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {cpu % (os.cpu_count() or 1)})


def _echo_server(runtime: str, kind: str, total: int, queue: Any, cpu: int | None) -> None:
    """The far process: echoes ``total`` messages (STT) or datagrams (raw), then reports its
    stamps on ``queue``."""
    _pin(cpu)
    stamps: list[Stamp] = []
    marks: list[Mark] = []

    async def stt() -> None:
        node = _node_class(runtime)(host="127.0.0.1")
        instrument_node(node, stamps)
        async with node:
            instrument_socket(node, stamps)
            queue.put((node.address, node.node_id))
            session = await node.accept()
            stream = await session.accept_stream()
            instrument_stream(stream, stamps)
            append = stamps.append
            for _ in range(total):
                message = await stream.receive()
                append(("resumed", ns()))
                marks.append((ns(), cpu_ns()))
                append(("send called", ns()))
                await stream.send(message)
            queue.put((stamps, marks))
            await _sleep(runtime, 0.5)

    async def raw() -> None:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        queue.put((sock.getsockname(), b""))
        if runtime == "trio":
            import trio

            for _ in range(total):
                await trio.lowlevel.wait_readable(sock)
                data, addr = sock.recvfrom(2048)
                marks.append((ns(), cpu_ns()))
                sock.sendto(data, addr)
        else:
            loop = asyncio.get_running_loop()
            done = loop.create_future()
            left = [total]

            def readable() -> None:
                while True:
                    try:
                        data, addr = sock.recvfrom(2048)
                    except BlockingIOError:
                        return
                    marks.append((ns(), cpu_ns()))
                    sock.sendto(data, addr)
                    left[0] -= 1
                    if left[0] == 0 and not done.done():
                        done.set_result(None)

            loop.add_reader(sock.fileno(), readable)
            await done
        queue.put(([], marks))
        sock.close()

    _run(runtime, stt if kind == "stt" else raw)


async def _stt_client(runtime: str, address: Any, node_id: bytes, warmup: int,
                      count: int) -> tuple[list[Stamp], list[tuple[int, int]], list[Mark]]:
    stamps: list[Stamp] = []
    marks: list[Mark] = []
    node = _node_class(runtime)(host="127.0.0.1")
    instrument_node(node, stamps)
    windows: list[tuple[int, int]] = []
    async with node:
        instrument_socket(node, stamps)
        session = await node.connect(tuple(address), node_id, timeout=20)
        stream = session.open_stream(no_delay=True)
        instrument_stream(stream, stamps)
        append = stamps.append
        for index in range(warmup + count):
            if index == warmup:
                stamps.clear()
            marks.append((ns(), cpu_ns()))
            start = ns()
            append(("send called", start))
            await stream.send(b"ping")
            await stream.receive()
            end = ns()
            append(("resumed", end))
            if index >= warmup:
                windows.append((start, end))
        marks.append((ns(), cpu_ns()))
        await session.close()
    return stamps, windows, marks


async def _raw_client(runtime: str, address: Any, warmup: int,
                      count: int) -> tuple[list[float], list[tuple[int, int]], list[Mark]]:
    """Round-trip times (us), their windows and this process's CPU marks."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    times: list[float] = []
    windows: list[tuple[int, int]] = []
    marks: list[Mark] = []
    address = tuple(address)
    try:
        if runtime == "trio":
            import trio

            for index in range(warmup + count):
                marks.append((ns(), cpu_ns()))
                start = ns()
                sock.sendto(b"ping", address)
                await trio.lowlevel.wait_readable(sock)
                sock.recvfrom(2048)
                end = ns()
                if index >= warmup:
                    times.append((end - start) / 1000)
                    windows.append((start, end))
            marks.append((ns(), cpu_ns()))
            return times, windows, marks
        loop = asyncio.get_running_loop()
        waiter: list[asyncio.Future[None]] = []

        def readable() -> None:
            while True:
                try:
                    sock.recvfrom(2048)
                except BlockingIOError:
                    return
                if waiter and not waiter[0].done():
                    waiter[0].set_result(None)

        loop.add_reader(sock.fileno(), readable)
        for index in range(warmup + count):
            waiter[:] = [loop.create_future()]
            marks.append((ns(), cpu_ns()))
            start = ns()
            sock.sendto(b"ping", address)
            await waiter[0]
            end = ns()
            if index >= warmup:
                times.append((end - start) / 1000)
                windows.append((start, end))
        marks.append((ns(), cpu_ns()))
        loop.remove_reader(sock.fileno())
        return times, windows, marks
    finally:
        sock.close()


def _in_child(runtime: str, kind: str, total: int,
              client: Callable[[Any, bytes], Coroutine[Any, Any, Any]],
              pin: bool = False) -> tuple[Any, Any]:
    """Start the echo process, run ``client(address, node_id)`` here; (its result, the
    server's stamps)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    server = context.Process(target=_echo_server, daemon=True,
                             args=(runtime, kind, total, queue, 1 if pin else None))
    server.start()
    if pin:
        _pin(0)
    result: list[Any] = []
    try:
        address, node_id = queue.get(True, START_TIMEOUT)

        async def main() -> None:
            result.append(await client(address, node_id))

        _run(runtime, main)
        server_stamps = queue.get(True, START_TIMEOUT)
    finally:
        server.join(5)
        if server.is_alive():
            server.terminate()
    return result[0], server_stamps


# -- the breakdown ----------------------------------------------------------------------------


def split(stamps: list[Stamp], windows: list[tuple[int, int]]) -> list[list[Stamp]]:
    """The stamps of each window (stamps and windows both in time order; counters, stamped 0,
    go with the stamp before them)."""
    out: list[list[Stamp]] = [[] for _ in windows]
    index = 0
    current = -1
    for name, at in stamps:
        if at:
            while index < len(windows) and windows[index][1] < at:
                index += 1
            current = index if index < len(windows) and windows[index][0] <= at else -1
        if current >= 0:
            out[current].append((name, at))
    return out


# The intervals reported: (label, from (end, stage), to (end, stage)). The chain without the
# "sealed -> sendto returned" lines adds up to the round trip: a datagram reaches the other end
# while its sender is still in ``sendto`` (waking the receiver can preempt the sender).
INTERVALS: tuple[tuple[str, tuple[str, str], tuple[str, str]], ...] = (
    ("client: send called -> sealed", ("client", "send called"), ("client", "sealed")),
    ("client: sealed -> sendto returned", ("client", "sealed"), ("client", "sendto returned")),
    ("wire: client sealed -> server readable", ("client", "sealed"), ("server", "readable")),
    ("server: readable -> read", ("server", "readable"), ("server", "read")),
    ("server: read -> opened", ("server", "read"), ("server", "opened")),
    ("server: opened -> drained", ("server", "opened"), ("server", "drained")),
    ("server: drained -> signal set", ("server", "drained"), ("server", "signal set")),
    ("server: signal set -> resumed", ("server", "signal set"), ("server", "resumed")),
    ("server: resumed -> send called", ("server", "resumed"), ("server", "send called")),
    ("server: send called -> sealed", ("server", "send called"), ("server", "sealed")),
    ("server: sealed -> sendto returned", ("server", "sealed"), ("server", "sendto returned")),
    ("wire: server sealed -> client readable", ("server", "sealed"), ("client", "readable")),
    ("client: readable -> read", ("client", "readable"), ("client", "read")),
    ("client: read -> opened", ("client", "read"), ("client", "opened")),
    ("client: opened -> drained", ("client", "opened"), ("client", "drained")),
    ("client: drained -> signal set", ("client", "drained"), ("client", "signal set")),
    ("client: signal set -> resumed", ("client", "signal set"), ("client", "resumed")),
)


class Timeline:
    """One end's stamps by name, in time order, for finding a stage's first stamp after a
    given time."""

    def __init__(self, stamps: list[Stamp]) -> None:
        self.by_name: dict[str, list[int]] = {}
        for name, at in stamps:
            if at:
                self.by_name.setdefault(name, []).append(at)

    def first(self, name: str, floor: int) -> int | None:
        times = self.by_name.get(name, [])
        index = bisect.bisect_left(times, floor)
        return times[index] if index < len(times) else None


def stage_times(client: Timeline, server: Timeline,
                start: int) -> dict[tuple[str, str], int] | None:
    """The time of each TIMELINE stage in the round trip that the client began at ``start``:
    the first stamp of that name at that end after the stage before it at the same end (and a
    ``readable`` after the other end's ``sealed``); None if one is missing."""
    times: dict[tuple[str, str], int] = {}
    previous = {"client": start, "server": start}
    sealed = start
    for end, stage in TIMELINE:
        floor = max(previous[end], sealed) if stage == "readable" else previous[end]
        found = (client if end == "client" else server).first(stage, floor)
        if found is None:
            return None
        times[end, stage] = previous[end] = found
        if stage == "sealed":
            sealed = found
    return times


def breakdown(client_stamps: list[Stamp], windows: list[tuple[int, int]],
              server_stamps: list[Stamp]) -> dict[str, Any]:
    """Median interval durations (us), the median round trip and counts per round trip. The
    server's part of a round trip lasts until the client's next send (its ``sendto`` may return
    after the client has its answer)."""
    client = split(client_stamps, windows)
    server_windows = [(start, windows[index + 1][0] - 1 if index + 1 < len(windows)
                       else 1 << 62) for index, (start, _) in enumerate(windows)]
    server = split(server_stamps, server_windows)
    intervals: list[list[float]] = [[] for _ in INTERVALS]
    totals = [(end - start) / 1000 for start, end in windows]
    complete = 0
    client_line, server_line = Timeline(client_stamps), Timeline(server_stamps)
    for start, end in windows:
        times = stage_times(client_line, server_line, start)
        if times is None or times["client", "resumed"] != end:
            continue
        complete += 1
        for slot, (_, first, last) in enumerate(INTERVALS):
            intervals[slot].append((times[last] - times[first]) / 1000)
    counts = {f"{end} {name}": statistics.mean(
        sum(1 for stamp, _ in one if stamp == name) for one in per_end)
        for end, per_end in (("client", client), ("server", server)) for name in COUNTED}
    return {"round_trip": statistics.median(totals), "complete": complete,
            "rounds": len(windows),
            "stages": [(label, statistics.median(values) if values else float("nan"))
                       for (label, _, _), values in zip(INTERVALS, intervals, strict=True)],
            "counts": counts}


def cpu_per_round(marks: list[Mark], windows: list[tuple[int, int]]) -> float:
    """CPU time (us) a process spent per round trip over the measured ones: between its
    first and last mark inside them, divided by the round trips those marks span."""
    start, end = windows[0][0], windows[-1][1]
    inside = [mark for mark in marks if start - 5_000 <= mark[0] <= end + 1_000_000]
    if len(inside) < 2:
        return float("nan")
    first, last = inside[0], inside[-1]
    rounds = sum(1 for begin, _ in windows if first[0] <= begin < last[0]) or 1
    return (last[1] - first[1]) / 1000 / rounds


def measure(runtime: str, count: int, warmup: int, pin: bool = False) -> dict[str, Any]:
    total = warmup + count

    async def stt(address: Any, node_id: bytes) -> Any:
        return await _stt_client(runtime, address, node_id, warmup, count)

    async def raw(address: Any, node_id: bytes) -> Any:
        return await _raw_client(runtime, address, warmup, count)

    (client_stamps, windows, client_marks), (server_stamps, server_marks) = _in_child(
        runtime, "stt", total, stt, pin)
    result = breakdown(client_stamps, windows, server_stamps)
    result["cpu"] = (cpu_per_round(client_marks, windows), cpu_per_round(server_marks, windows))
    (raw_times, raw_windows, raw_client), (_, raw_server) = _in_child(
        runtime, "raw", total, raw, pin)
    result["raw"] = statistics.median(raw_times)
    result["raw_cpu"] = (cpu_per_round(raw_client, raw_windows),
                         cpu_per_round(raw_server, raw_windows))
    result["runtime"] = runtime
    return result


def report(result: dict[str, Any]) -> str:
    lines = [f"{result['runtime']}: round trip p50 {result['round_trip']:.1f} us "
             f"(raw UDP {result['raw']:.1f} us, {result['round_trip'] / result['raw']:.2f} x); "
             f"{result['complete']}/{result['rounds']} round trips with every stage"]
    for name, value in result["stages"]:
        lines.append(f"  {name:<44} {value:8.1f} us")
    client, server = result["cpu"]
    raw_client, raw_server = result["raw_cpu"]
    lines.append(f"  CPU per round trip: client {client:.1f} us + server {server:.1f} us = "
                 f"{client + server:.1f} us (raw UDP: {raw_client:.1f} + {raw_server:.1f} us)")
    lines.append("  per round trip: " + ", ".join(
        f"{name} {value:.2f}" for name, value in result["counts"].items() if value))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stt_bench.stages", description=__doc__)
    parser.add_argument("--runtime", choices=RUNTIMES, action="append",
                        help="repeatable; default: all three")
    parser.add_argument("--count", type=int, default=2000, help="measured round trips")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--pin", action="store_true",
                        help="this process on CPU 0, the echo process on CPU 1")
    args = parser.parse_args(argv)
    for runtime in args.runtime or RUNTIMES:
        print(report(measure(runtime, args.count, args.warmup, args.pin)), flush=True)


if __name__ == "__main__":
    main()
