"""The values this node stores for others, each bound to the node that published it.

A record is keyed by (key, publisher). Every record is signed by its publisher and verified
before it gets here (:mod:`.records`), so nobody can overwrite or delete another node's value; a
publisher's record replaces its own only with a higher sequence number (the same record again
just renews its expiry). Records expire at their ttl; the publisher re-publishes before that.
Hard caps bound what peers can make us hold, in total and per publisher.
"""

from __future__ import annotations

import heapq

import attrs

from .records import SignedRecord

MAX_RECORDS = 20_000
MAX_RECORDS_PER_PUBLISHER = 1_000


@attrs.frozen(slots=True)
class Record:
    """A stored record: the publisher's signed record and this node's times for it."""

    publisher: bytes
    signed: SignedRecord
    stored_at: float
    expires_at: float

    @property
    def value(self) -> bytes:
        return self.signed.value


class ValueStore:
    def __init__(self, max_records: int = MAX_RECORDS,
                 max_per_publisher: int = MAX_RECORDS_PER_PUBLISHER) -> None:
        self.max_records = max_records
        self.max_per_publisher = max_per_publisher
        self._records: dict[bytes, dict[bytes, Record]] = {}
        self._per_publisher: dict[bytes, int] = {}
        self._expiry: list[tuple[float, bytes, bytes]] = []
        self._count = 0
        self.refused = 0  # by a cap
        self.stale = 0  # an older sequence (or a different record with the same one)

    def __len__(self) -> int:
        return self._count

    def put(self, key: bytes, record: SignedRecord, ttl: float, now: float) -> bool:
        """Store or replace the (already verified) ``record`` under ``key``; False when a cap
        refuses it or the publisher's stored record is newer (or differs with the same
        sequence number)."""
        publisher = record.publisher
        by_publisher = self._records.get(key)
        current = by_publisher.get(publisher) if by_publisher is not None else None
        if current is not None and (
                current.signed.seq > record.seq
                or (current.signed.seq == record.seq and current.signed != record)):
            self.stale += 1
            return False
        replacing = current is not None
        if not replacing and (self._count >= self.max_records
                              or self._per_publisher.get(publisher, 0)
                              >= self.max_per_publisher):
            self.refused += 1
            return False
        if by_publisher is None:
            by_publisher = self._records[key] = {}
        if not replacing:
            self._count += 1
            self._per_publisher[publisher] = self._per_publisher.get(publisher, 0) + 1
        expires_at = now + ttl
        by_publisher[publisher] = Record(publisher, record, now, expires_at)
        heapq.heappush(self._expiry, (expires_at, key, publisher))
        if len(self._expiry) > 2 * self._count + 1024:
            self._rebuild_expiry()  # replaced records left stale entries behind
        return True

    def _rebuild_expiry(self) -> None:
        self._expiry = [(r.expires_at, key, r.publisher)
                        for key, by_publisher in self._records.items()
                        for r in by_publisher.values()]
        heapq.heapify(self._expiry)

    def get(self, key: bytes, now: float, publisher: bytes | None = None) -> list[Record]:
        """Live records for ``key`` (only ``publisher``'s, when given), freshest first."""
        by_publisher = self._records.get(key, {})
        if publisher is not None:
            one = by_publisher.get(publisher)
            return [one] if one is not None and one.expires_at > now else []
        found = [r for r in by_publisher.values() if r.expires_at > now]
        found.sort(key=lambda r: r.signed.freshness, reverse=True)
        return found

    def next_expiry(self) -> float | None:
        return self._expiry[0][0] if self._expiry else None

    def expire(self, now: float) -> int:
        """Drop every record whose time is up; returns how many went."""
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key, publisher = heapq.heappop(heap)
            by_publisher = self._records.get(key)
            record = by_publisher.get(publisher) if by_publisher else None
            if record is None or record.expires_at != expires_at:
                continue  # replaced since: a later heap entry covers it
            del by_publisher[publisher]  # type: ignore[union-attr]
            if not by_publisher:
                del self._records[key]
            self._count -= 1
            left = self._per_publisher[publisher] - 1
            if left:
                self._per_publisher[publisher] = left
            else:
                del self._per_publisher[publisher]
            dropped += 1
        return dropped
