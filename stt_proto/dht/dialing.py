"""Which addresses a DHT node may dial on the word of a NODES reply.

A contact in a NODES reply is only a claim: any peer can name any id at any address. Dialing
such claims blindly made nodes reflect handshakes at a chosen victim (one reply, twenty fake ids,
twenty handshakes) and, over WebSocket, open TCP with an HTTP upgrade to any host and port
(request forgery). So a contact learnt that way, not yet proven by a handshake, is dialed only
if its port is not a well-known service's, if it is no more local than the peer that named it
(a public peer cannot send us to loopback or the LAN), and if its address has not just failed.
Contacts from the routing table or named by the user are trusted: a handshake or a person
vouched for them.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict

from ..events import Address
from .ids import Contact
from .routing import RoutingTable

# Well-known TCP/UDP services above 1023 that a stray handshake or HTTP upgrade could disturb
# (every port below 1024 is refused as well).
SERVICE_PORTS = frozenset({
    1080, 1433, 1434, 1521, 1723, 1883, 2049, 2375, 2376, 2379, 2380, 3128, 3306, 3389, 4369,
    5432, 5601, 5672, 5900, 5984, 6379, 6443, 7001, 8080, 8443, 8500, 9042, 9092, 9200, 9300,
    10250, 11211, 15672, 27017, 50070,
})
DIAL_BACKOFF = 60.0  # seconds an address that failed a dial is not dialed again unverified
MAX_BACKOFF_ENTRIES = 4096

_LOOPBACK, _LOCAL, _GLOBAL = 0, 1, 2
_BROADCAST = ipaddress.IPv4Address("255.255.255.255")


def _scope(host: str) -> int | None:
    """How far away an address reaches: loopback, local (private, link-local, ULA) or global;
    None for what is never a peer (unspecified, multicast, broadcast, reserved, not an IP)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return _LOOPBACK
    if ip.is_unspecified or ip.is_multicast or ip.is_reserved or ip == _BROADCAST:
        return None
    if ip.is_private or ip.is_link_local:
        return _LOCAL
    return _GLOBAL


def may_dial(address: Address, learnt_from: Address) -> bool:
    """Whether a contact at ``address``, named by the peer at ``learnt_from``, may be dialed
    before any handshake has proven it."""
    host, port = address
    if port < 1024 or port in SERVICE_PORTS:
        return False
    scope = _scope(host)
    if scope is None:
        return False
    via = _scope(learnt_from[0])
    return scope >= (_GLOBAL if via is None else via)


class DialBackoff:
    """Addresses whose last unverified dial failed, and until when to leave them alone: a peer
    that keeps naming one victim address under fresh ids gets it dialed once per backoff."""

    def __init__(self, backoff: float = DIAL_BACKOFF,
                 max_entries: int = MAX_BACKOFF_ENTRIES) -> None:
        self.backoff = backoff
        self.max_entries = max_entries
        self._until: OrderedDict[Address, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._until)

    def failed(self, address: Address, now: float) -> None:
        self._until[address] = now + self.backoff
        self._until.move_to_end(address)
        while len(self._until) > self.max_entries:
            self._until.popitem(last=False)

    def blocked(self, address: Address, now: float) -> bool:
        until = self._until.get(address)
        if until is None:
            return False
        if until <= now:
            del self._until[address]
            return False
        return True


class DialGuard:
    """Everything the DHT checks before it dials a contact a NODES reply named: the address
    policy (:func:`may_dial`), the backoff of addresses that failed, and one dial at a time per
    address (concurrent lookups, such as a refresh's, would each dial a victim once)."""

    def __init__(self, backoff: float = DIAL_BACKOFF) -> None:
        self.backoff = DialBackoff(backoff)
        self._probing: dict[Address, tuple[bytes, int]] = {}  # unproven RPCs out, by address
        self.refused = 0  # contacts not dialed: their address, a backoff, or a probe under way

    def sort(self, contacts: tuple[Contact, ...], via: Address | None, table: RoutingTable,
             now: float) -> tuple[list[Contact], list[Contact]]:
        """Split a NODES reply from the peer at ``via``: contacts the routing table knows, at the
        address their handshake showed (proven), and the claims that may be dialed (unproven).
        The rest are dropped and counted."""
        proven, unproven = [], []
        for contact in contacts:
            known = table.get(contact.node_id)
            if known is not None:
                proven.append(known)
                continue
            if contact.node_id == table.own_id:
                continue
            address = contact.address
            probe = self._probing.get(address)
            if (via is None or not may_dial(address, via) or self.backoff.blocked(address, now)
                    or (probe is not None and probe[0] != contact.node_id)):
                self.refused += 1
            else:
                unproven.append(contact)
        return proven, unproven

    def started(self, contact: Contact) -> None:
        """An RPC went out to ``contact``, which the routing table does not hold."""
        address = contact.address
        probe = self._probing.get(address)
        if probe is None:
            self._probing[address] = (contact.node_id, 1)
        elif probe[0] == contact.node_id:
            self._probing[address] = (probe[0], probe[1] + 1)

    def busy(self, contact: Contact) -> bool:
        """Whether another id is being dialed at ``contact``'s address right now."""
        probe = self._probing.get(contact.address)
        return probe is not None and probe[0] != contact.node_id

    def settled(self, contact: Contact, failed: bool, now: float) -> None:
        """That RPC ended: answered, or ``failed`` (then the address rests for a backoff)."""
        address = contact.address
        probe = self._probing.get(address)
        if probe is not None and probe[0] == contact.node_id:
            if probe[1] > 1:
                self._probing[address] = (probe[0], probe[1] - 1)
            else:
                del self._probing[address]
        if failed:
            self.backoff.failed(address, now)
