"""aioquic's ends of the two-process goodput (asyncio loops only): one QUIC stream of 1 MiB
writes from a client process to a server process, with aioquic's configuration at its defaults
(``datagram`` null: 1,200-byte datagrams, kernel socket buffers) or at a given datagram size,
nothing else changed. As in :mod:`stt_bench.baselines.quic`, the sink returns one byte per MiB
so the sender keeps at most ``WINDOW`` MiB outstanding (aioquic's writer never pushes back), and
sizes above ``MAX_DATAGRAM`` are measured at it.
"""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from ..baselines.quic import MAX_DATAGRAM, WINDOW
from ..baselines.tls import self_signed
from ..common import Meter, MiB
from .lines import emit


def _configuration(spec: dict[str, Any], is_client: bool) -> Any:
    from aioquic.quic.configuration import QuicConfiguration

    options: dict[str, Any] = {"is_client": is_client, "alpn_protocols": ["bench"]}
    if spec.get("datagram"):
        options["max_datagram_size"] = min(int(spec["datagram"]), MAX_DATAGRAM)
    if is_client:
        options["verify_mode"] = ssl.CERT_NONE
    return QuicConfiguration(**options)


def _free_port() -> int:
    """A UDP port on 127.0.0.1 that nothing holds now."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def quic_sink(spec: dict[str, Any], line: Callable[[], Awaitable[str]]) -> None:
    """Serve one aioquic stream, counting its bytes, until ``line()`` returns; then the rate."""
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.asyncio.server import serve
    from aioquic.quic.events import QuicEvent, StreamDataReceived

    meter = Meter()
    received = 0

    class Sink(QuicConnectionProtocol):
        def quic_event_received(self, event: QuicEvent) -> None:
            nonlocal received
            if isinstance(event, StreamDataReceived):
                before = received // MiB
                received += len(event.data)
                meter.note(len(event.data))
                if received // MiB > before:
                    self._quic.send_stream_data(event.stream_id, bytes(received // MiB - before))
                    self.transmit()

    config = _configuration(spec, False)
    with tempfile.TemporaryDirectory() as tmp:
        cert, key = self_signed(Path(tmp))
        config.load_cert_chain(cert, key)
    port = _free_port()  # aioquic's server tells its port only through a private attribute
    server = await serve("127.0.0.1", port, configuration=config, create_protocol=Sink)
    emit({"address": ["127.0.0.1", port], "node_id": ""})
    await line()
    emit({"rate": meter.rate(), "bytes": meter.bytes})
    server.close()


async def quic_source(spec: dict[str, Any]) -> None:
    """Write 1 MiB at a time on one aioquic stream for ``seconds``, within the credit window."""
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.events import QuicEvent, StreamDataReceived

    credited = 0
    credit_arrived = asyncio.Event()

    class Source(QuicConnectionProtocol):
        def quic_event_received(self, event: QuicEvent) -> None:
            nonlocal credited
            if isinstance(event, StreamDataReceived):
                credited += len(event.data)
                credit_arrived.set()

        def new_stream(self) -> int:
            stream_id: int = self._quic.get_next_available_stream_id()
            return stream_id

        def write(self, stream_id: int, data: bytes, end: bool = False) -> None:
            self._quic.send_stream_data(stream_id, data, end_stream=end)
            self.transmit()

    loop = asyncio.get_running_loop()
    host, port = spec["address"]
    async with connect(str(host), int(port), configuration=_configuration(spec, True),
                       create_protocol=Source) as client:
        source: Any = client
        stream_id = source.new_stream()
        message = os.urandom(MiB)
        written = 0
        done = loop.time() + float(spec["seconds"])
        while loop.time() < done:
            while written - credited >= WINDOW:
                credit_arrived.clear()
                try:
                    await asyncio.wait_for(credit_arrived.wait(), 10)
                except TimeoutError:
                    return  # the sink stopped answering: what it counted stands
            source.write(stream_id, message)
            written += 1
        source.write(stream_id, b"", end=True)
        await asyncio.sleep(0.05)  # the end of the stream leaves before the connection closes
