"""One secure session as a sans-I/O state machine: its public surface, input, timers, output.

Drive it like aioquic's connection: feed packets with :meth:`Session.receive_datagram`, collect
output with :meth:`Session.datagrams_to_send`, read :meth:`Session.next_event`, and call
:meth:`Session.handle_timer` when :meth:`Session.get_timer` says. Normally an
:class:`~stt_proto.endpoint.Endpoint` does this for every session on a socket.
Bad input from the network never raises out of here: it is dropped and counted, or it closes
this session with a protocol error.

The parts live beside this module: the states and their moves (``state.py``), the deadlines
(``timers.py``), packet protection with replay and key rotation (``protection.py``), the
handshake (``handshake_phase.py``), frames other than STREAM and ACK (``receive.py``) and the
application's stream calls (``app.py``). A DATA packet's frames are read here, in
:meth:`Session.receive_sealed`, so that a datagram's way from the endpoint to a stream's
receive side crosses this module once (docs/architecture.md, "A datagram's route").
"""

from __future__ import annotations

from ..ack import AckTracker
from ..buffers import SendBuffers
from ..config import SessionConfig
from ..dataplane import DataPlane
from ..errors import FrameError, ProtocolError, SessionClosed, STTError, UsageError
from ..events import Address, SessionEvent
from ..frames import (
    MAX_FRAMES_PER_PACKET,
    NON_ACK_ELICITING,
    CloseFrame,
    decode_ack_fields,
    decode_frame,
    decode_stream_fields,
)
from ..handshake import HandshakeResult, InitiatorHandshake, ResponderHandshake
from ..handshake_payload import Purpose
from ..identity import Identity
from ..packet import Datagram, Packet, PacketType, Payload, parse_packet
from ..path import PathValidator
from ..randomness import RandomSource
from ..replay import ReplayWindow
from ..rtt import RttEstimator
from ..stats import DropReason, SessionCounters, SessionStats, StreamStats
from . import app, ending
from .handshake_phase import HandshakePhase
from .output import datagrams_to_send
from .protection import Protection, RecvKeys, SendKeys
from .receive import handle_frame
from .state import CLOSED_STATES, CLOSING, DRAINING, ESTABLISHED, HANDSHAKING, TERMINATED, State
from .state import check_move as _check_move
from .timeouts import on_timer, refresh_timers
from .timers import NEVER, T_DRAIN, T_HANDSHAKE, TimerTable

_DATA_PACKET = PacketType.DATA


