"""The near end of ``stt bench --to HOST:PORT --peer-id HEX``: goodput both ways and ping-pong
latency against ``stt bench --serve`` (protocol in :mod:`stt_bench.remote.serve`), each beside the
raw UDP baseline when the server runs one.

Timing matches the loopback benchmarks': goodput is what the receiving end counts after its first
arrival over the span from the first to the last (the server counts the upload, this end the
download), for STT and raw UDP alike. Written on anyio, with the node class the runtime calls for
(``stt_asyncio`` on asyncio and uvloop, ``stt_anyio`` on trio).
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import anyio
from cryptography.exceptions import InvalidTag

from stt_proto.peer_text import sanitize

from ..baselines.aead import make_sealer
from ..common import Meter, MiB, median, percentile
from .serve import CHALLENGE, HELLO, HELLO_SIZE, PING, TOKEN_SIZE

Progress = Callable[[str], None]
CONNECT_TIMEOUT = 10.0
REPLY_TIMEOUT = 30.0  # a reply after a measurement (the server finishes sending first)
MAX_REMOTE_SESSIONS = 1000  # the server admits this many sessions per identity


class RemoteError(Exception):
    """The bench server refused a request or answered something unexpected (one line for the
    user; text from the server is sanitised). ``stt bench`` shows it as its own one-line
    failure; this package does not import the command-line tool."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


