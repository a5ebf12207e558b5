"""The impaired link (``stt_runtime.impair``, ``stt impair``): the simulator's link model on
real UDP sockets.

Deterministic tests drive the model and the forwarder with a fake clock; the socket tests
measure what a receiver sees (kernel receive timestamps where Linux gives them): a paced raw
sender overdriving the link gets the set rate within 2 %, an underdriving one the set delay;
an STT transfer through a lossy link arrives byte for byte.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import socket
import statistics
import struct
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import attrs
import click
import pytest
from click.testing import CliRunner

from stt_cli.impair_command import impair
from stt_proto.sim import DelayLine, Link, LinkProfile, Network
from stt_runtime.impair import (
    Forwarder,
    ImpairedLink,
    describe,
    impairment,
    parse_duration,
    parse_fraction,
    parse_queue,
    parse_rate,
)
from tests.cli_peer import ENV, stt_command

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
LOCAL = ("127.0.0.1", 0)
MiB = 1 << 20


# -- parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "bits"), [
    ("100mbit", 100e6), ("20Mbit/s", 20e6), ("1gbit", 1e9), ("500kbit", 500e3),
    ("12.5MB/s", 100e6), ("1e6bit", 1e6), (2_000_000, 2e6), ("unlimited", None), ("0", None),
])
def test_rates_parse_to_bits_per_second(text: str | int, bits: float | None) -> None:
    assert parse_rate(text) == bits


@pytest.mark.parametrize(("text", "seconds"), [
    ("25ms", 0.025), ("1s", 1.0), ("1.5s", 1.5), ("500us", 0.0005), ("0", 0.0), (0.01, 0.01),
])
def test_durations_parse_to_seconds(text: str | float, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("text", "fraction"), [
    ("1%", 0.01), ("0.5%", 0.005), ("0.01", 0.01), ("100%", 1.0), ("0", 0.0), (0.2, 0.2),
])
def test_fractions_parse(text: str | float, fraction: float) -> None:
    assert parse_fraction(text) == pytest.approx(fraction)


@pytest.mark.parametrize(("parse", "text", "words"), [
    (parse_rate, "100mbps", "ambiguous"),  # tc's mbps is bytes: refuse to guess
    (parse_rate, "100", "expected a rate"),
    (parse_rate, "fast", "expected a rate"),
    (parse_duration, "25", "with its unit"),
    (parse_duration, "-5ms", "expected a time"),
    (parse_fraction, "1", "ambiguous"),  # 1 % or 100 %?
    (parse_fraction, "150%", "0% to 100%"),
    (parse_fraction, "lots", "expected a percentage"),
])
def test_bad_values_say_what_was_expected(parse: object, text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse(text)  # type: ignore[operator]


def test_a_queue_in_bdp_is_rate_times_round_trip() -> None:
    assert parse_queue("1bdp", 100e6, 0.05) == 625_000
    assert parse_queue("8bdp", 20e6, 0.02) == 400_000
    assert parse_queue("64KiB", None, 0) == 65536
    assert parse_queue("1MB", None, 0) == 1_000_000
    with pytest.raises(ValueError, match="needs a rate"):
        parse_queue("1bdp", None, 0.05)
    with pytest.raises(ValueError, match="needs a delay"):
        parse_queue("1bdp", 100e6, 0)
    with pytest.raises(ValueError, match="no full datagram"):
        parse_queue("1000", None, 0)
    profile = impairment(rate="100mbit", delay="25ms", jitter="1ms", loss="1%", queue="1bdp",
                         reorder="2%", duplicate="3%")
    assert profile == LinkProfile(latency=0.025, jitter=0.001, bandwidth=100e6,
                                  queue_limit=625_000, loss=0.01, duplicate=0.03, reorder=0.02)
    assert impairment(rate="10mbit", delay="10ms", queue="1bdp",
                      round_trip="100ms").queue_limit == 125_000
    assert describe(profile).startswith("100 Mbit/s, 25 ms + 0..1 ms, queue 625000 B, 1% loss")


def test_the_command_names_the_option_of_a_bad_value() -> None:
    runner = CliRunner()
    for args, option in ((["--rate", "100mbps"], "--rate"), (["--delay", "25"], "--delay"),
                         (["--loss", "5%,x"], "--loss"), (["--queue", "1bdp"], "--queue"),
                         (["--jitter", "1ms,2ms,3ms"], "--jitter"),
                         (["--to", "nowhere"], "--to")):
        argv = ["--listen", "127.0.0.1:0", "--to", "127.0.0.1:9", *args]
        result = runner.invoke(impair, argv)
        assert result.exit_code == 2, (args, result.output)
        assert isinstance(result.exception, SystemExit)
        assert f"'{option}'" in result.output, result.output


def test_the_command_takes_each_direction_apart() -> None:
    from stt_cli.impair_command import _profiles

    forward, back = _profiles("100mbit,10mbit", "25ms,5ms", "0", "1%,0", "1bdp", "0", "0",
                              "5ms")
    assert (forward.bandwidth, back.bandwidth) == (100e6, 10e6)
    assert (forward.latency, back.latency) == (0.025, 0.005)
    assert (forward.loss, back.loss) == (0.01, 0.0)
    assert (forward.queue_limit, back.queue_limit) == (375_000, 37_500)  # rate x 30 ms
    with pytest.raises(click.BadParameter, match="holds no full datagram"):
        _profiles("100mbit", "1us", "0", "0", "1bdp", "0", "0", "5ms")


# -- the model on a fake clock ------------------------------------------------------------------

def test_the_line_serialises_at_the_rate_then_adds_the_delay() -> None:
    line: DelayLine[int] = DelayLine(LinkProfile(latency=0.01, bandwidth=8e6, queue_limit=5000))
    for i in range(6):  # 1,000 bytes at 8 Mbit/s: 1 ms each; the queue holds 5 of them
        line.send(i, 1000, now=0.0)
    assert line.counters.queue_drops == 1
    assert line.next_time() == pytest.approx(0.011)
    assert line.pop_due(0.0109) == []
    assert line.pop_due(0.0111) == [0]
    # a late wake-up releases everything due by then, in order: the rate averages out
    assert line.pop_due(0.0135) == [1, 2]
    assert line.pop_due(1.0) == [3, 4]
    assert line.next_time() is None
    assert line.counters.delivered == 5 and line.counters.sent == 6
    # an idle link starts serialising when the datagram comes, not when it last was busy
    line.send(9, 1000, now=2.0)
    assert line.next_time() == pytest.approx(2.011)


def test_the_line_and_the_simulator_give_the_same_fates() -> None:
    """One model: the same profile, seed and offers give the simulator's arrival times."""
    profile = LinkProfile(latency=0.02, jitter=0.003, bandwidth=10e6, queue_limit=20_000,
                          loss=0.1, duplicate=0.1, reorder=0.1)
    offers = [(i * 0.0004, 1200 + (i * 37) % 300) for i in range(400)]
    net = Network(seed=5, default_profile=profile, record_trace=True)
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 2)
    line: DelayLine[int] = DelayLine(profile, random.Random(5))
    expected: list[tuple[float, int]] = []
    for i, (when, size) in enumerate(offers):
        net.run(when - net.now)  # delivering what arrives meanwhile, at its arrival time
        net.send(a, b, struct.pack("!I", i) + bytes(size - 4))
        line.send(i, size, when)
    net.run(5.0)
    got = [(when, struct.unpack("!I", payload[:4])[0]) for when, _, _, payload in net.trace]
    while (due := line.next_time()) is not None:
        expected += [(due, i) for i in line.pop_due(due)]
    assert [i for _, i in got] == [i for _, i in expected]
    assert [t for t, _ in got] == pytest.approx([t for t, _ in expected])
    assert attrs.asdict(net.link_counters(a, b)) == attrs.asdict(line.counters)
    counters = line.counters
    assert counters.lost and counters.queue_drops and counters.duplicated and counters.reordered


