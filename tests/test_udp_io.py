"""UdpIO: GSO runs and GRO splitting on real loopback sockets, and the fallbacks when the kernel
refuses offload, without losing or reordering a datagram."""

from __future__ import annotations

import errno
import os
import select
import socket
import sys
from collections import deque
from typing import Any

import pytest

from stt_runtime.udp_io import MAX_SEGMENTS, UdpIO

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="UDP GSO/GRO")

Queue = deque[tuple[bytes | bytearray, tuple[str, int]]]


def _pair() -> tuple[socket.socket, socket.socket]:
    a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for s in (a, b):
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
    return a, b


def _receive_all(io: UdpIO, expected: int) -> list[bytes]:
    got: list[bytes] = []

    def receive(view: memoryview, addr: tuple[str, int], now: float) -> None:
        got.append(bytes(view))

    for _ in range(200):
        if len(got) >= expected:
            break
        select.select([io.sock], [], [], 0.05)
        io.drain(receive, 0.0)
    return got


def _one_session(size: int) -> bytes:
    """A datagram of one session: a GSO run carries one destination id (bytes 2-9) only."""
    return bytes(10) + os.urandom(size - 10)


def _datagrams() -> list[bytes]:
    # a full run, a second run cut short by a smaller datagram, then odd sizes
    return ([_one_session(1200) for _ in range(MAX_SEGMENTS + 5)] + [_one_session(700)]
            + [_one_session(1200) for _ in range(3)] + [_one_session(90), _one_session(1300)])


@linux_only
@pytest.mark.parametrize(("send_offload", "receive_offload"),
                         [(True, True), (True, False), (False, True), (False, False)])
def test_every_datagram_arrives_whole_and_in_order(send_offload: bool,
                                                   receive_offload: bool) -> None:
    a, b = _pair()
    try:
        sender, receiver = UdpIO(a, send_offload), UdpIO(b, receive_offload)
        data = _datagrams()
        out: Queue = deque((d, b.getsockname()) for d in data)
        assert sender.send(out) and not out
        assert _receive_all(receiver, len(data)) == data
        if send_offload and sender.gso:
            assert sender.gso_sends >= 3
            if receive_offload and receiver.gro:
                assert receiver.gro_reads >= 3
        if not send_offload:
            assert sender.gso_sends == 0 and not sender.gso and not receiver.gro_reads
    finally:
        a.close()
        b.close()


class FakeSocket:
    """Records sends; ``refuse`` makes GSO sends fail with that errno."""

    def __init__(self, refuse: int | None = None, blocked_after: int | None = None) -> None:
        self.refuse = refuse
        self.blocked_after = blocked_after
        self.sent: list[bytes] = []
        self.gso_calls = 0

    def _room(self) -> None:
        if self.blocked_after is not None and len(self.sent) >= self.blocked_after:
            raise BlockingIOError

    def sendmsg(self, buffers: list[bytes], ancillary: list[Any], flags: int,
                addr: tuple[str, int]) -> int:
        self._room()
        if self.refuse is not None:
            raise OSError(self.refuse, os.strerror(self.refuse))
        self.gso_calls += 1
        size = int.from_bytes(ancillary[0][2], sys.byteorder)
        data = b"".join(buffers)  # the kernel gathers the buffers, then segments them
        self.sent += [data[i:i + size] for i in range(0, len(data), size)]
        return len(data)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> int:
        self._room()
        self.sent.append(bytes(data))
        return len(data)


def _fake_io(sock: FakeSocket) -> UdpIO:
    io = UdpIO(socket.socket(socket.AF_INET, socket.SOCK_DGRAM), offload=False)
    io.sock.close()
    io.sock = sock  # type: ignore[assignment]
    io.gso = True
    return io


def test_offload_refused_falls_back_to_plain_sends_for_good() -> None:
    fake = FakeSocket(refuse=errno.EIO)
    io = _fake_io(fake)
    data = _datagrams()
    out: Queue = deque((d, ("127.0.0.1", 9)) for d in data)
    assert io.send(out)
    assert fake.sent == data and not io.gso and io.send_errors == 0


