"""The interface every congestion controller implements."""

from __future__ import annotations

from typing import ClassVar

from ..recovery import RateSample, SentPacket
from ..rtt import RttEstimator

INITIAL_WINDOW_PACKETS = 10
MINIMUM_WINDOW_PACKETS = 2


class CongestionController:
    """Decides how many bytes may be in flight (``cwnd``) and how fast to pace them."""

    name: ClassVar[str] = "base"

    def __init__(self, max_datagram: int, seed: int = 0) -> None:
        self.max_datagram = max_datagram
        self.cwnd = INITIAL_WINDOW_PACKETS * max_datagram
        self.ssthresh: float = float("inf")

    @property
    def minimum_window(self) -> int:
        return MINIMUM_WINDOW_PACKETS * self.max_datagram

    def on_packet_sent(self, packet: SentPacket, bytes_in_flight: int, now: float) -> None:
        """Called after each packet that counts toward bytes in flight."""

    def on_ack(self, acked: list[SentPacket], rate: RateSample | None, rtt: RttEstimator,
               bytes_in_flight: int, now: float) -> None:
        raise NotImplementedError

    def on_loss(self, lost: list[SentPacket], rtt: RttEstimator, now: float) -> None:
        raise NotImplementedError

    def on_datagram_size(self, size: int) -> None:
        """Path-MTU discovery changed the datagram size. Before any congestion signal the
        window keeps its count of packets (the initial window is 10 of them, whatever their
        size); after one it keeps its bytes. Never below the minimum window."""
        if size > self.max_datagram and self.ssthresh == float("inf"):
            self.cwnd = self.cwnd * size // self.max_datagram
        self.max_datagram = size
        self.cwnd = max(self.cwnd, self.minimum_window)

    def on_persistent_congestion(self, now: float) -> None:
        self.cwnd = self.minimum_window

    def pacing_rate(self, rtt: RttEstimator) -> float:
        """Bytes per second to pace at: by default 1.25 windows per smoothed RTT."""
        return 1.25 * self.cwnd / max(rtt.smoothed, 1e-4)

    @property
    def window_ceiling(self) -> int:
        """The largest window the controller may open within a round trip or so: the send
        buffer is sized from it (twice), so that it never starves the pipe."""
        return self.cwnd

    @property
    def in_slow_start(self) -> bool:
        return self.cwnd < self.ssthresh

    @property
    def state(self) -> str:
        """The controller's phase, for stats: "slow_start" or "congestion_avoidance"."""
        return "slow_start" if self.in_slow_start else "congestion_avoidance"
