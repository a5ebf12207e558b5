"""The handshake phase of a session: the Noise messages in long-header packets, their
retransmission, RETRY tokens and REFUSE answers, up to the moment keys are installed.

:class:`HandshakePhase` holds what only this phase needs; the session hands itself to each
call for what the phase changes there (keys, connection ids, the handshake timers).
"""

from __future__ import annotations

from hashlib import blake2s
from typing import TYPE_CHECKING

from ..dataplane import DataPlane
from ..errors import ConnectionRefused, HandshakeError, ProtocolError, UsageError
from ..events import HandshakeCompleted
from ..handshake import HandshakeResult, InitiatorHandshake, ResponderHandshake, local_payload
from ..packet import Packet, PacketType, RefuseCode, build_long_packet
from ..stats import DropReason
from .ending import fail, terminate
from .state import ESTABLISHED, HANDSHAKING, TERMINATED
from .timers import T_HANDSHAKE, T_HANDSHAKE_RESEND

if TYPE_CHECKING:
    from .core import Session

# Seconds before the initiator first resends a handshake message. A busy node's queue, not
# the path, sets how long its answer takes: at 0.2 s, most INITIALs and FINISHes of a burst of
# 2,000 went twice, and each copy cost the node a read and an answer. (RFC 9002's first probe
# and TCP's SYN wait about 1 s.)
HANDSHAKE_RETRANSMIT_MIN = 0.5
# The responder's first resend of message 2 unasked (no resent INITIAL came): a fallback,
# twice the initiator's first wait, so that the initiator drives recovery.
RESPONDER_RETRANSMIT_MIN = 1.0


def _digest(message: bytes) -> bytes:
    """Identifies a handshake message for retransmission checks without keeping it."""
    return blake2s(message, digest_size=16).digest()


