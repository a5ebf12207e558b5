"""Loss detection and recovery after RFC 9002, plus delivery-rate sampling for the controllers.

Sent packets are remembered until acknowledged or declared lost. A packet is lost when three
newer packets were acknowledged (packet threshold) or it is older than 9/8 of the RTT behind an
acknowledged one (time threshold). With nothing acknowledged for a probe timeout (PTO), probes go
out and the timeout doubles. What a lost packet carried is handed back for retransmission in new
packets: packet numbers are never reused.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import attrs

from .errors import ProtocolViolation
from .rtt import TIMER_GRANULARITY, RttEstimator

PACKET_THRESHOLD = 3
TIME_THRESHOLD = 9 / 8
PERSISTENT_CONGESTION_THRESHOLD = 3
MAX_ACK_DELAY = 0.025


class SentPacket:
    """What we need to know about a packet after sending it. A plain slotted class, not an
    attrs one: one is made per packet sent, and attrs' generated initialiser is interpreted
    Python beside the compiled core (0.29 against 0.17 µs a packet); compared by identity."""

    __slots__ = ("ack_eliciting", "app_limited", "delivered", "delivered_time",
                 "first_sent_time", "in_flight", "items", "pn", "size", "time_sent")

    def __init__(self, pn: int, time_sent: float, size: int, ack_eliciting: bool,
                 in_flight: bool, items: list[Any], delivered: int = 0,
                 delivered_time: float = 0.0, first_sent_time: float = 0.0,
                 app_limited: bool = False) -> None:
        self.pn = pn
        self.time_sent = time_sent
        self.size = size
        self.ack_eliciting = ack_eliciting
        self.in_flight = in_flight
        self.items = items  # what to retransmit if lost: stream ranges and control frames
        self.delivered = delivered
        self.delivered_time = delivered_time
        self.first_sent_time = first_sent_time
        self.app_limited = app_limited

    def __repr__(self) -> str:
        return (f"SentPacket(pn={self.pn}, time_sent={self.time_sent}, size={self.size}, "
                f"ack_eliciting={self.ack_eliciting}, in_flight={self.in_flight}, "
                f"items={self.items!r})")


class RateSample(NamedTuple):
    """One delivery-rate measurement (bytes per second) and whether the app limited it.
    A named tuple, not a frozen attrs class: one is made per ACK, in half the time."""

    delivery_rate: float
    app_limited: bool
    rtt: float
    delivered: int
    prior_delivered: int


@attrs.define(slots=True)
class AckResult:
    acked: list[SentPacket]
    lost: list[SentPacket]
    rate: RateSample | None
    persistent_congestion: bool
    newly_acked_bytes: int


class LossRecovery:
    __slots__ = (
        "_app_limited_until",
        "bytes_in_flight",
        "delivered",
        "delivered_time",
        "eliciting_in_flight",
        "first_sent_time",
        "largest_acked",
        "loss_time",
        "lost_bytes",
        "lost_packets",
        "pto_count",
        "rtt",
        "sent",
        "sent_count",
        "time_of_last_eliciting",
    )

    def __init__(self, rtt: RttEstimator) -> None:
        self.rtt = rtt
        self.sent: dict[int, SentPacket] = {}
        self.bytes_in_flight = 0
        self.largest_acked = -1
        self.loss_time: float | None = None
        self.pto_count = 0
        self.time_of_last_eliciting: float | None = None
        self.lost_packets = 0
        self.lost_bytes = 0
        self.eliciting_in_flight = 0
        self.sent_count = 0  # packets that counted toward bytes in flight
        # delivery-rate estimation state
        self.delivered = 0
        self.delivered_time = 0.0
        self.first_sent_time = 0.0
        self._app_limited_until = 0

    # -- sending ----------------------------------------------------------------------------------

    @property
    def app_limited(self) -> bool:
        """Whether packets sent now are marked application-limited (their rate samples may
        not lower the bandwidth estimate): sending ran short of data within the last window."""
        return self._app_limited_until > self.delivered

    def on_packet_sent(self, packet: SentPacket, app_limited: bool) -> None:
        if not self.sent:
            self.first_sent_time = self.delivered_time = packet.time_sent
        packet.delivered = self.delivered
        packet.delivered_time = self.delivered_time
        packet.first_sent_time = self.first_sent_time
        if app_limited:
            self._app_limited_until = self.delivered + max(self.bytes_in_flight, 1)
        packet.app_limited = self._app_limited_until > self.delivered
        self.sent[packet.pn] = packet
        self.sent_count += 1
        if packet.in_flight:
            self.bytes_in_flight += packet.size
        if packet.ack_eliciting:
            self.time_of_last_eliciting = packet.time_sent
            self.eliciting_in_flight += 1

    # -- acknowledgements -------------------------------------------------------------------------

    def on_ack(self, ranges: tuple[tuple[int, int], ...], ack_delay: int, now: float,
               next_pn: int) -> AckResult:
        """An ACK frame's ``ranges`` (newest first) and ``ack_delay`` (microseconds)."""
        largest = ranges[0][1]
        if largest >= next_pn:
            raise ProtocolViolation(f"ACK for packet {largest}, which was never sent")
        sent = self.sent
        if len(sent) == 1 and len(ranges) == 1:  # a dialogue: one packet out, acknowledged?
            pn = next(iter(sent))
            if ranges[0][0] <= pn <= largest:
                return self._ack_sole(sent.pop(pn), ack_delay, now)
        return self._ack_ranges(ranges, ack_delay, now)

    def _ack_ranges(self, ranges: tuple[tuple[int, int], ...], ack_delay: int,
                    now: float) -> AckResult:
        """:meth:`on_ack`'s general case: any ranges, any packets outstanding."""
        sent = self.sent
        acked: list[SentPacket] = []  # ascending packet numbers, so ascending send times
        if sent:
            first_outstanding = next(iter(sent))
            for lo, hi in reversed(ranges):  # the frame lists ranges newest first
                if hi < first_outstanding:
                    continue
                for pn in range(max(lo, first_outstanding), hi + 1):
                    packet = sent.pop(pn, None)
                    if packet is not None:
                        acked.append(packet)
        if not acked:
            return AckResult([], [], None, False, 0)
        newly = 0
        eliciting = False
        for packet in acked:
            if packet.in_flight:
                self.bytes_in_flight -= packet.size
            if packet.ack_eliciting:
                self.eliciting_in_flight -= 1
                eliciting = True
            newly += packet.size
        newest = acked[-1]
        if newest.pn > self.largest_acked:
            self.largest_acked = newest.pn
            if eliciting:
                self.rtt.update(now - newest.time_sent, ack_delay / 1e6, MAX_ACK_DELAY)
        # the rate sample follows the last-sent packet, the first of any sent at the same time
        first = len(acked) - 1
        while first and acked[first - 1].time_sent == newest.time_sent:
            first -= 1
        rate = self._rate_sample(acked[first], newly, now)
        self.pto_count = 0
        lost, persistent = self._detect_lost(now)
        return AckResult(acked, lost, rate, persistent, newly)

    def _ack_sole(self, packet: SentPacket, ack_delay: int, now: float) -> AckResult:
        """:meth:`on_ack` when the ACK covers the one packet outstanding (a dialogue's usual
        ACK): the same outcome without the general loops. Nothing older is left, so nothing
        can be lost and no loss timer remains."""
        size = packet.size
        if packet.in_flight:
            self.bytes_in_flight -= size
        if packet.ack_eliciting:
            self.eliciting_in_flight -= 1
        if packet.pn > self.largest_acked:
            self.largest_acked = packet.pn
            if packet.ack_eliciting:
                self.rtt.update(now - packet.time_sent, ack_delay / 1e6, MAX_ACK_DELAY)
        rate = self._rate_sample(packet, size, now)
        self.pto_count = 0
        self.loss_time = None
        return AckResult([packet], [], rate, False, size)

    def _rate_sample(self, newest: SentPacket, newly: int, now: float) -> RateSample | None:
        """``newest``: the last-sent packet of those just acknowledged; ``newly``: their bytes."""
        self.delivered += newly
        self.delivered_time = now
        self.first_sent_time = newest.time_sent
        send_elapsed = newest.time_sent - newest.first_sent_time
        ack_elapsed = now - newest.delivered_time
        interval = max(send_elapsed, ack_elapsed)
        if interval < TIMER_GRANULARITY / 10:
            return None
        delivered = self.delivered - newest.delivered
        return RateSample(delivered / interval, newest.app_limited, now - newest.time_sent,
                          self.delivered, newest.delivered)

    # -- loss -------------------------------------------------------------------------------------

    def _detect_lost(self, now: float) -> tuple[list[SentPacket], bool]:
        self.loss_time = None
        sent = self.sent
        if not sent or next(iter(sent)) > self.largest_acked:
            return [], False  # nothing older than the largest acknowledged is outstanding
        rtt = self.rtt
        loss_delay = max(TIME_THRESHOLD * max(rtt.latest, rtt.smoothed), TIMER_GRANULARITY)
        lost: list[SentPacket] = []
        for pn, packet in self.sent.items():
            if pn > self.largest_acked:
                break
            # the same expression as loss_time below, so equality at the deadline is exact
            if (pn <= self.largest_acked - PACKET_THRESHOLD
                    or packet.time_sent + loss_delay <= now):
                lost.append(packet)
            else:
                self.loss_time = packet.time_sent + loss_delay
                break
        persistent = False
        for packet in lost:
            del self.sent[packet.pn]
            if packet.in_flight:
                self.bytes_in_flight -= packet.size
            if packet.ack_eliciting:
                self.eliciting_in_flight -= 1
            self.lost_packets += 1
            self.lost_bytes += packet.size
        if len(lost) >= 2 and rtt.has_sample:
            span = lost[-1].time_sent - lost[0].time_sent
            duration = (rtt.smoothed + max(4 * rtt.rttvar, TIMER_GRANULARITY) + MAX_ACK_DELAY)
            persistent = span > duration * PERSISTENT_CONGESTION_THRESHOLD
        return lost, persistent

    def loss_detection_timer(self) -> float | None:
        if self.loss_time is not None:
            return self.loss_time
        if self.time_of_last_eliciting is None or not self.eliciting_in_flight:
            return None
        backoff: float = 2.0 ** self.pto_count
        return self.time_of_last_eliciting + self.rtt.pto(MAX_ACK_DELAY) * backoff

    def on_timeout(self, now: float) -> tuple[list[SentPacket], bool]:
        """Returns (lost packets, whether to send probes)."""
        if self.loss_time is not None and now >= self.loss_time:
            lost, _ = self._detect_lost(now)
            return lost, False
        self.pto_count += 1
        return [], True

    def discard_all(self) -> list[SentPacket]:
        packets = list(self.sent.values())
        self.sent.clear()
        self.bytes_in_flight = 0
        self.eliciting_in_flight = 0
        return packets
