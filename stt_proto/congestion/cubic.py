"""CUBIC (RFC 9438): a cubic window growth around the last maximum, with a Reno-friendly floor."""

from __future__ import annotations

from typing import ClassVar

from ..recovery import RateSample, SentPacket
from ..rtt import RttEstimator
from .base import CongestionController

C = 0.4
BETA = 0.7


class Cubic(CongestionController):
    name: ClassVar[str] = "cubic"

    def __init__(self, max_datagram: int, seed: int = 0) -> None:
        super().__init__(max_datagram, seed)
        self.recovery_start = -1.0
        self.w_max = 0.0
        self.k = 0.0
        self.epoch_start: float | None = None
        self.w_est = 0.0

    def on_ack(self, acked: list[SentPacket], rate: RateSample | None, rtt: RttEstimator,
               bytes_in_flight: int, now: float) -> None:
        mss = self.max_datagram
        for packet in acked:
            if not packet.in_flight or packet.time_sent <= self.recovery_start:
                continue
            if self.in_slow_start:
                self.cwnd += packet.size
                continue
            if self.epoch_start is None:
                self.epoch_start = now
                self.w_est = float(self.cwnd)
                if self.w_max < self.cwnd:
                    self.k = 0.0
                    self.w_max = float(self.cwnd)
                else:
                    self.k = ((self.w_max - self.cwnd) / mss / C) ** (1 / 3)
            t = now - self.epoch_start + rtt.smoothed
            target = (C * (t - self.k) ** 3) * mss + self.w_max
            # the Reno-friendly estimate (RFC 9438 section 4.3)
            self.w_est += mss * (3 * (1 - BETA) / (1 + BETA)) * packet.size / self.cwnd
            target = max(target, self.w_est)
            target = min(target, 1.5 * self.cwnd)
            if target > self.cwnd:
                self.cwnd += max(int((target - self.cwnd) * packet.size / self.cwnd), 1)

    def on_loss(self, lost: list[SentPacket], rtt: RttEstimator, now: float) -> None:
        newest = max(p.time_sent for p in lost)
        if newest <= self.recovery_start:
            return
        self.recovery_start = now
        self.epoch_start = None
        # fast convergence: release bandwidth when the window shrinks below the last maximum
        if self.cwnd < self.w_max:
            self.w_max = self.cwnd * (1 + BETA) / 2
        else:
            self.w_max = float(self.cwnd)
        self.cwnd = max(int(self.cwnd * BETA), self.minimum_window)
        self.ssthresh = float(self.cwnd)

    def on_persistent_congestion(self, now: float) -> None:
        super().on_persistent_congestion(now)
        self.epoch_start = None
        self.w_max = 0.0
