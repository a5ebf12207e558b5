"""STT on asyncio (uvloop when installed): ``STTNode`` drives ``stt_proto`` over a real socket."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from stt_proto.affinity import ContentAffinityPool
from stt_proto.dht import Contact
from stt_proto.errors import (
    AuthenticationError,
    ConnectionRefused,
    CryptoError,
    DecodeError,
    DHTError,
    FrameError,
    HandshakeError,
    HandshakeTimeout,
    KeepAliveTimeout,
    NoiseError,
    PacketError,
    PoolMissError,
    ProtocolError,
    ProtocolViolation,
    SessionClosed,
    SettingsError,
    StreamClosed,
    StreamClosedLocally,
    StreamLimitError,
    StreamReset,
    STTError,
    UsageError,
)
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
    "AuthenticationError",
    "ConnectionRefused",
    "Contact",
    "ContentAffinityPool",
    "CryptoError",
    "DHTError",
    "DecodeError",
    "FrameError",
    "HandshakeError",
    "HandshakeTimeout",
    "KeepAliveTimeout",
    "NoiseError",
    "PacketError",
    "PoolMissError",
    "ProtocolError",
    "ProtocolViolation",
    "STTError",
    "STTNode",
    "Session",
    "SessionClosed",
    "SettingsError",
    "Stream",
    "StreamClosed",
    "StreamClosedLocally",
    "StreamLimitError",
    "StreamReset",
    "UsageError",
    "run",
]
