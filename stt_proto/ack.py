"""Which packet numbers we received, as the ranges an ACK frame reports, and when to send one."""

from __future__ import annotations

from .frames import MAX_ACK_RANGES, FrameType, encode_ack
from .varint import encode_varint

MAX_ACK_DELAY = 0.025  # seconds an acknowledgement may be held back
ACK_ELICITING_THRESHOLD = 2  # acknowledge at once after this many ack-eliciting packets
_ACK_TYPE = encode_varint(FrameType.ACK)
_NO_MORE_RANGES = encode_varint(0)  # the range count after the first


class AckTracker:
    """Received packet numbers as disjoint inclusive ranges, highest first, at most
    ``MAX_ACK_RANGES`` of them (the oldest are forgotten: the peer has long given up on them)."""

    __slots__ = ("_largest_time", "_pending_eliciting", "ack_deadline", "ranges")

    def __init__(self) -> None:
        self.ranges: list[list[int]] = []
        self.ack_deadline: float | None = None
        self._pending_eliciting = 0
        self._largest_time = 0.0

    def on_packet(self, pn: int, ack_eliciting: bool, now: float, immediate: bool = False) -> None:
        ranges = self.ranges
        if not ranges or pn > ranges[0][1]:
            self._largest_time = now
            if ranges and pn == ranges[0][1] + 1:
                ranges[0][1] = pn
            else:
                if ranges:
                    immediate = True  # a gap: something was lost or reordered
                ranges.insert(0, [pn, pn])
        else:
            self._insert_old(pn)
            immediate = True  # out of order: tell the sender quickly
        if len(ranges) > MAX_ACK_RANGES:
            del ranges[MAX_ACK_RANGES:]
        if not ack_eliciting:
            return
        self._pending_eliciting += 1
        if immediate or self._pending_eliciting >= ACK_ELICITING_THRESHOLD:
            self.ack_deadline = now
        elif self.ack_deadline is None:
            self.ack_deadline = now + MAX_ACK_DELAY

    def _insert_old(self, pn: int) -> None:
        ranges = self.ranges
        for i, (lo, hi) in enumerate(ranges):
            if lo <= pn <= hi:
                return
            if pn == hi + 1:
                ranges[i][1] = pn
                if i > 0 and ranges[i - 1][0] == pn + 1:
                    ranges[i - 1][0] = lo
                    del ranges[i]
                return
            if pn == lo - 1:
                ranges[i][0] = pn
                if i + 1 < len(ranges) and ranges[i + 1][1] == pn - 1:
                    ranges[i][0] = ranges[i + 1][0]
                    del ranges[i + 1]
                return
            if pn > hi:
                ranges.insert(i, [pn, pn])
                return
        ranges.append([pn, pn])

    def contains(self, pn: int) -> bool:
        return any(lo <= pn <= hi for lo, hi in self.ranges)

    def ack_due(self, now: float) -> bool:
        return self.ack_deadline is not None and now >= self.ack_deadline

    def encode(self, now: float) -> bytes:
        """The encoded ACK frame to send now (and reset the pending count), or b"" if nothing
        was seen. Bytes, not an :class:`AckFrame`: one goes into nearly every packet of a
        dialogue, and the usual single range encodes in one join."""
        ranges = self.ranges
        if not ranges:
            return b""
        self.ack_deadline = None
        self._pending_eliciting = 0
        delay_us = max(0, int((now - self._largest_time) * 1_000_000))
        if len(ranges) == 1:  # the usual case: everything so far, or since the last gap
            (lo, hi), = ranges
            v = encode_varint
            return b"".join((_ACK_TYPE, v(hi), v(delay_us), _NO_MORE_RANGES, v(hi - lo)))
        out = bytearray()
        encode_ack(out, tuple((lo, hi) for lo, hi in ranges), delay_us)
        return bytes(out)
