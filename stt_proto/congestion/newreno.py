"""NewReno (RFC 9002, section 7): slow start, congestion avoidance, halving on loss."""

from __future__ import annotations

from typing import ClassVar

from ..recovery import RateSample, SentPacket
from ..rtt import RttEstimator
from .base import CongestionController

LOSS_REDUCTION = 0.5


class NewReno(CongestionController):
    name: ClassVar[str] = "newreno"

    def __init__(self, max_datagram: int, seed: int = 0) -> None:
        super().__init__(max_datagram, seed)
        self.recovery_start = -1.0
        self._acked_in_ca = 0

    def on_ack(self, acked: list[SentPacket], rate: RateSample | None, rtt: RttEstimator,
               bytes_in_flight: int, now: float) -> None:
        for packet in acked:
            if not packet.in_flight or packet.time_sent <= self.recovery_start:
                continue
            if self.in_slow_start:
                self.cwnd += packet.size
            else:
                self._acked_in_ca += packet.size
                if self._acked_in_ca >= self.cwnd:
                    self._acked_in_ca -= self.cwnd
                    self.cwnd += self.max_datagram

    def on_loss(self, lost: list[SentPacket], rtt: RttEstimator, now: float) -> None:
        newest = max(p.time_sent for p in lost)
        if newest <= self.recovery_start:
            return  # one reduction per round trip of losses
        self.recovery_start = now
        self.cwnd = max(int(self.cwnd * LOSS_REDUCTION), self.minimum_window)
        self.ssthresh = float(self.cwnd)
        self._acked_in_ca = 0