def test_reordered_datagrams_are_held_back_and_counted() -> None:
    link = Link(LinkProfile(latency=0.01, reorder=1.0, reorder_delay=0.004))
    assert link.admit(100, 0.0, random.Random(1)) == [pytest.approx(0.014)]
    assert link.counters.reordered == 1


def test_the_forwarder_keeps_directions_and_clients_apart() -> None:
    fwd = Forwarder(LinkProfile(latency=0.01), LinkProfile(latency=0.03), seed=1)
    alice, bob = ("10.0.0.1", 1000), ("10.0.0.2", 2000)
    fwd.from_client(alice, b"a1", 0.0)
    fwd.from_target(bob, b"to bob", 0.0)
    fwd.from_client(bob, b"b1", 0.001)
    assert fwd.next_time() == pytest.approx(0.01)
    assert fwd.due(0.005) == ([], [])
    assert fwd.due(0.0115) == ([(alice, b"a1"), (bob, b"b1")], [])
    assert fwd.due(0.0302) == ([], [(bob, b"to bob")])
    stats = fwd.stats(clients=2)
    assert (stats.forward.delivered, stats.back.delivered, stats.clients) == (2, 1, 2)
    assert stats.late_max == pytest.approx(0.0015)
    assert "forward: 2 in, 2 forwarded" in stats.summary()


