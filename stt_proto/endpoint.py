"""The endpoint: one per socket. Routes datagrams to sessions, admits inbound handshakes, answers
statelessly under load, and keeps one timer heap for all its sessions.

A runtime feeds it every datagram (:meth:`Endpoint.receive_datagram`), sends what
:meth:`Endpoint.datagrams_to_send` returns, and arms a single timer at :meth:`Endpoint.get_timer`.
Nothing a remote host sends can make it raise: junk is dropped and counted by reason.

The endpoint knows only sessions. Sessions opened for a service (``Purpose.DHT``) go to the
:class:`SessionService` set as :attr:`Endpoint.service`; the node core (``node.py``) sets the
DHT's there. A bare endpoint, with none, refuses such inbound sessions.
"""

from __future__ import annotations

import logging
from collections import deque
from functools import partial
from typing import Protocol

from .admission import SESSION_LIMIT_CODE, Admission, RetryTokens, address_key, read_message1
from .budget import MemoryBudget
from .buffers import SendBuffers
from .cids import WorkerIds, worker_cid
from .config import EndpointConfig
from .errors import ProtocolError, UsageError
from .events import Address, SessionAccepted
from .handshake_payload import Purpose
from .identity import Identity
from .packet import (
    CID_LEN,
    DATA_KEY_PHASE,
    MAX_DATAGRAM_SIZE,
    MIN_INITIAL_SIZE,
    SEAL_INTO,
    VERSION,
    Datagram,
    Packet,
    PacketType,
    RefuseCode,
    build_long_packet,
    parse_data_header,
    parse_packet,
)
from .placement import Placement, redirect_target
from .randomness import RandomSource, SystemRandom
from .session import ESTABLISHED, HANDSHAKING, TERMINATED, Session
from .stats import DropReason, EndpointStats
from .timer_table import TimerTable

log = logging.getLogger("stt.endpoint")

_APPLICATION = Purpose.APPLICATION  # plain names for the per-datagram path (see session/state.py)
_INITIAL = PacketType.INITIAL
_DATA_KEY_PHASE = DATA_KEY_PHASE
_DCID_END = 2 + CID_LEN  # every header: version, flags, then the destination id


class SessionService(Protocol):
    """Where the endpoint hands sessions opened for a service (not ``Purpose.APPLICATION``)."""

    def adopt(self, session: Session, now: float) -> None:
        """An inbound service session has completed its handshake."""

    def touch(self, session: Session) -> None:
        """A service session ran (input or a timer): it may have events to read."""


