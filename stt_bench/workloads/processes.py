"""Benchmarks with the far end in another process on the same runtime, for raw UDP and for STT
alike: what a deployment sees, where each end has its own process (and, here, its own core).

* ping-pong: the echo server in the other process, a kernel wakeup each way. The in-process
  ping-pong (``baselines.on_asyncio``, ``workloads.on_asyncio``) serves both ends from one loop
  iteration, so its raw baseline never waits for a wakeup; this one does, like any real peer.
* goodput: the receiver in the other process. It counts what it receives (the raw AEAD
  blast's opened payload, or STT's messages) and reports the bytes after its first arrival
  over the time from the first to the last, so both are timed the same way at the same end.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
import warnings
from typing import Any

from stt_asyncio import STTNode

from ..baselines.aead import make_sealer
from ..baselines.on_asyncio import blast
from ..common import Meter, MiB, on_loopback, udp_pair

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
        async with STTNode(**on_loopback(settings)) as node:
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
    async with STTNode(**on_loopback(settings)) as client:
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


def _sink_server(runtime: str, kind: str, settings: dict[str, Any], frame_size: int,
                 key: bytes, ready: Any, control: Any) -> None:
    """A process that receives until it is terminated, and answers every message on
    ``control`` with its receive rate so far: raw sealed datagrams or one STT stream."""

    warnings.simplefilter("ignore", RuntimeWarning)  # small kernel buffers: the parent warns

    async def main() -> None:
        loop = asyncio.get_running_loop()
        meter = Meter()

        def report() -> None:
            control.recv()
            control.send(meter.rate())

        loop.add_reader(control.fileno(), report)
        if kind == "raw":
            sock, spare = udp_pair()
            spare.close()
            _, open_ = make_sealer(frame_size, key)
            buffer = bytearray(65536)

            def readable() -> None:
                while True:
                    try:
                        size = sock.recv_into(buffer)
                    except BlockingIOError:
                        return
                    meter.note(open_(buffer, size))

            loop.add_reader(sock.fileno(), readable)
            ready.put((sock.getsockname(), b""))
            await asyncio.Event().wait()
        async with STTNode(**on_loopback(settings)) as node:
            ready.put((node.address, node.node_id))
            session = await node.accept()
            stream = await session.accept_stream()
            async for message in stream:  # to the sender's FIN
                meter.note(len(message))
            await asyncio.Event().wait()

    _run(runtime, main())


async def remote_goodput(kind: str, settings: dict[str, Any], seconds: float) -> float:
    """Bytes/s that a receiver in another process takes in while this one sends for
    ``seconds``: ``kind`` "raw" (the AEAD blast of ``baselines.on_asyncio``) or "stt" (one stream
    of 1 MiB messages); frames of ``settings["max_frame_size"]`` bytes either way."""
    loop = asyncio.get_running_loop()
    runtime = "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"
    context = multiprocessing.get_context("spawn")
    ready = context.Queue()
    control, child_control = context.Pipe()
    key = os.urandom(32)
    frame_size = settings["max_frame_size"]
    server = context.Process(target=_sink_server, daemon=True,
                             args=(runtime, kind, settings, frame_size, key, ready,
                                   child_control))
    server.start()
    try:
        address, node_id = await loop.run_in_executor(None, ready.get, True, START_TIMEOUT)
        if kind == "raw":
            await _raw_source(tuple(address), frame_size, key, seconds)
        else:
            await _stt_source(tuple(address), node_id, settings, seconds)
        await asyncio.sleep(0.1)  # what is still in flight lands
        control.send("report")
        if not await loop.run_in_executor(None, control.poll, START_TIMEOUT):
            raise TimeoutError("the receiving process did not report")
        rate: float = control.recv()
        return rate
    finally:
        server.terminate()
        server.join(5)


async def _raw_source(address: Any, frame_size: int, key: bytes, seconds: float) -> None:
    """The sending half of ``stt_bench.baselines.on_asyncio.raw_aead_blast``."""
    sock, spare = udp_pair()
    spare.close()
    seal, _ = make_sealer(frame_size, key)
    try:
        await blast(sock, seal, address, asyncio.get_running_loop().time() + seconds)
    finally:
        sock.close()


async def _stt_source(address: Any, node_id: bytes, settings: dict[str, Any],
                      seconds: float) -> None:
    loop = asyncio.get_running_loop()
    async with STTNode(**on_loopback(settings)) as client:
        session = await client.connect(address, node_id, timeout=20)
        stream = session.open_stream()
        message = os.urandom(MiB)
        done = loop.time() + seconds
        while loop.time() < done:
            await stream.send(message)
        await stream.close()
        await stream.flush()
