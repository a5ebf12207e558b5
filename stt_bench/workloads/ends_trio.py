"""The ends of the two-process benchmarks on trio: STT through ``stt_anyio`` and the raw
baseline through trio's own readiness waits on a plain non-blocking socket (as in
:mod:`stt_bench.baselines.on_trio`). The roles and their lines are those of
:mod:`stt_bench.workloads.ends_asyncio`; aioquic has no trio binding, so there is no "quic" kind.
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any

import trio

from stt_anyio import STTError, STTNode

from ..baselines.aead import make_sealer
from ..common import Meter, MiB, on_loopback, run_timeout, udp_pair
from .lines import emit, read_line


async def _line() -> str:
    """The starter's next line, read in a worker thread so trio keeps running."""
    return await trio.to_thread.run_sync(read_line)


def _address(spec: dict[str, Any]) -> tuple[str, int]:
    host, port = spec["address"]
    return str(host), int(port)


def _bound_socket() -> socket.socket:
    sock, spare = udp_pair()
    spare.close()
    return sock


async def sink(spec: dict[str, Any]) -> None:
    """Receive until the starter asks for the rate: raw sealed datagrams or one STT stream."""
    meter = Meter()
    async with trio.open_nursery() as nursery:
        if spec["kind"] == "raw":
            sock = _bound_socket()
            _, open_ = make_sealer(spec["frame"], bytes.fromhex(spec["key"]))
            buffer = bytearray(65536)

            async def drain_raw() -> None:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    while True:
                        try:
                            size = sock.recv_into(buffer)
                        except BlockingIOError:
                            break
                        meter.note(open_(buffer, size))

            nursery.start_soon(drain_raw)
            emit({"address": sock.getsockname(), "node_id": ""})
            await _line()
            emit({"rate": meter.rate(), "bytes": meter.bytes})
            nursery.cancel_scope.cancel()
            sock.close()
            return
        async with STTNode(**on_loopback(spec["settings"])) as node:
            async def drain() -> None:
                session = await node.accept()
                stream = await session.accept_stream()
                async for message in stream:
                    meter.note(len(message))

            nursery.start_soon(drain)
            emit({"address": node.address, "node_id": node.node_id.hex()})
            await _line()
            emit({"rate": meter.rate(), "bytes": meter.bytes})
            nursery.cancel_scope.cancel()


async def source(spec: dict[str, Any]) -> None:
    """Send for ``seconds``: sealed datagrams as fast as the socket takes them, or 1 MiB
    messages on one STT stream (closed and flushed at the end)."""
    done = trio.current_time() + float(spec["seconds"])
    target = _address(spec)
    if spec["kind"] == "raw":
        sock = _bound_socket()
        seal, _ = make_sealer(spec["frame"], bytes.fromhex(spec["key"]))
        counter = 0
        try:
            while trio.current_time() < done:
                for _ in range(64):
                    try:
                        sock.sendto(seal(counter), target)
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(sock)
                        break
                    counter += 1
                await trio.lowlevel.checkpoint()
        finally:
            sock.close()
    else:
        async with STTNode(**on_loopback(spec["settings"])) as node:
            session = await node.connect(target, bytes.fromhex(spec["node_id"]), timeout=20)
            stream = session.open_stream()
            message = os.urandom(MiB)
            while trio.current_time() < done:
                await stream.send(message)
            await stream.close()
            await stream.flush()
    emit({"done": True})


async def echo(spec: dict[str, Any]) -> None:
    """Echo every datagram (raw) or message (STT) until the starter's input ends."""
    async with trio.open_nursery() as nursery:
        if spec["kind"] == "raw":
            sock = _bound_socket()

            async def serve_raw() -> None:
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    while True:
                        try:
                            data, addr = sock.recvfrom(2048)
                        except BlockingIOError:
                            break
                        sock.sendto(data, addr)

            nursery.start_soon(serve_raw)
            emit({"address": sock.getsockname(), "node_id": ""})
            await _line()
            nursery.cancel_scope.cancel()
            sock.close()
            return
        async with STTNode(**on_loopback(spec["settings"])) as node:
            async def serve() -> None:
                session = await node.accept()
                stream = await session.accept_stream()
                with contextlib.suppress(STTError):  # the pinger closed its session: done
                    async for message in stream:
                        await stream.send(message)

            nursery.start_soon(serve)
            emit({"address": node.address, "node_id": node.node_id.hex()})
            await _line()
            nursery.cancel_scope.cancel()


async def pinger(spec: dict[str, Any]) -> None:
    """``count`` round trips of a 4-byte ping: raw UDP, or a no_delay STT stream; one timeout
    for the whole run (as on asyncio), not a cancel scope per round trip."""
    count = int(spec["count"])
    target = _address(spec)
    times: list[float] = []
    if spec["kind"] == "raw":
        sock = _bound_socket()
        with trio.fail_after(run_timeout(count)):
            for _ in range(count):
                start = time.perf_counter()
                sock.sendto(b"ping", target)
                while True:
                    await trio.lowlevel.wait_readable(sock)
                    try:
                        sock.recvfrom(2048)
                        break
                    except BlockingIOError:
                        continue
                times.append(time.perf_counter() - start)
        sock.close()
    else:
        async with STTNode(**on_loopback(spec["settings"])) as node:
            session = await node.connect(target, bytes.fromhex(spec["node_id"]), timeout=20)
            stream = session.open_stream(no_delay=True)
            with trio.fail_after(run_timeout(count)):
                for _ in range(count):
                    start = time.perf_counter()
                    await stream.send(b"ping")
                    await stream.receive()
                    times.append(time.perf_counter() - start)
            await session.close()
    emit({"times": times})


async def hs_server(spec: dict[str, Any]) -> None:
    """A node that accepts every session until the starter's input ends; each "cpu" line is
    answered with the CPU time this process has used (user + system)."""
    async with STTNode(**on_loopback(spec["settings"])) as node:
        held = []

        async def accept() -> None:
            while True:
                held.append(await node.accept())

        async with trio.open_nursery() as nursery:
            nursery.start_soon(accept)
            emit({"address": node.address, "node_id": node.node_id.hex()})
            while await _line() == "cpu":
                emit({"cpu": time.process_time()})
            nursery.cancel_scope.cancel()
        emit({"accepted": len(held)})


async def hs_client(spec: dict[str, Any]) -> None:
    """On "go", ``count`` concurrent handshakes with the server; reports when they started and
    ended and the CPU time this process spent meanwhile, then holds the sessions until the
    starter's input ends."""
    target = _address(spec)
    node_id = bytes.fromhex(spec["node_id"])
    async with STTNode(**on_loopback(spec["settings"])) as node:
        emit({"ready": True})
        await _line()
        sessions = []

        async def connect() -> None:
            sessions.append(await node.connect(target, node_id, timeout=60))

        start, cpu = time.perf_counter(), time.process_time()
        async with trio.open_nursery() as nursery:
            for _ in range(int(spec["count"])):
                nursery.start_soon(connect)
        end, cpu = time.perf_counter(), time.process_time() - cpu
        emit({"start": start, "end": end, "count": len(sessions), "cpu": cpu})
        await _line()


Role = Callable[[dict[str, Any]], Coroutine[Any, Any, None]]
ROLES: Mapping[str, Role] = MappingProxyType({
    "sink": sink, "source": source, "echo": echo, "pinger": pinger,
    "hs_server": hs_server, "hs_client": hs_client})
