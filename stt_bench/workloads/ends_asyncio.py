"""The ends of the two-process benchmarks on an asyncio loop (asyncio or uvloop): each role is
one process started by :mod:`stt_bench.peer`, STT through ``stt_asyncio`` with the settings it
is given (the headline passes the defaults, bound to loopback) and the raw baseline through
reader callbacks on a plain non-blocking socket. aioquic's ends are in
:mod:`stt_bench.workloads.ends_quic`.

Goodput is timed by the sink (:class:`stt_bench.common.Meter`), the same way for every kind;
ping-pong by the pinger.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any

from stt_asyncio import STTNode

from ..baselines.aead import make_sealer
from ..baselines.on_asyncio import blast
from ..common import GcClock, Meter, MiB, on_loopback, run_timeout, udp_pair
from .lines import emit, read_line


async def _line() -> str:
    """The starter's next line, read in a worker thread so the loop keeps running."""
    return await asyncio.get_running_loop().run_in_executor(None, read_line)


def _address(spec: dict[str, Any]) -> tuple[str, int]:
    host, port = spec["address"]
    return str(host), int(port)


async def sink(spec: dict[str, Any]) -> None:
    """Receive until the starter asks for the rate: raw sealed datagrams, one STT stream of
    messages, or (``kind`` "quic") one aioquic stream."""
    if spec["kind"] == "quic":
        from .ends_quic import quic_sink

        await quic_sink(spec, _line)
        return
    loop = asyncio.get_running_loop()
    meter = Meter()
    if spec["kind"] == "raw":
        sock, spare = udp_pair()
        spare.close()
        _, open_ = make_sealer(spec["frame"], bytes.fromhex(spec["key"]))
        buffer = bytearray(65536)

        def readable() -> None:
            while True:
                try:
                    size = sock.recv_into(buffer)
                except BlockingIOError:
                    return
                meter.note(open_(buffer, size))

        loop.add_reader(sock.fileno(), readable)
        emit({"address": sock.getsockname(), "node_id": ""})
        await _line()
        emit({"rate": meter.rate(), "bytes": meter.bytes})
        loop.remove_reader(sock.fileno())
        sock.close()
        return
    gc_time = GcClock().install() if spec.get("stats") else None
    async with STTNode(**on_loopback(spec["settings"])) as node:
        sessions: list[Any] = []

        async def drain() -> None:
            session = await node.accept()
            sessions.append(session)
            stream = await session.accept_stream()
            async for message in stream:  # to the sender's FIN
                meter.note(len(message))

        task = asyncio.create_task(drain())
        emit({"address": node.address, "node_id": node.node_id.hex()})
        await _line()
        result: dict[str, Any] = {"rate": meter.rate(), "bytes": meter.bytes}
        if gc_time is not None:
            result["stats"] = _run_stats(node, sessions, gc_time)
        emit(result)
        task.cancel()


async def source(spec: dict[str, Any]) -> None:
    """Send for ``seconds``: sealed datagrams as fast as the socket takes them, or 1 MiB
    messages on one STT stream (closed and flushed at the end)."""
    seconds = float(spec["seconds"])
    if spec["kind"] == "quic":
        from .ends_quic import quic_source

        await quic_source(spec)
    elif spec["kind"] == "raw":
        sock, spare = udp_pair()
        spare.close()
        seal, _ = make_sealer(spec["frame"], bytes.fromhex(spec["key"]))
        try:
            await blast(sock, seal, _address(spec), asyncio.get_running_loop().time() + seconds)
        finally:
            sock.close()
    else:
        loop = asyncio.get_running_loop()
        gc_time = GcClock().install() if spec.get("stats") else None
        async with STTNode(**on_loopback(spec["settings"])) as node:
            session = await node.connect(_address(spec), bytes.fromhex(spec["node_id"]),
                                         timeout=20)
            stream = session.open_stream()
            message = os.urandom(MiB)
            done = loop.time() + seconds
            blocked = 0.0  # time send() waited on back-pressure (flow or congestion control)
            while loop.time() < done:
                before = time.perf_counter()
                await stream.send(message)
                blocked += time.perf_counter() - before
            await stream.close()
            await stream.flush()
            if gc_time is not None:
                stats = _run_stats(node, [session], gc_time)
                emit({"done": True, "stats": {**stats, "send_blocked_s": blocked}})
                return
    emit({"done": True})


def _run_stats(node: STTNode, sessions: list[Any], gc_time: GcClock) -> dict[str, Any]:
    """One goodput end's counters (``"stats": true`` in its spec): the node's, its session's
    and the garbage collector's time, to tell a slow run from a fast one."""
    stats: dict[str, Any] = {key: value for key, value in node.get_stats().items()
                             if isinstance(value, int | float | str | dict)}
    if sessions:
        session = sessions[0].get_stats()
        stats["session"] = {name: getattr(session, name) for name in (
            "packets_sent", "packets_received", "packets_lost", "rtt_ms", "rtt_min_ms",
            "cwnd_bytes", "path_mtu", "pacing_rate_mbps", "congestion_state",
            "datagrams_dropped")}
    stats["gc_s"] = gc_time.seconds
    usage = resource.getrusage(resource.RUSAGE_SELF)
    stats["cpu_user_s"], stats["cpu_system_s"] = usage.ru_utime, usage.ru_stime
    stats["switches_voluntary"], stats["switches_involuntary"] = usage.ru_nvcsw, usage.ru_nivcsw
    return stats


