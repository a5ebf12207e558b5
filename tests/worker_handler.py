"""Session handlers for the worker-process tests: module-level, so they can be pickled to the
spawned workers. They answer every message with the worker's pid and the message."""

from __future__ import annotations

import os
from typing import Any


async def echo_pid(session: Any) -> None:
    stream = await session.accept_stream()
    async for message in stream:
        await stream.send(str(os.getpid()).encode() + b":" + message)


async def echo_place(session: Any) -> None:
    """Answer every message with where it was served: ``pid:peer port:message``, the port the
    serving worker sees the peer at."""
    stream = await session.accept_stream()
    async for message in stream:
        port = session.remote_address[1]
        await stream.send(b"%d:%d:" % (os.getpid(), port) + message)
