"""Loopback benchmarks: STT beside a baseline measured on the same loop in the same run.

* throughput: one stream of 1 MiB messages vs a raw UDP blast whose datagrams (of the same frame
  size) are sealed and opened with the same AEAD: the ceiling of any encrypted Python transport.
* latency: ping-pong on a no_delay stream vs raw UDP ping-pong.
* sessions: handshakes per second, many sessions at once.
"""

from __future__ import annotations

import asyncio
import os
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from stt_asyncio import Session, Stream, STTNode

from ._loopback import on_loopback, one_peer_sessions

MiB = 1024 * 1024
RUNTIMES = ("asyncio", "uvloop", "trio")


def run_on(runtime: str, name: str, *args: Any) -> Any:
    """Run benchmark ``name`` of the module for ``runtime`` on a fresh event loop."""
    if runtime == "trio":
        import trio

        from . import bench_trio

        return trio.run(getattr(bench_trio, name), *args)
    factory: Callable[..., Awaitable[Any]] | None = globals().get(name)
    if factory is None:
        from . import bench_aioquic, bench_extra, bench_remote, bench_workers

        factory = (getattr(bench_extra, name, None) or getattr(bench_workers, name, None)
                   or getattr(bench_remote, name, None) or getattr(bench_aioquic, name))
    if runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        return uvloop.run(factory(*args))  # type: ignore[arg-type, unused-ignore]
    return asyncio.run(factory(*args))  # type: ignore[arg-type]


def udp_pair() -> tuple[socket.socket, socket.socket]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 * MiB)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 * MiB)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    return a, b


def make_sealer(frame_size: int, key_bytes: bytes | None = None
                ) -> tuple[Callable[[int], bytes], Callable[[bytearray, int], int]]:
    """The raw baseline's datagram codec: a 20-byte header (8-byte counter) authenticated as
    associated data and the payload sealed with AES-256-GCM, STT's default AEAD, so a datagram is
    ``frame_size`` bytes on the wire like STT's. ``open_`` returns the payload size. Two
    processes pass the same ``key_bytes``."""
    key = AESGCM(key_bytes or os.urandom(32))
    payload = os.urandom(frame_size - 16 - 20)
    pad = bytes(12)

    def seal(counter: int) -> bytes:
        head = counter.to_bytes(8, "big") + pad
        return head + key.encrypt(counter.to_bytes(12, "big"), payload, head)

    def open_(buffer: bytearray, size: int) -> int:
        with memoryview(buffer) as view:
            key.decrypt(bytes(4) + view[:8].tobytes(), view[20:size], view[:20])
        return size - 36

    return seal, open_


async def blast(sock: socket.socket, seal: Callable[[int], bytes], target: Any,
                done: float) -> None:
    """The raw baseline's sender: sealed datagrams as fast as the socket takes them, 64 per
    loop pass, until the loop's clock reaches ``done``."""
    loop = asyncio.get_running_loop()
    counter = 0
    while loop.time() < done:
        for _ in range(64):
            try:
                sock.sendto(seal(counter), target)
            except BlockingIOError:
                break
            counter += 1
        await asyncio.sleep(0)


async def raw_aead_blast(frame_size: int, seconds: float) -> float:
    """Bytes/s of payload received: sender seals and sends, receiver drains and opens."""
    loop = asyncio.get_running_loop()
    tx, rx = udp_pair()
    seal, open_ = make_sealer(frame_size)
    received = 0
    buffer = bytearray(65536)
    done = loop.time() + seconds

    def on_readable() -> None:
        nonlocal received
        while True:
            try:
                size = rx.recv_into(buffer)
            except BlockingIOError:
                return
            received += open_(buffer, size)

    loop.add_reader(rx.fileno(), on_readable)
    try:
        await blast(tx, seal, rx.getsockname(), done)
        await asyncio.sleep(0.05)
    finally:
        loop.remove_reader(rx.fileno())
        tx.close()
        rx.close()
    return received / seconds


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


async def raw_ping_pong(count: int) -> list[float]:
    """Raw UDP echo through the event loop: reader callbacks on both sockets, the client
    awaiting a future that its callback resolves (as STT's streams do)."""
    loop = asyncio.get_running_loop()
    a, b = udp_pair()
    waiter: asyncio.Future[None] | None = None

    def server_readable() -> None:
        while True:
            try:
                data, addr = b.recvfrom(64)
            except BlockingIOError:
                return
            b.sendto(data, addr)

    def client_readable() -> None:
        while True:
            try:
                a.recvfrom(64)
            except BlockingIOError:
                return
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    loop.add_reader(b.fileno(), server_readable)
    loop.add_reader(a.fileno(), client_readable)
    times: list[float] = []
    target = b.getsockname()
    try:
        for _ in range(count):
            waiter = loop.create_future()
            start = time.perf_counter()
            a.sendto(b"ping", target)
            await waiter
            times.append(time.perf_counter() - start)
    finally:
        loop.remove_reader(a.fileno())
        loop.remove_reader(b.fileno())
        a.close()
        b.close()
    return times


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


def percentile(samples: list[float], fraction: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def median(samples: list[float]) -> float:
    return statistics.median(samples)
