"""LossRecovery's dialogue branch (the ACK covers the one packet outstanding) against the
general ACK path, over arbitrary histories of sends, ACKs (with gaps and duplicates), losses
and timeouts: the same result and the same state, field by field."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.recovery import LossRecovery, SentPacket
from stt_proto.rtt import RttEstimator

# ("send", size, ack_eliciting, in_flight, app_limited, dt), ("ack", lo, span, delay, dt),
# ("timeout",): the history before the ACK under test.
_history = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(1, 1500), st.booleans(), st.booleans(),
              st.booleans(), st.floats(0, 0.05)),
    st.tuples(st.just("ack"), st.integers(0, 30), st.integers(0, 5), st.integers(0, 40_000),
              st.floats(0, 0.05)),
    st.tuples(st.just("timeout"),),
), max_size=25)


def _state(recovery: LossRecovery) -> dict[str, Any]:
    # every data attribute (dir(), not __slots__: the compiled class has none)
    state = {name: getattr(recovery, name) for name in dir(recovery)
             if not name.startswith("__") and not callable(getattr(recovery, name))
             and name not in ("rtt", "sent")}
    assert {"bytes_in_flight", "largest_acked", "loss_time", "_app_limited_until"} <= set(state)
    state["sent"] = [(pn, p.pn, p.size) for pn, p in recovery.sent.items()]
    rtt = recovery.rtt
    state["rtt"] = (rtt.latest, rtt.smoothed, rtt.rttvar, rtt.min_rtt, rtt.has_sample)
    return state


def _result(result: Any) -> tuple[Any, ...]:
    return ([p.pn for p in result.acked], [p.pn for p in result.lost], result.rate,
            result.persistent_congestion, result.newly_acked_bytes)


def _replay(history: list[tuple[Any, ...]], last: tuple[Any, ...], below: int, above: int,
            dt: float) -> tuple[LossRecovery, tuple[tuple[int, int]], float, int]:
    """A LossRecovery after ``history`` with one packet outstanding, and the ACK to test."""
    recovery = LossRecovery(RttEstimator())
    now, next_pn = 1.0, 0
    for step in history:
        if step[0] == "send":
            _, size, eliciting, in_flight, app_limited, gap = step
            now += gap
            recovery.on_packet_sent(SentPacket(next_pn, now, size, eliciting, in_flight, []),
                                    app_limited)
            next_pn += 1
        elif step[0] == "ack" and next_pn:
            _, lo, span, ack_delay, gap = step
            now += gap
            lo %= next_pn
            recovery.on_ack(((lo, min(next_pn - 1, lo + span)),), ack_delay, now, next_pn)
        elif step[0] == "timeout":
            deadline = recovery.loss_detection_timer()
            if deadline is not None:
                now = max(now, deadline)
                recovery.on_timeout(now)
    if len(recovery.sent) != 1:
        # the packet under test is a new one: whatever else is outstanding is discarded
        recovery.discard_all()
        size, eliciting, in_flight, app_limited, gap = last
        now += gap
        recovery.on_packet_sent(SentPacket(next_pn, now, size, eliciting, in_flight, []),
                                app_limited)
        next_pn += 1
    # else the history left one packet outstanding, maybe older than the largest acknowledged
    pn = next(iter(recovery.sent))
    ack = ((max(0, pn - below), pn + min(above, next_pn - 1 - pn)),)
    now += dt
    return recovery, ack, now, next_pn


@settings(max_examples=500, deadline=None)
@given(history=_history, last=st.tuples(st.integers(1, 1500), st.booleans(), st.booleans(),
                                        st.booleans(), st.floats(0, 0.05)),
       below=st.integers(0, 3), above=st.integers(0, 3), delay=st.integers(0, 60_000),
       dt=st.floats(0, 0.2))
def test_acking_the_sole_outstanding_packet_matches_the_general_path(
        history: list[tuple[Any, ...]], last: tuple[Any, ...], below: int, above: int,
        delay: int, dt: float) -> None:
    # the same history twice (LossRecovery is deterministic): one instance takes the
    # dialogue branch, the other the general path, forced
    recovery, ack, now, next_pn = _replay(history, last, below, above, dt)
    general = _replay(history, last, below, above, dt)[0]
    expected = general._ack_ranges(ack, delay, now)  # the general path, forced
    sole = recovery.on_ack(ack, delay, now, next_pn)  # takes the dialogue branch
    assert len(recovery.sent) == 0
    assert _result(sole) == _result(expected)
    assert _state(recovery) == _state(general)


def test_the_dialogue_branch_is_taken_only_when_it_covers_the_one_packet() -> None:
    recovery = LossRecovery(RttEstimator())
    for pn in range(2):
        recovery.on_packet_sent(SentPacket(pn, 0.0, 100, True, True, []), False)
    # two outstanding: the general path acknowledges packet 1 alone
    result = recovery.on_ack(((1, 1),), 0, 0.01, next_pn=2)
    assert [p.pn for p in result.acked] == [1] and list(recovery.sent) == [0]
    # one outstanding, an ACK that misses it: nothing acknowledged, packet 0 kept
    result = recovery.on_ack(((1, 1),), 0, 0.02, next_pn=2)
    assert result.acked == [] and list(recovery.sent) == [0]
    result = recovery.on_ack(((0, 1),), 0, 0.03, next_pn=2)
    assert [p.pn for p in result.acked] == [0] and not recovery.sent
    assert recovery.loss_time is None and recovery.bytes_in_flight == 0


def test_an_old_sole_packet_is_acknowledged_without_an_rtt_sample() -> None:
    rtt = RttEstimator()
    recovery = LossRecovery(rtt)
    for pn in range(2):
        recovery.on_packet_sent(SentPacket(pn, 0.0, 100, True, True, []), False)
    recovery.on_ack(((1, 1),), 0, 0.01, next_pn=2)  # packet 0 stays: within the thresholds
    assert list(recovery.sent) == [0] and recovery.loss_time is not None
    smoothed = rtt.smoothed
    result = recovery.on_ack(((0, 1),), 0, 0.5, next_pn=2)  # late: not an RTT sample
    assert [p.pn for p in result.acked] == [0] and rtt.smoothed == smoothed
    assert recovery.loss_time is None and recovery.largest_acked == 1
