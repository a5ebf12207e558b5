"""One stream: a reliable, ordered byte stream carrying length-prefixed messages, as its two
halves (:mod:`.send`, :mod:`.recv`) and its per-stream settings and counters."""

from __future__ import annotations

from .recv import RecvSide
from .send import SendSide


class Stream:
    """Both directions of one stream, with its per-stream settings."""

    __slots__ = (
        "app_closed",
        "bytes_received",
        "bytes_sent",
        "end_reported",
        "hold_until",
        "local",
        "max_frame_size",
        "messages_received",
        "messages_sent",
        "no_delay",
        "priority",
        "recv",
        "send",
        "stream_id",
    )

    def __init__(self, stream_id: int, *, local: bool, send_window: int, recv_window: int,
                 max_message: int, max_frame_size: int, no_delay: bool, priority: int) -> None:
        self.stream_id = stream_id
        self.local = local
        self.send = SendSide(send_window)
        self.recv = RecvSide(recv_window, max_message)
        self.max_frame_size = max_frame_size
        self.no_delay = no_delay
        self.priority = priority
        self.hold_until: float | None = None
        self.app_closed = False
        self.bytes_sent = 0  # application payload accepted by send_message
        self.bytes_received = 0  # application payload of messages handed to the reader
        self.messages_sent = 0
        self.messages_received = 0
        self.end_reported = False  # StreamEnded was emitted

    @property
    def send_done(self) -> bool:
        s = self.send
        return s.reset_sent is not None or (s.fin_offset is not None and s.fin_acked
                                            and s.all_acked)

    @property
    def recv_done(self) -> bool:
        r = self.recv
        return r.reset_code is not None or (r.finished and not r.messages)
