"""The far end of ``stt bench --to``: ``stt bench --serve``.

An STT node that accepts sessions from any peer and serves each stream by its first message, a
JSON request (``{"op": ...}``):

* ``hello``: replies with the protocol version, the raw UDP baseline's port (or null) and the
  longest measurement it allows.
* ``sink``: reads every message to the peer's FIN and replies with the bytes received after the
  first arrival and the span from the first to the last (``stt_bench.common.Meter``'s timing).
* ``source`` (``seconds``, ``frame_size``): opens a stream of its own with that frame size,
  sends 1 MiB messages on it for ``seconds`` then closes it, and replies with the bytes sent.
* ``echo``: sends every message back, to the peer's FIN.
* ``raw`` (``token``, ``key``): the raw UDP baseline on a second port. The client proves it owns
  its UDP address (a datagram ``H`` + token is answered by ``C`` + token + a nonce sent to that
  address, which the client repeats on this stream), so the server never sends a blast to an
  address whose owner did not ask for it. Then, on this stream, ``report`` returns what the raw
  port received (sealed with ``key``) and resets the count, and ``source`` sends sealed
  datagrams to the proven address for ``seconds``. The registration ends with the stream.

A bad request gets ``{"error": ...}`` and the stream's close; hostile input never stops the
server (a failing stream ends at most its own session).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Callable
from typing import Any

import anyio
import attrs
from cryptography.exceptions import InvalidTag

from stt_proto import STTError
from stt_proto.config import frame_size as check_frame_size

from ..baselines.aead import make_sealer
from ..common import Meter, MiB

PROTOCOL_VERSION = 1
MAX_REQUEST = 4096  # bytes of JSON in one request
MAX_SECONDS = 60.0  # the longest measurement a client may ask for
MAX_RAW_CLIENTS = 64
TOKEN_SIZE = 16
HELLO = b"H"  # + token, padded to HELLO_SIZE: at least as big as the challenge it draws
CHALLENGE = b"C"  # + token + nonce
PING = b"P"
HELLO_SIZE = 48
CONTROL_MAX = 64  # raw datagrams up to this size are control (hello, ping), bigger ones data


class BenchProtocolError(ValueError):
    """A request that the bench protocol does not allow; its text goes back to the peer."""


def encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def parse_request(data: bytes) -> dict[str, Any]:
    """The JSON object in ``data`` with a string ``op``; BenchProtocolError otherwise."""
    if len(data) > MAX_REQUEST:
        raise BenchProtocolError(f"request of {len(data)} bytes (at most {MAX_REQUEST})")
    try:
        request = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise BenchProtocolError("request is not JSON") from None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        raise BenchProtocolError("request is not an object with a string 'op'")
    return request


def seconds_of(request: dict[str, Any]) -> float:
    value = request.get("seconds")
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not 0 < value <= MAX_SECONDS:
        raise BenchProtocolError(f"seconds must be a number in (0, {MAX_SECONDS:g}]")
    return float(value)


def frame_size_of(request: dict[str, Any]) -> int:
    try:
        return check_frame_size(request.get("frame_size"), "frame_size")
    except ValueError as exc:
        raise BenchProtocolError(str(exc)) from None


def hex_field(request: dict[str, Any], name: str, size: int) -> bytes:
    value = request.get(name)
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != size:
        raise BenchProtocolError(f"{name} must be {size} bytes in hex")
    return raw


def address_key(addr: Any) -> tuple[str, int]:
    """(host, port) of a socket address; IPv4-mapped IPv6 hosts as plain IPv4."""
    host = str(addr[0])
    return (host[7:] if host.startswith("::ffff:") else host), int(addr[1])


@attrs.define(slots=True, eq=False)
class RawClient:
    """One client's raw-baseline registration: its key, its proven address, its count."""

    token: bytes
    key: bytes
    nonce: bytes
    open_: Callable[[bytearray, int], int]
    claimed: Any = None  # the socket address that sent the hello
    proven: Any = None  # the same, once the nonce came back over the session
    meter: Meter = attrs.field(factory=Meter)


