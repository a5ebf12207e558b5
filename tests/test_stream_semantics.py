"""Stream and session semantics every runtime must share (asyncio, uvloop, trio, anyio on
asyncio), over real loopback sockets: a reset is never a clean end, stt_anyio's streams raise
anyio's exceptions, every STTError is importable everywhere, dropped datagrams are counted,
and finished streams leave no wrappers behind."""

from __future__ import annotations

import array
import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import attrs
import pytest

import stt_anyio
import stt_asyncio
from stt_proto import (
    BufferTooSmall,
    SessionClosed,
    SessionStats,
    StreamClosed,
    StreamClosedLocally,
    StreamLimitError,
    StreamReset,
    STTError,
    UsageError,
)

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
RUNTIMES = ["asyncio", "uvloop", "trio", "anyio-asyncio"]
ANYIO_RUNTIMES = ["trio", "anyio-asyncio"]


@attrs.frozen
class Runtime:
    """One of the four ways to run STT; test bodies use anyio's primitives, which work on all."""

    name: str

    @property
    def is_anyio(self) -> bool:
        return self.name in ANYIO_RUNTIMES

    def node(self, **settings: Any) -> Any:
        cls = stt_anyio.STTNode if self.is_anyio else stt_asyncio.STTNode
        return cls(host="127.0.0.1", **settings)

    def run(self, main: Callable[[], Awaitable[None]]) -> None:
        async def bounded() -> None:
            with anyio.fail_after(10):
                await main()

        if self.name == "asyncio":
            asyncio.run(bounded())
        elif self.name == "uvloop":
            uvloop = pytest.importorskip("uvloop")
            uvloop.run(bounded())
        elif self.name == "trio":
            anyio.run(bounded, backend="trio")
        else:
            anyio.run(bounded, backend="asyncio")


@pytest.fixture(params=RUNTIMES)
def rt(request: pytest.FixtureRequest) -> Runtime:
    return Runtime(request.param)


@pytest.fixture(params=ANYIO_RUNTIMES)
def anyio_rt(request: pytest.FixtureRequest) -> Runtime:
    return Runtime(request.param)


@asynccontextmanager
async def connected(rt: Runtime, **settings: Any) -> AsyncIterator[tuple[Any, Any]]:
    """(client session, server session) between two fresh nodes."""
    async with rt.node(**settings) as server, rt.node(**settings) as client:
        session = await client.connect(server.address, server.node_id)
        peer = await server.accept()
        yield session, peer


async def until(condition: Callable[[], bool]) -> None:
    """Poll until ``condition`` holds (the runtime's own fail_after bounds the wait)."""
    while not condition():
        await anyio.sleep(0.002)


async def stream_pair(session: Any, peer: Any) -> tuple[Any, Any]:
    stream = session.open_stream(no_delay=True)
    await stream.send(b"first")
    incoming = await peer.accept_stream()
    assert await incoming.receive() == b"first"
    return stream, incoming


async def raised_in_blocked_receive(stream: Any,
                                    action: Callable[[], Awaitable[object]]) -> BaseException:
    """What ``stream.receive()`` raises when ``action`` runs while the receive is blocked."""
    outcome: list[BaseException] = []

    async def wait() -> None:
        try:
            await stream.receive()
        except BaseException as exc:
            outcome.append(exc)

    async with anyio.create_task_group() as group:
        group.start_soon(wait)
        await anyio.sleep(0.02)  # the reader is blocked in receive()
        await action()
    assert outcome, "receive() returned instead of raising"
    return outcome[0]


async def assert_reset(receive: Callable[[], Awaitable[object]], code: int, rt: Runtime) -> None:
    with pytest.raises(StreamReset) as caught:
        await receive()
    assert caught.value.error_code == code
    if rt.is_anyio:
        assert isinstance(caught.value, anyio.BrokenResourceError)
        assert isinstance(caught.value, stt_anyio.StreamReset)


# -- a reset is never a clean end ---------------------------------------------------------------


