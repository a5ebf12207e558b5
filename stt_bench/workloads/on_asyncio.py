"""STT's loopback workloads on an asyncio loop (asyncio or uvloop), through ``stt_asyncio``:
one stream of 1 MiB messages, ping-pong on a no_delay stream, many handshakes at once. Both ends
run in this process, like the raw baselines of :mod:`stt_bench.baselines.on_asyncio`."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from stt_asyncio import Session, Stream, STTNode

from ..common import MiB, on_loopback, one_peer_sessions


async def stt_throughput(settings: dict[str, Any], seconds: float) -> tuple[float, dict[str, Any]]:
    settings = on_loopback(settings)
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        received = 0

        async def sink() -> None:
            nonlocal received
            session = await server.accept()
            stream = await session.accept_stream()
            async for message in stream:
                received += len(message)

        task = asyncio.create_task(sink())
        session = await client.connect(server.address, server.node_id)
        stream = session.open_stream()
        message = os.urandom(MiB)
        loop = asyncio.get_running_loop()
        start = loop.time()
        while loop.time() - start < seconds:
            await stream.send(message)
        await stream.close()
        await stream.flush()
        await asyncio.wait_for(task, 30)
        elapsed = loop.time() - start
        stats = session.get_stats()
        return received / elapsed, {"rtt_ms": stats.rtt_ms, "loss_rate": stats.loss_rate,
                                    "loop": client.get_stats()["loop"]}


async def echo_stream(server: STTNode,
                      client: STTNode) -> tuple[asyncio.Task[None], Session, Stream]:
    """A no_delay stream from ``client`` to a task on ``server`` that echoes every message
    (cancel the task when done)."""
    async def echo() -> None:
        session = await server.accept()
        stream = await session.accept_stream()
        async for message in stream:
            await stream.send(message)

    task = asyncio.create_task(echo())
    session = await client.connect(server.address, server.node_id)
    return task, session, session.open_stream(no_delay=True)


async def stt_ping_pong(settings: dict[str, Any], count: int) -> list[float]:
    settings = on_loopback(settings)
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        task, _, stream = await echo_stream(server, client)
        times = []
        for _ in range(count):
            start = time.perf_counter()
            await stream.send(b"ping")
            await stream.receive()
            times.append(time.perf_counter() - start)
        task.cancel()
        return times


async def handshakes(settings: dict[str, Any], count: int) -> float:
    settings = on_loopback({**one_peer_sessions(count), **settings})
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        start = time.perf_counter()
        sessions = await asyncio.gather(*(client.connect(server.address, server.node_id)
                                          for _ in range(count)))
        elapsed = time.perf_counter() - start
        assert len(sessions) == count
        return count / elapsed
