"""The aioquic baseline: one QUIC stream carrying 1 MiB writes on loopback, both ends on this
loop, with aioquic's datagram size set to the frame size STT is measured at.

aioquic is an optional benchmark dependency (``pip install 'stt-transport[bench]'``); without it
the suite reports the baseline as missing. aioquic's stream writer never pushes back, so the
sink returns one byte per MiB it receives and the sender keeps at most ``WINDOW`` MiB
outstanding: application-level flow control through aioquic's public API only.

aioquic 1.7 writes a STREAM frame's length as a 2-byte varint, so datagrams above 16 KiB break
its own framing (the peer closes with FRAME_ENCODING_ERROR); larger sizes are measured at
``MAX_DATAGRAM``, its largest working one, and reported as such.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

from ..common import MiB
from .tls import self_signed

WINDOW = 8  # MiB the sender may have written beyond what the sink has confirmed
MAX_DATAGRAM = 16384


def available() -> bool:
    try:
        import aioquic  # noqa: F401
    except ImportError:
        return False
    return True


def _widen(transport: Any) -> None:
    """The socket buffers STT's benchmark asks for (8 MiB), so neither side loses datagrams
    to a smaller kernel default."""
    sock = transport.get_extra_info("socket")
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 8 * MiB)


async def aioquic_throughput(datagram_size: int, seconds: float) -> float:
    """Bytes/s of payload through one aioquic stream, datagrams of ``datagram_size`` bytes
    (at most ``MAX_DATAGRAM``)."""
    datagram_size = min(datagram_size, MAX_DATAGRAM)
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.asyncio.server import serve
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.events import QuicEvent, StreamDataReceived

    received = 0
    finished = asyncio.Event()
    credited = 0
    credit_arrived = asyncio.Event()

    class Sink(QuicConnectionProtocol):
        def quic_event_received(self, event: QuicEvent) -> None:
            nonlocal received
            if isinstance(event, StreamDataReceived):
                before = received // MiB
                received += len(event.data)
                if received // MiB > before:
                    self._quic.send_stream_data(event.stream_id, bytes(received // MiB - before))
                    self.transmit()
                if event.end_stream:
                    finished.set()

    class Source(QuicConnectionProtocol):
        def quic_event_received(self, event: QuicEvent) -> None:
            nonlocal credited
            if isinstance(event, StreamDataReceived):
                credited += len(event.data)
                credit_arrived.set()

    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        server_config = QuicConfiguration(is_client=False, alpn_protocols=["bench"],
                                          max_datagram_size=datagram_size)
        server_config.load_cert_chain(cert, key)
        server = await serve("127.0.0.1", 0, configuration=server_config,
                             create_protocol=Sink)
    server_transport: Any = server._transport
    _widen(server_transport)
    port = server_transport.get_extra_info("sockname")[1]
    client_config = QuicConfiguration(is_client=True, alpn_protocols=["bench"],
                                      max_datagram_size=datagram_size,
                                      verify_mode=ssl.CERT_NONE)
    try:
        async with connect("127.0.0.1", port, configuration=client_config,
                           create_protocol=Source) as client:
            _widen(client._transport)
            quic: Any = client._quic
            stream_id = quic.get_next_available_stream_id()
            message = os.urandom(MiB)
            written = 0
            start = time.perf_counter()
            while time.perf_counter() - start < seconds:
                while written - credited >= WINDOW:
                    credit_arrived.clear()
                    await credit_arrived.wait()
                quic.send_stream_data(stream_id, message)
                client.transmit()
                written += 1
            quic.send_stream_data(stream_id, b"", end_stream=True)
            client.transmit()
            await asyncio.wait_for(finished.wait(), 30)
            elapsed = time.perf_counter() - start
    finally:
        server.close()
    return received / elapsed
