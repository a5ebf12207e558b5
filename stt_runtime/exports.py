"""The names both bindings (``stt_asyncio``, ``stt_anyio``) re-export unchanged from the core, in
one list: every ``STTError`` a caller may catch, the DHT's ``Contact`` and the content-affinity
pool. Each binding adds its own ``STTNode``, ``Session`` and ``Stream``; ``stt_anyio`` also its
anyio-flavoured ``SessionClosed``, ``StreamClosed``, ``StreamClosedLocally`` and
``StreamReset``, which is why those four are not here."""

from __future__ import annotations

from stt_proto.affinity import ContentAffinityPool
from stt_proto.dht import Contact
from stt_proto.errors import (
    AuthenticationError,
    BufferTooSmall,
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

__all__ = [
    "AuthenticationError",
    "BufferTooSmall",
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
    "SettingsError",
    "StreamLimitError",
    "UsageError",
]
