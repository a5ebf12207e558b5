"""The Kademlia routing table: 256 k-buckets of contacts, least recently seen first.

A full bucket keeps newcomers in a replacement cache and names its least recently seen contact
for the caller to ping; only when that contact stops answering does a newcomer take its place.
Long-lived contacts are kept over new ones, which is what makes the table hard to flood.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator

import attrs

from .ids import ID_BITS, ID_LEN, Contact, K, bucket_index

MAX_FAILURES = 3  # unanswered RPCs before a contact with no replacement waiting is dropped


@attrs.define(slots=True)
class _Entry:
    contact: Contact
    last_seen: float
    failures: int = 0
    checking: bool = False  # a ping to decide its eviction is on its way


@attrs.define(slots=True)
class _Bucket:
    touched_at: float
    entries: OrderedDict[bytes, _Entry] = attrs.field(factory=OrderedDict)
    replacements: OrderedDict[bytes, Contact] = attrs.field(factory=OrderedDict)


class RoutingTable:
    """Contacts by XOR distance from ``own_id``; buckets are created on first use."""

    def __init__(self, own_id: bytes, k: int = K, now: float = 0.0) -> None:
        self.own_id = own_id
        self.k = k
        self._buckets: dict[int, _Bucket] = {}
        self._created = now
        self.version = 0  # bumped whenever a contact joins or leaves
        self._near: set[bytes] = set()  # the k contacts nearest us, as of table version...
        self._near_version = -1  # ...this one

    def __len__(self) -> int:
        return sum(len(b.entries) for b in self._buckets.values())

    def __contains__(self, node_id: object) -> bool:
        if not isinstance(node_id, bytes) or len(node_id) != ID_LEN or node_id == self.own_id:
            return False
        bucket = self._buckets.get(bucket_index(self.own_id, node_id))
        return bucket is not None and node_id in bucket.entries

    def __iter__(self) -> Iterator[Contact]:
        for index in sorted(self._buckets):
            for entry in self._buckets[index].entries.values():
                yield entry.contact

    def closeness(self, node_id: bytes) -> int:
        """2 for one of the k contacts nearest us, 1 for another contact, 0 for a stranger."""
        if node_id not in self:
            return 0
        if self._near_version != self.version:
            self._near = {c.node_id for c in self.closest(self.own_id)}
            self._near_version = self.version
        return 2 if node_id in self._near else 1

    def contacts(self) -> list[Contact]:
        return list(self)

    def bucket_sizes(self) -> dict[int, int]:
        """Contacts per non-empty bucket index (bucket i holds ids at distance 2**i..2**(i+1)-1)."""
        return {i: len(b.entries) for i, b in sorted(self._buckets.items()) if b.entries}

    def get(self, node_id: bytes) -> Contact | None:
        bucket = self._buckets.get(bucket_index(self.own_id, node_id)) if node_id != self.own_id \
            else None
        entry = bucket.entries.get(node_id) if bucket else None
        return entry.contact if entry else None

    def observe(self, contact: Contact, now: float) -> Contact | None:
        """``contact`` was heard from. Returns a contact the caller should ping: the bucket is full
        and that is its least recently seen member, which goes if it does not answer."""
        node_id = contact.node_id
        if node_id == self.own_id or len(node_id) != ID_LEN:
            return None
        index = bucket_index(self.own_id, node_id)
        bucket = self._buckets.get(index)
        if bucket is None:
            bucket = self._buckets[index] = _Bucket(now)
        bucket.touched_at = now
        entry = bucket.entries.get(node_id)
        if entry is not None:
            entry.contact = contact  # the handshake proved the id; the address may have moved
            entry.last_seen = now
            entry.failures = 0
            entry.checking = False
            bucket.entries.move_to_end(node_id)
            return None
        if len(bucket.entries) < self.k:
            bucket.entries[node_id] = _Entry(contact, now)
            self.version += 1
            bucket.replacements.pop(node_id, None)
            return None
        bucket.replacements[node_id] = contact
        bucket.replacements.move_to_end(node_id)
        while len(bucket.replacements) > self.k:
            bucket.replacements.popitem(last=False)
        oldest = next(iter(bucket.entries.values()))
        if oldest.checking:
            return None
        oldest.checking = True
        return oldest.contact

    def failed(self, node_id: bytes) -> None:
        """An RPC to ``node_id`` went unanswered. A contact is dropped at once when a replacement
        is waiting (the newest takes its place), else after MAX_FAILURES in a row."""
        if node_id == self.own_id or len(node_id) != ID_LEN:
            return
        bucket = self._buckets.get(bucket_index(self.own_id, node_id))
        if bucket is None:
            return
        bucket.replacements.pop(node_id, None)
        entry = bucket.entries.get(node_id)
        if entry is None:
            return
        entry.failures += 1
        entry.checking = False
        if bucket.replacements or entry.failures >= MAX_FAILURES:
            del bucket.entries[node_id]
            self.version += 1
            if bucket.replacements:
                new_id, contact = bucket.replacements.popitem(last=True)
                bucket.entries[new_id] = _Entry(contact, entry.last_seen)

    def closest(self, target: bytes, count: int | None = None,
                exclude: bytes | None = None) -> list[Contact]:
        """The ``count`` (default k) known contacts nearest ``target`` by XOR distance."""
        count = self.k if count is None else count
        key = int.from_bytes(target, "big")
        found = [entry.contact for bucket in self._buckets.values()
                 for entry in bucket.entries.values() if entry.contact.node_id != exclude]
        found.sort(key=lambda c: int.from_bytes(c.node_id, "big") ^ key)
        return found[:count]

    def stale_buckets(self, now: float, interval: float) -> list[int]:
        """Indices of non-empty buckets nobody has been heard from in for ``interval`` seconds."""
        return [i for i, b in sorted(self._buckets.items())
                if b.entries and now - b.touched_at >= interval]

    def touch_bucket(self, index: int, now: float) -> None:
        bucket = self._buckets.get(index)
        if bucket is not None:
            bucket.touched_at = now

    def id_in_bucket(self, index: int, random_bytes: bytes) -> bytes:
        """An id that falls in bucket ``index``, for refreshing it: the own id with bit ``index``
        flipped and the bits below it taken from ``random_bytes``."""
        if not 0 <= index < ID_BITS:
            raise ValueError(f"bucket index {index} out of 0..{ID_BITS - 1}")
        own = int.from_bytes(self.own_id, "big")
        low_mask = (1 << index) - 1
        noise = int.from_bytes(random_bytes, "big") & low_mask
        value = ((own ^ (1 << index)) & ~low_mask) | noise
        return value.to_bytes(ID_LEN, "big")
