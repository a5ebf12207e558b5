"""Content-affinity session pooling: reuse the session that already serves related content.

Sessions are grouped into clusters by the first bytes (4 by default) of a content hash, and
within a cluster the session whose affinity hash is nearest by XOR distance is picked, so related
requests (which the application hashes alike) keep going to the same peer and its warm caches.
The pool keeps at most ``max_pool_size`` sessions and evicts the least recently used; closed
sessions drop out by themselves. A session whose recent traffic mostly lands in another cluster
moves there (rebalancing). It is pure bookkeeping, usable from any runtime.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from typing import Any, Protocol

from .dht.ids import ID_LEN, Contact, check_id
from .errors import PoolMissError, SettingsError, UsageError


class PooledSession(Protocol):
    @property
    def is_closed(self) -> bool: ...


class _RoutingSource(Protocol):
    @property
    def routing_table(self) -> Any: ...


class _Entry:
    __slots__ = ("affinity", "recent", "session")

    def __init__(self, session: PooledSession, affinity: bytes, window: int) -> None:
        self.session = session
        self.affinity = affinity
        self.recent: deque[bytes] = deque(maxlen=window)


class ContentAffinityPool:
    """``get_session_for_content`` returns the live session nearest a content hash, or raises
    :class:`PoolMissError`. With ``max_distance`` set, any session within that XOR distance
    qualifies instead of only those in the same prefix cluster."""

    def __init__(self, dht: _RoutingSource | None = None, max_pool_size: int = 100, *,
                 max_distance: int | None = None, prefix_bytes: int = 4,
                 rebalance_window: int = 16) -> None:
        if isinstance(max_pool_size, bool) or not isinstance(max_pool_size, int) \
                or max_pool_size < 1:
            raise SettingsError(f"max_pool_size must be an integer >= 1, got {max_pool_size!r}")
        if not 1 <= prefix_bytes <= ID_LEN:
            raise SettingsError(f"prefix_bytes must be in 1..{ID_LEN}, got {prefix_bytes!r}")
        if max_distance is not None and not 0 <= max_distance < 1 << (8 * ID_LEN):
            raise SettingsError("max_distance must be None or in 0..2**256-1")
        if rebalance_window < 2:
            raise SettingsError(f"rebalance_window must be >= 2, got {rebalance_window!r}")
        self.dht = dht
        self.max_pool_size = max_pool_size
        self.max_distance = max_distance
        self.prefix_bytes = prefix_bytes
        self.rebalance_window = rebalance_window
        self._entries: OrderedDict[int, _Entry] = OrderedDict()  # least recently used first
        self._clusters: dict[bytes, set[int]] = {}
        self.hits = self.misses = self.evictions = self.rebalances = 0

    def __len__(self) -> int:
        self._drop_closed()
        return len(self._entries)

    def __contains__(self, session: object) -> bool:
        return id(session) in self._entries

    def sessions(self) -> list[PooledSession]:
        """The live pooled sessions, least recently used first."""
        self._drop_closed()
        return [entry.session for entry in self._entries.values()]

    def affinity_of(self, session: PooledSession) -> bytes | None:
        entry = self._entries.get(id(session))
        return entry.affinity if entry else None

    def add_session(self, session: PooledSession, content_hash: bytes) -> None:
        """Pool ``session`` for content near ``content_hash`` (re-adding moves it there)."""
        content_hash = _check_hash(content_hash)
        if session.is_closed:
            raise UsageError("cannot pool a closed session")
        key = id(session)
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(session, content_hash, self.rebalance_window)
        else:
            self._leave_cluster(key, entry)
            entry.affinity = content_hash
        self._clusters.setdefault(self._prefix(content_hash), set()).add(key)
        self._entries.move_to_end(key)
        self._drop_closed()
        while len(self._entries) > self.max_pool_size:
            old_key, old = self._entries.popitem(last=False)
            self._leave_cluster(old_key, old)
            self.evictions += 1

    def remove_session(self, session: PooledSession) -> None:
        entry = self._entries.pop(id(session), None)
        if entry is not None:
            self._leave_cluster(id(session), entry)

    def get_session_for_content(self, content_hash: bytes) -> Any:
        """The live session nearest ``content_hash``; raises PoolMissError when none qualifies."""
        content_hash = _check_hash(content_hash)
        self._drop_closed()
        if self.max_distance is None:
            keys: Any = self._clusters.get(self._prefix(content_hash), ())
        else:
            keys = self._entries.keys()
        target = int.from_bytes(content_hash, "big")
        best: tuple[int, int] | None = None
        for key in keys:
            gap = int.from_bytes(self._entries[key].affinity, "big") ^ target
            if self.max_distance is not None and gap > self.max_distance:
                continue
            if best is None or gap < best[0]:
                best = (gap, key)
        if best is None:
            self.misses += 1
            raise PoolMissError(f"no pooled session near content {content_hash[:4].hex()}... "
                                f"({len(self._entries)} pooled)")
        self.hits += 1
        self._entries.move_to_end(best[1])
        entry = self._entries[best[1]]
        self._note(best[1], entry, content_hash)
        return entry.session

    def record_traffic(self, session: PooledSession, content_hash: bytes) -> None:
        """Tell the pool ``session`` carried ``content_hash`` (feeds rebalancing)."""
        content_hash = _check_hash(content_hash)
        entry = self._entries.get(id(session))
        if entry is not None:
            self._entries.move_to_end(id(session))
            self._note(id(session), entry, content_hash)

    def nearest_peers(self, content_hash: bytes, count: int = 3) -> list[Contact]:
        """The DHT contacts whose ids are nearest ``content_hash``: where to open a session on
        a miss, since Kademlia stores content at the nodes nearest its hash."""
        content_hash = _check_hash(content_hash)
        if self.dht is None:
            raise UsageError("this pool was made without a dht")
        found: list[Contact] = self.dht.routing_table.closest(content_hash, count)
        return found

    # -- internals --------------------------------------------------------------------------------

    def _prefix(self, content_hash: bytes) -> bytes:
        return content_hash[:self.prefix_bytes]

    def _leave_cluster(self, key: int, entry: _Entry) -> None:
        prefix = self._prefix(entry.affinity)
        members = self._clusters.get(prefix)
        if members is not None:
            members.discard(key)
            if not members:
                del self._clusters[prefix]

    def _drop_closed(self) -> None:
        closed = [k for k, e in self._entries.items() if e.session.is_closed]
        for key in closed:
            self._leave_cluster(key, self._entries.pop(key))

    def _note(self, key: int, entry: _Entry, content_hash: bytes) -> None:
        """Remember traffic; when most of a full window is another cluster's, move there."""
        entry.recent.append(content_hash)
        if len(entry.recent) < self.rebalance_window:
            return
        counts = Counter(self._prefix(h) for h in entry.recent)
        prefix, count = counts.most_common(1)[0]
        if prefix == self._prefix(entry.affinity) or count * 2 <= len(entry.recent):
            return
        newest = next(h for h in reversed(entry.recent) if self._prefix(h) == prefix)
        self._leave_cluster(key, entry)
        entry.affinity = newest
        self._clusters.setdefault(prefix, set()).add(key)
        entry.recent.clear()
        self.rebalances += 1


def _check_hash(value: bytes) -> bytes:
    return check_id(value, "content hash")
