"""Frame types: the frames a sealed packet payload carries, one after another, as values,
their type codes, and the caps a packet's frames live under. Their codec (bytes in and out)
is ``frames.py``; byte-level layouts are in ``docs/wire-format.md``.
"""

from __future__ import annotations

from enum import IntEnum

import attrs

MAX_ACK_RANGES = 256
MAX_REASON_BYTES = 1024
# A packet carrying more frames than this is a protocol violation (FrameError): the most a
# packet of tiny frames can cost a receiver. Senders stay far below it: session control (an
# ACK and a few frames), the queued datagrams (dataplane.MAX_QUEUED_DATAGRAMS, 256) and at
# most MAX_FILL_FRAMES stream and flow-control frames.
MAX_FRAMES_PER_PACKET = 1024
MAX_FILL_FRAMES = 512


class FrameType(IntEnum):
    PADDING = 0x00
    PING = 0x01
    ACK = 0x02
    RESET_STREAM = 0x04
    STOP_SENDING = 0x05
    STREAM = 0x08  # 0x08 | FIN bit (0x01)
    STREAM_FIN = 0x09
    MAX_DATA = 0x10
    MAX_STREAM_DATA = 0x11
    MAX_STREAMS = 0x12
    DATA_BLOCKED = 0x14
    STREAM_DATA_BLOCKED = 0x15
    PATH_CHALLENGE = 0x1A
    PATH_RESPONSE = 0x1B
    CLOSE = 0x1C
    APPLICATION_CLOSE = 0x1D
    KEY_UPDATE = 0x1E
    HANDSHAKE_DONE = 0x1F
    DATAGRAM = 0x30


@attrs.frozen(slots=True)
class PaddingFrame:
    """``length`` zero bytes; decoded runs of padding become one frame."""

    length: int = 1


@attrs.frozen(slots=True)
class PingFrame:
    """Asks for an acknowledgement; used as keep-alive."""


@attrs.frozen(slots=True)
class AckFrame:
    """Acknowledged packet numbers as inclusive ``(first, last)`` ranges, highest first.

    ``ack_delay`` is in microseconds: how long the receiver held the acknowledgement.
    """

    ranges: tuple[tuple[int, int], ...]
    ack_delay: int = 0

    @property
    def largest(self) -> int:
        return self.ranges[0][1]


@attrs.frozen(slots=True)
class StreamFrame:
    stream_id: int
    offset: int
    data: bytes | memoryview  # parsed frames hold a read-only view of the decrypted payload
    fin: bool = False


@attrs.frozen(slots=True)
class ResetStreamFrame:
    stream_id: int
    error_code: int
    final_size: int


@attrs.frozen(slots=True)
class StopSendingFrame:
    stream_id: int
    error_code: int


@attrs.frozen(slots=True)
class MaxDataFrame:
    maximum: int


@attrs.frozen(slots=True)
class MaxStreamDataFrame:
    stream_id: int
    maximum: int


@attrs.frozen(slots=True)
class MaxStreamsFrame:
    maximum: int


@attrs.frozen(slots=True)
class DataBlockedFrame:
    limit: int


@attrs.frozen(slots=True)
class StreamDataBlockedFrame:
    stream_id: int
    limit: int


@attrs.frozen(slots=True)
class DatagramFrame:
    """An unreliable message, never retransmitted."""

    data: bytes


@attrs.frozen(slots=True)
class CloseFrame:
    """Ends the session. ``application`` separates user codes from transport error codes."""

    error_code: int
    reason: str = ""
    application: bool = False


@attrs.frozen(slots=True)
class KeyUpdateFrame:
    """Sent in the first packet of send key ``generation`` (the header carries its phase bit)."""

    generation: int


@attrs.frozen(slots=True)
class HandshakeDoneFrame:
    """Sent by the responder once the handshake is complete: confirms it to the initiator."""


PATH_DATA_LEN = 8  # the bytes a PATH_CHALLENGE carries and its PATH_RESPONSE echoes


@attrs.frozen(slots=True)
class PathChallengeFrame:
    """Asks the peer to echo ``data`` (8 unpredictable bytes): only a holder of the session keys
    can, so the echo proves it receives at the address the challenge was sent to."""

    data: bytes


@attrs.frozen(slots=True)
class PathResponseFrame:
    """Echoes a PATH_CHALLENGE's ``data``; received, it validates the challenged path."""

    data: bytes


Frame = (
    PaddingFrame
    | PingFrame
    | AckFrame
    | StreamFrame
    | ResetStreamFrame
    | StopSendingFrame
    | MaxDataFrame
    | MaxStreamDataFrame
    | MaxStreamsFrame
    | DataBlockedFrame
    | StreamDataBlockedFrame
    | DatagramFrame
    | CloseFrame
    | KeyUpdateFrame
    | HandshakeDoneFrame
    | PathChallengeFrame
    | PathResponseFrame
)

# Frames that do not oblige the peer to acknowledge the packet carrying them.
NON_ACK_ELICITING = (AckFrame, PaddingFrame, CloseFrame)
_NON_ELICITING_TYPES = frozenset(NON_ACK_ELICITING)  # frame classes are final: type() suffices


def is_ack_eliciting(frames: list[Frame]) -> bool:
    """Whether a packet of ``frames`` obliges the peer to acknowledge it."""
    for frame in frames:  # noqa: SIM110 - a plain loop: any() with a generator costs more
        if type(frame) not in _NON_ELICITING_TYPES:
            return True
    return False
