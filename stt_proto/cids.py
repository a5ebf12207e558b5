"""Local session ids that name a worker process, for ``STTNode(workers=N)``.

Every packet's destination id sits in its cleartext header (bytes 2-9, ``docs/wire-format.md``).
With ``workers=N`` the kernel steers each datagram to worker ``u32(id[0:4]) mod N`` (a classic
BPF program, ``stt_runtime/steering.py``). An INITIAL's destination id is the initiator's random
one, so new sessions spread uniformly over the workers, or, after a RETRY that redirects it,
one the redirecting worker made here to name the worker placement chose (``placement.py``);
every later packet carries an id the receiving worker chose itself, with its own index encoded
here, so a session stays with its worker whatever address the peer sends from. The other
60-odd bits stay random.
"""

from __future__ import annotations

WorkerIds = tuple[int, int]  # (this worker's index, the number of workers)
_U32 = 1 << 32


def worker_cid(raw: bytes, worker: WorkerIds | None) -> bytes:
    """``raw`` (random bytes, at least 4) with its first 4 bytes moved to the nearest value
    that names ``worker``; unchanged for None (one process: ids stay fully random)."""
    if worker is None:
        return raw
    index, count = worker
    if not 0 <= index < count:
        raise ValueError(f"worker index {index} outside 0..{count - 1}")
    value = int.from_bytes(raw[:4], "big")
    value += index - value % count
    if value >= _U32:
        value -= count
    return value.to_bytes(4, "big") + raw[4:]


def cid_worker_index(cid: bytes | bytearray | memoryview, count: int) -> int:
    """The worker a destination id names among ``count``: what the steering program picks."""
    return int.from_bytes(bytes(cid[:4]), "big") % count


__all__ = ["WorkerIds", "cid_worker_index", "worker_cid"]
