"""One iterative Kademlia lookup: which contacts to ask next, and when it is over.

The shortlist holds every contact learnt, nearest the target first. At most ``alpha`` queries are
in flight; the lookup ends when the ``k`` nearest contacts that have not failed have all answered
(or, looking for a value, as soon as ``quorum`` of them have answered with a valid record: one
holder alone could hand back a stale record, or withhold a fresher one).
"""

from __future__ import annotations

from enum import Enum, auto

from .ids import Contact


class _Status(Enum):
    NEW = auto()
    ASKED = auto()
    ANSWERED = auto()
    FAILED = auto()


class Lookup:
    def __init__(self, target: bytes, own_id: bytes, k: int, alpha: int,
                 want_value: bool = False, quorum: int = 1) -> None:
        self.target = target
        self.own_id = own_id
        self.k = k
        self.alpha = alpha
        self.want_value = want_value
        self.quorum = quorum
        self.holders = 0  # answers that carried a valid record (the caller may count itself)
        self._key = int.from_bytes(target, "big")
        self._contacts: dict[bytes, Contact] = {}
        self._status: dict[bytes, _Status] = {}
        self._order: list[bytes] = []  # ids nearest first
        self._in_flight = 0
        self._asked = 0
        # Peers could feed ever-nearer fake ids forever; each costs a failed query, so cap them.
        self.max_queries = 8 * k

    def add(self, contacts: list[Contact] | tuple[Contact, ...]) -> None:
        """Learn contacts (from the routing table or a NODES reply)."""
        fresh = False
        for contact in contacts:
            node_id = contact.node_id
            if node_id == self.own_id or node_id in self._status:
                continue
            self._contacts[node_id] = contact
            self._status[node_id] = _Status.NEW
            self._order.append(node_id)
            fresh = True
        if fresh:
            key = self._key
            self._order.sort(key=lambda i: int.from_bytes(i, "big") ^ key)

    def _live(self) -> list[bytes]:
        """The k nearest ids that have not failed."""
        live = []
        for node_id in self._order:
            if self._status[node_id] is not _Status.FAILED:
                live.append(node_id)
                if len(live) == self.k:
                    break
        return live

    def next_queries(self) -> list[Contact]:
        """Contacts to ask now (each is then counted in flight until it answers or fails)."""
        if self.finished:
            return []
        chosen = []
        for node_id in self._live():
            if self._in_flight >= self.alpha:
                break
            if self._status[node_id] is _Status.NEW and self._asked < self.max_queries:
                self._status[node_id] = _Status.ASKED
                self._in_flight += 1
                self._asked += 1
                chosen.append(self._contacts[node_id])
        return chosen

    def answered(self, node_id: bytes, contacts: tuple[Contact, ...] = (),
                 has_value: bool = False) -> None:
        if self._status.get(node_id) is not _Status.ASKED:
            return
        self._status[node_id] = _Status.ANSWERED
        self._in_flight -= 1
        if has_value:
            self.holders += 1
        self.add(contacts)

    def failed(self, node_id: bytes) -> None:
        if self._status.get(node_id) is not _Status.ASKED:
            return
        self._status[node_id] = _Status.FAILED
        self._in_flight -= 1

    @property
    def finished(self) -> bool:
        if self.want_value and self.holders >= self.quorum:
            return True
        if self._in_flight:
            return False
        return self._asked >= self.max_queries or all(
            self._status[i] is not _Status.NEW for i in self._live())

    def result(self) -> list[Contact]:
        """The k nearest contacts that answered."""
        answered = [self._contacts[i] for i in self._order
                    if self._status[i] is _Status.ANSWERED]
        return answered[:self.k]
