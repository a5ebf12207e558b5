"""The application's calls on a session's data plane: streams, datagrams and stats.

:class:`~stt_proto.session.Session` exposes these as its own methods, each a one-line
delegation here once it has checked the session's state; nothing here holds state.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..config import frame_size
from ..errors import SettingsError
from ..stats import SessionStats, StreamStats

if TYPE_CHECKING:
    from ..config import SessionConfig
    from ..dataplane import DataPlane
    from ..handshake import HandshakeResult
    from ..path import PathValidator
    from ..rtt import RttEstimator
    from ..stats import SessionCounters


def check_open_arguments(max_frame_size: object, no_delay: object,
                         priority: object) -> tuple[int | None, bool | None, int]:
    """open_stream's arguments, checked: SettingsError (a ValueError) names a bad one. They
    are typed ``object`` so that the compiled module checks them here, with that error, rather
    than failing the call with a bare TypeError."""
    size = None if max_frame_size is None else frame_size(max_frame_size)
    if no_delay is not None and not isinstance(no_delay, bool):
        raise SettingsError(f"no_delay must be True, False or None, got {no_delay!r}")
    if isinstance(priority, bool) or not isinstance(priority, int) \
            or not -2**31 <= priority < 2**31:
        raise SettingsError(f"priority must be an integer in -2**31..2**31-1, "
                            f"got {priority!r}")
    return size, no_delay, priority


def open_stream(data: DataPlane, size: int | None, no_delay: bool | None, priority: int) -> int:
    # the ceiling, not the size found so far: packets follow the path's size as it is found
    if size is None:
        size = data.frame_ceiling
    return data.streams.open(min(size, data.frame_ceiling), no_delay, priority).stream_id


def stream_state(data: DataPlane, stream_id: int) -> tuple[bool, bool, int | None]:
    """(peer finished and everything read, all our data acknowledged, reset code or None)."""
    stream = data.streams.streams.get(stream_id)
    if stream is None:
        return True, True, None
    recv = stream.recv
    code = recv.reset_code if recv.reset_code is not None else stream.send.reset_sent
    return recv.finished and not recv.messages, stream.send.all_acked, code


def stream_stats(data: DataPlane, stream_id: int) -> StreamStats:
    stream = data.streams.get(stream_id)
    recv = stream.recv
    return StreamStats(stream_id, stream.bytes_sent, stream.bytes_received,
                       stream.messages_sent, stream.messages_received,
                       stream.send.unacked_bytes, recv.held_bytes)


def session_stats(data: DataPlane | None, counters: SessionCounters, rtt: RttEstimator,
                  config: SessionConfig, result: HandshakeResult | None,
                  path: PathValidator | None) -> SessionStats:
    c = counters
    # path-MTU probes are not the application's traffic: their losses are the path's size
    lost = data.recovery.lost_packets - data.pmtu.probes_lost if data else 0
    in_flight_sent = data.recovery.sent_count - data.pmtu.probes_sent if data else 0
    streams = data.streams if data else None
    return SessionStats(
        bytes_sent=(streams.bytes_sent + data.datagram_bytes_sent) if data and streams else 0,
        bytes_received=(streams.bytes_received + data.datagram_bytes_received)
        if data and streams else 0,
        packets_sent=c.packets_sent, packets_received=c.packets_received,
        packets_lost=lost,
        rtt_ms=rtt.smoothed * 1000, rtt_min_ms=rtt.min_rtt * 1000,
        loss_rate=lost / in_flight_sent if in_flight_sent else 0.0,
        throughput_mbps=(data.send_rate * 8 / 1e6) if data else 0.0,
        cwnd_bytes=data.cc.cwnd if data else 0,
        streams_open=streams.open_count if streams else 0,
        bytes_sent_wire=c.bytes_sent_wire, bytes_received_wire=c.bytes_received_wire,
        replays_dropped=c.replays_dropped, decrypt_failures=c.decrypt_failures,
        key_updates_sent=c.key_updates_sent, key_updates_received=c.key_updates_received,
        pings_sent=c.pings_sent,
        datagrams_dropped=data.datagrams_dropped + data.datagrams_too_large if data else 0,
        datagrams_dropped_by_reason={"send_queue_full": data.datagrams_dropped if data else 0,
                                     "larger_than_path": data.datagrams_too_large if data else 0},
        congestion_control=config.congestion_control,
        cipher=result.cipher if result else "",
        paths_validated=path.validated if path else 0,
        path_validations_failed=path.failed if path else 0,
        path_mtu=data.max_datagram if data else 0,
        path_mtu_state=data.pmtu.stats_state if data else "",
        path_mtu_black_holes=data.pmtu.black_holes if data else 0,
        bytes_in_flight=data.recovery.bytes_in_flight if data else 0,
        pacing_rate_mbps=data.cc.pacing_rate(rtt) * 8 / 1e6 if data else 0.0,
        rtt_latest_ms=rtt.latest * 1000,
        # nothing in flight: neither the window nor pacing holds anything back
        app_limited=(data.recovery.app_limited or not data.recovery.bytes_in_flight)
        if data else False,
        congestion_state=data.cc.state if data else "",
    )
