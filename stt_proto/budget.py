"""The node-wide receive memory budget: message reassembly and window growth, over all sessions.

Flow control bounds what one stream or one session may make us buffer, but not the node: a
stream's credit counted a partial message as taken (so that a message larger than the window
can complete), so 48 unfinished 16 MiB messages held 832 MiB, and every session's window grows
(to 16 MiB) on its own. One :class:`MemoryBudget` per endpoint (``receive_budget``) now pays for
both, and each session's :class:`SessionBudget` asks it:

* **Reassembly.** A message longer than its stream's window is a *large* message. Its partial
  bytes count as credit only once a *reservation* of its whole length is granted: all or
  nothing, in order of asking (FIFO, so small requests cannot starve a large one), and at most
  a quarter of the budget per session beyond its first (a message longer than half the budget
  reserves half, and may overrun it by the rest). Until then the stream stays within its
  window: the peer stalls on that stream and the node does not grow. A granted message can
  always complete (its credit, and the session's, follow its bytes), so there is no deadlock;
  the reservation is returned as the application reads the message.
* **Window growth.** A session's window (MAX_DATA) beyond its initial one (``initial_max_data``)
  is charged, up to half the budget over all sessions; past it windows stop growing (the
  session keeps its initial window: nothing stalls, transfers are slower).

What remains unbudgeted is what flow control already bounds per session: its initial window and
at most one window per stream of a message not yet granted. New sessions are refused (REFUSE
busy) while a reservation waits or the budget is spent.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from .varint import varint_size

if TYPE_CHECKING:  # (the streams import this module: names for annotations only)
    from .streams.recv import RecvSide
    from .streams.stream import Stream


class BudgetUser(Protocol):
    """Whom the budget tells that a queued reservation was granted."""

    def granted(self, key: int, end: int, amount: int) -> bool:
        """Whether the user keeps it: False (its message was read or its stream ended while
        the request waited) hands it straight back."""


class MemoryBudget:
    """Reservations and window charges of every session of one node against one limit."""

    __slots__ = ("_queue", "_queued", "denials", "limit", "messages", "peak", "reserved",
                 "wakes", "windows", "woken")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserved = 0  # message reservations plus window charges
        self.messages = 0  # of which message reservations
        self.windows = 0  # of which window growth
        self.peak = 0
        self.denials = 0  # reservations that had to wait, window growth cut short
        self.wakes = 0  # queued reservations granted
        self.woken = False  # granted since the endpoint last built output
        self._queue: deque[tuple[BudgetUser, int, int, int]] = deque()
        self._queued: set[tuple[int, int, int]] = set()

    @property
    def over(self) -> bool:
        """Spent: a reservation waits, or nothing is left. New sessions are refused."""
        return bool(self._queue) or self.reserved >= self.limit

    def reserve(self, user: BudgetUser, key: int, end: int, amount: int) -> bool:
        """Reserve ``amount`` bytes for ``user``'s message ``(key, end)`` now (True), or queue
        the request: ``user.granted`` is called when it is served (False now)."""
        # (a message longer than half the budget reserves half: window charges never take
        # more, so that much always comes free)
        amount = min(amount, self.limit // 2)
        if not self._queue and self.reserved + amount <= self.limit:
            self._take(amount)
            self.messages += amount
            return True
        ident = (id(user), key, end)
        if ident not in self._queued:
            self._queued.add(ident)
            self._queue.append((user, key, end, amount))
            self.denials += 1
        return False

    def grow(self, current: int, want: int) -> int:
        """A window charge raised from ``current`` towards ``want``, as far as the window share
        (half the budget) allows, and never while a reservation waits; the new charge."""
        extra = want - current
        if extra <= 0:
            return current
        room = 0 if self._queue else min(self.limit - self.reserved,
                                         self.limit // 2 - self.windows)
        give = max(0, min(extra, room))
        if give < extra:
            self.denials += 1
        self._take(give)
        self.windows += give
        return current + give

    def _take(self, amount: int) -> None:
        self.reserved += amount
        if self.reserved > self.peak:
            self.peak = self.reserved

    def release(self, amount: int, *, message: bool) -> None:
        """Bytes reserved or charged are given back; queued reservations that now fit are
        granted, in order."""
        if amount <= 0:
            return
        self.reserved -= amount
        if message:
            self.messages -= amount
        else:
            self.windows -= amount
        queue = self._queue
        while queue and self.reserved + queue[0][3] <= self.limit:
            user, key, end, size = queue.popleft()
            self._queued.discard((id(user), key, end))
            self._take(size)
            self.messages += size
            if user.granted(key, end, size):
                self.wakes += 1
                self.woken = True
            else:  # no longer wanted: back at once, and the next in line is looked at
                self.reserved -= size
                self.messages -= size

    def withdraw(self, user: BudgetUser, key: int) -> None:
        """Forget ``user``'s queued requests for ``key`` (its stream is gone)."""
        if any(entry[0] is user and entry[1] == key for entry in self._queue):
            self._queue = deque(entry for entry in self._queue
                                if entry[0] is not user or entry[1] != key)
            self._queued = {(id(e[0]), e[1], e[2]) for e in self._queue}

    def cancel(self, user: BudgetUser) -> None:
        """Forget ``user``'s queued requests (its session is gone)."""
        if any(entry[0] is user for entry in self._queue):
            self._queue = deque(entry for entry in self._queue if entry[0] is not user)
            self._queued = {ident for ident in self._queued if ident[0] != id(user)}


