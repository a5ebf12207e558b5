"""stt_anyio's WebSocket connection holding output while its peer does not read, driven
deterministically: a fake TCP stream whose ``send`` blocks until the test lets the peer "read",
and a tiny write queue, so the write queue fills by message count as a PING flood's PONGs fill it
(issue 21.7). What must hold: output stays bounded however many PINGs come (PONGs are held in
the framer, one for the latest PING, not piled up as encoded bytes), and once the peer reads the
writer sends the PONG for the last PING without anything else happening on the connection.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest
from anyio.abc import TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Pong, Request

from stt_anyio import websocket as anyio_ws

PINGS = 2000  # each arriving alone: one PONG owed per read
QUEUE = 4  # messages the (patched) write queue holds


class _BlockedPeerStream:
    """A TCP stream to a peer that reads only when ``reading`` is set: ``send`` blocks before
    then (a shut window), and afterwards records what the peer would read."""

    def __init__(self) -> None:
        self.incoming: MemoryObjectSendStream[bytes]
        self._incoming: MemoryObjectReceiveStream[bytes]
        self.incoming, self._incoming = anyio.create_memory_object_stream[bytes](1 << 16)
        self.reading = anyio.Event()
        self.wire = bytearray()
        self.closed = False

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._incoming.receive()

    async def send(self, data: bytes) -> None:
        await self.reading.wait()
        self.wire += data

    async def aclose(self) -> None:
        self.closed = True

    def extra(self, attribute: Any) -> Any:
        raise anyio.TypedAttributeLookupError(attribute)


def _open_client() -> tuple[WSConnection, bytes]:
    """A client past its upgrade (so it can frame PINGs before reading the node's answer)
    and the upgrade request to send the node (answered alike: same key)."""
    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    request = client.send(Request(host="h", target="/stt"))
    server.receive_data(request)
    assert any(isinstance(e, Request) for e in server.events())
    client.receive_data(server.send(AcceptConnection()))
    assert any(isinstance(e, AcceptConnection) for e in client.events())
    return client, request


def _frames(client: WSConnection, wire: bytes) -> list[object]:
    """The events in what the node wrote, past its upgrade response."""
    assert wire.startswith(b"HTTP/1.1 101 ")
    client.receive_data(wire[wire.index(b"\r\n\r\n") + 4:])
    return list(client.events())


async def _accepted(group: TaskGroup) -> tuple[anyio_ws.WebSocketIO, anyio_ws._Connection,
                                              _BlockedPeerStream, WSConnection]:
    """A transport with one accepted connection over a blocked peer stream, its upgrade
    request delivered, and the (open) client that sent it."""
    io = anyio_ws.WebSocketIO(group, lambda datagram, addr: None, lambda sock: None,
                              handshake_timeout=60.0)
    stream = _BlockedPeerStream()
    connection = anyio_ws._Connection(io, stream, False,  # type: ignore[arg-type]
                                      ("127.0.0.1", 1))
    io.track(connection, inbound=True)
    group.start_soon(connection.run)
    client, request = _open_client()
    await stream.incoming.send(request)
    return io, connection, stream, client


@pytest.fixture
def tiny_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(anyio_ws, "WRITE_QUEUE", QUEUE)


@pytest.mark.usefixtures("tiny_queue")
@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_pongs_held_while_the_queue_is_full_by_count_stay_bounded_and_the_last_leaves(
        backend: str) -> None:
    async def main() -> None:
        async with anyio.create_task_group() as group:
            io, connection, stream, client = await _accepted(group)
            ping = client.send(Ping(payload=b"p" * 125))
            peak = 0
            for _ in range(PINGS):  # one PING per read: one PONG owed each time
                await stream.incoming.send(ping)
                await anyio.sleep(0)
                await anyio.sleep(0)
                peak = max(peak, io.max_buffered)
            await stream.incoming.send(client.send(Ping(payload=b"last")))
            with anyio.fail_after(5):
                while connection.framer.buffered == 0:  # the node has read the last PING
                    await anyio.sleep(0)
            # The upgrade response and QUEUE PONG messages wait for the writer; the rest is
            # one held PONG. Piled up as encoded PONGs it would be PINGS x 127 bytes.
            assert peak <= 1024 + (QUEUE + 1) * 127
            assert connection.congested
            stream.reading.set()  # the peer reads at last; nothing else arrives
            with anyio.fail_after(5):
                while connection.buffered:
                    await anyio.sleep(0.001)
            pongs = [bytes(e.payload) for e in _frames(client, bytes(stream.wire))
                     if isinstance(e, Pong)]
            assert pongs[-1] == b"last"
            assert len(pongs) <= QUEUE + 2  # coalesced while held
            connection.abort()
            group.cancel_scope.cancel()

    anyio.run(main, backend=backend)


@pytest.mark.usefixtures("tiny_queue")
def test_a_final_close_frame_waits_in_the_framer_when_the_queue_is_full() -> None:
    """``begin_close`` with the queue full by count: the close frame is kept (after the held
    PONG) and leaves once the peer reads."""
    async def main() -> None:
        async with anyio.create_task_group() as group:
            _, connection, stream, client = await _accepted(group)
            for i in range(QUEUE * 3):
                await stream.incoming.send(client.send(Ping(payload=i.to_bytes(2, "big"))))
                await anyio.sleep(0)
                await anyio.sleep(0)
            assert connection.congested
            connection.begin_close()
            assert connection.buffered > 0
            stream.reading.set()
            with anyio.fail_after(5):
                while connection.buffered:
                    await anyio.sleep(0.001)
            events = _frames(client, bytes(stream.wire))
            assert [type(e) for e in events[-2:]] == [Pong, CloseConnection]
            connection.finish()
            group.cancel_scope.cancel()

    anyio.run(main, backend="trio")

