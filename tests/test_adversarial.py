"""Attacks from docs/security.md against a live node while an honest transfer runs.

Each test starts a real node (every runtime configuration), an honest client that pushes data
to it over a stream whose digest is checked at the end, and an attacker: a ``stt_proto``
Endpoint of its own, driven over a real UDP socket, which completes handshakes like any peer
and then sends what it likes, sealed with its session's real keys. Every test asserts that the
honest transfer arrives byte-exact, that nothing escapes the node, and what the attack cost.
The default suite runs a short form; ``-m slow`` runs the full one.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import pytest

from stt_proto import (
    DeterministicRandom,
    Endpoint,
    EndpointConfig,
    Identity,
    ProtocolViolation,
    Session,
    SessionClosed,
)
from stt_proto.frames import CloseFrame, PingFrame, StreamFrame, encode_frames

from .conformance.runtimes import RUNTIMES, Runtime

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
LIVE = [pytest.param(r, id=r.name) for r in RUNTIMES if r.available and r.name != "anyio-asyncio"]
TIMEOUT = 60


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class Attacker:
    """A peer of our own making: a sans-I/O Endpoint on a real socket, pumped by a task."""

    def __init__(self, sock: anyio.abc.UDPSocket, seed: int) -> None:
        self.sock = sock
        self.endpoint = Endpoint(EndpointConfig(), Identity.generate(),
                                 rng=DeterministicRandom(seed))
        self.received = 0
        self._sending = anyio.Lock()  # the pump and the attack share the socket
        # On-path: each datagram also goes out from this socket, ahead of the original.
        self.mirror: anyio.abc.UDPSocket | None = None

    async def _send(self, sock: anyio.abc.UDPSocket, data: bytes, host: str, port: int) -> None:
        async with self._sending:
            await sock.sendto(data, host, port)

    async def pump(self) -> None:
        endpoint = self.endpoint
        while True:
            now = time.monotonic()
            for data, (host, port) in endpoint.datagrams_to_send(now):
                if self.mirror is not None:
                    await self._send(self.mirror, bytes(data), host, port)
                await self._send(self.sock, data, host, port)
            timer = endpoint.get_timer()
            wait = 0.01 if timer is None else max(0.0, min(0.01, timer - now))
            with anyio.move_on_after(wait):
                data, address = await self.sock.receive()
                self.received += 1
                endpoint.receive_datagram(data, address, time.monotonic())
            timer = endpoint.get_timer()
            if timer is not None and timer <= time.monotonic():
                endpoint.handle_timer(time.monotonic())

    async def connect(self, address: tuple[str, int], peer_id: bytes) -> Session:
        session = self.endpoint.connect(address, peer_id, time.monotonic())
        with anyio.fail_after(10):
            while not session.confirmed:
                await anyio.sleep(0.005)
        return session

    async def inject(self, session: Session, frames: list[Any], pn: int,
                     sock: anyio.abc.UDPSocket | None = None) -> bytes:
        """Seal ``frames`` as packet ``pn`` with the session's real key and send it."""
        keys = session._send_keys
        assert keys is not None
        packet = bytes(keys.cipher.seal(session.remote_cid, pn, keys.phase, encode_frames(frames)))
        host, port = session.remote_address
        await self._send(sock or self.sock, packet, host, port)
        return packet


Attack = Callable[[Runtime, Any, Attacker, dict[bytes, Any]], Awaitable[None]]


def _under_attack(rt: Runtime, attack: Attack, honest_bytes: int, **settings: Any) -> None:
    """Run ``attack`` against a live node (with ``settings``) while an honest client sends
    ``honest_bytes``."""
    chunk = os.urandom(64 * 1024)
    count = honest_bytes // len(chunk)
    expected = hashlib.sha256(chunk * count).hexdigest()

    async def body(rt: Runtime) -> None:
        got: dict[str, str] = {}
        accepted: dict[bytes, Any] = {}  # the victim's sessions, by peer id
        async with rt.node(host="127.0.0.1", **settings) as victim, \
                rt.node(host="127.0.0.1") as honest, \
                await anyio.create_udp_socket(local_host="127.0.0.1") as sock, \
                anyio.create_task_group() as group:

            async def serve(session: Any) -> None:
                accepted[session.peer_id] = session
                if session.peer_id != honest.node_id:
                    held = accepted.setdefault(b"streams of " + session.peer_id, [])
                    while True:  # an attacker's session: take its streams, read nothing
                        held.append(await session.accept_stream())
                stream = await session.accept_stream()
                digest = hashlib.sha256()
                async for message in stream:
                    digest.update(message)
                got["digest"] = digest.hexdigest()

            group.start_soon(victim.serve, serve)
            attacker = Attacker(sock, seed=7)
            group.start_soon(attacker.pump)
            with anyio.fail_after(TIMEOUT):
                session = await honest.connect(victim.address, victim.node_id)
                stream = session.open_stream()

                async def push() -> None:
                    for _ in range(count):
                        await stream.send(chunk)
                    await (stream.send_eof() if rt.is_anyio else stream.close())

                group.start_soon(push)
                await attack(rt, victim, attacker, accepted)
                while "digest" not in got:
                    await anyio.sleep(0.01)
            assert got["digest"] == expected  # the honest transfer, byte-exact
            assert not session.is_closed
            group.cancel_scope.cancel()

    rt.run(body)  # an exception escaping the node would surface here


