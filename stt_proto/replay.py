"""The sliding anti-replay window over authenticated packet numbers."""

from __future__ import annotations

WINDOW = 4096  # packet numbers below largest - WINDOW + 1 are refused as too old
_MASK = (1 << WINDOW) - 1


class ReplayWindow:
    """Accepts each packet number once. Only call :meth:`accept` after the packet authenticated,
    so forged packets cannot move the window.

    The window remembers the packet numbers it has *not* seen (bit i of ``_missing``: packet
    ``largest - i`` is still missing). In order, with nothing missing, that is the integer 0
    and accepting a packet costs a few small-integer operations; a bitmap of the seen ones
    would shift a 4,096-bit integer for every packet."""

    __slots__ = ("_missing", "largest")

    def __init__(self) -> None:
        self.largest = -1
        self._missing = 0

    def check(self, pn: int) -> bool:
        """Whether ``pn`` would be accepted (not a duplicate, not too old)."""
        if pn > self.largest:
            return True
        offset = self.largest - pn
        return offset < WINDOW and bool((self._missing >> offset) & 1)

    def accept(self, pn: int) -> bool:
        """Record ``pn``; False if it is a replay or too old."""
        largest = self.largest
        if pn > largest:
            shift = pn - largest
            if shift == 1:
                if self._missing:
                    self._missing = (self._missing << 1) & _MASK
            else:  # the numbers skipped (bits 1 .. shift-1) are missing
                self._missing = ((self._missing << shift) | ((1 << min(shift, WINDOW)) - 2)) \
                    & _MASK
            self.largest = pn
            return True
        offset = largest - pn
        if offset >= WINDOW or not (self._missing >> offset) & 1:
            return False
        self._missing ^= 1 << offset
        return True
