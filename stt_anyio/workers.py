"""``STTNode(workers=N)`` on anyio: the worker processes of ``stt_runtime.workers`` (one
port shared with SO_REUSEPORT, one identity, each worker owning the sessions steered to it), with
the sessions served in a task group and each worker on the parent's anyio backend."""

from __future__ import annotations

import os
import signal
import socket
from typing import Any

import anyio

from stt_proto import UsageError
from stt_runtime import workers as shared  # the pool, the specs, run_handler


async def supervise(pool: shared.WorkerPool) -> None:
    """Worker 0's watch: replace workers that exit, until cancelled."""
    while True:
        await anyio.sleep(shared.SUPERVISE_INTERVAL)
        await anyio.to_thread.run_sync(pool.replace_dead)


async def serve_sessions(node: Any, handler: shared.Handler) -> None:
    """Run ``handler`` for each session ``node`` accepts, until it closes; cancelling this
    cancels the handlers. One that raises closes its session (``run_handler``)."""

    async with anyio.create_task_group() as group:
        while True:
            try:
                session = await node.accept()
            except UsageError:
                return  # the node closed
            group.start_soon(shared.run_handler, handler, session)


def anyio_worker(spec: shared.WorkerSpec, ready: Any, sock: socket.socket) -> None:
    """A spawned worker's main: rebuild the node on ``spec.runtime`` and ``sock`` (its socket
    of the group, handed by worker 0), report, serve until SIGTERM or until the parent is
    gone."""
    async def main() -> None:
        node = await shared.start_worker_node(spec, ready, sock)
        if node is None:
            return
        try:
            async with anyio.create_task_group() as group:
                async def on_sigterm() -> None:
                    with anyio.open_signal_receiver(signal.SIGTERM) as signals:
                        async for _ in signals:
                            break
                    group.cancel_scope.cancel()

                async def watch_parent() -> None:
                    while os.getppid() == spec.parent_pid:
                        await anyio.sleep(shared.PARENT_POLL)
                    group.cancel_scope.cancel()

                group.start_soon(on_sigterm)
                group.start_soon(watch_parent)
                await serve_sessions(node, spec.handler)
                group.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await node.close()

    anyio.run(main, backend=spec.runtime)


__all__ = ["anyio_worker", "serve_sessions", "supervise"]
