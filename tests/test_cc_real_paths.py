"""What real paths showed the controller (issue 26), reproduced in the simulator.

Measured on real sockets through ``stt impair`` (100 Mbit/s, 25 ms each way, a drop-tail queue
of one bandwidth-delay product): BBR's STARTUP overshot into the shallow queue and lost up to a
quarter of its packets there, and with a sending application that is briefly short of data
(app-limited rate samples) STARTUP's three rounds of flat bandwidth never came, so it went on
overshooting for seconds. These tests run the same path in the simulator.
"""

from __future__ import annotations

import math

import pytest

from stt_proto.config import SessionConfig
from stt_proto.congestion import Bbr
from stt_proto.dataplane import PACING_CATCH_UP, DataPlane
from stt_proto.events import Address
from stt_proto.handshake import local_settings
from stt_proto.packet import Datagram
from stt_proto.recovery import RateSample, SentPacket
from stt_proto.rtt import RttEstimator
from stt_proto.sim import LinkProfile

from .conftest import A, B, make_pair
from .transfer import Transfer, link_marks, run_transfers

MiB = 1024 * 1024
RATE = 100e6
BDP = int(RATE / 8 * 0.05)  # 625,000 bytes: 100 Mbit/s x 50 ms


def _shallow_path_transfer(loss: float, mib: int = 12) -> tuple[int, int, float, Transfer]:
    """``mib`` MiB over 100 Mbit/s, 50 ms, a 1-BDP drop-tail queue, 1,400-byte datagrams.
    Returns (queue drops, packets offered to the link, when STARTUP ended, the transfer)."""
    profile = LinkProfile(latency=0.025, bandwidth=RATE, queue_limit=BDP, loss=loss)
    cfg = {"max_frame_size": 1400}
    pair = make_pair(seed=11, profile=profile, client_config=cfg, server_config=cfg)
    pair.net.record_trace = False
    client, server = pair.established()
    transfer = Transfer(pair.net, client, server, [bytes(MiB)] * mib)
    start = pair.net.now
    startup_end = float("inf")
    while not transfer.done and pair.net.now - start < 30:
        step_end = pair.net.now + 0.01
        run_transfers(pair.net, [transfer], timeout=0.01)
        pair.net.now = max(pair.net.now, step_end)  # (an idle gap: run_transfers stops early)
        if startup_end == float("inf") and client.get_stats().congestion_state != "startup":
            startup_end = pair.net.now - start
    counters = pair.net.link_counters(A, B)
    return counters.queue_drops, counters.sent, startup_end, transfer


def test_startup_into_a_one_bdp_queue_drops_little() -> None:
    """Before: a 2.89-BDP window in STARTUP overflowed the 1-BDP queue (2,303 queue drops of
    11,675 packets here, 20 %, STARTUP ending at 1.07 s). STARTUP's window is now 2 BDPs,
    which the queue holds."""
    drops, sent, startup_end, transfer = _shallow_path_transfer(0.0)
    print(f"\n1-BDP queue, no loss: {drops} queue drops of {sent} packets, startup ended at "
          f"{startup_end:.2f} s, 12 MiB in {transfer.finished_at:.2f} s")
    assert transfer.done
    assert drops <= 0.02 * sent
    assert startup_end < 0.75


def test_startup_with_random_loss_neither_overflows_the_queue_nor_lingers() -> None:
    """With 1 % random loss as well. Before STARTUP's window cap: 573 queue drops of 10,041
    packets, STARTUP ending at 0.88 s. With the cap and a receive window that stalled behind
    the first losses, the stall's burst overflowed the queue (135 drops) and the loss exit
    ended STARTUP at 0.58 s. Now that windows grow behind a gap (tests/test_flow_lossy_windows.py)
    the queue holds the capped window: a handful of drops, and STARTUP ends on the bandwidth
    plateau (three rounds without growth, after the app-limited rounds of the window's growth),
    at 0.86 s on this seed."""
    drops, sent, startup_end, transfer = _shallow_path_transfer(0.01)
    print(f"\n1-BDP queue, 1 % loss: {drops} queue drops of {sent} packets, startup ended at "
          f"{startup_end:.2f} s")
    assert transfer.done
    assert drops <= 0.002 * sent
    assert startup_end < 1.0


def _startup_round(cc: Bbr, rtt: RttEstimator, round_: int, rtt_sample: float,
                   lost: int, packets: int = 100) -> None:
    """One STARTUP round on a 50 ms path: an app-limited ACK (its sample says nothing about
    the pipe, as on a real sender short of data for a moment), then ``lost`` losses."""
    delivered = round_ * packets * 1000
    now = 0.05 * (round_ + 1)
    rtt.update(rtt_sample)
    acked = [SentPacket(round_ * packets + i, now - rtt_sample, 1000, True, True, [])
             for i in range(packets)]
    cc.on_ack(acked, RateSample(1_000_000.0 * (round_ + 1), True, rtt_sample,
                                delivered + packets * 1000, delivered), rtt, 50_000, now)
    if lost:
        cc.on_loss([SentPacket(100_000 + round_ * 100 + i, now - rtt_sample, 1000, True, True, [])
                    for i in range(lost)], rtt, now)


