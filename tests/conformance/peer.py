"""A peer in another process, for the conformance tests: ``python peer.py RUNTIME [KEY=VALUE ...]``.

It prints one JSON line (``port``, ``node_id``) once it listens on 127.0.0.1, then serves every
session it accepts. Each stream the test opens starts with one command message:

- ``echo``: send back every message; on the test's FIN, FIN; on its reset, report it (below).
- ``send-close N``: send N messages (``m0``, ``m1``, ...), then close gracefully.
- ``send-reset N CODE``: send N messages, wait until they are acknowledged, then reset with CODE.
- ``expect-reset``: answer ``ready``, read until the stream is reset, then open a stream and send
  ``saw-reset CODE``.
- ``close-session CODE REASON``: close the session with that code and reason.
- ``exit``: end the process at once, without a word to anyone (a crash, as the network sees it).
- ``datagrams``: echo every datagram of this session.
- ``open-stream``: open a stream towards the test, send ``hello from the peer``, close it.
- anything else is data: every message under 1 KiB (the first included) is echoed, larger ones
  are read and dropped, until the stream ends (the seed's benchmarks talk to this).

Settings for the node come as ``KEY=VALUE`` arguments (numbers parsed as floats or ints).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from stt_proto import SessionClosed, StreamClosed, StreamReset
from tests.conformance.runtimes import BY_NAME, Runtime


def _setting(text: str) -> tuple[str, Any]:
    key, _, value = text.partition("=")
    for kind in (int, float):
        try:
            return key, kind(value)
        except ValueError:
            pass
    return key, value


async def _command(session: Any, stream: Any, command: bytes) -> None:
    word, *args = command.decode("utf-8", "replace").split(" ", 2)
    if word == "echo":
        try:
            while True:
                await stream.send(await stream.receive())
        except StreamClosed:
            await _half_close(stream)
        except StreamReset as reset:
            await _report(session, f"saw-reset {reset.error_code}")
    elif word == "send-close":
        for index in range(int(args[0])):
            await stream.send(f"m{index}".encode())
        await stream.flush()
        await _half_close(stream)
    elif word == "send-reset":
        for index in range(int(args[0])):
            await stream.send(f"m{index}".encode())
        await stream.flush()
        await stream.reset(int(args[1]))
    elif word == "expect-reset":
        await stream.send(b"ready")
        try:
            while True:
                await stream.receive()
        except StreamReset as reset:
            await _report(session, f"saw-reset {reset.error_code}")
        except StreamClosed:
            await _report(session, "saw-clean-end")
    elif word == "close-session":
        await session.close(int(args[0]), args[1] if len(args) > 1 else "")
    elif word == "exit":
        os._exit(0)
    elif word == "datagrams":
        await stream.send(b"ready")
        while True:
            await session.send_datagram(await session.receive_datagram())
    elif word == "open-stream":
        await _report(session, "hello from the peer")
    else:
        message = command
        while True:
            if len(message) < 1024:
                await stream.send(message)
            message = await stream.receive()


async def _half_close(stream: Any) -> None:
    if hasattr(stream, "send_eof"):
        await stream.send_eof()
    else:
        await stream.close()


async def _report(session: Any, text: str) -> None:
    stream = session.open_stream()
    await stream.send(text.encode())
    await stream.flush()
    await _half_close(stream)


async def _serve_stream(session: Any, stream: Any) -> None:
    with contextlib.suppress(SessionClosed, StreamClosed, StreamReset, anyio.BrokenResourceError,
                             anyio.ClosedResourceError, anyio.EndOfStream):
        await _command(session, stream, await stream.receive())


async def _serve_session(session: Any) -> None:
    try:
        async with anyio.create_task_group() as group:
            while True:
                group.start_soon(_serve_stream, session, await session.accept_stream())
    except Exception:  # the session ended: nothing more to serve on it
        pass


async def main(runtime: Runtime, settings: dict[str, Any]) -> None:
    async with runtime.node(host="127.0.0.1", **settings) as node:
        print(json.dumps({"port": node.address[1], "node_id": node.node_id.hex()}), flush=True)
        async with anyio.create_task_group() as group:
            while True:
                group.start_soon(_serve_session, await node.accept())


if __name__ == "__main__":
    chosen = BY_NAME[sys.argv[1]]
    options = dict(_setting(arg) for arg in sys.argv[2:])
    chosen.run(lambda rt: main(rt, options))
