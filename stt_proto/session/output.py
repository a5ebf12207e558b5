"""What a session sends: queued handshake datagrams (within the anti-amplification limit),
then protected packets built by the data plane with the session's control frames in front,
and PATH_CHALLENGEs for a candidate address.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..dataplane import PACKET_OVERHEAD
from ..frames import (
    PATH_DATA_LEN,
    Frame,
    HandshakeDoneFrame,
    KeyUpdateFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    encode_frame,
)
from ..packet import Datagram
from ..path import PathValidator
from .state import CLOSING, ESTABLISHED, TERMINATED

if TYPE_CHECKING:
    from .core import Session

AMPLIFICATION_FACTOR = 3  # bytes sent before the peer's address is validated, per byte received


def datagrams_to_send(session: Session, now: float, limit: int | None) -> list[Datagram]:
    """:meth:`Session.datagrams_to_send`."""
    out: list[Datagram] = []
    session.more_to_send = False
    counters = session.counters
    if session._outbox:
        kept: list[Datagram] = []
        for datagram in session._outbox:
            if _may_send(session, len(datagram)):
                out.append(datagram)
            else:
                kept.append(datagram)
                counters.amplification_blocked += 1
        session._outbox = kept
    handshake_packets = len(out)
    session._now = now
    state = session.state
    if session._protection.send_keys is not None and (state is ESTABLISHED or state is CLOSING):
        out.extend(_build_packets(session, now, limit))
        data = session.data
        session.more_to_send = data is not None and data.more
        path = session.path
        if path is not None and session.state is ESTABLISHED:
            _send_challenge(session, path, now)
    if out:
        session._last_sent = now
        counters.packets_sent += handshake_packets
        for datagram in out:
            counters.bytes_sent_wire += len(datagram)
            session._amp_sent += len(datagram)
    if (session.state is CLOSING and now >= session._timers.drain
            and not session._close_pending):
        session._move(TERMINATED)  # a zero-length drain: the CLOSE is out, we are done
    return out


def _build_packets(session: Session, now: float, limit: int | None) -> list[Datagram]:
    data = session.data
    if data is not None:
        data.more = False
    close_frame = session._close_frame
    if session._close_pending and close_frame is not None:
        session._close_pending = False
        session._close_sent_at = now
        payload = bytearray()
        encode_frame(close_frame, payload)
        return [session._seal(payload)[0]]
    if session.state is not ESTABLISHED or data is None:
        return []
    protection = session._protection
    if session.confirmed:
        config = session.config
        protection.maybe_rotate(now, config.key_update_packets, config.key_update_interval,
                                data.recovery.largest_acked)
    head: list[Frame] = []
    generation = protection.key_update_pending
    if generation is not None:
        head.append(KeyUpdateFrame(generation))
        protection.key_update_pending = None
    if session._handshake_done_pending:
        head.append(HandshakeDoneFrame())
        session._handshake_done_pending = False
    path = session.path
    if path is not None and path.responses:
        head.extend(PathResponseFrame(echo) for echo in path.responses)
        path.responses.clear()
    if session._ping_pending:
        head.append(PingFrame())
        session._ping_pending = False
        session.counters.pings_sent += 1
    acks = session._acks
    ack = b""
    if acks.ack_due(now) or (acks.ack_deadline is not None
                             and (head or data.streams.has_pending())):
        ack = acks.encode(now)
    return data.build(now, head, session._seal, limit, ack)


def _send_challenge(session: Session, path: PathValidator, now: float) -> None:
    """Seal a due PATH_CHALLENGE for the candidate address into the path's outbox (the
    endpoint sends it there). Not tracked by loss recovery: a challenge to a victim is
    never acknowledged, and must not count as congestion on the real path."""
    data = path.challenge(now, session._rng, PACKET_OVERHEAD + 1 + PATH_DATA_LEN)
    if data is None:
        return
    payload = bytearray()
    encode_frame(PathChallengeFrame(data), payload)
    datagram = session._seal(payload)[0]
    path.on_sent(bytes(datagram))  # small, so already bytes: kept past the next call
    session.counters.bytes_sent_wire += len(datagram)


def _may_send(session: Session, size: int) -> bool:
    if session.address_validated:
        return True
    return session._amp_sent + size <= AMPLIFICATION_FACTOR * session._amp_received
