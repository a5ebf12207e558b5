"""A set of integers kept as sorted, disjoint, half-open ranges ``[start, stop)``."""

from __future__ import annotations

from bisect import bisect_left, bisect_right

# Empty sets share these (two lists cost 112 B, and an idle stream holds three sets). Only add()
# grows a set, and it gives an empty one lists of its own first; every other mutation needs a
# range to be present.
_NONE: list[int] = []


class RangeSet:
    __slots__ = ("_starts", "_stops")

    def __init__(self) -> None:
        self._starts: list[int] = _NONE
        self._stops: list[int] = _NONE

    def __len__(self) -> int:
        return len(self._starts)

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(zip(self._starts, self._stops, strict=True))

    def add(self, start: int, stop: int) -> None:
        if start >= stop:
            return
        starts, stops = self._starts, self._stops
        if not stops:
            self._starts, self._stops = [start], [stop]
            return
        if start > stops[-1]:  # past every range: the usual in-order case
            starts.append(start)
            stops.append(stop)
            return
        if start == stops[-1]:  # extends the last range
            stops[-1] = stop
            return
        # every range overlapping or touching [start, stop) merges into one
        lo = bisect_left(stops, start)
        hi = bisect_right(starts, stop)
        if lo < hi:
            start = min(start, starts[lo])
            stop = max(stop, stops[hi - 1])
        starts[lo:hi] = [start]
        stops[lo:hi] = [stop]

    def subtract(self, start: int, stop: int) -> None:
        if start >= stop:
            return
        starts, stops = self._starts, self._stops
        lo = bisect_right(stops, start)
        hi = bisect_left(starts, stop)
        if lo >= hi:
            return
        keep_starts: list[int] = []
        keep_stops: list[int] = []
        if starts[lo] < start:
            keep_starts.append(starts[lo])
            keep_stops.append(start)
        if stops[hi - 1] > stop:
            keep_starts.append(stop)
            keep_stops.append(stops[hi - 1])
        starts[lo:hi] = keep_starts
        stops[lo:hi] = keep_stops

    def first(self) -> tuple[int, int] | None:
        return (self._starts[0], self._stops[0]) if self._starts else None

    def pop_first(self, limit: int) -> tuple[int, int] | None:
        """Remove and return up to ``limit`` integers from the front of the lowest range."""
        if not self._starts:
            return None
        start, stop = self._starts[0], self._stops[0]
        if stop - start <= limit:
            del self._starts[0], self._stops[0]
            return start, stop
        self._starts[0] = start + limit
        return start, start + limit

    def contains(self, value: int) -> bool:
        i = bisect_right(self._starts, value) - 1
        return i >= 0 and value < self._stops[i]

    def covers(self, start: int, stop: int) -> bool:
        i = bisect_right(self._starts, start) - 1
        return i >= 0 and stop <= self._stops[i]

    def prefix_end(self, base: int) -> int:
        """The end of the range starting at or before ``base`` that contains ``base``, else base."""
        if self._starts and self._starts[0] <= base < self._stops[0]:
            return self._stops[0]
        return base

    def total(self) -> int:
        return sum(b - a for a, b in zip(self._starts, self._stops, strict=True))
