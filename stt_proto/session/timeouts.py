"""What a session does when its deadlines come: the handshake's timeout and retransmission,
the drain's end, keep-alive (PING, then close), the data plane's loss timer, the release of
idle ciphers and path validation's probes. The deadlines themselves live in the
:class:`~.timers.TimerTable`; :func:`refresh_timers` writes the ones that follow from other
state before the table is read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import HandshakeTimeout, KeepAliveTimeout
from ..frames import CloseFrame
from .ending import enter_drain, report_end, terminate
from .state import CLOSING, DRAINING, ESTABLISHED, TERMINATED
from .timers import NEVER

if TYPE_CHECKING:
    from .core import Session

IDLE_TIMEOUT_CODE = 0x10
# Seconds without a packet either way after which a session drops its AEAD objects (rebuilt
# from the keys on the next packet): an idle session then keeps 32-byte keys, not 5 KiB tables.
CIPHER_IDLE_RELEASE = 2.0


def refresh_timers(session: Session, now: float) -> None:
    """Write the deadlines of an established session that follow from other state."""
    timers = session._timers
    config = session.config
    heard = session._last_received
    timers.keep_alive = heard + config.keep_alive_timeout
    timers.ping = min(session._last_sent, max(heard, session._last_ping)) \
        + config.keep_alive_interval
    ack = session._acks.ack_deadline
    timers.ack = NEVER if ack is None else ack
    protection = session._protection
    keys = protection.send_keys
    timers.key_update = keys.started_at + config.key_update_interval \
        if keys is not None and session.confirmed else NEVER
    data = session.data
    deadline = data.timer(now) if data is not None else None
    timers.data = NEVER if deadline is None else deadline
    timers.cipher_release = max(session._last_sent, heard) + CIPHER_IDLE_RELEASE \
        if protection.ciphers_live else NEVER
    path = session.path
    deadline = path.timer() if path is not None else None
    timers.path = NEVER if deadline is None else deadline


def on_timer(session: Session, now: float) -> None:
    """:meth:`Session.handle_timer`."""
    session._now = now
    state = session.state
    if state is TERMINATED:
        return
    timers = session._timers
    if state is CLOSING or state is DRAINING:
        if now >= timers.drain and not session._close_pending:
            session._move(TERMINATED)
        return
    config = session.config
    if now >= timers.handshake:  # cleared once confirmed
        address = session.remote_address
        timeout = HandshakeTimeout(f"no handshake with {address[0]}:{address[1]} within "
                                   f"{config.handshake_timeout:g} s")
        terminate(session, timeout, 0, str(timeout), by_peer=False)
        return
    if now >= timers.handshake_resend:
        session._handshake.retransmit(session, now)
    if state is ESTABLISHED:
        data = session.data
        if data is not None:
            data.on_timer(now)
        refresh_timers(session, now)
        release = now >= timers.cipher_release  # read before a close clears it
        if now >= timers.keep_alive:
            error = KeepAliveTimeout(
                f"nothing heard from the peer for {config.keep_alive_timeout:g} s")
            session._close_frame = CloseFrame(IDLE_TIMEOUT_CODE, "keep-alive timeout")
            session._close_pending = True
            report_end(session, error, IDLE_TIMEOUT_CODE, str(error), by_peer=False)
            enter_drain(session, CLOSING, now, drain=0.0)
        elif now >= timers.ping:
            session._ping_pending = True
            session._last_ping = now
        if release:
            session._protection.release()
            if data is not None:
                data.compact()
        if session.path is not None:
            session.path.on_timer(now)
    session._wake()