class HandshakePhase:
    """The Noise handshake in flight, and what recognises its retransmissions later."""

    __slots__ = ("answered_after", "finish_message", "initiator", "last_sent", "packet",
                 "peer_message", "responder", "retransmits", "sent_at", "token")

    def __init__(self, now: float) -> None:
        self.initiator: InitiatorHandshake | None = None
        self.responder: ResponderHandshake | None = None
        self.packet: bytes | None = None  # the handshake datagram we retransmit
        self.sent_at = now  # the first copy of the message in flight
        self.last_sent = now  # its latest copy
        # The longest the round trip of the answer to our message can have been: from its
        # first copy to the answer (initiator: message 2, see duplicate_message2; responder:
        # FINISH). Copies of the peer's message within it of our reply crossed that reply.
        self.answered_after = 0.0
        self.retransmits = 0
        # Digests, not copies, of the peer's last handshake messages (an INITIAL is padded to
        # 1,200 bytes): enough to recognise a retransmission.
        self.peer_message: bytes | None = None
        self.token = b""
        self.finish_message: bytes | None = None  # responder: the peer's message 3 (digest)

    def initial_packet(self, session: Session) -> bytes:
        hs = self.initiator
        if hs is None:  # pragma: no cover
            raise UsageError("not an initiator")
        return build_long_packet(PacketType.INITIAL, session.remote_cid, session.local_cid,
                                 hs.message1, token=self.token)

    def send(self, session: Session, datagram: bytes, now: float) -> None:
        """Queue our handshake message and arm its resend. The initiator drives recovery (it
        resends until answered, and the responder answers each resent INITIAL); the
        responder's own timer is only a fallback for when those are lost too, so it first
        waits RESPONDER_RETRANSMIT_MIN: sooner, a busy node resent nearly every message 2 of
        a burst, and each duplicate made its initiator resend its FINISH as well."""
        self.packet = datagram
        self.sent_at = self.last_sent = now
        session._outbox.append(datagram)
        session._timers.set(T_HANDSHAKE_RESEND, now + self._backoff(session))

    def _backoff(self, session: Session) -> float:
        floor = HANDSHAKE_RETRANSMIT_MIN if session.is_initiator else RESPONDER_RETRANSMIT_MIN
        return max(2 * session.rtt.smoothed, floor) * (1 << min(self.retransmits, 6))

    def retransmit(self, session: Session, now: float) -> None:
        if self.packet is None or session.confirmed:
            session._timers.clear(T_HANDSHAKE_RESEND)
            return
        if self.packet not in session._outbox:
            session._outbox.append(self.packet)
        self.last_sent = now
        self.retransmits += 1
        timers = session._timers
        due = timers.get(T_HANDSHAKE_RESEND)
        # The responder's fallback keeps its own schedule: an answer to a resent INITIAL does
        # not push it back (the initiator's resends may be lost as well).
        if session.is_initiator or due is None or due <= now:
            timers.set(T_HANDSHAKE_RESEND, now + self._backoff(session))

    def duplicate_message2(self, session: Session, now: float) -> None:
        """Message 2 again while our FINISH is unanswered. The responder answers every copy
        of the INITIAL it reads, so after resent INITIALs a copy of message 2 may answer one
        sent before the first message 2 came: it says nothing about our FINISH, which cannot
        have been answered yet less than a round trip after it left. Within
        ``answered_after`` of our latest FINISH (the longest that round trip can be: from our
        first INITIAL to message 2) it is ignored; after that it means our FINISH was lost
        (the responder's fallback timer resent message 2): FINISH goes again. Our own resend
        timer keeps its schedule: pushed back to that round trip, a FINISH that a node's
        full socket buffer dropped was resent so late that the node evicted the handshake
        as half-open for longer than ``half_open_timeout``. In a burst, each duplicate
        answered with a duplicate had made FINISH, HANDSHAKE_DONE and an ACK go again."""
        if now - self.last_sent >= self.answered_after:
            self.retransmit(session, now)  # our message 3 was lost

    def install_keys(self, session: Session, result: HandshakeResult, now: float) -> None:
        """The handshake's keys and settings in place: the session is established."""
        session.handshake_result = result
        session.peer_id = result.peer_id
        session._protection.install(result.send, result.recv, now)
        session.data = DataPlane(config=session.config, is_initiator=session.is_initiator,
                                 local=local_payload(session.config).settings,
                                 peer=result.peer_settings, rtt=session.rtt,
                                 emit=session._events.append,
                                 seed=session._rng.token_bytes(1)[0],
                                 ipv6=":" in session.remote_address[0])
        session._move(ESTABLISHED)
        session._last_received = session._last_sent = session._last_ping = now

    def confirm(self, session: Session) -> None:
        """Both sides hold the keys: no more handshake timers or retransmissions."""
        session.confirmed = True
        session._timers.clear(T_HANDSHAKE)
        session._timers.clear(T_HANDSHAKE_RESEND)
        self.packet = None
        self.initiator = None  # its padded message 1 is no longer needed
        if session.data is not None:
            session.data.pmtu.start()  # probes only once both sides hold the keys
        result = session.handshake_result
        if result is not None:
            session.purpose = result.purpose
            session._events.append(HandshakeCompleted(result.peer_id, result.cipher,
                                                      result.peer_settings))

    def rtt_sample(self, session: Session, now: float) -> None:
        if self.retransmits == 0:
            session.rtt.update(now - self.sent_at)

    def refuse(self, session: Session, peer_cid: bytes, code: RefuseCode) -> None:
        """Tell the initiator its handshake failed, so it fails fast with a clear error."""
        session._outbox.append(build_long_packet(PacketType.REFUSE, peer_cid, session.local_cid,
                                                 refuse_code=code))

    def receive_packet(self, session: Session, packet: Packet, size: int,
                       now: float) -> DropReason | None:
        """One long-header packet routed to the session; a failed handshake ends it (never
        raises). Returns a drop reason or None."""
        if session.state is TERMINATED:
            return DropReason.UNKNOWN_SESSION
        session._amp_received += size
        session.counters.bytes_received_wire += size
        try:
            return self.receive(session, packet, now)
        except (HandshakeError, ConnectionRefused) as exc:
            terminate(session, exc, getattr(exc, "code", 0), str(exc), by_peer=False)
        except ProtocolError as exc:
            fail(session, exc, now)
        return None

    def receive(self, session: Session, packet: Packet, now: float) -> DropReason | None:
        """Handle one long-header packet; raises HandshakeError or ConnectionRefused to end
        the session."""
        body = bytes(packet.body)
        session.counters.packets_received += 1
        if session.is_initiator:
            return self._receive_as_initiator(session, packet, body, now)
        return self._receive_as_responder(session, packet, body, now)

    def _receive_as_initiator(self, session: Session, packet: Packet, body: bytes,
                              now: float) -> DropReason | None:
        ptype = packet.type
        hs = self.initiator
        if ptype is PacketType.HANDSHAKE and hs is not None and hs.result is None:
            self.rtt_sample(session, now)
            self.answered_after = now - self.sent_at
            message3, result = hs.read_message2(body, packet.scid)
            self.peer_message = _digest(body)
            session.remote_cid = packet.scid
            self.install_keys(session, result, now)
            self.retransmits = 0  # a new message: message 2 came, so the path works again
            self.send(session, build_long_packet(PacketType.FINISH, session.remote_cid,
                                                 session.local_cid, message3), now)
            return None
        if ptype is PacketType.HANDSHAKE and _digest(body) == self.peer_message:
            if session.confirmed:
                return DropReason.REPLAY
            self.duplicate_message2(session, now)
            return None
        if ptype is PacketType.RETRY and hs is not None and hs.result is None:
            if self.token or not packet.token:
                return DropReason.UNEXPECTED  # at most one RETRY per handshake
            self.token = packet.token
            # The next INITIAL goes to the RETRY's source id, which its token is bound to: the
            # same id as before, or one naming another worker of the node (placement.py).
            session.remote_cid = packet.scid
            # The RETRY times the path and the peer's queue: an unambiguous sample (Karn) sets
            # the next resend's wait, and after a resend the backed-off wait is kept, so a
            # busy node's RETRY is not followed by INITIALs every 0.5 s.
            self.rtt_sample(session, now)
            self.send(session, self.initial_packet(session), now)
            self.retransmits = 0  # the next message 2 is a fresh RTT sample again
            return None
        if ptype is PacketType.REFUSE and not session.confirmed:
            if packet.refuse_code == RefuseCode.SERVER_BUSY:
                raise ConnectionRefused("the peer refused the session: it is at max_sessions")
            raise HandshakeError("the peer rejected the handshake (refuse code "
                                 f"{packet.refuse_code}): most often the psk settings differ")
        return DropReason.UNEXPECTED

    def _receive_as_responder(self, session: Session, packet: Packet, body: bytes,
                              now: float) -> DropReason | None:
        ptype = packet.type
        rhs = self.responder
        if rhs is None:
            return DropReason.UNEXPECTED
        if ptype is PacketType.INITIAL:
            if self.peer_message is None:
                try:
                    if not rhs.peer_cid:  # else the endpoint has read message 1 already
                        rhs.read_message1(body, packet.scid)
                except HandshakeError:
                    self.refuse(session, packet.scid, RefuseCode.HANDSHAKE_FAILED)
                    raise
                self.peer_message = _digest(body)
                session.remote_cid = rhs.peer_cid
                message2 = rhs.write_message2(session.local_cid)
                self.send(session, build_long_packet(PacketType.HANDSHAKE, session.remote_cid,
                                                     session.local_cid, message2), now)
                return None
            if _digest(body) == self.peer_message and session.state is HANDSHAKING:
                self.retransmit(session, now)  # our message 2 was lost
                return None
            return DropReason.REPLAY
        if ptype is PacketType.FINISH:
            if rhs.result is None and self.peer_message is not None:
                try:
                    result = rhs.read_message3(body)
                except HandshakeError:
                    self.refuse(session, session.remote_cid, RefuseCode.HANDSHAKE_FAILED)
                    raise
                self.rtt_sample(session, now)
                self.answered_after = now - self.sent_at
                self.last_sent = now  # HANDSHAKE_DONE goes with the next output
                self.finish_message = _digest(body)
                session.address_validated = True
                self.install_keys(session, result, now)
                self.confirm(session)
                session._handshake_done_pending = True
                return None
            if rhs.result is not None and _digest(body) == self.finish_message:
                # A copy sent before our HANDSHAKE_DONE reached the initiator arrives within
                # a round trip of it (at most answered_after: from our first message 2 to
                # FINISH) and is no sign that it was lost: only a later one is answered.
                if now - self.last_sent >= self.answered_after:
                    session._handshake_done_pending = True  # our HANDSHAKE_DONE was lost
                    self.last_sent = now
                return None
        return DropReason.UNEXPECTED
