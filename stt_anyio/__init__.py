"""STT over anyio: runs under trio and under asyncio. Streams are ``anyio.abc.ObjectStream``;
``SessionClosed``, ``StreamClosed``, ``StreamClosedLocally`` and ``StreamReset`` are the
``stt_proto`` classes' subclasses that are anyio's exceptions too (see ``stt_anyio.session``)."""

from __future__ import annotations

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
    SettingsError,
    StreamLimitError,
    STTError,
    UsageError,
)

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
    "StreamEnd",
    "StreamLimitError",
    "StreamReset",
    "UsageError",
]
