"""STT protocol core: sans-I/O state machines for encrypted, multiplexed peer-to-peer transport.

Nothing here does I/O or reads a clock: callers pass bytes, addresses and ``now`` in and take
bytes, events and deadlines out. Runtimes (``stt_asyncio``, ``stt_anyio``) drive it over sockets.
"""

from __future__ import annotations

import hashlib

from ._native import COMPILED
from .affinity import ContentAffinityPool
from .config import EndpointConfig, SessionConfig
from .endpoint import Endpoint
from .errors import (
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
    SessionClosed,
    SettingsError,
    StreamClosed,
    StreamClosedLocally,
    StreamLimitError,
    StreamReset,
    STTError,
    UsageError,
)
from .events import HandshakeCompleted, KeyUpdated, SessionAccepted, SessionTerminated
from .identity import Identity, node_id_for
from .node import Node
from .randomness import DeterministicRandom, RandomSource, SystemRandom
from .session import Session, State
from .stats import DropReason, EndpointStats, SessionStats

__version__ = "0.1.0"


def hash_data(data: bytes | bytearray | memoryview) -> bytes:
    """The 32-byte content hash used by the content-affinity pool (BLAKE2b-256)."""
    return hashlib.blake2b(data, digest_size=32).digest()


__all__ = [
    "COMPILED",
    "AuthenticationError",
    "BufferTooSmall",
    "ConnectionRefused",
    "ContentAffinityPool",
    "CryptoError",
    "DHTError",
    "DecodeError",
    "DeterministicRandom",
    "DropReason",
    "Endpoint",
    "EndpointConfig",
    "EndpointStats",
    "FrameError",
    "HandshakeCompleted",
    "HandshakeError",
    "HandshakeTimeout",
    "Identity",
    "KeepAliveTimeout",
    "KeyUpdated",
    "Node",
    "NoiseError",
    "PacketError",
    "PoolMissError",
    "ProtocolError",
    "ProtocolViolation",
    "RandomSource",
    "STTError",
    "Session",
    "SessionAccepted",
    "SessionConfig",
    "SessionClosed",
    "SessionStats",
    "SessionTerminated",
    "SettingsError",
    "State",
    "StreamClosed",
    "StreamClosedLocally",
    "StreamLimitError",
    "StreamReset",
    "SystemRandom",
    "UsageError",
    "__version__",
    "hash_data",
    "node_id_for",
]
