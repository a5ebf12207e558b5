"""Path-MTU discovery on real sockets: two nodes with default settings talk through an impaired
link (stt_runtime.impair) that drops every datagram larger than a 1,500-byte Ethernet path
carries, as a path with don't-fragment set or a middlebox dropping IP fragments would. Before
discovery, a default node's 16 KiB datagrams crossed such a path never: the transfer stalled."""

from __future__ import annotations

import asyncio
import hashlib
import os

from stt_asyncio import STTNode
from stt_runtime.impair import ImpairedLink, impairment

MiB = 1024 * 1024
LOCAL = ("127.0.0.1", 0)


async def _transfer(size: int, mtu: int, **settings: object) -> tuple[bytes, bytes, int, str]:
    data = os.urandom(size)
    profile = impairment(rate="200mbit", delay="5ms", queue="1bdp", mtu=mtu)
    async with STTNode(host="127.0.0.1", **settings) as server, \
            STTNode(host="127.0.0.1", **settings) as client:
        with ImpairedLink(LOCAL, server.address, profile, seed=1) as link:
            async def serve() -> bytes:
                session = await server.accept()
                stream = await session.accept_stream()
                return b"".join([message async for message in stream])

            task = asyncio.create_task(serve())
            session = await client.connect(link.address, server.node_id, timeout=10)
            stream = session.open_stream()
            for offset in range(0, size, 256 * 1024):
                await stream.send(data[offset:offset + 256 * 1024])
            await stream.close()
            received = await asyncio.wait_for(task, 60)
            stats = session.get_stats()
            return data, received, stats.path_mtu, stats.path_mtu_state


def test_default_settings_cross_a_path_that_drops_datagrams_over_1472_bytes() -> None:
    data, received, path_mtu, _ = asyncio.run(_transfer(8 * MiB, 1472))
    assert hashlib.sha256(received).digest() == hashlib.sha256(data).digest()
    assert path_mtu == 1472  # the probe for 1,472 (a 1,500-byte MTU over IPv4) went through


def test_loopback_discovery_reaches_the_frame_size_at_once() -> None:
    """Once a session has more to send than a 1,200-byte packet holds (before that it does
    not probe: tests/test_pmtu.py), loopback carries the frame size after one round trip."""
    async def main() -> tuple[int, str]:
        async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
            session = await client.connect(server.address, server.node_id)
            await server.accept()
            await asyncio.sleep(0.1)
            assert session.get_stats().path_mtu == 1200  # small packets only so far
            await session.open_stream().send(bytes(MiB))
            for _ in range(100):  # one round trip of probes
                stats = session.get_stats()
                if stats.path_mtu_state == "complete":
                    break
                await asyncio.sleep(0.01)
            return stats.path_mtu, stats.path_mtu_state

    assert asyncio.run(main()) == (16384, "complete")


def test_a_nodes_socket_never_fragments() -> None:
    """Don't-fragment is set (Linux: IP_MTU_DISCOVER = IP_PMTUDISC_PROBE), so a datagram too
    large for the path is lost or refused whole, never cut into IP fragments."""
    import socket
    import sys

    import pytest

    if not sys.platform.startswith("linux"):
        pytest.skip("the option is Linux's")

    async def main() -> list[int]:
        async with STTNode(host="127.0.0.1") as v4, STTNode() as dual:
            values = []
            for node in (v4, dual):
                sock = socket.socket(fileno=os.dup(node._sock.fileno()))
                try:
                    values.append(sock.getsockopt(socket.IPPROTO_IP, 10))
                    if sock.family == socket.AF_INET6:
                        values.append(sock.getsockopt(socket.IPPROTO_IPV6, 23))
                finally:
                    sock.close()
            return values

    assert set(asyncio.run(main())) == {3}
