"""Benchmarks beyond ``stt bench``'s three: TCP+TLS 1.3 on the same loop, many idle sessions
(RSS per session and per stream, time to close them all) and a CPU profile summary."""

from __future__ import annotations

import asyncio
import cProfile
import datetime
import gc
import json
import os
import pstats
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from stt_asyncio import STTNode
from stt_proto import Endpoint, Identity, NodeConfig
from stt_proto.session import CIPHER_IDLE_RELEASE

from ._loopback import on_loopback, one_peer_sessions
from .alloc import trim_heap
from .bench import MiB, run_on


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


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def core_goodput(frame_size: int, seconds: float) -> float:
    """Bytes/s of one stream between two ``stt_proto`` endpoints handing datagrams to each
    other in memory: no sockets, no event loop. The ceiling of the protocol core alone; a
    coroutine only so that ``run_on`` can run it, it never awaits."""
    config = NodeConfig.build(max_frame_size=frame_size, recv_buffer_size=8 * MiB,
                              send_buffer_size=8 * MiB)
    a, b = Endpoint(config, Identity.generate()), Endpoint(config, Identity.generate())
    a_addr, b_addr = ("10.0.0.1", 1), ("10.0.0.2", 2)
    now = time.monotonic

    def pump() -> None:
        for source, sink, address in ((a, b, a_addr), (b, a, b_addr)):
            moment = now()
            timer = source.get_timer()
            if timer is not None and timer <= moment:
                source.handle_timer(moment)
            while batch := source.datagrams_to_send(moment, 32):
                for datagram, _ in batch:
                    sink.receive_datagram(datagram, address, moment)

    sender = a.connect(b_addr, b.identity.node_id, now())
    while not sender.confirmed:
        pump()
    pump()
    receiver = next(iter(b.sessions.values()))
    stream = sender.open_stream()
    message = os.urandom(MiB)
    received = 0
    start = now()
    while now() - start < seconds:
        while sender.send_message(stream, message):
            pass
        pump()
        for endpoint in (a, b):
            while endpoint.next_event() is not None:
                pass
        for session in (sender, receiver):
            while session.next_event() is not None:
                pass
        while (got := receiver.receive_message(stream)) is not None:
            received += len(got)
    return received / (now() - start)


EXTRA_STREAMS = 3  # idle streams per session beyond the first


def _settled_rss() -> tuple[int, int]:
    """RSS now, and RSS once the allocator has returned whole free pages (malloc_trim)."""
    gc.collect()
    before = _rss()
    trim_heap()
    return before, _rss()


