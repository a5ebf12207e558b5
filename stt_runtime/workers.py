"""Multi-process nodes: ``STTNode(workers=N)`` serves from N processes sharing one UDP port.

Every worker binds the port with ``SO_REUSEPORT`` and the same identity. The kernel hashes each
peer address to one of the sockets, so a peer's every datagram reaches the same worker. That
worker owns the peer's sessions outright: nothing is shared, no datagram is forwarded.

The process that calls ``serve(handler)`` is worker 0. It binds first (so ``port=0`` works),
starts N-1 more with ``multiprocessing``'s spawn method and waits until each has bound. Each
worker runs ``handler(session)`` for the sessions it accepts. ``handler`` must be a
module-level function, since it travels to the workers by pickling.

A worker that exits is replaced (at most once per ``RESTART_BACKOFF`` each). Stopping
worker 0 (cancelling ``serve`` or closing the node) sends the others SIGTERM. Each then
closes its sessions gracefully; one that lingers past ``STOP_TIMEOUT`` is killed. A worker whose
parent disappears stops by itself.

A worker that dies changes the kernel's hash: its peers' sessions end up at other workers, which
do not know them, and time out; new sessions are spread over the survivors and the replacement.
Linux lets only processes of the same user share the port.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import attrs

from stt_proto import Identity, SessionClosed, UsageError

log = logging.getLogger("stt.workers")
Handler = Callable[[Any], Awaitable[None]]
START_TIMEOUT = 60.0  # seconds for a worker to import, bind and report
STOP_TIMEOUT = 5.0
PARENT_POLL = 1.0  # seconds between a worker's checks that its parent is alive
SUPERVISE_INTERVAL = 1.0  # seconds between worker 0's checks for workers that exited
RESTART_BACKOFF = 5.0  # a worker is restarted no sooner than this after its last start
HANDLER_FAILED = 1  # the application error code of a session whose serve() handler raised


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
    node_class: Any  # the binding's STTNode, pickled by reference (its module is imported)


class WorkerPool:
    """The spawned workers (1..N-1) of one node. ``start``, ``replace_dead`` and ``stop``
    block (process start-up and joins), so async code runs them in a thread."""

    def __init__(self, entry: Callable[[WorkerSpec, Any], None], specs: list[WorkerSpec]) -> None:
        self._entry = entry
        self._specs = specs
        self._context = multiprocessing.get_context("spawn")
        self._ready: Any = None
        self._started_at: dict[int, float] = {}
        self._stopping = False
        self.processes: dict[int, Any] = {}  # worker index -> its process
        self.restarts = 0
        self._lock = threading.Lock()  # replace_dead and stop run in executor threads

    def start(self) -> None:
        """Start every worker and wait until each has bound the port (or raise)."""
        if self._specs:
            try:
                pickle.dumps(self._specs[0].handler)
            except Exception as exc:
                raise UsageError("with workers > 1 the handler must be a module-level function: "
                                 f"it is sent to the worker processes ({exc})") from None
        self._ready = self._context.Queue()
        for spec in self._specs:
            self._spawn(spec)
        try:
            for _ in self._specs:
                index, error = self._ready.get(timeout=START_TIMEOUT)
                if error:
                    raise UsageError(f"worker {index} failed to start: {error}")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, spec: WorkerSpec) -> None:
        process = self._context.Process(target=self._entry, args=(spec, self._ready),
                                        name=f"stt-worker-{spec.index}", daemon=True)
        process.start()
        self.processes[spec.index] = process
        self._started_at[spec.index] = time.monotonic()

    def replace_dead(self) -> int:
        """Start a new worker for each one that has exited; one that lived less than
        ``RESTART_BACKOFF`` waits that long first, so a crashing worker cannot spin. Returns
        how many were started."""
        with self._lock:
            return self._replace_dead()

    def _replace_dead(self) -> int:
        if self._stopping:
            return 0
        while self._ready is not None and not self._ready.empty():
            index, error = self._ready.get_nowait()
            if error:
                log.error("worker %d failed to start: %s", index, error)
        started = 0
        now = time.monotonic()
        for spec in self._specs:
            process = self.processes.get(spec.index)
            if process is None or process.is_alive():
                continue
            if now - self._started_at[spec.index] < RESTART_BACKOFF:
                continue
            process.join()
            log.warning("worker %d exited with %s; starting another", spec.index,
                        process.exitcode)
            self._spawn(spec)
            self.restarts += 1
            started += 1
        return started

    def alive(self) -> int:
        return sum(p.is_alive() for p in self.processes.values())

    def stop(self) -> None:
        with self._lock:
            self._stopping = True
            processes = list(self.processes.values())
        self._stop(processes)

    def _stop(self, processes: list[Any]) -> None:
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        for process in processes:
            process.join(STOP_TIMEOUT)
            if process.is_alive():
                process.kill()
                process.join()
        self.processes.clear()
        if self._ready is not None:
            self._ready.close()
            self._ready = None


def worker_specs(node: Any, handler: Handler, runtime: str,
                 node_class: Any) -> list[WorkerSpec]:
    """Specs for workers 1..N-1 of ``node``, which is bound (its port is the shared one); each
    worker builds a ``node_class``."""
    settings = node.settings.keywords()
    settings["port"] = node.address[1]
    return [WorkerSpec(index, runtime, settings, node.identity.private_bytes(), handler,
                       os.getpid(), node_class) for index in range(1, settings["workers"])]


async def run_handler(handler: Handler, session: Any) -> None:
    """Run one ``serve()`` handler (either runtime). One that raises closes its session with
    ``HANDLER_FAILED`` and a reason naming the exception, so the peer sees SessionClosed at
    once instead of waiting for a reply that never comes; the failure is logged."""
    try:
        await handler(session)
    except SessionClosed:
        pass  # the peer closed, or the session was lost: a normal end
    except Exception as exc:
        peer = getattr(session, "remote_address", None)
        log.warning("session handler %s failed for peer %s; closing its session",
                    getattr(handler, "__qualname__", handler), peer, exc_info=True)
        with contextlib.suppress(Exception):
            await session.close(HANDLER_FAILED,
                                f"the server's handler failed: {type(exc).__name__}: {exc}")


async def start_worker_node(spec: WorkerSpec, ready: Any) -> Any:
    """Build and start a spawned worker's node (``spec.node_class``, either binding's
    ``STTNode``) and report to the parent; None when it failed, which is reported too."""
    node = spec.node_class(Identity.from_private_bytes(spec.private_key), **spec.settings)
    try:
        await node.start()
    except Exception as exc:
        ready.put((spec.index, repr(exc)))
        return None
    ready.put((spec.index, None))
    return node


__all__ = ["HANDLER_FAILED", "PARENT_POLL", "RESTART_BACKOFF", "START_TIMEOUT", "STOP_TIMEOUT",
           "SUPERVISE_INTERVAL", "Handler", "WorkerPool", "WorkerSpec", "bind_shared",
           "run_handler", "start_worker_node", "worker_specs"]