def test_one_directions_traffic_never_changes_the_others_fate() -> None:
    lossy = LinkProfile(latency=0.0, loss=0.5)

    def fates(extra_forward: int) -> list[bytes]:
        fwd = Forwarder(lossy, seed=9)
        for i in range(extra_forward):
            fwd.from_client(("c", 1), b"f%d" % i, 0.0)
        for i in range(200):
            fwd.from_target(("c", 1), b"b%d" % i, 0.0)
        return [data for _, data in fwd.due(1.0)[1]]

    assert fates(0) == fates(300)
    assert 50 < len(fates(0)) < 150


# -- real sockets ------------------------------------------------------------------------------

@attrs.frozen
class Received:
    """What a receiver saw: arrival time (kernel stamp where available), size, send time."""

    at: float
    size: int
    sent_at: float


@contextmanager
def receiver(echo: bool = False) -> Iterator[tuple[tuple[str, int], list[Received]]]:
    """A UDP socket in a thread of its own recording every arrival (and echoing it back)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MiB)
    stamps: int | None = getattr(socket, "SO_TIMESTAMPNS", None)  # Linux's
    if stamps is not None:
        sock.setsockopt(socket.SOL_SOCKET, stamps, 1)
    sock.bind(LOCAL)
    sock.settimeout(0.05)
    got: list[Received] = []
    done = threading.Event()

    def loop() -> None:
        while not done.is_set():
            try:
                data, ancillary, _, source = sock.recvmsg(65535, 64)
            except TimeoutError:
                continue
            at = time.time()
            for level, kind, value in ancillary:
                if level == socket.SOL_SOCKET and kind == stamps:
                    seconds, nanoseconds = struct.unpack("qq", value[:16])
                    at = seconds + nanoseconds / 1e9
            got.append(Received(at, len(data), struct.unpack("d", data[:8])[0]))
            if echo:
                sock.sendto(data, source)

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield sock.getsockname(), got
    finally:
        done.set()
        thread.join()
        sock.close()


def paced_send(to: tuple[str, int], rate: float, seconds: float, size: int = 1200) -> int:
    """Send ``size``-byte datagrams stamped with their send time at ``rate`` bit/s, sending
    what is due at each wake-up; returns the datagrams sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * MiB)
        padding = bytes(size - 8)
        start, sent = time.monotonic(), 0
        while (elapsed := time.monotonic() - start) < seconds:
            while sent * size * 8 < rate * elapsed:
                sock.sendto(struct.pack("d", time.time()) + padding, to)
                sent += 1
            time.sleep(0.0005)
    return sent


