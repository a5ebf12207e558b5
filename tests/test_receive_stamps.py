"""Receive timestamps on real sockets (issue 26): a datagram must never be stamped earlier than
it was read. The runtimes drained a slice of up to DRAIN_SLICE datagrams with one clock read
taken before the slice; an ACK that arrived while earlier datagrams of the slice were being
handled got that earlier time, so the sender's RTT sample came out shorter than the path
itself (40-49 ms on a 50 ms path through the impaired link, and BBR's min-RTT took them).
Each datagram is now stamped with the clock read just after it was read."""

from __future__ import annotations

import socket
import time

import pytest

from stt_runtime.udp_io import DRAIN_SLICE, UdpIO, drain_bounded


class FakeClock:
    """A clock the test moves; counts its reads."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0

    def __call__(self) -> float:
        self.reads += 1
        return self.now


def _pair() -> tuple[socket.socket, socket.socket]:
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.setblocking(False)
    return rx, tx


def _settle(sock: socket.socket) -> None:
    """Until a datagram waits on ``sock``, and a moment more for any others sent with it
    (loopback delivers at once; this is a margin)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        try:
            sock.recv(1, socket.MSG_PEEK)
        except BlockingIOError:
            time.sleep(0.001)
            continue
        time.sleep(0.01)
        return
    raise AssertionError("the datagram never arrived")


@pytest.mark.parametrize("offload", [False, True])
def test_a_datagram_arriving_during_a_slice_is_stamped_after_it_arrived(offload: bool) -> None:
    """The first datagram's handling takes 5 s of the (fake) clock, and a second datagram comes
    in meanwhile: it is read in the same slice and must carry a time no earlier than 5 s."""
    rx, tx = _pair()
    with rx, tx:
        clock = FakeClock()
        stamps: list[tuple[bytes, float]] = []

        def receive(view: memoryview, addr: object, now: float) -> None:
            stamps.append((bytes(view), now))
            if bytes(view) == b"first":
                clock.now = 5.0  # handling this one took time ...
                tx.sendto(b"second", rx.getsockname())  # ... and another arrived meanwhile
                _settle(rx)

        tx.sendto(b"first", rx.getsockname())
        _settle(rx)
        reads, more = drain_bounded(UdpIO(rx, offload=offload), receive, clock)
        assert (reads, more) == (2, False)
        assert [data for data, _ in stamps] == [b"first", b"second"]
        assert stamps[0][1] == 0.0
        assert stamps[1][1] >= 5.0, "stamped before it arrived: an RTT sample below the path's"


def test_every_datagram_of_a_slice_gets_its_own_read_of_the_clock() -> None:
    """A full slice waiting at once: each datagram is stamped by a read of the clock made after
    it was read (times only grow), not one read for the whole slice."""
    rx, tx = _pair()
    with rx, tx:
        for index in range(DRAIN_SLICE):
            tx.sendto(bytes([index]), rx.getsockname())
        _settle(rx)
        clock = FakeClock()
        stamps: list[float] = []

        def receive(view: memoryview, addr: object, now: float) -> None:
            stamps.append(now)
            clock.now += 0.001  # each datagram's handling moves the clock on

        reads, _ = drain_bounded(UdpIO(rx, offload=False), receive, clock)
        assert reads == DRAIN_SLICE
        assert stamps == pytest.approx([index * 0.001 for index in range(DRAIN_SLICE)])


def test_a_fixed_time_still_stamps_every_datagram_with_it() -> None:
    """``UdpIO.drain`` called with a time (tests, tools) keeps stamping everything with it."""
    rx, tx = _pair()
    with rx, tx:
        for index in range(3):
            tx.sendto(bytes([index]), rx.getsockname())
        _settle(rx)
        stamps: list[float] = []
        reads = UdpIO(rx, offload=False).drain(lambda view, addr, now: stamps.append(now), 7.5)
        assert reads == 3
        assert stamps == [7.5, 7.5, 7.5]
