"""STT on asyncio (uvloop when installed): ``STTNode`` drives ``stt_proto`` over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from stt_proto.errors import SessionClosed, StreamClosed, StreamClosedLocally, StreamReset
from stt_runtime import exports
from stt_runtime.exports import *  # noqa: F403  (the errors, Contact, ContentAffinityPool)
from stt_runtime.session import Session, Stream

from .node import STTNode

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed."""
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)  # type: ignore[no-any-return, unused-ignore]


__all__ = [
    "STTNode",
    "Session",
    "SessionClosed",
    "Stream",
    "StreamClosed",
    "StreamClosedLocally",
    "StreamReset",
    "run",
]
__all__ += exports.__all__
