"""A hypothesis state machine: two sessions driven by random API calls and network events,
checked against a model of what each side must receive."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from stt_proto import Session, State, StreamLimitError
from stt_proto.events import DatagramReceived
from stt_proto.sim import LinkProfile

from .conftest import A, B, make_pair

SIDES = st.sampled_from(["client", "server"])


class TwoSessions(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.pair = make_pair(seed=17, profile=LinkProfile(latency=0.005),
                              client_config={"max_concurrent_streams": 8},
                              server_config={"max_concurrent_streams": 8})
        client, server = self.pair.established()
        self.sessions = {"client": client, "server": server}
        # (sender side, stream id) -> messages accepted by send_message / read by the peer
        self.sent: dict[tuple[str, int], list[bytes]] = {}
        self.received: dict[tuple[str, int], list[bytes]] = {}
        self.closed: set[tuple[str, int]] = set()
        self.reset: set[int] = set()
        self.streams: list[int] = []

    def _other(self, side: str) -> str:
        return "server" if side == "client" else "client"

    def _session(self, side: str) -> Session:
        return self.sessions[side]

    @rule(side=SIDES, no_delay=st.booleans(), priority=st.integers(0, 3),
          sizes=st.lists(st.integers(0, 3000), min_size=1, max_size=5))
    def open_stream(self, side: str, no_delay: bool, priority: int, sizes: list[int]) -> None:
        session = self._session(side)
        try:
            sid = session.open_stream(no_delay=no_delay, priority=priority)
        except StreamLimitError:
            return
        self.streams.append(sid)
        for i, size in enumerate(sizes):
            message = bytes([(sid + i) % 256]) * size
            if session.send_message(sid, message):
                self.sent.setdefault((side, sid), []).append(message)

    @precondition(lambda self: self.streams)
    @rule(side=SIDES, pick=st.integers(0, 1000),
          size=st.one_of(st.integers(0, 100), st.integers(1000, 70_000)),
          fill=st.integers(0, 255))
    def send(self, side: str, pick: int, size: int, fill: int) -> None:
        sid = self.streams[pick % len(self.streams)]
        key = (side, sid)
        if key in self.closed or sid in self.reset:
            return
        session = self._session(side)
        if sid not in session.data.streams.streams:  # the peer's stream, not yet seen here
            return
        message = bytes([fill]) * size
        if session.send_message(sid, message):
            self.sent.setdefault(key, []).append(message)

    @precondition(lambda self: self.streams)
    @rule(side=SIDES, pick=st.integers(0, 1000))
    def close_half(self, side: str, pick: int) -> None:
        sid = self.streams[pick % len(self.streams)]
        key = (side, sid)
        session = self._session(side)
        if key in self.closed or sid in self.reset or sid not in session.data.streams.streams:
            return
        session.close_stream(sid)
        self.closed.add(key)

    @precondition(lambda self: self.streams)
    @rule(side=SIDES, pick=st.integers(0, 1000), code=st.integers(0, 100))
    def reset_stream(self, side: str, pick: int, code: int) -> None:
        sid = self.streams[pick % len(self.streams)]
        self._session(side).reset_stream(sid, code)
        self.reset.add(sid)

    @rule(side=SIDES, size=st.integers(0, 1000))
    def datagram(self, side: str, size: int) -> None:
        self._session(side).send_datagram(bytes(size))

    @rule(seconds=st.floats(0.0, 0.3))
    def advance(self, seconds: float) -> None:
        self.pair.net.run(seconds)

    @rule(loss=st.floats(0, 0.3), duplicate=st.floats(0, 0.2), reorder=st.floats(0, 0.3),
          bandwidth=st.one_of(st.none(), st.floats(1e6, 1e8)))
    def change_link(self, loss: float, duplicate: float, reorder: float,
                    bandwidth: float | None) -> None:
        self.pair.net.set_link(A, B, LinkProfile(latency=0.005, loss=loss, duplicate=duplicate,
                                                 reorder=reorder, bandwidth=bandwidth))

    @rule()
    def read_everything(self) -> None:
        for side, session in self.sessions.items():
            other = self._other(side)
            for sid in list(self.streams):
                while (message := session.receive_message(sid)) is not None:
                    self.received.setdefault((other, sid), []).append(message)
            for event in iter(session.next_event, None):
                assert not isinstance(event, DatagramReceived) or not any(event.data)

    @invariant()
    def received_is_a_prefix_of_sent(self) -> None:
        for key, got in self.received.items():
            assert got == self.sent.get(key, [])[: len(got)], key

    @invariant()
    def sessions_stay_up(self) -> None:
        for session in self.sessions.values():
            assert session.state is State.ESTABLISHED, session.error

    def teardown(self) -> None:
        """On a clean link, everything sent on a stream that was not reset arrives, in order."""
        self.pair.net.set_link(A, B, LinkProfile(latency=0.005))
        for _ in range(100):
            self.pair.net.run(0.2)
            self.read_everything()
        for key, messages in self.sent.items():
            if key[1] not in self.reset:
                assert self.received.get(key, []) == messages, key


TwoSessions.TestCase.settings = settings(
    max_examples=30, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_two_sessions = TwoSessions.TestCase
