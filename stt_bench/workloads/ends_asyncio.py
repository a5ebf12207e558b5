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
import time
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any

from stt_asyncio import STTNode

from ..baselines.aead import make_sealer
from ..baselines.on_asyncio import blast
from ..common import Meter, MiB, on_loopback, run_timeout, udp_pair
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
    async with STTNode(**on_loopback(spec["settings"])) as node:
        async def drain() -> None:
            session = await node.accept()
            stream = await session.accept_stream()
            async for message in stream:  # to the sender's FIN
                meter.note(len(message))

        task = asyncio.create_task(drain())
        emit({"address": node.address, "node_id": node.node_id.hex()})
        await _line()
        emit({"rate": meter.rate(), "bytes": meter.bytes})
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
        async with STTNode(**on_loopback(spec["settings"])) as node:
            session = await node.connect(_address(spec), bytes.fromhex(spec["node_id"]),
                                         timeout=20)
            stream = session.open_stream()
            message = os.urandom(MiB)
            done = loop.time() + seconds
            while loop.time() < done:
                await stream.send(message)
            await stream.close()
            await stream.flush()
    emit({"done": True})


async def echo(spec: dict[str, Any]) -> None:
    """Echo every datagram (raw) or message (STT) until the starter's input ends."""
    loop = asyncio.get_running_loop()
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


async def pinger(spec: dict[str, Any]) -> None:
    """``count`` round trips of a 4-byte ping: raw UDP, or a no_delay STT stream. One timeout
    for the whole run, outside the timed loop: ``asyncio.wait_for`` per receive made a task
    per round trip (Python 3.11) for STT's coroutine but not for raw UDP's future."""
    count = int(spec["count"])
    times: list[float] = []
    if spec["kind"] == "raw":
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
    """A node that accepts every session until the starter's input ends."""
    async with STTNode(**on_loopback(spec["settings"])) as node:
        held = []

        async def accept() -> None:
            while True:
                held.append(await node.accept())

        task = asyncio.create_task(accept())
        emit({"address": node.address, "node_id": node.node_id.hex()})
        await _line()
        task.cancel()
        emit({"accepted": len(held)})


async def hs_client(spec: dict[str, Any]) -> None:
    """On "go", ``count`` concurrent handshakes with the server; reports when they started and
    ended (``time.perf_counter``: one monotonic clock for every process on the machine), then
    holds the sessions until the starter's input ends."""
    async with STTNode(**on_loopback(spec["settings"])) as node:
        emit({"ready": True})
        await _line()
        start = time.perf_counter()
        sessions = await asyncio.gather(*(
            node.connect(_address(spec), bytes.fromhex(spec["node_id"]), timeout=60)
            for _ in range(int(spec["count"]))))
        end = time.perf_counter()
        emit({"start": start, "end": end, "count": len(sessions)})
        await _line()


Role = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
ROLES: Mapping[str, Role] = MappingProxyType({
    "sink": sink, "source": source, "echo": echo, "pinger": pinger,
    "hs_server": hs_server, "hs_client": hs_client})
