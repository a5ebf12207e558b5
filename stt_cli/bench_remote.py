"""Ping-pong with the echo server in another process, on the same runtime: the round trip a
deployment sees (two processes, a kernel wakeup each way), for raw UDP and for STT alike.

``stt_cli.bench``'s in-process ping-pong serves both ends from one loop iteration, so its raw
baseline never waits for a wakeup; this one does, like any real peer.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

from stt_asyncio import STTNode

from .bench import udp_pair

START_TIMEOUT = 60.0


def _run(runtime: str, coro: Any) -> None:
    if runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.run(coro)
    else:
        asyncio.run(coro)


def _echo_server(runtime: str, kind: str, settings: dict[str, Any], ready: Any) -> None:
    """A process that echoes until it is terminated: raw UDP datagrams or STT messages."""

    async def raw() -> None:
        sock, spare = udp_pair()
        spare.close()

        def readable() -> None:
            while True:
                try:
                    data, addr = sock.recvfrom(2048)
                except BlockingIOError:
                    return
                sock.sendto(data, addr)

        asyncio.get_running_loop().add_reader(sock.fileno(), readable)
        ready.put((sock.getsockname(), b""))
        await asyncio.Event().wait()

    async def stt() -> None:
        async with STTNode(**settings) as node:
            ready.put((node.address, node.node_id))
            session = await node.accept()
            stream = await session.accept_stream()
            async for message in stream:
                await stream.send(message)

    _run(runtime, raw() if kind == "raw" else stt())


async def remote_ping_pong(kind: str, settings: dict[str, Any], count: int) -> list[float]:
    """Round-trip times (s) of ``count`` 4-byte pings to an echo process; ``kind`` is "raw"
    or "stt" (a no_delay stream)."""
    loop = asyncio.get_running_loop()
    runtime = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    server = context.Process(target=_echo_server, args=(runtime, kind, settings, ready),
                             daemon=True)
    server.start()
    try:
        address, node_id = await loop.run_in_executor(None, ready.get, True, START_TIMEOUT)
        if kind == "raw":
            return await _raw_client(tuple(address), count)
        return await _stt_client(tuple(address), node_id, settings, count)
    finally:
        server.terminate()
        server.join(5)


async def _raw_client(address: Any, count: int) -> list[float]:
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
    times: list[float] = []
    try:
        for _ in range(count):
            waiter = loop.create_future()
            start = time.perf_counter()
            sock.sendto(b"ping", address)
            await asyncio.wait_for(waiter, 5)
            times.append(time.perf_counter() - start)
    finally:
        loop.remove_reader(sock.fileno())
        sock.close()
    return times


async def _stt_client(address: Any, node_id: bytes, settings: dict[str, Any],
                      count: int) -> list[float]:
    async with STTNode(**settings) as client:
        session = await client.connect(address, node_id, timeout=20)
        stream = session.open_stream(no_delay=True)
        times: list[float] = []
        for _ in range(count):
            start = time.perf_counter()
            await stream.send(b"ping")
            await asyncio.wait_for(stream.receive(), 5)
            times.append(time.perf_counter() - start)
        await session.close()
        return times