@pytest.mark.parametrize("rt", LIVE)
@pytest.mark.parametrize("jump", [2**32, 2**40])
def test_packet_number_jump(rt: Runtime, jump: int) -> None:
    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        session = await attacker.connect(victim.address, victim.node_id)
        started = time.monotonic()
        await attacker.inject(session, [PingFrame()], session._next_pn + 1 + jump)
        with anyio.fail_after(5):
            while not session.is_closed:
                await anyio.sleep(0.005)
        assert time.monotonic() - started < 2  # the loop never stalled
        assert isinstance(session.error, SessionClosed)
        assert session.error.error_code == ProtocolViolation.code

    _under_attack(rt, attack, 4 * 1024 * 1024)


@pytest.mark.parametrize("rt", LIVE)
def test_a_spoofed_source_address_gets_only_challenges(rt: Runtime) -> None:
    """An on-path attacker races copies of a session's packets from a victim's address: the
    node may challenge that address but sends it at most 3 x what came from it, and the session
    stays on its validated path."""

    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        session = await attacker.connect(victim.address, victim.node_id)
        stream_id = session.open_stream()
        session.send_message(stream_id, os.urandom(200_000))  # traffic to copy
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as spoofed:
            sent = received = 0
            attacker.mirror = spoofed

            async def count_received() -> None:
                nonlocal received
                while True:
                    data, _ = await spoofed.receive()
                    received += len(data)

            async with anyio.create_task_group() as group:
                group.start_soon(count_received)
                await anyio.sleep(0.5)
                attacker.mirror = None
                await anyio.sleep(0.5)
                group.cancel_scope.cancel()
            sent = attacker.endpoint.bytes_out  # an upper bound of what the copies carried
            assert received <= 3 * sent
            assert received <= 3 * 3 * 200  # a few challenges, nothing of the session's data
        peer = accepted[attacker.endpoint.identity.node_id]
        assert not session.is_closed, session.error  # the real path goes on
        assert peer.remote_address[1] == attacker.sock.extra(anyio.abc.SocketAttribute.local_port)

    _under_attack(rt, attack, 4 * 1024 * 1024)


@pytest.mark.parametrize("rt", LIVE)
@pytest.mark.parametrize("frames", [400, pytest.param(4000, marks=pytest.mark.slow)])
def test_overlapping_stream_frames_stay_within_the_window(rt: Runtime, frames: int) -> None:
    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        session = await attacker.connect(victim.address, victim.node_id)
        stream_id = session.open_stream()
        session.send_message(stream_id, b"opening")
        await anyio.sleep(0.05)
        before = _rss()
        base = session._next_pn + 100
        piece = os.urandom(15_900)
        for index in range(frames):  # each one byte past the last, never filling the gap at 0
            await attacker.inject(session, [StreamFrame(stream_id, 100_000 + index, piece)],
                                  base + index)
            if index % 50 == 0:
                await anyio.sleep(0)
        await anyio.sleep(0.2)
        grown = _rss() - before
        # Unbounded, these frames alone are frames x 15.9 KB (6 MB short, 64 MB full).
        assert grown < 4 * 1024 * 1024 + frames * 1000, grown

    _under_attack(rt, attack, 4 * 1024 * 1024)


@pytest.mark.parametrize("rt", LIVE)
def test_a_packet_of_tiny_frames_closes_that_session(rt: Runtime) -> None:
    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        session = await attacker.connect(victim.address, victim.node_id)
        await attacker.inject(session, [PingFrame()] * 7_000, session._next_pn + 10)
        with anyio.fail_after(5):
            while not session.is_closed:
                await anyio.sleep(0.005)

    _under_attack(rt, attack, 4 * 1024 * 1024)


