"""stt_anyio on trio and asyncio over real loopback UDP, and interop with stt_asyncio."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import stt_asyncio
from stt_anyio import (
    AuthenticationError,
    HandshakeTimeout,
    KeepAliveTimeout,
    SessionClosed,
    StreamClosed,
    STTNode,
)

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
BACKENDS = ["trio", "asyncio"]


@pytest.mark.parametrize("backend", BACKENDS)
def test_transfer_and_concurrent_streams(backend: str) -> None:
    async def main() -> None:
        async with STTNode() as server, STTNode() as client:
            received: dict[int, str] = {}

            async def serve() -> None:
                session = await server.accept()

                async def drain(stream: anyio.abc.ObjectStream[bytes]) -> None:
                    digest = hashlib.sha256()
                    async for message in stream:
                        digest.update(message)
                    received[stream.stream_id] = digest.hexdigest()  # type: ignore[attr-defined]

                async with anyio.create_task_group() as group:
                    for _ in range(9):
                        group.start_soon(drain, await session.accept_stream())

            expected: dict[int, str] = {}
            async with anyio.create_task_group() as group:
                group.start_soon(serve)
                session = await client.connect(server.address, server.node_id)

                async def push(count: int, size: int) -> None:
                    stream = session.open_stream()
                    assert isinstance(stream, anyio.abc.ObjectStream)
                    digest = hashlib.sha256()
                    for _ in range(count):
                        data = os.urandom(size)
                        digest.update(data)
                        await stream.send(data)
                    await stream.send_eof()
                    await stream.flush()
                    expected[stream.stream_id] = digest.hexdigest()  # type: ignore[attr-defined]

                group.start_soon(push, 16, 1 << 20)
                for _ in range(8):
                    group.start_soon(push, 64, 8192)
            assert received == expected

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_failures_are_clear_on_every_backend(backend: str) -> None:
    async def main() -> None:
        async with STTNode(handshake_timeout=0.5) as server, \
                STTNode(handshake_timeout=0.5) as client:
            with pytest.raises(AuthenticationError):
                await client.connect(server.address, os.urandom(32))
            with pytest.raises(HandshakeTimeout):
                await client.connect(("127.0.0.1", 9), os.urandom(32))
            with pytest.raises(HandshakeTimeout):
                await client.connect(("127.0.0.1", 9), os.urandom(32), timeout=0.1)
            session = await client.connect(server.address, server.node_id)
            peer = await server.accept()
            stream = session.open_stream()
            await stream.send(b"x")
            incoming = await peer.accept_stream()
            assert await incoming.receive() == b"x"
            await stream.send_eof()
            with pytest.raises(StreamClosed):
                await incoming.receive()
            await session.close(3, "done")
            with pytest.raises(SessionClosed):
                await peer.accept_stream()

    anyio.run(main, backend=backend)


def _start_peer(kind: str, streams: int) -> tuple[subprocess.Popen[str], int, bytes]:
    peer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("interop_peer.py")), kind, str(streams)],
        stdout=subprocess.PIPE, text=True)
    assert peer.stdout is not None
    ready = peer.stdout.readline().split()
    assert ready and ready[0] == "READY", ready
    return peer, int(ready[1]), bytes.fromhex(ready[2])


async def _asyncio_client(port: int, node_id: bytes) -> None:
    async with stt_asyncio.STTNode() as client:
        session = await client.connect(("127.0.0.1", port), node_id)

        async def push(count: int, size: int) -> None:
            stream = session.open_stream()
            digest = hashlib.sha256()
            for _ in range(count):
                data = os.urandom(size)
                digest.update(data)
                await stream.send(data)
            await stream.close()
            answer = await stream.receive()
            assert answer.decode() == digest.hexdigest()

        async with asyncio.TaskGroup() as group:
            group.create_task(push(64, 1 << 20))  # 64 MiB on one stream
            for _ in range(8):
                group.create_task(push(128, 8192))


async def _anyio_client(port: int, node_id: bytes) -> None:
    with anyio.fail_after(90):
        async with STTNode() as client:
            session = await client.connect(("127.0.0.1", port), node_id)

            async def push(count: int, size: int) -> None:
                stream = session.open_stream()
                digest = hashlib.sha256()
                for _ in range(count):
                    data = os.urandom(size)
                    digest.update(data)
                    await stream.send(data)
                await stream.send_eof()
                answer = await stream.receive()
                assert answer.decode() == digest.hexdigest()

            async with anyio.create_task_group() as group:
                group.start_soon(push, 64, 1 << 20)  # 64 MiB on one stream
                for _ in range(8):
                    group.start_soon(push, 128, 8192)


# (client runtime, peer process): asyncio<->asyncio, trio<->trio, and both mixed directions.
PAIRS = [("stt_asyncio", "stt_asyncio"), ("trio", "trio"), ("stt_asyncio", "trio"),
         ("trio", "stt_asyncio"), ("stt_asyncio", "asyncio")]


@pytest.mark.parametrize(("client", "peer_kind"), PAIRS)
def test_64_mib_and_8_streams_across_two_processes(client: str, peer_kind: str) -> None:
    """Both ends in separate processes, sha256 of every stream compared on both sides."""
    peer, port, node_id = _start_peer(peer_kind, 9)
    try:
        if client == "stt_asyncio":
            asyncio.run(asyncio.wait_for(_asyncio_client(port, node_id), 90))
        else:
            anyio.run(_anyio_client, port, node_id, backend=client)
        assert peer.wait(timeout=30) == 0
    finally:
        peer.kill()
        peer.wait()
        if peer.stdout is not None:
            peer.stdout.close()


def test_keep_alive_detects_a_sigkilled_peer_process() -> None:
    peer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("interop_peer.py")), "trio", "1"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None
        ready = peer.stdout.readline().split()
        port, node_id = int(ready[1]), bytes.fromhex(ready[2])

        async def main() -> float:
            async with stt_asyncio.STTNode(keep_alive_interval=0.2,
                                           keep_alive_timeout=1.0) as client:
                session = await client.connect(("127.0.0.1", port), node_id)
                peer.kill()  # SIGKILL: no CLOSE will ever come
                peer.wait()
                loop = asyncio.get_running_loop()
                start = loop.time()
                with pytest.raises(KeepAliveTimeout):
                    await session.accept_stream()
                return loop.time() - start

        waited = asyncio.run(asyncio.wait_for(main(), 30))
        assert waited <= 1.0 + 0.3
    finally:
        peer.kill()
        peer.wait()
        if peer.stdout is not None:
            peer.stdout.close()


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_no_delay_message_leaves_before_send_returns(backend: str) -> None:
    import anyio

    from stt_anyio import STTNode as Node

    async def main() -> None:
        async with Node() as server, Node() as client:
            session = await client.connect(server.address, server.node_id)
            eager = session.open_stream(no_delay=True)
            before = client.get_stats()["datagrams_out"]
            await eager.send(b"now")
            assert client.get_stats()["datagrams_out"] > before

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
def test_anyio_echo_round_trip_polls_each_node_twice(backend: str,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A no_delay send polls the endpoint itself and only moves the driver's deadline, and a
    receive() wakes the driver only when a window update is owed: no second, empty poll
    (and empty read) per message."""
    from stt_anyio import STTNode as Node
    from stt_bench.workloads.on_trio import echo_stream

    from .conftest import CallCounter, polls_per_round_trip

    async def main() -> None:
        async with Node(no_delay=True) as server, Node(no_delay=True) as client, \
                anyio.create_task_group() as group:
            _, stream = await echo_stream(server, client, group)
            polls = CallCounter(monkeypatch, Node, "_service")
            assert await polls_per_round_trip(stream, polls) <= 4.2  # 2 a node; was 6
            group.cancel_scope.cancel()

    anyio.run(main, backend=backend)


