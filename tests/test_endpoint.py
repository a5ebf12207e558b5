"""Endpoint admission, stateless retry, anti-amplification, junk handling and the timer heap."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stt_proto import (
    ConnectionRefused,
    DeterministicRandom,
    Endpoint,
    EndpointConfig,
    SessionTerminated,
    State,
)
from stt_proto.errors import PacketError
from stt_proto.packet import PacketType, parse_packet
from stt_proto.session import AMPLIFICATION_FACTOR
from stt_proto.sim import LinkProfile

from .conftest import A, B, make_pair


def _first_initial(trace: list[tuple[float, object, object, bytes]]) -> bytes:
    return next(raw for _, _, _, raw in trace if parse_packet(raw).type is PacketType.INITIAL)


def test_max_sessions_refuses_cleanly() -> None:
    pair = make_pair(server_config={"max_sessions": 2})
    first, second = pair.connect(), pair.connect()
    pair.net.run(0.5)
    assert first.confirmed and second.confirmed
    third = pair.connect()
    pair.net.run(0.5)
    ends = [e for e in iter(third.next_event, None) if isinstance(e, SessionTerminated)]
    assert len(ends) == 1 and isinstance(ends[0].error, ConnectionRefused)
    assert "max_sessions" in str(ends[0].error)
    stats = pair.server.get_stats()
    assert stats.sessions_open == 2 and stats.refusals_sent == 1


def test_retry_under_load_validates_address_and_completes() -> None:
    pair = make_pair(server_config={"retry_threshold": 0})
    session = pair.connect()
    assert pair.net.run_until(lambda: session.confirmed, 2.0)
    assert pair.net.now == __import__("pytest").approx(0.06)  # one extra round trip
    assert pair.server.get_stats().retries_sent == 1
    server = pair.server_session()
    assert server.address_validated


def test_forged_or_stale_retry_tokens_are_refused() -> None:
    pair = make_pair(server_config={"retry_threshold": 0})
    session = pair.connect()
    pair.net.run(1.0)
    assert session.confirmed
    initial_with_token = [raw for _, src, _, raw in pair.net.trace
                          if parse_packet(raw).type is PacketType.INITIAL
                          and parse_packet(raw).token]
    # The same token from another address is no good.
    pair.net.send(("10.6.6.6", 1), B, initial_with_token[0])
    pair.net.run(0.1)
    assert len(pair.server.sessions) == 1
    # Nor the token from the right address once it expired.
    pair.net.run(30.0)
    before = pair.server.get_stats().dropped["unexpected"]
    pair.server._initial_routes.clear()
    pair.net.send(A, B, initial_with_token[0])
    pair.net.run(0.1)
    assert pair.server.get_stats().dropped["unexpected"] == before + 1


def test_initial_flood_under_load_costs_no_state() -> None:
    pair = make_pair(server_config={"retry_threshold": 4})
    legit = pair.connect()
    pair.net.run(0.5)
    initial = _first_initial(pair.net.trace)
    # 5,000 INITIALs from spoofed sources: a handful get sessions, the rest only RETRYs or drops.
    for i in range(5000):
        pair.net.send((f"10.{i // 250}.{i % 250}.9", 1000 + i), B, initial)
    pair.net.run(0.1)
    server = pair.server
    assert len(server.sessions) <= 1 + 4
    stats = server.get_stats()
    assert stats.retries_sent + stats.dropped["rate_limited"] >= 4990
    assert stats.dropped["rate_limited"] > 0  # stateless replies have a budget
    assert legit.state is State.ESTABLISHED


def test_responder_never_amplifies_beyond_three_times() -> None:
    pair = make_pair(profile=LinkProfile(latency=0.01))
    # Message 3 never arrives: the responder keeps retransmitting message 2 but within 3x.
    pair.net.tamper = lambda src, dst, data: (
        None if parse_packet(data).type is PacketType.FINISH else data)
    pair.connect()
    pair.net.run(0.05)
    victim_bytes_in = pair.net.link_counters(A, B)
    pair.client.sessions.clear()  # the "client" is a spoofed victim: it sends nothing more
    pair.client._timers.clear()
    pair.net.run(12.0)
    sent_to_victim = sum(len(raw) for _, src, _, raw in pair.net.trace if src == B)
    received = sum(len(raw) for _, src, _, raw in pair.net.trace if src == A)
    assert victim_bytes_in.sent == 1
    assert sent_to_victim <= AMPLIFICATION_FACTOR * received
    assert not pair.server.sessions  # the half-open session timed out


def test_junk_is_dropped_and_counted_by_reason() -> None:
    pair = make_pair()
    _client, server = pair.established()
    net = pair.net
    net.send(A, B, b"")
    net.send(A, B, b"\x07" * 30)  # bad version
    net.send(A, B, b"\x01\x06" + b"\x99" * 8 + b"\x01" + bytes(40))  # unknown session
    net.send(A, B, b"\x01\x01" + b"\x42" * 16 + b"\x00" + bytes(100))  # short INITIAL
    net.run(0.1)
    dropped = pair.server.get_stats().dropped
    assert dropped["malformed"] == 2
    assert dropped["unknown_session"] == 1
    assert dropped["too_small"] == 1
    assert server.state is State.ESTABLISHED


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flags=st.sampled_from([0x06, 0x16, 0x26, 0x46, 0x86, 0x0F]), known=st.booleans(),
       rest=st.binary(max_size=40))
def test_data_datagrams_drop_as_the_header_parser_says(flags: int, known: bool,
                                                       rest: bytes) -> None:
    """DATA datagrams take a route of their own into the endpoint (no Packet is built): junk
    there is dropped for the same reason as the general parser gives, and never hurts the
    session it names."""
    pair = make_pair()
    _client, server = pair.established()
    raw = bytes((1, flags)) + (server.local_cid if known else b"\x99" * 8) + rest
    try:
        parsed = parse_packet(raw)
    except PacketError:
        expected = {"malformed"}
    else:
        if parsed.type is not PacketType.DATA:
            expected = {"malformed", "unknown_session", "too_small", "unexpected"}
        elif not known:
            expected = {"unknown_session"}
        else:
            expected = {"decrypt_failed", "replay"}  # a forged body, or a number seen before
    before = dict(pair.server.get_stats().dropped)
    pair.server.receive_datagram(raw, A, pair.net.now)
    after = pair.server.get_stats().dropped
    grew = {reason for reason, count in after.items() if count != before.get(reason, 0)}
    assert len(grew) == 1 and grew <= expected
    assert server.state is State.ESTABLISHED


@pytest.mark.parametrize(("payload", "reason"), [
    (b"\x3f\x00", "unknown frame type"),
    (b"\x08\x00\x00\x02hi\x3f", "unknown frame type"),  # a good STREAM frame, then garbage
    (b"\x08\x00\x00\x09hi", "STREAM data claims 9 bytes"),  # truncated
    (b"\x09\x00", "truncated varint"),
])
def test_authenticated_garbage_frames_close_only_that_session(payload: bytes,
                                                              reason: str) -> None:
    pair = make_pair()
    client, server = pair.established()
    other_client = pair.connect()
    pair.net.run(0.2)
    raw = client._send_keys.cipher.seal(server.local_cid, client._next_pn, 0, payload)
    client._next_pn += 1
    pair.net.send(A, B, raw)
    pair.net.run(0.05)
    ends = [e for e in iter(server.next_event, None) if isinstance(e, SessionTerminated)]
    assert ends and reason in ends[-1].reason
    assert server.is_closed and other_client.state is State.ESTABLISHED
    client_end = [e for e in iter(client.next_event, None) if isinstance(e, SessionTerminated)]
    assert client_end and client_end[-1].by_peer and reason in client_end[-1].reason


def test_one_timer_for_many_sessions() -> None:
    pair = make_pair()
    sessions = [pair.connect() for _ in range(200)]
    pair.net.run(1.0)
    assert all(s.confirmed for s in sessions)
    deadline = pair.client.get_timer()
    assert deadline == min(s.get_timer() for s in sessions if s.get_timer() is not None)
    assert pair.client._timers.heap_size < 4 * len(sessions)  # stale entries are pruned


def test_endpoint_close_sends_close_to_every_peer() -> None:
    pair = make_pair()
    sessions = [pair.connect() for _ in range(5)]
    pair.net.run(0.5)
    peers = [pair.server.sessions[e.session_id] for e in iter(pair.server.next_event, None)]
    pair.client.close(pair.net.now)
    pair.net.run(0.05)
    assert all(p.state is State.DRAINING for p in peers)
    pair.net.run(2.0)
    assert not pair.client.sessions and not pair.server.sessions
    assert all(s.is_terminated for s in sessions)


profiles = st.builds(
    LinkProfile,
    latency=st.floats(0.0005, 0.2),
    jitter=st.floats(0, 0.02),
    bandwidth=st.one_of(st.none(), st.floats(1e5, 1e9)),
    queue_limit=st.integers(4000, 1 << 20),
    loss=st.floats(0, 0.25),
    duplicate=st.floats(0, 0.2),
    reorder=st.floats(0, 0.3),
    reorder_delay=st.floats(0, 0.05),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(profile=profiles, seed=st.integers(0, 2**32))
def test_random_link_profiles(profile: LinkProfile, seed: int) -> None:
    """Over any link: the handshake completes or times out cleanly, pings keep it alive,
    and a close leaves nothing behind on either side."""
    pair = make_pair(seed=seed, profile=profile,
                     client_config={"keep_alive_interval": 0.5, "keep_alive_timeout": 5.0},
                     server_config={"keep_alive_interval": 0.5, "keep_alive_timeout": 5.0})
    session = pair.connect()
    done = pair.net.run_until(lambda: session.confirmed or session.is_terminated, 10.5)
    assert done
    if session.confirmed:
        pair.net.run(3.0)
        assert session.state is State.ESTABLISHED
        session.close(5, "property", pair.net.now)
    pair.net.run(20.0)
    assert not pair.client.sessions and not pair.server.sessions
    assert pair.client.get_timer() is None and pair.server.get_timer() is None


def test_endpoint_accepts_deterministic_identity() -> None:
    one = Endpoint(EndpointConfig(), rng=DeterministicRandom(3))
    two = Endpoint(EndpointConfig(), rng=DeterministicRandom(3))
    assert one.identity.node_id == two.identity.node_id


def test_probe_pings_do_not_storm_on_a_duplicating_reordering_link() -> None:
    """Regression: a PTO probe PING once failed to count as ack-eliciting, so every packet
    received triggered another probe, in an endless exchange at one virtual instant."""
    profile = LinkProfile(latency=0.0005, queue_limit=563013, loss=0.05, duplicate=0.14,
                          reorder=0.25, reorder_delay=1e-300)
    cfg = {"keep_alive_interval": 0.5, "keep_alive_timeout": 5.0}
    pair = make_pair(seed=33127564, profile=profile, client_config=cfg, server_config=cfg)
    session = pair.connect()
    end = 10.0
    for _ in range(5000):  # bounded: a storm would exhaust the steps, not the clock
        if not pair.net.step(end):
            break
    assert session.confirmed and session.state is State.ESTABLISHED
    assert len(pair.net.trace) < 400  # handshake and keep-alive traffic only


def test_output_in_bounded_batches_equals_one_unbounded_call() -> None:
    """datagrams_to_send(now, max_datagrams) cuts a window of output into batches; calling
    until it returns nothing yields the same datagrams as one unbounded call would."""
    totals = []
    for limit in (None, 2):
        pair = make_pair(profile=LinkProfile(latency=0.01))
        client, _ = pair.established()
        sid = client.open_stream()
        assert client.send_message(sid, bytes(200_000))
        now = pair.net.now
        sizes: list[int] = []
        while True:
            batch = pair.client.datagrams_to_send(now, limit)
            if not batch:
                break
            if limit is not None:
                assert len(batch) <= limit
            sizes.extend(len(d) for d, _ in batch)
        totals.append(sizes)
        assert len(sizes) > 2  # more than one batch
    assert totals[0] == totals[1]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(limit=st.integers(1, 40), sizes=st.lists(st.integers(0, 30_000), min_size=1, max_size=6),
       sessions=st.integers(1, 3))
def test_a_short_batch_means_nothing_more_is_ready(limit: int, sizes: list[int],
                                                   sessions: int) -> None:
    """The runtimes stop polling after a batch shorter than ``max_datagrams``: the endpoint
    must then have nothing more to send at that instant, whatever the sessions hold."""
    pair = make_pair(profile=LinkProfile(latency=0.01))
    opened = [pair.connect() for _ in range(sessions)]
    assert pair.net.run_until(lambda: all(s.confirmed for s in opened), 5.0)
    pair.net.run(0.1)
    for index, session in enumerate(opened):
        sid = session.open_stream(no_delay=index % 2 == 0)
        for size in sizes:
            session.send_message(sid, bytes(size))
    now = pair.net.now
    short_batches = 0
    for _ in range(10_000):
        batch = pair.client.datagrams_to_send(now, limit)
        assert len(batch) <= limit
        if len(batch) < limit:
            short_batches += 1
            assert pair.client.datagrams_to_send(now, limit) == []
            break
    assert short_batches == 1


def test_timer_heap_stays_bounded_while_deadlines_move() -> None:
    """A moved deadline leaves a stale heap entry behind; the heap is rebuilt before stale
    entries outnumber live ones twice over, and the earliest deadline is still found."""
    from stt_proto.session import Session, State
    from stt_proto.timer_table import HEAP_SLACK

    pair = make_pair()
    sessions = [pair.connect() for _ in range(5)]
    assert pair.net.run_until(lambda: all(s.confirmed for s in sessions), 5.0)
    endpoint = pair.client

    def move(session: Session, at: float) -> None:
        # a closing session's one deadline is its drain deadline: set it directly
        session.state = State.CLOSING
        session._drain_deadline = at + len(session.local_cid)
        endpoint._reschedule(session)

    longest = 0
    for step in range(5_000):
        at = 1000.0 + (step * 7919) % 997  # deadlines jump back and forth
        for session in sessions:
            move(session, at)
        longest = max(longest, endpoint._timers.heap_size)
    assert longest <= 2 * len(endpoint._timers) + HEAP_SLACK + 1
    move(sessions[2], 500.0)  # earlier than anything before
    assert endpoint.get_timer() == 500.0 + len(sessions[2].local_cid)
