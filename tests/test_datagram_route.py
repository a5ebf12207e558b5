"""A received STREAM datagram's route to ``stream.receive()`` (issue 24): at most 8 files, and no
callback back up into a caller's caller.

The route is measured, not declared: a profiler follows one message on the receiving node and
takes the library's files on the call stack at three moments:

(a) when the message's bytes are stored into the stream's receive side (``RecvSide.on_data``),
    from the socket callback (or the driver task) down;
(b) when the waiting reader's signal is set, from the poll down;
(c) when ``stream.receive()`` takes the message out (``RecvSide.pop_message``).

Helpers called and returned before those moments (varints, replay, packet codecs) are not on
the stack then and do not count. Every call made under the input (``receive_datagram``), the
event hand-out (``dispatch_events``) and the read (``Stream.receive``) is checked as well: no
file enters the stack twice (that would be a call back up into a caller), and the core never
calls up (no session or stream module calls the endpoint or the node core, and ``stt_proto``
never calls the runtime). docs/architecture.md, "A datagram's route", names the files.
"""

from __future__ import annotations

import sys
from pathlib import Path
from types import CodeType, FrameType
from typing import Any

import anyio
import pytest

import stt_proto
import stt_runtime.session
from stt_proto.endpoint import Endpoint
from stt_proto.streams.recv import RecvSide

from .test_node_lifecycle import run_in

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")

MAX_ROUTE = 8
ROOT = Path(stt_proto.__file__).resolve().parents[1]
PACKAGES = ("stt_proto", "stt_runtime", "stt_asyncio", "stt_anyio")
# The modules above the session layer: a session or stream module calling one calls up.
OWNERS = ("stt_proto/endpoint.py", "stt_proto/node.py")

if stt_proto.COMPILED:
    pytest.skip("the compiled core is invisible to the profiler: run with STT_PURE=1",
                allow_module_level=True)


class RouteTracer:
    """A profile function that records the stacks of the three moments on the receiving node
    and every call that breaks the no-callback-up rules."""

    def __init__(self, endpoint: Endpoint, reader: Any, signal_set: CodeType) -> None:
        self.endpoint = endpoint  # the receiving node's
        self.reader = reader  # the receiving stream's wrapper
        self.signal_set = signal_set  # the binding's Signal.set
        self.stored: list[str] | None = None  # (a)
        self.woken: list[str] | None = None  # (b)
        self.taken: list[str] | None = None  # (c)
        self.violations: list[str] = []
        self._files: dict[str, str | None] = {}
        self._roots = {Endpoint.receive_datagram.__code__,
                       stt_runtime.session.dispatch_events.__code__,
                       stt_runtime.session.Stream.receive.__code__}
        self._on_data = RecvSide.on_data.__code__
        self._pop = RecvSide.pop_message.__code__
        self._receive = stt_runtime.session.Stream.receive.__code__

    def _file(self, code: CodeType) -> str | None:
        """The library file (relative to the repository) that ``code`` is in, or None."""
        name = code.co_filename
        if name not in self._files:
            try:
                relative = Path(name).resolve().relative_to(ROOT).as_posix()
            except ValueError:
                relative = None
            if relative is not None and not relative.startswith(PACKAGES):
                relative = None
            self._files[name] = relative
        return self._files[name]

    def _stack(self, frame: FrameType) -> list[tuple[str, FrameType]]:
        """The library's frames on the stack, outermost first."""
        stack = []
        current: FrameType | None = frame
        while current is not None:
            file = self._file(current.f_code)
            if file is not None:
                stack.append((file, current))
            current = current.f_back
        stack.reverse()
        return stack

    def __call__(self, frame: FrameType, event: str, arg: object) -> None:
        if event != "call" or self._file(frame.f_code) is None:
            return
        stack = self._stack(frame)
        codes = {f.f_code for _, f in stack}
        if codes & self._roots:
            self._check(stack)
        code = frame.f_code
        if code is self._on_data and self.stored is None and any(
                f.f_code is Endpoint.receive_datagram.__code__
                and f.f_locals.get("self") is self.endpoint for _, f in stack):
            self.stored = self._files_of(stack)
        elif code is self.signal_set and frame.f_locals.get("self") is self.reader._readable \
                and self.woken is None:
            self.woken = self._files_of(stack)
        elif code is self._pop and self.taken is None and any(
                f.f_code is self._receive and f.f_locals.get("self") is self.reader
                for _, f in stack):
            self.taken = self._files_of(stack)

    @staticmethod
    def _files_of(stack: list[tuple[str, FrameType]]) -> list[str]:
        """The files in the order the stack enters them (a run of one file counts once)."""
        files: list[str] = []
        for file, _ in stack:
            if not files or files[-1] != file:
                files.append(file)
        return files

    def _check(self, stack: list[tuple[str, FrameType]]) -> None:
        files = self._files_of(stack)
        where = " -> ".join(f"{file}:{f.f_code.co_name}" for file, f in stack)
        if len(set(files)) != len(files):
            self.violations.append(f"a file entered twice: {where}")
        caller, callee = (stack[-2][0] if len(stack) > 1 else None), stack[-1][0]
        if caller is not None and caller.startswith("stt_proto/") and caller != callee:
            if not callee.startswith("stt_proto/"):
                self.violations.append(f"the core calls the runtime: {where}")
            elif callee in OWNERS and caller not in OWNERS:
                self.violations.append(f"a session calls its owner: {where}")

    def route(self) -> list[str]:
        """The union of the three stacks' files, in the order the route first enters them."""
        route: list[str] = []
        for files in (self.stored, self.woken, self.taken):
            for file in files or ():
                if file not in route:
                    route.append(file)
        return route


