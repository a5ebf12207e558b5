"""Packetization-layer path-MTU discovery (after RFC 8899, DPLPMTUD): how large a datagram the
path to the peer carries, found by probing with padded packets that carry no data.

A session starts at the base size every IPv6 path carries (1,200 bytes) and probes upwards to its
ceiling (the smaller of both ends' ``max_frame_size``). A probe is a PING padded to the size under
test; an acknowledged probe raises the size, a lost one proves nothing about congestion (the data
plane keeps it out of the controller) but counts as a failure at that size.

The search goes in rounds. The first round probes, at once, the ceiling and the common path sizes
below it (a 9,000 and a 1,500-byte MTU, 1,280), so loopback reaches its ceiling in one round trip
and an Ethernet path its 1,500-byte size in one more; each following round probes the sizes not
yet settled, and then halves the gap between the largest size acknowledged and the smallest
refused. A size refused three times is too big (a probe lost beside lost data is sent again
without counting: a full queue, not the size, may have taken it). Once settled, the search
runs again after ``RAISE_INTERVAL`` (the path may have grown).

Black holes: when several full-size packets are lost in a row with no full-size packet
acknowledged since and a probe timeout has passed, or two probe timeouts pass with nothing
acknowledged, the path may have shrunk (a route change, a tunnel). Packets drop back to the base
size at once (data and ACKs flow again), and ``CONFIRM_PROBES`` probes of the size in use, one at
a time, ask whether it was loss (RFC 8899, 4.3: confirm a black hole before acting on it): one
acknowledged, random loss or an outage took the packets and the size comes back; all lost, it
is a black hole and the search starts again. At 30 % random loss the losses alone looked like a
black hole one to eight times per 32 MiB transfer; four probes all lost at 30 % is 0.8 %.
"""

from __future__ import annotations

BASE = 1200  # the smallest datagram every IPv6 path carries (and STT's MIN_FRAME_SIZE)
# UDP payload of a path with these link MTUs, after the IP and UDP headers (IPv4: 28, IPv6: 48)
LINK_MTUS = (9000, 1500, 1280)
MAX_PROBES = 3  # refusals before a size is judged too big (RFC 8899's MAX_PROBES)
REFINE_GAP = 64  # halve the gap between acknowledged and refused sizes until it is this small
RAISE_INTERVAL = 600.0  # seconds before searching again for a larger size (RFC 8899)
BLACK_HOLE_LOSSES = 3  # full-size packets lost in a row that, after a probe timeout, mean one
CONFIRM_PROBES = 4  # probes of the size in use, all lost, that confirm a suspected black hole

SEARCHING = "searching"
COMPLETE = "complete"
STATES = (SEARCHING, COMPLETE)


