"""Duplicates in a handshake whose answers come late (issue 25, handshakes/s): a node busy with
a burst answers each resent INITIAL after a long queue, so copies of message 2 reach the
initiator after its FINISH has left. They say nothing about that FINISH; answering each with
a resent FINISH made the responder resend HANDSHAKE_DONE and the initiator ACK it, two or three
times per handshake of a 2,000-handshake burst."""

from __future__ import annotations

from collections import Counter

from stt_proto.packet import PacketType, parse_packet
from stt_proto.sim import LinkProfile

from .conftest import A, B, Pair, make_pair


def _sent(pair: Pair, source: tuple[str, int]) -> Counter[str]:
    return Counter(parse_packet(raw).type.name for _, src, _, raw in pair.net.trace
                   if src == source)


def _finishes_sent(pair: Pair, latency: float) -> list[float]:
    return [round(when - latency, 9) for when, src, _, raw in pair.net.trace  # logs arrivals
            if src == A and parse_packet(raw).type is PacketType.FINISH]


def _lose_first_finishes(pair: Pair, count: int) -> list[int]:
    """The link loses the first ``count`` FINISH packets; the list's one item counts them."""
    lost = [0]

    def lose_finish(src: object, dst: object, data: bytes) -> bytes | None:
        if parse_packet(data).type is PacketType.FINISH and lost[0] < count:
            lost[0] += 1
            return None
        return data

    pair.net.tamper = lose_finish
    return lost


def test_late_copies_of_message2_do_not_resend_finish() -> None:
    """1.8 s round trip: INITIALs at 0, 0.5 and 1.5 s, each answered; the copies of message 2
    that arrive 0.5, 1.0 and 1.5 s after the first (the second from the responder's own timer)
    answer those INITIALs and say nothing about FINISH. FINISH goes on the initiator's own
    timer only, at 1.8, 2.3 and 3.3 s."""
    pair = make_pair(profile=LinkProfile(latency=0.9))
    session = pair.connect()
    pair.net.run(8.0)
    assert session.confirmed
    client, server = _sent(pair, A), _sent(pair, B)
    assert client["INITIAL"] == 3 and server["HANDSHAKE"] == 4  # the burst's duplicates
    assert _finishes_sent(pair, 0.9) == [1.8, 2.3, 3.3]


def test_a_lost_finish_is_still_resent() -> None:
    """The same late answers, and the first two FINISHes lost: the initiator's own timer
    still resends FINISH on its schedule (the third copy, at 3.3 s, arrives)."""
    pair = make_pair(profile=LinkProfile(latency=0.9))
    lost = _lose_first_finishes(pair, 2)
    session = pair.connect()
    pair.net.run(10.0)
    assert session.confirmed and lost[0] == 2
    assert _finishes_sent(pair, 0.9)[0] <= 3.3


def test_message2_resent_by_the_responders_timer_resends_finish_at_once() -> None:
    """A short round trip and FINISH lost: the copy of message 2 the responder's fallback timer
    sends (1.0 s) comes long after FINISH left (more than the 20 ms message 2 took), so it
    means FINISH was lost and FINISH goes again on it."""
    pair = make_pair(profile=LinkProfile(latency=0.01))
    _lose_first_finishes(pair, 2)
    session = pair.connect()
    pair.net.run(10.0)
    assert session.confirmed
    message2 = [when for when, src, _, raw in pair.net.trace
                if src == B and parse_packet(raw).type is PacketType.HANDSHAKE]
    finishes = [when - 0.01 for when, src, _, raw in pair.net.trace  # the trace logs arrivals
                if src == A and parse_packet(raw).type is PacketType.FINISH]
    assert len(message2) == 2 and finishes  # FINISH at 0.02 and 0.52 s lost
    # the responder's copy of message 2 arrived at message2[1] (1.02 s): FINISH left then,
    # not at the initiator's next resend (1.52 s)
    assert abs(finishes[0] - message2[1]) < 1e-9


def _drop_resent_initials_and(lose_done: int) -> Pair:
    """A 0.75 s round trip whose resent INITIALs are lost (so message 2 comes once, and the
    initiator's FINISH resend waits only 0.5 s), and the first ``lose_done`` datagrams of
    the responder's data phase (HANDSHAKE_DONE) lost."""
    pair = make_pair(profile=LinkProfile(latency=0.375))
    seen: Counter[str] = Counter()

    def tamper(src: object, dst: object, data: bytes) -> bytes | None:
        kind = parse_packet(data).type
        seen[kind.name] += 1
        if kind is PacketType.INITIAL and seen[kind.name] > 1:
            return None
        if kind is PacketType.DATA and src == B and seen["lost"] < lose_done:
            seen["lost"] += 1
            return None
        return data

    pair.net.tamper = tamper
    return pair


def test_a_finish_that_crossed_handshake_done_is_not_answered() -> None:
    """FINISH at 0.75 s and again at 1.25 s: the copy reaches the responder 0.5 s after its
    HANDSHAKE_DONE left, less than the 0.75 s round trip from its message 2 to FINISH, so it
    was sent before HANDSHAKE_DONE could arrive. HANDSHAKE_DONE goes once (it went twice,
    and the initiator acknowledged it twice)."""
    pair = _drop_resent_initials_and(lose_done=0)
    session = pair.connect()
    pair.net.run(5.0)
    assert session.confirmed
    assert _sent(pair, A)["FINISH"] == 2
    assert _sent(pair, B)["DATA"] == 1
    assert _sent(pair, A)["DATA"] == 1


def test_a_lost_handshake_done_is_still_answered() -> None:
    """HANDSHAKE_DONE lost: the initiator's copy of FINISH that arrives a round trip after it
    (at 2.625 s) brings it again."""
    pair = _drop_resent_initials_and(lose_done=1)
    session = pair.connect()
    pair.net.run(3.0)
    assert session.confirmed
