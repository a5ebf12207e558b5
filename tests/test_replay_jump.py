"""A peer jumping its packet number far ahead: the replay window stays O(WINDOW) in time and
memory, and an authenticated jump past MAX_PN_JUMP closes only that session, with
ProtocolViolation (issue 21, item 1)."""

from __future__ import annotations

import time
import tracemalloc

import pytest

from stt_proto import Session
from stt_proto.errors import ProtocolViolation, SessionClosed
from stt_proto.frames import PingFrame, encode_frames
from stt_proto.replay import MAX_PN_JUMP, WINDOW, ReplayWindow

from .conftest import A, Pair, make_pair


@pytest.mark.parametrize("jump", [WINDOW, WINDOW + 1, 2**32, 2**40, 2**62])
def test_a_huge_jump_costs_o_window(jump: int) -> None:
    window = ReplayWindow()
    for pn in (0, 1, 3):
        assert window.accept(pn)  # 2 missing: the gap the attack starts from
    tracemalloc.start()
    started = time.perf_counter()
    assert window.accept(3 + jump)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert elapsed < 0.05 and peak < 16_384  # a 4,096-bit integer or two, not 2**32 bits
    largest = 3 + jump
    assert window.largest == largest
    assert window._missing.bit_length() <= WINDOW
    # Everything in the window below the new largest is still to come, once each.
    for pn in (largest - 1, largest - WINDOW + 1):
        assert window.check(pn) and window.accept(pn) and not window.accept(pn)
    assert not window.check(largest - WINDOW) and not window.check(2) and not window.check(3)
    assert not window.accept(largest)


def _seal(sender: Session, receiver: Session, pn: int) -> bytes:
    """A packet from ``sender`` to ``receiver`` sealed with the session's real key, carrying
    a PING, numbered ``pn`` (what a peer that completed the handshake can send)."""
    keys = sender._send_keys
    assert keys is not None
    return bytes(keys.cipher.seal(receiver.local_cid, pn, keys.phase,
                                  encode_frames([PingFrame()])))


def _two_sessions(pair: Pair) -> tuple[Session, Session, Session, Session]:
    first, first_server = pair.established()
    second, second_server = pair.established()
    stream = first.open_stream()
    first.send_message(stream, b"warm up")  # some packets each way, then a one-packet gap
    pair.net.run(0.2)
    assert first_server.receive_message(stream) == b"warm up"
    return first, first_server, second, second_server


def test_an_authenticated_jump_closes_that_session_only() -> None:
    pair = make_pair()
    attacker, victim, honest, honest_server = _two_sessions(pair)
    largest = victim._replay.largest
    assert largest > 0
    now = pair.net.now
    started = time.perf_counter()
    pair.server.receive_datagram(_seal(attacker, victim, largest + 2**32), A, now)  # no raise
    pair.server.handle_timer(now)
    assert time.perf_counter() - started < 0.5  # was ~3 s and 1.1 GiB before the fix
    assert isinstance(victim.error, ProtocolViolation)
    assert victim.is_closed and victim._replay.largest == largest  # the window did not move
    pair.net.run(0.5)
    assert isinstance(attacker.error, SessionClosed)
    assert attacker.error.error_code == ProtocolViolation.code and attacker.error.by_peer
    # The other session on the same endpoint carries on.
    stream = honest.open_stream()
    honest.send_message(stream, b"still here")
    assert pair.net.run_until(lambda: honest_server.receive_message(stream) == b"still here",
                              1.0)
    assert honest_server.error is None and not honest_server.is_closed


def test_a_jump_within_the_bound_is_accepted() -> None:
    pair = make_pair()
    sender, receiver, _, _ = _two_sessions(pair)
    largest = receiver._replay.largest
    now = pair.net.now
    pair.server.receive_datagram(_seal(sender, receiver, largest + MAX_PN_JUMP), A, now)
    assert receiver.error is None and receiver._replay.largest == largest + MAX_PN_JUMP
    # One more than the bound is the violation.
    pair.server.receive_datagram(_seal(sender, receiver, largest + 2 * MAX_PN_JUMP + 1), A, now)
    assert isinstance(receiver.error, ProtocolViolation)


def test_a_forged_jump_moves_nothing() -> None:
    """Only an authenticated packet can close the session: anyone can send a header."""
    pair = make_pair()
    sender, receiver, _, _ = _two_sessions(pair)
    largest = receiver._replay.largest
    datagram = bytearray(_seal(sender, receiver, largest + 2**40))
    datagram[-1] ^= 1
    pair.server.receive_datagram(bytes(datagram), A, pair.net.now)
    assert receiver.error is None and receiver._replay.largest == largest
    assert receiver.counters.decrypt_failures == 1
