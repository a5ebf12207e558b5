"""DHT links under hostile peers (issue 21 item 6, DHT part): a link once kept every stream a
peer ever opened, and a peer stopping the link's stream, or allowing only tiny messages, made
the endpoint raise."""

from __future__ import annotations

from stt_proto import DeterministicRandom, Endpoint, EndpointConfig, hash_data
from stt_proto.dht.messages import Kind, Message, decode, encode
from stt_proto.handshake_payload import Purpose
from stt_proto.session import Session

from .test_dht import Swarm


def test_churned_streams_leave_the_link_small() -> None:
    """A peer opening a stream per message, finishing each, once left one entry per stream in
    the link's read set (200k streams: 5 ms per packet instead of 0.33 ms)."""
    swarm = Swarm(2, seed=33)
    attacker, victim = swarm.nodes
    session = attacker.connect(swarm.address(victim), victim.identity.node_id, 0.0, Purpose.DHT)
    assert swarm.net.run_until(lambda: session.confirmed, 5)
    churn = 20_000
    sizes = []
    for i in range(churn):
        stream = session.open_stream()
        session.send_message(stream, encode(Message(Kind.PING, i + 1, 4000)))
        session.close_stream(stream)
        if i % 50 == 49:
            swarm.net.run(0.05)
            links = list(victim._links._by_session.values())
            assert len(links) == 1
            sizes.append(len(links[0].read_streams))
    swarm.net.run(1.0)
    (link,) = victim._links._by_session.values()
    assert victim.dht.requests_served == churn  # every PING was read and answered
    assert len(link.read_streams) <= 2 and max(sizes) <= 100  # churn before the fix
    assert link.session.data is not None
    assert len(link.session.data.streams.streams) <= 100  # and the session forgot them too


def test_reset_streams_leave_the_link_too() -> None:
    swarm = Swarm(2, seed=34)
    attacker, victim = swarm.nodes
    session = attacker.connect(swarm.address(victim), victim.identity.node_id, 0.0, Purpose.DHT)
    assert swarm.net.run_until(lambda: session.confirmed, 5)
    for i in range(200):
        stream = session.open_stream()
        session.send_message(stream, encode(Message(Kind.PING, i + 1, 4000)))
        swarm.net.run(0.02)
        session.reset_stream(stream, 1)
    swarm.net.run(1.0)
    (link,) = victim._links._by_session.values()
    assert len(link.read_streams) <= 2
    assert victim.dht.requests_served >= 150
    assert link.session.data is not None
    assert len(link.session.data.streams.streams) <= 2  # our halves closed: all forgotten



def _their_stream(session: Session, ours: int) -> int:
    """The stream the victim opened to answer on (the attacker's view)."""
    assert session.data is not None
    return next(s for s in session.data.streams.streams if s != ours)


def test_a_peer_stopping_our_dht_stream_cannot_make_the_endpoint_raise() -> None:
    """STOP_SENDING on the stream a node answers on made its next answer raise UsageError out
    of the endpoint; now the link moves to a fresh stream."""
    swarm = Swarm(2, seed=35)
    attacker, victim = swarm.nodes
    session = attacker.connect(swarm.address(victim), victim.identity.node_id, 0.0, Purpose.DHT)
    assert swarm.net.run_until(lambda: session.confirmed, 5)
    stream = session.open_stream()
    session.send_message(stream, encode(Message(Kind.PING, 1, 4000)))
    swarm.net.run(0.5)
    first = _their_stream(session, stream)
    session.stop_receiving(first, 7)
    swarm.net.run(0.5)
    session.send_message(stream, encode(Message(Kind.PING, 2, 4000)))
    swarm.net.run(1.0)  # raised UsageError here
    assert victim.dht.requests_served == 2
    second = _their_stream(session, stream)
    assert second != first
    assert decode(session.receive_message(second) or b"") == Message(Kind.PONG, 2, 4000)


def test_a_peer_allowing_only_tiny_messages_cannot_make_the_endpoint_raise() -> None:
    swarm = Swarm(3, seed=36)
    swarm.join_all()
    victim = swarm.nodes[0]
    tiny = Endpoint(EndpointConfig.build(max_message_size=16), rng=DeterministicRandom(3600))
    swarm.net.add_endpoint(tiny, ("10.0.8.1", 4000))
    session = tiny.connect(swarm.address(victim), victim.identity.node_id, swarm.net.now,
                           Purpose.DHT)
    assert swarm.net.run_until(lambda: session.confirmed, 5)
    stream = session.open_stream()
    session.send_message(stream, encode(Message(Kind.FIND_NODE, 1, 4000,
                                                target=hash_data(b"t"))))
    swarm.net.run(1.0)  # the NODES reply exceeds 16 bytes: it raised UsageError here
    assert victim.dht.requests_served >= 1
    assert victim.get_stats().dht["dht_dropped"] >= 1
    session.send_message(stream, encode(Message(Kind.PING, 2, 4000)))
    swarm.net.run(1.0)  # a PONG (11 bytes) still gets through
    assert any(decode(m) == Message(Kind.PONG, 2, 4000) for m in _drain(session, stream))


def _drain(session: Session, ours: int) -> list[bytes]:
    assert session.data is not None
    found = []
    for stream_id in list(session.data.streams.streams):
        if stream_id != ours:
            while (message := session.receive_message(stream_id)) is not None:
                found.append(message)
    return found
