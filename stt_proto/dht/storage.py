"""The values this node stores for others, each bound to the node that published it.

A record is keyed by (key, publisher). Every record is signed by its publisher and verified
before it gets here (:mod:`.records`), so nobody can overwrite or delete another node's value; a
publisher's record replaces its own only with a higher sequence number (the same record again
just renews its expiry). Records expire at their ttl; the publisher re-publishes before that.

Identities are cheap, so a per-publisher cap alone cannot stop a flood: 21 identities at 1,000
records each once filled the whole store and locked honest publishers out for days. So each
publisher has a quota (the caller sizes it: larger for publishers the routing table vouches for),
and a full store makes room rather than refusing: it evicts the youngest record of the publisher
using the largest share of its quota, and only for a publisher that would then use no larger a
share. A flooder thus evicts its own records first, and a record that has lived long, from a
publisher within its quota, goes last.
"""

from __future__ import annotations

import heapq

import attrs

from .records import SignedRecord

MAX_RECORDS = 20_000
BASE_QUOTA = 100  # records per publisher when the caller names no quota


@attrs.frozen(slots=True)
class Record:
    """A stored record: the publisher's signed record and this node's times for it
    (``stored_at`` is when this publisher's record for the key first arrived: renewals and
    newer sequences keep it, so it measures how long the publisher has held the slot)."""

    publisher: bytes
    signed: SignedRecord
    stored_at: float
    expires_at: float

    @property
    def value(self) -> bytes:
        return self.signed.value


@attrs.define(slots=True, eq=False)
class _Publisher:
    keys: dict[bytes, float] = attrs.field(factory=dict)  # key -> stored_at, oldest first
    quota: int = BASE_QUOTA
    version: int = 0  # bumped on every change; older eviction-heap entries are stale

    @property
    def load(self) -> float:
        return len(self.keys) / self.quota


class ValueStore:
    def __init__(self, max_records: int = MAX_RECORDS, base_quota: int = BASE_QUOTA) -> None:
        self.max_records = max_records
        self.base_quota = base_quota
        self._records: dict[bytes, dict[bytes, Record]] = {}
        self._publishers: dict[bytes, _Publisher] = {}
        self._expiry: list[tuple[float, bytes, bytes]] = []
        # Eviction candidates, most loaded first, then youngest record first (lazily updated).
        self._loads: list[tuple[float, float, int, bytes]] = []
        self._count = 0
        self.refused = 0  # over the publisher's quota, or the store full of fairer shares
        self.evicted = 0  # records dropped to make room for a less loaded publisher
        self.stale = 0  # an older sequence (or a different record with the same one)

    def __len__(self) -> int:
        return self._count

    def count(self, publisher: bytes) -> int:
        """How many records ``publisher`` has here."""
        entry = self._publishers.get(publisher)
        return len(entry.keys) if entry is not None else 0

    def put(self, key: bytes, record: SignedRecord, ttl: float, now: float,
            quota: int | None = None) -> bool:
        """Store or replace the (already verified) ``record`` under ``key``; ``quota`` is how
        many records its publisher may keep here (default ``base_quota``). False when the quota
        or a full store refuses it, or the publisher's stored record is newer (or differs with
        the same sequence number)."""
        publisher = record.publisher
        by_publisher = self._records.get(key)
        current = by_publisher.get(publisher) if by_publisher is not None else None
        if current is not None and (
                current.signed.seq > record.seq
                or (current.signed.seq == record.seq and current.signed != record)):
            self.stale += 1
            return False
        quota = max(1, self.base_quota if quota is None else quota)
        entry = self._publishers.get(publisher)
        if current is None:
            held = len(entry.keys) if entry is not None else 0
            if held >= quota or (self._count >= self.max_records
                                 and not self._make_room(publisher, (held + 1) / quota)):
                self.refused += 1
                return False
            if entry is None:
                entry = self._publishers[publisher] = _Publisher()
            # Looked up again: making room may have evicted the key's last record, and with
            # it the dictionary looked up above (the new record went into a detached one).
            by_publisher = self._records.get(key)
            if by_publisher is None:
                by_publisher = self._records[key] = {}
            entry.keys[key] = now
            self._count += 1
        assert entry is not None and by_publisher is not None
        entry.quota = quota
        self._changed(publisher, entry)
        expires_at = now + ttl
        stored_at = current.stored_at if current is not None else now
        by_publisher[publisher] = Record(publisher, record, stored_at, expires_at)
        heapq.heappush(self._expiry, (expires_at, key, publisher))
        if len(self._expiry) > 2 * self._count + 1024:
            self._rebuild_expiry()  # replaced records left stale entries behind
        return True

    def _make_room(self, publisher: bytes, load_after: float) -> bool:
        """Evict one record for ``publisher``, whose share of its quota would then be
        ``load_after``: the youngest record of the most loaded publisher, if that one's share
        is at least as large (so the flooder, not the newcomer, gives way)."""
        loads = self._loads
        while loads:
            _, _, version, victim = loads[0]
            entry = self._publishers.get(victim)
            if entry is None or entry.version != version:
                heapq.heappop(loads)
                continue
            if victim == publisher or entry.load < load_after:
                return False
            key = next(reversed(entry.keys))  # its youngest record
            self._remove(key, victim)
            self.evicted += 1
            return True
        return False

    def _changed(self, publisher: bytes, entry: _Publisher) -> None:
        entry.version += 1
        if entry.keys:
            youngest = entry.keys[next(reversed(entry.keys))]
            heapq.heappush(self._loads, (-entry.load, -youngest, entry.version, publisher))
        if len(self._loads) > 2 * len(self._publishers) + 1024:
            self._loads = [(-e.load, -e.keys[next(reversed(e.keys))], e.version, p)
                           for p, e in self._publishers.items()]
            heapq.heapify(self._loads)

    def _remove(self, key: bytes, publisher: bytes) -> None:
        """Forget ``publisher``'s record for ``key`` (its expiry-heap entry goes stale)."""
        by_publisher = self._records[key]
        del by_publisher[publisher]
        if not by_publisher:
            del self._records[key]
        self._count -= 1
        entry = self._publishers[publisher]
        del entry.keys[key]
        if entry.keys:
            self._changed(publisher, entry)
        else:
            del self._publishers[publisher]

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
        heap = self._expiry
        while heap and not self._current(*heap[0]):
            heapq.heappop(heap)  # replaced or evicted since
        return heap[0][0] if heap else None

    def _current(self, expires_at: float, key: bytes, publisher: bytes) -> bool:
        by_publisher = self._records.get(key)
        record = by_publisher.get(publisher) if by_publisher else None
        return record is not None and record.expires_at == expires_at

    def expire(self, now: float) -> int:
        """Drop every record whose time is up; returns how many went."""
        dropped = 0
        heap = self._expiry
        while heap and heap[0][0] <= now:
            expires_at, key, publisher = heapq.heappop(heap)
            if self._current(expires_at, key, publisher):
                self._remove(key, publisher)
                dropped += 1
        return dropped
