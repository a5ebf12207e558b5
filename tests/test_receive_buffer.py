"""Large packets are opened into one buffer the endpoint reuses (stt_proto/buffers.py): nothing
may keep a view of it. Here it is overwritten with junk after every datagram, as the next
packet would, while messages of every size cross a lossy, reordering, duplicating link (bytes
kept in order, out of order, and whole within one packet): they still arrive byte for byte."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from stt_proto import COMPILED, DeterministicRandom, Endpoint, EndpointConfig
from stt_proto.packet import SEAL_INTO
from stt_proto.sim import LinkProfile, Network

from .conftest import A, B
from .transfer import Transfer, mixed_messages, run_transfers

MiB = 1024 * 1024
JUNK = 0xEE


def _poisoning(endpoint: Endpoint) -> list[int]:
    """Overwrite ``endpoint``'s receive buffer after each datagram; counts the datagrams whose
    packet was opened into it (the buffer no longer all junk)."""
    opened = [0]
    buffer = endpoint._recv_buffer
    assert buffer is not None
    junk = bytes([JUNK]) * len(buffer)
    buffer[:] = junk
    receive = endpoint.receive_datagram

    def receive_then_poison(*args: Any) -> None:
        receive(*args)
        if buffer[:64] != junk[:64]:
            opened[0] += 1
            buffer[:] = junk

    endpoint.receive_datagram = receive_then_poison  # type: ignore[method-assign]
    return opened


@pytest.mark.skipif(COMPILED, reason="wraps Endpoint.receive_datagram, compiled in this build")
@pytest.mark.skipif(not SEAL_INTO, reason="this cryptography cannot open into a buffer")
@pytest.mark.parametrize(("frame", "loss"), [(65507, 0.0), (65507, 0.05), (16384, 0.05)])
def test_nothing_keeps_a_view_of_the_receive_buffer(frame: int, loss: float) -> None:
    profile = LinkProfile(latency=0.01, jitter=0.002, bandwidth=400e6, queue_limit=4 * MiB,
                          loss=loss, duplicate=0.02, reorder=0.05)
    net = Network(seed=7, default_profile=profile)
    config = EndpointConfig.build(max_frame_size=frame)
    client = Endpoint(config, rng=DeterministicRandom(1))
    server = Endpoint(config, rng=DeterministicRandom(2))
    opened = _poisoning(server), _poisoning(client)
    net.add_endpoint(client, A)
    net.add_endpoint(server, B)
    session = client.connect(B, server.identity.node_id, net.now)
    assert net.run_until(lambda: session.confirmed, 5.0)
    server_session = next(iter(server.sessions.values()))
    messages = mixed_messages(8 * MiB, seed=5, largest=MiB)
    transfer = Transfer(net, session, server_session, messages)
    assert run_transfers(net, [transfer], timeout=300.0)
    received = hashlib.sha256(b"".join(transfer.received)).hexdigest()
    assert [len(m) for m in transfer.received] == [len(m) for m in messages]
    assert received == hashlib.sha256(b"".join(messages)).hexdigest()
    assert opened[0][0] > 100  # the server opened its large packets into the buffer