def test_bbr_startup_ends_on_loss_only_beside_a_standing_queue() -> None:
    """5 % loss at the base RTT is the path's random loss: STARTUP goes on. The same loss with
    RTTs at twice the base (a full 1-BDP queue) ends it, even with every sample app-limited."""
    rtt = RttEstimator()
    random_loss = Bbr(1000)
    for round_ in range(6):
        _startup_round(random_loss, rtt, round_, 0.05, 5)
    assert random_loss.mode.name == "STARTUP" and not random_loss.filled_pipe

    rtt = RttEstimator()
    full_queue = Bbr(1000)
    _startup_round(full_queue, rtt, 0, 0.05, 0)
    _startup_round(full_queue, rtt, 1, 0.1, 5)
    assert full_queue.filled_pipe
    _startup_round(full_queue, rtt, 2, 0.1, 0)
    assert full_queue.mode.name in ("DRAIN", "PROBE_BW")  # (PROBE_BW once drained)


def test_bbr_startup_caps_its_window_at_two_bdps() -> None:
    """Pacing gain 2.89, window gain 2: what STARTUP has in flight fits a 1-BDP queue. ACKs
    of 300 KB a round outgrow the cap, so the window sits at it (before: 2.89 BDPs)."""
    rtt = RttEstimator()
    cc = Bbr(1000)
    for round_ in range(12):
        _startup_round(cc, rtt, round_, 0.05, 0, packets=300)
    assert cc.mode.name == "STARTUP"
    assert cc.cwnd <= 2 * cc.btl_bw * cc.min_rtt + 3 * 1000 + 300_000
    assert cc.pacing_rate(rtt) > 2.8 * cc.btl_bw


class _Sleeper:
    """A stand-in endpoint whose only deadline is ``deadline``: records when it is run."""

    def __init__(self, deadline: float) -> None:
        self.deadline: float | None = deadline
        self.fired: list[float] = []

    def receive_datagram(self, data: bytes | bytearray | memoryview, addr: Address,
                         now: float) -> None:
        pass

    def datagrams_to_send(self, now: float, max_datagrams: int | None = None,
                          ) -> list[tuple[Datagram, Address]]:
        return []

    def get_timer(self) -> float | None:
        return self.deadline

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.deadline = now + 0.0003 if len(self.fired) < 3 else None


def test_simulated_timers_fire_on_a_coarse_grid_and_late() -> None:
    """The Network's model of a real loop's timers: deadlines fire at the next millisecond,
    plus up to ``timer_lateness`` (seeded), never early; without them, exactly on time."""
    from stt_proto.sim import Network

    exact = Network(seed=1)
    sleeper = exact.add_endpoint(_Sleeper(0.0102), ("10.0.0.9", 1))
    exact.run(1.0)
    assert sleeper.fired == pytest.approx([0.0102, 0.0105, 0.0108])

    coarse = Network(seed=1, timer_granularity=0.001)
    sleeper = coarse.add_endpoint(_Sleeper(0.0102), ("10.0.0.9", 1))
    coarse.run(1.0)
    assert sleeper.fired == pytest.approx([0.011, 0.012, 0.013])

    late = Network(seed=1, timer_granularity=0.001, timer_lateness=0.002)
    sleeper = late.add_endpoint(_Sleeper(0.0102), ("10.0.0.9", 1))
    late.run(1.0)
    grid = [0.011]
    for fired in sleeper.fired[:-1]:
        grid.append(math.ceil((fired + 0.0003) / 0.001) * 0.001)
    assert all(g <= f <= g + 0.002 for g, f in zip(grid, sleeper.fired, strict=True))
    assert sleeper.fired != pytest.approx(grid)  # some of them were late


def _rate_on_a_busy_loop(lateness: float) -> tuple[float, int]:
    """Mbit/s delivered over 100 Mbit/s, 50 ms, a 1-BDP queue in the second after 1 s, with
    loops that read their sockets every 2 ms and fire timers on a 1 ms grid, up to
    ``lateness`` late (a real, busy sender); and the queue drops in that time."""
    profile = LinkProfile(latency=0.025, bandwidth=RATE, queue_limit=BDP)
    cfg = {"max_frame_size": 1400}
    pair = make_pair(seed=11, profile=profile, client_config=cfg, server_config=cfg)
    net = pair.net
    net.record_trace = False
    net.timer_granularity, net.timer_lateness, net.receive_granularity = 0.001, lateness, 0.002
    client, server = pair.established()
    transfer = Transfer(net, client, server, [bytes(MiB)] * 32)
    start = net.now
    marks = link_marks(net, transfer, (1.0, 2.0), A, B)
    assert not transfer.done  # (the second measured was all sending)
    return (marks[1][0] - marks[0][0]) * 1400 * 8 / (net.now - start - 1.0) / 1e6, \
        marks[1][1] - marks[0][1]


