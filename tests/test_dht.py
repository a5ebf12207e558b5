"""The Kademlia DHT through the simulator: many endpoints, a virtual clock, exact outcomes."""

from __future__ import annotations

import pytest

from stt_proto import DeterministicRandom, EndpointConfig, Node, UsageError, hash_data
from stt_proto.dht import DHTConfig, Operation
from stt_proto.dht.ids import Contact, distance
from stt_proto.errors import DHTError
from stt_proto.sim import LinkProfile, Network

FAST = DHTConfig(rpc_timeout=1.0, record_ttl=120.0, republish_interval=30.0,
                 refresh_interval=60.0)


class Swarm:
    def __init__(self, size: int, seed: int = 7, config: DHTConfig = FAST,
                 profile: LinkProfile | None = None) -> None:
        self.net = Network(seed=seed, default_profile=profile or LinkProfile(latency=0.005),
                           record_trace=False)
        self.nodes: list[Node] = []
        for i in range(size):
            self.add(i, seed, config)

    def add(self, i: int, seed: int, config: DHTConfig) -> Node:
        node = Node(EndpointConfig(), rng=DeterministicRandom(seed * 1000 + i),
                    dht_config=config)
        address = (f"10.0.{i // 250}.{i % 250 + 1}", 4000)
        node.dht.port = address[1]
        self.net.add_endpoint(node, address)
        self.nodes.append(node)
        return node

    def contact(self, i: int) -> Contact:
        node = self.nodes[i]
        return Contact(node.identity.node_id, self.address(node))

    def address(self, node: Node) -> tuple[str, int]:
        return next(a for a, e in self.net.endpoints.items() if e is node)

    def wait(self, *ops: Operation, timeout: float = 30.0) -> None:
        assert self.net.run_until(lambda: all(op.done for op in ops), timeout)
        for op in ops:
            assert op.error is None, op.error

    def join_all(self) -> None:
        seed = self.contact(0)
        for node in self.nodes[1:]:
            self.wait(node.dht.bootstrap([seed], self.net.now))


@pytest.fixture(scope="module")
def swarm() -> Swarm:
    swarm = Swarm(40)
    swarm.join_all()
    return swarm


def test_bootstrap_fills_routing_tables(swarm: Swarm) -> None:
    sizes = [len(node.dht.routing_table) for node in swarm.nodes]
    assert min(sizes) >= 10, sizes  # everyone learnt a good share of a 40-node network
    # DHT sessions never reach the application
    for node in swarm.nodes:
        assert node.next_event() is None
        assert node.take_touched() == []


def test_find_node_returns_the_true_nearest(swarm: Swarm) -> None:
    ids = [n.identity.node_id for n in swarm.nodes]
    for target in (hash_data(b"a"), hash_data(b"b"), ids[17]):
        op = swarm.nodes[5].dht.find_node(target, swarm.net.now)
        swarm.wait(op)
        found = [c.node_id for c in op.result]  # type: ignore[attr-defined]
        expected = sorted((i for i in ids if i != ids[5]), key=lambda i: distance(i, target))
        assert found == expected[:20]


def test_put_then_get_from_another_node(swarm: Swarm) -> None:
    key = hash_data(b"content")
    put = swarm.nodes[3].dht.put(key, b"the value", swarm.net.now)
    swarm.wait(put)
    assert put.result >= 20  # type: ignore[operator]
    get = swarm.nodes[31].dht.get(key, swarm.net.now)
    swarm.wait(get)
    assert get.result == b"the value"
    missing = swarm.nodes[31].dht.get(hash_data(b"nobody put this"), swarm.net.now)
    swarm.wait(missing)
    assert missing.result is None


def test_values_are_bound_to_their_publisher(swarm: Swarm) -> None:
    key = hash_data(b"shared key")
    swarm.wait(swarm.nodes[1].dht.put(key, b"from one", swarm.net.now))
    swarm.net.run(1.0)
    swarm.wait(swarm.nodes[2].dht.put(key, b"from two", swarm.net.now))
    holder = min(swarm.nodes, key=lambda n: distance(n.identity.node_id, key))
    records = holder.dht.store.get(key, swarm.net.now)
    assert {r.publisher for r in records} == {swarm.nodes[1].identity.node_id,
                                             swarm.nodes[2].identity.node_id}
    get = swarm.nodes[9].dht.get(key, swarm.net.now)
    swarm.wait(get)
    assert get.result == b"from two"  # the newest
    assert {r.value for r in get.records} >= {b"from two"}


def test_values_expire_unless_republished() -> None:
    swarm = Swarm(12, seed=3)
    swarm.join_all()
    key, gone = hash_data(b"kept"), hash_data(b"lapses")
    swarm.wait(swarm.nodes[1].dht.put(key, b"v", swarm.net.now))
    swarm.wait(swarm.nodes[2].dht.put(gone, b"w", swarm.net.now, ttl=20))
    swarm.net.run(200.0)  # past record_ttl: only re-publication keeps "kept" alive
    holders = [n for n in swarm.nodes if n.dht.store.get(key, swarm.net.now)]
    assert len(holders) >= 10
    assert not any(n.dht.store.get(gone, swarm.net.now) for n in swarm.nodes)
    get = swarm.nodes[7].dht.get(gone, swarm.net.now)
    swarm.wait(get)
    assert get.result is None