@pytest.mark.parametrize("when", ["waiting", "unread", "later"])
def test_a_reset_reaches_the_peer_as_a_reset_with_its_code(rt: Runtime, when: str) -> None:
    async def main() -> None:
        async with connected(rt) as (session, peer):
            stream, incoming = await stream_pair(session, peer)
            if when == "waiting":
                error = await raised_in_blocked_receive(incoming, lambda: stream.reset(42))
                assert isinstance(error, StreamReset) and error.error_code == 42
            else:
                if when == "unread":
                    await stream.send(b"never read")
                    await until(lambda: incoming.get_stats().bytes_buffered_in > 0)
                await stream.reset(42)
                await until(lambda: incoming.is_closed)
                if when == "later":
                    await anyio.sleep(0.05)
            await assert_reset(incoming.receive, 42, rt)
            await assert_reset(incoming.receive, 42, rt)  # it stays reset

            async def iterate() -> None:
                async for _ in incoming:
                    pytest.fail("a reset stream yielded a message")

            await assert_reset(iterate, 42, rt)
            await assert_reset(lambda: incoming.send(b"x"), 42, rt)  # STOP_SENDING reached it
            # The resetting side's own halves raise the reset too.
            await assert_reset(stream.receive, 42, rt)
            await assert_reset(lambda: stream.send(b"x"), 42, rt)
            assert stream.is_closed and incoming.is_closed

    rt.run(main)


def test_a_graceful_close_still_ends_iteration_cleanly(rt: Runtime) -> None:
    async def main() -> None:
        async with connected(rt) as (session, peer):
            stream, incoming = await stream_pair(session, peer)
            for index in range(3):
                await stream.send(b"m%d" % index)
            await stream.close()
            assert [message async for message in incoming] == [b"m0", b"m1", b"m2"]
            with pytest.raises(StreamClosed) as caught:
                await incoming.receive()
            assert not isinstance(caught.value, StreamReset)
            if rt.is_anyio:
                assert isinstance(caught.value, anyio.EndOfStream)
            with pytest.raises(StreamClosedLocally):  # a UsageError; anyio: ClosedResourceError
                await stream.send(b"late")
            await incoming.send(b"reply")  # the other half is still open
            await incoming.close()
            assert await stream.receive() == b"reply"
            with pytest.raises(StreamClosed):
                await stream.receive()
            assert stream.is_closed

    rt.run(main)


def test_receive_into_fills_the_callers_buffer(rt: Runtime) -> None:
    """receive_into: any writable bytes-like buffer; a buffer too small leaves the message
    unread; the stream's end and a reset are raised as receive() raises them."""
    big = bytes(range(256)) * 1200  # spans many frames: read out of the reassembly buffer

    async def main() -> None:
        async with connected(rt) as (session, peer):
            stream, incoming = await stream_pair(session, peer)
            for message in (b"small", big, b"", b"last"):
                await stream.send(message)
            await stream.close()
            buffer = bytearray(400_000)
            assert await incoming.receive_into(buffer) == 5 and buffer[:5] == b"small"
            with pytest.raises(BufferTooSmall) as caught:
                await incoming.receive_into(bytearray(1000))
            assert caught.value.needed == len(big) and isinstance(caught.value, ValueError)
            with pytest.raises(TypeError, match="writable"):
                await incoming.receive_into(bytes(len(big)))  # type: ignore[arg-type]
            view = memoryview(buffer)[100:]  # a slice of a buffer is a buffer
            assert await incoming.receive_into(view) == len(big) and view[:len(big)] == big
            assert await incoming.receive_into(array.array("q", bytes(8))) == 0
            assert await incoming.receive() == b"last"
            with pytest.raises(StreamClosed):
                await incoming.receive_into(buffer)
            reset, reset_in = await stream_pair(session, peer)
            await reset.reset(9)
            await until(lambda: reset_in.is_closed)
            await assert_reset(lambda: reset_in.receive_into(buffer), 9, rt)

    rt.run(main)


def test_the_loss_of_the_session_reaches_a_blocked_receive(rt: Runtime) -> None:
    async def main() -> None:
        async with connected(rt) as (session, peer):
            stream, incoming = await stream_pair(session, peer)
            error = await raised_in_blocked_receive(incoming, lambda: session.close(7, "bye"))
            assert isinstance(error, SessionClosed) and error.error_code == 7
            assert error.by_peer and error.reason == "bye"
            if rt.is_anyio:
                assert isinstance(error, anyio.BrokenResourceError)
                assert isinstance(error, stt_anyio.SessionClosed)
            with pytest.raises(SessionClosed):
                await stream.send(b"x")

    rt.run(main)


# -- stt_anyio's streams are anyio streams ------------------------------------------------------


