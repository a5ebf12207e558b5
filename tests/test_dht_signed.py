"""Signed DHT records and freshness: forged or badly signed records never win a get(), the
later of two puts wins even within a second and across re-publications, get_all returns every
publisher's record, and the node id that binds the signing key is enforced by the handshake."""

from __future__ import annotations

import hashlib

import attrs
import pytest

from stt_proto import (
    AuthenticationError,
    Endpoint,
    EndpointConfig,
    Identity,
    Node,
    SessionTerminated,
)
from stt_proto.dht import DHTConfig, DHTRecord, SignedRecord, record_key
from stt_proto.dht.ids import distance
from stt_proto.dht.messages import Kind, Message, encode
from stt_proto.handshake_payload import Purpose
from stt_proto.randomness import DeterministicRandom
from stt_proto.sim import LinkProfile, Network

from .test_dht import FAST, Swarm

NOW_MS = 1_700_000_000_000  # a plausible Unix time, far above any simulated clock


def small_swarm(seed: int = 21, size: int = 8, config: DHTConfig = FAST) -> Swarm:
    """Few enough nodes that each knows and stores at all the others."""
    swarm = Swarm(size, seed=seed, config=config)
    swarm.join_all()
    return swarm


def nearest(swarm: Swarm, key: bytes) -> Node:
    return min(swarm.nodes, key=lambda n: distance(n.identity.node_id, key))


def get(swarm: Swarm, reader: Node, key: bytes, **kwargs: bytes) -> object:
    op = reader.dht.get(key, swarm.net.now, **kwargs)
    swarm.wait(op)
    return op.result


def get_all(swarm: Swarm, reader: Node, key: bytes) -> list[DHTRecord]:
    op = reader.dht.get_all(key, swarm.net.now)
    swarm.wait(op)
    assert isinstance(op.result, list)
    return op.result


def send_store(swarm: Swarm, sender: Node, target: Node, key: bytes,
               record: SignedRecord) -> None:
    """Send ``target`` a raw STORE from ``sender``, bypassing ``sender``'s own DHT logic."""
    session = sender.connect(swarm.address(target), target.identity.node_id, swarm.net.now,
                             Purpose.DHT)
    assert swarm.net.run_until(lambda: session.confirmed, 5)
    stream = session.open_stream()
    session.send_message(stream, encode(Message(Kind.STORE, 4242, 4000, target=key,
                                                record=record, ttl=100)))
    swarm.net.run(0.5)


def test_forged_record_naming_another_publisher_is_never_returned() -> None:
    """A holder that answers with a record naming the honest publisher (its keys, the newest
    time) but not signed by it is ignored and counted; storers refuse it outright."""
    swarm = small_swarm()
    key = record_key(swarm.nodes[1].identity.node_id, b"profile")
    liar = nearest(swarm, key)
    honest = next(n for n in swarm.nodes if n is not liar)
    swarm.wait(honest.dht.put(key, b"honest", swarm.net.now))
    real = liar.dht.store.get(key, swarm.net.now, honest.identity.node_id)[0].signed
    forged = attrs.evolve(real, value=b"forged", seq=real.seq + 10**9,
                          timestamp_ms=real.timestamp_ms + 10**9)
    assert forged.publisher == honest.identity.node_id and not forged.verify(key)
    liar.dht.store._records[key][forged.publisher] = attrs.evolve(
        liar.dht.store._records[key][forged.publisher], signed=forged)  # "age 0", newest
    readers = [n for n in swarm.nodes if n not in (liar, honest)]
    for reader in readers:
        assert get(swarm, reader, key) == b"honest"
        assert [r.value for r in get_all(swarm, reader, key)] == [b"honest"]
    assert sum(r.get_stats().dht["dht_bad_records"] for r in readers) >= len(readers)
    # storers refuse it too: a bad signature, and a sender that is not the publisher named
    victim = readers[0]
    send_store(swarm, liar, victim, key, forged)
    assert victim.dht.store.get(key, swarm.net.now)[0].value == b"honest"
    assert victim.get_stats().dht["dht_bad_records"] >= 1


def test_later_badly_signed_put_by_another_identity_loses() -> None:
    swarm = small_swarm(seed=22)
    key = hashlib.blake2s(b"shared name").digest()
    honest, attacker = swarm.nodes[2], nearest(swarm, key)
    if attacker is honest:
        honest = swarm.nodes[3]
    swarm.wait(honest.dht.put(key, b"honest", swarm.net.now))
    swarm.net.run(1.0)
    # the attacker's own record, later, but its signature covers another value
    good = SignedRecord.sign(attacker.identity, key, b"signed", NOW_MS, NOW_MS)
    bad = attrs.evolve(good, value=b"evil")
    victims = [n for n in swarm.nodes if n not in (honest, attacker)]
    before = {id(v): v.get_stats().dht["dht_bad_records"] for v in victims}
    for victim in victims:
        send_store(swarm, attacker, victim, key, bad)
        assert [r.value for r in victim.dht.store.get(key, swarm.net.now)] == [b"honest"]
        assert victim.get_stats().dht["dht_bad_records"] == before[id(victim)] + 1
    stored = attacker.dht.store
    stored.put(key, good, 100, swarm.net.now)  # through the front door, then tampered with
    stored._records[key][good.publisher] = attrs.evolve(
        stored._records[key][good.publisher], signed=bad)
    for reader in victims:
        assert get(swarm, reader, key) == b"honest"
        assert [r.publisher for r in get_all(swarm, reader, key)] == [honest.identity.node_id]