@pytest.mark.parametrize("lateness", [0.001, 0.003])
def test_pacing_catches_up_after_late_wake_ups(lateness: float) -> None:
    """Real sockets: held by pacing in PROBE_BW, the sender sent 0.66-0.80 of its pacing rate,
    as each late wake-up could catch up only 1 ms of sending. Here (before: 77.6 and 52.8
    Mbit/s, no queue drops) a sender held at a pacing slot sends what fell due since, up to
    5 ms' worth; its catching up drops no more than a sender woken on time does (59 here)."""
    rate, drops = _rate_on_a_busy_loop(lateness)
    print(f"\ntimers up to {lateness * 1000:.0f} ms late: {rate:.1f} Mbit/s, {drops} queue drops")
    assert rate >= 0.95 * RATE / 1e6
    assert drops <= 0.01 * rate * 1e6 / 8 / 1400


def _paced_plane() -> tuple[DataPlane, list[bytes]]:
    """A data plane sending at 2.89 x 1 MB / 50 ms (BBR's rate before its first sample),
    its datagrams sealed with a 30-byte tag; returns it and the list its datagrams go to."""
    config = SessionConfig(max_frame_size=1200, no_delay=True)
    settings = local_settings(config)
    plane = DataPlane(config=config, is_initiator=True, local=settings, peer=settings,
                      rtt=RttEstimator(), emit=lambda event: None, seed=7)
    plane.rtt.update(0.05)
    plane.cc.cwnd = 1_000_000
    return plane, []


def _build(plane: DataPlane, sent: list[bytes], now: float) -> int:
    """Packets one build at ``now`` sends."""
    def seal(payload: bytes | bytearray) -> tuple[bytes, int]:
        sent.append(bytes(payload) + bytes(30))
        return sent[-1], len(sent) - 1
    return len(plane.build(now, [], seal))


def test_a_late_wake_up_sends_what_fell_due_but_an_idle_sender_gets_one_quantum() -> None:
    """Held at a pacing slot and woken 4 ms late, a sender sends the 4 ms that fell due since
    the slot (before: 1 ms). A sender that ran out of data and gets more 4 ms later, with
    packets still in flight, sends one quantum (1 ms): catching up is for time it was
    waiting on the pacer, not for an application's pause."""
    plane, sent = _paced_plane()
    rate = plane.cc.pacing_rate(plane.rtt)
    stream = plane.streams.open(1200, True, 0).stream_id
    plane.streams.send_message(stream, bytes(2_000_000), 10.0, 10.0)
    _build(plane, sent, 10.0)
    assert plane.pacer.held  # stopped by pacing, with data and window left
    slot = plane.pacer.next_send
    size = len(sent[0])
    late = slot + 0.004
    caught_up = _build(plane, sent, late)
    assert caught_up == pytest.approx(rate * 0.004 / size, abs=2)
    assert PACING_CATCH_UP >= 0.004

    plane, sent = _paced_plane()
    stream = plane.streams.open(1200, True, 0).stream_id
    plane.streams.send_message(stream, bytes(20_000), 10.0, 10.0)  # less than one quantum
    _build(plane, sent, 10.0)
    assert not plane.pacer.held and plane.recovery.bytes_in_flight
    plane.streams.send_message(stream, bytes(2_000_000), 10.0, 10.0)
    resumed = _build(plane, sent, 10.004)
    assert resumed == pytest.approx(max(rate * 0.001, 2 * size) / size, abs=2)


def test_simulated_loops_read_their_sockets_in_batches() -> None:
    """``receive_granularity``: what arrives is handed over at the next multiple of it, in
    order (a loop busy that long reads the backlog at once); without it, on arrival."""
    profile = LinkProfile(latency=0.0103, bandwidth=RATE)
    pair = make_pair(seed=3, profile=profile)
    pair.net.receive_granularity = 0.002
    pair.established()
    times = [when for when, _, _, _ in pair.net.trace]
    assert times and all(abs(t / 0.002 - round(t / 0.002)) < 1e-6 for t in times)
    assert times == sorted(times)

    exact = make_pair(seed=3, profile=profile)
    exact.established()
    assert any(abs(t / 0.002 - round(t / 0.002)) > 1e-3 for t, _, _, _ in exact.net.trace)