class Session:
    """A session with one peer. Create it with :meth:`initiate` or :meth:`respond`."""

    # Slotted: a node may hold 10,000 idle sessions, and a __dict__ each costs KiBs.
    __slots__ = (
        "_acks", "_amp_received", "_amp_sent", "_close_frame", "_close_pending",
        "_close_sent_at", "_events", "_handshake", "_handshake_done_pending", "_last_ping",
        "_last_received", "_last_sent", "_now", "_outbox", "_ping_pending", "_protection",
        "_rng", "_taking", "_timers", "address_validated", "config", "confirmed", "counters",
        "data", "error", "expected_peer_id", "handshake_result", "identity", "initial_address",
        "is_initiator", "local_cid", "more_to_send", "original_dcid", "path", "peer_id",
        "purpose", "remote_address", "remote_cid", "rtt", "state", "woken",
    )

    def __init__(self, *, config: SessionConfig, identity: Identity, rng: RandomSource,
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
        self._timers = TimerTable()
        self._timers.set(T_HANDSHAKE, now + config.handshake_timeout)
        self._handshake = HandshakePhase(now)
        self.original_dcid = b""  # responder: the connection id the initiator first used
        self._protection = Protection(self.counters, self._events.append)
        self._acks = AckTracker()
        self.data: DataPlane | None = None
        self._last_received = now
        self._last_sent = now
        self._last_ping = now
        self._ping_pending = False
        self.more_to_send = False  # the last datagrams_to_send stopped at its limit
        self._handshake_done_pending = False
        self._close_frame: CloseFrame | None = None
        self._close_pending = False
        self._close_sent_at = -1.0
        # anti-amplification (responder, until the peer's address is validated)
        self.address_validated = is_initiator
        self._amp_received = 0
        self._amp_sent = 0
        # Where the session notes that it wants its owner's next poll (the endpoint's table,
        # read by the endpoint; a dictionary store, never a call back up into the endpoint).
        self.woken: dict[bytes, Session] | None = None
        # A new address of the peer, validated before the session moves there (path.py);
        # made on first use.
        self.path: PathValidator | None = None
        # The initiator's says why the session exists; a responder learns it from message 3.
        self.purpose = Purpose.APPLICATION
        self._now = now

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def initiate(cls, *, config: SessionConfig, identity: Identity, rng: RandomSource,
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
        phase = session._handshake
        phase.initiator = hs
        phase.send(session, phase.initial_packet(session), now)
        return session

    @classmethod
    def respond(cls, *, config: SessionConfig, identity: Identity, rng: RandomSource,
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
        session._handshake.responder = handshake or ResponderHandshake(config, identity, rng)
        return session

    # -- state ------------------------------------------------------------------------------------

    @property
    def session_id(self) -> bytes:
        return self.local_cid

    @property
    def is_established(self) -> bool:
        return self.state is ESTABLISHED

    @property
    def is_closed(self) -> bool:
        return self.state in CLOSED_STATES

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

    @property
    def largest_acked(self) -> int:
        return self.data.recovery.largest_acked if self.data is not None else -1

    def _move(self, new: State) -> None:
        """Every state change, checked against the table in state.py."""
        self.state = _check_move(self.state, new)

    # Views of the parts, for tests and tools that look inside a session.
    @property
    def _send_keys(self) -> SendKeys | None:
        return self._protection.send_keys

    @property
    def _recv_keys(self) -> RecvKeys | None:
        return self._protection.recv_keys

    @property
    def _replay(self) -> ReplayWindow:
        return self._protection.replay

    @property
    def _next_pn(self) -> int:
        return self._protection.next_pn

    @_next_pn.setter
    def _next_pn(self, value: int) -> None:
        self._protection.next_pn = value

    @property
    def _ciphers_live(self) -> bool:
        return self._protection.ciphers_live

    @property
    def _drain_deadline(self) -> float | None:
        return self._timers.get(T_DRAIN)

    @_drain_deadline.setter
    def _drain_deadline(self, value: float) -> None:
        self._timers.set(T_DRAIN, value)

    # -- the application's calls ------------------------------------------------------------------

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
        if self._protection.send_keys is None:
            ending.terminate(self, error, error_code, reason, by_peer=False)
            self._wake()
            return
        self._close_frame = CloseFrame(error_code, reason, application)
        self._close_pending = True
        ending.enter_drain(self, CLOSING, now)
        ending.report_end(self, error, error_code, reason, by_peer=False)
        self._wake()

    def send_ping(self) -> None:
        if self.is_closed:
            raise UsageError("cannot ping a closed session")
        self._ping_pending = True
        self._wake()

    def _data_plane(self) -> DataPlane:
        """The data plane; UsageError unless the session is established."""
        if self.data is None or self.state is not ESTABLISHED:
            raise UsageError("the session is not established" if not self.is_closed
                             else "the session is closed")
        return self.data

    def open_stream(self, max_frame_size: object = None, no_delay: object = None,
                    priority: object = 0) -> int:
        """Open a stream and return its id. Raises StreamLimitError past the peer's limit, and
        SettingsError (a ValueError) naming the argument for a bad value."""
        size, delay, order = app.check_open_arguments(max_frame_size, no_delay, priority)
        return app.open_stream(self._data_plane(), size, delay, order)

    def send_message(self, stream_id: int, message: bytes | bytearray | memoryview) -> bool:
        """Queue one message on a stream. False means the send buffer is full: wait for
        StreamWritable and try again (back-pressure)."""
        data = self._data_plane()
        accepted = data.streams.send_message(stream_id, message, self._now, data.hold_time())
        if accepted:
            self._wake()
        return accepted

    def stream_no_delay(self, stream_id: int) -> bool:
        """Whether the stream sends each message at once; a runtime then polls at once too."""
        stream = self.data.streams.streams.get(stream_id) if self.data is not None else None
        return stream is not None and stream.no_delay

    def receive_message(self, stream_id: int) -> bytes | None:
        """The next whole message of a stream, or None if none is complete yet."""
        message = self._read(stream_id, None)
        return None if isinstance(message, int) else message

    def receive_message_into(self, stream_id: int, buffer: memoryview) -> int | None:
        """:meth:`receive_message` copied into ``buffer`` (a writable view of bytes): its size,
        or None. Raises :class:`BufferTooSmall`, the message left unread, if it does not fit."""
        size = self._read(stream_id, buffer)
        return None if isinstance(size, bytes) else size

    def _read(self, stream_id: int, into: memoryview | None) -> bytes | int | None:
        if self.data is None:
            return None
        message = self.data.streams.receive_message(stream_id, into)
        if message is not None:
            self._wake()
        return message

    def read_needs_poll(self) -> bool:
        """After :meth:`receive_message`: whether the reads freed enough window that the peer
        is owed an update (or other control frames wait), so the runtime should poll soon.
        Polling after every message instead cost a runtime a poll per message."""
        return self.data is not None and self.data.streams.updates_owed()

    def stream_state(self, stream_id: int) -> tuple[bool, bool, int | None]:
        """(peer finished and everything read, all our data acknowledged, reset code or None)."""
        if self.data is None:
            return False, False, None
        return app.stream_state(self.data, stream_id)

    def stream_stats(self, stream_id: int) -> StreamStats:
        """Byte and message counters of one open stream."""
        return app.stream_stats(self._data_plane(), stream_id)

    def close_stream(self, stream_id: int) -> None:
        """Half-close: everything queued is sent, then FIN."""
        self._data_plane().streams.close_stream(stream_id)
        self._wake()

    def reset_stream(self, stream_id: int, error_code: int = 0) -> None:
        """Abort both directions of a stream."""
        if self.data is not None and not self.is_closed:
            self.data.streams.reset_stream(stream_id, error_code)
            self._wake()

    def stop_receiving(self, stream_id: int, error_code: int = 0) -> None:
        """Abort only the receiving half (STOP_SENDING): the peer's further sends fail with
        ``error_code``; our sending half, and a FIN already queued, go on."""
        if self.data is not None and not self.is_closed:
            self.data.streams.stop_receiving(stream_id, error_code)
            self._wake()

    def is_stream_open(self, stream_id: int) -> bool:
        """Whether the core still keeps state for the stream (False once it is finished in both
        directions and forgotten): a runtime drops its wrapper then."""
        return self.data is not None and stream_id in self.data.streams.streams

    def send_datagram(self, message: bytes | bytearray | memoryview) -> bool:
        """Queue an unreliable datagram (never retransmitted); False if the queue is full."""
        accepted = self._data_plane().send_datagram(message)
        self._wake()
        return accepted

    def get_stats(self) -> SessionStats:
        return app.session_stats(self.data, self.counters, self.rtt, self.config,
                                 self.handshake_result, self.path)

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
            reason = self.receive_sealed(packet.packet_number, packet.key_phase, packet.header,
                                         packet.body, size, addr, now)
        else:
            reason = self._handshake.receive_packet(self, packet, size, now)
        self._wake()
        return reason

    def receive_sealed(self, pn: int, key_phase: int, header: memoryview | bytes,
                       body: memoryview | bytes, size: int, addr: Address,
                       now: float) -> DropReason | None:
        """Handle one DATA packet routed to this session, its header already parsed (the
        endpoint does that without building a :class:`Packet`); returns a drop reason or
        None. The per-datagram path: nothing here is done twice, and nothing calls back up:
        the caller (the endpoint) queues the session for its next poll itself."""
        if self.state is TERMINATED:
            return DropReason.UNKNOWN_SESSION
        self._amp_received += size
        self.counters.bytes_received_wire += size
        try:
            reason = self._receive_data(pn, key_phase, header, body, addr, now)
        except ProtocolError as exc:
            ending.fail(self, exc, now)
            reason = None
        return reason

    def _receive_data(self, pn: int, key_phase: int, header: memoryview | bytes,
                      body: memoryview | bytes, addr: Address, now: float) -> DropReason | None:
        protection = self._protection
        keys = protection.recv_keys
        if keys is None or self.state is DRAINING:
            return DropReason.UNEXPECTED
        payload = protection.unprotect(keys, pn, key_phase, header, body)
        if isinstance(payload, DropReason):
            return payload
        self.counters.packets_received += 1
        self._last_received = now
        self._now = now
        if addr != self.remote_address and self.state is ESTABLISHED:
            # Another address (a NAT rebinding, or a copy an attacker sent first from a
            # victim's): the session moves only once a challenge sent there is echoed.
            self._path().on_packet(addr, len(header) + len(body),
                                   pn == protection.replay.largest, now, self.rtt.pto())
        if self.is_initiator and not self.confirmed:
            # any authenticated packet proves the responder has our message 3
            self._handshake.confirm(self)
        if self.state is CLOSING:
            if now - self._close_sent_at >= self.rtt.pto():
                self._close_pending = True  # the peer has not seen our CLOSE yet
            return None
        self._acks.on_packet(pn, self._handle_payload(payload, now), now)
        return None

    def _handle_payload(self, payload: Payload, now: float) -> bool:
        """Handle a decrypted payload's frames in one pass; returns whether any elicits an
        ACK. STREAM frames (nearly every frame of a transfer) go straight to the streams and
        ACKs to recovery, decoded in place; other frames go to ``receive.handle_frame``. A
        malformed frame, or one past MAX_FRAMES_PER_PACKET, raises after the frames before it
        were handled (they were authentic): what a packet of tiny frames costs stays bounded."""
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
            if (kind == 0x08 or kind == 0x09) and data is not None:  # STREAM (with FIN)
                stream_id, offset, chunk, pos = decode_stream_fields(view, pos + 1)
                data.streams.on_stream_data(stream_id, offset, chunk, kind == 0x09)
                eliciting = True
                continue
            if kind == 0x02 and data is not None:  # ACK, in nearly every packet of a dialogue
                ranges, ack_delay, pos = decode_ack_fields(view, pos + 1)
                data.on_ack(ranges, ack_delay, now, self._protection.next_pn)
                continue
            frame, pos = decode_frame(view, pos)
            if not eliciting and type(frame) not in NON_ACK_ELICITING:
                eliciting = True
            handle_frame(self, frame, now)
        return eliciting

    # -- timers -----------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        """The earliest time :meth:`handle_timer` must run, or None: the minimum over the
        timer table, its derived deadlines refreshed first. It runs after every packet."""
        state = self.state
        if state is ESTABLISHED:
            refresh_timers(self, self._now)
        elif state is TERMINATED:
            return None
        elif state is not HANDSHAKING:  # closing or draining: only the drain is left
            drain = self._timers.drain
            return None if drain == NEVER else drain
        return self._timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        """Do what the deadlines due at ``now`` ask (see timeouts.py)."""
        on_timer(self, now)

    # -- output -----------------------------------------------------------------------------------

    def datagrams_to_send(self, now: float, limit: int | None = None) -> list[Datagram]:
        """The datagrams ready to leave now (bounded by anti-amplification before validation).
        With ``limit``, data packets stop after that many and :attr:`more_to_send` is set, so a
        runtime can send in bounded batches instead of holding a whole window in memory."""
        return datagrams_to_send(self, now, limit)

    def share_buffers(self, send: SendBuffers | None, receive: memoryview | None) -> None:
        """Seal and open large packets in the endpoint's reused buffers (see buffers.py)."""
        self._protection.send_buffers = send
        self._protection.recv_buffer = receive

    def _seal(self, payload: bytes | bytearray) -> tuple[Datagram, int]:
        return self._protection.seal(self.remote_cid, payload)

    def _path(self) -> PathValidator:
        path = self.path
        if path is None:
            path = self.path = PathValidator()
        return path

    def take_path_datagrams(self) -> list[tuple[bytes, Address]]:
        """Challenges to send, each to its own address (not :attr:`remote_address`); the
        endpoint collects them after :meth:`datagrams_to_send`."""
        return self.path.take_outbox() if self.path is not None else []

    # -- the owner's poll ------------------------------------------------------------------------

    def _wake(self) -> None:
        """Note that the session wants its owner's next poll (output, a moved deadline)."""
        woken = self.woken
        if woken is not None:
            woken[self.local_cid] = self
