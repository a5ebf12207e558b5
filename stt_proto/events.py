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


SessionEvent = HandshakeCompleted | SessionTerminated | KeyUpdated
