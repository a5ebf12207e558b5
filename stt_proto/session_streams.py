"""The application's side of a session: streams, datagrams and stats.

Split out of :mod:`stt_proto.session` to keep that module to the protocol's state machine:
everything here delegates to the session's data plane and holds no state of its own.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .config import frame_size
from .errors import SettingsError
from .stats import SessionStats, StreamStats

if TYPE_CHECKING:
    from .config import NodeConfig
    from .dataplane import DataPlane
    from .handshake import HandshakeResult
    from .path import PathValidator
    from .rtt import RttEstimator
    from .stats import SessionCounters


class SessionStreams:
    """Mixed into :class:`~stt_proto.session.Session`, which defines the state below."""

    __slots__ = ()

    data: DataPlane | None
    config: NodeConfig
    counters: SessionCounters
    rtt: RttEstimator
    handshake_result: HandshakeResult | None
    path: PathValidator | None
    _now: float

    @property
    def is_closed(self) -> bool:
        raise NotImplementedError

    def _data_plane(self) -> DataPlane:
        """The data plane; UsageError unless the session is established."""
        raise NotImplementedError

    def _wake(self) -> None:
        raise NotImplementedError

    def open_stream(self, max_frame_size: object = None, no_delay: object = None,
                    priority: object = 0) -> int:
        """Open a stream and return its id. Raises StreamLimitError past the peer's limit, and
        SettingsError (a ValueError) naming the argument for a bad value. The arguments are
        typed ``object`` so that the compiled module checks them here, with that error, rather
        than failing the call with a bare TypeError."""
        size = None if max_frame_size is None else frame_size(max_frame_size)
        if no_delay is not None and not isinstance(no_delay, bool):
            raise SettingsError(f"no_delay must be True, False or None, got {no_delay!r}")
        if isinstance(priority, bool) or not isinstance(priority, int) \
                or not -2**31 <= priority < 2**31:
            raise SettingsError(f"priority must be an integer in -2**31..2**31-1, "
                                f"got {priority!r}")
        data = self._data_plane()
        if size is None:
            size = data.max_datagram
        return data.streams.open(min(size, data.max_datagram), no_delay, priority).stream_id

    def send_message(self, stream_id: int, message: bytes | bytearray | memoryview) -> bool:
        """Queue one message on a stream. False means the send buffer is full: wait for
        StreamWritable and try again (back-pressure)."""
        data = self._data_plane()
        accepted = data.streams.send_message(stream_id, message, self._now, data.hold_time())
        if accepted:
            self._wake()
        return accepted

    def stream_no_delay(self, stream_id: int) -> bool:
        """Whether the stream sends each message at once; a runtime then polls at once too."""
        stream = self.data.streams.streams.get(stream_id) if self.data is not None else None
        return stream is not None and stream.no_delay

    def receive_message(self, stream_id: int) -> bytes | None:
        """The next whole message of a stream, or None if none is complete yet."""
        if self.data is None:
            return None
        message = self.data.streams.receive_message(stream_id)
        if message is not None:
            self._wake()
        return message

    def read_needs_poll(self) -> bool:
        """After :meth:`receive_message`: whether the reads freed enough window that the peer
        is owed an update (or other control frames wait), so the runtime should poll soon.
        Polling after every message instead cost a runtime a poll per message."""
        return self.data is not None and self.data.streams.updates_owed()

    def stream_state(self, stream_id: int) -> tuple[bool, bool, int | None]:
        """(peer finished and everything read, all our data acknowledged, reset code or None)."""
        if self.data is None:
            return False, False, None
        stream = self.data.streams.streams.get(stream_id)
        if stream is None:
            return True, True, None
        recv = stream.recv
        code = recv.reset_code if recv.reset_code is not None else stream.send.reset_sent
        return recv.finished and not recv.messages, stream.send.all_acked, code

    def stream_stats(self, stream_id: int) -> StreamStats:
        """Byte and message counters of one open stream."""
        stream = self._data_plane().streams.get(stream_id)
        recv = stream.recv
        return StreamStats(stream_id, stream.bytes_sent, stream.bytes_received,
                           stream.messages_sent, stream.messages_received,
                           stream.send.unacked_bytes, recv.held_bytes)

    def close_stream(self, stream_id: int) -> None:
        """Half-close: everything queued is sent, then FIN."""
        self._data_plane().streams.close_stream(stream_id)
        self._wake()

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Abort both directions of a stream."""
        if self.data is not None and not self.is_closed:
            self.data.streams.reset_stream(stream_id, error_code)
            self._wake()

    def stop_receiving(self, stream_id: int, error_code: int = 0) -> None:
        """Abort only the receiving half (STOP_SENDING): the peer's further sends fail with
        ``error_code``; our sending half, and a FIN already queued, go on."""
        if self.data is not None and not self.is_closed:
            self.data.streams.stop_receiving(stream_id, error_code)
            self._wake()

    def is_stream_open(self, stream_id: int) -> bool:
        """Whether the core still keeps state for the stream (False once it is finished in both
        directions and forgotten): a runtime drops its wrapper then."""
        return self.data is not None and stream_id in self.data.streams.streams

    def send_datagram(self, message: bytes | bytearray | memoryview) -> bool:
        """Queue an unreliable datagram (never retransmitted); False if the queue is full."""
        accepted = self._data_plane().send_datagram(message)
        self._wake()
        return accepted

    def get_stats(self) -> SessionStats:
        c = self.counters
        data = self.data
        lost = data.recovery.lost_packets if data else 0
        in_flight_sent = data.recovery.sent_count if data else 0
        streams = data.streams if data else None
        return SessionStats(
            bytes_sent=(streams.bytes_sent + data.datagram_bytes_sent) if data and streams else 0,
            bytes_received=(streams.bytes_received + data.datagram_bytes_received)
            if data and streams else 0,
            packets_sent=c.packets_sent, packets_received=c.packets_received,
            packets_lost=lost,
            rtt_ms=self.rtt.smoothed * 1000, rtt_min_ms=self.rtt.min_rtt * 1000,
            loss_rate=lost / in_flight_sent if in_flight_sent else 0.0,
            throughput_mbps=(data.send_rate * 8 / 1e6) if data else 0.0,
            cwnd_bytes=data.cc.cwnd if data else 0,
            streams_open=streams.open_count if streams else 0,
            bytes_sent_wire=c.bytes_sent_wire, bytes_received_wire=c.bytes_received_wire,
            replays_dropped=c.replays_dropped, decrypt_failures=c.decrypt_failures,
            key_updates_sent=c.key_updates_sent, key_updates_received=c.key_updates_received,
            pings_sent=c.pings_sent,
            datagrams_dropped=data.datagrams_dropped if data else 0,
            datagrams_dropped_by_reason={"send_queue_full": data.datagrams_dropped if data else 0},
            congestion_control=self.config.congestion_control,
            cipher=self.handshake_result.cipher if self.handshake_result else "",
            paths_validated=self.path.validated if self.path else 0,
            path_validations_failed=self.path.failed if self.path else 0,
        )