async def reply_of(stream: Any, timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
    """The server's JSON reply on ``stream``; RemoteError for an error or a malformed one."""
    with deadline(timeout, "a request"):
        data = await stream.receive()
    try:
        reply = json.loads(data)
    except ValueError:
        raise RemoteError("the bench server sent a reply that is not JSON") from None
    if not isinstance(reply, dict):
        raise RemoteError("the bench server sent a reply that is not an object")
    if "error" in reply:
        raise RemoteError(f"the bench server refused: {sanitize(str(reply['error'])[:200])}")
    return reply


@contextmanager
def deadline(seconds: float, what: str) -> Iterator[None]:
    """Fail with a RemoteError naming ``what`` if the server leaves us waiting past
    ``seconds``."""
    try:
        with anyio.fail_after(seconds):
            yield
    except TimeoutError:
        raise RemoteError(f"the bench server stopped answering during {what} "
                          f"(nothing for {seconds:g} s)") from None


def number(reply: dict[str, Any], name: str) -> float:
    value = reply.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RemoteError(f"the bench server's reply has no number {name!r}")
    return float(value)


async def open_request(session: Any, message: dict[str, Any], **stream_options: Any) -> Any:
    """A new stream whose first message is ``message``."""
    stream = session.open_stream(**stream_options)
    await stream.send(encode(message))
    return stream


class Ticker:
    """Reports a measurement's progress at most ten times a second."""

    def __init__(self, progress: Progress, label: str, seconds: float) -> None:
        self.progress, self.label, self.seconds = progress, label, seconds
        self.start = self.last = time.perf_counter()
        progress(f"{label}…")

    def tick(self, count: int, verb: str) -> None:
        now = time.perf_counter()
        if now - self.last >= 0.1:
            self.last = now
            elapsed = now - self.start
            self.progress(f"{self.label}: {min(elapsed, self.seconds):.1f}/{self.seconds:g} s, "
                          f"{count / max(elapsed, 1e-9) / 1e6:,.0f} MB/s {verb}")


async def stt_up(session: Any, frame_size: int, seconds: float, progress: Progress) -> float:
    """Bytes/s the server received on one stream of 1 MiB messages."""
    stream = await open_request(session, {"op": "sink"}, max_frame_size=frame_size)
    message = os.urandom(MiB)
    ticker = Ticker(progress, f"STT upload, {frame_size}-byte frames", seconds)
    sent = 0
    done = anyio.current_time() + seconds
    with deadline(seconds + REPLY_TIMEOUT, "the STT upload"):
        while anyio.current_time() < done:
            await stream.send(message)
            sent += len(message)
            ticker.tick(sent, "sent")
        await stream.close()
    reply = await reply_of(stream)
    span = number(reply, "seconds")
    return number(reply, "bytes") / span if span > 0 else 0.0


async def stt_down(session: Any, frame_size: int, seconds: float, progress: Progress) -> float:
    """Bytes/s this end received on a stream the server sends 1 MiB messages on."""
    control = await open_request(session, {"op": "source", "seconds": seconds,
                                           "frame_size": frame_size})
    ticker = Ticker(progress, f"STT download, {frame_size}-byte frames", seconds)
    meter = Meter()
    received = 0
    with deadline(seconds + REPLY_TIMEOUT, "the STT download"):
        stream = await session.accept_stream()
        async for message in stream:
            meter.note(len(message))
            received += len(message)
            ticker.tick(received, "received")
    await reply_of(control)
    return meter.rate()


async def stt_pings(session: Any, count: int, progress: Progress) -> list[float]:
    """Round-trip times (s) of 4-byte messages on a no_delay stream the server echoes."""
    stream = await open_request(session, {"op": "echo"}, no_delay=True)
    times: list[float] = []
    for index in range(count):
        if index % 100 == 0:
            progress(f"STT ping-pong: {index}/{count}")
        start = time.perf_counter()
        await stream.send(b"ping")
        with deadline(REPLY_TIMEOUT, "the STT ping-pong"):
            await stream.receive()
        times.append(time.perf_counter() - start)
    await stream.close()
    return times


class RawLink:
    """This end of the raw UDP baseline: a connected socket whose address the server has
    seen proven, and the session stream that controls it."""

    def __init__(self, sock: socket.socket, control: Any, key: bytes) -> None:
        self.sock, self.control, self.key = sock, control, key

    @classmethod
    async def open(cls, session: Any, host: str, port: int) -> RawLink:
        """Register with the server and prove our address; RemoteError if it cannot."""
        token, key = os.urandom(TOKEN_SIZE), os.urandom(32)
        control = await open_request(session, {"op": "raw", "token": token.hex(),
                                               "key": key.hex()})
        await reply_of(control)
        family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                sock.setsockopt(socket.SOL_SOCKET, option, 8 * MiB)
            sock.connect(address)
            sock.setblocking(False)
            hello = (HELLO + token).ljust(HELLO_SIZE, b"\0")
            nonce = None
            for _ in range(15):
                sock.send(hello)
                with anyio.move_on_after(0.2):
                    await anyio.wait_readable(sock)
                    data = sock.recv(2048)
                    if data[:1 + TOKEN_SIZE] == CHALLENGE + token:
                        nonce = data[1 + TOKEN_SIZE:]
                        break
            if nonce is None:
                raise RemoteError(f"no answer from the raw UDP baseline port {port} within 3 s")
            await control.send(encode({"op": "prove", "nonce": nonce.hex()}))
            await reply_of(control)
        except (OSError, RemoteError):
            sock.close()
            raise
        return cls(sock, control, key)

    async def command(self, message: dict[str, Any],
                      timeout: float = REPLY_TIMEOUT) -> dict[str, Any]:
        await self.control.send(encode(message))
        return await reply_of(self.control, timeout)

    def drain(self) -> None:
        """Drop what is queued on the socket (the tail of a blast)."""
        while True:
            try:
                self.sock.recv(65536)
            except (BlockingIOError, ConnectionRefusedError):
                return

    async def up(self, frame_size: int, seconds: float, progress: Progress) -> float:
        """Bytes/s of sealed datagrams the server received and opened."""
        seal, _ = make_sealer(frame_size, self.key)
        ticker = Ticker(progress, f"raw UDP upload, {frame_size}-byte frames", seconds)
        counter = 0
        done = anyio.current_time() + seconds
        while anyio.current_time() < done:
            for _ in range(64):
                try:
                    self.sock.send(seal(counter))
                except BlockingIOError:
                    await anyio.wait_writable(self.sock)
                    break
                except ConnectionRefusedError:
                    break  # an ICMP error from an earlier datagram
                counter += 1
            ticker.tick(counter * (frame_size - 36), "sent")
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.1)  # what is still in flight lands
        reply = await self.command({"op": "report"})
        span = number(reply, "seconds")
        return number(reply, "bytes") / span if span > 0 else 0.0

    async def down(self, frame_size: int, seconds: float, progress: Progress) -> float:
        """Bytes/s of the server's sealed datagrams that this end received and opened."""
        _, open_ = make_sealer(frame_size, self.key)
        meter = Meter()
        ticker = Ticker(progress, f"raw UDP download, {frame_size}-byte frames", seconds)
        buffer = bytearray(65536)
        received = 0

        async def receive() -> None:
            nonlocal received
            while True:
                await anyio.wait_readable(self.sock)
                while True:
                    try:
                        size = self.sock.recv_into(buffer)
                    except BlockingIOError:
                        break
                    except ConnectionRefusedError:
                        continue
                    try:
                        count = open_(buffer, size)
                    except (InvalidTag, ValueError):  # not a sealed datagram of ours
                        continue
                    meter.note(count)
                    received += count
                ticker.tick(received, "received")

        async with anyio.create_task_group() as group:
            group.start_soon(receive)
            await self.command({"op": "source", "seconds": seconds, "frame_size": frame_size},
                               seconds + REPLY_TIMEOUT)  # the reply follows the blast
            await anyio.sleep(0.1)
            group.cancel_scope.cancel()
        self.drain()
        return meter.rate()

    async def pings(self, count: int, progress: Progress) -> list[float]:
        """Round-trip times (s) of 9-byte datagrams the server echoes; lost ones left out."""
        self.drain()
        times: list[float] = []
        for index in range(count):
            if index % 100 == 0:
                progress(f"raw UDP ping-pong: {index}/{count}")
            payload = PING + index.to_bytes(8, "big")
            start = time.perf_counter()
            self.sock.send(payload)
            with anyio.move_on_after(1.0):
                while True:
                    await anyio.wait_readable(self.sock)
                    try:
                        if self.sock.recv(2048) == payload:
                            times.append(time.perf_counter() - start)
                            break
                    except (BlockingIOError, ConnectionRefusedError):
                        pass
        return times

    async def close(self) -> None:
        self.sock.close()
        await self.control.close()


