"""The session as a package (issue 24 item 2): one timer table whose minimum is the session's
wake-up, one table of state moves every run stays inside, and one class for the surface."""

from __future__ import annotations

import inspect

import pytest

from stt_proto import Session, State
from stt_proto.session import CIPHER_IDLE_RELEASE, Timer, TimerTable, app, core, output, timeouts
from stt_proto.session.state import TRANSITIONS, check_move
from stt_proto.sim import LinkProfile

from .conftest import A, B, Pair, make_pair


def test_timer_table_next_deadline_is_the_minimum_of_armed_slots() -> None:
    table = TimerTable()
    assert table.next_deadline() is None
    assert not any(table.expired(timer, 1e18) for timer in Timer)
    table.set(Timer.PING, 5.0)
    table.set(Timer.DRAIN, 3.0)
    table.set(Timer.ACK, 4.0)
    assert table.next_deadline() == 3.0
    assert table.get(Timer.DRAIN) == 3.0 and table.get(Timer.HANDSHAKE) is None
    assert table.expired(Timer.DRAIN, 3.0) and not table.expired(Timer.PING, 4.99)
    table.clear(Timer.DRAIN)
    assert table.next_deadline() == 4.0
    table.clear_all()
    assert table.next_deadline() is None and table.get(Timer.PING) is None


def _reference_timer(session: Session) -> float | None:
    """get_timer of a confirmed, established session as the module computed it before the
    table: the minimum of its deadlines, each worked out from the state it follows."""
    config = session.config
    heard = session._last_received
    deadlines = [heard + config.keep_alive_timeout,
                 min(session._last_sent, max(heard, session._last_ping))
                 + config.keep_alive_interval]
    ack = session._acks.ack_deadline
    if ack is not None:
        deadlines.append(ack)
    keys = session._send_keys
    if keys is not None:
        deadlines.append(keys.started_at + config.key_update_interval)
    if session.data is not None:
        data = session.data.timer(session._now)
        if data is not None:
            deadlines.append(data)
    if session._ciphers_live:
        deadlines.append(max(session._last_sent, heard) + CIPHER_IDLE_RELEASE)
    path = session.path.timer() if session.path is not None else None
    if path is not None:
        deadlines.append(path)
    return min(deadlines)


def test_the_timer_table_gives_the_same_deadline_as_the_formula_at_every_step() -> None:
    cfg = {"key_update_packets": 40, "keep_alive_interval": 0.3, "keep_alive_timeout": 2.0}
    pair = make_pair(profile=LinkProfile(latency=0.01, loss=0.05), client_config=cfg,
                     server_config=cfg)
    client, server = pair.established()
    stream = client.open_stream()
    checked = 0

    def check() -> bool:
        nonlocal checked
        for session in (client, server):
            if session.state is State.ESTABLISHED and session.confirmed:
                assert session.get_timer() == _reference_timer(session)
                checked += 1
        return False

    for _ in range(60):
        client.send_message(stream, b"x" * 3000)
        pair.net.run_until(check, 0.05)
    pair.net.run_until(check, 3.0)  # idle: pings, cipher release, key updates by time
    assert checked > 500
    assert client.counters.key_updates_sent >= 1 and client.counters.pings_sent >= 1


def _record_moves(pair: Pair, sessions: list[Session], duration: float,
                  before: list[State] | None = None) -> set[tuple[State, State]]:
    """The (old, new) state pairs seen after each step of the simulation."""
    moves: set[tuple[State, State]] = set()
    last = before or [s.state for s in sessions]

    def watch() -> bool:
        for i, session in enumerate(sessions):
            if session.state is not last[i]:
                moves.add((last[i], session.state))
                last[i] = session.state
        return False

    pair.net.run_until(watch, duration)
    return moves


def test_every_state_move_of_a_run_is_in_the_table() -> None:
    cfg = {"keep_alive_interval": 0.5, "keep_alive_timeout": 1.5, "handshake_timeout": 2.0}
    seen: set[tuple[State, State]] = set()
    # a graceful close: ESTABLISHED -> CLOSING / DRAINING -> TERMINATED
    pair = make_pair(client_config=cfg, server_config=cfg)
    client = pair.connect()
    server_sessions: list[Session] = []
    seen |= _record_moves(pair, [client], 0.5)
    server_sessions.append(pair.server_session())
    before = [client.state, *(s.state for s in server_sessions)]
    client.close(7, "bye", pair.net.now)
    seen |= _record_moves(pair, [client, *server_sessions], 3.0, before)
    # a keep-alive timeout, and a handshake that times out
    pair = make_pair(client_config=cfg, server_config=cfg)
    client, server = pair.established()
    pair.net.set_link(A, B, LinkProfile(latency=0.01, loss=1.0))
    pair.net.set_link(B, A, LinkProfile(latency=0.01, loss=1.0))
    silent = pair.client.connect(("10.9.9.9", 1), bytes(32), pair.net.now)
    seen |= _record_moves(pair, [client, server, silent], 5.0)
    assert client.is_terminated and server.is_terminated and silent.is_terminated
    assert seen <= {(old, new) for old, targets in TRANSITIONS.items() for new in targets}
    assert {(State.HANDSHAKING, State.TERMINATED), (State.ESTABLISHED, State.DRAINING),
            (State.ESTABLISHED, State.CLOSING), (State.CLOSING, State.TERMINATED)} <= seen


@pytest.mark.parametrize(("old", "new"), [(State.CLOSING, State.ESTABLISHED),
                                          (State.DRAINING, State.CLOSING),
                                          (State.TERMINATED, State.HANDSHAKING),
                                          (State.HANDSHAKING, State.DRAINING)])
def test_a_move_outside_the_table_is_refused(old: State, new: State) -> None:
    with pytest.raises(AssertionError):
        check_move(old, new)


def test_the_surface_is_one_class_without_stubs() -> None:
    assert Session.__mro__ == (Session, object)
    for name in ("open_stream", "send_message", "receive_message", "stream_state",
                 "stream_stats", "close_stream", "reset_stream", "stop_receiving",
                 "is_stream_open", "send_datagram", "get_stats", "read_needs_poll",
                 "stream_no_delay", "next_event", "close", "get_timer", "handle_timer",
                 "datagrams_to_send", "receive_datagram"):
        assert name in Session.__dict__, name
    for module in (core, app, output, timeouts):
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):  # pragma: no cover - a compiled module has no source
            continue
        assert "NotImplementedError" not in source


def test_a_packet_of_two_close_frames_drains_once() -> None:
    """Found by the fuzz smoke run: the second CLOSE of one packet asked the state table for
    DRAINING -> DRAINING, and the AssertionError escaped Endpoint.receive_datagram."""
    from stt_proto.frames import CloseFrame, encode_frames
    from stt_proto.session import DRAINING

    from .conftest import A, make_pair

    pair = make_pair()
    client, server = pair.established()
    keys = client._send_keys
    assert keys is not None
    frames = [CloseFrame(7, "first"), CloseFrame(8, "second")]
    packet = bytes(keys.cipher.seal(server.local_cid, client._next_pn + 5, keys.phase,
                                    encode_frames(frames)))
    pair.server.receive_datagram(packet, A, pair.net.now)  # no exception
    assert server.state is DRAINING
    assert server.error is not None and server.error.error_code == 7
