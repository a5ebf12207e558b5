"""The websocket transport against hostile TCP peers, in both runtimes (issue 21.7).

Real loopback sockets against ``STTNode(transport="websocket", host="127.0.0.1")``; the attacker
is a raw socket. Each test runs on asyncio (``stt_asyncio``) and on trio (``stt_anyio``): the two
runtimes share ``stt_runtime.websocket``'s limits and must behave alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, CloseConnection, Ping, Pong, Request

import stt_anyio
import stt_asyncio
from stt_proto import ConnectionRefused
from stt_proto.websocket import MAX_MESSAGE, WsError, WsFramer
from stt_runtime import websocket as _ws

RUNTIMES = ["asyncio", "trio"]
PINGS_ALONE = 4000  # PINGs sent one by one: ~500 KB of PONGs, past a 64 KiB send buffer
FLOOD = 16 << 20  # bytes of PINGs: ~16 MiB of PONGs owed to a peer that never reads
# Output one connection may hold: the high-water mark, one datagram's message and one PONG.
BOUND = _ws.WRITE_HIGH_WATER + MAX_MESSAGE + 256
TCP_ESTABLISHED, TCP_CLOSE = 1, 7

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="reads the TCP state with TCP_INFO")

Body = Callable[[Any], Awaitable[None]]


def _run(runtime: str, body: Body, limit: float = 60) -> None:
    """Run ``body(STTNode class)`` on asyncio with stt_asyncio or on trio with stt_anyio."""
    async def main() -> None:
        with anyio.fail_after(limit):
            await body(stt_asyncio.STTNode if runtime == "asyncio" else stt_anyio.STTNode)

    if runtime == "asyncio":
        asyncio.run(main())
    else:
        anyio.run(main, backend="trio")


def _node(node_class: Any, **settings: Any) -> Any:
    return node_class(transport="websocket", host="127.0.0.1", **settings)


# A raw flooder never completes an STT handshake: on a slow machine a long flood would meet the
# pre-handshake timeout (handshake_timeout) and be reset, which is not what these tests check.
PATIENT = {"handshake_timeout": 120.0}


async def _round_trip(session: Any, peer: Any, payload: bytes = b"still served") -> None:
    """One stream message each way between ``session`` and the node's side of it, ``peer``."""
    stream = session.open_stream()
    await stream.send(payload)
    accepted = await peer.accept_stream()
    assert await accepted.receive() == payload
    await accepted.send(payload[::-1])
    assert await stream.receive() == payload[::-1]


def _upgraded(port: int, rcvbuf: int | None = None) -> tuple[socket.socket, WSConnection]:
    """A raw client socket that has completed the WebSocket upgrade."""
    sock = socket.socket()
    if rcvbuf is not None:  # small: the kernel absorbs little of what the node queues
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", port))
    ws = WSConnection(ConnectionType.CLIENT)
    sock.sendall(ws.send(Request(host="x", target="/stt")))
    while True:
        ws.receive_data(sock.recv(65536))
        if any(isinstance(event, AcceptConnection) for event in ws.events()):
            return sock, ws


def _pings(ws: WSConnection, size: int) -> bytes:
    """``size`` bytes of PING frames with the largest control payload (one PONG each)."""
    frame = ws.send(Ping(payload=b"p" * 125))
    return frame * (size // len(frame))


def _closed_by_peer(sock: socket.socket, within: float) -> bool:
    """Whether the node closes ``sock`` within ``within`` seconds (EOF or reset)."""
    sock.settimeout(within)
    try:
        while sock.recv(65536):
            pass
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False
    return True


def _tcp_state(sock: socket.socket) -> int:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)[0]


def _wait_state(sock: socket.socket, within: float) -> int:
    """The client socket's TCP state once it leaves ESTABLISHED, or ESTABLISHED at the end."""
    deadline = time.monotonic() + within
    while (state := _tcp_state(sock)) == TCP_ESTABLISHED and time.monotonic() < deadline:
        time.sleep(0.02)
    return state


# -- 1. bounded output ----------------------------------------------------------------------------


def _read_to_pong(sock: socket.socket, ws: WSConnection, payload: bytes) -> bool:
    """Read (at last) until the PONG for the PING carrying ``payload`` arrives."""
    sock.settimeout(30)
    while data := sock.recv(65536):
        ws.receive_data(data)
        if any(isinstance(e, Pong) and bytes(e.payload) == payload for e in ws.events()):
            return True
    return False


