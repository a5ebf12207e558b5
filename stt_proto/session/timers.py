"""Every deadline of a session in one table (quinn's ``TimerTable``): an enum names them, one
slot each holds when it fires, and the session's next wake-up is the minimum over the table.

Deadlines that follow from other state (keep-alive from the last packet heard, the data
plane's loss timer, ...) are written into the table by the session's refresh before it is
read; the others (handshake, retransmission, drain) are set and cleared where they change.
The slots are plain float attributes, not a list: compiled, they stay unboxed, and the
minimum is ten native comparisons (``get_timer`` runs after every packet).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final

NEVER: Final = float("inf")  # an empty slot: never fires, never the minimum

# The slots' numbers as plain ints (an IntEnum member lookup costs more on hot paths).
T_HANDSHAKE: Final = 0
T_HANDSHAKE_RESEND: Final = 1
T_DRAIN: Final = 2
T_KEEP_ALIVE: Final = 3
T_PING: Final = 4
T_ACK: Final = 5
T_KEY_UPDATE: Final = 6
T_DATA: Final = 7
T_CIPHER_RELEASE: Final = 8
T_PATH: Final = 9


class Timer(IntEnum):
    """What each slot of a :class:`TimerTable` is for."""

    HANDSHAKE = T_HANDSHAKE  # the handshake must be confirmed by then
    HANDSHAKE_RESEND = T_HANDSHAKE_RESEND  # resend our last handshake message
    DRAIN = T_DRAIN  # a closing or draining session is forgotten
    KEEP_ALIVE = T_KEEP_ALIVE  # nothing heard for keep_alive_timeout: close
    PING = T_PING  # quiet for keep_alive_interval: send a PING
    ACK = T_ACK  # a delayed ACK is due
    KEY_UPDATE = T_KEY_UPDATE  # the send key is key_update_interval old: rotate it
    DATA = T_DATA  # the data plane's loss detection, pacing or coalescing hold
    CIPHER_RELEASE = T_CIPHER_RELEASE  # idle: drop the AEAD objects
    PATH = T_PATH  # path validation's next challenge or its deadline


# The attribute of each slot, in Timer order.
_SLOTS: Final = ("handshake", "handshake_resend", "drain", "keep_alive", "ping", "ack",
                 "key_update", "data", "cipher_release", "path")


class TimerTable:
    """One deadline per :class:`Timer`, :data:`NEVER` when not armed. The hot paths read and
    write the attributes directly; :meth:`set`, :meth:`get` and :meth:`expired` take a
    :class:`Timer`."""

    __slots__ = ("ack", "cipher_release", "data", "drain", "handshake", "handshake_resend",
                 "keep_alive", "key_update", "path", "ping")

    def __init__(self) -> None:
        self.clear_all()

    def clear_all(self) -> None:
        self.handshake = NEVER
        self.handshake_resend = NEVER
        self.drain = NEVER
        self.keep_alive = NEVER
        self.ping = NEVER
        self.ack = NEVER
        self.key_update = NEVER
        self.data = NEVER
        self.cipher_release = NEVER
        self.path = NEVER

    def at(self, timer: int) -> float:
        """The slot's deadline, :data:`NEVER` when not armed."""
        value: float = getattr(self, _SLOTS[timer])
        return value

    def set(self, timer: int, at: float) -> None:
        setattr(self, _SLOTS[timer], float(at))

    def clear(self, timer: int) -> None:
        setattr(self, _SLOTS[timer], NEVER)

    def get(self, timer: int) -> float | None:
        """The deadline, or None when the timer is not armed."""
        value = self.at(timer)
        return None if value == NEVER else value

    def expired(self, timer: int, now: float) -> bool:
        """Armed and due at ``now``."""
        return now >= self.at(timer)

    def next_deadline(self) -> float | None:
        """The earliest armed deadline, or None."""
        value = self.handshake
        if self.handshake_resend < value:
            value = self.handshake_resend
        if self.drain < value:
            value = self.drain
        if self.keep_alive < value:
            value = self.keep_alive
        if self.ping < value:
            value = self.ping
        if self.ack < value:
            value = self.ack
        if self.key_update < value:
            value = self.key_update
        if self.data < value:
            value = self.data
        if self.cipher_release < value:
            value = self.cipher_release
        if self.path < value:
            value = self.path
        return None if value == NEVER else value
