"""What a sent packet carried, kept until it is acknowledged or declared lost.

A packet's retransmission items: the stream ranges and the control frames it held. When the
packet is acknowledged the ranges are marked delivered; when it is lost the ranges are queued
again and a control frame still current is re-sent (packet numbers are never reused). Plain
slotted classes rather than attrs: one is made per packet sent, and these cost half as much.
"""

from __future__ import annotations

from typing import Final, final

from ..frames import Frame


@final
class StreamRange:
    """Bytes ``[start, stop)`` of a stream, and whether the FIN was sent with them."""

    __slots__ = ("fin", "start", "stop", "stream_id")

    stream_id: Final[int]
    start: Final[int]
    stop: Final[int]
    fin: Final[bool]

    def __init__(self, stream_id: int, start: int, stop: int, fin: bool) -> None:
        self.stream_id = stream_id
        self.start = start
        self.stop = stop
        self.fin = fin

    def __eq__(self, other: object) -> bool:
        return type(other) is StreamRange and other.stream_id == self.stream_id and \
            other.start == self.start and other.stop == self.stop and other.fin == self.fin

    def __hash__(self) -> int:
        return hash((self.stream_id, self.start, self.stop, self.fin))

    def __repr__(self) -> str:
        return f"StreamRange({self.stream_id}, {self.start}, {self.stop}, {self.fin})"


@final
class ControlSent:
    """A flow-control or stream-control frame (RESET_STREAM, MAX_DATA, ...) as sent."""

    __slots__ = ("frame",)

    frame: Final[Frame]

    def __init__(self, frame: Frame) -> None:
        self.frame = frame

    def __eq__(self, other: object) -> bool:
        return type(other) is ControlSent and other.frame == self.frame

    def __hash__(self) -> int:
        return hash(self.frame)

    def __repr__(self) -> str:
        return f"ControlSent({self.frame!r})"


RetransmitItem = StreamRange | ControlSent
"""One thing a packet carried that matters if the packet is lost."""
