"""STT over anyio: runs under trio and under asyncio. Streams are ``anyio.abc.ObjectStream``."""

from __future__ import annotations

from stt_proto.affinity import ContentAffinityPool
from stt_proto.dht import Contact
from stt_proto.errors import (
    AuthenticationError,
    ConnectionRefused,
    DHTError,
    HandshakeError,
    HandshakeTimeout,
    KeepAliveTimeout,
    PoolMissError,
    ProtocolError,
    SessionClosed,
    SettingsError,
    StreamClosed,
    StreamLimitError,
    StreamReset,
    STTError,
    UsageError,
)

from .node import Session, Stream, STTNode

__all__ = [
    "AuthenticationError", "ConnectionRefused", "Contact", "ContentAffinityPool", "DHTError",
    "HandshakeError", "HandshakeTimeout",
    "KeepAliveTimeout", "PoolMissError", "ProtocolError", "STTError", "STTNode", "Session",
    "SessionClosed", "SettingsError", "Stream", "StreamClosed", "StreamLimitError",
    "StreamReset", "UsageError",
]
