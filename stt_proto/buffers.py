"""Reused buffers that large packets are sealed into.

A bulk sender seals a window of 16-64 KB packets, hands them to the socket and drops them. Each
one allocated and freed makes glibc return the top of its heap to the kernel and fault it back
in on the next packet (about 160 page faults per MiB sent, half the goodput of a process that
tunes ``mallopt``). Sealing into a few buffers that live as long as the endpoint costs nothing
per packet and asks nothing of the application's process.

The price is a lifetime rule: a datagram sealed into these buffers is a view that stays valid
only until the endpoint's next ``datagrams_to_send`` call, when the buffers are written again.
The runtimes send every batch before asking for the next one; a caller that keeps datagrams
longer (the simulator, a test) does not turn the buffers on (``Endpoint.use_send_buffers``).
"""

from __future__ import annotations

SMALLEST = 4096  # smaller packets are sealed into a fresh ``bytes``: cheap, and no heap churn


class SendBuffers:
    """At most ``count`` buffers, written in turn from the first after each :meth:`rewind`."""

    __slots__ = ("_buffers", "_next", "count")

    def __init__(self, count: int) -> None:
        if count < 1:
            raise ValueError(f"count must be at least 1, got {count}")
        self.count = count
        self._buffers: list[bytearray] = []
        self._next = 0

    def rewind(self) -> None:
        """Every view handed out so far may now be overwritten: start again at the first."""
        self._next = 0

    def take(self, size: int) -> memoryview | None:
        """A writable view of ``size`` bytes not handed out since the last :meth:`rewind`, or
        None when all ``count`` are out (the caller then allocates) or ``size`` is small."""
        index = self._next
        if size < SMALLEST or index >= self.count:
            return None
        self._next = index + 1
        buffers = self._buffers
        if index == len(buffers):
            buffers.append(bytearray(size))
        elif len(buffers[index]) < size:
            buffers[index] = bytearray(size)  # a view of the old one may still be read: replace
        return memoryview(buffers[index])[:size]

    @property
    def held_bytes(self) -> int:
        """Memory the buffers hold (at most ``count`` times the largest packet sealed)."""
        return sum(len(buffer) for buffer in self._buffers)
