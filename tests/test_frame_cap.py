"""Frames per packet are capped (issue 21, item 10): a packet of tiny frames costs a receiver at
most MAX_FRAMES_PER_PACKET frames of work, more is a protocol violation that closes that one
session, and a legitimate sender never packs more frames than the cap however many streams,
flow-control frames and datagrams it has queued."""

from __future__ import annotations

import pytest

from stt_proto import FrameError, Session, SessionTerminated, State
from stt_proto import frames as F
from stt_proto.events import DatagramReceived
from stt_proto.packet import DATA_KEY_PHASE, parse_data_header
from stt_proto.pmtu import COMPLETE

from .conftest import A, Pair, make_pair

PING = bytes((F.FrameType.PING,))
EMPTY_DATAGRAM = bytes((F.FrameType.DATAGRAM, 0))  # 2 bytes, and each one makes an event
BIG = {"max_frame_size": 65507, "max_concurrent_streams": 4096}


def _drain(session: Session) -> list[object]:
    out: list[object] = []
    while (event := session.next_event()) is not None:
        out.append(event)
    return out


def _inject(pair: Pair, client: Session, payload: bytes) -> None:
    """Seal ``payload`` with the client's keys and hand it to the server as if it came from
    the client: what a peer (authenticated, so past every drop check) can send."""
    datagram, _ = client._seal(payload)
    pair.server.receive_datagram(datagram, A, pair.net.now)


def _frames_sent(pair: Pair, sender: Session) -> list[int]:
    """Frames in each DATA packet ``sender`` sent (opened with the receiver's keys)."""
    receiver = next(iter(pair.server.sessions.values()))
    keys = receiver._recv_keys
    assert keys is not None
    counts = []
    for _, src, _, data in pair.net.trace:
        if src != A or DATA_KEY_PHASE.get(data[1]) is None:
            continue
        pn, pos = parse_data_header(data, len(data))
        view = memoryview(data)
        try:
            payload = keys.current.open_sealed(pn, view[:pos], view[pos:])
        except Exception:  # sealed under an earlier key generation: not what this counts
            continue
        counts.append(len(F.parse_frames(payload)))
    return counts


def test_parse_frames_accepts_the_cap_and_refuses_one_more() -> None:
    assert len(F.parse_frames(PING * F.MAX_FRAMES_PER_PACKET)) == F.MAX_FRAMES_PER_PACKET
    with pytest.raises(FrameError, match="more than"):
        F.parse_frames(PING * (F.MAX_FRAMES_PER_PACKET + 1))


def test_padding_runs_count_once_so_a_padded_packet_is_never_refused() -> None:
    payload = PING * (F.MAX_FRAMES_PER_PACKET - 1) + bytes(60_000)
    assert len(F.parse_frames(payload)) == F.MAX_FRAMES_PER_PACKET


def test_a_packet_at_the_cap_is_handled() -> None:
    pair = make_pair()
    client, server = pair.established()
    _inject(pair, client, PING * F.MAX_FRAMES_PER_PACKET)
    assert server.state is State.ESTABLISHED
    assert not [e for e in _drain(server) if isinstance(e, SessionTerminated)]


def test_a_15kb_packet_of_pings_closes_only_that_session() -> None:
    pair = make_pair()
    client, server = pair.established()
    other = pair.connect()
    assert pair.net.run_until(lambda: other.confirmed, 5.0)
    _drain(server)
    _inject(pair, client, PING * 15_000)
    ends = [e for e in _drain(server) if isinstance(e, SessionTerminated)]
    assert len(ends) == 1 and isinstance(ends[0].error, FrameError)
    assert not ends[0].by_peer and "more than" in ends[0].reason
    pair.net.run(0.1)
    client_ends = [e for e in _drain(client) if isinstance(e, SessionTerminated)]
    assert client_ends and client_ends[0].by_peer
    assert client_ends[0].error_code == FrameError.code
    # the endpoint and its other session carry on
    stream = other.open_stream()
    other.send_message(stream, b"still here")
    server_other = next(s for s in pair.server.sessions.values() if s is not server)
    assert pair.net.run_until(lambda: server_other.receive_message(stream) is not None, 2.0)


def test_work_on_a_packet_of_tiny_frames_stops_at_the_cap() -> None:
    """7,500 empty DATAGRAM frames in one 15 KB packet: each handled frame makes an event, so
    the events count the work done. Exactly the cap's worth are handled, not all of them."""
    pair = make_pair()
    client, server = pair.established()
    _drain(server)
    payload = EMPTY_DATAGRAM * 7_500
    assert len(payload) == 15_000
    _inject(pair, client, payload)
    events = _drain(server)
    handled = sum(isinstance(e, DatagramReceived) for e in events)
    assert handled == F.MAX_FRAMES_PER_PACKET
    assert any(isinstance(e, SessionTerminated) and isinstance(e.error, FrameError)
               for e in events)


def test_many_small_stream_messages_at_once_are_split_below_the_cap() -> None:
    """1,500 streams each with a small message queued before one poll: one 64 KB packet would
    hold them all, over the cap; the sender splits them and every message arrives."""
    pair = make_pair(client_config=BIG, server_config=BIG)
    client, server = pair.established()
    # packets grow past 1,200 bytes once a transfer has made path-MTU discovery search
    client.send_message(client.open_stream(), bytes(256 * 1024))
    assert pair.net.run_until(lambda: client.data.pmtu.state == COMPLETE, 5.0)
    streams = [client.open_stream() for _ in range(1_500)]
    for stream in streams:
        assert client.send_message(stream, b"x")
    got: dict[int, bytes] = {}

    def all_arrived() -> bool:
        for stream in streams:
            if stream not in got and (message := server.receive_message(stream)) is not None:
                got[stream] = message
        return len(got) == len(streams)

    assert pair.net.run_until(all_arrived, 5.0)
    assert server.state is State.ESTABLISHED and client.state is State.ESTABLISHED
    counts = _frames_sent(pair, client)
    assert max(counts) <= F.MAX_FILL_FRAMES + 8
    assert max(counts) >= F.MAX_FILL_FRAMES  # the test did pack a full budget into a packet


def test_many_resets_at_once_are_split_below_the_cap() -> None:
    """Control frames too: 1,500 RESET_STREAMs queued at once go out in packets under the cap."""
    pair = make_pair(client_config=BIG, server_config=BIG)
    client, server = pair.established()
    # packets grow past 1,200 bytes once a transfer has made path-MTU discovery search
    client.send_message(client.open_stream(), bytes(256 * 1024))
    assert pair.net.run_until(lambda: client.data.pmtu.state == COMPLETE, 5.0)
    streams = [client.open_stream() for _ in range(1_500)]
    for stream in streams:
        client.send_message(stream, b"x")
    pair.net.run(0.5)
    for stream in streams:
        client.reset_stream(stream, 7)
    pair.net.run(0.5)
    assert server.state is State.ESTABLISHED and client.state is State.ESTABLISHED
    assert max(_frames_sent(pair, client)) <= F.MAX_FILL_FRAMES + 8