def taken_offset(recv: RecvSide) -> int:
    """The stream offset below which the application has taken every byte: in-order bytes
    less complete messages unread, the bytes not yet cut and a partial message's prefix."""
    head = recv._head
    return recv.read_offset - recv.unread_bytes - recv._parts_bytes - (
        0 if head is None else varint_size(head))


# An idle session's SessionBudget shares these (an empty dict and set cost 280 B a session);
# each insert site swaps in its own first.
_NO_RESERVATIONS: dict[int, tuple[int, int]] = {}
_NO_DEFERRED: set[int] = set()


class SessionBudget:
    """One session's dealings with the node's budget (its StreamManager calls these)."""

    __slots__ = ("_base", "_deferred", "_mark", "_reservations", "_streams", "_wake", "budget",
                 "charged", "share")

    def __init__(self, budget: MemoryBudget, base_window: int, mark: Callable[[int], None],
                 wake: Callable[[], None], streams: Mapping[int, Stream]) -> None:
        self.budget = budget
        self._streams = streams  # the session's live streams, by id
        self._base = base_window  # initial_max_data: granted in the handshake, not charged
        self._mark = mark  # marks a stream's window for the next collect
        self._wake = wake  # asks the endpoint to build this session's output
        # stream -> (message end, bytes); streams waiting for this session's own share
        self._reservations: dict[int, tuple[int, int]] = _NO_RESERVATIONS
        self._deferred: set[int] = _NO_DEFERRED
        self.charged = 0  # window growth charged
        self.share = budget.limit // 4  # reservations beyond the first, per session

    @property
    def reserved(self) -> int:
        return sum(amount for _, amount in self._reservations.values())

    # -- streams: reassembly ----------------------------------------------------------------------

    def stream_credit(self, stream: Stream, credit: int, ask: bool = True) -> int:
        """The credit ``stream`` may advertise: ``credit`` (a partial message counted as
        taken) unless its message is large and has no reservation; then, with ``ask``, one
        is asked for, and until it is granted the partial message does not count."""
        recv = stream.recv
        head = recv._head
        if head is None:
            return credit
        size = varint_size(head) + head
        if size <= recv.window:
            return credit
        end = recv.read_offset - recv._parts_bytes + head  # where the message ends
        held = self._reservations.get(stream.stream_id)
        if held is not None and held[0] == end:
            return credit
        if held is None and ask:
            mine = self.reserved
            if mine and mine + size > self.share:
                if self._deferred is _NO_DEFERRED:
                    self._deferred = set()
                self._deferred.add(stream.stream_id)  # asked again when one of ours is read
            elif self.budget.reserve(self, stream.stream_id, end, size):
                self._hold(stream.stream_id, end, size)
                return credit
        return taken_offset(recv)

    def granted(self, key: int, end: int, amount: int) -> bool:
        """A queued reservation was served: the stream's credit may grow on the next build.

        Declined (False) when nothing is left to pay for: the stream is gone, or the message
        ending at ``end`` was read meanwhile. A request waits in the queue while the message
        may still complete without it (its stream's window doubled past its length in the
        very poll that asked), and a reservation held for bytes already read would never be
        given back: only a read (:meth:`on_read`) or the stream's end returns one."""
        stream = self._streams.get(key)
        if stream is None or taken_offset(stream.recv) >= end:
            return False
        if key in self._reservations:  # pragma: no cover - one request per stream at a time
            return False
        self._hold(key, end, amount)
        self._mark(key)
        self._wake()
        return True

    def _hold(self, stream_id: int, end: int, amount: int) -> None:
        if self._reservations is _NO_RESERVATIONS:
            self._reservations = {}
        self._reservations[stream_id] = (end, amount)

    def on_read(self, stream: Stream) -> None:
        """The application took bytes of ``stream``: a message read gives its bytes back."""
        held = self._reservations.get(stream.stream_id)
        if held is not None and taken_offset(stream.recv) >= held[0]:
            del self._reservations[stream.stream_id]
            self._give_back(held[1])

    def on_forget(self, stream_id: int) -> None:
        if self._deferred:
            self._deferred.discard(stream_id)
        if self.budget._queue:  # a request of this stream's may wait: nobody to grant it to
            self.budget.withdraw(self, stream_id)
        held = self._reservations.pop(stream_id, None)
        if held is not None:
            self._give_back(held[1])

    def _give_back(self, amount: int) -> None:
        """A reservation of ours ended: the node's budget gets it back, and our streams held
        back by the session's share ask again on the next build."""
        self.budget.release(amount, message=True)
        if self._deferred:
            deferred, self._deferred = self._deferred, _NO_DEFERRED
            for stream_id in deferred:
                self._mark(stream_id)
            self.budget.woken = True  # (the runtime polls after this read: see updates_owed)
            self._wake()

    # -- the session: window growth ---------------------------------------------------------------

    def conn_limit(self, want_max: int, consumed: int) -> int:
        """The MAX_DATA limit, at most ``want_max``, that the window share allows."""
        base = consumed + self._base
        self.charged = self.budget.grow(self.charged, max(0, want_max - base))
        return min(want_max, base + self.charged)

    def settle(self, recv_max: int, consumed: int) -> None:
        """Give back the window charge that bytes received since have used up."""
        charge = max(0, recv_max - consumed - self._base)
        if charge < self.charged:
            self.budget.release(self.charged - charge, message=False)
            self.charged = charge

    def close(self) -> None:
        """The session is gone: everything it holds goes back."""
        budget = self.budget
        budget.cancel(self)
        budget.release(self.charged, message=False)
        self.charged = 0
        for stream_id in list(self._reservations):
            self.on_forget(stream_id)


__all__ = ["BudgetUser", "MemoryBudget", "SessionBudget", "taken_offset"]
