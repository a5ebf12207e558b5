"""The TCP+TLS 1.3 baseline: 1 MiB writes over TLS on loopback TCP, both ends on one loop
(asyncio's streams, or ``trio.SSLStream`` on trio), with a throwaway localhost certificate."""

from __future__ import annotations

import asyncio
import datetime
import functools
import os
import ssl
import tempfile
import time
from pathlib import Path

import trio

from ..common import MiB


def self_signed(workdir: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for localhost: (certificate, key) PEM paths."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = workdir / "cert.pem", workdir / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def tls_contexts(workdir: Path) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """Server and client contexts for a throwaway localhost certificate; TLS 1.3 only."""
    cert_path, key_path = self_signed(workdir)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.minimum_version = ssl.TLSVersion.TLSv1_3
    server.load_cert_chain(cert_path, key_path)
    client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client.minimum_version = ssl.TLSVersion.TLSv1_3
    client.load_verify_locations(cert_path)
    return server, client


async def tcp_tls_throughput(seconds: float) -> float:
    """Bytes/s of 1 MiB writes over TLS 1.3 on loopback TCP, both ends on this loop."""
    with tempfile.TemporaryDirectory() as tmp:
        server_ctx, client_ctx = tls_contexts(Path(tmp))
        received = 0
        finished = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal received
            while chunk := await reader.read(256 * 1024):
                received += len(chunk)
            writer.close()
            finished.set()

        server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=server_ctx)
        port = server.sockets[0].getsockname()[1]
        _reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client_ctx,
                                                       server_hostname="localhost")
        message = os.urandom(MiB)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            writer.write(message)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
        writer.close()
        await asyncio.wait_for(finished.wait(), 30)
        elapsed = time.perf_counter() - start
        server.close()
        await server.wait_closed()
        return received / elapsed


async def tcp_tls_throughput_trio(seconds: float) -> float:
    """Bytes/s of 1 MiB writes through ``trio.SSLStream`` (TLS 1.3) on loopback TCP."""
    with tempfile.TemporaryDirectory() as tmp:
        server_ctx, client_ctx = tls_contexts(Path(tmp))
    received = 0
    finished = trio.Event()

    async def handle(tcp: trio.SocketStream) -> None:
        nonlocal received
        stream = trio.SSLStream(tcp, server_ctx, server_side=True)
        while chunk := await stream.receive_some(256 * 1024):
            received += len(chunk)
        finished.set()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(functools.partial(trio.serve_tcp, handle, 0,
                                                          host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        tcp = await trio.open_tcp_stream("127.0.0.1", port)
        stream = trio.SSLStream(tcp, client_ctx, server_hostname="localhost")
        message = os.urandom(MiB)
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            await stream.send_all(message)
        await stream.aclose()
        with trio.fail_after(30):
            await finished.wait()
        elapsed = time.perf_counter() - start
        nursery.cancel_scope.cancel()
    return received / elapsed
