"""Receive windows grow when the peer says our window held it back (STREAM_DATA_BLOCKED /
DATA_BLOCKED at our limit), not only when the reader used a window up within two RTTs: on a
lossy path a gap waiting for its retransmission holds the reads, and with them that signal,
while the sender sits at the limit."""

from __future__ import annotations

from stt_proto.config import SessionConfig
from stt_proto.frame_types import DataBlockedFrame, StreamDataBlockedFrame
from stt_proto.handshake import local_settings
from stt_proto.streams import StreamManager
from stt_proto.varint import encode_varint

SID = 1  # the peer's first stream (we are the initiator)
SRTT = 0.05
SLOW = 1.0  # seconds between polls: far more than two RTTs, so reads alone never grow a window


class Receiver:
    def __init__(self) -> None:
        settings = local_settings(SessionConfig(recv_buffer_size=65536))
        self.manager = StreamManager(is_initiator=True, local=settings, peer=settings,
                                     send_buffer=1 << 20, recv_buffer=65536, no_delay=True,
                                     emit=lambda event: None)
        self.first_limit = settings.initial_max_stream_data
        self.offset = 0
        self.now = 0.0

    def fill_window(self) -> None:
        """The peer sends 1,000-byte messages up to our stream limit; we read them all."""
        manager = self.manager
        stream = manager.streams.get(SID)
        limit = stream.recv.max_data if stream is not None else self.first_limit
        while self.offset + 1002 <= limit:
            frame = encode_varint(1000) + bytes(1000)
            manager.on_stream_data(SID, self.offset, frame, False)
            self.offset += len(frame)
        while manager.receive_message(SID) is not None:
            pass

    def poll(self) -> None:
        self.now += SLOW
        self.manager.collect_window_updates(self.now, SRTT)
        self.manager._control.clear()  # (as if sent)

    @property
    def window(self) -> int:
        return self.manager.streams[SID].recv.window


def test_a_stream_window_doubles_after_the_peer_says_it_was_blocked_by_it() -> None:
    receiver = Receiver()
    receiver.fill_window()
    receiver.poll()
    first = receiver.window
    receiver.fill_window()
    receiver.poll()
    assert receiver.window == first  # read slowly: no growth
    limit = receiver.manager.streams[SID].recv.max_data
    receiver.manager.on_frame(StreamDataBlockedFrame(SID, limit - 5000))  # an old limit
    receiver.fill_window()
    receiver.poll()
    assert receiver.window == first
    limit = receiver.manager.streams[SID].recv.max_data
    receiver.manager.on_frame(StreamDataBlockedFrame(SID, limit))  # at the limit now
    receiver.fill_window()
    receiver.poll()
    assert receiver.window == 2 * first
    receiver.fill_window()
    receiver.poll()
    assert receiver.window == 2 * first  # once per report


def test_the_connection_window_doubles_after_data_blocked_at_its_limit() -> None:
    receiver = Receiver()
    manager = receiver.manager
    start = manager.conn_recv_window
    manager.on_frame(DataBlockedFrame(manager.conn_recv_max))
    while manager.conn_recv_window == start and receiver.offset < 8 * start:
        receiver.fill_window()
        receiver.poll()
    assert manager.conn_recv_window == 2 * start


def test_a_blocked_report_for_an_unknown_stream_is_ignored() -> None:
    receiver = Receiver()
    receiver.manager.on_frame(StreamDataBlockedFrame(SID + 4, 1 << 20))  # never opened
    assert SID + 4 not in receiver.manager.streams
