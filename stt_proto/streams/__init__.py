"""Message-preserving streams: each stream's send and receive halves, the manager of a
session's streams (ids, limits, flow control) and the packetizer that fills packets.

- :mod:`.send`, :mod:`.recv`: one stream's two halves; :mod:`.stream` holds both;
- :mod:`.manager`: every stream of a session, incoming frames, acknowledgements, losses;
- :mod:`.packetizer`: scheduling and packet filling, the general filler beside its fast paths;
- :mod:`.records`: what a sent packet carried, for acknowledgement and retransmission.
"""

from __future__ import annotations

from .manager import StreamManager
from .packetizer import STREAM_FRAME_OVERHEAD, Packetizer
from .records import ControlSent, RetransmitItem, StreamRange
from .recv import SEGMENT_MIN, RecvSide
from .send import SMALL_MESSAGE, SendSide
from .stream import Stream

__all__ = [
    "SEGMENT_MIN",
    "SMALL_MESSAGE",
    "STREAM_FRAME_OVERHEAD",
    "ControlSent",
    "Packetizer",
    "RecvSide",
    "RetransmitItem",
    "SendSide",
    "Stream",
    "StreamManager",
    "StreamRange",
]
