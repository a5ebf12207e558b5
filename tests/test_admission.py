"""Admission of inbound handshakes (issue 21.8): half-open and established budgets, per-address
and per-identity limits, RETRY and REFUSE rate limits, and no state for junk INITIALs. The
endpoint is driven with crafted datagrams and the simulator's virtual clock; valid INITIALs come
from real initiator endpoints."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stt_proto import (
    COMPILED,
    DeterministicRandom,
    Endpoint,
    EndpointConfig,
    Session,
    SessionTerminated,
)
from stt_proto.admission import (
    REFUSE_BURST,
    REFUSE_BURST_PER_ADDRESS,
    REFUSE_RATE,
    REFUSE_RATE_PER_ADDRESS,
    RETRY_BURST,
    SESSION_LIMIT_CODE,
    AddressBuckets,
    TokenBucket,
    address_key,
)
from stt_proto.errors import ConnectionRefused, HandshakeError, SessionClosed, SettingsError
from stt_proto.packet import (
    MIN_INITIAL_SIZE,
    PacketType,
    RefuseCode,
    build_long_packet,
    parse_packet,
)
from stt_proto.sim import LinkProfile, Network

from .conftest import A, B, CallCounter, Pair, make_pair

ATTACKER = ("10.9.0.1", 6000)


def _finish_dropped_from(*sources: tuple[str, int]) -> object:
    """A tamper that loses every FINISH (message 3) the given addresses send."""
    def tamper(src: tuple[str, int], dst: tuple[str, int], data: bytes) -> bytes | None:
        if src in sources and parse_packet(data).type is PacketType.FINISH:
            return None
        return data
    return tamper


def _half_open_flood(pair: Pair, count: int) -> list[Session]:
    """An attacker at ``ATTACKER`` starts ``count`` handshakes with the pair's server and never
    finishes one (every FINISH it sends is lost): half-open handshakes the server holds."""
    attacker = pair.net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(99)),
                                     ATTACKER)
    pair.net.tamper = _finish_dropped_from(ATTACKER)  # type: ignore[assignment]
    server_id = pair.server.identity.node_id
    return [attacker.connect(B, server_id, pair.net.now) for _ in range(count)]


def _initials(count: int, seed: int = 7) -> list[bytes]:
    """``count`` valid INITIALs (each its own handshake), from a real initiator."""
    client = Endpoint(EndpointConfig(), rng=DeterministicRandom(seed))
    server_id = Endpoint(EndpointConfig(), rng=DeterministicRandom(seed + 1)).identity.node_id
    for _ in range(count):
        client.connect(B, server_id, 0.0)
    out = [bytes(d) for d, _ in client.datagrams_to_send(0.0)]
    assert len(out) == count and all(parse_packet(d).type is PacketType.INITIAL for d in out)
    return out


def _junk_initial(index: int) -> bytes:
    """A well-formed INITIAL header, padded, whose Noise message 1 is garbage."""
    cid = index.to_bytes(8, "big")
    return build_long_packet(PacketType.INITIAL, cid, cid, b"\x5a" * MIN_INITIAL_SIZE)


def _refuses(out: list[tuple[bytes | bytearray, tuple[str, int]]]) -> list[int]:
    return [parse_packet(d).refuse_code for d, _ in out
            if parse_packet(d).type is PacketType.REFUSE]


# -- 1. half-open budget -------------------------------------------------------------------------

def test_half_open_flood_answering_retry_cannot_lock_out_a_legit_client() -> None:
    """Hosts that answer RETRY and never send message 3 filled max_sessions with half-open
    handshakes; now they have a budget of their own, the oldest evicted, so a legit client
    still connects."""
    pair = make_pair(server_config={"max_sessions": 40, "max_half_open": 20,
                                    "retry_threshold": 0})
    _half_open_flood(pair, 60)
    pair.net.run(0.5)
    server = pair.server
    assert len(server.sessions) <= 20  # was 40: max_sessions, all half-open
    legit = pair.connect()
    assert pair.net.run_until(lambda: legit.confirmed, 2.0)  # was refused: busy
    assert server.next_event() is not None
    stats = server.get_stats()
    assert stats.half_open <= 20 and stats.evicted >= 40


def test_evicted_half_open_initiator_is_told_it_was_refused() -> None:
    pair = make_pair(server_config={"max_half_open": 5, "retry_threshold": 0})
    sessions = _half_open_flood(pair, 8)
    pair.net.run(0.5)
    ended = [e for s in sessions for e in iter(s.next_event, None)
             if isinstance(e, SessionTerminated)]
    assert len(ended) == 3 and all(isinstance(e.error, ConnectionRefused) for e in ended)


def test_a_full_half_open_budget_asks_for_retry_before_evicting() -> None:
    """Only an initiator that proved its address may evict a half-open handshake: with the
    budget full, a tokenless INITIAL gets a RETRY, whatever retry_threshold says."""
    server = Endpoint(EndpointConfig.build(max_half_open=5, retry_threshold=64),
                      rng=DeterministicRandom(2))
    initials = _initials(6)
    for i, initial in enumerate(initials[:5]):
        server.receive_datagram(initial, (f"10.6.0.{i}", 1), 0.0)
    server.receive_datagram(initials[5], ("10.6.0.9", 1), 0.0)
    stats = server.get_stats()
    assert stats.half_open == 5 and stats.evicted == 0 and stats.retries_sent == 1


def test_by_default_retry_answers_from_1024_half_open_handshakes() -> None:
    """The default retry_threshold (docs/api.md): a node busy with 1,023 handshakes from as
    many addresses still takes the next without a round trip more; from 1,024 on, an
    INITIAL without a token gets a RETRY and no state."""
    config = EndpointConfig()
    assert config.retry_threshold == 1024
    server = Endpoint(config, rng=DeterministicRandom(2))
    initials = _initials(1026)
    for i, initial in enumerate(initials[:1024]):
        server.receive_datagram(initial, (f"10.7.{i >> 8}.{i & 255}", 1), 0.0)
    stats = server.get_stats()
    assert stats.half_open == 1024 and stats.retries_sent == 0
    for i, initial in enumerate(initials[1024:]):
        server.receive_datagram(initial, (f"10.8.0.{i}", 1), 0.0)
    stats = server.get_stats()
    assert stats.half_open == 1024 and stats.retries_sent == 2


def test_half_open_handshakes_time_out_early_under_load() -> None:
    pair = make_pair(server_config={"retry_threshold": 10, "half_open_timeout": 0.5,
                                    "handshake_timeout": 10.0})
    _half_open_flood(pair, 10)
    pair.net.run(0.3)
    assert pair.server.get_stats().half_open == 10
    pair.net.run(0.5)  # older than half_open_timeout, far from handshake_timeout
    legit = pair.connect()
    assert pair.net.run_until(lambda: legit.confirmed, 1.0)
    stats = pair.server.get_stats()
    assert stats.evicted == 10 and stats.half_open == 0
    assert stats.sessions_open == 1


def test_half_open_timeout_applies_only_under_load() -> None:
    pair = make_pair(server_config={"retry_threshold": 50, "half_open_timeout": 0.5})
    _half_open_flood(pair, 5)
    pair.net.run(1.0)
    legit = pair.connect()
    assert pair.net.run_until(lambda: legit.confirmed, 1.0)
    stats = pair.server.get_stats()
    assert stats.evicted == 0 and stats.half_open == 5


def test_one_address_holds_at_most_its_half_open_share() -> None:
    pair = make_pair(server_config={"max_half_open_per_address": 8, "retry_threshold": 0})
    _half_open_flood(pair, 30)
    pair.net.run(0.5)
    assert pair.server.get_stats().half_open == 8
    legit = pair.connect()  # another address: not held back
    assert pair.net.run_until(lambda: legit.confirmed, 1.0)


# -- 2. established limits per identity and per address -----------------------------------------

def test_sessions_per_identity_are_limited() -> None:
    pair = make_pair(server_config={"max_sessions_per_identity": 5})
    sessions = [pair.connect() for _ in range(8)]
    pair.net.run(1.0)
    accepted = list(iter(pair.server.next_event, None))
    assert len(accepted) == 5
    open_ = [s for s in sessions if s.state.name == "ESTABLISHED"]
    refused = [e for s in sessions for e in iter(s.next_event, None)
               if isinstance(e, SessionTerminated)]
    assert len(open_) == 5 and len(refused) == 3
    for end in refused:
        assert end.error_code == SESSION_LIMIT_CODE and "per_identity" in end.reason
    # Another identity is not held back, and a closed session frees its place.
    other = Endpoint(EndpointConfig(), rng=DeterministicRandom(5))
    pair.net.add_endpoint(other, ("10.0.0.3", 4000))
    s = other.connect(B, pair.server.identity.node_id, pair.net.now)
    assert pair.net.run_until(lambda: s.confirmed, 1.0)
    open_[0].close(0, "done", pair.net.now)
    pair.net.run(1.0)
    again = pair.connect()
    assert pair.net.run_until(lambda: again.confirmed, 1.0)


def test_sessions_per_address_are_limited_when_set() -> None:
    pair = make_pair(server_config={"max_sessions_per_address": 2})
    # Two more identities from the same host, other ports.
    others = [Endpoint(EndpointConfig(), rng=DeterministicRandom(20 + i)) for i in range(2)]
    for i, other in enumerate(others):
        pair.net.add_endpoint(other, (A[0], A[1] + 1 + i))
    sessions = [pair.connect()] + [o.connect(B, pair.server.identity.node_id, pair.net.now)
                                   for o in others]
    pair.net.run(1.0)
    assert sum(s.state.name == "ESTABLISHED" for s in sessions) == 2
    assert len(list(iter(pair.server.next_event, None))) == 2


def test_default_limits_do_not_stop_many_sessions_from_one_address() -> None:
    """Loopback benchmarks open hundreds of sessions from one address and one identity."""
    pair = make_pair()
    sessions = [pair.connect() for _ in range(300)]
    assert pair.net.run_until(lambda: all(s.confirmed for s in sessions), 5.0)


# -- 3. RETRY budget per address ----------------------------------------------------------------

def test_spoofed_initial_flood_does_not_starve_legit_clients_of_retry() -> None:
    """A 20,000/s flood of INITIALs from spoofed addresses used the global RETRY budget, so
    legit initiators saw no RETRY and timed out; now every one connects promptly."""
    net = Network(seed=3, default_profile=LinkProfile(latency=0.01), record_trace=False)
    server = net.add_endpoint(Endpoint(EndpointConfig.build(retry_threshold=0),
                                       rng=DeterministicRandom(2)), B)
    legit = [net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(10 + i)),
                              (f"10.1.0.{i + 1}", 4000)) for i in range(5)]
    initial = _initials(1)[0]
    spoofed = 0
    sessions: list[Session] = []
    for tick in range(600):  # 0.6 s at 20 INITIALs per millisecond
        for _ in range(20):
            spoofed += 1
            net.send((f"172.{spoofed >> 16 & 255}.{spoofed >> 8 & 255}.{spoofed & 255}", 9),
                     B, initial)
        if tick == 200:
            sessions = [ep.connect(B, server.identity.node_id, net.now) for ep in legit]
            started = net.now
        net.run(0.001)
        if sessions and all(s.confirmed for s in sessions):
            break
    assert sessions and all(s.confirmed for s in sessions)
    assert net.now - started < 0.2  # about two round trips, not retransmission timeouts
    assert server.get_stats().retries_sent >= spoofed // 2


def test_one_address_cannot_spend_the_global_retry_budget() -> None:
    """5,000 INITIALs from one address used the whole global budget, so the next address got
    no RETRY; now that address is held to its own bucket."""
    server = Endpoint(EndpointConfig.build(retry_threshold=0), rng=DeterministicRandom(2))
    initial = _initials(1)[0]
    for i in range(5000):
        server.receive_datagram(initial, ("10.7.7.7", 1000 + i), 0.0)
    out = server.datagrams_to_send(0.0)
    retries = sum(parse_packet(d).type is PacketType.RETRY for d, _ in out)
    assert 0 < retries <= EndpointConfig().max_half_open_per_address
    server.receive_datagram(initial, ("10.8.8.8", 1000), 0.0)
    out = server.datagrams_to_send(0.0)
    assert [parse_packet(d).type for d, _ in out] == [PacketType.RETRY]
    assert not server.sessions


def test_token_echo_is_admitted_while_spoofers_exhaust_the_retry_budget() -> None:
    net = Network(seed=4, default_profile=LinkProfile(latency=0.01), record_trace=False)
    server = net.add_endpoint(Endpoint(EndpointConfig.build(retry_threshold=0),
                                       rng=DeterministicRandom(2)), B)
    client = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(3)), A)
    session = client.connect(B, server.identity.node_id, net.now)
    net.run(0.015)  # the RETRY is on its way back
    assert server.get_stats().retries_sent == 1
    initial = _initials(1)[0]
    for i in range(int(RETRY_BURST) * 3):  # more than the global burst, all at once
        server.receive_datagram(initial, (f"172.16.{i >> 8}.{i & 255}", 9), net.now)
    server.datagrams_to_send(net.now)
    assert server.get_stats().dropped["rate_limited"] > 0
    assert net.run_until(lambda: session.confirmed, 0.1)


# -- 4. no allocation before a valid INITIAL ----------------------------------------------------

def test_junk_initials_allocate_no_session(monkeypatch: pytest.MonkeyPatch) -> None:
    server = Endpoint(EndpointConfig(), rng=DeterministicRandom(2))
    # Session.respond is counted over the Python sources; the compiled core's methods cannot
    # be wrapped, and there the session counters alone are checked (CI runs both builds).
    responds = CallCounter(monkeypatch, Session, "respond")
    if not COMPILED:
        responds.start()
    for i in range(500):
        server.receive_datagram(_junk_initial(i), (f"10.2.{i >> 8}.{i & 255}", 4000), 0.001 * i)
    assert responds.count == 0
    assert server.sessions_total == 0 and not server.sessions
    codes = _refuses(server.datagrams_to_send(0.5))
    assert codes and set(codes) == {RefuseCode.HANDSHAKE_FAILED}
    # A valid INITIAL still gets its session.
    server.receive_datagram(_initials(1)[0], A, 1.0)
    assert responds.count == (0 if COMPILED else 1) and len(server.sessions) == 1


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cut=st.integers(0, 1300), noise=st.binary(max_size=1300), same_scid=st.booleans(),
       psk=st.booleans())
def test_mangled_initials_never_raise_and_cost_no_session(cut: int, noise: bytes,
                                                         same_scid: bool, psk: bool) -> None:
    config = EndpointConfig.build(psk=bytes(range(32)) if psk else None)
    valid = parse_packet(_initials(1)[0] if not psk else _psk_initial(config))
    body = bytes(valid.body)[:cut] + noise
    scid = valid.scid if same_scid else b"\x01" * 8
    datagram = build_long_packet(PacketType.INITIAL, valid.dcid, scid, body)
    server = Endpoint(config, rng=DeterministicRandom(2))
    server.receive_datagram(datagram, A, 0.0)
    types = [parse_packet(d).type for d, _ in server.datagrams_to_send(0.0)]
    if server.sessions_total:  # a session only for a message 1 that reads: it answers
        assert types == [PacketType.HANDSHAKE] and len(server.sessions) == 1
    else:
        assert types in ([PacketType.REFUSE], [])


def _psk_initial(config: EndpointConfig) -> bytes:
    client = Endpoint(config, rng=DeterministicRandom(8))
    client.connect(B, bytes(32), 0.0)
    return bytes(client.datagrams_to_send(0.0)[0][0])


def test_psk_mismatch_still_fails_fast_without_a_session() -> None:
    pair = make_pair(server_config={"psk": bytes(32)})
    session = pair.connect()
    pair.net.run(0.5)
    ends = [e for e in iter(session.next_event, None) if isinstance(e, SessionTerminated)]
    assert len(ends) == 1 and isinstance(ends[0].error, HandshakeError)
    assert pair.server.sessions_total == 0


# -- 5. REFUSE rate limits ----------------------------------------------------------------------

def test_refuse_flood_from_many_addresses_is_rate_limited() -> None:
    server = Endpoint(EndpointConfig(), rng=DeterministicRandom(2))
    refused = 0
    for i in range(10_000):  # 10,000 junk INITIALs over one second, each from its own address
        now = i / 10_000
        server.receive_datagram(_junk_initial(i), (f"10.3.{i >> 8}.{i & 255}", 4000), now)
        refused += len(_refuses(server.datagrams_to_send(now)))
    assert refused <= REFUSE_BURST + REFUSE_RATE * 1.0 + 1
    assert refused >= REFUSE_BURST  # refusals still go out, within the budget
    assert server.get_stats().refusals_sent == refused
    assert server.get_stats().dropped["rate_limited"] == 10_000 - refused


def test_refuse_flood_from_one_address_is_rate_limited() -> None:
    server = Endpoint(EndpointConfig(), rng=DeterministicRandom(2))
    refused = 0
    for i in range(10_000):
        now = i / 10_000
        server.receive_datagram(_junk_initial(i), ("10.4.0.1", 4000 + i % 50_000), now)
        refused += len(_refuses(server.datagrams_to_send(now)))
    assert refused <= REFUSE_BURST_PER_ADDRESS + REFUSE_RATE_PER_ADDRESS * 1.0 + 1


def test_busy_refusals_are_rate_limited() -> None:
    pair = make_pair(server_config={"max_sessions": 1})
    pair.established()
    initials = _initials(1)
    server = pair.server
    refused = 0
    for i in range(3000):
        server.receive_datagram(initials[0], (f"10.5.{i >> 8}.{i & 255}", 4000), pair.net.now)
        refused += _refuses(server.datagrams_to_send(pair.net.now)).count(RefuseCode.SERVER_BUSY)
    assert 0 < refused <= REFUSE_BURST + 1
    assert len(server.sessions) == 1


# -- the pieces ---------------------------------------------------------------------------------

def test_token_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=10.0, burst=3.0)
    assert [bucket.take(0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(0.1) and not bucket.take(0.1)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]


def test_address_buckets_are_bounded_and_independent() -> None:
    buckets = AddressBuckets(rate=1.0, burst=1.0, capacity=3)
    assert buckets.take("a", 0.0) and not buckets.take("a", 0.0)
    assert buckets.take("b", 0.0) and buckets.take("c", 0.0) and buckets.take("d", 0.0)
    assert len(buckets) == 3  # "a" forgotten, the least recently used


@pytest.mark.parametrize(("host", "key"), [
    ("192.0.2.1", "192.0.2.1"),
    ("::ffff:192.0.2.1", "192.0.2.1"),
    ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff::1", "2001:db8:1:2::/64"),
    ("fe80::1%eth0", "fe80::/64"),
    ("not-an-ip", "not-an-ip"),
])
def test_address_key_counts_ipv4_hosts_and_ipv6_prefixes(host: str, key: str) -> None:
    assert address_key((host, 1)) == key


@pytest.mark.parametrize(("setting", "value"), [
    ("max_half_open", 0), ("max_half_open_per_address", 0), ("half_open_timeout", 0.0),
    ("max_sessions_per_identity", -1), ("max_sessions_per_address", -1),
    ("max_half_open", 1.5),
])
def test_admission_settings_are_range_checked(setting: str, value: object) -> None:
    with pytest.raises(SettingsError, match=setting):
        EndpointConfig.build(**{setting: value})


def test_session_limit_close_reaches_the_initiator_as_session_closed() -> None:
    pair = make_pair(server_config={"max_sessions_per_identity": 1})
    pair.established()
    second = pair.connect()
    pair.net.run(1.0)
    ends = [e for e in iter(second.next_event, None) if isinstance(e, SessionTerminated)]
    assert len(ends) == 1 and isinstance(ends[0].error, SessionClosed)
    assert ends[0].by_peer
