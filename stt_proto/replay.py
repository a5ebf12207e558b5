"""The sliding anti-replay window over authenticated packet numbers."""

from __future__ import annotations

WINDOW = 4096  # packet numbers below largest - WINDOW are refused as too old
_MASK = (1 << WINDOW) - 1


class ReplayWindow:
    """Accepts each packet number once. Only call :meth:`accept` after the packet authenticated,
    so forged packets cannot move the window."""

    __slots__ = ("_bits", "largest")

    def __init__(self) -> None:
        self.largest = -1
        self._bits = 0  # bit i set: packet (largest - i) seen

    def check(self, pn: int) -> bool:
        """Whether ``pn`` would be accepted (not a duplicate, not too old)."""
        if pn > self.largest:
            return True
        offset = self.largest - pn
        return offset < WINDOW and not (self._bits >> offset) & 1

    def accept(self, pn: int) -> bool:
        """Record ``pn``; False if it is a replay or too old."""
        if pn > self.largest:
            shift = pn - self.largest
            self._bits = ((self._bits << shift) | 1) & _MASK
            self.largest = pn
            return True
        offset = self.largest - pn
        if offset >= WINDOW or (self._bits >> offset) & 1:
            return False
        self._bits |= 1 << offset
        return True
