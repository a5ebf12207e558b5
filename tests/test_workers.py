"""STTNode(workers=N): N processes share the port, each serving the peers the kernel hashes to
it, with the same identity; stopping the node stops them all."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys

import pytest

from stt_asyncio import STTNode, UsageError

from .worker_handler import echo_pid

pytestmark = pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT")
                                or not sys.platform.startswith("linux"),
                                reason="SO_REUSEPORT worker processes")

CLIENTS = 16


async def _ask(address: tuple[str, int], node_id: bytes, index: int) -> tuple[int, bytes]:
    async with STTNode() as client:  # a node per client: a source port per client
        session = await client.connect(address, node_id, timeout=20)
        stream = session.open_stream()
        await stream.send(b"hello %d" % index)
        pid, _, echoed = (await asyncio.wait_for(stream.receive(), 20)).partition(b":")
        await session.close()
        return int(pid), echoed


def test_two_workers_share_the_port_and_both_serve() -> None:
    async def main() -> None:
        async with STTNode(workers=2) as server:
            serving = asyncio.ensure_future(server.serve(echo_pid))
            for _ in range(600):  # until the spawned worker has bound the port
                if server.workers_alive() == 1:
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.5)
            answers = await asyncio.gather(*(_ask(server.address, server.node_id, i)
                                             for i in range(CLIENTS)))
            assert [echoed for _, echoed in answers] == [b"hello %d" % i for i in range(CLIENTS)]
            pids = {pid for pid, _ in answers}
            assert len(pids) == 2  # 2 / 2**16 odds that the kernel hashed all 16 to one worker
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            assert server.workers_alive() == 0

    asyncio.run(main())


def test_workers_need_udp() -> None:
    async def main() -> None:
        with pytest.raises(UsageError, match="UDP"):
            await STTNode(workers=2, transport="websocket").start()

    asyncio.run(main())


def test_one_worker_serves_in_process() -> None:
    async def main() -> None:
        async with STTNode() as server:
            serving = asyncio.ensure_future(server.serve(echo_pid))
            pid, echoed = await _ask(server.address, server.node_id, 7)
            assert echoed == b"hello 7" and server.workers_alive() == 0
            assert pid == os.getpid()  # served in this process
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving

    asyncio.run(main())


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_workers_on_each_backend(backend: str) -> None:
    import anyio

    from stt_anyio import STTNode as AnyioNode

    async def ask(address: tuple[str, int], node_id: bytes, index: int,
                  answers: list[tuple[int, bytes]]) -> None:
        async with AnyioNode() as client:
            session = await client.connect(address, node_id, timeout=20)
            stream = session.open_stream()
            await stream.send(b"hello %d" % index)
            with anyio.fail_after(20):
                pid, _, echoed = (await stream.receive()).partition(b":")
            await session.close()
            answers.append((int(pid), echoed))

    async def main() -> None:
        async with AnyioNode(workers=2) as server:
            async with anyio.create_task_group() as group:
                group.start_soon(server.serve, echo_pid)
                for _ in range(600):
                    if server.workers_alive() == 1:
                        break
                    await anyio.sleep(0.05)
                await anyio.sleep(0.5)
                answers: list[tuple[int, bytes]] = []
                async with anyio.create_task_group() as clients:
                    for index in range(CLIENTS):
                        clients.start_soon(ask, server.address, server.node_id, index, answers)
                assert sorted(e for _, e in answers) == sorted(b"hello %d" % i
                                                               for i in range(CLIENTS))
                assert len({pid for pid, _ in answers}) == 2
                group.cancel_scope.cancel()
            assert server.workers_alive() == 0

    anyio.run(main, backend=backend)
