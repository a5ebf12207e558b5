"""How a session ends: the drain after a CLOSE (ours or the peer's), the error it reports once,
and the moves to TERMINATED. Module functions over the session, beside the state table
(``state.py``) whose moves they make; :meth:`Session.close` and the input and timer paths call
them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ProtocolError, STTError
from ..events import SessionTerminated
from ..frames import CloseFrame
from .state import CLOSING, TERMINATED, State
from .timers import T_DRAIN

if TYPE_CHECKING:
    from .core import Session


def enter_drain(session: Session, state: State, now: float, drain: float | None = None) -> None:
    """Move to CLOSING or DRAINING; the drain (three PTOs unless given) is the only deadline
    left."""
    session._move(state)
    timers = session._timers
    timers.clear_all()  # a closing session waits for nothing but the drain's end
    timers.set(T_DRAIN, now + (3 * session.rtt.pto() if drain is None else drain))


def report_end(session: Session, error: STTError, code: int, reason: str, *,
               by_peer: bool) -> None:
    """Record why the session ended and tell the application, the first time only."""
    if session.error is None:
        session.error = error
        session._events.append(SessionTerminated(code, reason, by_peer, error))


def terminate(session: Session, error: STTError, code: int, reason: str, *,
              by_peer: bool) -> None:
    """End at once, with no drain (no keys to send a CLOSE with, or the drain is over)."""
    report_end(session, error, code, reason, by_peer=by_peer)
    session._move(TERMINATED)
    session._timers.clear_all()


def fail(session: Session, exc: ProtocolError, now: float) -> None:
    """The peer broke the protocol: close with its error code and say why."""
    if session._protection.send_keys is None or session.is_closed:
        terminate(session, exc, exc.code, str(exc), by_peer=False)
        return
    session._close_frame = CloseFrame(exc.code, str(exc)[:200])
    session._close_pending = True
    enter_drain(session, CLOSING, now)
    report_end(session, exc, exc.code, str(exc), by_peer=False)
