"""One secure session: the handshake, packet protection, acknowledgements, keep-alive, key
rotation and closing, as a sans-I/O state machine.

Drive it like aioquic's connection: feed packets with :meth:`Session.receive_datagram`, collect
output with :meth:`Session.datagrams_to_send`, read :meth:`Session.next_event`, and call
:meth:`Session.handle_timer` when :meth:`Session.get_timer` says. Normally an
:class:`~stt_proto.endpoint.Endpoint` does this for every session on a socket.
Bad input from the network never raises out of here: it is dropped and counted, or it closes
this session with a protocol error.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import Enum, auto
from hashlib import blake2s

from .ack import AckTracker
from .config import NodeConfig
from .dataplane import PACKET_OVERHEAD, DataPlane
from .errors import (
    AuthenticationError,
    ConnectionRefused,
    CryptoError,
    FrameError,
    HandshakeError,
    HandshakeTimeout,
    KeepAliveTimeout,
    ProtocolError,
    ProtocolViolation,
    SessionClosed,
    STTError,
    UsageError,
)
from .events import Address, HandshakeCompleted, KeyUpdated, SessionEvent, SessionTerminated
from .frames import (
    MAX_FRAMES_PER_PACKET,
    NON_ACK_ELICITING,
    PATH_DATA_LEN,
    AckFrame,
    CloseFrame,
    Frame,
    HandshakeDoneFrame,
    KeyUpdateFrame,
    PaddingFrame,
    PathChallengeFrame,
    PathResponseFrame,
    PingFrame,
    decode_ack_fields,
    decode_frame,
    decode_stream_fields,
    encode_frame,
)
from .handshake import (
    HandshakeResult,
    InitiatorHandshake,
    ResponderHandshake,
    local_settings,
)
from .handshake_payload import Purpose
from .identity import Identity
from .keys import RecvKeys, SendKeys
from .packet import Datagram, Packet, PacketType, RefuseCode, build_long_packet, parse_packet
from .path import PathValidator
from .peer_text import sanitize
from .randomness import RandomSource
from .replay import MAX_PN_JUMP, ReplayWindow
from .rtt import RttEstimator
from .session_streams import SessionStreams
from .stats import DropReason, SessionCounters

HANDSHAKE_RETRANSMIT_MIN = 0.2  # seconds before the first handshake retransmission
AMPLIFICATION_FACTOR = 3
IDLE_TIMEOUT_CODE = 0x10
# Seconds without a packet either way after which a session drops its AEAD objects (rebuilt
# from the keys on the next packet): an idle session then keeps 32-byte keys, not 5 KiB tables.
CIPHER_IDLE_RELEASE = 2.0


class State(Enum):
    HANDSHAKING = auto()  # Noise messages in flight
    ESTABLISHED = auto()  # keys in place (the initiator may still await confirmation)
    CLOSING = auto()  # we sent CLOSE; answer late packets with CLOSE until the drain ends
    DRAINING = auto()  # the peer sent CLOSE; stay silent until the drain ends
    TERMINATED = auto()  # nothing left: the endpoint forgets the session


# The members as plain module names: an Enum member looked up on its class costs about 45 ns
# on Python 3.11, and the per-packet paths test the state several times.
HANDSHAKING, ESTABLISHED, CLOSING, DRAINING, TERMINATED = (
    State.HANDSHAKING, State.ESTABLISHED, State.CLOSING, State.DRAINING, State.TERMINATED)
_DATA_PACKET = PacketType.DATA


class Session(SessionStreams):
    """A session with one peer. Create it with :meth:`initiate` or :meth:`respond`."""

    # Slotted: a node may hold 10,000 idle sessions, and a __dict__ each costs KiBs.
    __slots__ = (
        "_acks",
        "_amp_received",
        "_amp_sent",
        "_ciphers_live",
        "_close_frame",
        "_close_pending",
        "_close_sent_at",
        "_drain_deadline",
        "_events",
        "_finish_message",
        "_handshake_deadline",
        "_handshake_done_pending",
        "_hs_packet",
        "_hs_retransmit_at",
        "_hs_retransmits",
        "_hs_sent_at",
        "_initiator_hs",
        "_key_update_pending",
        "_last_ping",
        "_last_received",
        "_last_sent",
        "_next_pn",
        "_now",
        "_outbox",
        "_peer_message",
        "_ping_pending",
        "_recv_keys",
        "_replay",
        "_responder_hs",
        "_rng",
        "_send_keys",
        "_taking",
        "_token",
        "address_validated",
        "config",
        "confirmed",
        "counters",
        "data",
        "error",
        "expected_peer_id",
        "handshake_result",
        "identity",
        "initial_address",
        "is_initiator",
        "local_cid",
        "more_to_send",
        "original_dcid",
        "path",
        "peer_id",
        "purpose",
        "remote_address",
        "remote_cid",
        "rtt",
        "state",
        "wakeup",
    )

    def __init__(self, *, config: NodeConfig, identity: Identity, rng: RandomSource,
                 is_initiator: bool, local_cid: bytes, remote_cid: bytes,
                 remote_address: Address, now: float) -> None:
        self.config = config
        self.identity = identity
        self.is_initiator = is_initiator
        self.local_cid = local_cid
        self.remote_cid = remote_cid
        self.remote_address = remote_address
        self.initial_address = remote_address
        self.state = HANDSHAKING
        self.peer_id: bytes | None = None
        self.expected_peer_id: bytes | None = None  # initiator: the id it asked for
        self.handshake_result: HandshakeResult | None = None
        self.confirmed = False
        self.counters = SessionCounters()
        self.rtt = RttEstimator()
        self.error: STTError | None = None
        self._rng = rng
        # Events as two lists (new ones; a batch being read, reversed): an empty deque costs
        # 600 bytes more, which matters at 10,000 idle sessions.
        self._events: list[SessionEvent] = []
        self._taking: list[SessionEvent] = []
        self._outbox: list[Datagram] = []
        self._initiator_hs: InitiatorHandshake | None = None
        self._responder_hs: ResponderHandshake | None = None
        self._handshake_deadline = now + config.handshake_timeout
        self._hs_packet: bytes | None = None  # the handshake datagram we retransmit
        self._hs_sent_at = now
        self._hs_retransmits = 0
        self._hs_retransmit_at: float | None = None
        # Digests, not copies, of the peer's last handshake messages (an INITIAL is padded to
        # 1,200 bytes): enough to recognise a retransmission.
        self._peer_message: bytes | None = None
        self._token = b""
        self._finish_message: bytes | None = None  # responder: the peer's message 3 (digest)
        self.original_dcid = b""  # responder: the connection id the initiator first used
        # protected phase
        self._send_keys: SendKeys | None = None
        self._recv_keys: RecvKeys | None = None
        self._replay = ReplayWindow()
        self._acks = AckTracker()
        self._next_pn = 0
        self.data: DataPlane | None = None
        self._last_received = now
        self._last_sent = now
        self._last_ping = now
        self._ciphers_live = False  # an AEAD object was built since the last release
        self._ping_pending = False
        self.more_to_send = False  # the last datagrams_to_send stopped at its limit
        self._handshake_done_pending = False
        self._key_update_pending: int | None = None
        self._close_frame: CloseFrame | None = None
        self._close_pending = False
        self._close_sent_at = -1.0
        self._drain_deadline: float | None = None
        # anti-amplification (responder, until the peer's address is validated)
        self.address_validated = is_initiator
        self._amp_received = 0
        self._amp_sent = 0
        self.wakeup: Callable[[Session], None] | None = None
        # A new address of the peer, validated before the session moves there (path.py);
        # made on first use.
        self.path: PathValidator | None = None
        # The initiator's says why the session exists; a responder learns it from message 3.
        self.purpose = Purpose.APPLICATION
        self._now = now

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def initiate(cls, *, config: NodeConfig, identity: Identity, rng: RandomSource,
                 remote_address: Address, peer_id: bytes, now: float,
                 local_cid: bytes | None = None,
                 purpose: Purpose = Purpose.APPLICATION) -> Session:
        """A session that starts the handshake towards ``remote_address`` expecting ``peer_id``."""
        if len(peer_id) != 32:
            raise UsageError(f"peer_id must be 32 bytes, got {len(peer_id)}")
        cid = local_cid or rng.token_bytes(8)
        session = cls(config=config, identity=identity, rng=rng, is_initiator=True,
                      local_cid=cid, remote_cid=rng.token_bytes(8),
                      remote_address=remote_address, now=now)
        hs = InitiatorHandshake(config, identity, rng, cid, peer_id, purpose)
        session.purpose = purpose
        session.expected_peer_id = peer_id
        session._initiator_hs = hs
        session._send_handshake(session._initial_packet(), now)
        return session

    @classmethod
    def respond(cls, *, config: NodeConfig, identity: Identity, rng: RandomSource,
                remote_address: Address, original_dcid: bytes, now: float,
                address_validated: bool = False, local_cid: bytes | None = None,
                handshake: ResponderHandshake | None = None) -> Session:
        """A session for an inbound INITIAL; feed that INITIAL to it next. ``handshake``: one
        that already read the INITIAL's message 1 (the endpoint reads it before it allocates
        a session, so junk costs none)."""
        session = cls(config=config, identity=identity, rng=rng, is_initiator=False,
                      local_cid=local_cid or rng.token_bytes(8), remote_cid=b"",
                      remote_address=remote_address, now=now)
        session.original_dcid = original_dcid
        session.address_validated = address_validated
        session._responder_hs = handshake or ResponderHandshake(config, identity, rng)
        return session

    # -- public surface ---------------------------------------------------------------------------

    @property
    def session_id(self) -> bytes:
        return self.local_cid

    @property
    def is_established(self) -> bool:
        return self.state is ESTABLISHED

    @property
    def is_closed(self) -> bool:
        return self.state in (CLOSING, DRAINING, TERMINATED)

    @property
    def is_terminated(self) -> bool:
        return self.state is TERMINATED

    @property
    def is_idle(self) -> bool:
        """Nothing left to deliver: no stream data queued or unacknowledged. A graceful close
        waits for this (within a bound) so that data whose send returned is not cut off."""
        data = self.data
        if data is None or self.state is not ESTABLISHED:
            return True
        return data.recovery.bytes_in_flight == 0 and not data.streams.has_pending()

    def next_event(self) -> SessionEvent | None:
        taking = self._taking
        if not taking:
            if not self._events:
                return None
            taking.extend(reversed(self._events))
            self._events.clear()
        return taking.pop()

    def close(self, error_code: int = 0, reason: str = "", now: float = 0.0, *,
              application: bool = True) -> None:
        """Close gracefully: send CLOSE with ``error_code`` and ``reason``, then drain."""
        if self.is_closed:
            return
        error = SessionClosed(error_code, reason, by_peer=False)
        if self._send_keys is None:
            self._terminate(error, error_code, reason, by_peer=False)
            self._wake()
            return
        self._close_frame = CloseFrame(error_code, reason, application)
        self._close_pending = True
        self._enter_drain(CLOSING, now)
        self._report_end(error, error_code, reason, by_peer=False)
        self._wake()

    # -- streams and datagrams (the application calls: session_streams.py) ---------------------

    def _data_plane(self) -> DataPlane:
        if self.data is None or self.state is not ESTABLISHED:
            raise UsageError("the session is not established" if not self.is_closed
                             else "the session is closed")
        return self.data

    def send_ping(self) -> None:
        if self.is_closed:
            raise UsageError("cannot ping a closed session")
        self._ping_pending = True
        self._wake()

    # -- input ------------------------------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> DropReason | None:
        """Standalone entry point: parse and handle one datagram; returns why it was dropped."""
        try:
            packet = parse_packet(data)
        except ProtocolError:
            return DropReason.MALFORMED
        return self.receive_packet(packet, len(data), addr, now)

    def receive_packet(self, packet: Packet, size: int, addr: Address,
                       now: float) -> DropReason | None:
        """Handle one parsed packet routed to this session; returns a drop reason or None."""
        if packet.type is _DATA_PACKET:
            return self.receive_sealed(packet.packet_number, packet.key_phase, packet.header,
                                       packet.body, size, addr, now)
        if self.state is TERMINATED:
            return DropReason.UNKNOWN_SESSION
        self._amp_received += size
        self.counters.bytes_received_wire += size
        try:
            reason = self._receive_handshake(packet, now)
        except (HandshakeError, ConnectionRefused) as exc:
            self._terminate(exc, getattr(exc, "code", 0), str(exc), by_peer=False)
            reason = None
        except ProtocolError as exc:
            self._fail(exc, now)
            reason = None
        self._wake()
        return reason

    def receive_sealed(self, pn: int, key_phase: int, header: memoryview | bytes,
                       body: memoryview | bytes, size: int, addr: Address,
                       now: float) -> DropReason | None:
        """Handle one DATA packet routed to this session, its header already parsed (the
        endpoint does that without building a :class:`Packet`); returns a drop reason or
        None. The per-datagram path: nothing here is done twice."""
        if self.state is TERMINATED:
            return DropReason.UNKNOWN_SESSION
        self._amp_received += size
        self.counters.bytes_received_wire += size
        try:
            reason = self._receive_data(pn, key_phase, header, body, addr, now)
        except ProtocolError as exc:
            self._fail(exc, now)
            reason = None
        wakeup = self.wakeup  # _wake() inline: this runs for every datagram
        if wakeup is not None:
            wakeup(self)
        return reason

    def _receive_handshake(self, packet: Packet, now: float) -> DropReason | None:
        ptype = packet.type
        body = bytes(packet.body)
        self.counters.packets_received += 1
        if self.is_initiator:
            hs = self._initiator_hs
            if ptype is PacketType.HANDSHAKE and hs is not None and hs.result is None:
                self.rtt_sample_from_handshake(now)
                message3, result = hs.read_message2(body, packet.scid)
                self._peer_message = _digest(body)
                self.remote_cid = packet.scid
                self._install_keys(result, now)
                self._send_handshake(build_long_packet(PacketType.FINISH, self.remote_cid,
                                                       self.local_cid, message3), now)
                return None
            if ptype is PacketType.HANDSHAKE and _digest(body) == self._peer_message:
                if self.confirmed:
                    return DropReason.REPLAY
                self._retransmit_handshake(now)  # our message 3 was lost
                return None
            if ptype is PacketType.RETRY and hs is not None and hs.result is None:
                if self._token or not packet.token:
                    return DropReason.UNEXPECTED
                self._token = packet.token
                self._hs_retransmits = 0
                self._send_handshake(self._initial_packet(), now)
                return None
            if ptype is PacketType.REFUSE and not self.confirmed:
                if packet.refuse_code == RefuseCode.SERVER_BUSY:
                    raise ConnectionRefused("the peer refused the session: it is at max_sessions")
                raise HandshakeError("the peer rejected the handshake (refuse code "
                                     f"{packet.refuse_code}): most often the psk settings differ")
            return DropReason.UNEXPECTED
        rhs = self._responder_hs
        if rhs is None:
            return DropReason.UNEXPECTED
        if ptype is PacketType.INITIAL:
            if self._peer_message is None:
                try:
                    if not rhs.peer_cid:  # else the endpoint has read message 1 already
                        rhs.read_message1(body, packet.scid)
                except HandshakeError:
                    self._refuse(packet.scid, RefuseCode.HANDSHAKE_FAILED)
                    raise
                self._peer_message = _digest(body)
                self.remote_cid = rhs.peer_cid
                message2 = rhs.write_message2(self.local_cid)
                self._send_handshake(build_long_packet(PacketType.HANDSHAKE, self.remote_cid,
                                                       self.local_cid, message2), now)
                return None
            if _digest(body) == self._peer_message and self.state is HANDSHAKING:
                self._retransmit_handshake(now)  # our message 2 was lost
                return None
            return DropReason.REPLAY
        if ptype is PacketType.FINISH:
            if rhs.result is None and self._peer_message is not None:
                try:
                    result = rhs.read_message3(body)
                except HandshakeError:
                    self._refuse(self.remote_cid, RefuseCode.HANDSHAKE_FAILED)
                    raise
                self.rtt_sample_from_handshake(now)
                self._finish_message = _digest(body)
                self.address_validated = True
                self._install_keys(result, now)
                self._confirm()
                self._handshake_done_pending = True
                return None
            if rhs.result is not None and _digest(body) == self._finish_message:
                self._handshake_done_pending = True  # our HANDSHAKE_DONE was lost
                return None
        return DropReason.UNEXPECTED

    def _refuse(self, peer_cid: bytes, code: RefuseCode) -> None:
        """Tell the initiator its handshake failed, so it fails fast with a clear error."""
        self._outbox.append(build_long_packet(PacketType.REFUSE, peer_cid, self.local_cid,
                                              refuse_code=code))

    def rtt_sample_from_handshake(self, now: float) -> None:
        if self._hs_retransmits == 0:
            self.rtt.update(now - self._hs_sent_at)

    def _receive_data(self, pn: int, key_phase: int, header: memoryview | bytes,
                      body: memoryview | bytes, addr: Address, now: float) -> DropReason | None:
        keys = self._recv_keys
        if keys is None or self.state is DRAINING:
            return DropReason.UNEXPECTED
        replay = self._replay
        if pn <= replay.largest and not replay.check(pn):
            self.counters.replays_dropped += 1
            return DropReason.REPLAY
        try:
            if key_phase == keys.phase:  # the current key, without a rotation
                payload, rotated = keys.current.open_sealed(pn, header, body), False
            else:
                payload, rotated = keys.open(pn, key_phase, header, body)
        except CryptoError:
            self.counters.decrypt_failures += 1
            return DropReason.DECRYPT_FAILED
        if pn - replay.largest > MAX_PN_JUMP:  # authentic, so the peer itself jumped ahead
            raise ProtocolViolation(f"packet number {pn} jumps more than {MAX_PN_JUMP} past "
                                    f"the largest received, {replay.largest}")
        replay.accept(pn)
        self._ciphers_live = True
        self.counters.packets_received += 1
        self._last_received = now
        self._now = now
        if addr != self.remote_address and self.state is ESTABLISHED:
            # Another address (a NAT rebinding, or a copy an attacker sent first from a
            # victim's): the session moves only once a challenge sent there is echoed.
            self._path().on_packet(addr, len(header) + len(body), pn == self._replay.largest,
                                   now, self.rtt.pto())
        if rotated:
            self.counters.key_updates_received += 1
            self._events.append(KeyUpdated("receive", keys.generation))
        if self.is_initiator and not self.confirmed:
            self._confirm()  # any authenticated packet proves the responder has our message 3
        if self.state is CLOSING:
            if now - self._close_sent_at >= self.rtt.pto():
                self._close_pending = True  # the peer has not seen our CLOSE yet
            return None
        self._acks.on_packet(pn, self._handle_payload(payload, now), now)
        return None

    def _handle_payload(self, payload: bytes, now: float) -> bool:
        """Decode and handle the frames of a decrypted payload in one pass; returns whether
        any of them elicits an ACK. STREAM frames, nearly every frame of a transfer, go
        straight to the streams without a frame object. A malformed frame raises (the session
        then fails) after the frames before it were handled: they were authentic. So does a
        frame past MAX_FRAMES_PER_PACKET: what a packet of tiny frames costs stays bounded."""
        view = memoryview(payload)
        end = len(view)
        if end == 0:
            raise FrameError("packet payload holds no frames")
        data = self.data
        pos = 0
        eliciting = False
        budget = MAX_FRAMES_PER_PACKET
        while pos < end:
            if not budget:
                raise FrameError(f"packet carries more than {MAX_FRAMES_PER_PACKET} frames")
            budget -= 1
            kind = view[pos]
            if (kind == 0x08 or kind == 0x09) and data is not None:  # STREAM, STREAM with FIN
                stream_id, offset, chunk, pos = decode_stream_fields(view, pos + 1)
                data.streams.on_stream_data(stream_id, offset, chunk, kind == 0x09)
                eliciting = True
                continue
            if kind == 0x02 and data is not None:  # ACK, in nearly every packet of a dialogue
                ranges, ack_delay, pos = decode_ack_fields(view, pos + 1)
                data.on_ack(ranges, ack_delay, now, self._next_pn)
                continue
            frame, pos = decode_frame(view, pos)
            if not eliciting and type(frame) not in NON_ACK_ELICITING:
                eliciting = True
            self._handle_frame(frame, now)
        return eliciting

    def _handle_frame(self, frame: Frame, now: float) -> None:
        if isinstance(frame, AckFrame):
            if self.data is not None:
                self.data.on_ack(frame.ranges, frame.ack_delay, now, self._next_pn)
        elif isinstance(frame, (PingFrame, PaddingFrame)):
            pass
        elif isinstance(frame, CloseFrame):
            reason = sanitize(frame.reason)  # peer text leaves the library here: peer_text
            error = SessionClosed(frame.error_code, reason, by_peer=True)
            self._enter_drain(DRAINING, now)
            self._report_end(error, frame.error_code, reason, by_peer=True)
        elif isinstance(frame, HandshakeDoneFrame):
            if not self.is_initiator:
                raise ProtocolViolation("HANDSHAKE_DONE sent by the initiator")
        elif isinstance(frame, PathChallengeFrame):
            self._path().on_challenge(frame.data)
        elif isinstance(frame, PathResponseFrame):
            if self.path is not None:
                address = self.path.on_response(frame.data)
                if address is not None:
                    self.remote_address = address  # validated: the peer receives there
                    if self.data is not None:
                        self.data.on_path_validated()
        elif isinstance(frame, KeyUpdateFrame):
            keys = self._recv_keys
            if keys is None or frame.generation != keys.generation:
                raise ProtocolViolation(
                    f"KEY_UPDATE announces generation {frame.generation}, the packet used "
                    f"{keys.generation if keys else 'none'}")
        else:
            self.handle_stream_frame(frame, now)

    def handle_stream_frame(self, frame: Frame, now: float) -> None:
        """Stream, flow-control and datagram frames go to the data plane."""
        if self.data is None:  # pragma: no cover - data packets imply installed keys
            raise ProtocolViolation("stream frame before the handshake finished")
        self.data.on_frame(frame)

    @property
    def largest_acked(self) -> int:
        return self.data.recovery.largest_acked if self.data is not None else -1

    # -- timers -----------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must run, or None."""
        state = self.state
        if state is TERMINATED:
            return None
        if state in (CLOSING, DRAINING):
            return self._drain_deadline
        if state is ESTABLISHED and self.confirmed:
            return self._established_timer()
        deadlines = []
        if not self.confirmed:
            deadlines.append(self._handshake_deadline)
            if self._hs_retransmit_at is not None:
                deadlines.append(self._hs_retransmit_at)
        if state is ESTABLISHED:
            deadlines.append(self._last_received + self.config.keep_alive_timeout)
            deadlines.append(self._ping_deadline())
            if self._acks.ack_deadline is not None:
                deadlines.append(self._acks.ack_deadline)
            if self._send_keys is not None and self.confirmed:
                deadlines.append(self._send_keys.started_at + self.config.key_update_interval)
            if self.data is not None:
                data_deadline = self.data.timer(self._now)
                if data_deadline is not None:
                    deadlines.append(data_deadline)
            if self._ciphers_live:
                deadlines.append(self._cipher_release_at())
            path = self.path.timer() if self.path is not None else None
            if path is not None:
                deadlines.append(path)
        return min(deadlines)

    def _established_timer(self) -> float:
        """get_timer's common case, without building a list: it runs after every packet."""
        config = self.config
        heard = self._last_received
        deadline = heard + config.keep_alive_timeout
        ping = min(self._last_sent, max(heard, self._last_ping)) + config.keep_alive_interval
        if ping < deadline:
            deadline = ping
        ack = self._acks.ack_deadline
        if ack is not None and ack < deadline:
            deadline = ack
        keys = self._send_keys
        if keys is not None:
            rotate = keys.started_at + config.key_update_interval
            if rotate < deadline:
                deadline = rotate
        data = self.data
        if data is not None:
            data_deadline = data.timer(self._now)
            if data_deadline is not None and data_deadline < deadline:
                deadline = data_deadline
        if self._ciphers_live:
            release = max(self._last_sent, heard) + CIPHER_IDLE_RELEASE
            if release < deadline:
                deadline = release
        if self.path is not None:
            path = self.path.timer()
            if path is not None and path < deadline:
                deadline = path
        return deadline

    def _cipher_release_at(self) -> float:
        return max(self._last_sent, self._last_received) + CIPHER_IDLE_RELEASE

    def _release_ciphers(self) -> None:
        if self._send_keys is not None:
            self._send_keys.cipher.release()
        if self._recv_keys is not None:
            self._recv_keys.release()
        if self.data is not None:
            self.data.compact()
        self._ciphers_live = False

    def _ping_deadline(self) -> float:
        heard = max(self._last_received, self._last_ping)
        return min(self._last_sent, heard) + self.config.keep_alive_interval

    def handle_timer(self, now: float) -> None:
        self._now = now
        state = self.state
        if state is TERMINATED:
            return
        if state in (CLOSING, DRAINING):
            deadline = self._drain_deadline
            if deadline is not None and now >= deadline and not self._close_pending:
                self.state = TERMINATED
            return
        if not self.confirmed and now >= self._handshake_deadline:
            timeout = HandshakeTimeout(
                f"no handshake with {self.remote_address[0]}:{self.remote_address[1]} within "
                f"{self.config.handshake_timeout:g} s")
            self._terminate(timeout, 0, str(timeout), by_peer=False)
            return
        if self._hs_retransmit_at is not None and now >= self._hs_retransmit_at:
            self._retransmit_handshake(now)
        if state is ESTABLISHED:
            if self.data is not None:
                self.data.on_timer(now)
            if now >= self._last_received + self.config.keep_alive_timeout:
                error = KeepAliveTimeout(
                    f"nothing heard from the peer for {self.config.keep_alive_timeout:g} s")
                self._close_frame = CloseFrame(IDLE_TIMEOUT_CODE, "keep-alive timeout")
                self._close_pending = True
                self._report_end(error, IDLE_TIMEOUT_CODE, str(error), by_peer=False)
                self._enter_drain(CLOSING, now, drain=0.0)
            elif now >= self._ping_deadline():
                self._ping_pending = True
                self._last_ping = now
            if self._ciphers_live and now >= self._cipher_release_at():
                self._release_ciphers()
            if self.path is not None:
                self.path.on_timer(now)
        self._wake()

    # -- output -----------------------------------------------------------------------------------

    def datagrams_to_send(self, now: float, limit: int | None = None) -> list[Datagram]:
        """The datagrams ready to leave now (bounded by anti-amplification before validation).
        With ``limit``, data packets stop after that many and :attr:`more_to_send` is set, so a
        runtime can send in bounded batches instead of holding a whole window in memory."""
        out: list[Datagram] = []
        self.more_to_send = False
        if self._outbox:
            kept: list[Datagram] = []
            for datagram in self._outbox:
                if self._may_send(len(datagram)):
                    out.append(datagram)
                else:
                    kept.append(datagram)
                    self.counters.amplification_blocked += 1
            self._outbox = kept
        handshake_packets = len(out)
        self._now = now
        if self._send_keys is not None and self.state in (ESTABLISHED, CLOSING):
            out.extend(self._build_packets(now, limit))
            self.more_to_send = self.data is not None and self.data.more
            if self.path is not None and self.state is ESTABLISHED:
                self._send_challenge(self.path, now)
        if out:
            self._last_sent = now
            self.counters.packets_sent += handshake_packets
            for datagram in out:
                self.counters.bytes_sent_wire += len(datagram)
                self._amp_sent += len(datagram)
        deadline = self._drain_deadline
        if (self.state is CLOSING and deadline is not None and deadline <= now
                and not self._close_pending):
            self.state = TERMINATED  # a zero-length drain: the CLOSE is out, we are done
        return out

    def _build_packets(self, now: float, limit: int | None = None) -> list[bytes]:
        if self.data is not None:
            self.data.more = False
        if self._close_pending and self._close_frame is not None:
            self._close_pending = False
            self._close_sent_at = now
            payload = bytearray()
            encode_frame(self._close_frame, payload)
            return [self._seal(payload)[0]]
        if self.state is not ESTABLISHED or self.data is None:
            return []
        self._maybe_rotate_keys(now)
        head: list[Frame] = []
        if self._key_update_pending is not None:
            head.append(KeyUpdateFrame(self._key_update_pending))
            self._key_update_pending = None
        if self._handshake_done_pending:
            head.append(HandshakeDoneFrame())
            self._handshake_done_pending = False
        path = self.path
        if path is not None and path.responses:
            head.extend(PathResponseFrame(data) for data in path.responses)
            path.responses.clear()
        if self._ping_pending:
            head.append(PingFrame())
            self._ping_pending = False
            self.counters.pings_sent += 1
        acks = self._acks
        ack = b""
        if acks.ack_due(now) or (acks.ack_deadline is not None
                                 and (head or self.data.streams.has_pending())):
            ack = acks.encode(now)
        return self.data.build(now, head, self._seal, limit, ack)

    def _seal(self, payload: bytes | bytearray) -> tuple[bytes, int]:
        keys = self._send_keys
        if keys is None:  # pragma: no cover - callers check
            raise UsageError("no traffic keys yet")
        pn = self._next_pn
        self._next_pn += 1
        self._ciphers_live = True
        keys.packets += 1
        self.counters.packets_sent += 1
        return keys.cipher.seal(self.remote_cid, pn, keys.phase, payload), pn

    def _maybe_rotate_keys(self, now: float) -> None:
        keys = self._send_keys
        if keys is None or not self.confirmed:
            return
        due = (keys.packets >= self.config.key_update_packets
               or now >= keys.started_at + self.config.key_update_interval)
        # Rotate again only once the peer has acknowledged this generation (phase bit safety).
        if due and (keys.generation == 0 or self.largest_acked >= keys.first_pn):
            keys.rotate(self._next_pn, now)
            self.counters.key_updates_sent += 1
            self._key_update_pending = keys.generation
            self._events.append(KeyUpdated("send", keys.generation))

    def _path(self) -> PathValidator:
        path = self.path
        if path is None:
            path = self.path = PathValidator()
        return path

    def _send_challenge(self, path: PathValidator, now: float) -> None:
        """Seal a due PATH_CHALLENGE for the candidate address into the path's outbox (the
        endpoint sends it there). Not tracked by loss recovery: a challenge to a victim is
        never acknowledged, and must not count as congestion on the real path."""
        data = path.challenge(now, self._rng, PACKET_OVERHEAD + 1 + PATH_DATA_LEN)
        if data is None:
            return
        payload = bytearray()
        encode_frame(PathChallengeFrame(data), payload)
        datagram = self._seal(payload)[0]
        path.on_sent(datagram)
        self.counters.bytes_sent_wire += len(datagram)

    def take_path_datagrams(self) -> list[tuple[bytes, Address]]:
        """Challenges to send, each to its own address (not :attr:`remote_address`); the
        endpoint collects them after :meth:`datagrams_to_send`."""
        return self.path.take_outbox() if self.path is not None else []

    def _may_send(self, size: int) -> bool:
        if self.address_validated:
            return True
        return self._amp_sent + size <= AMPLIFICATION_FACTOR * self._amp_received

    # -- helpers ----------------------------------------------------------------------------------

    def _initial_packet(self) -> bytes:
        hs = self._initiator_hs
        if hs is None:  # pragma: no cover
            raise UsageError("not an initiator")
        return build_long_packet(PacketType.INITIAL, self.remote_cid, self.local_cid,
                                 hs.message1, token=self._token)

    def _send_handshake(self, datagram: bytes, now: float) -> None:
        self._hs_packet = datagram
        self._hs_sent_at = now
        self._outbox.append(datagram)
        self._hs_retransmit_at = now + max(2 * self.rtt.smoothed, HANDSHAKE_RETRANSMIT_MIN)

    def _retransmit_handshake(self, now: float) -> None:
        if self._hs_packet is None or self.confirmed:
            self._hs_retransmit_at = None
            return
        if self._hs_packet not in self._outbox:
            self._outbox.append(self._hs_packet)
        self._hs_retransmits += 1
        backoff = max(2 * self.rtt.smoothed, HANDSHAKE_RETRANSMIT_MIN) * 2 ** min(
            self._hs_retransmits, 6)
        self._hs_retransmit_at = now + backoff

    def _install_keys(self, result: HandshakeResult, now: float) -> None:
        self.handshake_result = result
        self.peer_id = result.peer_id
        self._send_keys = SendKeys(result.send, now)
        self._recv_keys = RecvKeys(result.recv)
        self.data = DataPlane(config=self.config, is_initiator=self.is_initiator,
                              local=local_settings(self.config), peer=result.peer_settings,
                              rtt=self.rtt, emit=self._events.append,
                              seed=self._rng.token_bytes(1)[0])
        self.state = ESTABLISHED
        self._last_received = self._last_sent = self._last_ping = now

    def _confirm(self) -> None:
        self.confirmed = True
        self._hs_retransmit_at = None
        self._hs_packet = None
        self._initiator_hs = None  # its padded message 1 is no longer needed
        result = self.handshake_result
        if result is not None:
            self.purpose = result.purpose
            self._events.append(HandshakeCompleted(result.peer_id, result.cipher,
                                                   result.peer_settings))

    def _enter_drain(self, state: State, now: float, drain: float | None = None) -> None:
        self.state = state
        self._drain_deadline = now + (3 * self.rtt.pto() if drain is None else drain)
        self._hs_retransmit_at = None

    def _report_end(self, error: STTError, code: int, reason: str, *, by_peer: bool) -> None:
        if self.error is None:
            self.error = error
            self._events.append(SessionTerminated(code, reason, by_peer, error))

    def _terminate(self, error: STTError, code: int, reason: str, *, by_peer: bool) -> None:
        self._report_end(error, code, reason, by_peer=by_peer)
        self.state = TERMINATED
        self._hs_retransmit_at = None

    def _fail(self, exc: ProtocolError, now: float) -> None:
        """The peer broke the protocol: close with its error code and say why."""
        if self._send_keys is None or self.is_closed:
            self._terminate(exc, exc.code, str(exc), by_peer=False)
            return
        self._close_frame = CloseFrame(exc.code, str(exc)[:200])
        self._close_pending = True
        self._enter_drain(CLOSING, now)
        self._report_end(exc, exc.code, str(exc), by_peer=False)

    def _wake(self) -> None:
        if self.wakeup is not None:
            self.wakeup(self)


__all__ = ["AuthenticationError", "Session", "State"]


def _digest(message: bytes) -> bytes:
    """Identifies a handshake message for retransmission checks without keeping it."""
    return blake2s(message, digest_size=16).digest()
