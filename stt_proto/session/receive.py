"""The frames of an authenticated packet, handled in one pass.

Module functions over the session rather than methods, to keep :mod:`.core` to the session's
surface; the per-packet loop stays as it was (STREAM and ACK frames decoded in place).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import FrameError, ProtocolViolation, SessionClosed
from ..frames import (
    MAX_FRAMES_PER_PACKET,
    NON_ACK_ELICITING,
    AckFrame,
    CloseFrame,
    Frame,
    HandshakeDoneFrame,
    KeyUpdateFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    decode_ack_fields,
    decode_frame,
    decode_stream_fields,
)
from ..peer_text import sanitize
from .state import DRAINING

if TYPE_CHECKING:
    from .core import Session


def handle_payload(session: Session, payload: bytes, now: float) -> bool:
    """Decode and handle the frames of a decrypted payload in one pass; returns whether
    any of them elicits an ACK. STREAM frames, nearly every frame of a transfer, go
    straight to the streams without a frame object. A malformed frame raises (the session
    then fails) after the frames before it were handled: they were authentic. So does a
    frame past MAX_FRAMES_PER_PACKET: what a packet of tiny frames costs stays bounded."""
    view = memoryview(payload)
    end = len(view)
    if end == 0:
        raise FrameError("packet payload holds no frames")
    data = session.data
    pos = 0
    eliciting = False
    budget = MAX_FRAMES_PER_PACKET
    while pos < end:
        if not budget:
            raise FrameError(f"packet carries more than {MAX_FRAMES_PER_PACKET} frames")
        budget -= 1
        kind = view[pos]
        if (kind == 0x08 or kind == 0x09) and data is not None:  # STREAM, STREAM with FIN
            stream_id, offset, chunk, pos = decode_stream_fields(view, pos + 1)
            data.streams.on_stream_data(stream_id, offset, chunk, kind == 0x09)
            eliciting = True
            continue
        if kind == 0x02 and data is not None:  # ACK, in nearly every packet of a dialogue
            ranges, ack_delay, pos = decode_ack_fields(view, pos + 1)
            data.on_ack(ranges, ack_delay, now, session._protection.next_pn)
            continue
        frame, pos = decode_frame(view, pos)
        if not eliciting and type(frame) not in NON_ACK_ELICITING:
            eliciting = True
        handle_frame(session, frame, now)
    return eliciting


def handle_frame(session: Session, frame: Frame, now: float) -> None:
    """One frame other than STREAM (and ACK, decoded in place by :func:`handle_payload`)."""
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
        session._enter_drain(DRAINING, now)
        session._report_end(error, frame.error_code, reason, by_peer=True)
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
