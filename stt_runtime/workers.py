"""Multi-process nodes: ``STTNode(workers=N)`` serves from N processes sharing one UDP port.

Worker 0 (the process that calls ``serve(handler)``) owns every socket of the port's
``SO_REUSEPORT`` group: it binds them all when the node starts (the first one while nobody
else holds the address, so a port in use fails as with one worker) and attaches a classic BPF
program to the group that steers each datagram by the session id in its header
(``steering.py``): a new session to the worker its random id names, every later packet to the
worker that owns the session, whose index is encoded in the id it chose (``stt_proto/cids.py``).
A session therefore stays with its worker when the peer's address changes. ``serve`` starts
N-1 more with ``multiprocessing``'s spawn method and hands each its socket (the spawned
process inherits the descriptor); each worker runs ``handler(session)`` for the sessions it
accepts. ``handler`` must be a module-level function, since it travels by pickling.

A worker that exits is replaced (at most once per ``RESTART_BACKOFF`` each) and the
replacement takes the same socket, which worker 0 kept open: datagrams that arrived meanwhile
wait in it, and no other worker's sessions move. The dead worker's own sessions are lost; its
peers reconnect. The program picks only the group's own sockets, so another process of the same
user that binds the same address receives nothing. Stopping worker 0 (cancelling ``serve`` or
closing the node) sends the others SIGTERM. Each then closes its sessions gracefully; one that
lingers past ``STOP_TIMEOUT`` is killed. A worker whose parent disappears stops by itself.

New sessions are balanced over the workers (``stt_proto/placement.py``): each worker publishes
its count of inbound sessions in a small shared array (:func:`shared_loads`, made by worker 0
and handed to each worker in its spec, with the RETRY tokens' key), and one holding clearly more
than the least-loaded worker answers a new INITIAL with a RETRY that sends the initiator there.
A worker that is not running has an ``ABSENT`` slot and is never chosen.

Where the program cannot be attached (not Linux, an old kernel, a refusal), the kernel hashes
each peer's address to a socket instead: a WARNING is logged and ``get_stats()["steering"]``
says ``"address-hash"`` (``"session-id"`` otherwise).
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
from stt_proto.placement import ABSENT, LoadBalancer

from . import steering
from ._address import open_udp_socket
from .udp_io import SOL_UDP, UDP_GRO, UdpIO

log = logging.getLogger("stt.workers")
Handler = Callable[[Any], Awaitable[None]]
START_TIMEOUT = 60.0  # seconds for a worker to import, take its socket and report
STOP_TIMEOUT = 5.0
PARENT_POLL = 1.0  # seconds between a worker's checks that its parent is alive
SUPERVISE_INTERVAL = 0.25  # seconds between worker 0's checks for workers that exited
RESTART_BACKOFF = 5.0  # a worker is restarted no sooner than this after its last start
HANDLER_FAILED = 1  # the application error code of a session whose serve() handler raised


def bind_shared(sock: socket.socket, address: tuple[str, int]) -> None:
    """Bind worker 0's socket, the first of the port's group (``steering.bind_first``)."""
    steering.bind_first(sock, address)


@attrs.define(eq=False)
class WorkerGroup:
    """A process's place among a node's workers. Worker 0's holds every socket of the group
    (index -> socket; its own is the node's); a spawned worker's, the one it was handed."""

    index: int
    count: int
    sockets: dict[int, socket.socket]
    steering: str  # steering.SESSION_ID or steering.ADDRESS_HASH
    settings: Any = None  # worker 0's SocketSettings: how to bind the others' sockets
    loads: Any = None  # shared_loads(): each worker's inbound sessions (session-id steering)
    retry_key: bytes = b""  # the RETRY tokens' key, the same in every worker

    def take(self) -> tuple[socket.socket, tuple[int, int]]:
        """A spawned worker's socket and the buffer sizes it has (``bind_udp``'s result)."""
        sock = self.sockets[self.index]
        sock.setblocking(False)
        return sock, (sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2,
                      sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF) // 2)

    def open_members(self) -> None:
        """Bind worker 0's sockets for workers 1..N-1 (those it lacks), in index order, on its
        own socket's address."""
        settings = self.settings
        first = self.sockets[0]
        port = first.getsockname()[1]
        for index in range(1, self.count):
            if index in self.sockets:
                continue
            sock, host = open_udp_socket(settings.host)
            try:
                for option, size in ((socket.SO_RCVBUF, settings.recv_buffer_size),
                                     (socket.SO_SNDBUF, settings.send_buffer_size)):
                    sock.setsockopt(socket.SOL_SOCKET, option, size)
                steering.bind_member(sock, (host, port))
            except BaseException:
                sock.close()
                raise
            self.sockets[index] = sock

    def steer(self, serving: bool) -> None:
        """Worker 0 spreads the group over all N workers (``serve`` runs) or keeps every
        datagram itself. With address hashing the other sockets exist only while serving."""
        if self.steering == steering.SESSION_ID:
            if self.sockets[0].fileno() == -1:
                return  # the node closed first: the group is gone
            reason = steering.attach(self.sockets[0], self.count if serving else 1)
            if reason is not None:  # attached once already: not expected to fail now
                log.error("re-steering the worker group failed: %s", reason)
        elif not serving:
            self.close()

    def close(self) -> None:
        """Close the sockets this process holds for other workers (its own is the node's)."""
        for index in [i for i in self.sockets if i != self.index]:
            self.sockets.pop(index).close()


