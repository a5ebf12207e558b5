"""Counters kept by sessions and endpoints, and the reasons a datagram can be dropped."""

from __future__ import annotations

from enum import StrEnum

import attrs


class DropReason(StrEnum):
    MALFORMED = "malformed"  # header or frames could not be parsed
    REPLAY = "replay"  # duplicate or too-old packet number
    UNKNOWN_SESSION = "unknown_session"  # no session has that connection id
    RATE_LIMITED = "rate_limited"  # stateless replies over their budget
    DECRYPT_FAILED = "decrypt_failed"  # authentication failed (forged, corrupt or stale key)
    UNEXPECTED = "unexpected"  # valid packet, wrong moment (e.g. a second RETRY)
    TOO_SMALL = "too_small"  # an INITIAL not padded to the minimum size
    REFUSED = "refused"  # the INITIAL was answered with REFUSE or RETRY


@attrs.define(slots=True)
class SessionCounters:
    packets_sent: int = 0
    packets_received: int = 0
    bytes_sent_wire: int = 0
    bytes_received_wire: int = 0
    replays_dropped: int = 0
    decrypt_failures: int = 0
    key_updates_sent: int = 0
    key_updates_received: int = 0
    pings_sent: int = 0
    amplification_blocked: int = 0


@attrs.frozen(slots=True)
class SessionStats:
    """A snapshot of one session, computed from protocol state. ``rtt_*`` in milliseconds;
    ``bytes_*`` count application payload (stream messages and datagrams), ``*_wire`` whole
    datagrams; ``throughput_mbps`` is the smoothed delivery rate of recent sending."""

    bytes_sent: int
    bytes_received: int
    packets_sent: int
    packets_received: int
    packets_lost: int
    rtt_ms: float
    rtt_min_ms: float
    loss_rate: float
    throughput_mbps: float
    cwnd_bytes: int
    streams_open: int
    bytes_sent_wire: int
    bytes_received_wire: int
    replays_dropped: int
    decrypt_failures: int
    key_updates_sent: int
    key_updates_received: int
    pings_sent: int
    datagrams_dropped: int
    congestion_control: str
    cipher: str
    # ``datagrams_dropped`` split by reason: "send_queue_full" (the core's outgoing queue) and
    # "receive_queue_full" (a runtime's queue of unread incoming datagrams). No default: this
    # module is compiled, and mypyc takes a class-level attrs.field() for the field's value.
    datagrams_dropped_by_reason: dict[str, int]
    # Path validation (path.py): moves to a new peer address after its challenge was echoed,
    # and candidate addresses dropped unanswered (an attacker's copy, or a path that died).
    paths_validated: int = 0
    path_validations_failed: int = 0
    # Path-MTU discovery (pmtu.py): the datagram size the session builds to, whether it is
    # still probing for a larger one ("searching") or settled ("complete"), and how often a
    # shrunken path (a black hole) sent it back to the 1,200-byte base.
    path_mtu: int = 0
    path_mtu_state: str = ""
    path_mtu_black_holes: int = 0
    # What a time series of the sender needs (``python -m stt_bench.impaired --series``):
    # bytes now unacknowledged, the pacing rate, the latest RTT sample, whether recent sending
    # was limited by the application rather than the window, and the controller's phase.
    bytes_in_flight: int = 0
    pacing_rate_mbps: float = 0.0
    rtt_latest_ms: float = 0.0
    app_limited: bool = False
    congestion_state: str = ""


@attrs.frozen(slots=True)
class StreamStats:
    """Per-stream counters of application payload, and what is still buffered."""

    stream_id: int
    bytes_sent: int
    bytes_received: int
    messages_sent: int
    messages_received: int
    bytes_unacked: int
    bytes_buffered_in: int


@attrs.frozen(slots=True)
class EndpointStats:
    sessions_open: int
    sessions_total: int
    handshakes_ok: int
    handshakes_failed: int
    datagrams_in: int
    datagrams_out: int
    bytes_in: int
    bytes_out: int
    dropped: dict[str, int]
    retries_sent: int
    refusals_sent: int
    dht: dict[str, int]  # the DHT's counters, filled by the node core (empty for a bare endpoint)
    half_open: int = 0  # inbound handshakes in progress
    evicted: int = 0  # half-open handshakes dropped for the budget or the load timeout
    receive_budget_used: int = 0  # reserved on receive_budget: reassembly and window growth
    receive_budget_denials: int = 0  # reservations that waited, window growth cut short
