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

from stt_proto.congestion import Bbr
from stt_proto.events import Address
from stt_proto.packet import Datagram
from stt_proto.recovery import RateSample, SentPacket
from stt_proto.rtt import RttEstimator
from stt_proto.sim import LinkProfile

from .conftest import A, B, make_pair
from .transfer import Transfer, run_transfers

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


def test_startup_ends_at_the_first_lossy_round_of_a_full_queue() -> None:
    """With 1 % random loss as well, STARTUP ends in the round the queue overflows, not rounds
    later (before: 573 queue drops of 10,041 packets, STARTUP ending at 0.88 s)."""
    drops, sent, startup_end, transfer = _shallow_path_transfer(0.01)
    print(f"\n1-BDP queue, 1 % loss: {drops} queue drops of {sent} packets, startup ended at "
          f"{startup_end:.2f} s")
    assert transfer.done
    assert drops <= 0.02 * sent
    assert startup_end < 0.75


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
