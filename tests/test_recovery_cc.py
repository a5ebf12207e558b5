"""Unit tests: range sets, RTT estimation, loss detection, the three controllers, the pacer."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_proto import rangeset
from stt_proto.congestion import CONTROLLERS, Bbr, Cubic, NewReno, make_controller
from stt_proto.congestion.bbr import CRUISE_CWND_GAIN
from stt_proto.dataplane import Pacer
from stt_proto.errors import ProtocolViolation
from stt_proto.rangeset import RangeSet
from stt_proto.recovery import LossRecovery, RateSample, SentPacket
from stt_proto.rtt import RttEstimator

ops = st.lists(st.tuples(st.booleans(), st.integers(0, 200), st.integers(0, 40)), max_size=40)


@given(ops)
def test_rangeset_matches_a_python_set(operations: list[tuple[bool, int, int]]) -> None:
    ranges, model = RangeSet(), set()
    for add, start, length in operations:
        if add:
            ranges.add(start, start + length)
            model |= set(range(start, start + length))
        else:
            ranges.subtract(start, start + length)
            model -= set(range(start, start + length))
        flat = {i for a, b in ranges for i in range(a, b)}
        assert flat == model
        bounds = list(ranges)
        assert all(a < b for a, b in bounds)
        assert all(b1 < a2 for (_, b1), (a2, _) in itertools.pairwise(bounds))
        assert ranges.total() == len(model)
    assert rangeset._NONE == []  # the lists empty sets share are never written


def test_rangeset_in_order_adds_extend_or_append() -> None:
    ranges = RangeSet()
    ranges.add(0, 10)
    ranges.add(10, 20)  # touching the last range: extends it
    ranges.add(25, 30)  # past it: a new range
    ranges.add(30, 31)
    ranges.add(20, 25)  # fills the gap: all one range
    assert list(ranges) == [(0, 31)]
    ranges.add(40, 41)
    ranges.add(35, 45)  # overlaps the last one from below: merged by the general path
    assert list(ranges) == [(0, 31), (35, 45)]


def test_rtt_estimator_follows_rfc9002() -> None:
    rtt = RttEstimator()
    rtt.update(0.1)
    assert (rtt.smoothed, rtt.rttvar, rtt.min_rtt) == (0.1, 0.05, 0.1)
    rtt.update(0.2, ack_delay=0.05)
    assert rtt.min_rtt == 0.1
    assert rtt.smoothed == pytest.approx(0.875 * 0.1 + 0.125 * 0.175)
    assert rtt.pto() == pytest.approx(rtt.smoothed + 4 * rtt.rttvar + 0.025)


def _sent(recovery: LossRecovery, count: int, start: float = 0.0, size: int = 1000) -> None:
    for pn in range(count):
        recovery.on_packet_sent(SentPacket(pn, start + pn * 0.001, size, True, True, [pn]),
                                app_limited=False)


def test_packet_threshold_loss_and_ack_accounting() -> None:
    recovery = LossRecovery(RttEstimator())
    _sent(recovery, 10)
    assert recovery.bytes_in_flight == 10_000
    result = recovery.on_ack(((5, 9),), 0, now=0.05, next_pn=10)
    assert [p.pn for p in result.acked] == [5, 6, 7, 8, 9]
    assert [p.pn for p in result.lost] == [0, 1, 2, 3, 4]  # all >= 3 below the largest acked
    assert recovery.bytes_in_flight == 0
    assert result.rate is not None and result.rate.delivery_rate > 0


def test_time_threshold_loss_arms_a_timer_then_declares() -> None:
    rtt = RttEstimator()
    rtt.update(0.1)
    recovery = LossRecovery(rtt)
    _sent(recovery, 3)
    result = recovery.on_ack(((2, 2),), 0, now=0.101, next_pn=3)
    assert result.lost == []  # within 9/8 RTT and fewer than 3 packets behind
    deadline = recovery.loss_detection_timer()
    assert deadline == pytest.approx(0.0 + 9 / 8 * max(rtt.latest, rtt.smoothed))
    lost, probe = recovery.on_timeout(deadline)
    assert [p.pn for p in lost] == [0] and not probe  # packet 1 was sent 1 ms later
    assert recovery.loss_detection_timer() == pytest.approx(deadline + 0.001)


def test_pto_backs_off_exponentially() -> None:
    rtt = RttEstimator()
    recovery = LossRecovery(rtt)
    _sent(recovery, 1)
    first = recovery.loss_detection_timer()
    assert first is not None
    _, probe = recovery.on_timeout(first)
    assert probe and recovery.pto_count == 1
    second = recovery.loss_detection_timer()
    assert second is not None and second - 0.0 == pytest.approx(2 * (first - 0.0))


def test_ack_for_unsent_packet_and_persistent_congestion() -> None:
    rtt = RttEstimator()
    rtt.update(0.01)
    recovery = LossRecovery(rtt)
    with pytest.raises(ProtocolViolation):
        recovery.on_ack(((0, 0),), 0, 0.0, next_pn=0)
    for pn in range(10):
        recovery.on_packet_sent(SentPacket(pn, pn * 0.05, 1000, True, True, []), False)
    result = recovery.on_ack(((9, 9),), 0, now=0.5, next_pn=10)
    assert len(result.lost) == 9 and result.persistent_congestion


def _ack_all(cc: object, packets: list[SentPacket], rtt: RttEstimator, now: float,
             rate: float | None = None) -> None:
    sample = RateSample(rate, False, rtt.latest, 10**9, 0) if rate else None
    cc.on_ack(packets, sample, rtt, 0, now)  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", [NewReno, Cubic])
def test_loss_based_controllers_grow_then_back_off_once_per_round(cls: type) -> None:
    rtt = RttEstimator()
    rtt.update(0.05)
    cc = cls(1200)
    start = cc.cwnd
    _ack_all(cc, [SentPacket(i, 0.0, 1200, True, True, []) for i in range(10)], rtt, 0.05)
    assert cc.cwnd == start + 12_000  # slow start doubles per round
    grown = cc.cwnd
    cc.on_loss([SentPacket(20, 0.06, 1200, True, True, [])], rtt, 0.1)
    reduced = cc.cwnd
    assert reduced < grown
    cc.on_loss([SentPacket(21, 0.07, 1200, True, True, [])], rtt, 0.11)  # same episode
    assert cc.cwnd == reduced
    cc.on_persistent_congestion(0.2)
    assert cc.cwnd == cc.minimum_window


def test_bbr_models_bandwidth_and_ignores_random_loss() -> None:
    rtt = RttEstimator()
    rtt.update(0.05)
    cc = Bbr(1200)
    delivered = 0
    for round_ in range(20):
        packets = [SentPacket(round_ * 10 + i, round_ * 0.05, 1200, True, True, [])
                   for i in range(10)]
        sample = RateSample(1_000_000, False, 0.05, delivered + 12_000, delivered)
        delivered += 12_000
        cc.on_ack(packets, sample, rtt, 30_000, round_ * 0.05 + 0.05)
    assert cc.btl_bw == 1_000_000 and cc.min_rtt == 0.05
    assert cc.filled_pipe
    before = cc.cwnd
    cc.on_loss([SentPacket(999, 1.0, 1200, True, True, [])], rtt, 1.0)
    assert cc.cwnd == before
    # twice the BDP, the 3-packet allowance, and one ACK's worth: each round is acknowledged
    # by one ACK, all at once, which is as aggregated as ACKs get
    assert cc.cwnd <= 2 * 1_000_000 * 0.05 + 3 * 1200 + 12_000
    assert cc.pacing_rate(rtt) == pytest.approx(cc.pacing_gain * 1_000_000)


def _ack_at_bandwidth(cc: Bbr, rtt: RttEstimator, batch: int, acks: int, now: float = 0.0,
                      delivered: int = 0) -> tuple[float, int]:
    """``acks`` ACKs arriving at 1 MB/s on a 50 ms path, each for ``batch`` 1,200-byte
    packets: the same bandwidth, as smooth (batch 1) or as bursty as asked."""
    for _ in range(acks):
        size = batch * 1200
        now += size / 1_000_000
        packets = [SentPacket(i, now - 0.05, 1200, True, True, []) for i in range(batch)]
        prior = max(0, delivered - 50_000)  # a round trip's worth of data was in flight
        delivered += size
        cc.on_ack(packets, RateSample(1_000_000, False, 0.05, delivered, prior), rtt, 30_000,
                  now)
    return now, delivered


def _cap(gain: float) -> int:
    """The window's cap: ``gain`` bandwidth-delay products, plus 3 packets. PROBE_BW allows
    two BDPs while it probes up, 1.25 (CRUISE_CWND_GAIN) otherwise."""
    return int(gain * 50_000) + 3 * 1200


CRUISE = _cap(CRUISE_CWND_GAIN)


def test_bbr_smooth_acks_add_at_most_one_ack_to_the_window() -> None:
    rtt = RttEstimator()
    rtt.update(0.05)
    cc = Bbr(1200)
    _ack_at_bandwidth(cc, rtt, 1, 3000)
    assert cc.filled_pipe and cc.btl_bw == 1_000_000
    assert CRUISE <= cc.cwnd <= _cap(cc.cwnd_gain) + 1200


def test_bbr_widens_the_window_by_the_ack_bursts_then_narrows_it_again() -> None:
    """A receiver that answers every 10 packets at once: the window grows by that burst, so
    the sender does not stall while the ACK is held back; when ACKs turn smooth for more
    than the filter's 10 rounds, the window shrinks back."""
    rtt = RttEstimator()
    rtt.update(0.05)
    cc = Bbr(1200)
    now, delivered = _ack_at_bandwidth(cc, rtt, 10, 300)
    assert cc.filled_pipe and cc.btl_bw == 1_000_000
    assert abs(cc.cwnd - (_cap(cc.cwnd_gain) + 12_000)) <= 1
    # A pause (ACKs that fall behind the bandwidth end an aggregation epoch), then smooth
    # ACKs: 600 x 1,200 B, 14 round trips
    _ack_at_bandwidth(cc, rtt, 1, 600, now + 0.05, delivered)
    assert CRUISE <= cc.cwnd <= _cap(cc.cwnd_gain) + 1200


def test_bbr_ack_burst_allowance_is_capped_at_100_ms_of_bandwidth() -> None:
    rtt = RttEstimator()
    rtt.update(0.05)
    cc = Bbr(1200)
    _ack_at_bandwidth(cc, rtt, 1, 3000)
    _ack_at_bandwidth(cc, rtt, 400, 20, 3.6, 3_600_000)  # 480 KB at once, every 0.48 s
    assert cc.cwnd == _cap(cc.cwnd_gain) + 100_000


def test_controller_selection() -> None:
    assert set(CONTROLLERS) == {"bbr", "cubic", "newreno"}
    assert isinstance(make_controller("cubic", 1200), Cubic)
    with pytest.raises(ValueError, match="unknown"):
        make_controller("vegas", 1200)


def test_pacer_spreads_packets_with_a_bounded_burst() -> None:
    pacer = Pacer()
    now = 1.0
    sent = 0
    while pacer.ready(now):
        pacer.on_sent(1000, rate=1_000_000, quantum=3000, now=now)
        sent += 1
    assert sent == 4  # the quantum's worth of burst, then the pacer waits
    assert pacer.next_send == pytest.approx(now + 0.001)