def test_a_genuine_record_is_stored_only_by_its_publisher() -> None:
    """Relaying someone else's (validly signed) record is refused: nobody can replay a
    superseded record to a node that never saw the newer one."""
    swarm = small_swarm(seed=23, size=4)
    key = hashlib.blake2s(b"relay").digest()
    publisher, relay, target = swarm.nodes[0], swarm.nodes[1], swarm.nodes[2]
    record = SignedRecord.sign(publisher.identity, key, b"old", 1, 1)
    assert record.verify(key)
    send_store(swarm, relay, target, key, record)
    assert target.dht.store.get(key, swarm.net.now) == []
    assert target.get_stats().dht["dht_bad_records"] == 1


def _ordered_publishers(swarm: Swarm) -> tuple[Node, Node]:
    """Two nodes, the one with the smaller id first (so a tie on time would favour it)."""
    first, second = sorted(swarm.nodes[1:3], key=lambda n: n.identity.node_id)
    return first, second


def test_two_puts_within_one_second_get_returns_the_later() -> None:
    swarm = small_swarm(seed=24)
    key = hashlib.blake2s(b"same second").digest()
    earlier, later = _ordered_publishers(swarm)
    swarm.wait(earlier.dht.put(key, b"earlier", swarm.net.now))
    swarm.net.run(0.2)
    swarm.wait(later.dht.put(key, b"later", swarm.net.now))
    for reader in swarm.nodes:
        assert get(swarm, reader, key) == b"later"
    records = get_all(swarm, swarm.nodes[5], key)
    assert [(r.publisher, r.value) for r in records] == [
        (later.identity.node_id, b"later"), (earlier.identity.node_id, b"earlier")]
    assert records[0].timestamp_ms - records[1].timestamp_ms >= 200
    assert all(r.seq >= r.timestamp_ms for r in records)


def test_a_republication_does_not_make_an_older_value_fresher() -> None:
    """Holders store a re-published record again, but its time is the publisher's original."""
    swarm = small_swarm(seed=25)
    key = hashlib.blake2s(b"republished").digest()
    earlier, later = _ordered_publishers(swarm)
    start = swarm.net.now
    swarm.wait(earlier.dht.put(key, b"earlier", swarm.net.now))
    swarm.net.run(0.5)
    swarm.wait(later.dht.put(key, b"later", swarm.net.now))
    # past the earlier's re-publication (30 s after its put), before the later's
    swarm.net.run(start + FAST.republish_interval + 0.3 - swarm.net.now)
    reader = swarm.nodes[6]
    assert get(swarm, reader, key) == b"later"


def test_a_publishers_newer_put_replaces_its_own_even_at_the_same_instant() -> None:
    swarm = small_swarm(seed=26, size=5)
    key = hashlib.blake2s(b"twice").digest()
    node = swarm.nodes[1]
    first = node.dht.put(key, b"one", swarm.net.now)
    second = node.dht.put(key, b"two", swarm.net.now)
    swarm.wait(first, second)
    records = get_all(swarm, swarm.nodes[3], key)
    assert [r.value for r in records] == [b"two"]
    # the first put's STOREs may land after the second's: holders refuse the lower sequence
    holders = [n for n in swarm.nodes if n.dht.store.get(key, swarm.net.now)]
    assert {n.dht.store.get(key, swarm.net.now)[0].value for n in holders} == {b"two"}


def test_record_key_and_the_publisher_filter() -> None:
    swarm = small_swarm(seed=27)
    owner, squatter, reader = swarm.nodes[1], swarm.nodes[2], swarm.nodes[4]
    key = record_key(owner.identity.node_id, b"homepage")
    assert key != record_key(squatter.identity.node_id, b"homepage")
    assert key != record_key(owner.identity.node_id, b"homepage2")
    swarm.wait(owner.dht.put(key, b"mine", swarm.net.now))
    swarm.net.run(0.1)
    swarm.wait(squatter.dht.put(key, b"squatted", swarm.net.now))  # newer, validly signed
    assert get(swarm, reader, key) == b"squatted"
    assert get(swarm, reader, key, publisher=owner.identity.node_id) == b"mine"
    assert get(swarm, reader, key, publisher=hashlib.blake2s(b"nobody").digest()) is None
    # holders answer a publisher-filtered FIND_VALUE with that publisher's record alone
    holder = nearest(swarm, key)
    found = holder.dht.store.get(key, swarm.net.now, owner.identity.node_id)
    assert [r.value for r in found] == [b"mine"]


