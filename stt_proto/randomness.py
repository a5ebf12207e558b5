"""The injectable source of randomness used for keys, nonces and connection ids.

Everything in ``stt_proto`` that needs random bytes takes a :class:`RandomSource`. Production code
uses :class:`SystemRandom` (the OS CSPRNG); tests and the simulator use :class:`DeterministicRandom`
so that a run replays byte for byte from its seed.
"""

from __future__ import annotations

import hashlib
import os
from typing import Protocol


class RandomSource(Protocol):
    """Anything that returns ``n`` random bytes."""

    def token_bytes(self, n: int) -> bytes: ...


class SystemRandom:
    """Cryptographically secure bytes from the operating system."""

    def token_bytes(self, n: int) -> bytes:
        return os.urandom(n)


class DeterministicRandom:
    """Reproducible bytes: BLAKE2b in counter mode keyed by ``seed``. For tests only."""

    def __init__(self, seed: int | bytes = 0) -> None:
        if isinstance(seed, int):
            seed = seed.to_bytes(16, "big", signed=True)
        self._key = hashlib.blake2b(seed, digest_size=32).digest()
        self._counter = 0
        self._pool = b""

    def token_bytes(self, n: int) -> bytes:
        while len(self._pool) < n:
            block = hashlib.blake2b(
                self._counter.to_bytes(8, "big"), key=self._key, digest_size=64
            ).digest()
            self._counter += 1
            self._pool += block
        out, self._pool = self._pool[:n], self._pool[n:]
        return out
