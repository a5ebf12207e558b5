"""A stream's in-order bytes that do not make a whole message yet, in one buffer reused from
message to message.

Large packets are opened into one buffer the endpoint reuses (``stt_proto/buffers.py``), so what
a stream keeps of them must be copied before the next packet arrives. Copied into a buffer that
lives with the stream, a bulk transfer allocates nothing per packet: allocating and freeing a
packet-sized block each time made glibc give its heap back to the kernel and fault it in again.
"""

from __future__ import annotations

SMALLEST = 16 * 1024  # the first buffer: a partial message of a few packets fits without growing


class Assembly:
    """Bytes from ``start`` to ``end`` of one buffer, appended at the end and taken from the
    start. It grows (doubling) to what is held at once and keeps that size; taking everything
    rewinds it to the front."""

    __slots__ = ("_buffer", "_view", "end", "start")

    def __init__(self) -> None:
        self._buffer = bytearray(SMALLEST)
        self._view = memoryview(self._buffer)
        self.start = 0
        self.end = 0

    @property
    def held(self) -> int:
        return self.end - self.start

    @property
    def capacity(self) -> int:
        return len(self._buffer)

    def append(self, data: bytes | bytearray | memoryview) -> None:
        """Copy ``data`` in after what is held."""
        size = len(data)
        end = self.end
        if end + size > len(self._buffer):
            self._make_room(size)
            end = self.end
        self._view[end:end + size] = data
        self.end = end + size

    def capacity_after(self, size: int) -> int:
        """The capacity an append of ``size`` bytes leaves: the same where it fits after what
        is held, or where moving what is held to the front makes room (no more than was
        consumed is moved); else the buffer doubles, or grows to what must fit."""
        start, end, length = self.start, self.end, len(self._buffer)
        held = end - start
        if end + size <= length or (held + size <= length and held <= start):
            return length
        return max(held + size, 2 * length)

    def _make_room(self, size: int) -> None:
        start, end = self.start, self.end
        held = end - start
        view = self._view
        capacity = self.capacity_after(size)
        if capacity == len(self._buffer):
            view[:held] = view[start:end]  # to the front (the two ranges do not overlap)
        else:
            buffer = bytearray(capacity)
            fresh = memoryview(buffer)
            fresh[:held] = view[start:end]
            view.release()
            self._buffer, self._view = buffer, fresh
        self.start, self.end = 0, held

    def peek(self) -> memoryview:
        """What is held, as a view valid until the next append."""
        return self._view[self.start:self.end]

    def take(self, count: int) -> bytes:
        """The first ``count`` bytes held (``count`` at most :attr:`held`), removed."""
        start = self.start
        taken = bytes(self._view[start:start + count])
        self.skip(count)
        return taken

    def take_into(self, out: memoryview, count: int) -> None:
        """:meth:`take` copied into ``out`` (at least ``count`` bytes long)."""
        start = self.start
        out[:count] = self._view[start:start + count]
        self.skip(count)

    def skip(self, count: int) -> None:
        """Remove the first ``count`` bytes held."""
        start = self.start + count
        if start >= self.end:
            self.start = self.end = 0
        else:
            self.start = start
