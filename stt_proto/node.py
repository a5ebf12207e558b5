"""The node core: one :class:`Endpoint` and, beside it, the node's DHT service. What runtimes
drive.

The endpoint knows only sessions; the DHT (``dht/``) and the links carrying its messages on
sessions of their own (``dht/links.py``) sit here, next to it. The endpoint hands the DHT's
sessions to the links through its :attr:`Endpoint.service` hook; this class folds the DHT's
deadline, output and counters into the endpoint's, so a runtime still makes the same calls:
feed ``Node.receive_datagram`` (the endpoint's method itself), send what
:meth:`Node.datagrams_to_send` returns, arm one timer at :meth:`Node.get_timer`, read
:meth:`Node.next_event` and :meth:`Node.take_touched`.
"""

from __future__ import annotations

from collections.abc import Callable

from .budget import MemoryBudget
from .config import EndpointConfig
from .dht import DHT, DHTConfig
from .dht.links import DHTLinks
from .endpoint import Endpoint
from .events import Address, SessionAccepted
from .handshake_payload import Purpose
from .identity import Identity
from .packet import Datagram
from .randomness import RandomSource
from .session import Session
from .stats import EndpointStats

_APPLICATION = Purpose.APPLICATION
_DHT = Purpose.DHT


class Node:
    """A node's sans-I/O core: the endpoint (its sessions) and the DHT service beside it.
    ``advertised_ports``: the transport's source ports are not listening ports (WebSocket's
    TCP client ports), so a DHT contact's port is the one its messages announce."""

    def __init__(self, config: EndpointConfig, identity: Identity | None = None,
                 rng: RandomSource | None = None, dht_config: DHTConfig | None = None,
                 *, advertised_ports: bool = False) -> None:
        self.endpoint = endpoint = Endpoint(config, identity, rng)
        # Handle one datagram from ``addr``; never raises on bad input. The endpoint's own
        # method, bound here: the node adds nothing to input, so a datagram's route does not
        # pass through this module (and pays no extra call).
        self.receive_datagram: Callable[[bytes | bytearray | memoryview, Address, float],
                                        None] = endpoint.receive_datagram
        # The node's Kademlia DHT, whose messages travel on sessions of their own.
        self.dht = DHT(endpoint.identity.node_id, endpoint.rng, dht_config,
                       identity=endpoint.identity)
        self._links = DHTLinks(self.dht, self._connect_dht,
                               advertised_ports=advertised_ports)
        endpoint.service = self._links

    # -- what the endpoint owns -------------------------------------------------------------------

    @property
    def config(self) -> EndpointConfig:
        return self.endpoint.config

    @property
    def identity(self) -> Identity:
        return self.endpoint.identity

    @property
    def rng(self) -> RandomSource:
        return self.endpoint.rng

    @property
    def sessions(self) -> dict[bytes, Session]:
        """Every session the endpoint holds, the DHT's included."""
        return self.endpoint.sessions

    @property
    def budget(self) -> MemoryBudget:
        return self.endpoint.budget

    # -- sessions ---------------------------------------------------------------------------------

    def connect(self, address: Address, peer_id: bytes, now: float,
                purpose: Purpose = Purpose.APPLICATION) -> Session:
        """Start a handshake to ``address``; the session reports HandshakeCompleted or ends."""
        return self.endpoint.connect(address, peer_id, now, purpose)

    def _connect_dht(self, address: Address, peer_id: bytes, now: float) -> Session:
        return self.endpoint.connect(address, peer_id, now, _DHT)

    def next_event(self) -> SessionAccepted | None:
        return self.endpoint.next_event()

    def take_touched(self) -> list[Session]:
        """The application's sessions that ran since the last call (the DHT's are read by the
        links). Runtimes call this after datagrams_to_send."""
        return [s for s in self.endpoint.take_touched() if s.purpose is _APPLICATION]

    def close(self, now: float, error_code: int = 0, reason: str = "endpoint closing") -> None:
        """Close every session gracefully (each sends CLOSE)."""
        self.endpoint.close(now, error_code, reason)

    # -- the driving surface ----------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The one deadline the runtime arms: the earliest of all sessions' and the DHT's."""
        deadline = self.endpoint.get_timer()
        dht = self.dht.get_timer()
        if dht is not None and (deadline is None or dht < deadline):
            deadline = dht
        links = self._links.get_timer()
        if links is not None and (deadline is None or links < deadline):
            deadline = links
        return deadline

    def handle_timer(self, now: float) -> None:
        """Run every session whose deadline has come, then the DHT's and its links' timers."""
        self.endpoint.handle_timer(now)
        dht_deadline = self.dht.get_timer()
        if dht_deadline is not None and dht_deadline <= now:
            self.dht.handle_timer(now)
        self._links.handle_timer(now)

    def datagrams_to_send(self, now: float,
                          max_datagrams: int | None = None) -> list[tuple[Datagram, Address]]:
        """What to send now, in batches of ``max_datagrams`` (see
        :meth:`Endpoint.datagrams_to_send`). The DHT reads what its sessions received and
        writes its messages to them first."""
        if self._links.pending:
            self._links.service(now)
        return self.endpoint.datagrams_to_send(now, max_datagrams)

    def get_stats(self) -> EndpointStats:
        """The endpoint's counters, with the DHT's in ``dht``."""
        links = self._links
        return self.endpoint.get_stats({**self.dht.stats(), "dht_sessions": len(links),
                                        "dht_dropped": links.dropped})