def join_group(node: Any) -> WorkerGroup | None:
    """Place a node that has just made its socket and endpoint (``NodeCore._bind_udp``) in its
    worker group: None with one worker. Worker 0 makes the group (its socket is index 0) and,
    where the steering program attaches, binds the other workers' sockets at once, so the
    kernel numbers them 0..N-1 before anyone else can join; a spawned worker finds its group
    set (``start_worker_node``). The endpoint's local ids then name the worker."""
    count = node.settings.socket.workers
    if count == 1:
        return None
    group: WorkerGroup | None = node._group
    if group is None:  # worker 0
        group = WorkerGroup(0, count, {0: node._sock}, steering.SESSION_ID, node.settings.socket)
        try:
            group.open_members()  # the group exists once a second socket joins the first
        except BaseException:
            group.close()
            node._sock.close()  # start() fails: nothing else would close it
            raise
        reason = steering.attach(node._sock, 1)  # every datagram to worker 0 until serve()
        if reason is not None:
            group.steering = steering.ADDRESS_HASH
            group.close()  # bound again by serve(), as the kernel's hash spreads over them
            log.warning("workers=%d: datagrams are steered by the kernel's hash of each peer's "
                        "address, not by session id (%s): a session whose peer changes address "
                        "may reach another worker and time out, and another process of this "
                        "user bound to the port may take a share", count, reason)
    if group.steering == steering.SESSION_ID:
        quiet_gro(node._udp)
        if group.loads is None and group.index == 0:
            group.loads = shared_loads(count)
    if not group.retry_key:
        group.retry_key = os.urandom(32)
    # Redirects work only where the program steers INITIALs by the id a RETRY names.
    placement = None if group.loads is None else LoadBalancer(group.loads, group.index)
    # RETRY tokens one worker makes and another checks: time.monotonic() is one clock for
    # every process of the machine, the node's own (trio's, say) may not be.
    offset = time.monotonic() - node._now()
    node._endpoint.endpoint.join_workers((group.index, count), placement, group.retry_key,
                                         offset)
    return group


def shared_loads(count: int) -> Any:
    """The group's array of inbound sessions per worker, in shared memory that spawned workers
    inherit through their spec: worker 0's slot 0, the others :data:`ABSENT` until each starts
    (``placement.py``). Each slot has one writer, its worker; everyone reads them all."""
    loads = multiprocessing.get_context("spawn").RawArray("q", count)
    for index in range(1, count):
        loads[index] = ABSENT
    return loads


def quiet_gro(udp: UdpIO) -> None:
    """Turn UDP GRO off on a steered socket: GRO coalesces a peer's datagrams before the kernel
    picks a socket, and the program sees only the first, so two sessions' datagrams from one
    address could reach one worker. Segmentation offload (sending) stays."""
    if udp.gro:
        with contextlib.suppress(OSError):
            udp.sock.setsockopt(SOL_UDP, UDP_GRO, 0)
        udp.gro = False