async def _trace_one_message(node_class: Any) -> RouteTracer:
    """Two nodes; after a first message, trace the receiving node while one more arrives
    for a reader that already waits."""
    async with node_class() as receiver, node_class() as sender:
        session = await sender.connect(receiver.address, receiver.node_id)
        inbound = await receiver.accept()
        stream = session.open_stream()
        await stream.send(b"warm")
        reader = await inbound.accept_stream()
        assert await reader.receive() == b"warm"
        signal_set = type(reader._readable).set.__code__
        tracer = RouteTracer(receiver._endpoint.endpoint, reader, signal_set)
        got: list[bytes] = []
        waiting = anyio.Event()

        async def read() -> None:
            waiting.set()
            got.append(await reader.receive())

        async with anyio.create_task_group() as group:
            sys.setprofile(tracer)
            try:
                group.start_soon(read)
                await waiting.wait()
                await anyio.sleep(0.01)  # the reader now waits on its signal
                await stream.send(b"x" * 100)
                with anyio.fail_after(10):
                    while not got:
                        await anyio.sleep(0.001)
            finally:
                sys.setprofile(None)
        assert got == [b"x" * 100]
        return tracer


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_stream_datagram_reaches_receive_through_at_most_eight_files(runtime: str) -> None:
    traced: list[RouteTracer] = []

    async def main(node_class: Any) -> None:
        traced.append(await _trace_one_message(node_class))

    run_in(runtime, main)
    tracer = traced[0]
    assert tracer.stored is not None, "the message's bytes were never seen stored"
    assert tracer.woken is not None, "the waiting reader was never seen woken"
    assert tracer.taken is not None, "the message was never seen taken out"
    route = tracer.route()
    print(f"\n{runtime}: {len(route)} files: " + ", ".join(route))
    for moment, files in (("stored", tracer.stored), ("woken", tracer.woken),
                          ("taken", tracer.taken)):
        print(f"  {moment}: " + " -> ".join(files))
    # The route runs from the socket to the stream and back out to the reader.
    assert "stt_runtime/udp_io.py" in tracer.stored
    assert tracer.stored[-1] == "stt_proto/streams/recv.py"
    assert tracer.taken[0] == "stt_runtime/session.py"
    assert len(route) <= MAX_ROUTE, f"{len(route)} files: {route}"
    assert not tracer.violations, "\n".join(tracer.violations[:5])


def test_the_rules_see_a_callback_up() -> None:
    """The checks find what they forbid (else they would pass on anything): a stack that
    enters a file twice, a session calling the endpoint, the core calling the runtime."""
    frame = sys._getframe()

    def kinds(*files: str) -> list[str]:
        tracer = RouteTracer(Endpoint.__new__(Endpoint), object(), RecvSide.on_data.__code__)
        tracer._check([(file, frame) for file in files])
        return [violation.split(":")[0] for violation in tracer.violations]

    assert kinds("stt_proto/endpoint.py", "stt_proto/session/core.py",
                 "stt_proto/endpoint.py") == ["a file entered twice", "a session calls its owner"]
    assert kinds("stt_runtime/session.py", "stt_proto/session/core.py",
                 "stt_proto/node.py") == ["a session calls its owner"]
    assert kinds("stt_proto/session/core.py", "stt_runtime/node_core.py") == [
        "the core calls the runtime"]
    assert kinds("stt_asyncio/_driver.py", "stt_runtime/node_core.py",
                 "stt_asyncio/_driver.py") == ["a file entered twice"]
    assert kinds("stt_asyncio/_driver.py", "stt_runtime/udp_io.py", "stt_proto/endpoint.py",
                 "stt_proto/session/core.py", "stt_proto/streams/manager.py") == []


def test_the_route_lists_files_in_the_order_the_stacks_enter_them() -> None:
    tracer = RouteTracer(Endpoint.__new__(Endpoint), object(), RecvSide.on_data.__code__)
    tracer.stored = ["a.py", "b.py"]
    tracer.woken = ["a.py", "c.py"]
    tracer.taken = ["d.py", "b.py"]
    assert tracer.route() == ["a.py", "b.py", "c.py", "d.py"]
    frame = sys._getframe()
    assert RouteTracer._files_of([("a.py", frame), ("a.py", frame), ("b.py", frame)]) == \
        ["a.py", "b.py"]

