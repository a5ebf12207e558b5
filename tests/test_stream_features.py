"""Stream semantics: no_delay, flush, priorities, resets, limits, datagrams, ACK validation."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto import ProtocolViolation, Session, SessionTerminated, State, StreamLimitError
from stt_proto.events import (
    DatagramReceived,
    StreamEnded,
    StreamFlushed,
    StreamOpened,
    StreamReadable,
    StreamResetByPeer,
)
from stt_proto.frames import AckFrame, MaxStreamsFrame, StreamFrame, encode_frames
from stt_proto.packet import PacketType, parse_packet
from stt_proto.sim import LinkProfile

from .conftest import A, B, Pair, make_pair


def _drain(session: Session) -> list[object]:
    return list(iter(session.next_event, None))


def _data_packets_from(pair: Pair, src: tuple[str, int], since: int = 0) -> int:
    return sum(1 for _, s, _, raw in pair.net.trace[since:]
               if s == src and parse_packet(raw).type is PacketType.DATA)


def test_no_delay_sends_every_message_at_once(pair: Pair) -> None:
    client, server = pair.established()
    sid = client.open_stream(no_delay=True)
    mark = len(pair.net.trace)
    for i in range(10):
        assert client.send_message(sid, bytes([i]) * 10)
        pair.net.flush()
    pair.net.run(0.05)
    assert _data_packets_from(pair, A, mark) >= 10
    got = [server.receive_message(sid) for _ in range(10)]
    assert got == [bytes([i]) * 10 for i in range(10)]


def test_without_no_delay_small_messages_coalesce_but_never_wait_long(pair: Pair) -> None:
    client, server = pair.established()
    sid = client.open_stream(no_delay=False)
    client.send_message(sid, b"first")
    pair.net.flush()  # nothing in flight yet: leaves at once
    mark = len(pair.net.trace)
    for i in range(50):
        client.send_message(sid, b"m%d" % i)
        pair.net.flush()
    pair.net.run(0.005)
    coalesced = _data_packets_from(pair, A, mark)
    pair.net.run(0.1)
    assert coalesced <= 3  # 50 messages rode in a couple of packets
    messages = list(iter(lambda: server.receive_message(sid), None))
    assert messages == [b"first"] + [b"m%d" % i for i in range(50)]


def test_held_data_leaves_within_the_hold_bound(pair: Pair) -> None:
    client, server = pair.established()
    sid = client.open_stream(no_delay=False)
    client.send_message(sid, bytes(6_000))  # data in flight (within the initial window)
    pair.net.flush()
    start = pair.net.now
    client.send_message(sid, b"small")
    got: list[bytes] = []

    def arrived() -> bool:
        while (message := server.receive_message(sid)) is not None:
            got.append(message)
        return b"small" in got

    assert pair.net.run_until(arrived, 1.0)
    # one-way latency is 10 ms; the hold adds at most min(srtt, 5 ms)
    assert pair.net.now - start <= 0.010 + 0.005 + 0.002


def test_flush_event_when_everything_is_acknowledged(pair: Pair) -> None:
    client, _server = pair.established()
    sid = client.open_stream()
    _drain(client)
    client.send_message(sid, bytes(100_000))
    pair.net.run(0.005)
    assert not client.stream_state(sid)[1]
    pair.net.run(0.2)
    assert client.stream_state(sid)[1]
    assert StreamFlushed(sid) in _drain(client)


def test_graceful_close_both_halves(pair: Pair) -> None:
    client, server = pair.established()
    sid = client.open_stream()
    client.send_message(sid, b"request")
    client.close_stream(sid)
    pair.net.run(0.1)
    events = _drain(server)
    assert StreamOpened(sid) in events and StreamEnded(sid) in events
    assert server.receive_message(sid) == b"request"
    assert server.stream_state(sid)[0]  # the peer's half is finished and fully read
    server.send_message(sid, b"reply")  # this half is still open
    server.close_stream(sid)
    pair.net.run(0.1)
    assert client.receive_message(sid) == b"reply"
    pair.net.run(0.2)
    assert client.data.streams.open_count == 0 and server.data.streams.open_count == 0
    with pytest.raises(Exception, match="not open"):
        client.send_message(sid, b"late")


def test_reset_aborts_both_directions(pair: Pair) -> None:
    client, server = pair.established()
    sid = client.open_stream()
    client.send_message(sid, bytes(500_000))
    pair.net.run(0.015)
    client.reset_stream(sid, 77)
    pair.net.run(0.1)
    assert StreamResetByPeer(sid, 77) in _drain(server)
    assert server.stream_state(sid)[2] in (77, None)
    pair.net.run(0.2)
    assert client.data.streams.open_count == 0 and server.data.streams.open_count == 0
    assert client.state is State.ESTABLISHED


def test_priority_orders_streams_and_equal_priorities_share() -> None:
    pair = make_pair(profile=LinkProfile(latency=0.01, bandwidth=20e6))
    client, server = pair.established()
    low = client.open_stream(priority=0)
    high = client.open_stream(priority=5)
    peer_a, peer_b = client.open_stream(priority=1), client.open_stream(priority=1)
    for sid in (low, peer_a, peer_b, high):
        client.send_message(sid, bytes(300_000))
    done_at: dict[int, float] = {}
    while len(done_at) < 4 and pair.net.now < 10:
        pair.net.run(0.005)
        for sid in (low, high, peer_a, peer_b):
            if sid not in done_at and server.receive_message(sid) is not None:
                done_at[sid] = pair.net.now
    assert done_at[high] < min(done_at[peer_a], done_at[peer_b]) < done_at[low]
    assert abs(done_at[peer_a] - done_at[peer_b]) < 0.05  # round-robin, not one after another


def test_a_stalled_stream_does_not_block_the_others(pair: Pair) -> None:
    client, server = pair.established()
    stalled = client.open_stream()
    other = client.open_stream()
    for _ in range(40):  # far more than the per-stream window; nobody reads it
        client.send_message(stalled, bytes(100_000))
    pair.net.run(0.5)
    client.send_message(other, b"still flowing")
    pair.net.run(0.1)
    assert server.receive_message(other) == b"still flowing"


def test_stream_limit_enforced_locally_and_refilled_by_max_streams() -> None:
    pair = make_pair(server_config={"max_concurrent_streams": 3})
    client, server = pair.established()
    ids = [client.open_stream() for _ in range(3)]
    with pytest.raises(StreamLimitError, match="3 concurrent"):
        client.open_stream()
    for sid in ids:
        client.send_message(sid, b"x")
        client.close_stream(sid)
    pair.net.run(0.1)
    for sid in ids:
        assert server.receive_message(sid) == b"x"
        server.close_stream(sid)
    pair.net.run(0.2)
    assert client.open_stream() == 6  # the next even id, after MAX_STREAMS credit


def _inject(pair: Pair, sender: Session, receiver: Session, frames: bytes) -> None:
    keys = sender._send_keys
    assert keys is not None
    raw = keys.cipher.seal(receiver.local_cid, sender._next_pn, keys.phase, frames)
    sender._next_pn += 1
    src, dst = (A, B) if sender.is_initiator else (B, A)
    pair.net.send(src, dst, bytes(raw))
    pair.net.run(0.05)


def _ended_with(session: Session, text: str) -> None:
    ends = [e for e in _drain(session) if isinstance(e, SessionTerminated)]
    assert ends and isinstance(ends[-1].error, ProtocolViolation), ends
    assert text in ends[-1].reason


def test_peer_exceeding_the_stream_limit_is_a_protocol_error() -> None:
    pair = make_pair(server_config={"max_concurrent_streams": 2})
    client, server = pair.established()
    _inject(pair, client, server, encode_frames([StreamFrame(8, 0, b"\x00", False)]))
    _ended_with(server, "beyond its allowance")


def test_peer_exceeding_the_stream_window_is_a_protocol_error(pair: Pair) -> None:
    client, server = pair.established()
    window = server.data.streams._local.initial_max_stream_data
    _inject(pair, client, server,
            encode_frames([StreamFrame(0, window, b"\x00", False)]))
    _ended_with(server, "exceeds the window")


def test_ack_of_a_packet_never_sent_is_a_protocol_error(pair: Pair) -> None:
    client, server = pair.established()
    _inject(pair, client, server, encode_frames([AckFrame(((0, 10_000),))]))
    _ended_with(server, "never sent")


def test_oversized_message_is_a_protocol_error() -> None:
    pair = make_pair(server_config={"max_message_size": 100})
    client, server = pair.established()
    _inject(pair, client, server, encode_frames([StreamFrame(0, 0, b"\x40\xc8" + bytes(10))]))
    _ended_with(server, "exceeds max_message_size")
    with pytest.raises(Exception, match="max_message_size"):
        pair2 = make_pair(server_config={"max_message_size": 100})
        c2, _ = pair2.established()
        c2.send_message(c2.open_stream(), bytes(101))


def test_max_streams_frame_from_peer_raises_our_allowance() -> None:
    pair = make_pair(server_config={"max_concurrent_streams": 2})
    client, server = pair.established()
    client.open_stream()
    client.open_stream()
    with pytest.raises(StreamLimitError):
        client.open_stream()
    _inject(pair, server, client, encode_frames([MaxStreamsFrame(5)]))
    assert [client.open_stream() for _ in range(3)] == [4, 6, 8]
    with pytest.raises(StreamLimitError):
        client.open_stream()
    assert client.state is State.ESTABLISHED


def test_datagrams_are_unreliable_and_never_retransmitted() -> None:
    pair = make_pair(profile=LinkProfile(latency=0.01, loss=0.5))
    client, server = pair.established(timeout=30)
    for i in range(200):
        client.send_datagram(i.to_bytes(2, "big"))
        pair.net.run(0.002)
    pair.net.run(1.0)
    got = [e.data for e in _drain(server) if isinstance(e, DatagramReceived)]
    assert 40 < len(got) < 160  # about half arrived; the lost ones were not resent
    assert len(set(got)) == len(got)
    stats = client.get_stats()
    assert stats.bytes_sent >= 400
    with pytest.raises(Exception, match="at most"):
        client.send_datagram(bytes(70_000))


def test_delayed_acks_every_second_packet_or_after_max_ack_delay(pair: Pair) -> None:
    client, _server = pair.established()
    sid = client.open_stream(no_delay=True)
    mark = len(pair.net.trace)
    client.send_message(sid, b"one")
    pair.net.flush()
    # (the trace records arrivals: +10 ms there, the ACK held 25 ms, +10 ms back)
    pair.net.run(0.044)
    assert _data_packets_from(pair, B, mark) == 0
    pair.net.run(0.002)
    assert _data_packets_from(pair, B, mark) == 1
    mark = len(pair.net.trace)
    client.send_message(sid, b"two")
    pair.net.flush()
    client.send_message(sid, b"three")
    pair.net.flush()
    pair.net.run(0.021)  # two ack-eliciting packets: acknowledged at once, back by +20 ms
    assert _data_packets_from(pair, B, mark) == 1


def test_stats_are_computed_from_protocol_state() -> None:
    pair = make_pair(profile=LinkProfile(latency=0.02, bandwidth=50e6, loss=0.02))
    client, server = pair.established()
    sid = client.open_stream()
    for _ in range(20):
        client.send_message(sid, bytes(100_000))
    for _ in range(40):
        pair.net.run(0.1)
        while server.receive_message(sid) is not None:
            pass
    stats = client.get_stats()
    assert stats.bytes_sent == 2_000_000
    assert server.get_stats().bytes_received == 2_000_000
    assert stats.packets_lost > 0 and 0 < stats.loss_rate < 0.2
    assert 40 <= stats.rtt_min_ms <= 45 and stats.rtt_ms >= stats.rtt_min_ms
    assert stats.cwnd_bytes > 0 and stats.throughput_mbps > 1
    assert stats.streams_open == 1 and stats.congestion_control == "bbr"
    mine, theirs = client.stream_stats(sid), server.stream_stats(sid)
    assert (mine.bytes_sent, mine.messages_sent, mine.bytes_unacked) == (2_000_000, 20, 0)
    assert (theirs.bytes_received, theirs.messages_received) == (2_000_000, 20)


def test_stream_end_is_reported_once_even_for_a_duplicated_fin(pair: Pair) -> None:
    client, server = pair.established()
    sid = client.open_stream()
    client.send_message(sid, b"a")
    client.close_stream(sid)
    pair.net.run(0.05)
    _inject(pair, client, server, encode_frames([StreamFrame(sid, 2, b"", True)]))
    assert [e for e in _drain(server) if isinstance(e, StreamEnded)] == [StreamEnded(sid)]


def test_shared_empty_containers_are_immutable_and_idle_sides_hold_them() -> None:
    """Idle stream sides and sessions share one empty container per kind (stt_proto.streams)
    and each write site swaps in its own first. The shared ones are immutable, so a missed
    swap raises at once instead of leaking state across streams and sessions (they were
    mutable, a list, a dict, a set and a deque(maxlen=0) that silently dropped appends).
    After traffic with loss and reordering, every side that went idle holds them again."""
    from stt_proto.streams import RecvSide, SendSide, packetizer, recv, send

    from .test_streams_sim import test_32_mib_mixed_messages_arrive_exactly as transfer

    side, other = RecvSide(1 << 20, 1 << 20), SendSide(1 << 20)
    for empty in (side.messages, side._heap, other._starts, other._chunks):
        with pytest.raises(AttributeError):
            empty.append(b"leak")  # type: ignore[union-attr,arg-type]
    with pytest.raises(TypeError):
        side._segments[0] = b"leak"  # type: ignore[index]
    with pytest.raises(AttributeError):
        packetizer._NO_IDS.add(1)  # type: ignore[attr-defined]
    assert recv._NONE == () and send._NO_CHUNKS == ()
    assert type(packetizer._NO_IDS) is frozenset and not packetizer._NO_IDS

    transfer(0.05)  # 5 % loss: retransmissions, reordered segments, partial acks
    side.on_data(2, b"b", False)  # out of order: a segment of its own
    side.on_data(0, b"\x02a", False)  # fills the gap: the segment drains, a message is cut
    assert side.pop_message() == b"ab" and side.pop_message() is None
    assert side.messages is side._heap is side._segments is recv._NONE
    side.release_assembly()  # as the session's idle timer does (StreamManager.compact)
    assert side._assembly is None
    other.write_message(b"x")
    other.on_acked(0, 2, False)
    assert other._starts is other._chunks is send._NO_CHUNKS


def test_arriving_messages_are_counted_and_announced_even_when_empty(pair: Pair) -> None:
    client, server = pair.established()
    stream = client.open_stream()
    messages = [b"", b"x" * 5000, b"", b"yz"]
    for message in messages:
        assert client.send_message(stream, message)
    manager = server.data.streams  # type: ignore[union-attr]
    assert pair.net.run_until(lambda: manager.streams.get(stream) is not None
                              and manager.streams[stream].recv.messages_cut == 4, 5.0)
    assert manager.bytes_received == 5002  # payload bytes, counted as messages complete
    assert any(isinstance(e, StreamReadable) for e in iter(server.next_event, None))
    assert [server.receive_message(stream) for _ in messages] == messages


def _manager_with_sent_packets(events: list[object]) -> tuple[object, list[list[Any]]]:
    """A StreamManager with two streams, one closed, whose data went out in small packets;
    returns it and each packet's items."""
    from stt_proto.config import SessionConfig
    from stt_proto.handshake import local_settings
    from stt_proto.streams import StreamManager

    settings = local_settings(SessionConfig())
    manager = StreamManager(is_initiator=True, local=settings, peer=settings,
                            send_buffer=1 << 20, recv_buffer=1 << 20, no_delay=True,
                            emit=events.append)
    first = manager.open(1200, True, 0).stream_id
    second = manager.open(1200, True, 0).stream_id
    manager.send_message(first, bytes(8000), 0.0, 0.0)  # alone in the later packets
    manager.send_message(second, bytes(1500), 0.0, 0.0)
    manager.close_stream(second)
    packets: list[list[Any]] = []
    while manager.has_pending():
        payload, items = bytearray(), []  # type: ignore[var-annotated]
        manager.fill(payload, 700, items, 0.0, 0)
        packets.append(items)
    return manager, packets


