"""The websocket transport: STT datagrams as binary WebSocket messages over TCP, both runtimes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, BytesMessage, Request, TextMessage

import stt_anyio
import stt_asyncio
from stt_proto import ConnectionRefused, SessionClosed
from stt_proto.websocket import MAX_MESSAGE, WsError, WsFramer


async def _digest_server(node: stt_asyncio.STTNode, streams: int) -> None:
    session = await node.accept()

    async def answer(stream: stt_asyncio.Stream) -> None:
        digest = hashlib.sha256()
        async for message in stream:
            digest.update(message)
        await stream.send(digest.hexdigest().encode())
        await stream.close()

    async with asyncio.TaskGroup() as group:
        for _ in range(streams):
            group.create_task(answer(await session.accept_stream()))


async def _push(session: stt_asyncio.Session, count: int, size: int) -> None:
    stream = session.open_stream()
    digest = hashlib.sha256()
    for _ in range(count):
        data = os.urandom(size)
        digest.update(data)
        await stream.send(data)
    await stream.close()
    assert (await stream.receive()).decode() == digest.hexdigest()


def test_asyncio_transfer_and_streams_over_websocket() -> None:
    async def main() -> None:
        async with stt_asyncio.STTNode(transport="websocket") as server, \
                stt_asyncio.STTNode(transport="websocket") as client:
            served = asyncio.create_task(_digest_server(server, 5))
            session = await client.connect(server.address, server.node_id)
            async with asyncio.TaskGroup() as group:
                group.create_task(_push(session, 8, 1 << 20))
                for _ in range(4):
                    group.create_task(_push(session, 32, 4096))
            await served
            # a second session to the same address shares the connection
            again = await client.connect(server.address, server.node_id)
            assert again.session_id != session.session_id
            stats = client.get_stats()
            assert stats["transport"] == "websocket" and stats["websocket_protocol_errors"] == 0

    asyncio.run(asyncio.wait_for(main(), 60))


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_transfer_over_websocket(backend: str) -> None:
    async def main() -> None:
        async with stt_anyio.STTNode(transport="websocket") as server, \
                stt_anyio.STTNode(transport="websocket") as client:
            async def serve() -> None:
                session = await server.accept()
                stream = await session.accept_stream()
                digest = hashlib.sha256()
                async for message in stream:
                    digest.update(message)
                await stream.send(digest.hexdigest().encode())
                await stream.send_eof()

            with anyio.fail_after(60):
                async with anyio.create_task_group() as group:
                    group.start_soon(serve)
                    session = await client.connect(server.address, server.node_id)
                    stream = session.open_stream()
                    digest = hashlib.sha256()
                    for _ in range(8):
                        data = os.urandom(1 << 20)
                        digest.update(data)
                        await stream.send(data)
                    await stream.send_eof()
                    assert (await stream.receive()).decode() == digest.hexdigest()

    anyio.run(main, backend=backend)


def test_asyncio_client_with_a_trio_websocket_peer_process() -> None:
    peer = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("interop_peer.py")), "trio", "3",
         "websocket"], stdout=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None
        ready = peer.stdout.readline().split()
        assert ready and ready[0] == "READY", ready

        async def main() -> None:
            async with stt_asyncio.STTNode(transport="websocket") as client:
                session = await client.connect(("127.0.0.1", int(ready[1])),
                                               bytes.fromhex(ready[2]))
                async with asyncio.TaskGroup() as group:
                    group.create_task(_push(session, 16, 1 << 20))
                    group.create_task(_push(session, 64, 1000))
                    group.create_task(_push(session, 1, 10))

        asyncio.run(asyncio.wait_for(main(), 60))
        assert peer.wait(timeout=30) == 0
    finally:
        peer.kill()
        peer.wait()
        if peer.stdout is not None:
            peer.stdout.close()


def test_leaving_the_block_closes_peers_gracefully_over_websocket() -> None:
    async def main() -> None:
        async with stt_asyncio.STTNode(transport="websocket") as server:
            async with stt_asyncio.STTNode(transport="websocket") as client:
                await client.connect(server.address, server.node_id)
                peer = await server.accept()
            with pytest.raises(SessionClosed):
                await asyncio.wait_for(peer.accept_stream(), 5)

    asyncio.run(main())


def test_connecting_where_nothing_listens_is_refused_clearly() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound but not listening: connections are refused

        async def main() -> None:
            async with stt_asyncio.STTNode(transport="websocket") as client:
                with pytest.raises(ConnectionRefused, match="WebSocket"):
                    await client.connect(("127.0.0.1", port), bytes(32), timeout=2)

        asyncio.run(main())

        async def main_anyio() -> None:
            async with stt_anyio.STTNode(transport="websocket") as client:
                with pytest.raises(ConnectionRefused, match="WebSocket"):
                    await client.connect(("127.0.0.1", port), bytes(32), timeout=2)

        anyio.run(main_anyio, backend="trio")


def _hostile_client(port: int, payload: bytes) -> bytes:
    """Upgrade with wsproto over a blocking socket, send ``payload`` raw, return the reply."""
    ws = WSConnection(ConnectionType.CLIENT)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(ws.send(Request(host="x", target="/stt")))
        ws.receive_data(sock.recv(65536))
        assert any(isinstance(e, AcceptConnection) for e in ws.events())
        sock.sendall(payload(ws) if callable(payload) else payload)
        chunks = []
        try:
            while data := sock.recv(65536):
                chunks.append(data)
        except (ConnectionResetError, TimeoutError):
            pass
        return b"".join(chunks)


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_hostile_websocket_input_closes_that_connection_only(runtime: str) -> None:
    attacks = [
        lambda ws: ws.send(BytesMessage(data=bytes(MAX_MESSAGE + 1))),  # oversized
        lambda ws: ws.send(TextMessage(data="hello")),  # text, not binary
        lambda ws: b"\xff" * 64,  # not WebSocket framing at all
        lambda ws: ws.send(BytesMessage(data=os.urandom(500))),  # junk datagram: dropped
    ]

    async def check(node: stt_asyncio.STTNode | stt_anyio.STTNode, peer: object) -> None:
        port = node.address[1]
        for attack in attacks:
            await anyio.to_thread.run_sync(_hostile_client, port, attack)
        stats = node.get_stats()
        assert stats["websocket_protocol_errors"] >= 3
        assert stats["datagrams_in"] >= 1  # the junk datagram reached the endpoint, dropped
        # ...and the node still serves real peers
        session = await peer.connect(node.address, node.node_id)  # type: ignore[attr-defined]
        assert not session.is_closed

    async def main_asyncio() -> None:
        async with stt_asyncio.STTNode(transport="websocket") as node, \
                stt_asyncio.STTNode(transport="websocket") as peer:
            await check(node, peer)

    async def main_trio() -> None:
        async with stt_anyio.STTNode(transport="websocket") as node, \
                stt_anyio.STTNode(transport="websocket") as peer:
            with anyio.fail_after(30):
                await check(node, peer)

    if runtime == "asyncio":
        asyncio.run(asyncio.wait_for(main_asyncio(), 30))
    else:
        anyio.run(main_trio, backend="trio")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=6), st.booleans())
def test_framer_never_raises_anything_but_wserror(chunks: list[bytes], client: bool) -> None:
    framer = WsFramer(client, "h", 1)
    for chunk in chunks:
        try:
            for datagram in framer.feed(chunk):
                assert len(datagram) <= MAX_MESSAGE
        except WsError:
            return


def test_a_peers_close_reason_reaches_the_error_sanitised() -> None:
    client, server = WsFramer(True, "h", 1), WsFramer(False)
    server.feed(client.take_output())  # the HTTP upgrade
    client.feed(server.take_output())
    payload = (4000).to_bytes(2, "big") + b"\x1b[2J\x1b]0;pwned\x07 [/bold]"
    mask = b"\x01\x02\x03\x04"
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))
    with pytest.raises(WsError) as error:
        server.feed(bytes([0x88, 0x80 | len(payload)]) + mask + masked)
    assert "\x1b" not in str(error.value) and "\x07" not in str(error.value)
    assert "4000" in str(error.value) and "[/bold]" in str(error.value)
