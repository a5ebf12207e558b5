"""Everything a session does once its keys are in place: loss recovery, congestion control,
pacing, streams and unreliable datagrams, and assembling them into packets.

The session owns keys, handshake, keep-alive and closing; it hands this object the frames it
wants sent (ACK, PING, KEY_UPDATE, ...) and a function that seals a payload into a datagram.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .config import SessionConfig
from .congestion import CongestionController, make_controller
from .errors import UsageError
from .events import DatagramReceived
from .frames import AckFrame, DatagramFrame, Frame, PaddingFrame, PingFrame, encode_frame
from .handshake_payload import TransportSettings
from .packet import CID_LEN, TAG_LEN, Datagram
from .pmtu import BASE as BASE_DATAGRAM
from .pmtu import COMPLETE as PMTU_COMPLETE
from .pmtu import PathMtu
from .recovery import AckResult, LossRecovery, SentPacket
from .rtt import RttEstimator
from .streams.manager import StreamManager
from .streams.records import RetransmitItem
from .streams.stream import Stream

PACKET_OVERHEAD = 2 + CID_LEN + 8 + TAG_LEN  # header with the longest packet number, and tag
MAX_QUEUED_DATAGRAMS = 256
PTO_BLACK_HOLE = 2  # probe timeouts in a row with full-size packets out: see on_timer
COALESCE_HOLD_MAX = 0.005  # seconds a small message may wait to be coalesced (≤ one RTT)
# Seconds of sending a late-woken, pacing-held sender may catch up. A loop sharing its cores
# with other busy processes wakes 5-12 ms late (a sender's 10 ms stats timer fired 11.5 ms apart
# at the median, 15-19 ms at the 90th percentile); in the simulator, timers up to 12 ms late
# with 5 ms of catch-up delivered 0.88 of the link (tests/test_bbr_real_loops.py).
PACING_CATCH_UP = 0.010


class Pacer:
    """Spreads packets at the controller's rate, allowing a burst of ``quantum`` bytes.

    ``held`` says the last build stopped at a pacing slot with data and window to send: the
    sender was waiting on a timer. Real timers fire late (uvloop's are on a 1 ms grid, and a
    busy loop reads its sockets and runs its timers milliseconds apart), and a sender allowed
    to catch up by one quantum only lost the rest of each late wake-up: on real sockets it
    sent 0.66-0.80 of its pacing rate. A held sender may send what became due since its slot,
    up to :func:`pacing_quantum` bytes; an idle or app-limited one still gets one quantum."""

    __slots__ = ("held", "next_send")

    def __init__(self) -> None:
        self.next_send = 0.0
        self.held = False

    def ready(self, now: float) -> bool:
        return now >= self.next_send

    def on_sent(self, size: int, rate: float, quantum: float, now: float) -> None:
        rate = max(rate, 1.0)
        base = max(self.next_send, now - quantum / rate)
        self.next_send = base + size / rate


def pacing_quantum(rate: float, max_datagram: int, held: bool, cwnd: int) -> float:
    """The burst (bytes) a sender may send at once: 2 packets or 1 ms at ``rate``; after a
    wait at a pacing slot, what became due since, up to PACING_CATCH_UP seconds at the rate
    and a quarter of the window (a late wake-up never releases a window at once)."""
    quantum = max(2 * max_datagram, rate * 0.001)
    if held:
        return max(quantum, min(rate * PACING_CATCH_UP, cwnd * 0.25))
    return quantum


class DataPlane:
    """What a session sends and receives once keys are installed."""

    # Slotted: a node may hold 10,000 idle sessions, and a __dict__ each costs KiBs.
    __slots__ = ("_datagrams", "_emit", "_peer_max_datagram", "_probe_sizes", "cc",
                 "datagram_bytes_received",
                 "datagram_bytes_sent", "datagrams_dropped", "datagrams_too_large",
                 "frame_ceiling", "max_datagram", "more", "pacer", "pmtu", "probes", "recovery",
                 "rtt", "send_rate", "streams")

    def __init__(self, *, config: SessionConfig, is_initiator: bool, local: TransportSettings,
                 peer: TransportSettings, rtt: RttEstimator,
                 emit: Callable[[Any], None], seed: int = 0, ipv6: bool = False) -> None:
        # The largest datagram either end allows; packets are built to what the path has been
        # shown to carry (pmtu.py), which starts at 1,200 bytes and is probed up to this.
        self.frame_ceiling = min(config.max_frame_size, peer.max_frame_size)
        self.pmtu = PathMtu(self.frame_ceiling, ipv6)
        self._probe_sizes: list[int] = []  # a round of probes cut short by a batch limit
        self.max_datagram = self.pmtu.current
        self.rtt = rtt
        self.recovery = LossRecovery(rtt)
        self.cc: CongestionController = make_controller(config.congestion_control,
                                                        self.max_datagram, seed)
        self.pacer = Pacer()
        self.streams = StreamManager(is_initiator=is_initiator, local=local, peer=peer,
                                     send_buffer=config.send_buffer_size,
                                     recv_buffer=config.recv_buffer_size,
                                     no_delay=config.no_delay, emit=emit)
        self._emit = emit
        self._peer_max_datagram = peer.max_datagram_size
        self._datagrams: list[bytes] = []  # usually empty; a deque's block costs 600 B a session
        self.datagrams_dropped = 0
        self.datagrams_too_large = 0  # larger than the path carries: dropped, not fragmented
        self.more = False  # the last build stopped at its limit with more to send
        self.datagram_bytes_sent = 0
        self.datagram_bytes_received = 0
        self.probes = 0
        self.send_rate = 0.0  # bytes/s, smoothed delivery rate

    # -- application ------------------------------------------------------------------------------

    def send_datagram(self, data: bytes | bytearray | memoryview) -> bool:
        """Queue an unreliable message; False (and nothing queued) when the queue is full."""
        limit = min(self.frame_ceiling, self._peer_max_datagram) - PACKET_OVERHEAD - 9
        if len(data) > limit:
            raise UsageError(f"a datagram carries at most {limit} bytes, got {len(data)}")
        if len(self._datagrams) >= MAX_QUEUED_DATAGRAMS:
            self.datagrams_dropped += 1
            return False
        self._datagrams.append(bytes(data))
        return True

    def hold_time(self) -> float:
        return min(self.rtt.smoothed, COALESCE_HOLD_MAX)

    # -- input ------------------------------------------------------------------------------------

    def on_ack(self, ranges: tuple[tuple[int, int], ...], ack_delay: int, now: float,
               next_pn: int) -> None:
        self._apply(self.recovery.on_ack(ranges, ack_delay, now, next_pn), now)

    def _apply(self, result: AckResult, now: float) -> None:
        streams = self.streams
        acked = result.acked
        pmtu = self.pmtu
        if pmtu.watching:
            acked, lost = self._path_news(acked, result.lost, now)
            result.lost = lost
        if acked:
            # one packet, a dialogue's usual ACK: its items as they are, without a copy
            streams.on_items_acked(acked[0].items if len(acked) == 1 else
                                   [item for packet in acked for item in packet.items])
            self.cc.on_ack(acked, result.rate, self.rtt, self.recovery.bytes_in_flight,
                           now)
            streams.send_buffer_floor = 2 * self.cc.window_ceiling
            if result.rate is not None and not result.rate.app_limited:
                rate = result.rate.delivery_rate
                self.send_rate = rate if not self.send_rate else 0.875 * self.send_rate + \
                    0.125 * rate
        if result.lost:
            self._lost(result.lost, now)
        if result.persistent_congestion:
            self.cc.on_persistent_congestion(now)

    def _path_news(self, acked: list[SentPacket], lost: list[SentPacket],
                   now: float) -> tuple[list[SentPacket], list[SentPacket]]:
        """What ACKs and losses tell path-MTU discovery; returns them without the probes,
        which carry no data and whose loss says nothing about congestion."""
        pmtu = self.pmtu
        if pmtu.probing:
            probes = [p for p in acked if pmtu.is_probe(p.pn)]
            for packet in probes:
                pmtu.on_probe_acked(packet.pn)
            if probes:
                acked = [p for p in acked if p not in probes]
            lost_probes = [p for p in lost if pmtu.is_probe(p.pn)]
            if lost_probes:
                lost = [p for p in lost if p not in lost_probes]
                # Data lost beside them: a full queue, not the path's size, may have taken
                # the probes too, so they are sent again rather than counted as refusals.
                for packet in lost_probes:
                    pmtu.on_probe_lost(packet.pn, congested=bool(lost))
        if acked:
            pmtu.on_packets_acked(max(p.size for p in acked))
        for packet in lost:
            pmtu.on_packet_lost(packet.size, self.recovery.pto_count, now)
        self._follow_path()
        return acked, lost

    def _follow_path(self) -> None:
        """Build packets to the size path-MTU discovery found (up or, after a black hole,
        down: what is in flight of a larger size is resent in packets of the new size)."""
        size = self.pmtu.current
        if size != self.max_datagram:
            self.max_datagram = size
            self.cc.on_datagram_size(size)

    def _lost(self, lost: list[SentPacket], now: float) -> None:
        for packet in lost:
            for item in packet.items:
                self.streams.on_item_lost(item)
        self.cc.on_loss(lost, self.rtt, now)

    def on_frame(self, frame: Frame) -> None:
        """A DATAGRAM, flow-control or stream-control frame (STREAM frames go straight to
        ``streams.on_stream_data``)."""
        if isinstance(frame, DatagramFrame):
            self.datagram_bytes_received += len(frame.data)
            self._emit(DatagramReceived(frame.data))
        else:
            self.streams.on_frame(frame)

    # -- timers -----------------------------------------------------------------------------------

    def timer(self, now: float) -> float | None:
        deadline = self.recovery.loss_detection_timer()
        if self._datagrams or self.streams.has_pending():
            # Sending happens whenever the session is polled; a timer is needed only for a
            # pacing slot or a coalescing hold that lies in the future.
            pace = self.pacer.next_send
            if pace > now and self.recovery.bytes_in_flight and \
                    (self.probes or self._cwnd_room()) and (deadline is None or pace < deadline):
                deadline = pace  # (with nothing in flight, build() sends at once: see there)
            hold = self.streams.next_hold_deadline()
            if hold is not None and hold > now and (deadline is None or hold < deadline):
                deadline = hold
        return deadline

    def on_timer(self, now: float) -> None:
        deadline = self.recovery.loss_detection_timer()
        if deadline is None or now < deadline:
            return
        lost, probe = self.recovery.on_timeout(now)
        if lost and self.pmtu.watching:
            lost = self._path_news([], lost, now)[1]
        if lost:
            self._lost(lost, now)
        if probe and self.recovery.pto_count >= PTO_BLACK_HOLE and self.recovery.bytes_in_flight \
                and self.pmtu.current > BASE_DATAGRAM:
            # Nothing acknowledged through two probe timeouts while sending full-size packets:
            # perhaps the path shrank. Probe at the base size; the search finds the new size.
            self.pmtu.on_black_hole(now)
            self._probe_sizes = []  # a round cut short by a batch limit is moot now
            self._follow_path()
        if probe:
            self.probes = 2
            # Probe with the oldest unacknowledged data, sent again in new packets.
            for packet in list(self.recovery.sent.values())[:2]:
                for item in packet.items:
                    self.streams.on_item_lost(item)

    def on_path_validated(self) -> None:
        """The session moved to a newly validated peer address: what is in flight may have
        gone to the old one, so probe now, as a PTO does, not after a backoff that grew while
        the old path was silent."""
        self.recovery.pto_count = 0
        if self.recovery.eliciting_in_flight:
            self.probes = 2
            for packet in list(self.recovery.sent.values())[:2]:
                for item in packet.items:
                    self.streams.on_item_lost(item)

    def compact(self) -> None:
        """The session went idle: containers that grew during a transfer and are empty again
        give back their tables (a dict keeps its table when emptied)."""
        if not self.recovery.sent:
            self.recovery.sent = {}
        self.streams.compact()

    # -- output -----------------------------------------------------------------------------------

    def _cwnd_room(self) -> bool:
        return self.cc.cwnd - self.recovery.bytes_in_flight >= self.max_datagram

    def _has_sendable(self) -> bool:
        return bool(self._datagrams) or self.streams.has_pending()

    def build(self, now: float, head: list[Frame],
              seal: Callable[[bytes | bytearray], tuple[Datagram, int]],
              limit: int | None = None, ack: bytes = b"") -> list[Datagram]:
        """Assemble packets: ``ack`` (an encoded ACK frame) and ``head`` frames first (session
        control), then datagrams and stream data as congestion control and pacing allow, at
        most ``limit`` of them (``more`` then says whether the session stopped short)."""
        pacer = self.pacer
        out = self._build(now, head, seal, limit, ack, pacer.held)
        # Held at a pacing slot (see Pacer): the next build may catch up what falls due. So
        # may the next batch of a catch-up cut short by ``limit`` (the runtimes seal 32 at a
        # time): it was held till now, and its debt must not be forgiven down to one quantum.
        pacer.held = (pacer.next_send > now or (self.more and pacer.held)) and \
            self.recovery.bytes_in_flight > 0 and self._cwnd_room() and self._has_sendable()
        return out

    def _build(self, now: float, head: list[Frame],
               seal: Callable[[bytes | bytearray], tuple[Datagram, int]],
               limit: int | None, ack: bytes, held: bool) -> list[Datagram]:
        out: list[Datagram] = []
        self.more = False
        space = self.max_datagram - PACKET_OVERHEAD
        if self.pacer.next_send > now and not self.recovery.bytes_in_flight:
            # Nothing in flight: no queue for pacing to protect. Without this, a request-
            # response flow a little faster than the rate estimated from its own app-limited
            # samples ran up pacing debt and, after a second or two, had messages held.
            self.pacer.next_send = now
        if self.streams.windows_dirty:
            self.streams.collect_window_updates(now, self.rtt.smoothed)
        pmtu = self.pmtu
        # The first bulk_source of the loop below, asked here once: a session that has not
        # wanted larger packets yet asked it twice per poll, once here and once in the loop.
        first: tuple[Stream, int, int] | None = None
        asked = False
        if not pmtu.wanted:
            if any(len(data) + 9 > space for data in self._datagrams):
                pmtu.want()  # a datagram larger than a base-size packet
            else:
                first = self.streams.bulk_source(space)
                asked = True
                if first is not None:
                    pmtu.want()  # a run of full packets: larger ones would pay
        if self._probe_sizes or pmtu.due(now):
            # Probes first, within ``limit``: one place is kept for the packet that carries
            # an ACK or a control frame already taken from the session (``ack``, ``head``).
            urgent = bool(ack or head)
            self._probe_path(now, seal, out, None if limit is None else limit - urgent)
            if limit is not None and len(out) >= limit:
                self.more = True
                return out
        if not ack and not head and not self.probes and not self._datagrams and \
                not self.streams.has_pending():
            return out  # the poll after a packet that needs no answer yet: nothing to build
        while True:
            if not ack and not head and not self.probes and not self._datagrams:
                # (probes and window updates above leave the streams' queue as it was)
                source = first if asked else self.streams.bulk_source(space)
                if source is not None and self._build_bulk(source, now, seal, out, limit, held):
                    break
                if limit is not None and len(out) >= limit:
                    self.more = True  # the run ended exactly at the limit
                    break
            asked = False
            payload = bytearray(ack)
            ack = b""
            eliciting = False
            if head:
                for frame in head:
                    encode_frame(frame, payload)
                    if type(frame) is not AckFrame:
                        eliciting = True
                head = []
            items: list[RetransmitItem] = []
            allowed = (self._cwnd_room() or self.probes > 0) and self.pacer.ready(now)
            if allowed:
                while self._datagrams and len(self._datagrams[0]) + 9 > space and \
                        not self.pmtu.probing and self.pmtu.state == PMTU_COMPLETE:
                    self._datagrams.pop(0)  # larger than the path carries, even alone: dropped
                    self.datagrams_too_large += 1
                while self._datagrams and len(self._datagrams[0]) + 9 <= space - len(payload):
                    data = self._datagrams.pop(0)
                    encode_frame(DatagramFrame(data), payload)
                    self.datagram_bytes_sent += len(data)
                    eliciting = True
                in_flight = self.recovery.bytes_in_flight
                streams = self.streams
                if not streams.write_small(payload, space, items, now, in_flight):
                    streams.fill(payload, space, items, now, in_flight)
                    if len(payload) + 64 >= space and not pmtu.wanted and streams.has_pending():
                        pmtu.want()  # a full packet and more to come: larger ones would pay
                if self.probes and not items and not eliciting:
                    encode_frame(PingFrame(), payload)  # a probe must elicit an ACK
                    eliciting = True
            if not payload:
                break
            eliciting = eliciting or bool(items)
            datagram, pn = seal(payload)
            sendable = self._has_sendable()
            if eliciting:
                packet = SentPacket(pn, now, len(datagram), True, True, items)
                self.recovery.on_packet_sent(packet, app_limited=not sendable)
                self.cc.on_packet_sent(packet, self.recovery.bytes_in_flight, now)
                rate = self.cc.pacing_rate(self.rtt)
                quantum = pacing_quantum(rate, self.max_datagram, held, self.cc.cwnd)
                self.pacer.on_sent(len(datagram), rate, quantum, now)
                if self.probes:
                    self.probes -= 1
            out.append(datagram)
            if not allowed or not sendable:
                break
            if limit is not None and len(out) >= limit:
                self.more = True
                break
        return out

    def _probe_path(self, now: float, seal: Callable[[bytes | bytearray], tuple[Datagram, int]],
                    out: list[Datagram], limit: int | None) -> None:
        """Path-MTU probes (pmtu.py): a PING padded to each size under test. Outside congestion
        control (not in flight: their loss is the path's size, not a queue) but tracked by
        loss detection, so each is acknowledged or declared lost. A round that does not fit
        in ``limit`` datagrams goes on at the next call."""
        sizes = self._probe_sizes or self.pmtu.sizes_to_probe(now)
        room = len(sizes) if limit is None else max(0, limit - len(out))
        self._probe_sizes = sizes[room:]
        for size in sizes[:room]:
            payload = bytearray()
            encode_frame(PingFrame(), payload)
            encode_frame(PaddingFrame(size - PACKET_OVERHEAD - len(payload)), payload)
            datagram, pn = seal(payload)
            self.recovery.on_packet_sent(SentPacket(pn, now, len(datagram), True, False, []),
                                         app_limited=False)
            self.pmtu.on_probe_sent(pn, size)
            out.append(datagram)

    def _build_bulk(self, source: tuple[Stream, int, int], now: float,
                    seal: Callable[[bytes | bytearray], tuple[Datagram, int]], out: list[Datagram],
                    limit: int | None, held: bool = False) -> bool:
        """:meth:`build` for a run of full packets of one stream (``StreamManager.bulk_source``):
        the same packets, without the general scheduling per packet. The pacing rate is taken
        once per run: controllers change it on ACKs, never on sends. Returns True when
        congestion control, pacing or ``limit`` stopped the run, False when the run's data is
        out (the general path then sends whatever remains). Proven to send what the general
        path would, state by state, in tests/test_dataplane_bulk.py."""
        stream, chunk, count = source
        streams, recovery, cc, pacer = self.streams, self.recovery, self.cc, self.pacer
        send = stream.send
        max_datagram = self.max_datagram
        rate = cc.pacing_rate(self.rtt)
        quantum = pacing_quantum(rate, max_datagram, held, cc.cwnd)
        rate = max(rate, 1.0)
        # Pacer.on_sent inline: each packet moves next_send on by size / rate from no earlier
        # than ``floor``, the burst allowance before now.
        floor = now - quantum / rate
        notify = type(cc).on_packet_sent is not CongestionController.on_packet_sent
        while count:
            next_send = pacer.next_send
            if cc.cwnd - recovery.bytes_in_flight < max_datagram or now < next_send:
                return True
            if limit is not None and len(out) >= limit:
                self.more = True
                return True
            payload, item = streams.write_full_frame(stream, chunk)
            datagram, pn = seal(payload)
            count -= 1
            size = len(datagram)
            packet = SentPacket(pn, now, size, True, True, [item])
            # more full frames left means more to send; after the last, ask the stream
            recovery.on_packet_sent(packet, app_limited=not count and not send.has_data(
                streams.conn_send_max - streams.conn_sent))
            if notify:
                cc.on_packet_sent(packet, recovery.bytes_in_flight, now)
            pacer.next_send = (next_send if next_send > floor else floor) + size / rate
            out.append(datagram)
            if count and limit is not None and len(out) >= limit:
                # as the general path: at the limit with more to send, whatever pacing says
                self.more = True
                return True
        return False