@pytest.mark.parametrize("skip", [(), (1,), (2, 8), (0, 7, 9)])
def test_acks_applied_in_one_batch_equal_acks_applied_one_by_one(skip: tuple[int, ...]) -> None:
    """on_items_acked merges consecutive ranges of a stream; merging must change nothing:
    across gaps (packets not acknowledged), between streams and at a FIN."""
    batch_events: list[object] = []
    single_events: list[object] = []
    batch, packets = _manager_with_sent_packets(batch_events)
    single, _ = _manager_with_sent_packets(single_events)
    assert len(packets) > 10 and any(item.fin for items in packets for item in items)
    assert {items[0].stream_id for items in packets[7:]} == {0}  # consecutive packets of one stream
    acked = [item for i, items in enumerate(packets) if i not in skip for item in items]
    batch.on_items_acked(acked)  # type: ignore[attr-defined]
    for item in acked:
        single.on_items_acked([item])  # type: ignore[attr-defined]

    def state(manager: object) -> list[object]:
        streams = manager.streams  # type: ignore[attr-defined]
        return [(sid, list(s.send.acked), s.send.fin_acked, s.send.unacked_bytes)
                for sid, s in sorted(streams.items())]

    assert state(batch) == state(single)
    assert sorted(map(repr, batch_events)) == sorted(map(repr, single_events))
    flushed = {e.stream_id for e in batch_events if isinstance(e, StreamFlushed)}
    unacked = {item.stream_id for i in skip for item in packets[i]}
    assert flushed == {0, 2} - unacked  # a stream is flushed once all its packets are acked


