"""Multi-process nodes: ``STTNode(workers=N)`` serves from N processes sharing one UDP port.

Every worker binds the port with ``SO_REUSEPORT`` and the same identity. The kernel hashes each
peer address to one of the sockets, so a peer's every datagram reaches the same worker. That
worker owns the peer's sessions outright: nothing is shared, no datagram is forwarded.

The process that calls ``serve(handler)`` is worker 0. It binds first (so ``port=0`` works),
starts N-1 more with ``multiprocessing``'s spawn method and waits until each has bound. Each
worker runs ``handler(session)`` for the sessions it accepts. ``handler`` must be a
module-level function, since it travels to the workers by pickling.

Stopping worker 0 (cancelling ``serve`` or closing the node) sends the others SIGTERM. Each then
closes its sessions gracefully; one that lingers past ``STOP_TIMEOUT`` is killed. A worker whose
parent disappears stops by itself.

A worker that dies changes the kernel's hash: its peers' sessions end up at other workers, which
do not know them, and time out. Linux lets only processes of the same user share the port.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from stt_proto import Identity, SessionClosed, UsageError

log = logging.getLogger("stt.workers")
Handler = Callable[[Any], Awaitable[None]]
START_TIMEOUT = 60.0  # seconds for a worker to import, bind and report
STOP_TIMEOUT = 5.0
PARENT_POLL = 1.0  # seconds between a worker's checks that its parent is alive


def bind_shared(sock: socket.socket, address: tuple[str, int]) -> None:
    """Bind ``sock`` so that other workers may bind the same address."""
    option = getattr(socket, "SO_REUSEPORT", None)
    if option is None:
        raise UsageError("workers > 1 needs SO_REUSEPORT, which this platform lacks")
    sock.setsockopt(socket.SOL_SOCKET, option, 1)
    sock.bind(address)


@attrs.frozen
class WorkerSpec:
    """What one spawned worker needs to rebuild the node: picklable values only."""

    index: int
    runtime: str  # "asyncio", "uvloop" or an anyio backend name ("trio", ...)
    settings: dict[str, Any]
    private_key: bytes
    handler: Handler
    parent_pid: int


class WorkerPool:
    """The spawned workers (1..N-1) of one node; ``start``/``stop`` block, so run them in a
    thread from async code."""

    def __init__(self, entry: Callable[[WorkerSpec, Any], None], specs: list[WorkerSpec]) -> None:
        self._entry = entry
        self._specs = specs
        self._context = multiprocessing.get_context("spawn")
        self.processes: list[Any] = []

    def start(self) -> None:
        ready = self._context.Queue()
        for spec in self._specs:
            process = self._context.Process(target=self._entry, args=(spec, ready),
                                            name=f"stt-worker-{spec.index}", daemon=True)
            process.start()
            self.processes.append(process)
        try:
            for _ in self._specs:
                index, error = ready.get(timeout=START_TIMEOUT)
                if error:
                    raise UsageError(f"worker {index} failed to start: {error}")
        except BaseException:
            self.stop()
            raise
        finally:
            ready.close()

    def alive(self) -> int:
        return sum(p.is_alive() for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes:
            process.join(STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        self.processes.clear()


def worker_specs(node: Any, handler: Handler, runtime: str) -> list[WorkerSpec]:
    """Specs for workers 1..N-1 of ``node``, which is bound (its port is the shared one)."""
    config = node.config
    settings = {f: getattr(config, f) for f in config.__slots__ if not f.startswith("__")}
    settings["port"] = node.address[1]
    return [WorkerSpec(index, runtime, settings, node.identity.private_bytes(), handler,
                       os.getpid()) for index in range(1, config.workers)]


async def serve_sessions(node: Any, handler: Handler) -> None:
    """Run ``handler`` for each session ``node`` accepts, until it closes; cancelling this
    cancels the handlers."""
    tasks: set[asyncio.Task[None]] = set()

    def finished(task: asyncio.Task[None]) -> None:
        tasks.discard(task)
        error = None if task.cancelled() else task.exception()
        if error is not None and not isinstance(error, SessionClosed):  # closed: normal end
            log.error("session handler failed", exc_info=error)

    try:
        async for session in node.sessions():
            task = asyncio.ensure_future(handler(session))
            tasks.add(task)
            task.add_done_callback(finished)
    finally:
        for task in list(tasks):
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def start_worker_node(node_class: Any, spec: WorkerSpec, ready: Any) -> Any:
    """Build and start a spawned worker's node (either runtime's ``STTNode``) and report to the
    parent; None when it failed, which is reported too."""
    node = node_class(Identity.from_private_bytes(spec.private_key), **spec.settings)
    try:
        await node.start()
    except Exception as exc:
        ready.put((spec.index, repr(exc)))
        return None
    ready.put((spec.index, None))
    return node


def asyncio_worker(spec: WorkerSpec, ready: Any) -> None:
    """A spawned worker's main on asyncio or uvloop: rebuild the node, report, serve."""
    from .node import STTNode

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        loop.add_signal_handler(signal.SIGTERM, stop.set)
        node = await start_worker_node(STTNode, spec, ready)
        if node is None:
            return
        try:
            serving = asyncio.ensure_future(serve_sessions(node, spec.handler))
            while not stop.is_set() and os.getppid() == spec.parent_pid:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), PARENT_POLL)
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        finally:
            await node.close()

    if spec.runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.run(main())
    else:
        asyncio.run(main())


__all__ = ["WorkerPool", "WorkerSpec", "bind_shared", "serve_sessions", "worker_specs"]
