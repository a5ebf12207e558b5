"""Node lifecycle in both runtimes (issue 22): start()/close() in any order and from any task,
one public surface, the dual-stack default bind, the loopback rule, serve() handler failures
and the ``stt.*`` loggers."""

from __future__ import annotations

import ast
import asyncio
import errno
import logging
import socket
import time
from collections import deque
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import stt_anyio
import stt_asyncio
from stt_proto import Endpoint, EndpointConfig, SessionClosed, UsageError
from stt_runtime.udp_io import UdpIO
from stt_runtime.workers import HANDLER_FAILED

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")

# asyncio and uvloop run stt_asyncio; trio and anyio-on-asyncio run stt_anyio. Test bodies use
# anyio's task groups and timeouts, which work under all four.
RUNTIMES = ["asyncio", "uvloop", "trio", "anyio-asyncio"]
Main = Callable[[Any], Awaitable[None]]
HAS_IPV6 = socket.has_ipv6 and socket.has_dualstack_ipv6()


def run_in(runtime: str, main: Main) -> None:
    """Run ``main(STTNode)`` with the runtime's node class on the runtime's loop."""
    if runtime == "asyncio":
        asyncio.run(main(stt_asyncio.STTNode))  # type: ignore[arg-type]
    elif runtime == "uvloop":
        uvloop = pytest.importorskip("uvloop")
        uvloop.run(main(stt_asyncio.STTNode))
    elif runtime == "trio":
        anyio.run(main, stt_anyio.STTNode, backend="trio")
    else:
        anyio.run(main, stt_anyio.STTNode, backend="asyncio")


async def echo_once(server: Any, accepted: list[Any] | None = None) -> None:
    """Accept one session (kept in ``accepted``) and echo one message of its first stream."""
    session = await server.accept()
    if accepted is not None:
        accepted.append(session)
    stream = await session.accept_stream()
    await stream.send(await stream.receive())


