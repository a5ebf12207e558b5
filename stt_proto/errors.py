"""Every exception STT raises, rooted at :class:`STTError`.

Two families matter to callers: :class:`ProtocolError` (the peer or the network sent something
wrong; the message says what) and :class:`UsageError` (the caller misused the API). Errors that end
a session (:class:`HandshakeTimeout`, :class:`KeepAliveTimeout`, :class:`SessionClosed`, ...) are
what awaiting callers see once the session is gone.
"""

from __future__ import annotations


class STTError(Exception):
    """Base class of every STT exception."""


class UsageError(STTError, RuntimeError):
    """The API was called in a way or state that does not allow it."""


class SettingsError(STTError, ValueError):
    """A setting is outside its allowed range; the message names the setting and the range."""


class ProtocolError(STTError):
    """Bytes from the network broke the protocol. ``code`` is the wire error code sent in CLOSE."""

    code: int = 0x01


class DecodeError(ProtocolError):
    """A varint, frame, packet header or payload could not be decoded (truncated or malformed)."""

    code = 0x02


class FrameError(DecodeError):
    """A frame is well-formed bytes but violates a rule (unknown type, bad field, too large)."""

    code = 0x03


class PacketError(DecodeError):
    """A packet header is invalid (bad version, type, reserved bits, or length)."""

    code = 0x04


class CryptoError(ProtocolError):
    """Authenticated decryption failed: the data was forged, corrupted or used the wrong key."""

    code = 0x05


class HandshakeError(ProtocolError):
    """The Noise handshake failed: bad message, bad payload, or a downgrade attempt."""

    code = 0x06


class ProtocolViolation(ProtocolError):
    """The peer did something the protocol forbids in the current state."""

    code = 0x07


class AuthenticationError(HandshakeError):
    """The responder's static key does not hash to the ``peer_id`` the initiator asked for."""

    code = 0x08


class NoiseError(STTError):
    """Misuse of the Noise state machine (wrong turn, exhausted nonces, missing key)."""


class HandshakeTimeout(STTError, TimeoutError):
    """No handshake completed within ``handshake_timeout``."""


class KeepAliveTimeout(STTError, TimeoutError):
    """Nothing was heard from the peer for ``keep_alive_timeout`` seconds."""


class ConnectionRefused(STTError, ConnectionError):
    """The peer refused the session (for example it is at ``max_sessions``)."""


class SessionClosed(STTError):
    """The session is closed: ``error_code`` and ``reason`` say why, ``by_peer`` who closed it."""

    def __init__(self, error_code: int = 0, reason: str = "", *, by_peer: bool = False) -> None:
        who = "peer" if by_peer else "local side"
        super().__init__(f"session closed by {who} (code {error_code:#x}): {reason or 'no reason'}")
        self.error_code = error_code
        self.reason = reason
        self.by_peer = by_peer


class StreamLimitError(STTError):
    """Opening another stream would exceed ``max_concurrent_streams``."""


class StreamClosed(STTError):
    """The stream's peer closed gracefully and everything it sent has been read."""


class StreamClosedLocally(UsageError):
    """This side closed the stream for that operation: a send after ``close()`` (``send_eof``,
    ``aclose``), or a receive after ``aclose()``."""


class BufferTooSmall(STTError, ValueError):
    """``receive_into``'s buffer cannot hold the next message, which stays unread; ``needed``
    is its size."""

    def __init__(self, needed: int, given: int) -> None:
        super().__init__(f"the next message is {needed} bytes, the buffer holds {given}")
        self.needed = needed


class StreamReset(STTError):
    """The stream was aborted; ``error_code`` is the code given to ``reset``."""

    def __init__(self, error_code: int = 0) -> None:
        super().__init__(f"stream reset with code {error_code:#x}")
        self.error_code = error_code


class PoolMissError(STTError, LookupError):
    """No pooled session is close enough to the requested content hash."""


class DHTError(STTError):
    """A DHT operation could not be carried out (no seed answered, nobody to store at)."""
