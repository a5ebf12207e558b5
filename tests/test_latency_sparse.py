"""Sparse input (one datagram per wake-up, as in a ping-pong) is read without the read that
finds the socket empty (a system call and a raised BlockingIOError per message), and nothing
is left behind: a burst that comes meanwhile is still read whole, on every runtime, because
the loops' readiness waits report a socket that still holds datagrams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from stt_runtime.udp_io import SPARSE_RUN, UdpIO

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
ROUNDS = 80
BURST = 200
RUNTIMES = ["asyncio", "uvloop", "trio"]


def _run(runtime: str, main: Callable[[Any], Any]) -> None:
    if runtime == "trio":
        from stt_anyio import STTNode as AnyioNode

        anyio.run(main, AnyioNode, backend="trio")
        return
    from stt_asyncio import STTNode as AsyncioNode

    if runtime == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main(AsyncioNode))
    else:
        asyncio.run(main(AsyncioNode))


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_ping_pong_makes_few_empty_reads_and_a_burst_is_read_whole(
        runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = [0]
    calls = [0]
    drain = UdpIO.drain

    def counted(self: UdpIO, receive: Any, now: float, limit: int = 4096) -> int:
        got = drain(self, receive, now, limit)
        calls[0] += 1
        empty[0] += got < limit  # this call read until the socket was empty
        return got

    async def main(node_class: Any) -> None:
        async with node_class(host="127.0.0.1") as server, \
                node_class(host="127.0.0.1") as client, anyio.create_task_group() as group:
            got: list[bytes] = []
            burst_done = anyio.Event()

            async def serve() -> None:
                session = await server.accept()
                stream = await session.accept_stream()
                for _ in range(ROUNDS + 10):
                    await stream.send(await stream.receive())
                # then the burst: every message must arrive, though the node reads sparsely
                while len(got) < BURST:
                    got.append(await stream.receive())
                burst_done.set()

            group.start_soon(serve)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            for _ in range(10):  # warm up
                await stream.send(b"ping")
                await stream.receive()
            monkeypatch.setattr(UdpIO, "drain", counted)
            for _ in range(ROUNDS):
                await stream.send(b"ping")
                assert await stream.receive() == b"ping"
            monkeypatch.setattr(UdpIO, "drain", drain)
            assert calls[0] >= 2 * ROUNDS  # both ends read every datagram
            # was one empty read per datagram at each end (2 per round trip)
            assert empty[0] <= 2 * ROUNDS // (SPARSE_RUN + 1) + 4
            for index in range(BURST):  # the server is reading sparsely now
                await stream.send(index.to_bytes(4, "big"))
            with anyio.fail_after(10):
                await burst_done.wait()
            assert got == [index.to_bytes(4, "big") for index in range(BURST)]
            group.cancel_scope.cancel()

    _run(runtime, main)