def delivered_rate(got: list[Received]) -> float:
    """Bit/s at the receiver: the least-squares slope of bytes received against arrival time
    (robust to a late first or last arrival)."""
    times = [r.at for r in got]
    total, cumulative = 0, []
    for r in got:
        total += r.size
        cumulative.append(total)
    mean_t, mean_c = statistics.fmean(times), statistics.fmean(cumulative)
    num = sum((t - mean_t) * (c - mean_c) for t, c in zip(times, cumulative, strict=True))
    return 8 * num / sum((t - mean_t) ** 2 for t in times)


def measure(rate: float, delay: float, load: float, seconds: float) -> tuple[float, list[float]]:
    """Paced raw UDP at ``load`` x ``rate`` through a link of ``rate``, ``delay``, 1 BDP:
    (the delivered rate, every one-way delay)."""
    profile = impairment(rate=rate, delay=delay, queue="1bdp")
    with receiver() as (target, got), ImpairedLink(LOCAL, target, profile) as link:
        sent = paced_send(link.address, rate * load, seconds)
        time.sleep(delay + 0.2)
        stats = link.stats()
    assert stats.forward.sent == sent and stats.send_errors == 0
    assert len(got) == stats.forward.delivered
    return delivered_rate(got), sorted(r.at - r.sent_at for r in got)


def test_the_link_holds_its_rate_within_two_percent() -> None:
    """Overdriven by half again, the link delivers its rate (and drops the excess at the
    queue), however late its thread wakes up. Up to three tries: on a loaded 2-core machine
    the receiver's own thread can be starved for a while, which skews its arrival stamps; a
    link that did not hold its rate would miss every time (the slow test measures it as a
    separate process, once)."""
    rates = []
    for _ in range(3):
        rate, _ = measure(20e6, 0.01, load=1.5, seconds=1.5)
        rates.append(rate)
        if rate == pytest.approx(20e6, rel=0.02):
            return
    raise AssertionError(f"delivered {[f'{r / 1e6:.3f}' for r in rates]} Mbit/s, not 20 +- 2 %")


def test_the_link_adds_its_delay_and_no_more_when_not_queueing() -> None:
    for _ in range(3):  # a loaded machine can hold the paced sender back: try again
        rate, delays = measure(20e6, 0.02, load=0.5, seconds=0.6)
        if rate == pytest.approx(10e6, rel=0.05):
            break
    assert rate == pytest.approx(10e6, rel=0.05)  # what was sent: no queue, no loss
    serialisation = 1200 * 8 / 20e6
    assert delays[0] >= 0.02 + serialisation - 0.0002  # never early (clock stamps differ a bit)
    assert statistics.median(delays) < 0.02 + serialisation + 0.003
    assert delays[int(len(delays) * 0.9)] < 0.02 + serialisation + 0.01


def test_replies_go_back_to_each_client_through_the_back_direction() -> None:
    forward = impairment(delay="5ms")
    back = impairment(delay="15ms")
    with receiver(echo=True) as (target, got), ImpairedLink(LOCAL, target, forward,
                                                           back) as link:
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            for n, sock in enumerate(clients):
                sock.settimeout(2.0)
                start = time.time()
                sock.sendto(struct.pack("d", start) + b"client %d" % n, link.address)
                reply = sock.recv(100)
                assert reply.endswith(b"client %d" % n)
                assert time.time() - start >= 0.02
        finally:
            for sock in clients:
                sock.close()
        stats = link.stats()
    assert (stats.clients, stats.forward.delivered, stats.back.delivered) == (2, 2, 2)
    assert len(got) == 2


def test_past_max_clients_the_quietest_client_is_forgotten() -> None:
    with receiver(echo=True) as (target, _):
        link = ImpairedLink(LOCAL, target, impairment(), max_clients=1)
        clients = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
        try:
            link.start()
            for sock in clients:
                sock.settimeout(2.0)
                sock.sendto(struct.pack("d", 0.0), link.address)
                assert len(sock.recv(100)) == 8
            assert link.stats().clients == 1
        finally:
            link.close()
            for sock in clients:
                sock.close()


