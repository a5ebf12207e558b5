"""AckTracker: the ranges it keeps, when it wants an ACK sent, and the frame it encodes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from stt_proto.ack import MAX_ACK_DELAY, AckTracker
from stt_proto.frames import MAX_ACK_RANGES, AckFrame, decode_frame


def _decoded(encoded: bytes) -> AckFrame:
    frame, end = decode_frame(encoded, 0)
    assert end == len(encoded)
    assert isinstance(frame, AckFrame)
    return frame


def test_nothing_seen_encodes_nothing() -> None:
    assert AckTracker().encode(1.0) == b""


def test_one_range_with_its_delay_and_the_deadline_reset() -> None:
    acks = AckTracker()
    for pn in range(5):
        acks.on_packet(pn, True, 10.0 + pn * 0.001)
    assert acks.ack_deadline is not None
    frame = _decoded(acks.encode(10.0045))
    assert frame.ranges == ((0, 4),)
    assert frame.ack_delay == 500  # microseconds since the largest arrived
    assert acks.ack_deadline is None


def test_deadlines() -> None:
    acks = AckTracker()
    acks.on_packet(0, True, 1.0)
    assert acks.ack_deadline == 1.0 + MAX_ACK_DELAY  # one eliciting packet: delayed
    acks.on_packet(1, False, 1.001)
    assert acks.ack_deadline == 1.0 + MAX_ACK_DELAY  # non-eliciting: no change
    acks.on_packet(2, True, 1.002)
    assert acks.ack_deadline == 1.002  # the second eliciting one: at once
    acks.encode(1.002)
    acks.on_packet(5, True, 1.003)
    assert acks.ack_deadline == 1.003  # a gap: at once


@given(st.lists(st.integers(0, 2_000), max_size=300),
       st.integers(0, 10**6), st.integers(0, 10**6))
def test_encoded_frame_reports_exactly_the_ranges_kept(numbers: list[int], heard_us: int,
                                                       wait_us: int) -> None:
    acks = AckTracker()
    heard = heard_us / 1e6
    for pn in numbers:
        acks.on_packet(pn, True, heard)
    kept = tuple((lo, hi) for lo, hi in acks.ranges)
    encoded = acks.encode(heard + wait_us / 1e6)
    if not numbers:
        assert encoded == b""
        return
    frame = _decoded(encoded)
    assert frame.ranges == kept
    assert abs(frame.ack_delay - wait_us) <= 1
    assert len(kept) <= MAX_ACK_RANGES
    # what is kept is what was received, newest ranges first, less the oldest past the cap
    received = set(numbers)
    assert all(pn in received for lo, hi in kept for pn in range(lo, hi + 1))
    assert kept[0][1] == max(numbers)
