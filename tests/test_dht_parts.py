"""Unit tests of the DHT's parts: codec, routing table, value store, lookup."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_proto import DecodeError, Identity
from stt_proto.dht import SignedRecord, ValueStore
from stt_proto.dht.ids import Contact, bucket_index, distance
from stt_proto.dht.lookup import Lookup
from stt_proto.dht.messages import MAX_VALUE_SIZE, Kind, Message, WireRecord, decode, encode
from stt_proto.dht.routing import RoutingTable

ids = st.binary(min_size=32, max_size=32)
addresses = st.one_of(
    st.tuples(st.ip_addresses(v=4).map(str), st.integers(1, 65535)),
    st.tuples(st.ip_addresses(v=6).map(str), st.integers(1, 65535)))
contacts = st.builds(Contact, ids, addresses)
signed = st.builds(SignedRecord, ids, ids, st.integers(0, 2**62 - 1), st.integers(0, 2**62 - 1),
                   st.binary(max_size=200), st.binary(min_size=64, max_size=64))
records = st.builds(WireRecord, signed, st.integers(0, 7 * 86400))
messages = st.one_of(
    st.builds(Message, st.sampled_from([Kind.PING, Kind.PONG]), st.integers(0, 2**64 - 1),
              st.integers(0, 65535)),
    st.builds(Message, st.sampled_from([Kind.FIND_NODE, Kind.FIND_VALUE]),
              st.integers(0, 2**64 - 1), st.integers(0, 65535), target=ids),
    st.builds(Message, st.just(Kind.FIND_VALUE), st.integers(0, 2**64 - 1),
              st.integers(0, 65535), target=ids, publisher=ids),
    st.builds(Message, st.just(Kind.NODES), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              contacts=st.lists(contacts, max_size=20).map(tuple)),
    st.builds(Message, st.just(Kind.VALUE), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              records=st.lists(records, min_size=1, max_size=8).map(tuple)),
    st.builds(Message, st.just(Kind.STORE), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              target=ids, record=signed, ttl=st.integers(1, 7 * 86400)),
    st.builds(Message, st.just(Kind.STORED), st.integers(0, 2**64 - 1), st.integers(0, 65535),
              ok=st.booleans()),
)


@given(messages)
def test_codec_round_trips(message: Message) -> None:
    assert decode(encode(message)) == message


@given(signed, ids)
def test_verifying_arbitrary_records_never_raises(record: SignedRecord, key: bytes) -> None:
    assert not record.verify(key)  # random bytes are no valid key and signature


@given(st.binary(max_size=400))
def test_decoder_never_crashes(data: bytes) -> None:
    with contextlib.suppress(DecodeError):
        decode(data)


@given(messages, st.data())
def test_truncation_and_trailing_bytes_are_rejected(message: Message, data: st.DataObject) -> None:
    raw = encode(message)
    cut = data.draw(st.integers(0, len(raw) - 1))
    if message.kind is Kind.FIND_VALUE and message.publisher:
        cut = min(cut, len(raw) - 33)  # cut to 32 bytes short, it is a valid FIND_VALUE
    with pytest.raises(DecodeError):
        decode(raw[:cut])
    with pytest.raises(DecodeError):
        decode(raw + b"\x00")


def _record(value: bytes = b"v", seq: int = 1) -> SignedRecord:
    return SignedRecord(bytes(32), bytes(32), seq, 0, value, bytes(64))


def test_oversized_and_bogus_fields_are_rejected() -> None:
    store = Message(Kind.STORE, 1, 9, target=bytes(32), record=_record(bytes(MAX_VALUE_SIZE + 1)),
                    ttl=5)
    with pytest.raises(DecodeError, match="exceeds"):
        decode(encode(store))
    with pytest.raises(DecodeError, match="ttl"):
        decode(encode(Message(Kind.STORE, 1, 9, target=bytes(32), record=_record(), ttl=0)))
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


_A, _B = Identity.generate(), Identity.generate()


def _signed(who: Identity, key: bytes, value: bytes, seq: int = 1) -> SignedRecord:
    return SignedRecord.sign(who, key, value, seq, seq)


def test_value_store_caps_and_expiry() -> None:
    store = ValueStore(max_records=4, base_quota=2)
    a, b = _A, _B
    assert store.put(_id(10), _signed(a, _id(10), b"1"), 10, 0.0)
    assert store.put(_id(11), _signed(a, _id(11), b"2"), 10, 0.0)
    assert not store.put(_id(12), _signed(a, _id(12), b"3"), 10, 0.0)  # a's quota
    assert store.put(_id(12), _signed(a, _id(12), b"3"), 10, 0.0, quota=3)  # a larger one
    assert store.put(_id(11), _signed(a, _id(11), b"2b", 2), 5, 1.0)  # replacing its own is fine
    assert store.put(_id(12), _signed(b, _id(12), b"4"), 10, 0.0)
    # the store is full: a holds 3 (its larger quota), b 1 (eviction: test_dht_hardening)
    assert store.count(a.node_id) == 3 and len(store) == 4
    assert store.refused == 1
    assert [r.value for r in store.get(_id(11), 2.0)] == [b"2b"]
    assert store.get(_id(11), 2.0, a.node_id)[0].publisher == a.node_id
    assert store.get(_id(11), 2.0, b.node_id) == []
    assert store.next_expiry() == 6.0
    assert store.expire(6.0) == 1 and len(store) == 3
    assert store.expire(10.0) == 3 and len(store) == 0 and store.next_expiry() is None


def test_value_store_refuses_older_or_conflicting_sequences() -> None:
    """A publisher's record is replaced only by a higher sequence; the same record again renews
    it; a different record with the same sequence (equivocation) is refused."""
    store, key = ValueStore(), _id(10)
    newer = _signed(_A, key, b"new", 5)
    assert store.put(key, newer, 10, 0.0)
    assert not store.put(key, _signed(_A, key, b"old", 4), 10, 1.0)
    assert not store.put(key, _signed(_A, key, b"other", 5), 10, 1.0)
    assert store.stale == 2
    assert store.put(key, newer, 10, 5.0)  # a re-publication renews the expiry
    assert [(r.value, r.expires_at) for r in store.get(key, 6.0)] == [(b"new", 15.0)]


def test_value_store_heap_stays_bounded_under_rewrites() -> None:
    store = ValueStore()
    record = _signed(_A, _id(1), b"x")
    for i in range(10_000):
        store.put(_id(1), record, 1000, float(i))
    assert len(store) == 1
    assert len(store._expiry) <= 1026


def test_lookup_caps_its_queries() -> None:
    lookup = Lookup(_id(0), _id(1 << 200), k=2, alpha=2, max_dials=100)
    lookup.add([Contact(_id(1 << 100), ("a", 1))], proven=True)
    fake = 1 << 99
    while not lookup.finished:
        asked = lookup.next_queries()
        assert asked
        for contact in asked:
            fake >>= 1  # each answer names an ever nearer contact that never answers
            lookup.answered(contact.node_id, (Contact(_id(fake or 1), (f"h{fake}", 1)),))
    assert lookup._asked == lookup.max_queries == 16


def test_distance_is_xor() -> None:
    assert distance(_id(5), _id(3)) == 6
    assert bucket_index(_id(0), _id(1)) == 0
