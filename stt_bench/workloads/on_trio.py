"""STT's loopback workloads on trio, through ``stt_anyio``: the same measurements as
:mod:`stt_bench.workloads.on_asyncio`, beside the trio baselines of
:mod:`stt_bench.baselines.on_trio`."""

from __future__ import annotations

import os
import time
from typing import Any

import anyio
import anyio.abc
import trio

from stt_anyio import Session, STTNode
from stt_runtime.session import Stream

from ..common import MiB, on_loopback, one_peer_sessions


async def stt_throughput(settings: dict[str, Any], seconds: float) -> tuple[float, dict[str, Any]]:
    settings = on_loopback(settings)
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        received = 0
        finished = trio.Event()

        async def sink() -> None:
            nonlocal received
            session = await server.accept()
            stream = await session.accept_stream()
            async for message in stream:
                received += len(message)
            finished.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(sink)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            message = os.urandom(MiB)
            start = trio.current_time()
            while trio.current_time() - start < seconds:
                await stream.send(message)
            await stream.close()
            await stream.flush()
            with trio.fail_after(30):
                await finished.wait()
            elapsed = trio.current_time() - start
        stats = session.get_stats()
        return received / elapsed, {"rtt_ms": stats.rtt_ms, "loss_rate": stats.loss_rate,
                                    "loop": client.get_stats()["loop"]}


async def echo_stream(server: STTNode, client: STTNode,
                      group: anyio.abc.TaskGroup) -> tuple[Session, Stream]:
    """A no_delay stream from ``client`` to a task started in ``group`` on ``server`` that
    echoes every message (cancel the group when done). Any anyio backend."""
    async def echo() -> None:
        session = await server.accept()
        stream = await session.accept_stream()
        async for message in stream:
            await stream.send(message)

    group.start_soon(echo)
    session = await client.connect(server.address, server.node_id)
    return session, session.open_stream(no_delay=True)


async def stt_ping_pong(settings: dict[str, Any], count: int) -> list[float]:
    settings = on_loopback(settings)
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        async with anyio.create_task_group() as group:
            _, stream = await echo_stream(server, client, group)
            times = []
            for _ in range(count):
                start = time.perf_counter()
                await stream.send(b"ping")
                await stream.receive()
                times.append(time.perf_counter() - start)
            group.cancel_scope.cancel()
        return times


async def handshakes(settings: dict[str, Any], count: int) -> float:
    settings = on_loopback({**one_peer_sessions(count), **settings})
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(client.connect, server.address, server.node_id)
        return count / (time.perf_counter() - start)
