"""The fuzz harnesses run as ordinary tests over hypothesis-generated inputs, so the default
suite exercises them even where atheris is not installed."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import fuzz_decode, fuzz_endpoint, fuzz_session_pn
from stt_proto.frames import PingFrame, StreamFrame, encode_frames
from stt_proto.replay import ReplayWindow


@settings(max_examples=300)
@given(st.binary(max_size=256))
def test_decode_harness(data: bytes) -> None:
    fuzz_decode.TestOneInput(data)


SEEDS = [
    b"\x00" + bytes(40),
    b"\x01" + bytes(60),
    b"\x02" + encode_frames([PingFrame()]),
    b"\x02" + encode_frames([StreamFrame(0, 0, b"hi", True)]),
    b"\x02\x1c\x05\x03abc",
    b"\x02\x02\x90\x00\x00\x00\x00",  # ACK of a packet never sent
    b"\x02\x1e\x07",  # KEY_UPDATE with the wrong generation
    b"\x03" + bytes(30),
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.sampled_from(SEEDS), st.binary(min_size=1, max_size=128)))
def test_endpoint_harness(data: bytes) -> None:
    fuzz_endpoint.TestOneInput(data)


def _jump(power: int) -> int:
    """fuzz_session_pn's control byte for a jump of 2**power past the largest received."""
    return power << 2 | 2


PN_SEEDS = [
    bytes([0, 0, 0, 0, 1 << 2, 0]),  # in order, then a one-packet gap
    bytes([0, 0, 5 << 2, 0, 1 << 2 | 1, 0, 1 << 2 | 1, 0]),  # a gap filled, then replayed
    bytes([0, 0, 4 << 2, 0, _jump(32), 0, 0, 0]),  # the attack: a gap, then +2**32
    bytes([_jump(40), 0]),
    bytes([_jump(24), 0, 0, 0, _jump(24), 0]),  # two jumps of exactly MAX_PN_JUMP: allowed
    bytes([_jump(12), 0, 63 << 2 | 1, 0, 0, 0]),  # past the window, then an old one
    bytes([3, *(2**62 - 1).to_bytes(8, "big"), 2, 0x1E, 0x07]),  # absolute, with a frame
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.sampled_from(PN_SEEDS), st.binary(min_size=1, max_size=96)))
def test_session_pn_harness(data: bytes) -> None:
    fuzz_session_pn.TestOneInput(data)


def test_session_pn_harness_catches_a_window_that_accepts_twice(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The harness's checks can fail: with a window that forgets nothing, a replay is found."""
    monkeypatch.setattr(ReplayWindow, "check", lambda self, pn: True)
    monkeypatch.setattr(ReplayWindow, "accept", lambda self, pn: _grow(self, pn))
    with pytest.raises(AssertionError, match="twice"):
        fuzz_session_pn.TestOneInput(PN_SEEDS[1])


def _grow(window: ReplayWindow, pn: int) -> bool:
    window.largest = max(window.largest, pn)
    return True
