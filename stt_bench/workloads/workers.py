"""Multi-core scaling: aggregate goodput into one node served by N worker processes
(``STTNode(workers=N)``), from client processes that each hold one session.

The clients connect, wait at a barrier, then each sends 1 MiB messages for the same interval
and reports what the server acknowledged; the aggregate is the sum over the interval. Run with
workers=1 and workers=2 in one invocation to get the ratio. The machine must have cores for the
clients too: on 2 cores the clients and the workers compete, so the ratio shows the contention
rather than the scaling. Many sessions per client process, with each worker's own bytes and
sessions: ``workers_many.py`` (what ``python -m stt_bench`` runs).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time
from typing import Any

from stt_asyncio import STTNode

from ..common import MiB, on_loopback

CLIENT_TIMEOUT = 120.0


async def discard(session: Any) -> None:
    """The server's handler: read every stream to its end."""
    async for stream in session.streams():
        async for _ in stream:
            pass


def _client(address: tuple[str, int], node_id: bytes, settings: dict[str, Any],
            seconds: float, start: Any, results: Any) -> None:
    async def main() -> int:
        async with STTNode(**on_loopback(settings)) as node:
            session = await node.connect(address, node_id, timeout=30)
            stream = session.open_stream()
            message = os.urandom(MiB)
            await asyncio.get_running_loop().run_in_executor(None, start.wait)
            sent = 0
            finish = time.perf_counter() + seconds
            while time.perf_counter() < finish:
                await stream.send(message)
                sent += len(message)
            await stream.close()
            await stream.flush()
            await session.close()
            return sent

    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        results.put(uvloop.run(main()))
    except ImportError:
        results.put(asyncio.run(main()))
    except BaseException as exc:  # reported, so the parent does not wait forever
        results.put(repr(exc))


async def workers_goodput(workers: int, clients: int, seconds: float,
                          frame_size: int = 16384) -> dict[str, Any]:
    """Aggregate bytes/s into a node with ``workers`` processes from ``clients`` processes."""
    settings: dict[str, Any] = {"max_frame_size": frame_size, "recv_buffer_size": 4 * MiB,
                                "send_buffer_size": 4 * MiB}
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    loop = asyncio.get_running_loop()
    async with STTNode(workers=workers, **on_loopback(settings)) as server:
        serving = asyncio.ensure_future(server.serve(discard))
        while server.workers_alive() < workers - 1:
            await asyncio.sleep(0.05)
        processes = [context.Process(target=_client, daemon=True,
                                     args=(server.address, server.node_id, settings, seconds,
                                           start, results)) for _ in range(clients)]
        for process in processes:
            process.start()
        await asyncio.sleep(1.0 + 0.3 * clients)  # imports and handshakes before the start
        began = time.perf_counter()
        start.set()
        reports = [await loop.run_in_executor(None, results.get, True, CLIENT_TIMEOUT)
                   for _ in processes]
        elapsed = time.perf_counter() - began
        for process in processes:
            process.join(5)
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
    failed = [r for r in reports if not isinstance(r, int)]
    if failed:
        raise RuntimeError(f"clients failed: {failed}")
    return {"workers": workers, "clients": clients, "bytes": sum(reports),
            "goodput": sum(reports) / elapsed, "seconds": elapsed, "cpus": os.cpu_count()}