class PathMtu:
    """One session's path MTU: :attr:`current` is the size packets are built to."""

    __slots__ = ("_common", "_confirm_lost", "_failures", "_large_lost", "_low", "_next_search",
                 "_probes", "_refused", "black_holes", "black_holes_refuted", "ceiling",
                 "confirm_size", "confirmed", "current", "enabled", "probes_acked",
                 "probes_lost", "probes_sent", "state", "wanted")

    def __init__(self, ceiling: int, ipv6: bool = False) -> None:
        self.ceiling = ceiling
        overhead = 48 if ipv6 else 28  # the IPv6 or IPv4 header and UDP's
        # the ceiling and the common paths' sizes below it, largest first
        self._common = tuple(sorted({size for size in (ceiling, *(m - overhead for m in LINK_MTUS))
                                     if BASE < size <= ceiling}, reverse=True))
        self.current = min(BASE, ceiling)
        self._low = self.current  # the largest size acknowledged
        self._refused = ceiling + 1  # the smallest size judged too big
        self._failures: dict[int, int] = {}  # size -> probes of it lost, this search
        self._probes: dict[int, int] = {}  # packet number -> size, of probes in flight
        self._large_lost = 0  # full-size packets lost since one was acknowledged
        self._next_search = 0.0
        self.state = SEARCHING if ceiling > self.current else COMPLETE
        self.black_holes = 0
        self.black_holes_refuted = 0  # suspected, then a confirmation probe went through
        self.confirm_size = 0  # while a suspected black hole is confirmed: the size in doubt
        self._confirm_lost = 0  # confirmation probes lost
        self.enabled = False  # confirmed and wanted: see start() and want()
        self.confirmed = False
        self.wanted = False
        self.probes_acked = 0
        self.probes_lost = 0
        self.probes_sent = 0

    # -- what to probe ----------------------------------------------------------------------------

    def start(self) -> None:
        """The handshake is confirmed: probing may begin once it is wanted (before, a padded
        probe would only cost an initiator whose peer has not finished, or a spoofed one,
        bytes)."""
        self.confirmed = True
        self.enabled = self.wanted

    def want(self) -> None:
        """The session has more to send than a base-size packet holds: a larger size would
        pay. Until then it does not probe: a session that only exchanges small messages, or
        thousands of sessions confirming at once, would send tens of kilobytes of padding
        each for nothing."""
        self.wanted = True
        self.enabled = self.confirmed

    def due(self, now: float) -> bool:
        """Whether :meth:`sizes_to_probe` may have sizes for ``now`` (cheap, every build)."""
        if self.confirm_size:
            return not self._probes
        if self._probes or not self.enabled:
            return False
        if self.state == SEARCHING:
            return True
        return now >= self._next_search and self.current < self.ceiling

    def sizes_to_probe(self, now: float) -> list[int]:
        """The probe sizes to send now (largest first): none while probes are in flight."""
        if self._probes:
            return []
        if self.confirm_size:
            return [self.confirm_size]  # one at a time: an outage takes one, not all
        if self.state == COMPLETE:
            if now < self._next_search or self.current >= self.ceiling:
                return []
            self._restart()
        sizes = [size for size in self._candidates() if self._low < size < self._refused]
        if not sizes:
            gap = self._refused - self._low
            if gap <= REFINE_GAP or self._low >= self.ceiling:
                self._settle(now)
                return []
            sizes = [self._low + gap // 2]
        return sizes

    def _candidates(self) -> list[int]:
        return [size for size in self._common if self._failures.get(size, 0) < MAX_PROBES]

    def on_probe_sent(self, pn: int, size: int) -> None:
        self._probes[pn] = size
        self.probes_sent += 1

    @property
    def probing(self) -> bool:
        """Whether a probe is in flight."""
        return bool(self._probes)

    @property
    def stats_state(self) -> str:
        """For stats: "idle" while nothing has wanted larger packets (no search yet), else
        the search's state."""
        return self.state if self.wanted or self.state == COMPLETE else "idle"

    @property
    def watching(self) -> bool:
        """Whether ACKs and losses tell discovery anything: a probe is in flight, or packets
        above the base size could reveal a black hole."""
        return bool(self._probes) or self.current > BASE

    def is_probe(self, pn: int) -> bool:
        return pn in self._probes

    # -- what the path said -----------------------------------------------------------------------

    def on_probe_acked(self, pn: int) -> None:
        size = self._probes.pop(pn, None)
        if size is None:
            return
        self.probes_acked += 1
        if self.confirm_size:
            if size == self.confirm_size:  # it was loss, not a black hole: the size comes back
                self.current = size
                self.confirm_size = 0
                self._probes = {}  # the other confirmation probes say nothing more
                self.black_holes_refuted += 1
            return
        if size > self._low:
            self._low = size
        if size > self.current:
            self.current = size
        if size >= self._refused:  # refused earlier, yet it went through: loss, not size
            self._refused = size + 1

    def on_probe_lost(self, pn: int, congested: bool = False) -> None:
        """A probe was declared lost; with ``congested`` (data was lost beside it) it proves
        nothing about its size and is simply sent again."""
        size = self._probes.pop(pn, None)
        if size is None:
            return
        self.probes_lost += 1
        if self.confirm_size:
            # Counted even beside lost data: during a black hole every full-size packet is.
            if size == self.confirm_size:
                self._confirm_lost += 1
                if self._confirm_lost >= CONFIRM_PROBES:
                    self._black_hole()
            return
        if congested:
            return
        failures = self._failures[size] = self._failures.get(size, 0) + 1
        if (failures >= MAX_PROBES or size not in self._common) \
                and self._low < size < self._refused:
            self._refused = size  # a refinement probe gets one try: the size in hand is good

    def on_packets_acked(self, largest_size: int) -> None:
        """Packets of the session were acknowledged, the largest of ``largest_size`` bytes."""
        if largest_size > BASE:
            self._large_lost = 0

    def on_packet_lost(self, size: int, pto_count: int, now: float) -> bool:
        """A packet (not a probe) was lost; True when that makes a black hole suspected, in
        which case the size is back at the base while probes confirm it (on_black_hole)."""
        if size <= BASE or size < self.current or self.confirm_size:
            return False
        self._large_lost += 1
        if self._large_lost < BLACK_HOLE_LOSSES or pto_count < 1:
            return False
        self.on_black_hole(now)
        return True

    def on_black_hole(self, now: float) -> None:
        """Full-size packets seem to have stopped getting through: back to the base size at
        once, and probes of the size in use confirm it (see the module's docstring)."""
        if self.confirm_size or self.current <= BASE:
            return
        self.confirm_size = self.current
        self._confirm_lost = 0
        self.current = min(BASE, self.ceiling)
        self._large_lost = 0
        self._probes = {}  # a search round in flight is moot: its answers are ignored

    def _black_hole(self) -> None:
        """Confirmed: the size in use no longer gets through. Search again from the base."""
        self.black_holes += 1
        self.confirm_size = 0
        self.current = self._low = min(BASE, self.ceiling)
        self._large_lost = 0
        self._restart()

    # -- search rounds ----------------------------------------------------------------------------

    def _restart(self) -> None:
        self.state = SEARCHING if self.ceiling > self.current else COMPLETE
        self._refused = self.ceiling + 1
        self._failures = {}
        self._probes = {}

    def _settle(self, now: float) -> None:
        self.state = COMPLETE
        self._next_search = now + RAISE_INTERVAL
