"""Balanced placement of new inbound sessions over a node's workers (``STTNode(workers=N)``).

The steering program sends a new session's INITIAL to the worker its random destination id
names, so sessions per worker are multinomial: with 64 sessions over 8 workers some worker gets
under half the mean in a quarter of runs. The kernel program stays stateless; the workers fix
the tail themselves. Each worker publishes its count of inbound sessions (half-open ones
included) in a small array every worker reads (shared memory, made by the runtime), and a
worker holding clearly more than the least-loaded one answers a new INITIAL with a RETRY whose
source id names that worker (``cids.worker_cid``) and whose token is bound to that id: the
initiator sends its next INITIAL there, where the token admits it (``endpoint.py``). A
redirected session costs one round trip; a token-bearing INITIAL is never redirected again.

The rule (:func:`over_share`): redirect when this worker's count is at least the least-loaded
worker's plus ``max(MIN_GAP, mean / GAP_DIVISOR)``. Counts only grow during a burst and each
local admission happens below that gap, so afterwards no worker is more than about the gap
above the least-loaded one, which keeps some 2/3 of the mean (the target is 1/2): the slack
absorbs redirects from several workers that meet on the same one before it has counted them.
In a model of bursts where every redirect lands only after all first INITIALs were handled
(``tests/test_placement.py``), 64 sessions over 4 or 8 workers never left a worker under half
the mean in 2,000 runs each (the hash alone: 1.7 % and 25 %), redirecting 15 % and 22 % of
them. With many sessions per worker the hash's own spread (about the square root of the mean)
stays far below a third of the mean, so a busy server redirects little (1.6 % of 1,000
sessions over 4 workers, all early in the burst, when the mean is small); ``MIN_GAP`` keeps a
few sessions on a few workers from paying round trips for differences of one or two.

Nothing here does I/O: the array is any mutable sequence of ints, ``now`` comes from the caller.
"""

from __future__ import annotations

from collections.abc import MutableSequence
from typing import Protocol

from .cids import WorkerIds

ABSENT = -1  # a slot whose worker is not running (not started, or dead): never a target
MIN_GAP = 3  # sessions: a worker redirects only when at least this many over the least
GAP_DIVISOR = 3  # ... and at least mean / GAP_DIVISOR over it
PENDING_LIFETIME = 2.0  # seconds a redirect this worker sent counts as on its way


class Placement(Protocol):
    """What an endpoint asks about new inbound sessions (``Endpoint.placement``)."""

    def count(self, sessions: int) -> None:
        """This worker now holds ``sessions`` inbound sessions."""

    def redirect(self, now: float) -> int | None:
        """The worker a new session should go to instead of this one, or None (stay here)."""


def over_share(own: int, least: int, mean: float) -> bool:
    """Whether a worker holding ``own`` sessions should send a new one to a worker holding
    ``least``, the group's mean being ``mean`` (the rule above)."""
    return own - least >= max(MIN_GAP, mean / GAP_DIVISOR)


def redirect_target(placement: Placement | None, worker: WorkerIds | None,
                    now: float) -> int | None:
    """The worker a new session goes to instead of ``worker`` (this one), or None: what the
    endpoint asks for an INITIAL without a token."""
    if placement is None or worker is None:
        return None
    target = placement.redirect(now)
    if target is None or target == worker[0] or not 0 <= target < worker[1]:
        return None
    return target


class LoadBalancer:
    """One worker's side of the placement: publishes its count in ``loads[index]`` and picks
    the least-loaded worker from the others' slots (:data:`ABSENT` ones skipped).

    Redirects this worker sent count toward their target until its published count has grown
    by as many, or :data:`PENDING_LIFETIME` passes (a redirected initiator may never come):
    several new sessions arriving together are spread instead of all sent to one worker."""

    __slots__ = ("_pending", "index", "loads", "redirects")

    def __init__(self, loads: MutableSequence[int], index: int) -> None:
        if not 0 <= index < len(loads):
            raise ValueError(f"worker index {index} outside 0..{len(loads) - 1}")
        self.loads = loads
        self.index = index
        # target -> (its count when the first pending redirect left, redirects since, when)
        self._pending: dict[int, tuple[int, int, float]] = {}
        self.redirects = 0

    def count(self, sessions: int) -> None:
        self.loads[self.index] = sessions

    def _load(self, worker: int, published: int, now: float) -> int:
        """``worker``'s count with this worker's redirects still on their way to it."""
        entry = self._pending.get(worker)
        if entry is None:
            return published
        base, sent, at = entry
        if published >= base + sent or now - at > PENDING_LIFETIME:
            del self._pending[worker]  # they have arrived (or never will)
            return published
        return base + sent

    def redirect(self, now: float) -> int | None:
        counts = list(self.loads)
        own = counts[self.index]
        loads: dict[int, int] = {}
        for worker, published in enumerate(counts):
            if published >= 0 and worker != self.index:
                loads[worker] = self._load(worker, published, now)
        if not loads or own < MIN_GAP:
            return None
        # among equals, the first after this worker: workers redirecting at once spread out
        order = sorted(loads, key=lambda worker: (worker - self.index) % len(counts))
        target = min(order, key=loads.__getitem__)
        mean = (own + sum(loads.values())) / (len(loads) + 1)
        if not over_share(own, loads[target], mean):
            return None
        base, sent, at = self._pending.get(target, (counts[target], 0, now))
        self._pending[target] = (base, sent + 1, at)
        self.redirects += 1
        return target


__all__ = ["ABSENT", "GAP_DIVISOR", "MIN_GAP", "PENDING_LIFETIME", "LoadBalancer", "Placement",
           "over_share", "redirect_target"]
