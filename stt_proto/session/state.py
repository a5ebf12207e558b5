"""A session's states and the moves between them, in one table (h11's ``_state.py`` style).

Every change of :attr:`Session.state` goes through :func:`check_move`, so a move the table does
not list is a bug caught where it happens, not a session stuck in a state nothing leaves.
"""

from __future__ import annotations

from enum import Enum, auto


class State(Enum):
    HANDSHAKING = auto()  # Noise messages in flight
    ESTABLISHED = auto()  # keys in place (the initiator may still await confirmation)
    CLOSING = auto()  # we sent CLOSE; answer late packets with CLOSE until the drain ends
    DRAINING = auto()  # the peer sent CLOSE; stay silent until the drain ends
    TERMINATED = auto()  # nothing left: the endpoint forgets the session


# The members as plain module names: an Enum member looked up on its class costs about 45 ns
# on Python 3.11, and the per-packet paths test the state several times.
HANDSHAKING, ESTABLISHED, CLOSING, DRAINING, TERMINATED = (
    State.HANDSHAKING, State.ESTABLISHED, State.CLOSING, State.DRAINING, State.TERMINATED)

# Where each state may go, and why. TERMINATED is reachable from everywhere: a handshake that
# fails or times out, a protocol error in a closing session, a drain that ends.
TRANSITIONS: dict[State, frozenset[State]] = {
    # keys installed (message 2 read, or message 3 read) / failed, refused, timed out
    HANDSHAKING: frozenset((ESTABLISHED, TERMINATED)),
    # close(), a protocol error or keep-alive timeout / the peer's CLOSE / refused, timed out
    ESTABLISHED: frozenset((CLOSING, DRAINING, TERMINATED)),
    # the drain ended, or the peer broke the protocol while we closed
    CLOSING: frozenset((TERMINATED,)),
    DRAINING: frozenset((TERMINATED,)),
    TERMINATED: frozenset((TERMINATED,)),
}

# A tuple, not a set: `in` finds members by identity, without Enum's Python-level __hash__.
CLOSED_STATES = (CLOSING, DRAINING, TERMINATED)


def check_move(current: State, new: State) -> State:
    """``new`` if the table allows moving there from ``current``; AssertionError otherwise
    (an internal bug: no input from the network reaches a move the table lacks)."""
    if new not in TRANSITIONS[current]:
        raise AssertionError(f"session state cannot move from {current.name} to {new.name}")
    return new