def test_anyio_stream_follows_anyios_contract_after_aclose(anyio_rt: Runtime) -> None:
    async def main() -> None:
        async with connected(anyio_rt) as (session, peer):
            stream, incoming = await stream_pair(session, peer)
            is_anyio_stream = isinstance(stream, anyio.abc.ObjectStream)
            assert is_anyio_stream
            await stream.send(b"last")
            await stream.aclose()
            with pytest.raises(anyio.ClosedResourceError):
                await stream.send(b"x")
            with pytest.raises(anyio.ClosedResourceError):
                await stream.receive()
            # The peer reads what was sent, then a clean end (the FIN) ...
            assert await incoming.receive() == b"last"
            with pytest.raises(anyio.EndOfStream):
                await incoming.receive()
            # ... and its sends fail with StreamReset once the STOP_SENDING arrives.
            with pytest.raises(anyio.BrokenResourceError) as caught:
                while True:
                    await incoming.send(b"y")
                    await anyio.sleep(0.002)
            assert isinstance(caught.value, StreamReset)
            assert stream.is_closed
            await until(lambda: not stream._session._streams)  # both halves done: forgotten

    anyio_rt.run(main)


def test_anyio_send_eof_closes_only_the_sending_half(anyio_rt: Runtime) -> None:
    async def main() -> None:
        async with connected(anyio_rt) as (session, peer):
            stream, incoming = await stream_pair(session, peer)
            await stream.send_eof()
            with pytest.raises(anyio.ClosedResourceError) as caught:
                await stream.send(b"x")
            assert isinstance(caught.value, UsageError)
            await incoming.send(b"still open")
            assert await stream.receive() == b"still open"
            with pytest.raises(anyio.EndOfStream):
                await incoming.receive()

    anyio_rt.run(main)


# -- every error everywhere ---------------------------------------------------------------------


def _subclasses(cls: type) -> set[type]:
    found: set[type] = set()
    subs: list[type] = cls.__subclasses__()
    for sub in subs:
        found |= {sub} | _subclasses(sub)
    return found


def test_every_stt_error_is_importable_from_stt_proto_and_both_runtimes() -> None:
    import stt_proto.dht  # any error classes it defines count too

    errors = {cls for cls in _subclasses(STTError) | {STTError}
              if cls.__module__.startswith("stt_proto")}
    assert {"CryptoError", "DecodeError", "FrameError", "PacketError", "NoiseError",
            "ProtocolViolation"} <= {cls.__name__ for cls in errors}
    for cls in errors:
        assert getattr(stt_proto, cls.__name__, None) is cls, cls
        for runtime in (stt_asyncio, stt_anyio):
            exported = getattr(runtime, cls.__name__, None)
            assert inspect.isclass(exported) and issubclass(exported, cls), (runtime, cls)
            assert cls.__name__ in runtime.__all__
    # stt_anyio's own classes are the stt_proto ones and anyio's at once.
    assert issubclass(stt_anyio.StreamClosed, anyio.EndOfStream)
    assert issubclass(stt_anyio.StreamReset, anyio.BrokenResourceError)
    assert issubclass(stt_anyio.SessionClosed, anyio.BrokenResourceError)
    assert issubclass(stt_anyio.StreamClosedLocally, anyio.ClosedResourceError)


def test_anyio_turns_any_session_error_into_a_broken_resource_of_the_same_class() -> None:
    from stt_anyio.session import broken
    from stt_proto import FrameError, KeepAliveTimeout

    timeout = broken(KeepAliveTimeout("nothing heard for 30 s"))
    assert isinstance(timeout, KeepAliveTimeout) and isinstance(timeout, TimeoutError)
    assert isinstance(timeout, anyio.BrokenResourceError)
    assert str(timeout) == "nothing heard for 30 s"
    frame = broken(FrameError("bad frame"))
    assert isinstance(frame, FrameError) and frame.code == FrameError.code
    assert type(broken(FrameError("again"))) is type(frame)  # one class per STT class
    closed = broken(SessionClosed(9, "why", by_peer=True))
    assert type(closed) is stt_anyio.SessionClosed
    assert (closed.error_code, closed.reason, closed.by_peer) == (9, "why", True)
    assert broken(closed) is closed


# -- datagrams beyond the receive queue ---------------------------------------------------------


def test_datagrams_beyond_the_receive_queue_are_counted_as_dropped(rt: Runtime) -> None:
    from stt_runtime.session import MAX_QUEUED_DATAGRAMS

    total, size = MAX_QUEUED_DATAGRAMS + 300, 100

    async def main() -> None:
        async with connected(rt) as (session, peer):
            for index in range(total):
                await session.send_datagram(bytes([index % 256]) * size)
                if index % 100 == 99:
                    await anyio.sleep(0.005)  # under the sender's own queue limit
            sent: int = total - session.get_stats().datagrams_dropped

            def settled() -> bool:
                stats: SessionStats = peer.get_stats()
                delivered = stats.bytes_received // size
                return delivered + stats.datagrams_dropped_by_reason["receive_queue_full"] >= sent

            await until(settled)
            stats = peer.get_stats()
            dropped = stats.datagrams_dropped_by_reason["receive_queue_full"]
            assert dropped == sent - MAX_QUEUED_DATAGRAMS > 0
            assert stats.datagrams_dropped >= dropped
            assert stats.bytes_received == MAX_QUEUED_DATAGRAMS * size  # only what is delivered
            for index in range(MAX_QUEUED_DATAGRAMS):  # the first ones, in order
                assert await peer.receive_datagram() == bytes([index % 256]) * size

    rt.run(main)