# -- start/close in any order, from any task (22.3) -----------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES)
def test_nodes_close_in_start_order_and_from_other_tasks(runtime: str) -> None:
    """Not LIFO: a closes before b, though a started first; c is closed by another task.
    stt_anyio entered a task group in start() and exited it in close(), which trio reported
    as nursery misnesting and asyncio as a cancel scope exited in the wrong task."""

    async def main(node_class: Any) -> None:
        a, b, c = node_class(), node_class(), node_class()
        with anyio.fail_after(10):
            await a.start()
            await b.start()
            async with anyio.create_task_group() as group:
                group.start_soon(echo_once, b)
                session = await a.connect(("127.0.0.1", b.address[1]), b.node_id)
                stream = session.open_stream()
                await stream.send(b"ping")
                assert await stream.receive() == b"ping"
            await a.close()  # first started, first closed
            await b.close()
            async with anyio.create_task_group() as group:
                group.start_soon(c.start)  # started by one task ...
            async with anyio.create_task_group() as group:
                group.start_soon(c.close)  # ... closed by another
            await c.close()  # twice is harmless

    run_in(runtime, main)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_node_closed_from_another_task_wakes_its_accept(backend: str) -> None:
    async def main() -> None:
        node = stt_anyio.STTNode()
        raised: list[BaseException] = []

        async def wait_accept() -> None:
            try:
                await node.accept()
            except UsageError as exc:
                raised.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                group.start_soon(node.start)
            async with anyio.create_task_group() as group:
                group.start_soon(wait_accept)
                await anyio.sleep(0.05)
                group.start_soon(node.close)
        assert raised and "closed" in str(raised[0])

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_node_left_open_does_not_hang_the_run(backend: str) -> None:
    """The node's own task lives outside the caller's tree: a run that forgets close() still
    ends (trio cancels system tasks, asyncio's runner cancels leftover tasks)."""

    async def main() -> None:
        node = stt_anyio.STTNode()
        await node.start()
        assert node.address[1] > 0

    started = time.monotonic()
    anyio.run(main, backend=backend)
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
@pytest.mark.parametrize("transport", ["udp", "websocket"])
def test_anyio_start_that_fails_or_is_cancelled_leaves_nothing_running(
        backend: str, transport: str) -> None:
    async def main() -> None:
        with anyio.fail_after(5):
            async with stt_anyio.STTNode(host="127.0.0.1", transport=transport) as taken:
                clash = stt_anyio.STTNode(host="127.0.0.1", port=taken.address[1],
                                          transport=transport)
                with pytest.raises(OSError):
                    await clash.start()  # the port is taken
                await clash.close()  # harmless
            cancelled = stt_anyio.STTNode(transport=transport)
            with anyio.move_on_after(0):
                await cancelled.start()
            await cancelled.close()
            with pytest.raises(UsageError):
                await cancelled.accept()

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_close_with_a_full_socket_does_not_race_the_driver(
        backend: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """close() waited for writability itself while the driver waited on the same socket:
    trio allows one waiter per direction (BusyResourceError)."""

    import stt_anyio.node

    monkeypatch.setattr(stt_anyio.node, "CLOSE_LINGER", 0.05)  # nothing will be acknowledged

    async def main() -> None:
        async with stt_anyio.STTNode(host="127.0.0.1") as server:
            client = stt_anyio.STTNode(host="127.0.0.1")
            await client.start()
            session = await client.connect(server.address, server.node_id)
            monkeypatch.setattr(UdpIO, "send", lambda self, out: False)  # "the socket is full"
            await session.send_datagram(b"x" * 500)  # unreliable: close() need not linger
            await anyio.sleep(0.02)
            assert client._out  # queued, the driver waiting for writability
            with anyio.fail_after(5):
                await client.close()

    anyio.run(main, backend=backend)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_anyio_driver_failure_is_logged_and_ends_waits(
        backend: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The node's own task must never raise (a trio system task's exception crashes the whole
    run with TrioInternalError): it logs, and every wait on the node ends."""

    def broken(self: Any) -> None:
        raise RuntimeError("a bug in the driver")

    async def main() -> None:
        node = stt_anyio.STTNode(host="127.0.0.1")
        await node.start()
        monkeypatch.setattr(stt_anyio.STTNode, "_drain", broken)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as group:
                async def wait_accept() -> None:
                    with pytest.raises(UsageError):
                        await node.accept()

                group.start_soon(wait_accept)
                await anyio.sleep(0.01)
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as poke:
                    poke.sendto(b"wake the driver", node.address)
        monkeypatch.undo()
        await node.close()

    with caplog.at_level(logging.ERROR, logger="stt.node"):
        anyio.run(main, backend=backend)
    assert any("driver failed" in r.getMessage() for r in caplog.records)


# -- one surface (22.4) ---------------------------------------------------------------------------

def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def test_both_runtimes_expose_the_same_public_surface() -> None:
    assert _public(stt_anyio.STTNode) == _public(stt_asyncio.STTNode)
    assert _public(stt_anyio.Session) == _public(stt_asyncio.Session)
    # an anyio stream adds exactly anyio's ObjectStream interface to the asyncio stream's
    anyio_stream, asyncio_stream = _public(stt_anyio.Stream), _public(stt_asyncio.Stream)
    assert asyncio_stream <= anyio_stream
    assert anyio_stream - asyncio_stream <= _public(anyio.abc.ObjectStream)
    assert "sessions" in _public(stt_anyio.STTNode)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_sessions_iterates_inbound_sessions_until_close(runtime: str) -> None:
    async def main(node_class: Any) -> None:
        seen: list[bytes] = []
        with anyio.fail_after(10):
            async with node_class() as server, node_class() as client:

                async def collect() -> None:
                    async for session in server.sessions():
                        seen.append(session.peer_id)

                async with anyio.create_task_group() as group:
                    group.start_soon(collect)
                    await client.connect(server.address, server.node_id)
                    await client.connect(server.address, server.node_id)
                    while len(seen) < 2:
                        await anyio.sleep(0.01)
                    await server.close()  # ends the iteration
        assert seen == [client.node_id] * 2

    run_in(runtime, main)


# -- the dual-stack default (22.6) ----------------------------------------------------------------

@pytest.mark.parametrize("runtime", RUNTIMES)
@pytest.mark.parametrize("loopback", ["127.0.0.1", "::1"])
def test_default_nodes_reach_each_other_over_ipv4_and_ipv6(runtime: str, loopback: str) -> None:
    if loopback == "::1" and not HAS_IPV6:
        pytest.skip("no IPv6 on this machine")

    async def main(node_class: Any) -> None:
        with anyio.fail_after(10):
            accepted: list[Any] = []
            async with node_class() as server, node_class() as client:
                assert node_class().settings.socket.host is None
                assert server.address[0] == ("::" if HAS_IPV6 else "0.0.0.0")
                port = server.address[1]
                async with anyio.create_task_group() as group:
                    group.start_soon(echo_once, server, accepted)
                    session = await client.connect((loopback, port), server.node_id)
                    stream = session.open_stream()
                    await stream.send(b"dual")
                    assert await stream.receive() == b"dual"
                # plain IPv4 for an IPv4 peer, never "::ffff:127.0.0.1"
                assert session.remote_address == (loopback, port)
                inbound = accepted[0]
                assert inbound.remote_address == (loopback, client.address[1])

    run_in(runtime, main)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_loopback_node_refuses_at_once_to_dial_a_routable_address(runtime: str) -> None:
    async def main(node_class: Any) -> None:
        async with node_class(host="127.0.0.1", handshake_timeout=5.0) as node:
            started = time.monotonic()
            with pytest.raises(UsageError, match=r"127\.0\.0\.1") as info:
                await node.connect(("198.51.100.7", 9000), bytes(32))
            assert time.monotonic() - started < 0.5
            assert "198.51.100.7" in str(info.value)
            assert node.get_stats()["sessions_total"] == 0  # nothing was started
        if HAS_IPV6:
            async with node_class(host="::1") as node:
                with pytest.raises(UsageError, match="::1"):
                    await node.connect(("2001:db8::1", 9000), bytes(32))

    run_in(runtime, main)


# -- serve(): a failing handler closes its session (22.9) -----------------------------------------

async def failing_handler(session: Any) -> None:
    stream = await session.accept_stream()
    await stream.receive()
    raise KeyError("no such thing")


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_failing_serve_handler_closes_its_session_at_once(
        runtime: str, caplog: pytest.LogCaptureFixture) -> None:
    async def main(node_class: Any) -> None:
        async with node_class() as server, node_class() as client, \
                anyio.create_task_group() as group:
            group.start_soon(server.serve, failing_handler)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            await stream.send(b"request")
            with anyio.fail_after(2), pytest.raises(SessionClosed) as info:
                await stream.receive()  # waited forever before
            group.cancel_scope.cancel()
        assert info.value.error_code == HANDLER_FAILED != 0
        assert "KeyError" in info.value.reason and "no such thing" in info.value.reason

    with caplog.at_level(logging.WARNING, logger="stt"):
        run_in(runtime, main)
    failures = [r for r in caplog.records if r.name == "stt.workers"]
    assert failures and failures[0].levelno == logging.WARNING
    assert failures[0].exc_info is not None and failures[0].exc_info[0] is KeyError


# -- logging (22.12) ------------------------------------------------------------------------------

class _RefusingSocket:
    """A socket whose every send fails as an unreachable network would."""

    family = socket.AF_INET

    def getsockopt(self, *args: Any) -> int:
        raise OSError(errno.ENOPROTOOPT, "no offload here")

    def setsockopt(self, *args: Any) -> None:
        raise OSError(errno.ENOPROTOOPT, "no offload here")

    def sendto(self, data: bytes, addr: Any) -> int:
        raise OSError(errno.ENETUNREACH, "Network is unreachable")


def test_send_errors_are_logged_once_at_warning_then_at_debug(
        caplog: pytest.LogCaptureFixture) -> None:
    io = UdpIO(_RefusingSocket(), offload=False)  # type: ignore[arg-type]
    out: deque[tuple[bytes | bytearray, tuple[str, int]]] = deque(
        (b"x" * 100, ("192.0.2.1", 9)) for _ in range(3))
    with caplog.at_level(logging.DEBUG, logger="stt.udp"):
        assert io.send(out)
    assert io.send_errors == 3 and not out
    levels = [r.levelno for r in caplog.records if r.name == "stt.udp"]
    assert levels == [logging.WARNING, logging.DEBUG, logging.DEBUG]
    assert "192.0.2.1" in caplog.records[0].getMessage()


def test_endpoint_drops_are_logged_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    endpoint = Endpoint(EndpointConfig())
    with caplog.at_level(logging.DEBUG, logger="stt.endpoint"):
        endpoint.receive_datagram(b"\xff junk from a hostile host", ("192.0.2.9", 4), 0.0)
    drops = [r for r in caplog.records if r.name == "stt.endpoint"]
    assert len(drops) == 1 and drops[0].levelno == logging.DEBUG
    assert sum(endpoint.get_stats().dropped.values()) == 1


def test_the_library_never_prints() -> None:
    root = Path(__file__).resolve().parent.parent
    offenders = []
    for package in ("stt_proto", "stt_asyncio", "stt_anyio"):
        for path in sorted((root / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id == "print"):
                    offenders.append(f"{path.relative_to(root)}:{node.lineno}")
    assert offenders == []
