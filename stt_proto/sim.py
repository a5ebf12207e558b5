"""A deterministic network simulator: a virtual clock, links and any number of endpoints.

Links model latency, jitter, bandwidth (a serialising bottleneck with a byte-limited tail-drop
queue), random loss, duplication and reordering. All randomness comes from one seeded generator,
so the same seed and the same endpoints give the same trace, byte for byte.
"""

from __future__ import annotations

import heapq
import random as _random
from collections.abc import Callable
from typing import Protocol, TypeVar

import attrs

from .events import Address
from .packet import Datagram


class Driven(Protocol):
    """What the network drives: an :class:`~stt_proto.endpoint.Endpoint` or a node core
    (:class:`~stt_proto.node.Node`, the endpoint with the DHT beside it)."""

    def receive_datagram(self, data: bytes | bytearray | memoryview, addr: Address,
                         now: float) -> None: ...

    def datagrams_to_send(self, now: float, max_datagrams: int | None = None,
                          ) -> list[tuple[Datagram, Address]]: ...

    def get_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


DrivenT = TypeVar("DrivenT", bound=Driven)


@attrs.frozen(slots=True)
class LinkProfile:
    """One direction of a link. ``bandwidth`` in bits per second (None: unlimited)."""

    latency: float = 0.01
    jitter: float = 0.0
    bandwidth: float | None = None
    queue_limit: int = 1 << 20
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.005

    def __attrs_post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in 0..1")
        if self.latency < 0 or self.jitter < 0 or self.reorder_delay < 0:
            raise ValueError("latency, jitter and reorder_delay must be >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive or None")


@attrs.define(slots=True)
class LinkCounters:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    queue_drops: int = 0
    duplicated: int = 0


@attrs.define(slots=True)
class _Link:
    profile: LinkProfile
    busy_until: float = 0.0
    counters: LinkCounters = attrs.field(factory=LinkCounters)


TraceEntry = tuple[float, Address, Address, bytes]
Tamper = Callable[[Address, Address, bytes], bytes | None]


class Network:
    """Drives endpoints on a virtual clock; ``trace`` records every delivered datagram."""

    def __init__(self, seed: int = 0, default_profile: LinkProfile | None = None,
                 *, record_trace: bool = True) -> None:
        self.now = 0.0
        self._rng = _random.Random(seed)
        self.default_profile = default_profile or LinkProfile()
        self.endpoints: dict[Address, Driven] = {}
        self._links: dict[tuple[Address, Address], _Link] = {}
        self._queue: list[tuple[float, int, Address, Address, bytes]] = []
        self._seq = 0
        self.record_trace = record_trace
        self.trace: list[TraceEntry] = []
        self.tamper: Tamper | None = None  # a man in the middle, for tests

    def add_endpoint(self, endpoint: DrivenT, address: Address) -> DrivenT:
        if address in self.endpoints:
            raise ValueError(f"address {address} already in use")
        self.endpoints[address] = endpoint
        return endpoint

    def set_link(self, a: Address, b: Address, profile: LinkProfile, *,
                 both_ways: bool = True) -> None:
        self._links[(a, b)] = _Link(profile)
        if both_ways:
            self._links[(b, a)] = _Link(profile)

    def share_link(self, pairs: list[tuple[Address, Address]], profile: LinkProfile) -> None:
        """Make several (source, destination) directions share one bottleneck and its queue."""
        link = _Link(profile)
        for pair in pairs:
            self._links[pair] = link

    def link_counters(self, a: Address, b: Address) -> LinkCounters:
        return self._link(a, b).counters

    def _link(self, a: Address, b: Address) -> _Link:
        link = self._links.get((a, b))
        if link is None:
            link = self._links[(a, b)] = _Link(self.default_profile)
        return link

    # -- sending ----------------------------------------------------------------------------------

    def send(self, src: Address, dst: Address, data: Datagram) -> None:
        """Put one datagram on the link from ``src`` to ``dst`` (also usable to inject junk)."""
        payload = bytes(data)
        if self.tamper is not None:
            changed = self.tamper(src, dst, payload)
            if changed is None:
                return
            payload = changed
        link = self._link(src, dst)
        profile = link.profile
        rng = self._rng
        link.counters.sent += 1
        if profile.loss and rng.random() < profile.loss:
            link.counters.lost += 1
            return
        copies = 2 if profile.duplicate and rng.random() < profile.duplicate else 1
        link.counters.duplicated += copies - 1
        for _ in range(copies):
            start = max(self.now, link.busy_until)
            if profile.bandwidth is not None:
                backlog = (start - self.now) * profile.bandwidth / 8
                if backlog + len(payload) > profile.queue_limit:
                    link.counters.queue_drops += 1
                    continue
                link.busy_until = start + len(payload) * 8 / profile.bandwidth
            else:
                link.busy_until = start
            arrival = link.busy_until + profile.latency
            if profile.jitter:
                arrival += rng.uniform(0, profile.jitter)
            if profile.reorder and rng.random() < profile.reorder:
                arrival += profile.reorder_delay
            self._seq += 1
            heapq.heappush(self._queue, (arrival, self._seq, src, dst, payload))

    def flush(self) -> None:
        """Collect every endpoint's pending output and put it on the links."""
        for address, endpoint in self.endpoints.items():
            for datagram, destination in endpoint.datagrams_to_send(self.now):
                self.send(address, destination, datagram)

    # -- running ----------------------------------------------------------------------------------

    def next_time(self) -> float | None:
        times = [t for t in (e.get_timer() for e in self.endpoints.values()) if t is not None]
        if self._queue:
            times.append(self._queue[0][0])
        return min(times) if times else None

    def step(self, limit: float) -> bool:
        """Run the next event at or before ``limit``; False when there is none."""
        self.flush()
        when = self.next_time()
        if when is None or when > limit:
            return False
        self.now = max(self.now, when)
        if self._queue and self._queue[0][0] <= self.now:
            _, _, src, dst, payload = heapq.heappop(self._queue)
            endpoint = self.endpoints.get(dst)
            self._link(src, dst).counters.delivered += 1
            if self.record_trace:
                self.trace.append((self.now, src, dst, payload))
            if endpoint is not None:
                endpoint.receive_datagram(payload, src, self.now)
        else:
            for endpoint in self.endpoints.values():
                timer = endpoint.get_timer()
                if timer is not None and timer <= self.now:
                    endpoint.handle_timer(self.now)
        self.flush()
        return True

    def run(self, duration: float) -> None:
        """Advance the clock by ``duration``, running every event due in that time."""
        end = self.now + duration
        while self.step(end):
            pass
        self.now = end

    def run_until(self, condition: Callable[[], bool], timeout: float) -> bool:
        """Run until ``condition()`` holds (True) or ``timeout`` virtual seconds pass (False)."""
        end = self.now + timeout
        while not condition():
            if not self.step(end):
                self.now = end
                return condition()
        return True
