"""docs/api.md's promises about nodes and sessions, through the public API, in every runtime."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

import stt_proto
from stt_proto import (
    AuthenticationError,
    HandshakeTimeout,
    Identity,
    SettingsError,
    StreamLimitError,
    UsageError,
)

from .runtimes import Runtime

TIMEOUT = 15


def test_defaults_and_identity(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        identity = Identity.generate()
        async with rt.node(identity) as node:
            assert node.identity is identity
            assert node.node_id == identity.node_id and len(node.node_id) == 32
            host, port = node.address
            assert host in ("::", "0.0.0.0") and port > 0  # dual-stack unspecified by default
        assert len(rt.node().node_id) == 32  # None -> a fresh in-memory identity

    rt.run(body)


@pytest.mark.parametrize("setting, value", [
    ("max_frame_size", 1199), ("max_frame_size", 65537), ("max_frame_size", "big"),
    ("recv_buffer_size", -1), ("max_concurrent_streams", 0), ("max_sessions", 0),
    ("keep_alive_interval", -1.0), ("handshake_timeout", 0), ("congestion_control", "vegas"),
    ("transport", "carrier-pigeon"),
])
def test_invalid_settings_raise_value_error_naming_the_setting(
        rt: Runtime, setting: str, value: Any) -> None:
    with pytest.raises(ValueError, match=setting) as error:
        rt.node(**{setting: value})
    assert isinstance(error.value, SettingsError)


def test_the_seeds_frame_sizes_are_accepted_as_typed(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1", max_frame_size=65536) as server, \
                rt.node(host="127.0.0.1") as client:
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(max_frame_size=65536)
            payload = bytes(range(256)) * 1024
            await stream.send(payload)
            peer = await server.accept()
            incoming = await peer.accept_stream()
            with anyio.fail_after(TIMEOUT):
                assert await incoming.receive() == payload
            for size in (1200, 1400, 4096, 65536):
                session.open_stream(max_frame_size=size)
            for bad in (0, 1199, 65537, "x", True, 1400.0):
                with pytest.raises(ValueError, match="max_frame_size"):
                    session.open_stream(max_frame_size=bad)
            for name, bad in (("no_delay", "yes"), ("priority", "high"), ("priority", 2**40)):
                with pytest.raises(ValueError, match=name):  # never a bare TypeError
                    session.open_stream(**{name: bad})

    rt.run(body)


@pytest.mark.parametrize("preset, expected", [
    ("low_latency", {"max_frame_size": 4096, "no_delay": True, "recv_buffer_size": 524288}),
    ("high_throughput", {"max_frame_size": 65536, "recv_buffer_size": 8388608,
                         "max_concurrent_streams": 64}),
    ("balanced", {"max_frame_size": 16384, "recv_buffer_size": 2097152,
                  "max_concurrent_streams": 256}),
])
def test_presets_have_the_seeds_values(rt: Runtime, preset: str, expected: dict[str, Any]) -> None:
    settings = getattr(rt.package.STTNode, preset)().settings.keywords()
    for name, value in expected.items():
        if name == "max_frame_size" and value == 65536:  # the largest datagram UDP allows
            assert settings["max_frame_size"] in (65507, 65536)
        else:
            assert settings[name] == value, name
    tuned = getattr(rt.package.STTNode, preset)(max_sessions=5)  # overrides apply
    assert tuned.config.max_sessions == 5


def test_start_and_close_in_any_order_from_any_task(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        first, second = rt.node(host="127.0.0.1"), rt.node(host="127.0.0.1")
        await first.start()
        await second.start()
        await first.close()  # start order, not LIFO
        await second.close()
        third = rt.node(host="127.0.0.1")

        async def start_it() -> None:
            await third.start()

        async with anyio.create_task_group() as group:
            group.start_soon(start_it)
        async with anyio.create_task_group() as group:
            group.start_soon(third.close)  # closed from another task than the starter
        await first.close()  # closing twice is harmless

    rt.run(body)


def test_accept_before_start_is_a_usage_error(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        with pytest.raises(UsageError):
            await rt.node().accept()

    rt.run(body)


def test_connect_errors_are_clear(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1") as server, rt.node(host="127.0.0.1") as client:
            with pytest.raises(AuthenticationError, match=server.node_id.hex()):
                await client.connect(server.address, bytes(32))
            idle = rt.node(host="127.0.0.1")
            await idle.start()
            address = idle.address
            await idle.close()  # nobody answers there any more
            with anyio.fail_after(TIMEOUT), pytest.raises(HandshakeTimeout):
                await client.connect(address, server.node_id, timeout=0.5)

    rt.run(body)


def test_a_loopback_node_refuses_to_dial_out_at_once(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1") as node:
            with anyio.fail_after(1), pytest.raises(UsageError, match=r"127\.0\.0\.1"):
                await node.connect(("198.51.100.7", 7000), bytes(32))

    rt.run(body)


@pytest.mark.parametrize("family", ["127.0.0.1", "::1"])
def test_default_nodes_reach_each_other_over_ipv4_and_ipv6(rt: Runtime, family: str) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node() as server, rt.node() as client:
            session = await client.connect((family, server.address[1]), server.node_id)
            stream = session.open_stream()
            await stream.send(b"over " + family.encode())
            peer = await server.accept()
            with anyio.fail_after(TIMEOUT):
                assert await (await peer.accept_stream()).receive() == b"over " + family.encode()
            assert session.remote_address[0] == family

    rt.run(body)


def test_sessions_streams_and_their_attributes(rt: Runtime) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1", max_concurrent_streams=4) as server, \
                rt.node(host="127.0.0.1", max_concurrent_streams=4) as client:
            first = await client.connect(server.address, server.node_id)
            second = await client.connect(server.address, server.node_id)
            assert first.session_id != second.session_id  # every connect is a new session
            accepted = []
            with anyio.fail_after(TIMEOUT):
                async for session in server.sessions():
                    accepted.append(session)
                    if len(accepted) == 2:
                        break
            assert {s.peer_id for s in accepted} == {client.node_id}
            assert first.peer_id == server.node_id
            assert first.remote_address == server.address
            streams = [first.open_stream() for _ in range(4)]
            with pytest.raises(StreamLimitError):
                first.open_stream()
            assert len({s.stream_id for s in streams}) == 4
            await streams[0].send(b"x")
            stats = first.get_stats()
            for name in ("bytes_sent", "bytes_received", "packets_sent", "packets_received",
                         "packets_lost", "rtt_ms", "rtt_min_ms", "loss_rate", "throughput_mbps",
                         "cwnd_bytes", "streams_open"):
                assert hasattr(stats, name), name
            assert 0.0 <= stats.loss_rate <= 1.0
            node_stats = client.get_stats()
            assert isinstance(node_stats, dict)
            await first.close(5, "done")
            await second.close(5, "done")
            assert first.is_closed and second.is_closed
            for session in accepted:
                with anyio.fail_after(TIMEOUT), pytest.raises(stt_proto.SessionClosed) as closed:
                    await session.accept_stream()
                assert (closed.value.error_code, closed.value.reason) == (5, "done")
                assert closed.value.by_peer

    rt.run(body)


def test_the_library_logs_under_stt_and_never_prints(
        rt: Runtime, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    async def body(rt: Runtime) -> None:
        async with rt.node(host="127.0.0.1") as server, rt.node(host="127.0.0.1") as client:
            with pytest.raises(AuthenticationError):
                await client.connect(server.address, bytes(32))
            session = await client.connect(server.address, server.node_id)
            await session.close()

    with caplog.at_level(logging.DEBUG, logger="stt"):
        rt.run(body)
    ours = ("stt_proto", "stt_asyncio", "stt_anyio")
    from_library = [r for r in caplog.records if any(f"/{p}/" in r.pathname for p in ours)]
    assert all(r.name == "stt" or r.name.startswith("stt.") for r in from_library), \
        {r.name for r in from_library}
    out = capsys.readouterr()
    assert out.out == "" and out.err == ""
