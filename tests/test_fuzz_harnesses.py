"""The fuzz harnesses run as ordinary tests over hypothesis-generated inputs, so the default
suite exercises them even where atheris is not installed."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fuzz import fuzz_decode, fuzz_endpoint
from stt_proto.frames import PingFrame, StreamFrame, encode_frames


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
