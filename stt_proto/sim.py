"""A deterministic network simulator: a virtual clock, links and any number of endpoints.

Links model latency, jitter, bandwidth (a serialising bottleneck with a byte-limited tail-drop
queue), random loss, duplication and reordering. All randomness comes from one seeded generator,
so the same seed and the same endpoints give the same trace, byte for byte.
"""

from __future__ import annotations

import heapq
import math
import random as _random
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

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
    # The largest datagram the path carries whole (None: any). A larger one is dropped, as on a
    # path whose MTU is smaller with don't-fragment set, or through a middlebox that drops IP
    # fragments: what path-MTU discovery must find (pmtu.py).
    mtu: int | None = None

    def __attrs_post_init__(self) -> None:
        for name in ("loss", "duplicate", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in 0..1")
        if self.latency < 0 or self.jitter < 0 or self.reorder_delay < 0:
            raise ValueError("latency, jitter and reorder_delay must be >= 0")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise ValueError("bandwidth must be positive or None")
        if self.mtu is not None and self.mtu < 1:
            raise ValueError("mtu must be positive or None")


@attrs.define(slots=True)
class LinkCounters:
    """What one link did: datagrams offered, delivered, lost at random, dropped by the queue,
    duplicated, and delayed out of order."""

    sent: int = 0
    delivered: int = 0
    lost: int = 0
    queue_drops: int = 0
    duplicated: int = 0
    reordered: int = 0
    too_big: int = 0  # larger than the profile's mtu: dropped


@attrs.define(slots=True)
class Link:
    """One direction's link model, sans-I/O: the fate of a datagram put on it at ``now``.

    The simulator's :class:`Network` and the real-socket impaired link
    (:mod:`stt_runtime.impair`) both run datagrams through this, so simulation and real tests
    share one model: random loss, duplication, a serialising bottleneck of ``bandwidth`` with a
    drop-tail queue of ``queue_limit`` bytes, then ``latency``, uniform ``jitter`` and a
    ``reorder_delay`` for a random few."""

    profile: LinkProfile
    busy_until: float = 0.0
    counters: LinkCounters = attrs.field(factory=LinkCounters)

    def admit(self, size: int, now: float, rng: _random.Random) -> list[float]:
        """The arrival time of each copy of a ``size``-byte datagram put on the link at
        ``now``: none when it is lost or the queue is full, two when it is duplicated."""
        profile = self.profile
        counters = self.counters
        counters.sent += 1
        if profile.mtu is not None and size > profile.mtu:
            counters.too_big += 1
            return []
        if profile.loss and rng.random() < profile.loss:
            counters.lost += 1
            return []
        copies = 2 if profile.duplicate and rng.random() < profile.duplicate else 1
        counters.duplicated += copies - 1
        arrivals: list[float] = []
        for _ in range(copies):
            start = max(now, self.busy_until)
            if profile.bandwidth is not None:
                backlog = (start - now) * profile.bandwidth / 8
                if backlog + size > profile.queue_limit:
                    counters.queue_drops += 1
                    continue
                self.busy_until = start + size * 8 / profile.bandwidth
            else:
                self.busy_until = start
            arrival = self.busy_until + profile.latency
            if profile.jitter:
                arrival += rng.uniform(0, profile.jitter)
            if profile.reorder and rng.random() < profile.reorder:
                arrival += profile.reorder_delay
                counters.reordered += 1
            arrivals.append(arrival)
        return arrivals


ItemT = TypeVar("ItemT")


class DelayLine(Generic[ItemT]):
    """A :class:`Link` with the datagrams on it, for a caller with a real clock: put items on
    with :meth:`send`, take those due with :meth:`pop_due`, sleep until :meth:`next_time`.

    Items leave in order of arrival time (ties in the order sent). Call :meth:`pop_due` as
    often as convenient: everything due by ``now`` comes out at once, so a late wake-up
    delays items but never changes the rate averaged over the backlog."""

    def __init__(self, profile: LinkProfile, rng: _random.Random | None = None) -> None:
        self.link = Link(profile)
        self._rng = rng if rng is not None else _random.Random()
        self._heap: list[tuple[float, int, ItemT]] = []
        self._seq = 0

    @property
    def counters(self) -> LinkCounters:
        return self.link.counters

    def send(self, item: ItemT, size: int, now: float) -> int:
        """Put ``item`` (``size`` bytes on the wire) on the link; the copies that will arrive."""
        arrivals = self.link.admit(size, now, self._rng)
        for arrival in arrivals:
            self._seq += 1
            heapq.heappush(self._heap, (arrival, self._seq, item))
        return len(arrivals)

    def next_time(self) -> float | None:
        """When the next item arrives (None: the line is empty)."""
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[ItemT]:
        """Every item whose arrival time is at or before ``now``, earliest first."""
        heap = self._heap
        due: list[ItemT] = []
        while heap and heap[0][0] <= now:
            due.append(heapq.heappop(heap)[2])
        self.link.counters.delivered += len(due)
        return due

    def __len__(self) -> int:
        return len(self._heap)


TraceEntry = tuple[float, Address, Address, bytes]
Tamper = Callable[[Address, Address, bytes], bytes | None]


class Network:
    """Drives endpoints on a virtual clock; ``trace`` records every delivered datagram.

    ``timer_granularity`` and ``timer_lateness`` model a real event loop's timers (uvloop's
    resolution is 1 ms, and a busy loop wakes up late): an endpoint's deadline fires at the
    next multiple of the granularity, plus a uniform ``0..timer_lateness`` of its own (from a
    generator of its own, so the links' random fates stay those of the same seed without).
    ``receive_granularity`` models a loop busy for that long at a time: datagrams that arrive
    are handed to their endpoint together at the next multiple of it, as a real loop reads
    a socket's backlog in one batch when it gets round to it. ``send_batch`` asks endpoints
    for their output in batches of that many datagrams, as the runtimes do (``NodeCore._poll``:
    a full batch, then another, until a short one); 0 asks for everything at once."""

    def __init__(self, seed: int = 0, default_profile: LinkProfile | None = None,
                 *, record_trace: bool = True, timer_granularity: float = 0.0,
                 timer_lateness: float = 0.0, receive_granularity: float = 0.0,
                 send_batch: int = 0) -> None:
        self.now = 0.0
        self.send_batch = send_batch
        self.timer_granularity = timer_granularity
        self.timer_lateness = timer_lateness
        self.receive_granularity = receive_granularity
        self._late_rng = _random.Random(seed + 1)
        self._fire_at: dict[Address, tuple[float, float]] = {}  # deadline -> when it fires
        self._rng = _random.Random(seed)
        self.default_profile = default_profile or LinkProfile()
        self.endpoints: dict[Address, Driven] = {}
        self._links: dict[tuple[Address, Address], Link] = {}
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
        self._links[(a, b)] = Link(profile)
        if both_ways:
            self._links[(b, a)] = Link(profile)

    def share_link(self, pairs: list[tuple[Address, Address]], profile: LinkProfile) -> None:
        """Make several (source, destination) directions share one bottleneck and its queue."""
        link = Link(profile)
        for pair in pairs:
            self._links[pair] = link

    def link_counters(self, a: Address, b: Address) -> LinkCounters:
        return self._link(a, b).counters

    def _link(self, a: Address, b: Address) -> Link:
        link = self._links.get((a, b))
        if link is None:
            link = self._links[(a, b)] = Link(self.default_profile)
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
        grid = self.receive_granularity
        for arrival in self._link(src, dst).admit(len(payload), self.now, self._rng):
            if grid:
                arrival = math.ceil(arrival / grid) * grid  # read in the loop's next batch
            self._seq += 1
            heapq.heappush(self._queue, (arrival, self._seq, src, dst, payload))

    def flush(self) -> None:
        """Collect every endpoint's pending output and put it on the links."""
        batch = self.send_batch or None
        for address, endpoint in self.endpoints.items():
            while True:
                out = endpoint.datagrams_to_send(self.now) if batch is None else \
                    endpoint.datagrams_to_send(self.now, batch)
                for datagram, destination in out:
                    self.send(address, destination, datagram)
                if batch is None or len(out) < batch:
                    break

    # -- running ----------------------------------------------------------------------------------

    def _timer(self, address: Address, endpoint: Driven) -> float | None:
        """When ``endpoint``'s deadline fires: at once, or as a coarse, late timer would."""
        deadline = endpoint.get_timer()
        if deadline is None or not (self.timer_granularity or self.timer_lateness):
            return deadline
        known = self._fire_at.get(address)
        if known is not None and known[0] == deadline:
            return known[1]
        fire = deadline
        if self.timer_granularity:
            fire = math.ceil(deadline / self.timer_granularity) * self.timer_granularity
        if self.timer_lateness:
            fire += self._late_rng.uniform(0, self.timer_lateness)
        self._fire_at[address] = (deadline, fire)
        return fire

    def next_time(self) -> float | None:
        times = [t for t in (self._timer(a, e) for a, e in self.endpoints.items())
                 if t is not None]
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
            for address, endpoint in self.endpoints.items():
                timer = self._timer(address, endpoint)
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