def open_raw_socket(host: str | None, port: int) -> socket.socket:
    """A non-blocking UDP socket for the raw baseline: on ``host``, or dual-stack."""
    if host is None:
        try:
            sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            bind: tuple[Any, ...] = ("::", port)
        except OSError:
            sock, bind = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), ("0.0.0.0", port)
    else:
        family, _, _, _, bind = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, 8 * MiB)
    sock.bind(bind)
    sock.setblocking(False)
    return sock


async def blast_to(sock: socket.socket, address: Any, seal: Callable[[int], bytes],
                   seconds: float) -> int:
    """Send sealed datagrams to ``address`` as fast as the socket takes them; datagrams sent."""
    counter = 0
    done = anyio.current_time() + seconds
    while anyio.current_time() < done:
        for _ in range(64):
            try:
                sock.sendto(seal(counter), address)
            except BlockingIOError:
                await anyio.wait_writable(sock)
                break
            except OSError:  # e.g. ICMP unreachable reported on a later send
                break
            counter += 1
        await anyio.lowlevel.checkpoint()
    return counter


class BenchServer:
    """Serves the bench protocol on one node (either runtime) and one optional raw socket."""

    def __init__(self, raw_sock: socket.socket | None) -> None:
        self.raw_sock = raw_sock
        self.raw_port: int | None = raw_sock.getsockname()[1] if raw_sock else None
        self.tokens: dict[bytes, RawClient] = {}
        self.by_address: dict[tuple[str, int], RawClient] = {}
        self.message = os.urandom(MiB)

    # -- STT side ---------------------------------------------------------------------------------

    async def handle_session(self, session: Any) -> None:
        """Serve every stream of ``session`` at once until it ends."""
        async with anyio.create_task_group() as group:
            async for stream in session.streams():
                group.start_soon(self.handle_stream, session, stream)

    async def handle_stream(self, session: Any, stream: Any) -> None:
        try:
            try:
                request = parse_request(await stream.receive())
                await self.dispatch(session, stream, request)
            except BenchProtocolError as exc:
                await stream.send(encode({"error": str(exc)}))
            await stream.close()
        except STTError:
            pass  # the peer reset the stream or left: nothing to serve

    async def dispatch(self, session: Any, stream: Any, request: dict[str, Any]) -> None:
        op = request["op"]
        if op == "hello":
            await stream.send(encode({"version": PROTOCOL_VERSION, "raw_udp_port": self.raw_port,
                                      "max_seconds": MAX_SECONDS}))
        elif op == "sink":
            meter = Meter()
            async for message in stream:
                meter.note(len(message))
            await stream.send(encode({"bytes": meter.bytes,
                                      "seconds": meter.last - (meter.first or meter.last)}))
        elif op == "source":
            seconds, size = seconds_of(request), frame_size_of(request)
            out = session.open_stream(max_frame_size=size)
            sent = 0
            done = anyio.current_time() + seconds
            while anyio.current_time() < done:
                await out.send(self.message)
                sent += len(self.message)
            await out.close()
            await stream.send(encode({"bytes": sent}))
        elif op == "echo":
            async for message in stream:
                await stream.send(message)
        elif op == "raw":
            await self.serve_raw(stream, request)
        else:
            raise BenchProtocolError(f"unknown op {op[:40]!r}")

    async def serve_raw(self, stream: Any, request: dict[str, Any]) -> None:
        if self.raw_sock is None:
            raise BenchProtocolError("this server runs no raw UDP baseline")
        if len(self.tokens) >= MAX_RAW_CLIENTS:
            raise BenchProtocolError("too many raw baseline clients at once")
        token, key = hex_field(request, "token", TOKEN_SIZE), hex_field(request, "key", 32)
        if token in self.tokens:
            raise BenchProtocolError("token in use")
        client = RawClient(token, key, os.urandom(16), make_sealer(1200, key)[1])
        self.tokens[token] = client
        try:
            await stream.send(encode({"port": self.raw_port}))
            async for message in stream:
                try:
                    reply = await self.raw_command(client, parse_request(message))
                except BenchProtocolError as exc:
                    reply = {"error": str(exc)}
                await stream.send(encode(reply))
        finally:
            del self.tokens[token]
            self.forget_address(client)

    async def raw_command(self, client: RawClient, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "prove":
            if client.claimed is None or hex_field(request, "nonce", 16) != client.nonce:
                raise BenchProtocolError("wrong or early nonce")
            client.proven = client.claimed
            return {"proven": True}
        if client.proven is None:
            raise BenchProtocolError("the raw UDP address is not proven yet")
        if op == "report":
            meter, client.meter = client.meter, Meter()
            return {"bytes": meter.bytes, "seconds": meter.last - (meter.first or meter.last)}
        if op == "source":
            seconds, size = seconds_of(request), frame_size_of(request)
            assert self.raw_sock is not None
            sent = await blast_to(self.raw_sock, client.proven, make_sealer(size, client.key)[0],
                                  seconds)
            return {"datagrams": sent}
        raise BenchProtocolError(f"unknown raw op {op[:40]!r}")

    def forget_address(self, client: RawClient) -> None:
        """Drop ``client``'s claimed address (unless another client has claimed it since)."""
        if client.claimed is not None:
            key = address_key(client.claimed)
            if self.by_address.get(key) is client:
                del self.by_address[key]

    # -- raw UDP side -----------------------------------------------------------------------------

    async def run_raw(self) -> None:
        """Answer hellos and pings, count sealed data, until cancelled."""
        sock = self.raw_sock
        assert sock is not None
        buffer = bytearray(65536)
        while True:
            await anyio.wait_readable(sock)
            for _ in range(256):  # then let the node's tasks run
                try:
                    size, addr = sock.recvfrom_into(buffer)
                except BlockingIOError:
                    break
                except OSError:
                    continue  # an ICMP error reported on this socket
                self.on_raw_datagram(sock, buffer, size, addr)
            await anyio.lowlevel.checkpoint()

    def on_raw_datagram(self, sock: socket.socket, buffer: bytearray, size: int,
                        addr: Any) -> None:
        client = self.by_address.get(address_key(addr))
        if client is not None and client.proven is not None and size > CONTROL_MAX:
            try:  # noqa: SIM105  (per datagram: no context manager)
                client.meter.note(client.open_(buffer, size))
            except (InvalidTag, ValueError):
                pass  # not sealed with this client's key
            return
        kind = bytes(buffer[:1])
        try:
            if kind == PING and client is not None and client.proven is not None:
                sock.sendto(buffer[:size], addr)  # same size back: no amplification
            elif kind == HELLO and size >= HELLO_SIZE:
                token = bytes(buffer[1:1 + TOKEN_SIZE])
                owner = self.tokens.get(token)
                if owner is not None and owner.proven is None:
                    self.forget_address(owner)
                    owner.claimed = addr
                    self.by_address[address_key(addr)] = owner
                    sock.sendto(CHALLENGE + token + owner.nonce, addr)
        except OSError:
            pass  # the reply could not leave: the client retries


def print_listening(node: Any, server: BenchServer, as_json: bool) -> None:
    """The lines a client needs: address, node id and the raw port (JSON: one object)."""
    host, port = node.address[:2]
    shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if as_json:
        print(json.dumps({"listening": shown, "node_id": node.node_id.hex(),
                          "raw_udp_port": server.raw_port}), flush=True)
        return
    print(f"listening on {shown}", flush=True)
    print(f"node id {node.node_id.hex()}", flush=True)
    if server.raw_port is not None:
        print(f"raw UDP baseline on port {server.raw_port}", flush=True)


async def serve(node: Any, raw_host: str | None, raw_port: int | None, as_json: bool) -> None:
    """Run ``node`` as a bench server until cancelled; ``raw_port`` None: no raw baseline."""
    raw_sock = None if raw_port is None else open_raw_socket(raw_host, raw_port)
    server = BenchServer(raw_sock)
    try:
        async with node:
            print_listening(node, server, as_json)
            async with anyio.create_task_group() as group:
                if raw_sock is not None:
                    group.start_soon(server.run_raw)
                await node.serve(server.handle_session)
    finally:
        if raw_sock is not None:
            raw_sock.close()
