"""Per-message costs that stt_bench/stages.py found on a ping-pong's route and the runtime
removed: a kicked driver (anyio) reading an empty socket, and a wait on a stream signal
(asyncio) asking ``asyncio.get_running_loop()``, a ``getpid`` system call on Python 3.11."""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import pytest

from stt_runtime.udp_io import UdpIO

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
ROUNDS = 100


async def _echo(stream: Any) -> None:
    async for message in stream:
        await stream.send(message)


async def _ping(stream: Any, rounds: int) -> None:
    for _ in range(rounds):
        await stream.send(b"ping")
        assert await stream.receive() == b"ping"


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_a_kicked_anyio_driver_does_not_read_an_empty_socket(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The echoing side's send (a default stream: its poll deferred) kicks the driver once per
    message; the kicked driver polls without reading the socket, which is empty then. Before,
    every round trip made one empty read (a raised BlockingIOError)."""
    from stt_anyio import STTNode as Node

    empty = [0]
    reads = [0]
    drain = UdpIO.drain

    def counted(self: UdpIO, *args: Any, **kwargs: Any) -> int:
        got = drain(self, *args, **kwargs)
        reads[0] += 1
        empty[0] += got == 0
        return got

    async def main() -> None:
        async with Node(host="127.0.0.1") as server, Node(host="127.0.0.1") as client, \
                anyio.create_task_group() as group:
            async def serve() -> None:
                session = await server.accept()
                await _echo(await session.accept_stream())

            group.start_soon(serve)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            await _ping(stream, 20)  # warm up: handshake and stream state settled
            monkeypatch.setattr(UdpIO, "drain", counted)
            await _ping(stream, ROUNDS)
            monkeypatch.setattr(UdpIO, "drain", drain)
            assert reads[0] >= ROUNDS  # the datagrams were read
            assert empty[0] <= ROUNDS // 20
            group.cancel_scope.cancel()

    anyio.run(main, backend=backend)


def test_asyncio_stream_waits_ask_no_running_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stream's signal waits on the node's loop: a round trip makes no call to
    ``asyncio.get_running_loop()`` (before: one per receive() that waited, at each end)."""
    from stt_asyncio import STTNode as Node

    calls = [0]
    original = asyncio.get_running_loop

    def counted() -> asyncio.AbstractEventLoop:
        calls[0] += 1
        return original()

    async def main() -> None:
        async with Node(host="127.0.0.1") as server, Node(host="127.0.0.1") as client:
            async def serve() -> None:
                session = await server.accept()
                await _echo(await session.accept_stream())

            task = asyncio.create_task(serve())
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            await _ping(stream, 20)
            monkeypatch.setattr(asyncio, "get_running_loop", counted)
            await _ping(stream, ROUNDS)
            monkeypatch.setattr(asyncio, "get_running_loop", original)
            assert calls[0] == 0
            task.cancel()

    asyncio.run(main())
