"""The sliding anti-replay window over authenticated packet numbers."""

from __future__ import annotations

WINDOW = 4096  # packet numbers below largest - WINDOW + 1 are refused as too old
_MASK = (1 << WINDOW) - 1
# How far past the largest packet number received an authenticated packet may lie; further is
# a ProtocolViolation (see Session._receive_data). Why this bound is sound: packet numbers
# travel whole on the wire (no truncated form to reconstruct, so decoding cannot produce a jump
# by itself), and a peer numbers its packets consecutively from 0, never skipping one
# (Session._seal). A jump of k therefore means the k - 1 packets before it were all lost. While
# none of them arrives we acknowledge none of them, so the peer's congestion window cannot
# grow and its loss recovery falls back to probe timeouts with exponential backoff: what it can
# have sent meanwhile is one congestion window of packets, ACK-only packets for what we sent
# it (bounded by our own window), a few probes and keep-alive PINGs, all before the keep-alive
# timeout ends the session. Even gigabyte windows of full packets make that under two million;
# 2**24 (16.7 million) leaves a wide margin, and a peer beyond it is jumping ahead on purpose.
MAX_PN_JUMP = 1 << 24


class ReplayWindow:
    """Accepts each packet number once. Only call :meth:`accept` after the packet authenticated,
    so forged packets cannot move the window.

    The window remembers the packet numbers it has *not* seen (bit i of ``_missing``: packet
    ``largest - i`` is still missing). In order, with nothing missing, that is the integer 0
    and accepting a packet costs a few small-integer operations; a bitmap of the seen ones
    would shift a 4,096-bit integer for every packet. Every operation costs O(WINDOW) bits at
    most, whatever the packet number jumps by."""

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
            elif shift < WINDOW:  # the numbers skipped (bits 1 .. shift-1) are missing
                self._missing = ((self._missing << shift) | ((1 << shift) - 2)) & _MASK
            else:
                # Everything in the window is newer than the old largest: all missing but pn.
                # Computed, not shifted: shifting by the jump costs time and memory in
                # proportion to the jump (2**40 raised MemoryError), this stays O(WINDOW).
                self._missing = _MASK - 1
            self.largest = pn
            return True
        offset = largest - pn
        if offset >= WINDOW or not (self._missing >> offset) & 1:
            return False
        self._missing ^= 1 << offset
        return True
