"""One iterative Kademlia lookup: which contacts to ask next, and when it is over.

The shortlist holds every contact learnt, nearest the target first. At most ``alpha`` queries are
in flight; the lookup ends when the ``k`` nearest contacts that have not failed have all answered
(or, looking for a value, as soon as ``quorum`` of them have answered with a valid record: one
holder alone could hand back a stale record, or withhold a fresher one).

Peers can feed a lookup endless fake contacts, so it is bounded three ways: at most
``max_queries`` queries in all, at most ``max_dials`` of them to contacts no handshake has proven
yet (each is a new session to an address a peer chose), and a ``deadline`` after which it stops
asking and ends with what it has. Unproven contacts are also taken at most once per address and
``max_per_host`` per host, so naming one victim under a thousand ids costs it one handshake.
"""

from __future__ import annotations

import math
from enum import Enum, auto

from ..events import Address
from .ids import Contact

MAX_PER_HOST = 4  # unproven contacts per host one lookup will dial


class _Status(Enum):
    NEW = auto()
    ASKED = auto()
    ANSWERED = auto()
    FAILED = auto()


class Lookup:
    def __init__(self, target: bytes, own_id: bytes, k: int, alpha: int,
                 want_value: bool = False, quorum: int = 1, *, max_dials: int | None = None,
                 deadline: float = math.inf, max_per_host: int = MAX_PER_HOST) -> None:
        self.target = target
        self.own_id = own_id
        self.k = k
        self.alpha = alpha
        self.want_value = want_value
        self.quorum = quorum
        self.holders = 0  # answers that carried a valid record (the caller may count itself)
        self.deadline = deadline
        self._key = int.from_bytes(target, "big")
        self._contacts: dict[bytes, Contact] = {}
        self._status: dict[bytes, _Status] = {}
        self._order: list[bytes] = []  # ids nearest first
        self._in_flight = 0
        self._asked = 0
        # Peers could feed ever-nearer fake ids forever; each costs a failed query, so cap them.
        self.max_queries = 8 * k
        self.max_dials = 2 * k if max_dials is None else max_dials
        self.max_per_host = max_per_host
        self.dials = 0  # queries to unproven contacts so far
        self._unproven: set[bytes] = set()
        self._addresses: set[Address] = set()
        self._per_host: dict[str, int] = {}
        self.skipped = 0  # unproven contacts passed over: address taken, host or dials used up
        self.stopped = False

    def add(self, contacts: list[Contact] | tuple[Contact, ...], proven: bool = False) -> None:
        """Learn contacts: ``proven`` ones from the routing table or the user, the rest from a
        NODES reply (claims nobody has checked yet)."""
        fresh = False
        for contact in contacts:
            node_id, address = contact.node_id, contact.address
            if node_id == self.own_id or node_id in self._status:
                continue
            if not proven:
                host = address[0]
                if address in self._addresses or self._per_host.get(host, 0) >= self.max_per_host:
                    self.skipped += 1
                    continue
                self._per_host[host] = self._per_host.get(host, 0) + 1
                self._unproven.add(node_id)
            self._addresses.add(address)
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
        chosen: list[Contact] = []
        while not self.finished and self._in_flight < self.alpha:
            passed_over = False
            for node_id in self._live():
                if self._in_flight >= self.alpha:
                    break
                if self._status[node_id] is not _Status.NEW or self._asked >= self.max_queries:
                    continue
                if node_id in self._unproven:
                    if self.dials >= self.max_dials:
                        self._status[node_id] = _Status.FAILED  # never asked: the budget is spent
                        self.skipped += 1
                        passed_over = True
                        continue
                    self.dials += 1
                self._status[node_id] = _Status.ASKED
                self._in_flight += 1
                self._asked += 1
                chosen.append(self._contacts[node_id])
            if not passed_over:
                break  # otherwise contacts beyond the k nearest may have moved up: look again
        return chosen

    def answered(self, node_id: bytes, contacts: tuple[Contact, ...] = (),
                 has_value: bool = False) -> None:
        """``node_id`` answered, naming ``contacts`` (unproven)."""
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

    def address_of(self, node_id: bytes) -> Address | None:
        contact = self._contacts.get(node_id)
        return contact.address if contact is not None else None

    def stop(self) -> None:
        """The deadline passed: ask nobody else; the lookup is over with what it has."""
        self.stopped = True

    @property
    def finished(self) -> bool:
        if self.stopped or (self.want_value and self.holders >= self.quorum):
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
