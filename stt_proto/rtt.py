"""Round-trip time estimation as in RFC 9002 section 5: latest, min, smoothed and variance."""

from __future__ import annotations

INITIAL_RTT = 0.1  # seconds, before any sample
TIMER_GRANULARITY = 0.001


class RttEstimator:
    __slots__ = ("has_sample", "latest", "min_rtt", "rttvar", "smoothed")

    def __init__(self, initial_rtt: float = INITIAL_RTT) -> None:
        self.has_sample = False
        self.latest = initial_rtt
        self.min_rtt = initial_rtt
        self.smoothed = initial_rtt
        self.rttvar = initial_rtt / 2

    def update(self, sample: float, ack_delay: float = 0.0, max_ack_delay: float = 0.025) -> None:
        """Fold in one sample; ``ack_delay`` (bounded by ``max_ack_delay``) is subtracted when
        doing so does not go below the minimum RTT."""
        if sample <= 0:
            return
        self.latest = sample
        if not self.has_sample:
            self.has_sample = True
            self.min_rtt = self.smoothed = sample
            self.rttvar = sample / 2
            return
        self.min_rtt = min(self.min_rtt, sample)
        adjusted = sample
        ack_delay = min(ack_delay, max_ack_delay)
        if sample >= self.min_rtt + ack_delay:
            adjusted = sample - ack_delay
        self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.smoothed - adjusted)
        self.smoothed = 0.875 * self.smoothed + 0.125 * adjusted

    def pto(self, max_ack_delay: float = 0.025) -> float:
        """Probe timeout: how long to wait for an acknowledgement before probing."""
        return self.smoothed + max(4 * self.rttvar, TIMER_GRANULARITY) + max_ack_delay
