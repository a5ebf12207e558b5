"""The endpoint's timer table: one deadline per session, the earliest of them in O(log n), so
the runtime arms one timer for all sessions however many there are."""

from __future__ import annotations

import heapq

HEAP_SLACK = 64  # stale entries tolerated beyond two per scheduled key


class TimerTable:
    """Deadlines by key (a session's local id) on a heap. A moved deadline leaves its old entry
    behind, skipped when it surfaces; the heap is rebuilt when stale entries pile up."""

    __slots__ = ("_deadlines", "_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, bytes]] = []
        self._deadlines: dict[bytes, float] = {}
        self._seq = 0

    def __len__(self) -> int:
        return len(self._deadlines)

    @property
    def heap_size(self) -> int:
        """Entries on the heap, stale ones included (at most about two per key)."""
        return len(self._heap)

    def set(self, key: bytes, deadline: float | None) -> None:
        """``key``'s deadline is now ``deadline`` (None: it has none)."""
        deadlines = self._deadlines
        if deadline is None:
            deadlines.pop(key, None)
            return
        if deadlines.get(key) == deadline:
            return
        deadlines[key] = deadline
        self._seq += 1
        heap = self._heap
        heapq.heappush(heap, (deadline, self._seq, key))
        if len(heap) > 2 * len(deadlines) + HEAP_SLACK:
            # A far deadline (keep-alive) that moves stays on the heap for seconds: rebuild
            # from the live deadlines, so the heap holds at most about two entries per key.
            self._heap = [(at, index, k) for index, (k, at) in enumerate(deadlines.items())]
            heapq.heapify(self._heap)

    def cancel(self, key: bytes) -> None:
        self._deadlines.pop(key, None)

    def clear(self) -> None:
        self._deadlines.clear()
        self._heap.clear()

    def earliest(self) -> float | None:
        """The earliest live deadline, or None."""
        heap, deadlines = self._heap, self._deadlines
        while heap:
            at, _, key = heap[0]
            if deadlines.get(key) == at:
                return at
            heapq.heappop(heap)  # stale entry
        return None

    def pop_due(self, now: float) -> list[bytes]:
        """The keys whose deadline is at or before ``now``, each once, in deadline order;
        their deadlines are removed (the caller sets new ones)."""
        heap, deadlines = self._heap, self._deadlines
        due: list[bytes] = []
        while heap and heap[0][0] <= now:
            deadline, _, key = heapq.heappop(heap)
            if deadlines.get(key) != deadline:
                continue
            del deadlines[key]
            due.append(key)
        return due


__all__ = ["HEAP_SLACK", "TimerTable"]