def test_a_node_on_trio_binds_trios_own_primitives_and_clock() -> None:
    """On trio the driver's clock, cancel scope, readiness wait and stream events are trio's
    own (anyio's dispatch cost about a microsecond a call), so trio's clock is the node's: with
    a MockClock that jumps whenever every task waits, a handshake that no peer answers times
    out after its 10 virtual seconds at once, and the node's clock reads trio's."""
    import socket
    import time

    import trio
    import trio.testing

    from stt_anyio import STTNode as Node
    from stt_anyio._backend import ANYIO

    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))

    async def main() -> None:
        async with Node(handshake_timeout=10.0) as node:
            assert node._primitives.backend == "trio" and node._primitives is not ANYIO
            assert node._now() == trio.current_time()
            started = trio.current_time()
            with pytest.raises(HandshakeTimeout):
                await node.connect(silent.getsockname(), b"\x01" * 32)
            assert trio.current_time() - started >= 10.0

    wall = time.monotonic()
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        silent.close()
    assert time.monotonic() - wall < 5.0


def test_a_node_on_asyncio_reads_a_fine_clock() -> None:
    from stt_anyio import STTNode as Node
    from stt_anyio._backend import ASYNCIO

    async def main() -> None:
        async with Node() as server, Node() as client:
            assert client._primitives is ASYNCIO
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            await stream.send(b"hello")
            peer = await server.accept()
            incoming = await peer.accept_stream()
            assert await incoming.receive() == b"hello"

    anyio.run(main, backend="asyncio")


@pytest.mark.parametrize("backend", BACKENDS)
def test_anyio_accept_before_start_raises_instead_of_waiting_forever(backend: str) -> None:
    from stt_anyio import UsageError

    async def main() -> None:
        with anyio.fail_after(2), pytest.raises(UsageError, match="not started"):
            await STTNode().accept()

    anyio.run(main, backend=backend)


def test_anyio_on_uvloop_resolves_sub_millisecond_round_trips() -> None:
    """anyio's clock on asyncio is loop.time(), in whole milliseconds on uvloop: the node must
    not use it, or every loopback RTT sample is 0 or 1 ms (it read 1.13 ms smoothed)."""
    pytest.importorskip("uvloop")
    from stt_anyio import STTNode as Node
    from stt_bench.workloads.on_trio import echo_stream

    async def main() -> None:
        async with Node(no_delay=True) as server, Node(no_delay=True) as client, \
                anyio.create_task_group() as group:
            session, stream = await echo_stream(server, client, group)
            for i in range(100):
                await stream.send(b"%d" % i)
                await stream.receive()
            rtt_min = session.get_stats().rtt_min_ms
            assert 0 < rtt_min < 0.999, rtt_min
            group.cancel_scope.cancel()

    anyio.run(main, backend="asyncio", backend_options={"use_uvloop": True})
