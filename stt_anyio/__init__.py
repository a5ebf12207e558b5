"""STT over anyio: runs under trio and under asyncio. Streams are ``anyio.abc.ObjectStream``;
``SessionClosed``, ``StreamClosed``, ``StreamClosedLocally`` and ``StreamReset`` are the
``stt_proto`` classes' subclasses that are anyio's exceptions too (see ``stt_anyio.session``)."""

from __future__ import annotations

from stt_runtime import exports
from stt_runtime.exports import *  # noqa: F403  (the errors, Contact, ContentAffinityPool)

from .node import STTNode
from .session import (
    Session,
    SessionClosed,
    Stream,
    StreamClosed,
    StreamClosedLocally,
    StreamEnd,
    StreamReset,
)

__all__ = [
    "STTNode",
    "Session",
    "SessionClosed",
    "Stream",
    "StreamClosed",
    "StreamClosedLocally",
    "StreamEnd",
    "StreamReset",
]
__all__ += exports.__all__
