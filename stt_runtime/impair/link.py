"""The impaired link on real UDP sockets: listen, forward through a :class:`Forwarder`, reply.

Each client (source address) gets a socket of its own toward the target, so the target's
replies can be told apart and sent back to the right client. The loop waits on the sockets
with a timeout until the next datagram is due, then sends everything due by then: a wake-up
that comes late (timers, the scheduler, the GIL) delays those datagrams but does not lower
the rate, since the link's clock runs on the model's departure times, not on wake-ups.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
import time
from collections.abc import Callable

from stt_proto.events import Address
from stt_proto.sim import LinkProfile

from .forwarder import Forwarder, ImpairStats

BATCH = 256  # datagrams read from one socket per wake-up, so neither direction starves
MAX_DATAGRAM = 65535
SOCKET_BUFFER = 4 << 20
SELECT_LIMIT = 1000  # select()'s descriptor set holds 1024 (FD_SETSIZE)


def _resolve(address: tuple[str, int]) -> tuple[int, Address]:
    host, port = address
    family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
    return family, (str(sockaddr[0]), int(sockaddr[1]))


def _udp_socket(family: int, buffer: int) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        with contextlib.suppress(OSError):  # best effort: the kernel caps it at rmem_max
            sock.setsockopt(socket.SOL_SOCKET, option, buffer)
    sock.setblocking(False)
    return sock


class ImpairedLink:
    """A UDP forwarder from ``listen`` to ``target`` that impairs both directions with the
    simulator's link model (``forward``: clients to target; ``back``: replies, default the
    same). Use it as a context manager (a thread of its own) or call :meth:`run` in the
    caller's thread (the ``stt impair`` command)."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int],
                 forward: LinkProfile, back: LinkProfile | None = None, *,
                 seed: int | None = None, max_clients: int = 1024,
                 socket_buffer: int = SOCKET_BUFFER,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.forwarder = Forwarder(forward, back, seed)
        self._listen_family, listen_addr = _resolve(listen)
        self._target_family, self.target = _resolve(target)
        self._buffer = socket_buffer
        self._max_clients = max_clients
        self._clock = clock
        self._sock = _udp_socket(self._listen_family, socket_buffer)
        try:
            self._sock.bind(listen_addr)
        except OSError:
            self._sock.close()
            raise
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        # select() wakes within microseconds of the timeout, epoll within a millisecond: use
        # it while every descriptor fits in its set, epoll beyond (see _register)
        self._selector: selectors.BaseSelector = selectors.SelectSelector()
        self._register(self._sock, None)
        self._register(self._wake_r, self._wake_r)
        self._upstream: dict[Address, socket.socket] = {}
        self._last_seen: dict[Address, float] = {}
        self._reply_to: dict[Address, tuple[object, ...]] = {}  # IPv6: with its scope id
        self._send_errors = 0
        self._stopping = False
        self._closed = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards the counters' snapshot against the loop

    @property
    def address(self) -> Address:
        """Where clients send: the bound listening address (its port when 0 was asked)."""
        host, port = self._sock.getsockname()[:2]
        return str(host), int(port)

    def stats(self) -> ImpairStats:
        """The counters so far (a snapshot; safe from any thread)."""
        with self._lock:
            return self.forwarder.stats(len(self._upstream), self._send_errors)

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> ImpairedLink:
        """Run the link in a daemon thread until :meth:`close`."""
        if self._thread is not None:
            raise RuntimeError("the link is already running")
        self._thread = threading.Thread(target=self.run, name="stt-impair", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Make :meth:`run` return, for good (from any thread, or a signal handler)."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"\0")

    def close(self) -> None:
        """Stop the link and close its sockets; datagrams still on the link are dropped."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        if self._closed:
            return
        self._closed = True
        self._selector.close()
        for sock in (self._sock, self._wake_r, self._wake_w, *self._upstream.values()):
            sock.close()

    def __enter__(self) -> ImpairedLink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def run(self, duration: float | None = None) -> None:
        """Forward until :meth:`stop` (or for ``duration`` seconds)."""
        clock = self._clock
        end = None if duration is None else clock() + duration
        while not self._stopping:
            now = clock()
            if end is not None and now >= end:
                break
            self._release(now)
            due = self.forwarder.next_time()
            timeout = None if due is None else max(0.0, due - clock())
            if end is not None:
                left = max(0.0, end - now)
                timeout = left if timeout is None else min(timeout, left)
            for key, _ in self._selector.select(timeout):
                if key.data is None:
                    self._from_clients()
                elif key.data is self._wake_r:
                    self._drain_wake()
                else:
                    self._from_target(key.fileobj, key.data)  # type: ignore[arg-type]

    # -- one wake-up -----------------------------------------------------------------------------

    def _release(self, now: float) -> None:
        with self._lock:
            to_target, to_clients = self.forwarder.due(now)
        for client, data in to_target:
            upstream = self._upstream.get(client)
            if upstream is not None:
                self._send(upstream, data, None)
        for client, data in to_clients:
            self._send(self._sock, data, self._reply_to.get(client, client))

    def _send(self, sock: socket.socket, data: bytes, to: tuple[object, ...] | None) -> None:
        try:
            if to is None:
                sock.send(data)
            else:
                sock.sendto(data, to)
        except OSError:  # a full buffer, or the target's port unreachable (ICMP)
            self._send_errors += 1

    def _from_clients(self) -> None:
        for _ in range(BATCH):
            try:
                data, source = self._sock.recvfrom(MAX_DATAGRAM)
            except OSError:  # nothing left, or an ICMP error reported on the socket
                return
            client: Address = (str(source[0]), int(source[1]))
            now = self._clock()
            if client not in self._upstream:
                if not self._add_client(client):
                    continue
                self._reply_to[client] = tuple(source)
            self._last_seen[client] = now
            with self._lock:
                self.forwarder.from_client(client, data, now)

    def _from_target(self, upstream: socket.socket, client: Address) -> None:
        for _ in range(BATCH):
            try:
                data = upstream.recv(MAX_DATAGRAM)
            except OSError:
                return
            with self._lock:
                self.forwarder.from_target(client, data, self._clock())

    def _add_client(self, client: Address) -> bool:
        if len(self._upstream) >= self._max_clients:  # forget the quietest client
            oldest = min(self._last_seen, key=self._last_seen.__getitem__)
            self._drop_client(oldest)
        upstream = _udp_socket(self._target_family, self._buffer)
        try:
            upstream.connect(self.target)
        except OSError:
            upstream.close()
            self._send_errors += 1
            return False
        self._upstream[client] = upstream
        self._register(upstream, client)
        return True

    def _register(self, sock: socket.socket, data: object) -> None:
        if (isinstance(self._selector, selectors.SelectSelector)
                and sock.fileno() >= SELECT_LIMIT):
            precise, self._selector = self._selector, selectors.DefaultSelector()
            for key in precise.get_map().values():
                self._selector.register(key.fileobj, selectors.EVENT_READ, key.data)
            precise.close()
        self._selector.register(sock, selectors.EVENT_READ, data)

    def _drop_client(self, client: Address) -> None:
        upstream = self._upstream.pop(client)
        self._last_seen.pop(client, None)
        self._reply_to.pop(client, None)
        self._selector.unregister(upstream)
        upstream.close()

    def _drain_wake(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
