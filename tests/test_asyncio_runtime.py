"""stt_asyncio over real loopback UDP."""

from __future__ import annotations

import asyncio
import gc
import hashlib
import os
import warnings

import pytest

from stt_asyncio import (
    AuthenticationError,
    HandshakeError,
    HandshakeTimeout,
    KeepAliveTimeout,
    SessionClosed,
    StreamClosed,
    STTNode,
    UsageError,
)
from stt_bench.workloads.on_asyncio import echo_stream

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")


def run(coro: object) -> object:
    return asyncio.run(asyncio.wait_for(coro, 60))  # type: ignore[arg-type]


def test_bulk_transfer_and_concurrent_streams_arrive_intact() -> None:
    async def main() -> None:
        async with STTNode() as server, STTNode() as client:
            async def serve() -> dict[int, str]:
                session = await server.accept()
                digests: dict[int, str] = {}

                async def drain(stream: object) -> None:
                    h = hashlib.sha256()
                    async for message in stream:  # type: ignore[attr-defined]
                        h.update(message)
                    digests[stream.stream_id] = h.hexdigest()  # type: ignore[attr-defined]

                async with asyncio.TaskGroup() as group:
                    for _ in range(9):
                        group.create_task(drain(await session.accept_stream()))
                return digests

            server_task = asyncio.create_task(serve())
            session = await client.connect(server.address, server.node_id)
            expected: dict[int, str] = {}

            async def push(count: int, size: int) -> None:
                stream = session.open_stream()
                h = hashlib.sha256()
                for _ in range(count):
                    data = os.urandom(size)
                    h.update(data)
                    await stream.send(data)
                await stream.close()
                await stream.flush()
                expected[stream.stream_id] = h.hexdigest()

            async with asyncio.TaskGroup() as group:
                group.create_task(push(16, 1 << 20))  # 16 MiB in 1 MiB messages
                for _ in range(8):
                    group.create_task(push(64, 8192))
            assert await server_task == expected

    run(main())


def test_ping_pong_on_a_no_delay_stream() -> None:
    async def main() -> None:
        async with STTNode(no_delay=True) as server, STTNode(no_delay=True) as client:
            task, session, stream = await echo_stream(server, client)
            for i in range(200):
                await stream.send(b"ping %d" % i)
                assert await stream.receive() == b"ping %d" % i
            assert session.get_stats().rtt_ms < 50
            task.cancel()

    run(main())


def test_uvloop_clock_resolves_sub_millisecond_round_trips() -> None:
    """uvloop's loop.time() has millisecond steps; the runtime's clock must not, or every
    loopback RTT sample is 0 or 1 ms."""
    uvloop = pytest.importorskip("uvloop")

    async def main() -> None:
        async with STTNode(no_delay=True) as server, STTNode(no_delay=True) as client:
            task, session, stream = await echo_stream(server, client)
            for i in range(100):
                await stream.send(b"%d" % i)
                await stream.receive()
            assert client.get_stats()["loop"].startswith("uvloop")
            rtt_min = session.get_stats().rtt_min_ms
            assert 0 < rtt_min < 0.999, rtt_min
            task.cancel()

    uvloop.run(main())


def test_connect_to_nobody_times_out() -> None:
    async def main() -> None:
        async with STTNode(handshake_timeout=1.0) as client:
            loop = asyncio.get_running_loop()
            start = loop.time()
            with pytest.raises(HandshakeTimeout):
                await client.connect(("127.0.0.1", 9), os.urandom(32))
            assert 0.9 <= loop.time() - start <= 2.0
            with pytest.raises(HandshakeTimeout):
                await client.connect(("127.0.0.1", 9), os.urandom(32), timeout=0.2)

    run(main())


def test_accept_and_connect_before_start_raise_instead_of_waiting_forever() -> None:
    async def main() -> None:
        node = STTNode()
        with pytest.raises(UsageError, match="not started"):
            await asyncio.wait_for(node.accept(), 2)
        with pytest.raises(UsageError, match="not running"):
            await node.connect(("127.0.0.1", 9), os.urandom(32))

    run(main())


def test_wrong_peer_id_and_psk_mismatch_fail_clearly() -> None:
    async def main() -> None:
        async with STTNode() as server, STTNode() as client:
            with pytest.raises(AuthenticationError, match="expected"):
                await client.connect(server.address, os.urandom(32))
        async with STTNode(psk=b"a" * 32) as server, STTNode(psk=b"b" * 32) as client:
            with pytest.raises(HandshakeError, match="psk"):
                await client.connect(server.address, server.node_id)

    run(main())


def test_close_is_seen_by_the_peer_with_code_and_reason() -> None:
    async def main() -> None:
        async with STTNode() as server, STTNode() as client:
            session = await client.connect(server.address, server.node_id)
            peer = await server.accept()
            stream = session.open_stream()
            await stream.send(b"x")
            incoming = await peer.accept_stream()
            assert await incoming.receive() == b"x"
            await session.close(9, "bye")
            with pytest.raises(SessionClosed) as info:
                await incoming.receive()
            assert (info.value.error_code, info.value.reason, info.value.by_peer) == (9, "bye",
                                                                                       True)

    run(main())