@attrs.frozen
class WorkerSpec:
    """What one spawned worker needs to rebuild the node: picklable values only (its socket
    travels beside it)."""

    index: int
    runtime: str  # "asyncio", "uvloop" or an anyio backend name ("trio", ...)
    settings: dict[str, Any]
    private_key: bytes
    handler: Handler
    parent_pid: int
    node_class: Any  # the binding's STTNode, pickled by reference (its module is imported)
    steering: str = steering.ADDRESS_HASH
    loads: Any = None  # the group's shared_loads() (inherited by the spawned process)
    retry_key: bytes = b""


class WorkerPool:
    """The spawned workers (1..N-1) of one node, each on its socket of ``group``. ``start``,
    ``replace_dead`` and ``stop`` block (process start-up and joins), so async code runs them
    in a thread."""

    def __init__(self, entry: Callable[[WorkerSpec, Any, socket.socket], None],
                 specs: list[WorkerSpec], group: WorkerGroup) -> None:
        self._entry = entry
        self._specs = specs
        self._group = group
        self._context = multiprocessing.get_context("spawn")
        self._ready: Any = None
        self._started_at: dict[int, float] = {}
        self._stopping = False
        self.processes: dict[int, Any] = {}  # worker index -> its process
        self.restarts = 0
        self._lock = threading.Lock()  # replace_dead and stop run in executor threads

    def start(self) -> None:
        """Start every worker on its socket and wait until each has reported (or raise)."""
        if self._specs:
            try:
                pickle.dumps(self._specs[0].handler)
            except Exception as exc:
                raise UsageError("with workers > 1 the handler must be a module-level function: "
                                 f"it is sent to the worker processes ({exc})") from None
        self._ready = self._context.Queue()
        try:
            with self._lock:
                self._group.open_members()
                self._group.steer(True)
                for spec in self._specs:
                    self._spawn(spec)
            for _ in self._specs:
                index, error = self._ready.get(timeout=START_TIMEOUT)
                if error:
                    raise UsageError(f"worker {index} failed to start: {error}")
        except BaseException:
            self.stop()
            raise

    def _spawn(self, spec: WorkerSpec) -> None:
        process = self._context.Process(
            target=self._entry, args=(spec, self._ready, self._group.sockets[spec.index]),
            name=f"stt-worker-{spec.index}", daemon=True)
        process.start()  # the socket's descriptor is passed to the new process
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
            self._absent(spec.index)  # its sessions are gone; its replacement counts anew
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
        """Stop every worker, then give worker 0 the whole group again."""
        with self._lock:
            self._stopping = True
            processes = list(self.processes.values())
        for index in range(1, self._group.count):
            self._absent(index)  # before (no redirect to a stopping worker) and after (its
        self._stop(processes)  # last counts, written while it closed its sessions)
        for index in range(1, self._group.count):
            self._absent(index)
        self._group.steer(False)

    def _absent(self, index: int) -> None:
        """No new session is sent to worker ``index``: it is not running."""
        if self._group.loads is not None:
            self._group.loads[index] = ABSENT

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
    group = getattr(node, "_group", None)
    mode = steering.ADDRESS_HASH if group is None else group.steering
    loads, key = (None, b"") if group is None else (group.loads, group.retry_key)
    return [WorkerSpec(index, runtime, settings, node.identity.private_bytes(), handler,
                       os.getpid(), node_class, mode, loads, key)
            for index in range(1, settings["workers"])]


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


async def start_worker_node(spec: WorkerSpec, ready: Any, sock: socket.socket) -> Any:
    """Build and start a spawned worker's node (``spec.node_class``, either binding's
    ``STTNode``) on ``sock``, the socket worker 0 handed it, and report to the parent; None
    when it failed, which is reported too."""
    node = spec.node_class(Identity.from_private_bytes(spec.private_key), **spec.settings)
    node._group = WorkerGroup(spec.index, spec.settings["workers"], {spec.index: sock},
                              spec.steering, loads=spec.loads, retry_key=spec.retry_key)
    try:
        await node.start()
    except Exception as exc:
        ready.put((spec.index, repr(exc)))
        return None
    ready.put((spec.index, None))
    return node


__all__ = ["HANDLER_FAILED", "PARENT_POLL", "RESTART_BACKOFF", "START_TIMEOUT", "STOP_TIMEOUT",
           "SUPERVISE_INTERVAL", "Handler", "WorkerGroup", "WorkerPool", "WorkerSpec",
           "bind_shared", "join_group", "quiet_gro", "run_handler", "shared_loads",
           "start_worker_node", "worker_specs"]