@pytest.mark.parametrize("rt", LIVE)
def test_an_escape_laden_close_reason_reaches_the_application_sanitised(rt: Runtime) -> None:
    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        session = await attacker.connect(victim.address, victim.node_id)
        with anyio.fail_after(5):
            while attacker.endpoint.identity.node_id not in accepted:
                await anyio.sleep(0.005)
        peer = accepted[attacker.endpoint.identity.node_id]
        reason = "\x1b[2J\x1b]0;pwned\x07[/bold]"
        await attacker.inject(session, [CloseFrame(9, reason, application=True)],
                              session._next_pn + 10)
        with anyio.fail_after(5), pytest.raises(SessionClosed) as closed:
            await peer.accept_stream()
        assert closed.value.error_code == 9
        assert "\x1b" not in closed.value.reason and "\x07" not in closed.value.reason

    _under_attack(rt, attack, 4 * 1024 * 1024)


@pytest.mark.parametrize("rt", LIVE)
@pytest.mark.parametrize("count", [2_000, pytest.param(50_000, marks=pytest.mark.slow)])
def test_a_junk_initial_flood(rt: Runtime, count: int) -> None:
    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        host, port = victim.address
        junk = bytes([0x01, 0x01]) + os.urandom(1_198)  # INITIAL-shaped, padded, garbage
        async with await anyio.create_udp_socket(local_host="127.0.0.1") as flood:
            for index in range(count):
                await flood.sendto(junk, host, port)
                if index % 200 == 0:
                    await anyio.sleep(0)
            replies = 0
            with anyio.move_on_after(0.5):
                while True:
                    await flood.receive()
                    replies += 1
        assert replies <= 250  # REFUSE is rate-limited (a burst of 200 and 10/s per address)
        # Honest handshakes still complete during and after the flood.
        session = await attacker.connect(victim.address, victim.node_id)
        assert session.confirmed

    _under_attack(rt, attack, 4 * 1024 * 1024)


@pytest.mark.parametrize("rt", LIVE)
@pytest.mark.parametrize("streams, budget", [
    (8, 32 * 1024 * 1024), pytest.param(48, 512 * 1024 * 1024, marks=pytest.mark.slow)])
def test_unfinished_large_messages_cannot_balloon_the_node(
        rt: Runtime, streams: int, budget: int) -> None:
    """Streams each carrying the start of a 16 MiB message the application never reads: the
    node holds at most its receive budget and the streams' windows, not the messages."""

    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        session = await attacker.connect(victim.address, victim.node_id)
        big = bytes(16 * 1024 * 1024)
        for _ in range(streams):
            session.send_message(session.open_stream(), big)
        await anyio.sleep(1.0)  # let the attacker push all the credit it gets
        held = accepted[b"streams of " + attacker.endpoint.identity.node_id]
        assert len(held) == streams
        buffered = sum(stream.get_stats().bytes_buffered_in for stream in held)
        # Unbounded, every stream's window grew to its whole message: streams x 16 MiB held.
        assert 0 < buffered <= budget + streams * 2 * 1024 * 1024 < streams * 16 * 1024**2
        assert not session.is_closed

    _under_attack(rt, attack, 4 * 1024 * 1024, receive_budget=budget)


@pytest.mark.parametrize("rt", LIVE)
@pytest.mark.parametrize("count", [3_000, pytest.param(100_000, marks=pytest.mark.slow)])
def test_churned_streams_leave_nothing_behind(rt: Runtime, count: int) -> None:
    """A peer that opens, resets and stops streams by the thousand: once it is done, the
    node's side of the session holds none of them."""

    async def attack(rt: Runtime, victim: Any, attacker: Attacker,
                     accepted: dict[bytes, Any]) -> None:
        session = await attacker.connect(victim.address, victim.node_id)
        churned = 0
        while churned < count:
            try:
                stream_id = session.open_stream()
            except Exception:  # StreamLimitError until MAX_STREAMS raises the allowance
                await anyio.sleep(0.002)
                continue
            session.send_message(stream_id, b"x")
            session.reset_stream(stream_id, 3)
            churned += 1
            if churned % 100 == 0:
                await anyio.sleep(0)
        peer = accepted[attacker.endpoint.identity.node_id]
        with anyio.fail_after(20):
            while peer.get_stats().streams_open > 0:
                await anyio.sleep(0.05)
        assert not session.is_closed

    _under_attack(rt, attack, 4 * 1024 * 1024)
