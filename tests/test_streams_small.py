"""StreamManager.write_small, the dialogue's packet fill, against the general fill(): state by
state over arbitrary mixes of streams, messages, holds, flow control, FINs, resets and
losses; it must either decline and leave everything untouched, or do exactly what fill() does."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from stt_proto.config import SessionConfig
from stt_proto.handshake import local_settings
from stt_proto.handshake_payload import TransportSettings
from stt_proto.streams import STREAM_FRAME_OVERHEAD, StreamManager, StreamRange

SPACE = 1200 - 40

# One step of history: ("send", stream index, size, now), ("close", index), ("reset", index),
# ("fill", now, in_flight) (a packet leaves), ("lose", which item) (a sent range comes back).
_steps = st.lists(st.one_of(
    st.tuples(st.just("send"), st.integers(0, 2),
              st.one_of(st.integers(0, 40), st.integers(0, 2500)), st.floats(0, 0.02)),
    st.tuples(st.just("send"), st.integers(0, 2), st.integers(0, 40), st.floats(0, 0.02)),
    st.tuples(st.just("close"), st.integers(0, 2)),
    st.tuples(st.just("reset"), st.integers(0, 2)),
    st.tuples(st.just("fill"), st.floats(0, 0.02), st.integers(0, 5000)),
    st.tuples(st.just("lose"), st.integers(0, 50)),
), max_size=12)


def _manager(settings_: TransportSettings, streams: list[tuple[bool, int, int]],
             window: int, conn: int) -> tuple[StreamManager, list[int], list[Any]]:
    events: list[Any] = []
    peer = TransportSettings(**{**{f: getattr(settings_, f) for f in settings_.__slots__
                                   if not f.startswith("__")},
                                "initial_max_stream_data": window,
                                "initial_max_data": conn})
    manager = StreamManager(is_initiator=True, local=settings_, peer=peer,
                            send_buffer=1 << 20, recv_buffer=1 << 20, no_delay=False,
                            emit=events.append)
    ids = [manager.open(frame, no_delay, priority).stream_id
           for no_delay, priority, frame in streams]
    return manager, ids, events


def _replay(manager: StreamManager, ids: list[int], steps: list[tuple[Any, ...]]) -> None:
    sent: list[tuple[Any, ...]] = []
    for step in steps:
        kind = step[0]
        sid = ids[step[1] % len(ids)] if kind in ("send", "close", "reset") else -1
        if kind == "send":
            stream = manager.streams.get(sid)
            if stream is not None and not stream.app_closed and stream.send.reset_sent is None:
                manager.send_message(sid, bytes(step[2]), step[3], 0.005)
        elif kind == "close":
            if sid in manager.streams:
                manager.close_stream(sid)
        elif kind == "reset":
            manager.reset_stream(sid, 7)
        elif kind == "fill":
            items: list[Any] = []
            manager.fill(bytearray(), SPACE, items, step[1], step[2])
            sent.extend(items)
        elif kind == "lose" and sent:
            manager.on_item_lost(sent.pop(step[1] % len(sent)))


def _observed(manager: StreamManager, events: list[Any]) -> Any:
    return (
        manager.conn_sent, list(manager._control), sorted(manager._in_ready),
        {p: list(q) for p, q in manager._ready.items()}, manager._data_blocked_at,
        [(sid, s.send.sent_end, s.send.buffered_end, s.send.fin_sent, s.hold_until,
          list(s.send.retransmit)) for sid, s in sorted(manager.streams.items())],
        list(events),
    )


@settings(max_examples=400, deadline=None)
@given(streams=st.lists(st.tuples(st.booleans(), st.integers(0, 1),
                                  st.sampled_from([200, 1200, 4000])), min_size=1, max_size=3),
       steps=_steps, window=st.sampled_from([300, 3000, 1 << 20]),
       conn=st.sampled_from([500, 5000, 1 << 20]), head=st.integers(0, 60),
       now=st.floats(0, 0.03), in_flight=st.integers(0, 5000))
def test_write_small_is_fill_or_nothing(streams: list[tuple[bool, int, int]],
                                        steps: list[tuple[Any, ...]], window: int, conn: int,
                                        head: int, now: float, in_flight: int) -> None:
    local = local_settings(SessionConfig())
    general, ids, general_events = _manager(local, streams, window, conn)
    small, _, small_events = _manager(local, streams, window, conn)
    _replay(general, ids, steps)
    _replay(small, ids, steps)
    assert _observed(general, general_events) == _observed(small, small_events)

    payload_general, items_general = bytearray(head), []  # ``head``: an ACK before the data
    general.fill(payload_general, SPACE, items_general, now, in_flight)
    payload_small, items_small = bytearray(head), []
    before = _observed(small, small_events)
    if not small.write_small(payload_small, SPACE, items_small, now, in_flight):
        assert _observed(small, small_events) == before and payload_small == bytearray(head)
        small.fill(payload_small, SPACE, items_small, now, in_flight)
    assert payload_small == payload_general
    assert items_small == items_general
    assert _observed(small, small_events) == _observed(general, general_events)


def test_a_dialogue_message_takes_the_small_path() -> None:
    """The case it exists for: one no_delay stream, one small message, an ACK in front."""
    local = local_settings(SessionConfig())
    manager, ids, _ = _manager(local, [(True, 0, 1200)], 1 << 20, 1 << 20)
    manager.send_message(ids[0], b"ping", 0.0, 0.005)
    payload, items = bytearray(b"ack!"), []
    assert manager.write_small(payload, SPACE, items, 0.0, 5000)
    assert items == [StreamRange(ids[0], 0, 5, False)]
    assert not manager.has_pending()
    manager.send_message(ids[0], bytes(SPACE - STREAM_FRAME_OVERHEAD), 0.0, 0.005)
    assert not manager.write_small(bytearray(), SPACE, [], 0.0, 0)  # a full frame: bulk path


def test_using_the_last_connection_credit_reports_data_blocked() -> None:
    """As fill() does: a frame that spends the session's last credit while another stream
    still holds unsent data queues DATA_BLOCKED."""
    local = local_settings(SessionConfig())
    manager, (first, second), _ = _manager(local, [(True, 0, 1200), (True, 0, 1200)], 300, 400)
    manager.send_message(second, bytes(1000), 0.0, 0.005)
    manager.fill(bytearray(), SPACE, [], 0.0, 0)  # the second stream sends its window of 300
    assert manager.conn_sent == 300 and not manager.has_pending()
    manager.send_message(first, bytes(98), 0.0, 0.005)  # 100 bytes with the prefix
    items: list[Any] = []
    assert manager.write_small(bytearray(), SPACE, items, 0.0, 0)
    assert manager.conn_sent == 400
    assert [type(frame).__name__ for frame in manager._control] == ["DataBlockedFrame"]


def test_data_beyond_the_connection_credit_is_left_to_fill() -> None:
    local = local_settings(SessionConfig())
    manager, (sid,), _ = _manager(local, [(True, 0, 1200)], 1 << 20, 400)
    manager.send_message(sid, bytes(500), 0.0, 0.005)
    assert not manager.write_small(bytearray(), SPACE, [], 0.0, 0)
    items: list[Any] = []
    manager.fill(bytearray(), SPACE, items, 0.0, 0)
    assert items == [StreamRange(sid, 0, 400, False)]  # fill sends what the credit allows