def test_an_idle_session_holds_no_sets_of_its_own(pair: Pair) -> None:
    """Ready, blocked and window-dirty stream ids live in sets only while there are any: an
    idle session shares one empty set (216 B saved per set and session end)."""
    from stt_proto.streams.packetizer import _NO_IDS

    client, server = pair.established()
    stream = client.open_stream()
    sent = 0
    while client.send_message(stream, bytes(100_000)):  # until the send buffer is full
        sent += 1
    managers = [client.data.streams, server.data.streams]  # type: ignore[union-attr]
    assert managers[0]._blocked_writers and managers[0]._in_ready
    received = 0

    def drained() -> bool:
        nonlocal received
        while server.receive_message(stream) is not None:
            received += 1
        return received == sent

    assert pair.net.run_until(drained, 30.0)
    pair.net.run(1.0)  # the last ACKs and window updates
    for manager in managers:
        assert manager._in_ready is _NO_IDS
        assert manager._blocked_writers is _NO_IDS
        assert manager._window_dirty is _NO_IDS


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["data", "read", "poll", "fin"]),
                          st.integers(0, 2), st.integers(1, 30_000)), max_size=60))
def test_updates_owed_predicts_exactly_what_a_poll_queues(
        ops: list[tuple[str, int, int]]) -> None:
    """Runtimes poll after a read only when ``updates_owed()`` says a window update (or
    other control frame) is owed; it must agree with what collect_window_updates queues."""
    from stt_proto.config import SessionConfig
    from stt_proto.handshake import local_settings
    from stt_proto.streams import StreamManager
    from stt_proto.varint import encode_varint

    settings_ = local_settings(SessionConfig(recv_buffer_size=64 * 1024))
    manager = StreamManager(is_initiator=True, local=settings_, peer=settings_,
                            send_buffer=1 << 20, recv_buffer=64 * 1024, no_delay=True,
                            emit=lambda event: None)
    offsets = {1: 0, 3: 0, 5: 0}  # the peer's streams
    finished: set[int] = set()
    now = 0.0
    for op, index, size in ops:
        sid = 1 + 2 * index
        now += 0.001
        if op == "data" and sid not in finished:
            stream = manager.streams.get(sid)
            room = (stream.recv.max_data if stream else settings_.initial_max_stream_data) \
                - offsets[sid]
            conn_room = manager.conn_recv_max - manager.conn_received
            body = min(size, room - 4, conn_room - 4)
            if body >= 0:
                chunk = encode_varint(body) + bytes(body)
                manager.on_stream_data(sid, offsets[sid], chunk, False)
                offsets[sid] += len(chunk)
        elif op == "fin" and sid not in finished:
            manager.on_stream_data(sid, offsets[sid], b"", True)
            finished.add(sid)
        elif op == "read":
            while manager.receive_message(sid) is not None:
                pass
        else:
            predicted = manager.updates_owed()
            manager.collect_window_updates(now, 0.01)
            assert predicted == (bool(manager._control) or manager._max_streams_pending)
            manager._control.clear()
            manager._max_streams_pending = False


