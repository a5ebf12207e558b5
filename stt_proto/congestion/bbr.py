"""A model-based controller in the style of BBR (v1).

It estimates the bottleneck bandwidth (windowed maximum of delivery-rate samples over ten round
trips) and the minimum RTT (over ten seconds), paces at ``gain x bandwidth`` and caps the data in
flight at twice the bandwidth-delay product while it probes for more bandwidth, at 1.25 times it
otherwise (as BBRv2 keeps its cruise near the BDP: on real loops the bandwidth estimate runs a
few per cent high, and a window of two BDPs let that build a standing queue). Random loss does
not shrink the model, so unlike Reno/CUBIC it keeps the pipe full on a lossy path; the cap keeps
the queue it builds to a fraction of the base RTT.

STARTUP is made for shallow drop-tail queues (a 2.89 BDP window overflows a 1-BDP queue by
nearly a BDP): its window is capped at 2 BDPs, not 2.89, and it ends on loss
(as BBRv2 does) when a round loses over 2 % while RTT samples show a standing queue, instead of
waiting three rounds of flat bandwidth, which app-limited samples can postpone for seconds.

ACKs that arrive in bursts (a receiver that drains a batch of datagrams before it answers, GRO,
Wi-Fi aggregation) acknowledge more data at once than the bandwidth explains. As Linux's BBR
does, the cap is raised by the largest such excess seen over the last 5-10 round trips, so the
sender keeps sending while the peer works through a batch instead of stalling on the window.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import ClassVar

from ..recovery import RateSample, SentPacket
from ..rtt import RttEstimator
from .base import CongestionController

STARTUP_GAIN = 2.885  # 2 / ln 2
# STARTUP paces at 2.89 x the bandwidth but caps what is in flight at 2 BDPs (as BBRv3 does):
# a 2.89 BDP window overflows a 1-BDP drop-tail queue by nearly a BDP in the round the pipe
# fills, while 2 BDPs fit it; the window still doubles each round as the estimate does.
STARTUP_CWND_GAIN = 2.0
CWND_GAIN = 2.0  # PROBE_BW while probing up (pacing gain above 1)
# PROBE_BW outside its probe: about one BDP in flight, plus what bunched ACKs need (the
# aggregation allowance). Real loops time their ACKs to a millisecond or two, so the maximum of
# ten rounds' delivery-rate samples sits a few per cent above the link; pacing at it with two
# BDPs allowed in flight built a standing queue until a 1-BDP drop-tail queue overflowed.
CRUISE_CWND_GAIN = 1.25
PROBE_BW_GAINS = (1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
BW_WINDOW_ROUNDS = 10
MIN_RTT_WINDOW = 10.0
PROBE_RTT_DURATION = 0.2
FULL_BW_GROWTH = 1.25
FULL_BW_ROUNDS = 3
EXTRA_ACKED_WINDOW_ROUNDS = 5  # each of the two slots of the excess-acked maximum
EXTRA_ACKED_MAX_TIME = 0.1  # the excess allowed is at most this many seconds at the bandwidth
# STARTUP ends on loss (as in BBRv2) when a round loses more than this share of its data, at
# least STARTUP_LOSS_PACKETS packets, while RTT samples show a standing queue: a shallow drop-tail
# queue overflows before three rounds without growth would end it.
STARTUP_LOSS_RATE = 0.02
STARTUP_LOSS_PACKETS = 4
STARTUP_QUEUE_RTT = 1.25  # the latest RTT at least this many minimum RTTs: the queue is full


class Mode(Enum):
    STARTUP = auto()
    DRAIN = auto()
    PROBE_BW = auto()
    PROBE_RTT = auto()


# The members as plain names: each ACK tests the mode several times, and an Enum member
# looked up on its class costs about 45 ns on Python 3.11.
STARTUP, DRAIN, PROBE_BW, PROBE_RTT = Mode.STARTUP, Mode.DRAIN, Mode.PROBE_BW, Mode.PROBE_RTT


class Bbr(CongestionController):
    name: ClassVar[str] = "bbr"

    def __init__(self, max_datagram: int, seed: int = 0) -> None:
        super().__init__(max_datagram)
        self._seed = seed
        self.mode = STARTUP
        self.pacing_gain = STARTUP_GAIN
        self.cwnd_gain = STARTUP_CWND_GAIN
        self._bw_samples: list[tuple[int, float]] = []  # a few rounds' worth: a list is smaller
        self.btl_bw = 0.0
        self.min_rtt = float("inf")
        self._min_rtt_stamp = 0.0
        self.round_count = 0
        self._next_round_delivered = 0
        self._round_start = False
        self._full_bw = 0.0
        self._full_bw_count = 0
        self.filled_pipe = False
        self._cycle_index = 0
        self._cycle_stamp = 0.0
        self._probe_rtt_done: float | None = None
        self._prior_cwnd = self.cwnd
        self._probe_rtt_min = float("inf")
        # ACK aggregation: an epoch of ACKs arriving faster than btl_bw, and the largest excess
        # in each of two slots of EXTRA_ACKED_WINDOW_ROUNDS round trips (the newer one filling)
        self._epoch_start = 0.0
        self._epoch_acked = 0
        self._extra_acked = [0, 0]
        self._extra_slot = 0
        self._extra_rounds = 0
        # STARTUP's losses in the current round, and what the round delivered before them
        self._round_lost_bytes = 0
        self._round_lost_packets = 0
        self._round_delivered = 0
        self._delivered = 0

    @property
    def state(self) -> str:
        """The BBR mode, for stats: "startup", "drain", "probe_bw" or "probe_rtt"."""
        return self.mode.name.lower()

    # -- model ------------------------------------------------------------------------------------

    def _bdp(self, gain: float) -> int:
        if self.btl_bw == 0 or self.min_rtt == float("inf"):
            return self.cwnd
        return int(gain * self.btl_bw * self.min_rtt) + 3 * self.max_datagram

    def _update_round(self, rate: RateSample) -> None:
        self._round_start = False
        if rate.prior_delivered >= self._next_round_delivered:
            self._next_round_delivered = rate.delivered
            self.round_count += 1
            self._round_start = True

    def _update_bw(self, rate: RateSample) -> None:
        samples = self._bw_samples
        stale = 0
        while stale < len(samples) and samples[stale][0] <= self.round_count - BW_WINDOW_ROUNDS:
            stale += 1
        if stale:
            del samples[:stale]
        if rate.app_limited and rate.delivery_rate < self.btl_bw:
            return
        samples.append((self.round_count, rate.delivery_rate))
        self.btl_bw = max(bw for _, bw in samples)

    def _update_ack_aggregation(self, acked_bytes: int, now: float) -> None:
        """How much more this ACK epoch acknowledged than ``btl_bw`` would deliver in it."""
        extra = self._extra_acked
        if self._round_start:
            self._extra_rounds += 1
            if self._extra_rounds >= EXTRA_ACKED_WINDOW_ROUNDS:
                self._extra_rounds = 0
                self._extra_slot ^= 1
                extra[self._extra_slot] = 0
        expected = self.btl_bw * (now - self._epoch_start)
        if self._epoch_acked <= expected:
            # ACKs are no faster than the bandwidth: start a new epoch here
            self._epoch_acked = 0
            self._epoch_start = now
            expected = 0.0
        self._epoch_acked += acked_bytes
        excess = min(int(self._epoch_acked - expected), self.cwnd)
        if excess > extra[self._extra_slot]:
            extra[self._extra_slot] = excess

    def _aggregation_allowance(self) -> int:
        """Extra window for bursty ACKs, once the bandwidth is known (after startup)."""
        if not self.filled_pipe:
            return 0
        return min(max(self._extra_acked), int(self.btl_bw * EXTRA_ACKED_MAX_TIME))

    def _check_full_pipe(self, rate: RateSample) -> None:
        if self.filled_pipe or not self._round_start:
            return
        if rate.app_limited and rate.delivery_rate < self.btl_bw:
            return  # an app-limited sample below the estimate says nothing about the pipe
        if self.btl_bw >= self._full_bw * FULL_BW_GROWTH:
            self._full_bw = self.btl_bw
            self._full_bw_count = 0
            return
        self._full_bw_count += 1
        if self._full_bw_count >= FULL_BW_ROUNDS:
            self.filled_pipe = True

    # -- events -----------------------------------------------------------------------------------

    def on_ack(self, acked: list[SentPacket], rate: RateSample | None, rtt: RttEstimator,
               bytes_in_flight: int, now: float) -> None:
        if rate is None:
            return
        acked_bytes = sum(p.size for p in acked)
        self._update_round(rate)
        self._delivered = rate.delivered
        if self._round_start:
            self._round_delivered = rate.delivered
            self._round_lost_bytes = self._round_lost_packets = 0
        self._update_bw(rate)
        self._update_ack_aggregation(acked_bytes, now)
        self._check_full_pipe(rate)
        if rate.rtt > 0:
            if rate.rtt <= self.min_rtt:
                self.min_rtt = rate.rtt
                self._min_rtt_stamp = now
            elif now - self._min_rtt_stamp > MIN_RTT_WINDOW and self.mode is not PROBE_RTT:
                self._enter_probe_rtt(now)
            if self.mode is PROBE_RTT:
                self._probe_rtt_min = min(self._probe_rtt_min, rate.rtt)
        self._update_mode(bytes_in_flight, now)
        self._update_cwnd(acked_bytes)

    def _update_mode(self, bytes_in_flight: int, now: float) -> None:
        if self.mode is STARTUP and self.filled_pipe:
            self.mode = DRAIN
            self.pacing_gain = 1 / STARTUP_GAIN
            self.cwnd_gain = STARTUP_CWND_GAIN
        if self.mode is DRAIN and bytes_in_flight <= self._bdp(1.0):
            self._enter_probe_bw(now)
        if self.mode is PROBE_BW and now - self._cycle_stamp > self.min_rtt:
            self._cycle_index = (self._cycle_index + 1) % len(PROBE_BW_GAINS)
            self._cycle_stamp = now
            self.pacing_gain = PROBE_BW_GAINS[self._cycle_index]
            self.cwnd_gain = CWND_GAIN if self.pacing_gain > 1.0 else CRUISE_CWND_GAIN
        if self.mode is PROBE_RTT and self._probe_rtt_done is not None \
                and now >= self._probe_rtt_done:
            self.min_rtt = min(self._probe_rtt_min, self.min_rtt * 1.25)
            self._min_rtt_stamp = now
            self.cwnd = max(self.cwnd, self._prior_cwnd)
            if self.filled_pipe:
                self._enter_probe_bw(now)
            else:
                self.mode = STARTUP
                self.pacing_gain = STARTUP_GAIN
                self.cwnd_gain = STARTUP_CWND_GAIN

    def _enter_probe_bw(self, now: float) -> None:
        self.mode = PROBE_BW
        # Start at a per-session phase of the cycle (never the draining 0.75 phase), so flows
        # sharing a bottleneck do not probe in lockstep, which slows their convergence.
        self._cycle_index = (2 + self._seed % (len(PROBE_BW_GAINS) - 1)) % len(PROBE_BW_GAINS)
        if self._cycle_index == 1:
            self._cycle_index = 0
        self._cycle_stamp = now
        self.pacing_gain = PROBE_BW_GAINS[self._cycle_index]
        self.cwnd_gain = CWND_GAIN if self.pacing_gain > 1.0 else CRUISE_CWND_GAIN

    def _enter_probe_rtt(self, now: float) -> None:
        self.mode = PROBE_RTT
        self.pacing_gain = 1.0
        self._prior_cwnd = self.cwnd
        self._probe_rtt_min = float("inf")
        self._probe_rtt_done = now + max(PROBE_RTT_DURATION, self.min_rtt)

    def _update_cwnd(self, acked_bytes: int) -> None:
        if self.mode is PROBE_RTT:
            self.cwnd = 4 * self.max_datagram
            return
        target = self._bdp(self.cwnd_gain) + self._aggregation_allowance()
        if self.filled_pipe:
            self.cwnd = min(self.cwnd + acked_bytes, target)
        elif self.cwnd < target or self.btl_bw == 0:
            self.cwnd += acked_bytes
        self.cwnd = max(self.cwnd, 4 * self.max_datagram)

    @property
    def window_ceiling(self) -> int:
        """PROBE_BW's window while probing up, whatever the phase: in its cruise the window is
        about 1.25 BDPs, and a send buffer of twice that stalled behind a lost packet (a 1 MiB
        message is held until all of it is acknowledged) at 1 % loss."""
        if not self.filled_pipe:
            return self.cwnd
        return max(self.cwnd, self._bdp(CWND_GAIN) + self._aggregation_allowance())

    def on_loss(self, lost: list[SentPacket], rtt: RttEstimator, now: float) -> None:
        """Random loss is not a congestion signal here; the model already bounds the queue.
        In STARTUP, though, loss beside a full queue means the pipe is full: a 1-BDP drop-tail
        queue overflows in the round startup's 2.89 gain fills it, and waiting the three
        rounds of flat bandwidth that would end startup loses a window's worth."""
        if self.filled_pipe or self.mode is not STARTUP:
            return
        self._round_lost_packets += len(lost)
        self._round_lost_bytes += sum(p.size for p in lost)
        lost_bytes = self._round_lost_bytes
        delivered = self._delivered - self._round_delivered
        if (self._round_lost_packets >= STARTUP_LOSS_PACKETS
                and lost_bytes > STARTUP_LOSS_RATE * (delivered + lost_bytes)
                and rtt.latest >= STARTUP_QUEUE_RTT * min(self.min_rtt, rtt.min_rtt)):
            self.filled_pipe = True  # the next ACK moves to DRAIN

    def pacing_rate(self, rtt: RttEstimator) -> float:
        if self.btl_bw == 0:
            return STARTUP_GAIN * self.cwnd / max(rtt.smoothed, 1e-4)
        return self.pacing_gain * self.btl_bw