class Endpoint:
    """All sessions bound to one local address."""

    def __init__(self, config: EndpointConfig, identity: Identity | None = None,
                 rng: RandomSource | None = None, cid_worker: WorkerIds | None = None) -> None:
        self.config = config
        self.cid_worker = cid_worker  # (index, count): local ids name this worker (cids.py)
        self.rng = rng or SystemRandom()
        self.identity = identity or Identity.generate(self.rng)
        self.sessions: dict[bytes, Session] = {}
        self._initial_routes: dict[tuple[Address, bytes], bytes] = {}
        self._timers = TimerTable()  # each session's deadline: the runtime arms the earliest
        self._dirty: dict[bytes, Session] = {}
        # Sessions with output still to build, served in turn across batched calls (O(1) each)
        self._send_queue: deque[Session] = deque()
        self._send_queued: set[bytes] = set()
        # Sessions whose deadline may have moved: rescheduled before the timer is next read
        self._unscheduled: dict[bytes, Session] = {}
        self._touched: dict[bytes, Session] = {}  # sessions that may have new events
        self._woken: dict[bytes, Session] = {}  # want the next poll (Session.woken): no call up
        self._stateless_out: list[tuple[Datagram, Address]] = []
        self._events: deque[SessionAccepted] = deque()
        self._tokens = RetryTokens(self.rng.token_bytes(32))
        # workers=N: where new inbound sessions belong (placement.py); None keeps them here.
        self.placement: Placement | None = None
        self.inbound = 0  # inbound sessions, half-open ones included: what placement counts
        self.redirects_sent = 0  # RETRYs that sent a new session to another worker
        # Budgets and limits for inbound handshakes, and the RETRY / REFUSE rate limiters.
        self._admission = Admission(config)
        # Node-wide receive memory (budget.py): reassembly of large messages, window growth.
        self.budget = MemoryBudget(config.receive_budget)
        self._accepted: set[bytes] = set()
        self.sessions_total = 0
        self.handshakes_ok = 0
        self.handshakes_failed = 0
        self.datagrams_in = self.datagrams_out = self.bytes_in = self.bytes_out = 0
        self.retries_sent = self.refusals_sent = 0
        self.dropped: dict[str, int] = {reason.value: 0 for reason in DropReason}
        self.service: SessionService | None = None  # the DHT's (node core); None refuses them
        self._send_buffers: SendBuffers | None = None  # see use_send_buffers
        # Large packets are opened into this one buffer all sessions share (see buffers.py)
        self._recv_buffer = memoryview(bytearray(MAX_DATAGRAM_SIZE)) if SEAL_INTO else None

    # -- sessions ---------------------------------------------------------------------------------

    def connect(self, address: Address, peer_id: bytes, now: float,
                purpose: Purpose = Purpose.APPLICATION) -> Session:
        """Start a handshake to ``address``; the session reports HandshakeCompleted or ends."""
        session = Session.initiate(config=self.config.session, identity=self.identity, rng=self.rng,
                                   remote_address=address, peer_id=peer_id, now=now,
                                   local_cid=self._new_cid(), purpose=purpose)
        self._add(session, now)
        return session

    def _new_cid(self) -> bytes:
        while (cid := worker_cid(self.rng.token_bytes(CID_LEN), self.cid_worker)) in self.sessions:
            pass
        return cid

    def use_send_buffers(self, count: int) -> None:
        """Seal large packets into ``count`` buffers reused from one :meth:`datagrams_to_send`
        call to the next (``buffers.py``: no allocation per packet). A datagram it returns may
        then be a ``memoryview`` valid only until the next call: send every batch before
        asking for the next, or copy what you keep. Off by default, and where the installed
        cryptography cannot encrypt into a buffer (``encrypt_into``)."""
        if not SEAL_INTO:
            return
        self._send_buffers = SendBuffers(count)
        for session in self.sessions.values():
            session.share_buffers(self._send_buffers, self._recv_buffer)

    def _add(self, session: Session, now: float) -> None:
        self.sessions[session.local_cid] = session
        self.sessions_total += 1
        session.share_buffers(self._send_buffers, self._recv_buffer)
        session.woken = self._woken
        self._dirty[session.local_cid] = session
        self._reschedule(session)

    def _take_woken(self) -> None:
        """Sessions that noted they want a poll: queued for output and rescheduling."""
        woken = self._woken
        self._dirty.update(woken)
        self._unscheduled.update(woken)
        woken.clear()

    def _flush_schedule(self) -> None:
        if self._woken:
            self._take_woken()
        if self._unscheduled:
            pending = self._unscheduled
            self._unscheduled = {}
            for session in pending.values():
                self._reschedule(session)

    def take_touched(self) -> list[Session]:
        """Sessions that ran since the last call (they may have events), forgotten ones and
        every purpose included (the node core keeps the application's)."""
        touched = list(self._touched.values())
        self._touched.clear()
        return touched

    def next_event(self) -> SessionAccepted | None:
        return self._events.popleft() if self._events else None

    def close(self, now: float, error_code: int = 0, reason: str = "endpoint closing") -> None:
        """Close every session gracefully (each sends CLOSE)."""
        for session in list(self.sessions.values()):
            session.close(error_code, reason, now)

    # -- input ------------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes | bytearray | memoryview, addr: Address,
                         now: float) -> None:
        """Handle one datagram from ``addr``. Never raises on bad input."""
        self.datagrams_in += 1
        size = len(data)
        self.bytes_in += size
        # DATA, nearly every datagram, is routed and opened without a Packet: its key phase
        # comes from the flags byte (absent for any other type or a reserved bit set).
        phase = _DATA_KEY_PHASE.get(data[1]) if size > _DCID_END and data[0] == VERSION else None
        try:
            if phase is not None:
                pn, pos = parse_data_header(data, size)
            else:
                packet = parse_packet(data)
        except ProtocolError:
            self._drop(DropReason.MALFORMED)
            return
        if phase is not None:
            session = self.sessions.get(bytes(data[2:_DCID_END]))
            if session is None:
                self._drop(DropReason.UNKNOWN_SESSION)
                return
        else:
            session = self._route_long(packet, size, addr, now)
            if session is None:
                return
        was_handshaking = session.state is HANDSHAKING
        if phase is not None:
            view = memoryview(data)
            reason = session.receive_sealed(pn, phase, view[:pos], view[pos:], size, addr, now)
        else:
            reason = session.receive_packet(packet, size, addr, now)
        if reason is not None:
            self._drop(reason)
        # The session ran: its output and deadline wait for the poll (noted here, not by it).
        cid = session.local_cid
        self._dirty[cid] = session
        self._unscheduled[cid] = session
        if was_handshaking or session.is_initiator or session.state is not ESTABLISHED \
                or session.purpose is not _APPLICATION:
            self._after_session_input(session, was_handshaking, now)  # else it has nothing to do

    def _route_long(self, packet: Packet, size: int, addr: Address, now: float) -> Session | None:
        """The session a handshake-phase packet is for, admitting a new one for an INITIAL;
        None (the packet dropped and counted) when there is none."""
        session = self.sessions.get(packet.dcid)
        if session is None and packet.type is _INITIAL:
            route = self._initial_routes.get((addr, packet.dcid))
            session = self.sessions.get(route) if route else None
            if session is None:
                return self._admit(packet, size, addr, now)
        if session is None:
            self._drop(DropReason.UNKNOWN_SESSION)
        return session

    def _admit(self, packet: Packet, size: int, addr: Address, now: float) -> Session | None:
        """Decide what to do with a new INITIAL: refuse, ask for a RETRY, drop, or create a
        session. Every check that needs no state comes first, and no session is made for an
        INITIAL whose message 1 does not read (see admission.py)."""
        if size < MIN_INITIAL_SIZE:
            self._drop(DropReason.TOO_SMALL)
            return None
        admission = self._admission
        key = address_key(addr)
        # Established sessions are what max_sessions counts; half-open ones have their own budget.
        if len(self.sessions) - admission.half_open >= self.config.max_sessions \
                or admission.address_established_full(key) or self.budget.over:
            self._refuse(packet.scid, packet.dcid, RefuseCode.SERVER_BUSY, addr, key, now)
            return None
        validated = False
        if packet.token:
            validated = self._tokens.valid(packet.token, addr, packet.dcid, now)
            if not validated:
                self._drop(DropReason.UNEXPECTED)
                return None
        else:
            target = redirect_target(self.placement, self.cid_worker, now)
            if target is not None or admission.under_load:
                if admission.retries.allow(key, now):
                    self._retry(packet, addr, target, now)
                    return None
                if admission.under_load:
                    self._drop(DropReason.RATE_LIMITED)
                    return None
                # a redirect over the RETRY budget: the session stays here, unbalanced
        if admission.address_half_open_full(key):
            self._drop(DropReason.RATE_LIMITED)  # the initiator resends its INITIAL later
            return None
        handshake = read_message1(self.config.session, self.identity, self.rng, bytes(packet.body),
                                  packet.scid)
        if handshake is None:
            self.handshakes_failed += 1
            self._refuse(packet.scid, packet.dcid, RefuseCode.HANDSHAKE_FAILED, addr, key, now)
            return None
        for cid in admission.to_evict(now):
            self._evict(cid, now)
        session = Session.respond(config=self.config.session, identity=self.identity, rng=self.rng,
                                  remote_address=addr, original_dcid=packet.dcid, now=now,
                                  address_validated=validated, local_cid=self._new_cid(),
                                  handshake=handshake)
        self._initial_routes[(addr, packet.dcid)] = session.local_cid
        admission.add_half_open(session.local_cid, key, now)
        self._add(session, now)
        self._count_inbound(1)
        return session

    def join_workers(self, worker: WorkerIds, placement: Placement | None,
                     retry_key: bytes, clock_offset: float = 0.0) -> None:
        """Join a node's workers: local ids name this one, ``placement`` may send new sessions
        to another, RETRY tokens use the group's key and a shared clock (``now + clock_offset``:
        trio's starts anywhere), so the worker a RETRY names accepts its token."""
        self.cid_worker = worker
        self.placement = placement
        if retry_key:
            self._tokens = RetryTokens(retry_key, clock_offset)
        if placement is not None:
            placement.count(self.inbound)

    def _retry(self, packet: Packet, addr: Address, target: int | None, now: float) -> None:
        """A RETRY whose token validates ``addr`` for the id the initiator's next INITIAL
        carries: its RETRY's source id. That is the INITIAL's own destination id, or for a
        redirect a fresh one naming worker ``target``, where the steering program sends it.
        The same size either way, and no state is kept."""
        dcid = packet.dcid
        if target is not None and self.cid_worker is not None:
            dcid = worker_cid(self.rng.token_bytes(CID_LEN), (target, self.cid_worker[1]))
            self.redirects_sent += 1
        token = self._tokens.make(addr, dcid, now)
        self._stateless_reply(build_long_packet(PacketType.RETRY, packet.scid, dcid, token=token),
                              addr, refusal=False)

    def _count_inbound(self, change: int) -> None:
        self.inbound += change
        if self.placement is not None:
            self.placement.count(self.inbound)

    def _evict(self, cid: bytes, now: float) -> None:
        """Drop a half-open handshake to make room, telling its initiator (REFUSE, busy)."""
        self._admission.forget(cid)
        self._admission.evicted += 1
        session = self.sessions.get(cid)
        if session is None:  # pragma: no cover - admission and the table agree
            return
        if session.remote_cid:
            addr = session.remote_address
            self._refuse(session.remote_cid, cid, RefuseCode.SERVER_BUSY, addr,
                         address_key(addr), now)
        session.close(0, "half-open handshake evicted", now)
        self._forget(session)

    def _after_session_input(self, session: Session, was_handshaking: bool,
                             now: float) -> None:
        data = session.data
        if data is not None and data.streams.budget is None and not session.is_terminated:
            data.streams.attach_budget(self.budget,
                                       partial(self._woken.__setitem__, session.local_cid, session))
        if session.is_initiator:
            if session.confirmed and session.local_cid not in self._accepted:
                self._accepted.add(session.local_cid)
                self.handshakes_ok += 1
        elif was_handshaking and session.state is not HANDSHAKING:
            cid = session.local_cid
            if session.confirmed and session.peer_id is not None:
                over = self._admission.accept(cid, session.peer_id)
                if over is None and session.purpose is not _APPLICATION and self.service is None:
                    over = "no service for this session's purpose"
                if over is not None:  # over a per-identity or per-address limit, or no service
                    self.handshakes_failed += 1
                    session.close(SESSION_LIMIT_CODE, over, now, application=False)
            else:
                self._admission.forget(cid)
            if session.confirmed and not session.is_closed:
                self.handshakes_ok += 1
                self._accepted.add(session.local_cid)
                if session.purpose is _APPLICATION:
                    self._events.append(SessionAccepted(session.local_cid))
                elif self.service is not None:
                    self.service.adopt(session, now)
        if session.purpose is not _APPLICATION and self.service is not None:
            self.service.touch(session)
        if session.is_terminated:
            self._forget(session)

    # -- stateless replies and tokens -------------------------------------------------------------

    def _refuse(self, dcid: bytes, scid: bytes, code: RefuseCode, addr: Address, key: str,
                now: float) -> None:
        """A REFUSE, within its rate limits (global and per address)."""
        if self._admission.refusals.allow(key, now):
            self._stateless_reply(build_long_packet(PacketType.REFUSE, dcid, scid,
                                                    refuse_code=code), addr, refusal=True)
        else:
            self._drop(DropReason.RATE_LIMITED)

    def _stateless_reply(self, datagram: bytes, addr: Address, *, refusal: bool) -> None:
        self._drop(DropReason.REFUSED)
        if refusal:
            self.refusals_sent += 1
        else:
            self.retries_sent += 1
        self._stateless_out.append((datagram, addr))

    # -- timers -----------------------------------------------------------------------------------

    def _reschedule(self, session: Session) -> None:
        self._timers.set(session.local_cid, session.get_timer())

    def get_timer(self) -> float | None:
        """The one deadline the runtime arms: the earliest of all sessions'."""
        self._flush_schedule()
        return self._timers.earliest()

    def handle_timer(self, now: float) -> None:
        """Run every session whose deadline has come, each once (output is taken afterwards)."""
        self._flush_schedule()
        sessions = self.sessions
        due = [session for cid in self._timers.pop_due(now)
               if (session := sessions.get(cid)) is not None]
        for session in due:
            was_handshaking = session.state is HANDSHAKING
            session.handle_timer(now)
            self._dirty[session.local_cid] = session
            self._reschedule(session)
            self._after_session_input(session, was_handshaking, now)

    # -- output -----------------------------------------------------------------------------------

    def datagrams_to_send(self, now: float,
                          max_datagrams: int | None = None) -> list[tuple[Datagram, Address]]:
        """What to send now. With ``max_datagrams`` the answer is cut into batches: call again
        until it returns nothing (sending each batch first keeps memory flat under a window
        of megabytes). A batch shorter than ``max_datagrams`` means nothing more is ready at
        ``now``, so the runtime can skip the call that would return nothing."""
        out = self._stateless_out
        self._stateless_out = []
        if self._send_buffers is not None:
            self._send_buffers.rewind()  # the caller has sent the last batch
        if self._woken:
            self._take_woken()
        dirty = self._dirty
        queue, queued = self._send_queue, self._send_queued
        if dirty:
            self._dirty = {}
            self._touched.update(dirty)
            for cid, session in dirty.items():
                if cid not in queued:
                    queued.add(cid)
                    queue.append(session)
        budget = max_datagrams
        wakes = self.budget.wakes
        while True:
            budget = self._send_round(now, out, budget)
            if self._woken:
                self._take_woken()
            if self.budget.wakes == wakes or not self._dirty or (budget is not None
                                                                  and budget <= 0):
                break
            # Reads freed budget during this call: the sessions it woke send their window
            # updates now rather than at their next datagram or timer.
            wakes = self.budget.wakes
            dirty = self._dirty
            self._dirty = {}
            self._touched.update(dirty)
            for cid, session in dirty.items():
                if cid not in queued:
                    queued.add(cid)
                    queue.append(session)
        self.budget.woken = bool(self._dirty) and self.budget.woken
        sent_bytes = 0
        for datagram, _ in out:
            sent_bytes += len(datagram)
        self.datagrams_out += len(out)
        self.bytes_out += sent_bytes
        return out

    def _send_round(self, now: float, out: list[tuple[Datagram, Address]],
                    budget: int | None) -> int | None:
        """Serve the send queue in turn until it empties or ``budget`` datagrams are out;
        returns what is left of ``budget``."""
        queue, queued = self._send_queue, self._send_queued
        unscheduled = self._unscheduled
        while queue and (budget is None or budget > 0):
            session = queue.popleft()
            cid = session.local_cid
            queued.discard(cid)
            unscheduled.pop(cid, None)
            datagrams = session.datagrams_to_send(now, budget)
            address = session.remote_address
            for datagram in datagrams:
                out.append((datagram, address))
            if budget is not None:
                budget -= len(datagrams)
            if session.path is not None and session.path.outbox:  # challenges to a new address
                for datagram, probe_address in session.take_path_datagrams():
                    out.append((datagram, probe_address))
            if session.more_to_send:  # cut off by the budget: its turn comes round again
                queued.add(cid)
                queue.append(session)
            self._reschedule(session)
            if session.is_terminated:
                self._forget(session)
        return budget

    def _forget(self, session: Session) -> None:
        cid = session.local_cid
        if self.sessions.pop(cid, None) is None:
            return
        self._timers.cancel(cid)
        if session.state is not TERMINATED:  # pragma: no cover
            raise UsageError("forgetting a live session")
        if session.data is not None:
            session.data.streams.detach_budget()
        if not session.is_initiator:
            self._count_inbound(-1)
            self._admission.forget(cid)
            # The INITIAL route outlives the handshake so that replayed INITIALs reach the
            # session (and are dropped as replays) instead of opening half-open sessions.
            self._initial_routes.pop((session.initial_address, session.original_dcid), None)
        if session.handshake_result is None or not session.confirmed:
            self.handshakes_failed += 1
        self._accepted.discard(cid)

    # -- stats ------------------------------------------------------------------------------------

    def _drop(self, reason: DropReason) -> None:
        self.dropped[reason.value] += 1
        if log.isEnabledFor(logging.DEBUG):  # hostile floods come here: no formatting unless on
            log.debug("dropped a datagram: %s", reason.value)

    def get_stats(self, dht: dict[str, int] | None = None) -> EndpointStats:
        """The endpoint's counters; ``dht`` is the service's, which the node core passes in."""
        return EndpointStats(
            sessions_open=len(self.sessions), sessions_total=self.sessions_total,
            handshakes_ok=self.handshakes_ok, handshakes_failed=self.handshakes_failed,
            datagrams_in=self.datagrams_in, datagrams_out=self.datagrams_out,
            bytes_in=self.bytes_in, bytes_out=self.bytes_out, dropped=dict(self.dropped),
            retries_sent=self.retries_sent, refusals_sent=self.refusals_sent,
            half_open=self._admission.half_open, evicted=self._admission.evicted,
            receive_budget_used=self.budget.reserved,
            receive_budget_denials=self.budget.denials, dht={} if dht is None else dht,
        )
