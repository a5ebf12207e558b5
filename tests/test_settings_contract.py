"""Settings as the seed types them (issue 22): ``max_frame_size`` 1,200..65,536 with one meaning
at node and stream level, bad values named in a ValueError, the ``host=None`` default, and the
dual-stack socket under segmentation offload and the websocket transport."""

from __future__ import annotations

import os
import socket
import time
from collections import deque
from typing import Any

import anyio
import pytest

import stt_anyio
import stt_asyncio
from stt_proto import EndpointConfig, SettingsError
from stt_proto.config import MAX_DATAGRAM, frame_size
from stt_runtime.settings import NodeSettings, SocketSettings
from stt_runtime.udp_io import UdpIO

from .test_node_lifecycle import HAS_IPV6, RUNTIMES, echo_once, run_in

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
BAD_FRAME_SIZES = [0, 1199, 65537, "x", True, 16384.0, None]


# -- max_frame_size (22.5) ------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "effective"),
                         [(1200, 1200), (16384, 16384), (65507, 65507), (65536, MAX_DATAGRAM)])
def test_max_frame_size_accepts_1200_to_65536_and_65536_means_the_largest_udp(
        value: int, effective: int) -> None:
    assert EndpointConfig.build(max_frame_size=value).session.max_frame_size == effective
    assert frame_size(value) == effective
    for node_class in (stt_asyncio.STTNode, stt_anyio.STTNode):
        assert node_class(max_frame_size=value).config.session.max_frame_size == effective


@pytest.mark.parametrize("value", BAD_FRAME_SIZES[:-1])
def test_bad_node_frame_sizes_raise_a_value_error_naming_the_setting(value: object) -> None:
    for node_class in (stt_asyncio.STTNode, stt_anyio.STTNode):
        with pytest.raises(SettingsError, match="max_frame_size") as info:
            node_class(max_frame_size=value)
        assert isinstance(info.value, ValueError)
        assert "1200..65536" in str(info.value)


def test_high_throughput_preset_is_the_largest_datagram() -> None:
    for node_class in (stt_asyncio.STTNode, stt_anyio.STTNode):
        assert node_class.high_throughput().config.session.max_frame_size == MAX_DATAGRAM


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_open_stream_takes_the_seeds_65536_and_carries_64_kib_messages(runtime: str) -> None:
    """``open_stream(max_frame_size=65536)`` raised UsageError; bad per-stream values raised
    UsageError or a bare TypeError instead of a ValueError naming the setting."""

    async def main(node_class: Any) -> None:
        with anyio.fail_after(10):
            async with node_class(max_frame_size=65536) as server, \
                    node_class(max_frame_size=65536) as client:
                async with anyio.create_task_group() as group:
                    group.start_soon(echo_once, server)
                    session = await client.connect(server.address, server.node_id)
                    for value in BAD_FRAME_SIZES[:-1]:
                        with pytest.raises(SettingsError, match="max_frame_size"):
                            session.open_stream(max_frame_size=value)
                    stream = session.open_stream(max_frame_size=65536)
                    # path-MTU discovery starts with the first message larger than a
                    # 1,200-byte packet and reaches the frame size one round trip later
                    # (before that, packets are 1,200 bytes: docs/protocol.md)
                    message = os.urandom(64 * 1024)
                    await stream.send(message)
                    assert await stream.receive() == message  # echoed
                    while session.get_stats().path_mtu_state != "complete":
                        await anyio.sleep(0.005)
                    assert session.get_stats().path_mtu > 65_000  # ::1 carries 65,488 bytes
                    before = session.get_stats().packets_sent
                    await stream.send(message)
                    await stream.flush()  # acknowledged
                stats = session.get_stats()
                assert stats.packets_sent - before < 8  # 64 KiB in near-65,507-byte datagrams

    run_in(runtime, main)


# -- host (22.6) ----------------------------------------------------------------------------------

def test_host_defaults_to_every_interface_and_rejects_non_strings() -> None:
    assert SocketSettings().host is None
    assert NodeSettings.build(host="::1").socket.host == "::1"
    for value in ("", 127, b"::"):
        with pytest.raises(SettingsError, match="host"):
            NodeSettings.build(host=value)


@pytest.mark.skipif(not HAS_IPV6, reason="no IPv6 on this machine")
@pytest.mark.parametrize("offload", [True, False])
def test_a_dual_stack_socket_sends_and_drains_ipv4_runs_with_plain_addresses(
        offload: bool) -> None:
    """GSO runs to an IPv4 peer leave a dual-stack socket (mapped addresses) and GRO reads come
    back with the plain IPv4 address."""
    from stt_runtime._address import open_udp_socket

    sender, host = open_udp_socket(None)
    receiver, _ = open_udp_socket(None)
    assert host == "::"
    try:
        sender.bind(("::", 0))
        receiver.bind(("::", 0))
        receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        tx, rx = UdpIO(sender, offload), UdpIO(receiver, offload)
        assert tx.dual_stack and rx.dual_stack
        target = ("127.0.0.1", receiver.getsockname()[1])
        out: deque[tuple[bytes | bytearray, tuple[str, int]]] = deque(
            (bytes(10) + bytes([i]) * 1190, target) for i in range(20))  # one session
        assert tx.send(out) and tx.send_errors == 0
        got: list[tuple[bytes, tuple[str, int]]] = []
        deadline = time.monotonic() + 2
        while len(got) < 20 and time.monotonic() < deadline:
            rx.drain(lambda view, addr, now: got.append((bytes(view), addr)), 0.0)
        assert [data for data, _ in got] == [bytes(10) + bytes([i]) * 1190 for i in range(20)]
        assert {addr for _, addr in got} == {("127.0.0.1", sender.getsockname()[1])}
        if offload and tx.gso:
            assert tx.gso_sends >= 1
            if rx.gro:  # the kernel hands the run over whole, with the segment size
                assert rx.gro_reads >= 1
    finally:
        sender.close()
        receiver.close()


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
@pytest.mark.parametrize("loopback", ["127.0.0.1", "::1"])
def test_websocket_default_host_listens_on_ipv4_and_ipv6(runtime: str, loopback: str) -> None:
    if loopback == "::1" and not HAS_IPV6:
        pytest.skip("no IPv6 on this machine")

    async def main(node_class: Any) -> None:
        with anyio.fail_after(10):
            accepted: list[Any] = []
            async with node_class(transport="websocket") as server, \
                    node_class(transport="websocket") as client:
                port = server.address[1]
                async with anyio.create_task_group() as group:
                    group.start_soon(echo_once, server, accepted)
                    session = await client.connect((loopback, port), server.node_id)
                    stream = session.open_stream()
                    await stream.send(b"over tcp")
                    assert await stream.receive() == b"over tcp"
                inbound = accepted[0]
                assert inbound.remote_address[0] == loopback  # never "::ffff:127.0.0.1"

    run_in(runtime, main)