def test_run_forwards_in_the_callers_thread_for_a_duration_over_ipv6() -> None:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        pytest.skip("no IPv6 loopback")
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as target, \
            socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as client:
        target.bind(("::1", 0))
        link = ImpairedLink(("::1", 0), target.getsockname()[:2], impairment(delay="1ms"))
        client.sendto(b"hello", link.address)
        started = time.monotonic()
        link.run(duration=0.2)
        assert time.monotonic() - started >= 0.2
        target.settimeout(1.0)
        data, upstream = target.recvfrom(100)
        assert data == b"hello"
        target.sendto(b"back", upstream)
        link.run(duration=0.2)
        client.settimeout(1.0)
        assert client.recv(100) == b"back"
        link.close()
    assert (link.stats().forward.delivered, link.stats().back.delivered) == (1, 1)


def test_an_stt_transfer_through_a_lossy_link_arrives_byte_for_byte() -> None:
    data = os.urandom(4 * MiB)
    profile = impairment(rate="50mbit", delay="10ms", loss="1%", queue="1bdp")

    async def main() -> tuple[bytes, int]:
        from stt_asyncio import STTNode

        async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
            with ImpairedLink(LOCAL, server.address, profile, seed=3) as link:
                async def serve() -> bytes:
                    session = await server.accept()
                    stream = await session.accept_stream()
                    return b"".join([message async for message in stream])

                task = asyncio.create_task(serve())
                session = await client.connect(link.address, server.node_id)
                stream = session.open_stream()
                for offset in range(0, len(data), 256 * 1024):
                    await stream.send(data[offset:offset + 256 * 1024])
                await stream.close()
                received = await asyncio.wait_for(task, 60)
                return received, link.stats().forward.lost

    received, lost = asyncio.run(asyncio.wait_for(main(), 90))
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert lost > 0  # the link did drop some, and STT recovered them


def test_the_command_forwards_and_prints_its_counters_on_sigterm() -> None:
    with receiver(echo=True) as (target, _):
        process = subprocess.Popen(
            stt_command("impair", "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{target[1]}",
                        "--delay", "10ms", "--rate", "10mbit", "--queue", "1bdp"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first.startswith("impairing 127.0.0.1:"), first
            port = int(first.split()[1].rpartition(":")[2])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.settimeout(5.0)
                for i in range(5):
                    start = time.monotonic()
                    sock.sendto(struct.pack("d", 0.0) + b"%d" % i, ("127.0.0.1", port))
                    assert sock.recv(100).endswith(b"%d" % i)
                    assert time.monotonic() - start >= 0.02
            process.send_signal(signal.SIGTERM)
            out, err = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert process.returncode == 0, err
    assert "forward: 5 in, 5 forwarded, 0 dropped by loss, 0 dropped by the queue" in out
    assert "back: 5 in, 5 forwarded" in out
    assert "clients: 1; send errors: 0" in out


@pytest.mark.slow
@pytest.mark.parametrize("rate", [20e6, 100e6])
def test_the_command_holds_its_rate_for_five_seconds(rate: float) -> None:
    """The command in a process of its own (no GIL shared with the sender), 5 s at 1.3 x."""
    with receiver() as (target, got):
        process = subprocess.Popen(
            stt_command("impair", "--listen", "127.0.0.1:0", "--to", f"127.0.0.1:{target[1]}",
                        "--rate", f"{rate:.0f}bit", "--delay", "25ms", "--queue", "1bdp"),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline().split()[1].rpartition(":")[2])
            paced_send(("127.0.0.1", port), rate * 1.3, 5.0)
            time.sleep(0.3)
            process.send_signal(signal.SIGTERM)
            out, _ = process.communicate(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    measured = delivered_rate(got)
    print(f"\n{out}delivered {measured / 1e6:.3f} Mbit/s of {rate / 1e6:g} ({measured / rate:.4f})")
    assert measured == pytest.approx(rate, rel=0.02)
