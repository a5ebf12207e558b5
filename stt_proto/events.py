"""Events a session or endpoint reports to its driver (frozen, slotted value classes)."""

from __future__ import annotations

import attrs

from .errors import STTError
from .handshake_payload import TransportSettings

Address = tuple[str, int]


@attrs.frozen(slots=True)
class HandshakeCompleted:
    """The session is authenticated and confirmed; ``peer_id`` is the peer's node id."""

    peer_id: bytes
    cipher: str
    peer_settings: TransportSettings


@attrs.frozen(slots=True)
class SessionTerminated:
    """The session ended. ``error`` is what awaiting callers should raise."""

    error_code: int
    reason: str
    by_peer: bool
    error: STTError


@attrs.frozen(slots=True)
class KeyUpdated:
    """A traffic key rotated: ``direction`` is "send" or "receive"."""

    direction: str
    generation: int


@attrs.frozen(slots=True)
class SessionAccepted:
    """Endpoint event: an inbound session completed its handshake. ``session_id`` names it."""

    session_id: bytes


@attrs.frozen(slots=True)
class StreamOpened:
    """The peer opened ``stream_id``."""

    stream_id: int


@attrs.frozen(slots=True)
class StreamReadable:
    """Whole messages are waiting on ``stream_id``."""

    stream_id: int


@attrs.frozen(slots=True)
class StreamEnded:
    """The peer finished ``stream_id`` gracefully and every message has been cut (may be unread)."""

    stream_id: int


@attrs.frozen(slots=True)
class StreamResetByPeer:
    """The peer aborted its sending half of ``stream_id`` (RESET_STREAM): what it sent and we
    have not read is discarded, and reads fail with ``error_code``."""

    stream_id: int
    error_code: int


@attrs.frozen(slots=True)
class StreamStopped:
    """The peer will read no more of ``stream_id`` (STOP_SENDING): our sending half is aborted
    and further sends fail with ``error_code``; our receiving half is untouched."""

    stream_id: int
    error_code: int


@attrs.frozen(slots=True)
class StreamWritable:
    """``stream_id`` has send-buffer room again after refusing a message."""

    stream_id: int


@attrs.frozen(slots=True)
class StreamFlushed:
    """Every byte written to ``stream_id`` so far has been acknowledged."""

    stream_id: int




@attrs.frozen(slots=True)
class DatagramReceived:
    """An unreliable DATAGRAM frame arrived."""

    data: bytes


StreamEvent = (StreamOpened | StreamReadable | StreamEnded | StreamResetByPeer | StreamStopped
               | StreamWritable | StreamFlushed)
SessionEvent = HandshakeCompleted | SessionTerminated | KeyUpdated | StreamEvent | DatagramReceived
