"""Path validation (RFC 9000 section 9, simplified): a session follows its peer to a new
address only after a challenge/response round trip shows that the peer, who alone holds the
session keys, receives at that address.

Without it, one authenticated packet copied by an on-path attacker and sent first from a
victim's address would point the session's whole sending rate at the victim. Here such a
packet only makes the session send PATH_CHALLENGEs to the candidate address, at most
:data:`AMPLIFICATION_FACTOR` times the bytes received from it, while everything else keeps
going to the current path. The PATH_RESPONSE echoing a challenge moves the session; no echo
within the deadline drops the candidate, and the session never left the old path. A real NAT
rebinding validates in one round trip.

:class:`PathValidator` holds the state; the session feeds it packets from other addresses,
the frames it receives, its timer, and sends what it asks for.
"""

from __future__ import annotations

from .events import Address
from .randomness import RandomSource

AMPLIFICATION_FACTOR = 3  # bytes sent to an unvalidated address per byte received from it
CHALLENGES_PER_ATTEMPT = 3  # PATH_CHALLENGEs sent to a candidate before giving up on it
PROBE_INTERVAL_MIN = 0.1  # seconds: the shortest wait between two challenges
MAX_PENDING_RESPONSES = 4  # echoes owed at once; a peer's extra challenges replace the oldest


class PathValidator:
    """The candidate path a session is validating, and the echoes it owes its peer.

    Created on first use: most sessions never see a second address.
    """

    __slots__ = (
        "_blocked",
        "_interval",
        "_outstanding",
        "candidate",
        "challenges_sent",
        "deadline",
        "failed",
        "outbox",
        "probe_at",
        "received",
        "responses",
        "sent",
        "validated",
    )

    def __init__(self) -> None:
        self.candidate: Address | None = None  # the address being validated
        self.received = 0  # bytes of authenticated packets from the candidate
        self.sent = 0  # bytes sent to the candidate (challenges)
        self.probe_at: float | None = None  # when the next challenge is due
        self.deadline: float | None = None  # when the attempt fails
        self.outbox: list[tuple[bytes, Address]] = []  # sealed challenges for the endpoint
        self.responses: list[bytes] = []  # PATH_RESPONSE data owed to the peer
        self.validated = 0  # attempts that moved the session
        self.failed = 0  # attempts that timed out or were replaced
        self.challenges_sent = 0
        self._outstanding: list[bytes] = []  # data of the challenges sent this attempt
        self._interval = PROBE_INTERVAL_MIN
        self._blocked = False  # a challenge waits for more bytes from the candidate

    # -- input ------------------------------------------------------------------------------------

    def on_packet(self, addr: Address, size: int, newest: bool, now: float,
                  interval: float) -> None:
        """An authenticated packet of ``size`` bytes came from ``addr``, which is not the
        current path. Only the newest packet so far (``newest``) may start an attempt, and
        a new one replaces an older candidate; ``interval`` is the wait between challenges
        (the session's probe timeout)."""
        if addr == self.candidate:
            self.received += size
            if self._blocked:  # more room under the limit: the waiting challenge may go
                self._blocked = False
                self.probe_at = now
            return
        if not newest:
            return
        if self.candidate is not None:
            self.failed += 1
        self.candidate = addr
        self.received = size
        self.sent = 0
        self._outstanding = []
        self.outbox = []
        self._blocked = False
        self._interval = max(interval, PROBE_INTERVAL_MIN)
        self.probe_at = now
        self.deadline = now + CHALLENGES_PER_ATTEMPT * self._interval

    def on_challenge(self, data: bytes) -> None:
        """The peer challenged us: echo ``data`` in the next packet."""
        if len(self.responses) >= MAX_PENDING_RESPONSES:
            del self.responses[0]
        self.responses.append(data)

    def on_response(self, data: bytes) -> Address | None:
        """A PATH_RESPONSE arrived: the address it validates (the session moves there), or
        None when it echoes no challenge of this attempt (late or forged: ignored)."""
        if self.candidate is None or data not in self._outstanding:
            return None
        address = self.candidate
        self.validated += 1
        self._clear()
        return address

    def on_timer(self, now: float) -> None:
        """Past the deadline without an echo: the candidate is dropped."""
        if self.deadline is not None and now >= self.deadline:
            self.failed += 1
            self._clear()

    # -- output -----------------------------------------------------------------------------------

    def timer(self) -> float | None:
        """The earliest time :meth:`on_timer` or :meth:`challenge` has something to do."""
        probe, deadline = self.probe_at, self.deadline
        if probe is None or (deadline is not None and deadline < probe):
            return deadline
        return probe

    def challenge(self, now: float, rng: RandomSource, size: int) -> bytes | None:
        """The data of a PATH_CHALLENGE to send to the candidate now in a packet of at most
        ``size`` bytes, or None: none due, all sent, or the anti-amplification limit would be
        passed (the challenge then waits for more bytes from the candidate)."""
        probe = self.probe_at
        if self.candidate is None or probe is None or now < probe:
            return None
        if len(self._outstanding) >= CHALLENGES_PER_ATTEMPT:
            self.probe_at = None  # the deadline decides now
            return None
        if self.sent + size > AMPLIFICATION_FACTOR * self.received:
            self.probe_at = None
            self._blocked = True
            return None
        data = rng.token_bytes(8)
        self._outstanding.append(data)
        self.challenges_sent += 1
        self.probe_at = now + self._interval
        return data

    def on_sent(self, datagram: bytes) -> None:
        """A sealed challenge for the candidate: counted against the limit and queued."""
        if self.candidate is None:  # pragma: no cover - challenge() returned data
            return
        self.sent += len(datagram)
        self.outbox.append((datagram, self.candidate))

    def take_outbox(self) -> list[tuple[bytes, Address]]:
        """The challenges to send, each with its destination (not the session's address)."""
        out = self.outbox
        self.outbox = []
        return out

    def _clear(self) -> None:
        self.candidate = None
        self.received = self.sent = 0
        self.probe_at = self.deadline = None
        self._outstanding = []
        self._blocked = False
