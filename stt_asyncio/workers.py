"""``STTNode(workers=N)`` on asyncio (uvloop too): worker 0's supervision and the spawned
workers' main. The pool itself, shared with ``stt_anyio``, is ``stt_runtime.workers``: one port
shared with SO_REUSEPORT, one identity, each worker owning the sessions steered to it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from typing import Any

from stt_runtime import workers as shared  # the pool, the specs, run_handler


async def supervise(pool: shared.WorkerPool) -> None:
    """Worker 0's watch: replace workers that exit, until cancelled."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(shared.SUPERVISE_INTERVAL)
        await loop.run_in_executor(None, pool.replace_dead)


async def serve_sessions(node: Any, handler: shared.Handler) -> None:
    """Run ``handler`` for each session ``node`` accepts, until it closes; cancelling this
    cancels the handlers."""
    tasks: set[asyncio.Task[None]] = set()
    try:
        async for session in node.sessions():
            task = asyncio.ensure_future(shared.run_handler(handler, session))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
    finally:
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


def asyncio_worker(spec: shared.WorkerSpec, ready: Any, sock: socket.socket) -> None:
    """A spawned worker's main on asyncio or uvloop: rebuild the node on ``sock`` (its socket
    of the group, handed by worker 0), report, serve."""

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        node = await shared.start_worker_node(spec, ready, sock)
        if node is None:
            return
        try:
            serving = asyncio.ensure_future(serve_sessions(node, spec.handler))
            while not stop.is_set() and os.getppid() == spec.parent_pid:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), shared.PARENT_POLL)
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        finally:
            await node.close()

    if spec.runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.run(main())
    else:
        asyncio.run(main())


__all__ = ["asyncio_worker", "serve_sessions", "supervise"]
