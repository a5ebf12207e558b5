"""A session handler for the worker-process tests: module-level, so it can be pickled to the
spawned workers. It answers every message with the worker's pid and the message."""

from __future__ import annotations

import os
from typing import Any


async def echo_pid(session: Any) -> None:
    stream = await session.accept_stream()
    async for message in stream:
        await stream.send(str(os.getpid()).encode() + b":" + message)