def test_updates_owed_for_the_session_window_and_waiting_control_frames() -> None:
    """The cases a random walk rarely reaches: the session-level window crossed by reads
    spread over streams, none of which crossed its own quarter; and control frames waiting."""
    from stt_proto.config import SessionConfig
    from stt_proto.handshake import local_settings
    from stt_proto.streams import StreamManager
    from stt_proto.varint import encode_varint

    settings_ = local_settings(SessionConfig(recv_buffer_size=64 * 1024))
    manager = StreamManager(is_initiator=True, local=settings_, peer=settings_,
                            send_buffer=1 << 20, recv_buffer=64 * 1024, no_delay=True,
                            emit=lambda event: None)
    stream_quarter = settings_.initial_max_stream_data // 4
    for sid in (1, 3, 5):  # 7 KiB read on each: 21 KiB in all, over a quarter of the 64 KiB
        body = 7 * 1024
        assert body + 2 < stream_quarter
        manager.on_stream_data(sid, 0, encode_varint(body) + bytes(body), False)
        assert manager.receive_message(sid) is not None
    assert manager.updates_owed()
    manager.collect_window_updates(1.0, 0.01)
    assert [type(frame).__name__ for frame in manager._control] == ["MaxDataFrame"]
    manager._control.clear()
    assert not manager.updates_owed()
    manager.reset_stream(3, 7)  # RESET_STREAM and STOP_SENDING wait to be sent
    assert manager.updates_owed()
