"""The frames of an authenticated packet other than STREAM and ACK.

The per-packet loop (:meth:`Session._handle_payload` in :mod:`.core`) decodes STREAM and ACK
frames in place and hands every other frame to :func:`handle_frame` here: control frames are
rare, so this module is called and has returned by the time a datagram's data reaches its
stream (docs/architecture.md, "A datagram's route").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ProtocolViolation, SessionClosed
from ..frames import (
    AckFrame,
    CloseFrame,
    Frame,
    HandshakeDoneFrame,
    KeyUpdateFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
)
from ..peer_text import sanitize
from .ending import enter_drain, report_end
from .state import DRAINING

if TYPE_CHECKING:
    from .core import Session


def handle_frame(session: Session, frame: Frame, now: float) -> None:
    """One frame other than STREAM (and ACK, decoded in place by ``Session._handle_payload``)."""
    if isinstance(frame, AckFrame):
        if session.data is not None:
            session.data.on_ack(frame.ranges, frame.ack_delay, now, session._protection.next_pn)
    elif isinstance(frame, (PingFrame, PaddingFrame)):
        pass
    elif isinstance(frame, CloseFrame):
        if session.state is DRAINING:  # a second CLOSE in the same packet: the first one won
            return
        reason = sanitize(frame.reason)  # peer text leaves the library here: peer_text
        error = SessionClosed(frame.error_code, reason, by_peer=True)
        enter_drain(session, DRAINING, now)
        report_end(session, error, frame.error_code, reason, by_peer=True)
    elif isinstance(frame, HandshakeDoneFrame):
        if not session.is_initiator:
            raise ProtocolViolation("HANDSHAKE_DONE sent by the initiator")
    elif isinstance(frame, PathChallengeFrame):
        session._path().on_challenge(frame.data)
    elif isinstance(frame, PathResponseFrame):
        path = session.path
        if path is not None:
            address = path.on_response(frame.data)
            if address is not None:
                session.remote_address = address  # validated: the peer receives there
                if session.data is not None:
                    session.data.on_path_validated()
    elif isinstance(frame, KeyUpdateFrame):
        session._protection.check_key_update(frame.generation)
    else:  # stream, flow-control and datagram frames go to the data plane
        if session.data is None:  # pragma: no cover - data packets imply installed keys
            raise ProtocolViolation("stream frame before the handshake finished")
        session.data.on_frame(frame)