async def idle_sessions(count: int) -> dict[str, float]:
    """Open ``count`` sessions between two nodes in this process, then one stream each with
    one message, then ``EXTRA_STREAMS`` more; report RSS per idle session, for the first
    stream of a session (which also brings the session's transfer state into use) and per
    further idle stream (both ends hold each, so growth is divided by 2 x count), and the time
    to close them all.

    Each figure is taken once the sessions are idle (no packet for longer than
    ``CIPHER_IDLE_RELEASE``, so they have dropped their AEAD objects), as RSS and as RSS after
    ``malloc_trim(0)``: memory freed by the handshakes stays in the heap for reuse, and the
    second figure leaves it out."""
    settings: dict[str, Any] = {
        "max_sessions": count + 16, "retry_threshold": count + 16, **one_peer_sessions(count),
        "keep_alive_interval": 60.0, "keep_alive_timeout": 600.0,
        "recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB}
    idle = CIPHER_IDLE_RELEASE + 0.5
    settings = on_loopback(settings)
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        before = _settled_rss()
        start = time.perf_counter()
        sessions: list[Any] = []
        for first in range(0, count, 500):
            batch = range(first, min(count, first + 500))
            sessions += await asyncio.gather(*(client.connect(server.address, server.node_id)
                                               for _ in batch))
        connect_time = time.perf_counter() - start
        accepted = [await server.accept() for _ in range(count)]
        await asyncio.sleep(idle)
        with_sessions = _settled_rss()
        streams = [s.open_stream() for s in sessions]
        await asyncio.gather(*(st.send(b"x") for st in streams))
        incoming = await asyncio.gather(*(s.accept_stream() for s in accepted))
        await asyncio.gather(*(st.receive() for st in incoming))
        await asyncio.sleep(idle)
        with_first = _settled_rss()
        more = [s.open_stream() for s in sessions for _ in range(EXTRA_STREAMS)]
        await asyncio.gather(*(st.send(b"x") for st in more))
        incoming = await asyncio.gather(*(s.accept_stream() for s in accepted
                                          for _ in range(EXTRA_STREAMS)))
        await asyncio.gather(*(st.receive() for st in incoming))
        await asyncio.sleep(idle)
        with_streams = _settled_rss()
        start = time.perf_counter()
        await client.close()
        peer = server._require_endpoint()
        while (not all(s.is_closed for s in peer.sessions.values())
               and time.perf_counter() - start < 30):
            await asyncio.sleep(0.001)  # until the peer has seen every CLOSE
        close_time = time.perf_counter() - start
        open_after = sum(not s.is_closed for s in peer.sessions.values())
    per = 2 * count
    return {"sessions": count, "connect_s": connect_time,
            "rss_per_session_untrimmed": (with_sessions[0] - before[0]) / per,
            "rss_first_stream_untrimmed": (with_first[0] - with_sessions[0]) / per,
            "rss_per_stream_untrimmed": (with_streams[0] - with_first[0]) / per / EXTRA_STREAMS,
            "rss_per_session": (with_sessions[1] - before[1]) / per,
            "rss_first_stream": (with_first[1] - with_sessions[1]) / per,
            "rss_per_stream": (with_streams[1] - with_first[1]) / per / EXTRA_STREAMS,
            "close_s": close_time, "server_sessions_after_close": open_after}


FILE_CATEGORIES = (
    ("framing", ("frames.py", "packet.py", "varint.py")),
    ("recovery + congestion", ("recovery.py", "ack.py", "rangeset.py", "rtt.py", "congestion/",
                               "replay.py")),
    ("streams", ("stream.py", "streams.py")),
    ("session + endpoint", ("session.py", "endpoint.py", "dataplane.py", "keys.py")),
    ("runtime (stt_asyncio + asyncio)", ("stt_asyncio/", "asyncio/", "uvloop")),
)


def _category(filename: str, function: str) -> str:
    if filename == "~":  # a builtin: cProfile names it by its type
        if "AESGCM" in function or "ChaCha20Poly1305" in function:
            return "AEAD"
        if "socket" in function:
            return "socket I/O"
        return "other"
    path = filename.replace("\\", "/")
    for name, needles in FILE_CATEGORIES:
        if any(needle in path for needle in needles):
            return name
    return "other"


def profile_summary(frame_size: int, seconds: float) -> dict[str, float]:
    """Share of CPU time by concern for one stream at ``frame_size``, both ends on one asyncio
    loop (cProfile's own time per function, grouped by module)."""
    settings = {"max_frame_size": frame_size, "recv_buffer_size": 8 * MiB,
                "send_buffer_size": 8 * MiB}
    profiler = cProfile.Profile()
    profiler.enable()
    run_on("asyncio", "stt_throughput", settings, seconds)
    profiler.disable()
    shares: dict[str, float] = {}
    rows = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, function), row in rows.items():
        category = _category(filename, function)
        shares[category] = shares.get(category, 0.0) + row[2]
    total = sum(shares.values()) or 1.0
    return {name: value / total for name, value in sorted(shares.items(),
                                                          key=lambda kv: -kv[1])}


def profile_summary_of_sources(frame_size: int, seconds: float) -> dict[str, float]:
    """:func:`profile_summary` over the Python sources of the core: cProfile sees no function
    inside mypyc-compiled modules, so with the compiled build it runs in a child process with
    ``STT_PURE=1``. The shares are then those of the sources, not of the compiled build."""
    import stt_proto

    if not stt_proto.COMPILED:
        return profile_summary(frame_size, seconds)
    code = ("import json, sys; from stt_cli.bench_extra import profile_summary; "
            "print(json.dumps(profile_summary(int(sys.argv[1]), float(sys.argv[2]))))")
    result = subprocess.run([sys.executable, "-c", code, str(frame_size), str(seconds)],
                            capture_output=True, text=True, check=True, timeout=300,
                            env={**os.environ, "STT_PURE": "1"})
    shares: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return shares
