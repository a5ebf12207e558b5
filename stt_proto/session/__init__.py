"""One secure session with a peer, as a sans-I/O state machine (see :mod:`.core`).

The package's parts: :mod:`.core` (the :class:`Session` class, its whole public surface),
:mod:`.state` (states and the moves between them), :mod:`.timers` (every deadline in one
table), :mod:`.protection` (keys, packet numbers, replay window, key rotation),
:mod:`.handshake_phase`, :mod:`.receive` (frames of a packet) and :mod:`.app` (the
application's stream calls).
"""

from __future__ import annotations

from ..errors import AuthenticationError
from .core import Session
from .handshake_phase import HANDSHAKE_RETRANSMIT_MIN
from .output import AMPLIFICATION_FACTOR
from .state import CLOSING, DRAINING, ESTABLISHED, HANDSHAKING, TERMINATED, State
from .timeouts import CIPHER_IDLE_RELEASE, IDLE_TIMEOUT_CODE
from .timers import Timer, TimerTable

__all__ = [
    "AMPLIFICATION_FACTOR",
    "CIPHER_IDLE_RELEASE",
    "CLOSING",
    "DRAINING",
    "ESTABLISHED",
    "HANDSHAKE_RETRANSMIT_MIN",
    "HANDSHAKING",
    "IDLE_TIMEOUT_CODE",
    "TERMINATED",
    "AuthenticationError",
    "Session",
    "State",
    "Timer",
    "TimerTable",
]
