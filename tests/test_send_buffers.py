"""Sealing large packets into reused buffers (stt_proto/buffers.py): the buffers' rules, and an
endpoint that uses them sends byte for byte what one that allocates sends."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto import DeterministicRandom, Endpoint, EndpointConfig, SessionAccepted, SessionConfig
from stt_proto.buffers import SMALLEST, SendBuffers
from stt_proto.events import StreamReadable

A, B = ("10.0.0.1", 1000), ("10.0.0.2", 2000)


def test_buffers_are_handed_out_in_turn_and_rewound() -> None:
    buffers = SendBuffers(2)
    first, second = buffers.take(SMALLEST), buffers.take(SMALLEST + 10)
    assert first is not None and second is not None
    assert len(first) == SMALLEST and len(second) == SMALLEST + 10
    assert buffers.take(SMALLEST) is None  # all out until the caller has sent them
    buffers.rewind()
    again = buffers.take(SMALLEST)
    assert again is not None and again.obj is first.obj  # the same memory, no new allocation


def test_small_packets_are_not_taken_and_a_larger_one_gets_a_new_buffer() -> None:
    buffers = SendBuffers(1)
    assert buffers.take(SMALLEST - 1) is None
    small = buffers.take(SMALLEST)
    assert small is not None
    small[:3] = b"old"
    buffers.rewind()
    large = buffers.take(3 * SMALLEST)
    assert large is not None and large.obj is not small.obj
    assert bytes(small[:3]) == b"old"  # a view still held keeps its own bytes
    assert buffers.held_bytes == 3 * SMALLEST


def test_count_must_be_positive() -> None:
    with pytest.raises(ValueError, match="count"):
        SendBuffers(0)


def _transfer(use_buffers: bool, sizes: list[int], frame: int) -> tuple[list[bytes], list[bytes]]:
    """Two endpoints in lockstep (every batch delivered before the next is asked for, as the
    runtimes send it): every datagram sent, copied as it left, and the messages received."""
    config = EndpointConfig(session=SessionConfig(max_frame_size=frame))
    client = Endpoint(config, rng=DeterministicRandom(1))
    server = Endpoint(config, rng=DeterministicRandom(2))
    if use_buffers:
        client.use_send_buffers(4)
        server.use_send_buffers(4)
    wire: list[bytes] = []
    received: list[bytes] = []
    now = 1.0
    session = client.connect(B, server.identity.node_id, now)

    def step() -> None:
        for endpoint in (client, server):
            timer = endpoint.get_timer()
            if timer is not None and timer <= now:
                endpoint.handle_timer(now)
        for endpoint, source in ((client, A), (server, B)):
            peer = server if endpoint is client else client
            while batch := endpoint.datagrams_to_send(now, 4):
                for data, _ in batch:
                    wire.append(bytes(data))
                    peer.receive_datagram(data, source, now)
        while server.next_event() is not None:
            pass
        for accepted in server.sessions.values():
            while (event := accepted.next_event()) is not None:
                if isinstance(event, StreamReadable):
                    while (message := accepted.receive_message(event.stream_id)) is not None:
                        received.append(message)

    for _ in range(10):
        step()
        now += 0.001
    assert session.confirmed
    stream = session.open_stream()
    pending = list(sizes)
    for _ in range(20_000):
        while pending and session.send_message(stream, bytes([len(pending) % 251]) * pending[0]):
            pending.pop(0)
        step()
        now += 0.0005
        if not pending and len(received) == len(sizes):
            break
    return wire, received


@settings(max_examples=15, deadline=None)
@given(sizes=st.lists(st.integers(0, 300_000), min_size=1, max_size=6),
       frame=st.sampled_from([1200, 16384, 65507]))
def test_sealing_into_buffers_sends_what_allocating_sends(sizes: list[int], frame: int) -> None:
    wire, received = _transfer(False, sizes, frame)
    assert [len(m) for m in received] == sizes
    assert _transfer(True, sizes, frame) == (wire, received)


def test_an_endpoint_with_buffers_returns_views_of_them_for_large_packets() -> None:
    config = EndpointConfig(session=SessionConfig(max_frame_size=65507))
    endpoint = Endpoint(config, rng=DeterministicRandom(3))
    endpoint.use_send_buffers(2)
    server = Endpoint(config, rng=DeterministicRandom(4))
    session = endpoint.connect(B, server.identity.node_id, 0.0)
    now = 0.0
    for _ in range(10):
        for data, _ in endpoint.datagrams_to_send(now):
            server.receive_datagram(data, A, now)
        for data, _ in server.datagrams_to_send(now):
            endpoint.receive_datagram(data, B, now)
        while (event := server.next_event()) is not None:
            assert isinstance(event, SessionAccepted)
        now += 0.001
    stream = session.open_stream()
    assert session.send_message(stream, b"x" * 200_000)
    out = endpoint.datagrams_to_send(now)
    views = [data for data, _ in out if isinstance(data, memoryview)]
    assert len(views) == 2  # the first two large packets; the rest allocated
    assert all(type(data) is bytes for data, _ in out if not isinstance(data, memoryview))