# -- no wrapper outlives its stream -------------------------------------------------------------


def test_ten_thousand_peer_reset_streams_leave_no_wrappers(rt: Runtime) -> None:
    live, limit = 8, 264

    async def main() -> None:
        async with connected(rt, max_concurrent_streams=limit) as (session, peer):
            held = []
            for index in range(live):  # never accepted: they wait in the queue, alive
                stream = session.open_stream()
                await stream.send(b"live %d" % index)
                held.append(stream)
            await until(lambda: len(peer._incoming) == live)
            reset = 0
            while reset < 10_000:
                try:
                    stream = session.open_stream()
                except StreamLimitError:
                    await anyio.sleep(0.001)  # until MAX_STREAMS raises the allowance
                    continue
                await stream.reset(5)
                reset += 1
                if reset % 128 == 0:
                    await anyio.sleep(0)
            done = session.open_stream()
            await done.send(b"done")
            handed_out = []
            while True:
                incoming = await peer.accept_stream()
                try:
                    message = await incoming.receive()
                except StreamReset:
                    continue  # a reset stream queued before its RESET arrived: rare
                handed_out.append(message)
                if message == b"done":
                    break
            assert handed_out == [b"live %d" % index for index in range(live)] + [b"done"]
            assert len(peer._incoming) == 0
            assert len(peer._streams) == live + 1  # nothing of the 10,000 resets is left
            assert len(session._streams) == live + 1
            assert peer.get_stats().streams_open == live + 1

    rt.run(main)


def test_finished_streams_are_forgotten_by_both_sides(rt: Runtime) -> None:
    async def main() -> None:
        async with connected(rt) as (session, peer):
            async def answer() -> None:
                for _ in range(50):
                    incoming = await peer.accept_stream()
                    request = await incoming.receive()
                    await incoming.send(request.upper())
                    await incoming.close()

            async with anyio.create_task_group() as group:
                group.start_soon(answer)
                for index in range(50):
                    stream = session.open_stream()
                    await stream.send(b"ask %d" % index)
                    await stream.close()
                    assert await stream.receive() == b"ASK %d" % index
                    with pytest.raises(StreamClosed):
                        await stream.receive()
            await until(lambda: not session._streams and not peer._streams)
            assert session.get_stats().streams_open == 0

    rt.run(main)


# -- the core's side of it ----------------------------------------------------------------------


def test_core_reports_stop_sending_apart_from_a_reset() -> None:
    from stt_proto.events import StreamResetByPeer, StreamStopped

    from .conftest import make_pair

    pair = make_pair()
    client, server = pair.established()
    sid = client.open_stream()
    client.send_message(sid, b"request")
    client.close_stream(sid)
    pair.net.run(0.1)
    list(iter(server.next_event, None))
    server.send_message(sid, b"partial answer")
    client.stop_receiving(sid, 9)  # our half closed for receiving only
    pair.net.run(0.1)
    events = list(iter(server.next_event, None))
    assert StreamStopped(sid, 9) in events
    assert not any(isinstance(event, StreamResetByPeer) for event in events)
    assert server.receive_message(sid) == b"request"  # its receiving half is untouched
    with pytest.raises(UsageError):  # closed for sending (and here forgotten, being done)
        server.send_message(sid, b"more")
    pair.net.run(0.2)
    assert client.data is not None and server.data is not None
    assert client.data.streams.open_count == 0 and server.data.streams.open_count == 0


def test_core_reset_of_a_finished_unread_stream_forgets_it() -> None:
    from .conftest import make_pair

    pair = make_pair()
    client, server = pair.established()
    sid = client.open_stream()
    client.send_message(sid, b"request")
    pair.net.run(0.1)
    list(iter(server.next_event, None))
    server.send_message(sid, b"answer never read")
    server.close_stream(sid)
    pair.net.run(0.1)
    assert client.stream_state(sid)[0] is False  # finished, but a message is unread
    client.reset_stream(sid, 3)  # the unread message must not keep the stream alive
    pair.net.run(0.2)
    assert client.data is not None and server.data is not None
    assert not client.is_stream_open(sid)
    assert client.data.streams.open_count == 0 and server.data.streams.open_count == 0