def test_dead_nodes_leave_tables_and_lookups_still_finish() -> None:
    swarm = Swarm(16, seed=5, profile=LinkProfile(latency=0.005, loss=0.02))
    swarm.join_all()
    dead = swarm.nodes[4]
    dead_id = dead.identity.node_id
    del swarm.net.endpoints[swarm.address(dead)]  # vanishes without a word
    target = dead_id
    op = swarm.nodes[9].dht.find_node(target, swarm.net.now)
    swarm.wait(op, timeout=60)
    assert dead_id not in [c.node_id for c in op.result]  # type: ignore[attr-defined]
    assert swarm.nodes[9].dht.rpc_timeouts >= 1


def test_bootstrap_through_a_wrong_id_fails_clearly() -> None:
    swarm = Swarm(2, seed=9)
    liar = Contact(b"\x01" * 32, swarm.contact(0).address)  # the handshake proves otherwise
    op = swarm.nodes[1].dht.bootstrap([liar], swarm.net.now)
    assert swarm.net.run_until(lambda: op.done, 15)
    assert isinstance(op.error, DHTError)
    assert len(swarm.nodes[1].dht.routing_table) == 0
    assert swarm.nodes[1].get_stats().dht["dht_rpc_timeouts"] == 1


def test_idle_dht_sessions_close() -> None:
    swarm = Swarm(3, seed=11, config=DHTConfig(refresh_interval=1000.0))
    swarm.join_all()
    assert swarm.nodes[0].get_stats().dht["dht_sessions"] == 2
    swarm.net.run(120.0)
    assert swarm.nodes[0].get_stats().dht["dht_sessions"] == 0
    # contacts stay in the table; the next RPC opens a fresh session
    op = swarm.nodes[1].dht.find_node(swarm.nodes[2].identity.node_id, swarm.net.now)
    swarm.wait(op)
    assert next(c.node_id for c in op.result) == swarm.nodes[2].identity.node_id  # type: ignore[attr-defined]


def test_api_misuse_raises_clearly() -> None:
    swarm = Swarm(1)
    dht = swarm.nodes[0].dht
    with pytest.raises(UsageError, match="32 bytes"):
        dht.get(b"short", 0.0)
    with pytest.raises(UsageError, match="at most"):
        dht.put(hash_data(b"k"), bytes(9000), 0.0)
    with pytest.raises(UsageError, match="seed"):
        dht.bootstrap([], 0.0)
    with pytest.raises(UsageError, match="republish_interval"):
        DHTConfig(record_ttl=10, republish_interval=20)


def test_put_alone_stores_locally_and_get_finds_it() -> None:
    swarm = Swarm(1)
    dht = swarm.nodes[0].dht
    put = dht.put(hash_data(b"k"), b"solo", 0.0)
    swarm.wait(put)
    assert put.result == 1
    get = dht.get(hash_data(b"k"), 0.0)
    assert get.done and get.result == b"solo"


def test_hostile_dht_messages_are_dropped_and_counted() -> None:
    from stt_proto.dht.messages import Kind, Message, encode
    from stt_proto.handshake_payload import Purpose

    swarm = Swarm(2, seed=13)
    attacker, victim = swarm.nodes
    session = attacker.connect(swarm.address(victim), victim.identity.node_id, 0.0, Purpose.DHT)
    assert swarm.net.run_until(lambda: session.confirmed, 5)
    stream = session.open_stream()
    for junk in (b"", b"\x07", bytes(400), encode(Message(Kind.PONG, 12345, 4000)),
                 encode(Message(Kind.STORED, 1, 4000, ok=True))):
        session.send_message(stream, junk)
    swarm.net.run(1.0)
    stats = victim.get_stats().dht
    assert stats["dht_malformed"] == 3 and stats["dht_unsolicited"] == 2
    assert not session.is_closed  # junk is dropped, the session lives on
    # a well-formed request is still answered
    session.send_message(stream, encode(Message(Kind.PING, 77, 4000)))
    swarm.net.run(1.0)
    assert victim.get_stats().dht["dht_requests_served"] == 1
    assert victim.next_event() is None  # a DHT session is never offered to accept()


def test_unknown_session_purpose_fails_the_handshake() -> None:
    from stt_proto import HandshakeError
    from stt_proto.handshake import _purpose
    from stt_proto.handshake_payload import Field

    with pytest.raises(HandshakeError, match="purpose"):
        _purpose({Field.PURPOSE: b"\x09"})
    with pytest.raises(HandshakeError, match="purpose"):
        _purpose({Field.PURPOSE: b"\x01\x00"})