def latency_summary(stt: list[float], raw: list[float] | None) -> dict[str, Any]:
    """p50 and p99 in microseconds for STT and raw UDP, and their ratios."""
    def stats(samples: list[float]) -> dict[str, float]:
        return {"p50_us": median(samples) * 1e6, "p99_us": percentile(samples, .99) * 1e6}

    result: dict[str, Any] = {"count": len(stt), "stt": stats(stt), "raw": None, "ratio": None}
    if raw:
        result["raw"] = stats(raw)
        result["ratio"] = {"p50": result["stt"]["p50_us"] / result["raw"]["p50_us"],
                           "p99": result["stt"]["p99_us"] / result["raw"]["p99_us"]}
    return result


def goodput_row(direction: str, frame_size: int, stt: float, raw: float | None,
                rtt_ms: float) -> dict[str, Any]:
    return {"direction": direction, "frame_size": frame_size, "raw_bytes_per_s": raw,
            "stt_bytes_per_s": stt, "ratio": stt / raw if raw else None, "stt_rtt_ms": rtt_ms}


async def run_remote(node: Any, address: tuple[str, int], peer_id: bytes, kind: str,
                     sizes: tuple[int, ...], seconds: float, count: int, use_raw: bool,
                     progress: Progress) -> dict[str, Any]:
    """Measure against the server at ``address`` from ``node`` (started); ``kind`` is
    "throughput", "latency", "sessions" or "all" (throughput and latency)."""
    progress(f"connecting to {address[0]}:{address[1]}…")
    session = await node.connect(address, peer_id, timeout=CONNECT_TIMEOUT)
    hello = await reply_of(await open_request(session, {"op": "hello"}))
    results: dict[str, Any] = {"raw_note": None}
    link: RawLink | None = None
    port = hello.get("raw_udp_port")
    if use_raw and kind != "sessions":
        if isinstance(port, int) and not isinstance(port, bool) and 0 < port < 65536:
            try:
                link = await RawLink.open(session, address[0], port)
            except (OSError, RemoteError) as exc:
                results["raw_note"] = f"raw UDP baseline left out: {exc}"
        else:
            results["raw_note"] = "the server runs no raw UDP baseline"
    try:
        if kind in ("throughput", "all"):
            rows = []
            for size in sizes:
                for direction in ("up", "down"):
                    measure = stt_up if direction == "up" else stt_down
                    ours = await measure(session, size, seconds, progress)
                    rtt = session.get_stats().rtt_ms
                    base = None
                    if link is not None:
                        base = await (link.up if direction == "up" else link.down)(
                            size, seconds, progress)
                    rows.append(goodput_row(direction, size, ours, base, rtt))
            results["goodput"] = rows
        if kind in ("latency", "all"):
            ours_times = await stt_pings(session, count, progress)
            raw_times = await link.pings(count, progress) if link is not None else None
            results["latency"] = latency_summary(ours_times, raw_times)
        if kind == "sessions":
            results["sessions"] = await remote_handshakes(node, address, peer_id, count,
                                                          progress)
    finally:
        if link is not None:
            await link.close()
    await session.close()
    return results


async def remote_handshakes(node: Any, address: tuple[str, int], peer_id: bytes, count: int,
                            progress: Progress) -> dict[str, Any]:
    """Handshakes per second, ``count`` (at most MAX_REMOTE_SESSIONS - 1) at once."""
    count = max(1, min(count, MAX_REMOTE_SESSIONS - 1))
    progress(f"{count} concurrent handshakes…")
    sessions: list[Any] = []

    async def one() -> None:
        sessions.append(await node.connect(address, peer_id, timeout=CONNECT_TIMEOUT * 3))

    start = time.perf_counter()
    async with anyio.create_task_group() as group:
        for _ in range(count):
            group.start_soon(one)
    elapsed = time.perf_counter() - start
    for session in sessions:
        await session.close()
    return {"sessions": count, "handshakes_per_s": count / elapsed}
