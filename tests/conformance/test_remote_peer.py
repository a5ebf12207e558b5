"""Stream and session semantics against a peer in another process, in every runtime.

Each promise of docs/api.md about lifetimes, resets, keep-alive and closing is checked here the
way a user's program meets it: public API only, real sockets, the peer a separate process.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import pytest

from stt_proto import KeepAliveTimeout, SessionClosed, StreamClosed, StreamReset

from .conftest import Peer
from .runtimes import Runtime

TIMEOUT = 15


async def _connect(rt: Runtime, peer: Peer, **settings: Any) -> tuple[Any, Any]:
    node = rt.node(host="127.0.0.1", **settings)
    await node.start()
    with anyio.fail_after(TIMEOUT):
        session = await node.connect(peer.address, peer.node_id)
    return node, session


async def _half_close(rt: Runtime, stream: Any) -> None:
    if rt.is_anyio:
        await stream.send_eof()
    else:
        await stream.close()


async def _next_report(session: Any) -> bytes:
    with anyio.fail_after(TIMEOUT):
        stream = await session.accept_stream()
        report: bytes = await stream.receive()
    return report


def test_echo_and_half_close(rt: Runtime, peer: Peer) -> None:
    """After our FIN the peer's echoes still reach us; then its own FIN ends the stream."""

    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            await stream.send(b"echo")
            messages = [bytes([i]) * (i * 700 + 1) for i in range(20)]
            for message in messages:
                await stream.send(message)
            await _half_close(rt, stream)  # our direction ends; theirs goes on
            with anyio.fail_after(TIMEOUT):
                echoed = [await stream.receive() for _ in messages]
                with pytest.raises(StreamClosed) as end:
                    await stream.receive()
            assert echoed == messages
            if rt.is_anyio:
                assert isinstance(end.value, anyio.EndOfStream)
        finally:
            await node.close()

    rt.run(body)


def test_iteration_ends_at_the_peers_graceful_close(rt: Runtime, peer: Peer) -> None:
    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            await stream.send(b"send-close 5")
            with anyio.fail_after(TIMEOUT):
                received = [message async for message in stream]
            assert received == [f"m{i}".encode() for i in range(5)]
        finally:
            await node.close()

    rt.run(body)


@pytest.mark.parametrize("when", ["waiting", "unread-data", "reads-later"])
def test_a_peer_reset_is_never_a_clean_end(rt: Runtime, peer: Peer, when: str) -> None:
    """receive() and iteration raise StreamReset with the peer's code, never a clean end."""

    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            count = 0 if when == "waiting" else 3
            await stream.send(f"send-reset {count} 42".encode())
            if when == "reads-later":
                await anyio.sleep(0.5)  # the reset has long arrived
            received: list[bytes] = []
            with anyio.fail_after(TIMEOUT), pytest.raises(StreamReset) as reset:
                async for message in stream:
                    received.append(message)
            assert reset.value.error_code == 42
            assert received == [f"m{i}".encode() for i in range(len(received))]
            if rt.is_anyio:
                assert isinstance(reset.value, anyio.BrokenResourceError)
            with pytest.raises(StreamReset):  # and it stays reset
                await stream.receive()
        finally:
            await node.close()

    rt.run(body)


def test_our_reset_reaches_the_peer_with_its_code(rt: Runtime, peer: Peer) -> None:
    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            await stream.send(b"expect-reset")
            with anyio.fail_after(TIMEOUT):
                assert await stream.receive() == b"ready"
            await stream.send(b"some data")
            await stream.reset(42)
            assert await _next_report(session) == b"saw-reset 42"
            with pytest.raises(StreamReset) as own:  # the resetting side reads a reset too
                await stream.receive()
            assert own.value.error_code == 42
        finally:
            await node.close()

    rt.run(body)


def test_flush_returns_once_acknowledged(rt: Runtime, peer: Peer) -> None:
    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            await stream.send(b"drain")
            payload = bytes(range(256)) * 4096  # 1 MiB, read and dropped by the peer
            for _ in range(4):
                await stream.send(payload)
            with anyio.fail_after(TIMEOUT):
                await stream.flush()
            assert session.get_stats().bytes_sent >= 4 * len(payload)
        finally:
            await node.close()

    rt.run(body)


def test_the_peers_session_close_carries_code_and_reason(rt: Runtime, peer: Peer) -> None:
    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            await stream.send(b"close-session 7 going away")
            with anyio.fail_after(TIMEOUT), pytest.raises(SessionClosed) as closed:
                await stream.receive()
            assert (closed.value.error_code, closed.value.reason) == (7, "going away")
            assert closed.value.by_peer
            assert session.is_closed
            with pytest.raises(SessionClosed):
                await session.accept_stream()
        finally:
            await node.close()

    rt.run(body)


def test_a_vanished_peer_is_detected_by_keep_alive(rt: Runtime, peer: Peer) -> None:
    """The peer process dies without a word: keep_alive_timeout later every waiter learns it."""

    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer, keep_alive_interval=0.2, keep_alive_timeout=1.0)
        try:
            stream = session.open_stream()
            await stream.send(b"exit")
            started = time.monotonic()
            lost_types = (KeepAliveTimeout, SessionClosed)
            with anyio.fail_after(TIMEOUT), pytest.raises(lost_types) as lost:
                await stream.receive()
            assert 0.5 < time.monotonic() - started < 5.0
            if rt.is_anyio:
                assert isinstance(lost.value, anyio.BrokenResourceError)
            assert session.is_closed
        finally:
            await node.close()

    rt.run(body)
    peer.process.wait(timeout=5)


def test_datagrams_round_trip(rt: Runtime, peer: Peer) -> None:
    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            await stream.send(b"datagrams")
            with anyio.fail_after(TIMEOUT):
                assert await stream.receive() == b"ready"
                got = set()
                for attempt in range(50):  # unreliable by contract: retry until echoed
                    await session.send_datagram(b"dgram %d" % attempt)
                    with anyio.move_on_after(0.1):
                        got.add(await session.receive_datagram())
                    if got:
                        break
            assert got and all(item.startswith(b"dgram ") for item in got)
        finally:
            await node.close()

    rt.run(body)


def test_streams_the_peer_opens_are_accepted(rt: Runtime, peer: Peer) -> None:
    async def body(rt: Runtime) -> None:
        node, session = await _connect(rt, peer)
        try:
            stream = session.open_stream()
            await stream.send(b"open-stream")
            with anyio.fail_after(TIMEOUT):
                async for incoming in session.streams():
                    assert await incoming.receive() == b"hello from the peer"
                    break
        finally:
            await node.close()

    rt.run(body)
