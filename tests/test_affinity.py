"""ContentAffinityPool: clusters, XOR nearest, LRU eviction, closed sessions, rebalancing."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stt_proto import ContentAffinityPool, PoolMissError, SettingsError, UsageError, hash_data
from stt_proto.dht import RoutingTable
from stt_proto.dht.ids import Contact, distance


class FakeSession:
    def __init__(self, name: str) -> None:
        self.name = name
        self.is_closed = False

    def __repr__(self) -> str:
        return self.name


def h(prefix: bytes, rest: int = 0) -> bytes:
    """A hash with a chosen 4-byte cluster prefix."""
    return prefix + rest.to_bytes(28, "big")


def test_nearest_in_the_same_cluster() -> None:
    pool = ContentAffinityPool(max_pool_size=10)
    a, b, c = FakeSession("a"), FakeSession("b"), FakeSession("c")
    pool.add_session(a, h(b"AAAA", 0b1000))
    pool.add_session(b, h(b"AAAA", 0b0001))
    pool.add_session(c, h(b"BBBB", 0b1001))  # nearer by bits, but another cluster
    assert pool.get_session_for_content(h(b"AAAA", 0b1001)) is a
    assert pool.get_session_for_content(h(b"AAAA", 0b0011)) is b
    with pytest.raises(PoolMissError, match="43434343"):
        pool.get_session_for_content(h(b"CCCC"))
    assert (pool.hits, pool.misses) == (2, 1)


def test_configurable_distance_instead_of_clusters() -> None:
    pool = ContentAffinityPool(max_distance=1 << 20)
    near, far = FakeSession("near"), FakeSession("far")
    pool.add_session(near, h(b"AAAA", 5))
    pool.add_session(far, h(b"AAAB", 5))
    assert pool.get_session_for_content(h(b"AAAA", 5 ^ (1 << 19))) is near
    with pytest.raises(PoolMissError):
        pool.get_session_for_content(h(b"AAAA", 1 << 21))


def test_lru_eviction_past_max_pool_size() -> None:
    pool = ContentAffinityPool(max_pool_size=3)
    sessions = [FakeSession(str(i)) for i in range(4)]
    for i, s in enumerate(sessions[:3]):
        pool.add_session(s, h(bytes([i]) * 4))
    pool.get_session_for_content(h(b"\x00" * 4))  # 0 becomes the most recently used
    pool.add_session(sessions[3], h(b"\x03" * 4))
    assert sessions[1] not in pool and len(pool) == 3 and pool.evictions == 1
    assert pool.sessions() == [sessions[2], sessions[0], sessions[3]]
    with pytest.raises(PoolMissError):
        pool.get_session_for_content(h(b"\x01" * 4))


def test_closed_sessions_leave_the_pool() -> None:
    pool = ContentAffinityPool()
    a, b = FakeSession("a"), FakeSession("b")
    pool.add_session(a, h(b"AAAA", 1))
    pool.add_session(b, h(b"AAAA", 100))
    a.is_closed = True
    assert pool.get_session_for_content(h(b"AAAA", 1)) is b
    assert len(pool) == 1 and a not in pool
    b.is_closed = True
    with pytest.raises(PoolMissError):
        pool.get_session_for_content(h(b"AAAA", 1))
    with pytest.raises(UsageError, match="closed"):
        pool.add_session(b, h(b"AAAA"))


def test_rebalancing_follows_traffic() -> None:
    pool = ContentAffinityPool(rebalance_window=4)
    s = FakeSession("s")
    pool.add_session(s, h(b"AAAA"))
    for n, prefix in enumerate([b"BBBB", b"AAAA", b"AAAA", b"BBBB", b"BBBB"]):
        pool.record_traffic(s, h(prefix, n))
    assert pool.affinity_of(s) == h(b"AAAA")  # two of the last four each: no majority
    pool.record_traffic(s, h(b"BBBB", 5))
    assert pool.rebalances == 1 and pool.affinity_of(s) == h(b"BBBB", 5)
    assert pool.get_session_for_content(h(b"BBBB", 9)) is s
    with pytest.raises(PoolMissError):
        pool.get_session_for_content(h(b"AAAA"))


def test_re_adding_moves_a_session() -> None:
    pool = ContentAffinityPool()
    s = FakeSession("s")
    pool.add_session(s, h(b"AAAA"))
    pool.add_session(s, h(b"BBBB"))
    assert len(pool) == 1
    with pytest.raises(PoolMissError):
        pool.get_session_for_content(h(b"AAAA"))


def test_bad_arguments() -> None:
    with pytest.raises(SettingsError, match="max_pool_size"):
        ContentAffinityPool(max_pool_size=0)
    with pytest.raises(SettingsError, match="prefix_bytes"):
        ContentAffinityPool(prefix_bytes=0)
    pool = ContentAffinityPool()
    with pytest.raises(UsageError, match="32 bytes"):
        pool.add_session(FakeSession("x"), b"short")
    with pytest.raises(UsageError, match="without a dht"):
        pool.nearest_peers(hash_data(b"x"))


def test_nearest_peers_come_from_the_dht() -> None:
    class Dht:
        routing_table = RoutingTable(bytes(32))

    for i in range(1, 30):
        Dht.routing_table.observe(Contact(hash_data(bytes([i])), ("10.0.0.1", i)), 0.0)
    pool = ContentAffinityPool(dht=Dht())
    target = hash_data(b"content")
    peers = pool.nearest_peers(target, 3)
    everyone = sorted((c.node_id for c in Dht.routing_table), key=lambda i: distance(i, target))
    assert [p.node_id for p in peers] == everyone[:3]


@given(st.lists(st.tuples(st.integers(0, 7), st.binary(min_size=32, max_size=32),
                          st.sampled_from(["add", "get", "close", "traffic"])), max_size=60))
def test_pool_invariants(ops: list[tuple[int, bytes, str]]) -> None:
    """Whatever happens: never more than max_pool_size, never a closed session returned, and a
    hit is the nearest live session of the cluster."""
    pool = ContentAffinityPool(max_pool_size=4, prefix_bytes=1, rebalance_window=3)
    sessions = [FakeSession(str(i)) for i in range(8)]
    for index, digest, op in ops:
        s = sessions[index]
        if op == "add" and not s.is_closed:
            pool.add_session(s, digest)
        elif op == "close":
            s.is_closed = True
        elif op == "traffic":
            pool.record_traffic(s, digest)
        else:
            try:
                got = pool.get_session_for_content(digest)
            except PoolMissError:
                assert all(pool.affinity_of(x)[:1] != digest[:1]  # type: ignore[index]
                           for x in pool.sessions())
                continue
            assert not got.is_closed
            mine = distance(pool.affinity_of(got) or b"", digest)  # type: ignore[arg-type]
            assert all(distance(pool.affinity_of(x), digest) >= mine  # type: ignore[arg-type]
                       for x in pool.sessions()
                       if pool.affinity_of(x)[:1] == digest[:1])  # type: ignore[index]
        assert len(pool) <= 4