def test_leaving_the_node_closes_peers_gracefully_and_leaks_nothing() -> None:
    async def main() -> None:
        async with STTNode() as server:
            client = STTNode()
            async with client:
                await client.connect(server.address, server.node_id)
                peer = await server.accept()
                stream = peer.open_stream()
            with pytest.raises(SessionClosed) as info:
                await stream.send(b"late")
                await asyncio.sleep(0.2)
                await stream.send(b"late")
            assert info.value.by_peer
            assert client._sock is not None and client._sock.fileno() == -1
        assert len(asyncio.all_tasks()) == 1  # only main()

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResourceWarning)
        asyncio.run(main())  # no wait_for wrapper: main() must be the only task left
        gc.collect()


def test_cancelled_receive_leaves_the_stream_usable() -> None:
    async def main() -> None:
        async with STTNode() as server, STTNode() as client:
            session = await client.connect(server.address, server.node_id)
            peer = await server.accept()
            stream = session.open_stream()
            await stream.send(b"hello")
            incoming = await peer.accept_stream()
            assert await incoming.receive() == b"hello"
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(incoming.receive(), 0.1)
            await stream.send(b"again")
            assert await incoming.receive() == b"again"
            await stream.close()
            with pytest.raises(StreamClosed):
                await incoming.receive()

    run(main())


def test_keep_alive_timeout_when_the_peer_vanishes() -> None:
    async def main() -> None:
        async with STTNode(keep_alive_interval=0.2, keep_alive_timeout=1.0) as client:
            server = STTNode(keep_alive_interval=0.2, keep_alive_timeout=1.0)
            await server.start()
            session = await client.connect(server.address, server.node_id)
            # The server process "dies": its socket goes away without a word.
            loop = asyncio.get_running_loop()
            assert server._sock is not None
            loop.remove_reader(server._sock.fileno())
            server._sock.close()
            if server._timer:
                server._timer.cancel()
            start = loop.time()
            stream = session.open_stream()
            with pytest.raises(KeepAliveTimeout):
                while True:
                    await stream.send(b"anyone?")
                    await asyncio.sleep(0.05)
            assert loop.time() - start <= 1.0 + 0.3

    run(main())


def test_presets_and_invalid_settings() -> None:
    for make in (STTNode.low_latency, STTNode.high_throughput, STTNode.balanced):
        node = make(keep_alive_interval=5.0, keep_alive_timeout=15.0)
        assert node.config.session.keep_alive_timeout == 15.0
    assert STTNode.low_latency().config.session.no_delay
    with pytest.raises(ValueError, match="max_frame_size"):
        STTNode(max_frame_size=10)
    with pytest.raises(ValueError, match="congestion_control"):
        STTNode(congestion_control="vegas")


def test_closing_the_node_delivers_data_already_sent_first() -> None:
    async def main() -> None:
        async with STTNode() as server:
            received: list[bytes] = []

            async def read() -> None:
                peer = await server.accept()
                incoming = await peer.accept_stream()
                with pytest.raises(SessionClosed):
                    while True:
                        received.append(await incoming.receive())

            reader = asyncio.create_task(read())
            async with STTNode() as client:
                session = await client.connect(server.address, server.node_id)
                stream = session.open_stream()
                for i in range(50):
                    await stream.send(bytes([i]) * 100_000)
                # leaving the block at once: the queued data must arrive before the CLOSE
            await asyncio.wait_for(reader, 10)
            assert [m[0] for m in received] == list(range(50))

    run(main())


def test_a_no_delay_message_leaves_before_send_returns() -> None:
    from stt_asyncio import STTNode as Node

    async def main() -> None:
        async with Node() as server, Node() as client:
            session = await client.connect(server.address, server.node_id)
            eager, lazy = session.open_stream(no_delay=True), session.open_stream()
            before = client.get_stats()["datagrams_out"]
            await lazy.send(b"later")  # sent on the next loop pass
            assert client.get_stats()["datagrams_out"] == before
            await eager.send(b"now")  # polled at once: on the wire already
            assert client.get_stats()["datagrams_out"] > before

    asyncio.run(main())


def test_a_round_trip_polls_the_endpoint_twice_per_node(monkeypatch: pytest.MonkeyPatch) -> None:
    """Echo on a no_delay stream: each node polls once when the datagram arrives and once
    when it answers. A receive() asks for a poll only when a window update is owed, and a
    deferred poll that a later one made redundant is skipped."""
    from stt_asyncio.node import STTNode as Node

    from .conftest import CallCounter, polls_per_round_trip

    async def main() -> None:
        async with Node(no_delay=True) as server, Node(no_delay=True) as client:
            task, _, stream = await echo_stream(server, client)
            polls = CallCounter(monkeypatch, Node, "_service")
            assert await polls_per_round_trip(stream, polls) <= 4.1  # 2 a node; was 6
            task.cancel()

    asyncio.run(main())