async def echo(spec: dict[str, Any]) -> None:
    """Echo every datagram (raw) or message (STT) until the starter's input ends. ``raw``
    echoes inside the socket's reader callback, with no task at all; ``raw_task`` is the
    same raw UDP echoed by a task that awaits a future per datagram (woken by the reader
    callback), the least that await-based application code does per message."""
    loop = asyncio.get_running_loop()
    if spec["kind"] == "raw_task":
        await _echo_raw_task(loop)
        return
    if spec["kind"] == "raw":
        sock, spare = udp_pair()
        spare.close()

        def readable() -> None:
            while True:
                try:
                    data, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    return
                sock.sendto(data, addr)

        loop.add_reader(sock.fileno(), readable)
        emit({"address": sock.getsockname(), "node_id": ""})
        await _line()
        loop.remove_reader(sock.fileno())
        sock.close()
        return
    async with STTNode(**on_loopback(spec["settings"])) as node:
        async def serve() -> None:
            session = await node.accept()
            stream = await session.accept_stream()
            async for message in stream:
                await stream.send(message)

        task = asyncio.create_task(serve())
        emit({"address": node.address, "node_id": node.node_id.hex()})
        await _line()
        task.cancel()


async def _echo_raw_task(loop: asyncio.AbstractEventLoop) -> None:
    """``echo``'s ``raw_task`` kind: the reader callback only wakes the echoing task."""
    sock, spare = udp_pair()
    spare.close()
    waiter: list[asyncio.Future[None] | None] = [None]

    def readable() -> None:
        future = waiter[0]
        if future is not None and not future.done():
            future.set_result(None)

    async def serve() -> None:
        while True:
            try:
                data, addr = sock.recvfrom(2048)
            except BlockingIOError:
                future = waiter[0] = loop.create_future()
                await future
                continue
            sock.sendto(data, addr)

    loop.add_reader(sock.fileno(), readable)
    task = asyncio.create_task(serve())
    emit({"address": sock.getsockname(), "node_id": ""})
    await _line()
    task.cancel()
    loop.remove_reader(sock.fileno())
    sock.close()


async def pinger(spec: dict[str, Any]) -> None:
    """``count`` round trips of a 4-byte ping: raw UDP, or a no_delay STT stream. One timeout
    for the whole run, outside the timed loop: ``asyncio.wait_for`` per receive made a task
    per round trip (Python 3.11) for STT's coroutine but not for raw UDP's future."""
    count = int(spec["count"])
    times: list[float] = []
    if spec["kind"] in ("raw", "raw_task"):  # (the kinds differ in the echo only)
        loop = asyncio.get_running_loop()
        sock, spare = udp_pair()
        spare.close()
        waiter: asyncio.Future[None] | None = None

        def readable() -> None:
            while True:
                try:
                    sock.recvfrom(2048)
                except BlockingIOError:
                    return
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)

        loop.add_reader(sock.fileno(), readable)
        target = _address(spec)
        async with asyncio.timeout(run_timeout(count)):
            for _ in range(count):
                waiter = loop.create_future()
                start = time.perf_counter()
                sock.sendto(b"ping", target)
                await waiter
                times.append(time.perf_counter() - start)
        loop.remove_reader(sock.fileno())
        sock.close()
    else:
        async with STTNode(**on_loopback(spec["settings"])) as node:
            session = await node.connect(_address(spec), bytes.fromhex(spec["node_id"]),
                                         timeout=20)
            stream = session.open_stream(no_delay=True)
            async with asyncio.timeout(run_timeout(count)):
                for _ in range(count):
                    start = time.perf_counter()
                    await stream.send(b"ping")
                    await stream.receive()
                    times.append(time.perf_counter() - start)
            await session.close()
    emit({"times": times})


async def hs_server(spec: dict[str, Any]) -> None:
    """A node that accepts every session until the starter's input ends; each "cpu" line is
    answered with the CPU time this process has used (user + system), so that the starter
    can take the node's share of a burst."""
    async with STTNode(**on_loopback(spec["settings"])) as node:
        held = []

        async def accept() -> None:
            while True:
                held.append(await node.accept())

        task = asyncio.create_task(accept())
        emit({"address": node.address, "node_id": node.node_id.hex()})
        while await _line() == "cpu":
            emit({"cpu": time.process_time()})
        task.cancel()
        emit({"accepted": len(held)})


async def hs_client(spec: dict[str, Any]) -> None:
    """On "go", ``count`` concurrent handshakes with the server; reports when they started and
    ended (``time.perf_counter``: one monotonic clock for every process on the machine) and
    the CPU time this process spent meanwhile, then holds the sessions until the starter's
    input ends."""
    async with STTNode(**on_loopback(spec["settings"])) as node:
        emit({"ready": True})
        await _line()
        start, cpu = time.perf_counter(), time.process_time()
        sessions = await asyncio.gather(*(
            node.connect(_address(spec), bytes.fromhex(spec["node_id"]), timeout=60)
            for _ in range(int(spec["count"]))))
        end, cpu = time.perf_counter(), time.process_time() - cpu
        emit({"start": start, "end": end, "count": len(sessions), "cpu": cpu})
        await _line()


Role = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
ROLES: Mapping[str, Role] = MappingProxyType({
    "sink": sink, "source": source, "echo": echo, "pinger": pinger,
    "hs_server": hs_server, "hs_client": hs_client})
