"""The impaired link's logic without sockets: two of the simulator's links, one each way.

A client's datagram goes on the forward line and, when due, to the target; the target's reply
to that client goes on the back line and, when due, to the client. The caller passes ``now``
(a real clock in :class:`~stt_runtime.impair.link.ImpairedLink`, a fake one in tests) and
sends what :meth:`Forwarder.due` returns.
"""

from __future__ import annotations

import random

import attrs

from stt_proto.events import Address
from stt_proto.sim import DelayLine, LinkCounters, LinkProfile

Item = tuple[Address, bytes]
"""A datagram on a line, with the client it is from (forward) or for (back)."""


@attrs.frozen(slots=True)
class ImpairStats:
    """What the link did so far: each direction's counters (the simulator's
    :class:`~stt_proto.sim.LinkCounters`), the clients seen, datagrams the kernel refused, and
    how late the datagrams due at a wake-up left (mean and worst, seconds)."""

    forward: LinkCounters
    back: LinkCounters
    clients: int = 0
    send_errors: int = 0
    late_mean: float = 0.0
    late_max: float = 0.0

    def summary(self) -> str:
        """Counters for a person, one direction a line."""
        lines = []
        for name, c in (("forward", self.forward), ("back", self.back)):
            lines.append(f"{name}: {c.sent} in, {c.delivered} forwarded, {c.lost} dropped by "
                         f"loss, {c.queue_drops} dropped by the queue, {c.duplicated} "
                         f"duplicated, {c.reordered} reordered")
        lines.append(f"clients: {self.clients}; send errors: {self.send_errors}; release "
                     f"lateness: mean {self.late_mean * 1e3:.3f} ms, "
                     f"max {self.late_max * 1e3:.3f} ms")
        return "\n".join(lines)


class Forwarder:
    """Both directions of the link, sans-I/O. ``seed`` makes loss, jitter, duplication and
    reordering repeatable (each direction has a generator of its own, so one direction's
    traffic never changes the other's fate)."""

    def __init__(self, forward: LinkProfile, back: LinkProfile | None = None,
                 seed: int | None = None) -> None:
        base = random.Random(seed)
        self.forward: DelayLine[Item] = DelayLine(forward, random.Random(base.getrandbits(64)))
        self.back: DelayLine[Item] = DelayLine(back if back is not None else forward,
                                               random.Random(base.getrandbits(64)))
        self._late_sum = 0.0
        self._late_count = 0
        self._late_max = 0.0

    def from_client(self, client: Address, data: bytes, now: float) -> None:
        """A datagram ``client`` sent toward the target."""
        self.forward.send((client, data), len(data), now)

    def from_target(self, client: Address, data: bytes, now: float) -> None:
        """A datagram the target sent back to ``client``."""
        self.back.send((client, data), len(data), now)

    def next_time(self) -> float | None:
        """When the next datagram is due on either line (None: both are empty)."""
        times = [t for t in (self.forward.next_time(), self.back.next_time()) if t is not None]
        return min(times) if times else None

    def due(self, now: float) -> tuple[list[Item], list[Item]]:
        """Everything due by ``now``: (to the target, to clients), each earliest first."""
        first = self.next_time()
        if first is None or first > now:
            return [], []
        late = now - first
        self._late_sum += late
        self._late_count += 1
        self._late_max = max(self._late_max, late)
        return self.forward.pop_due(now), self.back.pop_due(now)

    def stats(self, clients: int = 0, send_errors: int = 0) -> ImpairStats:
        """A snapshot of the counters (copies: the lines keep counting)."""
        mean = self._late_sum / self._late_count if self._late_count else 0.0
        return ImpairStats(attrs.evolve(self.forward.counters), attrs.evolve(self.back.counters),
                           clients, send_errors, mean, self._late_max)