def test_dht_without_identity_cannot_publish() -> None:
    from stt_proto import UsageError
    from stt_proto.dht import DHT

    dht = DHT(bytes(32), DeterministicRandom(1))
    with pytest.raises(UsageError, match="identity"):
        dht.put(bytes(32), b"v", 0.0)
    with pytest.raises(UsageError, match="own"):
        DHT(bytes(32), DeterministicRandom(1), identity=Identity.generate())


# -- the node id in the handshake ------------------------------------------------------------


def _pair(server_identity: Identity) -> tuple[Network, Endpoint, Endpoint]:
    net = Network(seed=3, default_profile=LinkProfile(latency=0.01))
    client = Endpoint(EndpointConfig(), rng=DeterministicRandom(3))
    server = Endpoint(EndpointConfig(), server_identity, rng=DeterministicRandom(4))
    net.add_endpoint(client, ("10.0.0.1", 4000))
    net.add_endpoint(server, ("10.0.0.2", 5000))
    return net, client, server


def _auth_error(net: Network, client: Endpoint, peer_id: bytes) -> AuthenticationError:
    session = client.connect(("10.0.0.2", 5000), peer_id, net.now)
    net.run(1.0)
    ends = [e for e in iter(session.next_event, None) if isinstance(e, SessionTerminated)]
    assert len(ends) == 1
    assert isinstance(ends[0].error, AuthenticationError)
    return ends[0].error


def test_the_static_key_alone_is_no_longer_a_node_id() -> None:
    """Asking for BLAKE2s(static key), the id before signing keys, fails and names both ids."""
    identity = Identity.generate()
    net, client, _ = _pair(identity)
    old_style = hashlib.blake2s(identity.public_key, digest_size=32).digest()
    error = _auth_error(net, client, old_style)
    assert old_style.hex() in str(error) and identity.node_id.hex() in str(error)


def test_an_impostor_presenting_anothers_signing_key_fails_authentication() -> None:
    """The signing key is bound to the static key: claiming a victim's signing key with one's
    own static key yields another id, so the handshake fails."""
    victim, impostor = Identity.generate(), Identity.generate()
    impostor.signing_public = victim.signing_public  # what it puts in its payload
    net, client, _ = _pair(impostor)
    error = _auth_error(net, client, victim.node_id)
    assert victim.node_id.hex() in str(error)


def test_both_sides_learn_the_id_that_covers_the_signing_key() -> None:
    identity = Identity.generate()
    net, client, server = _pair(identity)
    session = client.connect(("10.0.0.2", 5000), identity.node_id, net.now)
    assert net.run_until(lambda: session.confirmed, 2.0)
    assert session.peer_id == identity.node_id
    assert session.handshake_result is not None
    assert session.handshake_result.peer_signing_key == identity.signing_public
    accepted = server.sessions[server.next_event().session_id]  # type: ignore[union-attr]
    assert accepted.peer_id == client.identity.node_id


def test_a_bad_or_missing_signing_key_fails_the_handshake_cleanly() -> None:
    from stt_proto import HandshakeError
    from stt_proto.handshake import _signing_key
    from stt_proto.handshake_payload import Field

    good = Identity.generate().signing_public
    assert _signing_key({Field.SIGNING_KEY: good}) == good
    with pytest.raises(HandshakeError, match="signing key of 31 bytes"):
        _signing_key({Field.SIGNING_KEY: bytes(31)})
    with pytest.raises(HandshakeError, match="SIGNING_KEY"):
        _signing_key({})
    with pytest.raises(HandshakeError, match="weak signing key"):
        _signing_key({Field.SIGNING_KEY: bytes(32)})  # the order-4 point y = 0


def test_small_order_signing_keys_are_refused() -> None:
    """With a small-order public key, an all-zero "signature" verifies for many messages; such
    keys never verify, and the listed y coordinates are exactly the small-order points'."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from stt_proto.identity import _P, _SMALL_ORDER_YS, is_weak_signing_key, verify_signature

    d = -121665 * pow(121666, _P - 2, _P) % _P
    order_8 = _SMALL_ORDER_YS - {0, 1, _P - 1}
    assert len(order_8) == 2
    assert all((d * y**4 + 2 * y**2 - 1) % _P == 0 for y in order_8)
    weak = [y.to_bytes(32, "little") for y in sorted(_SMALL_ORDER_YS)]
    weak += [(1 << 255 | y).to_bytes(32, "little") for y in sorted(_SMALL_ORDER_YS)]
    weak += [_P.to_bytes(32, "little"), (_P + 1).to_bytes(32, "little")]  # non-canonical 0, 1
    forgery = bytes(32) + bytes(32)  # R = the order-4 point, S = 0
    raw_accepts = 0
    for key in weak:
        assert is_weak_signing_key(key)
        for message in (b"a", b"b", b"c"):
            assert not verify_signature(key, forgery, message)
            try:
                Ed25519PublicKey.from_public_bytes(key).verify(forgery, message)
                raw_accepts += 1
            except (InvalidSignature, ValueError):  # a bad signature, or a refused encoding
                pass
    assert raw_accepts > 0  # the library alone would have accepted some of these forgeries
    assert not is_weak_signing_key(Identity.generate().signing_public)
