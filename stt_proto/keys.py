"""Traffic keys per direction, and in-band key rotation.

Each direction rotates independently: the sender moves to the next key generation (Noise REKEY of
the current key), flips the header's key-phase bit and sends a KEY_UPDATE frame. The receiver,
seeing the other phase on a packet newer than the current generation began, tries the next key and
promotes it on success; the previous key is kept for reordered packets until the next rotation.
A sender rotates again only after the peer acknowledged a packet of the current generation, so the
one phase bit is never ambiguous.
"""

from __future__ import annotations

from .errors import CryptoError
from .packet import PacketCipher


class SendKeys:
    __slots__ = ("cipher", "first_pn", "generation", "packets", "phase", "started_at")

    def __init__(self, cipher: PacketCipher, now: float) -> None:
        self.cipher = cipher
        self.generation = 0
        self.phase = 0
        self.first_pn = 0
        self.packets = 0
        self.started_at = now

    def rotate(self, next_pn: int, now: float) -> None:
        self.cipher = self.cipher.next_generation()
        self.generation += 1
        self.phase ^= 1
        self.first_pn = next_pn
        self.packets = 0
        self.started_at = now


class RecvKeys:
    __slots__ = ("current", "first_pn", "generation", "next", "phase", "previous")

    def __init__(self, cipher: PacketCipher) -> None:
        self.current = cipher
        self.previous: PacketCipher | None = None
        self.next: PacketCipher | None = None
        self.generation = 0
        self.phase = 0
        self.first_pn = 0

    def release(self) -> None:
        """Drop the AEAD objects of every kept generation (see PacketCipher.release)."""
        for cipher in (self.current, self.previous, self.next):
            if cipher is not None:
                cipher.release()

    def open(self, pn: int, key_phase: int, header: memoryview | bytes,
             body: memoryview | bytes) -> tuple[bytes, bool]:
        """Decrypt a DATA packet; returns ``(payload, rotated)``. Raises :class:`CryptoError`
        if no key fits."""
        if key_phase == self.phase:
            return self.current.open_sealed(pn, header, body), False
        if self.previous is not None and pn < self.first_pn:
            return self.previous.open_sealed(pn, header, body), False
        if pn < self.first_pn:
            raise CryptoError("packet from a key generation that has been discarded")
        if self.next is None:
            self.next = self.current.next_generation()
        payload = self.next.open_sealed(pn, header, body)
        self.previous, self.current, self.next = self.current, self.next, None
        self.generation += 1
        self.phase ^= 1
        self.first_pn = pn
        return payload, True