def test_segment_size_refused_lowers_the_limit_and_resends_plainly() -> None:
    fake = FakeSocket(refuse=errno.EINVAL)
    io = _fake_io(fake)
    data = [_one_session(1200) for _ in range(10)]
    out: Queue = deque((d, ("127.0.0.1", 9)) for d in data)
    assert io.send(out)
    assert fake.sent == data and io.gso and io.gso_max_segment == 1199
    small = [_one_session(1000) for _ in range(4)]
    fake.refuse = None
    assert io.send(deque((d, ("127.0.0.1", 9)) for d in small))
    assert fake.sent == data + small and fake.gso_calls == 1  # smaller segments still offload


def test_a_full_socket_keeps_the_rest_queued_in_order() -> None:
    fake = FakeSocket(blocked_after=3)
    io = _fake_io(fake)
    io.gso = False
    data = [os.urandom(100) for _ in range(8)]
    out: Queue = deque((d, ("127.0.0.1", 9)) for d in data)
    assert not io.send(out)
    assert len(out) == 5
    fake.blocked_after = None
    assert io.send(out)
    assert fake.sent == data


def test_runs_stop_at_another_address_and_at_the_byte_limit() -> None:
    io = _fake_io(FakeSocket())
    here, there = ("127.0.0.1", 1), ("127.0.0.1", 2)
    out: Queue = deque([(bytes(1000), here)] * 3 + [(bytes(1000), there)])
    assert io._run_length(out) == 3
    big: Queue = deque([(bytes(16000), here)] * 6)
    assert io._run_length(big) == 4  # 4 x 16,000 B fit in one 65,000-byte send
    longer: Queue = deque([(bytes(100), here), (bytes(200), here)])
    assert io._run_length(longer) == 1  # a larger datagram cannot follow
    full: Queue = deque([(bytes(65000), here), (bytes(10), here)])
    assert io._run_length(full) == 1  # a full send: nothing fits beside it
    nearly: Queue = deque([(bytes(64990), here), (bytes(10), here), (bytes(10), here)])
    assert io._run_length(nearly) == 2  # a shorter one may end the run where it fits


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@linux_only
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_a_node_reports_offload_and_works_both_ways(host: str) -> None:
    import asyncio

    from stt_asyncio import STTNode

    if host == "::1" and not _has_ipv6_loopback():
        pytest.skip("no IPv6 loopback here")

    async def exchange(offload: bool) -> dict[str, Any]:
        settings = {"host": host, "max_frame_size": 1200, "udp_offload": offload}
        async with STTNode(**settings) as a, STTNode(**settings) as b:
            session = await b.connect(a.address, a.node_id)
            stream = session.open_stream()
            payload = os.urandom(1 << 20)
            await stream.send(payload)
            await stream.close()
            incoming = await (await a.accept()).accept_stream()
            assert await incoming.receive() == payload
            return b.get_stats()

    on = asyncio.run(exchange(True))
    off = asyncio.run(exchange(False))
    probe = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    with probe:
        kernel_has_gso = UdpIO(probe).gso
    assert on["gso"] == kernel_has_gso  # on where the kernel has it, off (and working) elsewhere
    assert on["gso_sends"] > 0 or not kernel_has_gso
    assert not off["gso"] and off["gso_sends"] == 0 and not off["gro"]


def test_segment_options_are_kept_per_size_and_bounded() -> None:
    """The UDP_SEGMENT control message is built once per segment size and reused; runs of
    ever new sizes cannot grow the cache past its bound, and every run still leaves whole."""
    fake = FakeSocket()
    io = _fake_io(fake)
    sent: list[bytes] = []
    for size in range(1000, 1200):
        run = [_one_session(size) for _ in range(3)]
        assert io.send(deque((d, ("127.0.0.1", 9)) for d in run))
        sent += run
        assert len(io._segment_options) <= 64
        assert io._segment_options[size][0][2] == size.to_bytes(2, sys.byteorder)
    assert fake.sent == sent and fake.gso_calls == 200
    assert io._segment_option(1199) is io._segment_option(1199)
