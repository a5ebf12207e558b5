"""STTNode(workers=N): N processes share the port, each serving the sessions steered to it,
with the same identity; stopping the node stops them all. Steering itself, the socket hand-over
and restarts on the same socket: tests/test_steering.py and tests/test_steering_udp.py."""

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
            assert len(pids) == 2  # 2 / 2**16 odds that all 16 random ids named one worker
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


def test_a_worker_that_dies_is_replaced_and_new_sessions_are_served(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import signal

    from stt_runtime import workers

    monkeypatch.setattr(workers, "RESTART_BACKOFF", 0.5)

    async def main() -> None:
        async with STTNode(workers=2) as server:
            serving = asyncio.ensure_future(server.serve(echo_pid))
            for _ in range(600):
                if server.workers_alive() == 1:
                    break
                await asyncio.sleep(0.05)
            pool = server._pool
            assert pool is not None
            first = pool.processes[1].pid
            await asyncio.sleep(workers.RESTART_BACKOFF)  # long enough alive to be replaced
            os.kill(first, signal.SIGKILL)
            for _ in range(400):
                process = pool.processes[1]
                if process.pid != first and process.is_alive():
                    break
                await asyncio.sleep(0.05)
            assert pool.processes[1].pid != first and pool.restarts == 1
            await asyncio.sleep(1.0)  # the replacement binds
            answers = await asyncio.gather(*(_ask(server.address, server.node_id, i)
                                             for i in range(CLIENTS)))
            assert [echoed for _, echoed in answers] == [b"hello %d" % i for i in range(CLIENTS)]
            assert pool.processes[1].pid in {pid for pid, _ in answers}
            serving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await serving
            assert server.workers_alive() == 0

    asyncio.run(main())


def test_a_handler_that_cannot_travel_is_refused_clearly() -> None:
    async def main() -> None:
        async def local_handler(session: object) -> None:  # a closure: not picklable
            pass

        async with STTNode(workers=2) as server:
            with pytest.raises(UsageError, match="module-level"):
                await server.serve(local_handler)
            assert server.workers_alive() == 0

    asyncio.run(main())