def _send_all(sock: socket.socket, data: bytes) -> None:
    """``sock.sendall`` with no deadline: a socket timeout bounds a whole ``sendall`` (since
    Python 3.5), and a flood into a peer that does not read may stall for seconds in TCP
    retransmission back-off (the flooder's own full receive buffer drops segments, so
    its kernel retransmits with doubling timeouts); cut short, the flood would never carry
    its last PING. ``_stop`` (shutdown) ends it early if the test fails."""
    sock.settimeout(None)
    with contextlib.suppress(OSError):
        sock.sendall(data)


def _stop(sock: socket.socket) -> None:
    """Shut ``sock`` down (a ``sendall`` blocked in another thread returns), then close it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_ping_flood_that_never_reads_costs_a_bounded_amount(runtime: str) -> None:
    """The node's output for the flooder stays under the bound until it has read every PING
    (the PONG for the last one arrives once the flooder reads); a real session goes on."""
    async def body(node_class: Any) -> None:
        async with _node(node_class, **PATIENT) as node, _node(node_class) as client:
            session = await client.connect(node.address, node.node_id)
            peer = await node.accept()
            sock, ws = await anyio.to_thread.run_sync(_upgraded, node.address[1], 4096)
            flood = _pings(ws, FLOOD) + ws.send(Ping(payload=b"last"))
            flooding = threading.Thread(target=_send_all, args=(sock, flood))
            peak, answered = 0, []

            async def read_when_flooded() -> None:
                while flooding.is_alive():
                    await anyio.sleep(0.05)
                answered.append(await anyio.to_thread.run_sync(_read_to_pong, sock, ws,
                                                               b"last"))

            try:
                flooding.start()
                async with anyio.create_task_group() as group:
                    group.start_soon(read_when_flooded)
                    await anyio.sleep(0.2)
                    await _round_trip(session, peer)  # mid-flood: still served
                    while not answered:
                        peak = max(peak, node._ws.max_buffered)
                        await anyio.sleep(0.005)
                await _round_trip(session, peer, b"and after")
            finally:
                _stop(sock)
                await anyio.to_thread.run_sync(flooding.join)
            assert answered == [True]
            assert peak <= BOUND, f"{peak} bytes queued for a peer that never reads"

    _run(runtime, body, limit=120)  # room for the flooder's TCP back-off (see _send_all)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_pings_one_read_at_a_time_are_answered_within_the_bound(
        runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """PINGs that each arrive alone (one PONG per read) fill the node's small send buffer
    and pass the (patched) high-water mark: the PONGs are then held, one for the latest,
    and the held one leaves once the peer reads again."""
    monkeypatch.setattr(_ws, "WRITE_HIGH_WATER", 2048)
    monkeypatch.setattr(_ws, "WRITE_LOW_WATER", 512)

    async def body(node_class: Any) -> None:
        async with node_class(transport="websocket", host="127.0.0.1",
                              send_buffer_size=65536, **PATIENT) as node:
            sock, ws = await anyio.to_thread.run_sync(_upgraded, node.address[1], 4096)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ping, peak = ws.send(Ping(payload=b"p" * 125)), 0

            def trickle() -> None:
                for _ in range(PINGS_ALONE):
                    sock.sendall(ping)
                    time.sleep(0.0002)
                sock.sendall(ws.send(Ping(payload=b"last")))

            with sock:
                trickling = threading.Thread(target=trickle)
                trickling.start()
                while trickling.is_alive():
                    peak = max(peak, node._ws.max_buffered)
                    await anyio.sleep(0.002)
                await anyio.sleep(0.2)
                peak = max(peak, node._ws.max_buffered)
                assert await anyio.to_thread.run_sync(_read_to_pong, sock, ws, b"last")
            assert peak <= 2048 + MAX_MESSAGE + 256

    _run(runtime, body)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_graceful_close_counts_no_protocol_error(runtime: str) -> None:
    """The peer's reply to a closing node's close frame ends a graceful close: it is no
    protocol error (trio's reader once fed it to the closed framer, counted an error and
    reset the connection at every close)."""
    async def body(node_class: Any) -> None:
        async with _node(node_class) as node:
            client = _node(node_class)
            async with client:
                session = await client.connect(node.address, node.node_id)
                await _round_trip(session, await node.accept())
            assert client._ws.protocol_errors == 0  # counted while closing
            with anyio.fail_after(3):
                while node._ws.connection_count:  # the node saw the client's close
                    await anyio.sleep(0.01)
            assert node.get_stats()["websocket_protocol_errors"] == 0

    _run(runtime, body)


def test_the_framer_answers_a_batch_of_pings_with_one_pong() -> None:
    raw, framer = _framer_pair()
    framer.feed(b"".join(raw.send(Ping(payload=i.to_bytes(2, "big"))) for i in range(1000)))
    raw.receive_data(framer.take_output())
    pongs = [e for e in raw.events() if isinstance(e, Pong)]
    assert [bytes(p.payload) for p in pongs] == [(999).to_bytes(2, "big")]


def _framer_pair() -> tuple[WSConnection, WsFramer]:
    """A wsproto client and a server-side WsFramer past the upgrade."""
    raw, framer = WSConnection(ConnectionType.CLIENT), WsFramer(False)
    framer.feed(raw.send(Request(host="h", target="/stt")))
    raw.receive_data(framer.take_output())
    assert any(isinstance(e, AcceptConnection) for e in raw.events())
    return raw, framer


def test_a_congested_framer_holds_one_pong_however_many_pings_come() -> None:
    raw, framer = _framer_pair()
    ping = raw.send(Ping(payload=b"p" * 125))
    for _ in range(10_000):
        framer.feed(ping)
        assert framer.take_output(pong=False) == b""  # congested: nothing leaves
        assert framer.buffered <= 127
    raw.receive_data(framer.take_output())
    assert [type(e) for e in raw.events()] == [Pong]


def test_a_held_pong_goes_before_our_close_frame() -> None:
    raw, framer = _framer_pair()
    framer.feed(raw.send(Ping(payload=b"last")))
    assert framer.take_output(pong=False) == b""
    raw.receive_data(framer.close())
    events = list(raw.events())
    assert [type(e) for e in events] == [Pong, CloseConnection]
    assert isinstance(events[0], Pong) and bytes(events[0].payload) == b"last"


def test_no_pong_is_owed_after_the_peers_close() -> None:
    raw, framer = _framer_pair()
    framer.feed(raw.send(Ping(payload=b"late")) + raw.send(CloseConnection(code=1000)))
    assert framer.closed
    raw.receive_data(framer.take_output())
    assert [type(e) for e in raw.events()] == [CloseConnection]
    assert framer.buffered == 0


# -- 2. protocol errors abort ---------------------------------------------------------------------


@linux_only
@pytest.mark.parametrize("flood", [0, 4 << 20], ids=["idle", "after-a-ping-flood"])
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_protocol_error_resets_the_connection_at_once(runtime: str, flood: int) -> None:
    """Garbage after the upgrade: the node resets the connection (the client's socket is
    CLOSE, not ESTABLISHED behind queued output nor CLOSE_WAIT after a FIN)."""
    async def body(node_class: Any) -> None:
        async with _node(node_class) as node, _node(node_class) as client:
            session = await client.connect(node.address, node.node_id)
            peer = await node.accept()

            def attack() -> int:
                sock, ws = _upgraded(node.address[1], rcvbuf=4096)
                with sock:
                    if flood:
                        sock.sendall(_pings(ws, flood))
                    sock.sendall(b"\xff" * 64)  # not WebSocket framing
                    return _wait_state(sock, 3.0)

            state = await anyio.to_thread.run_sync(attack)
            if flood:
                # The client never read and its window is shut: Linux may answer the node's
                # RST with a rate-limited challenge ACK and stay ESTABLISHED until it next
                # sends. What the node controls is that it dropped the connection at once.
                assert state in (TCP_CLOSE, TCP_ESTABLISHED)
                with anyio.fail_after(3):
                    while node._ws.connection_count != 1:  # only the real client's is left
                        await anyio.sleep(0.01)
            else:
                assert state == TCP_CLOSE, f"TCP state {state} after a protocol error"
            assert node.get_stats()["websocket_protocol_errors"] == 1
            await _round_trip(session, peer)

    _run(runtime, body)


# -- 3. connection cap and timeouts ---------------------------------------------------------------


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_connections_that_never_upgrade_are_closed_after_the_upgrade_timeout(
        runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ws, "UPGRADE_TIMEOUT", 1.0)

    async def body(node_class: Any) -> None:
        async with _node(node_class) as node, _node(node_class) as client:
            idle = [socket.create_connection(node.address, timeout=5) for _ in range(20)]
            try:
                # meanwhile a legitimate client connects and is served
                session = await client.connect(node.address, node.node_id)
                await _round_trip(session, await node.accept())
                for sock in idle:
                    closed = await anyio.to_thread.run_sync(_closed_by_peer, sock, 5.0)
                    assert closed, "an idle connection outlived the upgrade timeout"
            finally:
                for sock in idle:
                    sock.close()
            assert node._ws.timeouts == 20
            assert node._ws.connection_count == 1  # the legitimate one

    _run(runtime, body)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_an_upgraded_connection_without_an_stt_handshake_is_closed(runtime: str) -> None:
    # The node's handshake_timeout bounds an upgraded connection's wait for a handshake
    # (HANDSHAKE_IDLE_TIMEOUT is only the default of a transport made without one).
    async def body(node_class: Any) -> None:
        async with node_class(transport="websocket", host="127.0.0.1",
                              handshake_timeout=2.0) as node, _node(node_class) as client:
            session = await client.connect(node.address, node.node_id)
            peer = await node.accept()
            await _round_trip(session, peer)  # a completed handshake: the node sent DATA
            dialled = client._ws._connections[node.address]

            def attack() -> bool:
                sock, ws = _upgraded(node.address[1])
                with sock:  # a junk datagram the endpoint drops, then nothing
                    sock.sendall(ws.send(BytesMessage(data=b"\x01" * 1200)))
                    return _closed_by_peer(sock, 5.0)

            assert await anyio.to_thread.run_sync(attack)
            await anyio.sleep(0.5)
            assert node._ws.timeouts == 1
            assert client._ws._connections[node.address] is dialled  # never closed
            await _round_trip(session, peer)

    _run(runtime, body)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_connections_over_the_cap_are_refused_at_once(
        runtime: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ws, "MAX_CONNECTIONS", 4)

    async def body(node_class: Any) -> None:
        async with _node(node_class) as node, _node(node_class) as client:
            session = await client.connect(node.address, node.node_id)
            peer = await node.accept()
            held = [socket.create_connection(node.address, timeout=5) for _ in range(3)]
            try:
                with socket.create_connection(node.address, timeout=5) as extra:
                    assert await anyio.to_thread.run_sync(_closed_by_peer, extra, 2.0)
                assert node._ws.refused_connections == 1
                await _round_trip(session, peer)  # the existing session goes on
                for sock in held:  # the connections under the cap were kept
                    assert not await anyio.to_thread.run_sync(_closed_by_peer, sock, 0.05)
                held.pop().close()
                for _ in range(100):
                    if node._ws.connection_count < 4:
                        break
                    await anyio.sleep(0.01)
                with socket.create_connection(node.address, timeout=5) as again:  # room again
                    assert not await anyio.to_thread.run_sync(_closed_by_peer, again, 0.3)
                assert node._ws.refused_connections == 1
            finally:
                for sock in held:
                    sock.close()

    _run(runtime, body)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_dialled_connections_are_capped_too(runtime: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_ws, "MAX_CONNECTIONS", 1)

    async def body(node_class: Any) -> None:
        async with _node(node_class) as one, _node(node_class) as two, \
                _node(node_class) as client:
            await client.connect(one.address, one.node_id)
            with pytest.raises(ConnectionRefused, match="dialled already"):
                await client.connect(two.address, two.node_id, timeout=2)

    _run(runtime, body)


def test_the_framer_still_raises_only_wserror_after_a_close() -> None:
    raw, framer = _framer_pair()
    framer.feed(raw.send(CloseConnection(code=1000)))
    assert framer.closed
    with pytest.raises(WsError):
        framer.feed(b"\x00")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_pre_handshake_timeout_follows_the_nodes_handshake_timeout(runtime: str) -> None:
    async def body(node_class: Any) -> None:
        async with node_class(transport="websocket", host="127.0.0.1",
                              handshake_timeout=1.0) as node:

            def attack() -> tuple[bool, float]:
                sock, _ = _upgraded(node.address[1])
                started = time.monotonic()
                with sock:  # upgraded, then silent
                    return _closed_by_peer(sock, 5.0), time.monotonic() - started

            closed, after = await anyio.to_thread.run_sync(attack)
            assert closed and after < 3.0  # the module default would be 10 s

    _run(runtime, body)
