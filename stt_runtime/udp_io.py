"""The UDP socket work both runtimes share: draining datagrams into the endpoint and sending a
queue of them, with Linux segmentation offload where the kernel has it.

* **GSO** (``UDP_SEGMENT``, Linux 4.18+): a run of queued datagrams to one address, all of one
  size but the last, leaves in one ``sendmsg`` that the kernel (or the NIC) cuts into datagrams,
  so a burst of 1,200-byte packets costs one system call per up to 64 of them.
* **GRO** (``UDP_GRO``, Linux 5.0+): the kernel hands over such a run as one buffer with the
  segment size in a control message; it is cut back into datagrams here.

Both are probed when the socket is set up and fall back, without losing a datagram, to one
``sendto`` / ``recvfrom_into`` per datagram where the kernel, the platform or the path refuses
them. Nothing here decides anything about the protocol: it moves bytes.

One wake-up of a runtime's loop reads a bounded amount (:func:`drain_bounded`): draining
every waiting datagram (up to 4,096 reads) in one callback stalled the event loop for seconds
when each cost a handshake's cryptography, so it reads in slices of ``DRAIN_SLICE`` and stops
after ``DRAIN_TIME`` seconds or ``DRAIN_COUNT`` reads; the socket stays readable, and the loop
calls again after whatever else was ready has run.

On a dual-stack socket (``host=None``) IPv4 peers arrive as ``::ffff:a.b.c.d``; they are handed
on as plain ``a.b.c.d`` and mapped back when sent to (``_address``), so the endpoint and the
user see one form of an IPv4 peer whichever socket carries it.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
from collections import deque
from collections.abc import Callable
from itertools import islice
from time import perf_counter

from stt_proto.packet import Datagram

from ._address import is_dual_stack, plain_host, wire_address

log = logging.getLogger("stt.udp")
Address = tuple[str, int]
Receive = Callable[[memoryview, Address, float], object]
Clock = Callable[[], float]

SOL_UDP = getattr(socket, "SOL_UDP", 17)
UDP_SEGMENT = getattr(socket, "UDP_SEGMENT", 103)
UDP_GRO = getattr(socket, "UDP_GRO", 104)
MAX_SEGMENTS = 64  # the kernel's limit per GSO send before Linux 6.? raised it to 128
MAX_GSO_BYTES = 65000  # one GSO send carries at most an IPv4 datagram's payload
RECV_BUFFER = 65536  # the largest UDP payload, or a GRO run of segments
MAX_DRAIN = 4096  # reads per readiness callback before servicing timers and output
DRAIN_SLICE = 16  # reads between two looks at the clock (drain_bounded)
DRAIN_TIME = 0.004  # seconds of input handling per wake-up, at most (plus one slice)
DRAIN_COUNT = 1024  # reads per wake-up, at most
SPARSE_RUN = 7  # wake-ups that read one datagram and no more, after a drain that found one
CMSG_SPACE = socket.CMSG_SPACE(4) if hasattr(socket, "CMSG_SPACE") else 0
_native_u32 = struct.Struct("=I").unpack_from  # UDP_GRO's segment size, a C int
# A GSO send of these sizes is refused as a whole: the route cannot carry one segment, or the
# device cannot checksum them; the first means "not this size", the second "never".
_SIZE_REFUSED = (errno.EINVAL, errno.EMSGSIZE)
_OFFLOAD_REFUSED = (errno.EIO, errno.ENOPROTOOPT, errno.EOPNOTSUPP)


def _fixed(now: float) -> Clock:
    """A clock stuck at ``now`` (``UdpIO.drain`` given a time, not a clock)."""
    return lambda: now


def _probe_gso(sock: socket.socket) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        sock.getsockopt(SOL_UDP, UDP_SEGMENT)
    except OSError:
        return False
    return True


def _enable_gro(sock: socket.socket) -> bool:
    if not sys.platform.startswith("linux") or not CMSG_SPACE:
        return False
    try:
        sock.setsockopt(SOL_UDP, UDP_GRO, 1)
    except OSError:
        return False
    return True


class UdpIO:
    """One UDP socket's datagram I/O; ``offload`` asks for GSO and GRO where available."""

    sparse = 0  # wake-ups left that read one datagram without looking for more (drain_bounded)

    def __init__(self, sock: socket.socket, offload: bool = True) -> None:
        self.sock = sock
        self.gso = offload and _probe_gso(sock)
        self.gro = offload and _enable_gro(sock)
        self.gso_max_segment = RECV_BUFFER  # lowered when a path refuses larger segments
        self.buffer = bytearray(RECV_BUFFER)
        self.send_errors = 0
        self.oversize_refused = 0  # datagrams larger than the interface (EMSGSIZE): probes
        self.gso_sends = 0  # sendmsg calls that carried more than one datagram
        self.gro_reads = 0  # reads that returned more than one datagram
        self._segment_options: dict[int, list[tuple[int, int, bytes]]] = {}
        self.dual_stack = is_dual_stack(sock)
        self._wire: dict[Address, Address] = {}  # peer -> the address the socket sends to
        self._logged_errors: set[int | None] = set()  # errnos already logged at WARNING

    # -- input ------------------------------------------------------------------------------------

    def drain(self, receive: Receive, now: float | Clock, limit: int = MAX_DRAIN) -> int:
        """Hand every waiting datagram (at most ``limit`` reads) to ``receive``; the view it
        gets is valid only during the call. Returns the reads made: fewer than ``limit``
        means the socket is empty. ``now``: the time to stamp every datagram with, or a clock
        read after each read (the runtimes): a datagram that came in while earlier ones were
        handled must not get a time from before it arrived, or an ACK's RTT sample comes out
        shorter than the path."""
        clock = now if callable(now) else _fixed(now)
        sock, buffer, mapped = self.sock, self.buffer, self.dual_stack
        view = memoryview(buffer)
        if not self.gro:
            for reads in range(limit):
                try:
                    size, addr = sock.recvfrom_into(buffer)
                except (BlockingIOError, InterruptedError):
                    return reads
                except OSError:
                    continue  # e.g. an ICMP error queued on the socket: not a datagram
                receive(view[:size], (plain_host(addr[0]) if mapped else addr[0], addr[1]),
                        clock())
            return limit
        buffers = [buffer]
        for reads in range(limit):
            try:
                size, ancillary, _flags, addr = sock.recvmsg_into(buffers, CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return reads
            except OSError:
                continue
            address = (plain_host(addr[0]) if mapped else addr[0], addr[1])
            stamp = clock()
            segment = size
            for level, kind, data in ancillary:
                if level == SOL_UDP and kind == UDP_GRO and len(data) >= 4:
                    segment = _native_u32(data)[0] or size
            if segment >= size:
                receive(view[:size], address, stamp)
                continue
            self.gro_reads += 1
            for start in range(0, size, segment):
                receive(view[start:min(size, start + segment)], address, stamp)
        return limit

    # -- output -----------------------------------------------------------------------------------

    def send(self, out: deque[tuple[Datagram, Address]]) -> bool:
        """Send from the front of ``out`` until it is empty (True) or the socket is full (False;
        the rest stays queued). A datagram the kernel refuses is counted and dropped: loss
        recovery resends what mattered."""
        sock = self.sock
        while out:
            data, addr = out[0]
            count = self._run_length(out) if self.gso and len(out) > 1 else 1
            if count > 1:
                size = len(data)
                try:
                    # the datagrams as the message's buffers: the kernel gathers them,
                    # so they are not joined (copied) here first
                    sock.sendmsg([entry[0] for entry in islice(out, count)],
                                 self._segment_option(size), 0,
                                 self._wire_address(addr) if self.dual_stack else addr)
                except (BlockingIOError, InterruptedError):
                    return False
                except OSError as error:
                    if error.errno in _OFFLOAD_REFUSED:
                        self.gso = False
                        continue  # the same datagrams again, one by one
                    if error.errno in _SIZE_REFUSED:
                        self.gso_max_segment = size - 1
                        continue
                    self._send_failed(error, addr, count)
                else:
                    self.gso_sends += 1
                for _ in range(count):
                    out.popleft()
                continue
            try:
                sock.sendto(data, self._wire_address(addr) if self.dual_stack else addr)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError as error:
                self._send_failed(error, addr)  # unreachable or too big: recovery will notice
            out.popleft()
        return True

    def _send_failed(self, error: OSError, addr: Address, count: int = 1) -> None:
        """Count a refused send and log it: each kind of error (errno) once at WARNING, as it
        is the only trace of a path that drops everything, and every repeat at DEBUG."""
        self.send_errors += count
        if error.errno == errno.EMSGSIZE:
            # larger than the interface carries: a path-MTU probe's usual end (pmtu.py), and a
            # lost datagram the session's loss recovery resends in smaller packets
            self.oversize_refused += count
            log.debug("a %d-datagram send to %s:%s was too large: %s", count, addr[0], addr[1],
                      error)
            return
        first = error.errno not in self._logged_errors
        if first:
            self._logged_errors.add(error.errno)
        log.log(logging.WARNING if first else logging.DEBUG,
                "sending %d datagram(s) to %s:%s failed: %s%s", count, addr[0], addr[1], error,
                " (repeats of this error are logged at DEBUG)" if first else "")

    def _wire_address(self, addr: Address) -> Address:
        """``addr`` as this dual-stack socket sends to it (kept per peer: a transfer sends
        thousands of datagrams to one)."""
        wire = self._wire.get(addr)
        if wire is None:
            if len(self._wire) >= 4096:
                self._wire.clear()
            wire = self._wire[addr] = wire_address(addr)
        return wire

    def _segment_option(self, size: int) -> list[tuple[int, int, bytes]]:
        """The UDP_SEGMENT control message for segments of ``size`` bytes (kept per size: a
        transfer sends thousands of runs of one size)."""
        option = self._segment_options.get(size)
        if option is None:
            if len(self._segment_options) >= 64:
                self._segment_options.clear()
            option = self._segment_options[size] = [
                (SOL_UDP, UDP_SEGMENT, size.to_bytes(2, sys.byteorder))]
        return option

    def _run_length(self, out: deque[tuple[Datagram, Address]]) -> int:
        """How many datagrams from the front of ``out`` one GSO send can carry: same address,
        same size, except that a shorter one may end the run, and one session's (the same
        destination id): the receiver's kernel may steer the whole run to one worker by its
        first datagram (``workers=N``, stt_runtime/steering.py)."""
        data, addr = out[0]
        size = len(data)
        if size > self.gso_max_segment or size >= MAX_GSO_BYTES:
            return 1  # (a full-size datagram leaves no room for a second in the send)
        dcid = bytes(data[2:10])
        total = size
        count = 1
        for index in range(1, min(len(out), MAX_SEGMENTS)):
            other, other_addr = out[index]
            length = len(other)
            if other_addr != addr or length > size or total + length > MAX_GSO_BYTES \
                    or other[2:10] != dcid:
                break
            total += length
            count += 1
            if length < size:
                break
        return count


def drain_bounded(udp: UdpIO, receive: Receive, clock: Callable[[], float], *,
                  budget: float = DRAIN_TIME, count: int = DRAIN_COUNT,
                  timer: Callable[[], float] = perf_counter) -> tuple[int, bool]:
    """Read from ``udp`` into ``receive`` (each datagram stamped with ``clock()`` read just
    after it was read, never before: else RTT samples come out below the path's) until the
    socket is empty, ``budget`` seconds of ``timer`` have passed or ``count`` reads are done.
    Returns the reads made and whether the socket may hold more (the bound was reached).
    Sessions share the work in the order their datagrams arrived.

    Sparse input (a request/response exchange: one datagram per wake-up) is read without
    the read that finds the socket empty, a system call and a raised BlockingIOError per
    message: after a wake-up that found one datagram, the next ``SPARSE_RUN`` read one and
    stop. The runtimes' readiness waits are level-triggered, so the loop's next poll, which
    it makes anyway, reports whatever else came; a burst meanwhile costs at most that many
    wake-ups of one datagram before the next full drain sees it."""
    if udp.sparse:
        udp.sparse -= 1
        reads = udp.drain(receive, clock, 1)
        return reads, reads > 0
    start = timer()
    total = 0
    while True:
        want = count - total if count - total < DRAIN_SLICE else DRAIN_SLICE
        reads = udp.drain(receive, clock, want)
        total += reads
        if reads < want:
            udp.sparse = SPARSE_RUN if total == 1 else 0
            return total, False
        if total >= count or timer() - start >= budget:
            return total, True


__all__ = ["DRAIN_COUNT", "DRAIN_SLICE", "DRAIN_TIME", "MAX_DRAIN", "RECV_BUFFER", "UdpIO",
           "drain_bounded"]
