"""DataPlane.build: the bulk send path against the general path, state by state, and pacing."""

from __future__ import annotations

from typing import Any

import pytest

from stt_proto.config import SessionConfig
from stt_proto.dataplane import PACKET_OVERHEAD, DataPlane
from stt_proto.handshake import local_settings
from stt_proto.rtt import RttEstimator
from stt_proto.streams import STREAM_FRAME_OVERHEAD, StreamManager
from stt_proto.varint import varint_size

FRAME = 1200


def _plane(events: list[Any]) -> DataPlane:
    config = SessionConfig(max_frame_size=FRAME, no_delay=True)
    settings = local_settings(config)
    return DataPlane(config=config, is_initiator=True, local=settings, peer=settings,
                     rtt=RttEstimator(), emit=events.append, seed=7)


def _run(bulk: bool, monkeypatch: pytest.MonkeyPatch, size: int, fin: bool,
         limit: int | None, cwnd: int | None, rounds: int) -> list[Any]:
    """Build packets from one stream of ``size`` bytes in ``rounds`` calls at 1 ms steps and
    return everything observable: payloads, what recovery remembers, pacing and flags."""
    with monkeypatch.context() as patch:
        if not bulk:
            patch.setattr(StreamManager, "bulk_source", lambda self, space: None)
        events: list[Any] = []
        plane = _plane(events)
        plane.rtt.update(0.004)  # a sample: the pacing rate is no longer the handshake guess
        if cwnd is not None:
            plane.cc.cwnd = cwnd
        sid = plane.streams.open(FRAME, True, 0).stream_id
        message = _message_filling(size)  # the stream then holds exactly ``size`` bytes
        plane.streams.send_message(sid, message, 0.0, 0.0)
        if fin:
            plane.streams.close_stream(sid)
        pn = 0

        def seal(payload: bytes | bytearray) -> tuple[bytes, int]:
            nonlocal pn
            pn += 1
            return bytes(payload) + bytes(30), pn - 1

        seen: list[Any] = []
        for step in range(rounds):
            now = step * 0.002
            if step % 2 and pn:  # every other round the peer acknowledges all but the last
                plane.on_ack(((0, pn - 2),) if pn > 1 else ((0, 0),), 0, now, pn)
            packets = plane.build(now, [], seal, limit)
            seen.append([bytes(p) for p in packets])
            seen.append((plane.more, plane.pacer.next_send, plane.recovery.bytes_in_flight,
                         plane.cc.cwnd, plane.send_rate))
        seen.append([(p.pn, p.time_sent, p.size, p.items, p.app_limited, p.delivered)
                     for p in plane.recovery.sent.values()])
        send = plane.streams.streams[sid].send
        seen.append((send.sent_end, send.fin_sent, plane.streams.conn_sent, events))
        return seen


def _message_filling(size: int) -> bytes:
    length = next(n for n in range(size, 0, -1) if n + varint_size(n) == size)
    return bytes(range(256)) * (length // 256) + bytes(length % 256)


CHUNK = FRAME - PACKET_OVERHEAD - STREAM_FRAME_OVERHEAD


@pytest.mark.parametrize("size", [CHUNK * 3, CHUNK * 3 + 1, CHUNK * 40 - 1, 100_000])
@pytest.mark.parametrize("fin", [False, True])
@pytest.mark.parametrize(("limit", "cwnd"), [(None, None), (4, None), (None, 9 * FRAME)])
def test_bulk_path_equals_general_path(monkeypatch: pytest.MonkeyPatch, size: int, fin: bool,
                                       limit: int | None, cwnd: int | None) -> None:
    bulk = _run(True, monkeypatch, size, fin, limit, cwnd, rounds=12)
    general = _run(False, monkeypatch, size, fin, limit, cwnd, rounds=12)
    assert bulk == general
    assert any(bulk[0])  # something was sent


def test_bulk_source_leaves_the_frame_carrying_the_fin_to_fill() -> None:
    plane = _plane([])
    streams = plane.streams
    sid = streams.open(FRAME, True, 0).stream_id
    space = plane.max_datagram - PACKET_OVERHEAD
    streams.send_message(sid, _message_filling(CHUNK * 3), 0.0, 0.0)
    source = streams.bulk_source(space)
    assert source is not None and source[1:] == (CHUNK, 3)
    streams.close_stream(sid)
    source = streams.bulk_source(space)
    assert source is not None and source[1:] == (CHUNK, 2)
    streams.open(FRAME, True, 0)
    other = streams.open(FRAME, True, 0).stream_id
    streams.send_message(other, b"x", 0.0, 0.0)
    assert streams.bulk_source(space) is None  # two streams ready: the general path schedules


def test_pacing_holds_packets_only_while_something_is_in_flight() -> None:
    """Pacing spreads packets so that they do not queue at the bottleneck. With nothing in
    flight there is no queue to protect: a message leaves at once and pacing debt is dropped,
    and no pacing deadline is asked for. With data in flight the pacer still holds packets."""
    plane = _plane([])
    plane.rtt.update(0.004)
    sid = plane.streams.open(FRAME, True, 0).stream_id
    pn = 0

    def seal(payload: bytearray) -> tuple[bytes, int]:
        nonlocal pn
        pn += 1
        return bytes(payload) + bytes(30), pn - 1

    plane.pacer.next_send = 10.0  # debt far beyond now = 1.0
    plane.streams.send_message(sid, b"ping", 1.0, 0.0)
    assert plane.timer(1.0) is None  # not 10.0: the debt is not waited for
    assert len(plane.build(1.0, [], seal)) == 1  # nothing was in flight: it left at once
    assert plane.recovery.bytes_in_flight > 0
    held_until = plane.pacer.next_send = 1.01  # before the probe timeout
    plane.streams.send_message(sid, b"pong", 1.0, 0.0)
    assert plane.build(1.0, [], seal) == []  # in flight now: the pacer holds the next one
    assert plane.timer(1.0) == held_until
    assert len(plane.build(held_until, [], seal)) == 1
