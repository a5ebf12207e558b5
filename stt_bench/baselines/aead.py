"""The bare AEAD every encrypted baseline is built on: STT's default cipher with nothing else
around it, as a datagram codec (:func:`make_sealer`) and as a seal+open rate."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305


def make_sealer(frame_size: int, key_bytes: bytes | None = None
                ) -> tuple[Callable[[int], bytes], Callable[[bytearray, int], int]]:
    """The raw baseline's datagram codec: a 20-byte header (8-byte counter) authenticated as
    associated data and the payload sealed with AES-256-GCM, STT's default AEAD, so a datagram is
    ``frame_size`` bytes on the wire like STT's. ``open_`` returns the payload size. Two
    processes pass the same ``key_bytes``."""
    key = AESGCM(key_bytes or os.urandom(32))
    payload = os.urandom(frame_size - 16 - 20)
    pad = bytes(12)

    def seal(counter: int) -> bytes:
        head = counter.to_bytes(8, "big") + pad
        return head + key.encrypt(counter.to_bytes(12, "big"), payload, head)

    def open_(buffer: bytearray, size: int) -> int:
        with memoryview(buffer) as view:
            key.decrypt(bytes(4) + view[:8].tobytes(), view[20:size], view[:20])
        return size - 36

    return seal, open_


def bare_aead_rate(cipher: str, size: int, seconds: float) -> float:
    """Baseline: seal+open with the bare AEAD, nothing else. Bytes per second."""
    aead = AESGCM(bytes(32)) if cipher == "AESGCM" else ChaCha20Poly1305(bytes(32))
    payload = bytes(size)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        nonce = n.to_bytes(12, "big")
        aead.decrypt(nonce, aead.encrypt(nonce, payload, b"header-bytes"), b"header-bytes")
        n += 1
    return n * size / (time.perf_counter() - start)
