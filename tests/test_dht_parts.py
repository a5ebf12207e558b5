"""Unit tests of the DHT's parts: codec, routing table, value store, lookup."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_proto import DecodeError
from stt_proto.dht import ValueStore
from stt_proto.dht.ids import Contact, bucket_index, distance
from stt_proto.dht.lookup import Lookup
from stt_proto.dht.messages import MAX_VALUE_SIZE, Kind, Message, WireRecord, decode, encode
from stt_proto.dht.routing import RoutingTable

ids = st.binary(min_size=32, max_size=32)
addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535)),
    st.tuples(st.ip_addresses(v=6).map(str), st.integers(1, 65535)))
contacts = st.builds(Contact, ids, addresses)
records = st.builds(WireRecord, ids, st.binary(max_size=200), st.integers(0, 10**6),
                    st.integers(0, 7 * 86400))
messages = st.one_of(
    st.builds(Message, st.sampled_from([Kind.PING, Kind.PONG]), st.integers(0, 2**64 - 1),
              st.integers(0, 65535)),
    st.builds(Message, st.sampled_from([Kind.FIND_NODE, Kind.FIND_VALUE]),
              st.integers(0, 2**64 - 1), st.integers(0, 65535), target=ids),
    st.builds(Message, st.just(Kind.NODES), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              contacts=st.lists(contacts, max_size=20).map(tuple)),
    st.builds(Message, st.just(Kind.VALUE), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              records=st.lists(records, min_size=1, max_size=8).map(tuple)),
    st.builds(Message, st.just(Kind.STORE), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              target=ids, value=st.binary(max_size=300), ttl=st.integers(1, 7 * 86400)),
    st.builds(Message, st.just(Kind.STORED), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              ok=st.booleans()),
)


@given(messages)
def test_codec_round_trips(message: Message) -> None:
    assert decode(encode(message)) == message


@given(st.binary(max_size=400))
def test_decoder_never_crashes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@given(messages, st.data())
def test_truncation_and_trailing_bytes_are_rejected(message: Message, data: st.DataObject) -> None:
    raw = encode(message)
    fixed = len(raw) - len(message.value)  # a STORE's value runs to the end of the message
    cut = data.draw(st.integers(0, fixed - 1))
    with pytest.raises(DecodeError):
        decode(raw[:cut])
    if message.kind is not Kind.STORE:
        with pytest.raises(DecodeError):
            decode(raw + b"\x00")


def test_oversized_and_bogus_fields_are_rejected() -> None:
    store = Message(Kind.STORE, 1, 9, target=bytes(32), value=bytes(MAX_VALUE_SIZE + 1), ttl=5)
    with pytest.raises(DecodeError, match="exceeds"):
        decode(encode(store))
    with pytest.raises(DecodeError, match="ttl"):
        decode(encode(Message(Kind.STORE, 1, 9, target=bytes(32), ttl=0)))
    with pytest.raises(DecodeError, match="kind"):
        decode(bytes([99]) + bytes(10))
    nodes = bytearray(encode(Message(Kind.NODES, 1, 9, contacts=(
        Contact(bytes(32), ("127.0.0.1", 5)),))))
    nodes[11] = 21  # claims 21 contacts
    with pytest.raises(DecodeError, match="more than"):
        decode(bytes(nodes))
    with pytest.raises(DecodeError, match="port 0"):
        decode(encode(Message(Kind.NODES, 1, 9, contacts=(
            Contact(bytes(32), ("127.0.0.1", 0)),))))


def _id(n: int) -> bytes:
    return n.to_bytes(32, "big")


def test_routing_table_buckets_and_closest() -> None:
    table = RoutingTable(_id(0), k=2)
    for n in (1, 2, 3, 4, 5, 8):
        table.observe(Contact(_id(n), ("10.0.0.1", n)), 0.0)
    # bucket 2 (ids 4..7) holds 4 and 5; bucket 1 (2..3) holds 2 and 3
    assert table.bucket_sizes() == {0: 1, 1: 2, 2: 2, 3: 1}
    assert [c.node_id for c in table.closest(_id(5), 3)] == [_id(5), _id(4), _id(1)]
    assert table.closest(_id(5), 3, exclude=_id(5))[0].node_id == _id(4)
    assert _id(0) not in table and _id(5) in table


def test_full_bucket_keeps_old_contacts_until_they_fail() -> None:
    table = RoutingTable(_id(0), k=2)
    table.observe(Contact(_id(4), ("a", 1)), 0.0)
    table.observe(Contact(_id(5), ("a", 1)), 1.0)
    stale = table.observe(Contact(_id(6), ("a", 1)), 2.0)
    assert stale is not None and stale.node_id == _id(4)  # ping the least recently seen
    assert table.observe(Contact(_id(7), ("a", 1)), 3.0) is None  # already being checked
    assert _id(6) not in table
    table.observe(Contact(_id(4), ("a", 2)), 4.0)  # it answered: it stays, address updated
    assert table.get(_id(4)) == Contact(_id(4), ("a", 2))
    assert _id(6) not in table
    table.failed(_id(5))  # unanswered with replacements waiting: the newest replaces it
    assert _id(5) not in table and _id(7) in table


def test_contact_without_replacement_survives_two_failures() -> None:
    table = RoutingTable(_id(0))
    table.observe(Contact(_id(9), ("a", 1)), 0.0)
    table.failed(_id(9))
    table.failed(_id(9))
    assert _id(9) in table
    table.failed(_id(9))
    assert _id(9) not in table


@given(st.integers(0, 255), ids, ids)
def test_id_in_bucket(index: int, own: bytes, noise: bytes) -> None:
    table = RoutingTable(own)
    assert bucket_index(own, table.id_in_bucket(index, noise)) == index


def test_value_store_caps_and_expiry() -> None:
    store = ValueStore(max_records=3, max_per_publisher=2)
    a, b = _id(1), _id(2)
    assert store.put(_id(10), a, b"1", 10, 0.0)
    assert store.put(_id(11), a, b"2", 10, 0.0)
    assert not store.put(_id(12), a, b"3", 10, 0.0)  # a's quota
    assert store.put(_id(11), a, b"2b", 5, 1.0)  # replacing its own is fine
    assert store.put(_id(12), b, b"4", 10, 0.0)
    assert not store.put(_id(13), b, b"5", 10, 0.0)  # store full
    assert store.refused == 2
    assert [r.value for r in store.get(_id(11), 2.0)] == [b"2b"]
    assert store.next_expiry() == 6.0
    assert store.expire(6.0) == 1 and len(store) == 2
    assert store.expire(10.0) == 2 and len(store) == 0 and store.next_expiry() is None


def test_value_store_heap_stays_bounded_under_rewrites() -> None:
    store = ValueStore()
    for i in range(10_000):
        store.put(_id(1), _id(2), b"x", 1000, float(i))
    assert len(store) == 1
    assert len(store._expiry) <= 1026


def test_lookup_caps_its_queries() -> None:
    lookup = Lookup(_id(0), _id(1 << 200), k=2, alpha=2)
    lookup.add([Contact(_id(1 << 100), ("a", 1))])
    fake = 1 << 99
    while not lookup.finished:
        asked = lookup.next_queries()
        assert asked
        for contact in asked:
            fake >>= 1  # each answer names an ever nearer contact that never answers
            lookup.answered(contact.node_id, (Contact(_id(fake or 1), ("a", 1)),))
    assert lookup._asked == lookup.max_queries == 16


def test_distance_is_xor() -> None:
    assert distance(_id(5), _id(3)) == 6
    assert bucket_index(_id(0), _id(1)) == 0
