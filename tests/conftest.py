"""Shared fixtures: paired endpoints on a simulated network with a virtual clock."""

from __future__ import annotations

import signal
from typing import Any

import attrs
import pytest

from stt_proto import DeterministicRandom, Endpoint, EndpointConfig, Session
from stt_proto.sim import LinkProfile, Network

A = ("10.0.0.1", 4000)
B = ("10.0.0.2", 5000)


def pytest_configure(config: pytest.Config) -> None:
    """A job a shell starts in the background (``cmd &``, as CI runners and nohup do) begins
    with SIGINT ignored, and every process it spawns inherits that: the Ctrl-C tests' ``stt``
    programs would never see their SIGINT. With a handler here instead, children start with
    the default again (exec resets handled signals, not ignored ones)."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@attrs.define
class Pair:
    net: Network
    client: Endpoint
    server: Endpoint

    def connect(self, peer_id: bytes | None = None) -> Session:
        pid = self.server.identity.node_id if peer_id is None else peer_id
        return self.client.connect(B, pid, self.net.now)

    def server_session(self) -> Session:
        event = self.server.next_event()
        assert event is not None, "no session was accepted"
        return self.server.sessions[event.session_id]

    def established(self, timeout: float = 5.0) -> tuple[Session, Session]:
        session = self.connect()
        assert self.net.run_until(lambda: session.confirmed, timeout)
        self.net.run(0.1)
        return session, self.server_session()


def make_pair(seed: int = 1, profile: LinkProfile | None = None,
              client_config: dict[str, Any] | None = None,
              server_config: dict[str, Any] | None = None) -> Pair:
    net = Network(seed=seed, default_profile=profile or LinkProfile(latency=0.01))
    client = Endpoint(EndpointConfig.build(**(client_config or {})), rng=DeterministicRandom(seed))
    server = Endpoint(EndpointConfig.build(**(server_config or {})),
                      rng=DeterministicRandom(seed + 10_000))
    net.add_endpoint(client, A)
    net.add_endpoint(server, B)
    return Pair(net, client, server)


@pytest.fixture
def pair() -> Pair:
    return make_pair()


class CallCounter:
    """Counts the calls of ``owner.name`` while started (a monkeypatch undoes the wrapping)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, owner: type, name: str) -> None:
        self.count = 0
        self._patch, self._owner, self._name = monkeypatch, owner, name
        self._original = getattr(owner, name)

    def start(self) -> None:
        original = self._original

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        self._patch.setattr(self._owner, self._name, counted)

    def stop(self) -> None:
        self._patch.setattr(self._owner, self._name, self._original)


async def polls_per_round_trip(stream: Any, polls: CallCounter, rounds: int = 200) -> float:
    """Echo ``rounds`` pings on ``stream`` (after a warm-up) and return ``polls.count`` per
    round trip; any runtime's stream."""
    for _ in range(20):  # warm up: handshake, first stream, window state settled
        await stream.send(b"ping")
        await stream.receive()
    polls.start()
    for _ in range(rounds):
        await stream.send(b"ping")
        assert await stream.receive() == b"ping"
    polls.stop()
    return polls.count / rounds

