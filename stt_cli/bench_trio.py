"""The loopback benchmarks of :mod:`stt_cli.bench` on trio, through ``stt_anyio``.

The raw baselines use trio's own readiness waits (``trio.lowlevel.wait_readable``) on
non-blocking sockets, the strongest plain-trio way to move datagrams, so each ratio compares STT
with the best the same loop can do without it.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import trio

from stt_anyio import Session, STTNode
from stt_runtime.session import Stream

from ._loopback import on_loopback, one_peer_sessions
from .bench import MiB, make_sealer, udp_pair
from .bench_extra import tls_contexts


async def raw_aead_blast(frame_size: int, seconds: float) -> float:
    """Bytes/s of payload: one task seals and sends, another drains and opens."""
    tx, rx = udp_pair()
    seal, open_ = make_sealer(frame_size)
    received = 0
    target = rx.getsockname()
    buffer = bytearray(65536)
    done = trio.current_time() + seconds

    async def receiver() -> None:
        nonlocal received
        while True:
            await trio.lowlevel.wait_readable(rx)
            while True:
                try:
                    size = rx.recv_into(buffer)
                except BlockingIOError:
                    break
                received += open_(buffer, size)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            counter = 0
            while trio.current_time() < done:
                for _ in range(64):
                    try:
                        tx.sendto(seal(counter), target)
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(tx)
                        break
                    counter += 1
                await trio.lowlevel.checkpoint()
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    finally:
        tx.close()
        rx.close()
    return received / seconds


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


async def raw_ping_pong(count: int) -> list[float]:
    """Raw UDP echo: a server task and the client, each waiting for readability."""
    a, b = udp_pair()
    target = b.getsockname()
    times: list[float] = []

    async def server() -> None:
        while True:
            await trio.lowlevel.wait_readable(b)
            while True:
                try:
                    data, addr = b.recvfrom(64)
                except BlockingIOError:
                    break
                b.sendto(data, addr)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            for _ in range(count):
                start = time.perf_counter()
                a.sendto(b"ping", target)
                while True:
                    await trio.lowlevel.wait_readable(a)
                    try:
                        a.recvfrom(64)
                        break
                    except BlockingIOError:
                        continue
                times.append(time.perf_counter() - start)
            nursery.cancel_scope.cancel()
    finally:
        a.close()
        b.close()
    return times


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


async def tcp_tls_throughput(seconds: float) -> float:
    """Bytes/s of 1 MiB writes through ``trio.SSLStream`` (TLS 1.3) on loopback TCP."""
    with tempfile.TemporaryDirectory() as tmp:
        server_ctx, client_ctx = tls_contexts(Path(tmp))
    received = 0
    finished = trio.Event()

    async def handle(tcp: trio.SocketStream) -> None:
        nonlocal received
        stream = trio.SSLStream(tcp, server_ctx, server_side=True)
        while chunk := await stream.receive_some(256 * 1024):
            received += len(chunk)
        finished.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0,
                                                          host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
        message = os.urandom(MiB)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            await stream.send_all(message)
        await stream.aclose()
        with trio.fail_after(30):
            await finished.wait()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return received / elapsed


async def handshakes(settings: dict[str, Any], count: int) -> float:
    settings = on_loopback({**one_peer_sessions(count), **settings})
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        start = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(count):
                nursery.start_soon(client.connect, server.address, server.node_id)
        return count / (time.perf_counter() - start)
