"""How many datagrams a handshake costs each way (issue 25, handshakes/s): every datagram is a
``sendto`` and a receive on a busy node, and a duplicate answered by a duplicate doubles the
work of a burst. The initiator drives the resends; the responder answers them, and its own
timer is a slower fallback."""

from __future__ import annotations

from collections import Counter

import pytest

from stt_proto.packet import PacketType, parse_packet
from stt_proto.session.timers import T_HANDSHAKE_RESEND
from stt_proto.sim import LinkProfile

from .conftest import A, B, Pair, make_pair


def _kinds(pair: Pair, source: tuple[str, int]) -> Counter[str]:
    return Counter(parse_packet(raw).type.name for _, src, _, raw in pair.net.trace
                   if src == source)


def test_a_handshake_costs_three_datagrams_in_and_two_out() -> None:
    """INITIAL, FINISH and the (delayed) ACK of HANDSHAKE_DONE from the initiator; message 2
    and HANDSHAKE_DONE from the responder; then nothing until the sessions carry data."""
    pair = make_pair(profile=LinkProfile(latency=0.01))
    session = pair.connect()
    pair.net.run(3.0)
    assert session.confirmed
    assert _kinds(pair, A) == {"INITIAL": 1, "FINISH": 1, "DATA": 1}
    assert _kinds(pair, B) == {"HANDSHAKE": 1, "DATA": 1}


def test_the_responders_own_resend_waits_longer() -> None:
    """A round trip longer than the initiator's first resend wait (0.5 s), every resent INITIAL
    dropped: the responder sends message 2 once; its own fallback timer (1.0 s) has not fired
    when the handshake completes (0.9 s)."""
    pair = make_pair(profile=LinkProfile(latency=0.3))
    initials = 0

    def first_initial_only(src: object, dst: object, data: bytes) -> bytes | None:
        nonlocal initials
        if parse_packet(data).type is PacketType.INITIAL:
            initials += 1
            return data if initials == 1 else None
        return data

    pair.net.tamper = first_initial_only
    session = pair.connect()
    pair.net.run(0.4)
    (responder,) = pair.server.sessions.values()
    assert responder._handshake.packet is not None  # message 2 is out
    assert responder._timers.get(T_HANDSHAKE_RESEND) == pytest.approx(0.3 + 1.0)
    pair.net.run(3.0)
    assert session.confirmed and initials >= 2  # the initiator did resend
    assert _kinds(pair, B)["HANDSHAKE"] == 1


def test_a_retry_on_a_long_round_trip_costs_no_duplicates() -> None:
    """750 ms round trip, RETRY for every INITIAL: the first INITIAL is resent at 0.5 s, its
    RETRY arrives after, and the INITIAL with the token waits the backed-off time (1.0 s), not
    0.5 s again: no duplicate INITIAL, so no duplicate message 2, FINISH or HANDSHAKE_DONE."""
    pair = make_pair(profile=LinkProfile(latency=0.375), server_config={"retry_threshold": 0})
    session = pair.connect()
    pair.net.run(3.0)
    assert session.confirmed
    assert _kinds(pair, A) == {"INITIAL": 3, "FINISH": 1, "DATA": 1}
    assert _kinds(pair, B) == {"RETRY": 2, "HANDSHAKE": 1, "DATA": 1}


def test_a_retry_times_the_next_initials_resend() -> None:
    """An unambiguous RETRY round trip (no resend before it) is an RTT sample: with message 2
    lost, the INITIAL with the token is resent 2 x RTT after the RETRY, not 0.5 s after."""
    pair = make_pair(profile=LinkProfile(latency=0.2), server_config={"retry_threshold": 0})
    lost = 0

    def lose_first_message2(src: object, dst: object, data: bytes) -> bytes | None:
        nonlocal lost
        if parse_packet(data).type is PacketType.HANDSHAKE and not lost:
            lost += 1
            return None
        return data

    pair.net.tamper = lose_first_message2
    session = pair.connect()
    pair.net.run(3.0)
    assert session.confirmed and lost == 1
    sent = [when - 0.2 for when, src, _, raw in pair.net.trace  # the trace logs arrivals
            if src == A and parse_packet(raw).type is PacketType.INITIAL]
    assert len(sent) == 3
    retry_at = 0.4
    assert sent[1] == pytest.approx(retry_at)
    assert sent[2] == pytest.approx(retry_at + 2 * 0.4)  # 1.2, not 0.9 (0.5 s later)


def test_finish_after_resent_initials_is_resent_at_the_first_wait() -> None:
    """Three INITIALs lost, then the first FINISH: message 2 came, so the path works, and
    FINISH is resent 0.5 s later, not after the INITIALs' backed-off wait (4 s), now that
    the responder's own resend (which made the initiator resend FINISH) waits longer."""
    pair = make_pair(profile=LinkProfile(latency=0.01))
    seen: Counter[str] = Counter()

    def lose(src: object, dst: object, data: bytes) -> bytes | None:
        kind = parse_packet(data).type.name
        seen[kind] += 1
        if (kind == "INITIAL" and seen[kind] <= 3) or (kind == "FINISH" and seen[kind] == 1):
            return None
        return data

    pair.net.tamper = lose
    session = pair.connect()
    pair.net.run(6.0)
    assert session.confirmed and seen["INITIAL"] == 4
    finishes = [when for when, src, _, raw in pair.net.trace
                if src == A and parse_packet(raw).type is PacketType.FINISH]
    message2 = next(when for when, src, _, raw in pair.net.trace
                    if src == B and parse_packet(raw).type is PacketType.HANDSHAKE)
    assert finishes[0] - message2 == pytest.approx(0.5 + 0.01, abs=1e-6)
