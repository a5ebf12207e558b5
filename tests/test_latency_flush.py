"""A default stream's send defers its poll (so that a message and the stream's close leave
together), but not past the writing task's next wait on the node: an echo's answer leaves
before the echo task waits for the next message, instead of on the loop's next pass; and on
trio the echo's driver is not woken for it (a cancelled wait and a task switch per message);
nor does the anyio driver move its wait's deadline on every message."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from typing import Any

import anyio
import attrs
import pytest

from stt_bench.workloads.on_trio import echo_stream
from stt_proto import STTError

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
ROUNDS = 60
BINDINGS = [("stt_asyncio", "asyncio"), ("stt_anyio", "trio"), ("stt_anyio", "asyncio")]


def _run(binding: str, backend: str, main: Callable[[Any], Any]) -> None:
    if binding == "stt_asyncio":
        from stt_asyncio import STTNode as AsyncioNode

        asyncio.run(main(AsyncioNode))
    else:
        from stt_anyio import STTNode as AnyioNode

        anyio.run(main, AnyioNode, backend=backend)


class _Recorded:
    """A stream's readable signal that notes each wait in ``order``."""

    def __init__(self, inner: Any, order: list[str]) -> None:
        self._inner, self._order = inner, order

    async def wait(self) -> None:
        self._order.append("wait")
        await self._inner.wait()

    def set(self) -> None:
        self._inner.set()


async def _echoed(node_class: Any, count: Callable[[Any], int], **settings: Any) -> int:
    """An echo between two nodes of ``node_class`` (``settings``): ten round trips to warm up,
    then ``ROUNDS`` more, over which it returns what ``count(server)`` grew by."""
    async with node_class(host="127.0.0.1", **settings) as server, \
            node_class(host="127.0.0.1", **settings) as client, \
            anyio.create_task_group() as group:
        _, stream = await echo_stream(server, client, group)
        for _ in range(10):
            await stream.send(b"ping")
            await stream.receive()
        before = count(server)
        for _ in range(ROUNDS):
            await stream.send(b"ping")
            assert await stream.receive() == b"ping"
        grew = count(server) - before
        group.cancel_scope.cancel()
    return grew


@pytest.mark.parametrize(("binding", "backend"), BINDINGS)
def test_an_echo_answer_leaves_before_the_echo_waits_again(binding: str, backend: str) -> None:
    order: list[str] = []

    async def main(node_class: Any) -> None:
        async with node_class(host="127.0.0.1") as server, \
                node_class(host="127.0.0.1") as client, anyio.create_task_group() as group:
            async def serve() -> None:
                session = await server.accept()
                stream = await session.accept_stream()
                stream._readable = _Recorded(stream._readable, order)
                send = server._udp.send

                def sent(out: Any) -> bool:
                    order.append("sent")
                    result: bool = send(out)
                    return result

                server._udp.send = sent
                async for message in stream:
                    await stream.send(message)
                    order.append("wrote")

            group.start_soon(serve)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            for _ in range(ROUNDS):
                await stream.send(b"ping")
                assert await stream.receive() == b"ping"
            group.cancel_scope.cancel()

    _run(binding, backend, main)
    # each answer leaves ("sent") after it was written and before the echo's next wait;
    # before, the wait came first and the answer left on the loop's next pass (or after a
    # wake-up of the driver)
    triples = list(zip(order, order[1:], order[2:], strict=False))
    assert triples.count(("wrote", "sent", "wait")) >= ROUNDS - 2
    assert triples.count(("wrote", "wait", "sent")) <= 2


def test_a_trio_echo_driver_is_not_woken_for_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver waits on the socket once per message it reads; before, the echo's deferred
    send cancelled that wait once more per message."""
    import stt_anyio.node
    from stt_anyio import STTNode as Node

    waits: dict[int, int] = {}
    bind = stt_anyio.node.bind

    def counting_bind() -> Any:
        primitives = bind()
        wait_readable = primitives.wait_readable

        async def counted(sock: Any) -> None:
            waits[sock.fileno()] = waits.get(sock.fileno(), 0) + 1
            await wait_readable(sock)

        return attrs.evolve(primitives, wait_readable=counted)

    monkeypatch.setattr(stt_anyio.node, "bind", counting_bind)
    server_waits = anyio.run(_echoed, Node, lambda server: waits.get(server._sock.fileno(), 0),
                             backend="trio")
    assert server_waits <= ROUNDS + ROUNDS // 10  # was 2 per round trip


@pytest.mark.parametrize(("binding", "backend"), BINDINGS)
def test_a_message_and_the_close_after_it_still_leave_together(binding: str,
                                                                backend: str) -> None:
    """What the task writes before it waits leaves in one poll: an answer and the stream's
    close, one datagram."""
    datagrams: list[int] = []

    async def main(node_class: Any) -> None:
        async with node_class(host="127.0.0.1") as server, \
                node_class(host="127.0.0.1") as client, anyio.create_task_group() as group:
            async def serve() -> None:
                session = await server.accept()
                stream = await session.accept_stream()
                message = await stream.receive()
                send = server._udp.send

                def counted(out: Any) -> bool:
                    datagrams.append(len(out))
                    result: bool = send(out)
                    return result

                server._udp.send = counted
                await stream.send(message)
                await stream.close()
                with pytest.raises(STTError):  # the client's FIN ends it
                    await stream.receive()  # a wait on the node: the poll runs first

            group.start_soon(serve)
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            await stream.send(b"request")
            assert await stream.receive() == b"request"
            await stream.close()
            with pytest.raises(STTError):  # the server's FIN came with its answer
                await stream.receive()
            group.cancel_scope.cancel()

    _run(binding, backend, main)
    assert datagrams[0] == 1  # the answer and its FIN in one datagram, one send


class _CountedScope:
    """A cancel scope that counts how often its deadline is set."""

    def __init__(self, inner: Any, sets: list[int]) -> None:
        self._inner, self._sets = inner, sets

    @property
    def deadline(self) -> float:
        value: float = self._inner.deadline
        return value

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._sets[0] += 1
        self._inner.deadline = value

    @property
    def cancelled_caught(self) -> bool:
        caught: bool = self._inner.cancelled_caught
        return caught

    def cancel(self) -> None:
        self._inner.cancel()

    def __enter__(self) -> _CountedScope:
        self._inner.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._inner.__exit__(*exc)


@pytest.mark.parametrize("backend", ["trio", "asyncio"])
def test_the_drivers_wait_keeps_its_deadline_across_messages(
        monkeypatch: pytest.MonkeyPatch, backend: str) -> None:
    """Each message moves the endpoint's deadline later (the ACK's timer, then the sent
    packet's); the driver's wait keeps the earlier one instead of updating its cancel scope
    per message, and timers still run: the exchange completes and keeps completing. (Both
    nodes send at once, no_delay: no kick moves a deadline to wake a driver.)"""
    import stt_anyio.node
    from stt_anyio import STTNode as Node

    sets = [0]
    bind = stt_anyio.node.bind

    def counting_bind() -> Any:
        primitives = bind()
        scope = primitives.scope

        def counted(deadline: float) -> _CountedScope:
            return _CountedScope(scope(deadline), sets)

        return attrs.evolve(primitives, scope=counted)

    monkeypatch.setattr(stt_anyio.node, "bind", counting_bind)
    moved = anyio.run(functools.partial(_echoed, Node, lambda _: sets[0], no_delay=True),
                      backend=backend)
    assert moved <= ROUNDS // 4  # both nodes: was about one per message each
