"""Packet protection of an established session: traffic keys per direction, packet numbers,
the replay window, in-band key rotation and the release of idle AEAD objects, together.

Each direction rotates independently: the sender moves to the next key generation (Noise REKEY of
the current key), flips the header's key-phase bit and sends a KEY_UPDATE frame. The receiver,
seeing the other phase on a packet newer than the current generation began, tries the next key and
promotes it on success; the previous key is kept for reordered packets until the next rotation.
A sender rotates again only after the peer acknowledged a packet of the current generation, so the
one phase bit is never ambiguous.
"""

from __future__ import annotations

from collections.abc import Callable

from ..buffers import SMALLEST, SendBuffers
from ..errors import CryptoError, ProtocolViolation, UsageError
from ..events import KeyUpdated, SessionEvent
from ..packet import DATA_OVERHEAD, TAG_LEN, Datagram, PacketCipher, Payload
from ..replay import MAX_PN_JUMP, ReplayWindow
from ..stats import DropReason, SessionCounters


class SendKeys:
    __slots__ = ("cipher", "first_pn", "generation", "packets", "phase", "started_at")

    def __init__(self, cipher: PacketCipher, now: float) -> None:
        self.cipher = cipher
        self.generation = 0
        self.phase = 0
        self.first_pn = 0
        self.packets = 0
        self.started_at = now

    def rotate(self, next_pn: int, now: float) -> None:
        self.cipher = self.cipher.next_generation()
        self.generation += 1
        self.phase ^= 1
        self.first_pn = next_pn
        self.packets = 0
        self.started_at = now


class RecvKeys:
    __slots__ = ("current", "first_pn", "generation", "next", "phase", "previous")

    def __init__(self, cipher: PacketCipher) -> None:
        self.current = cipher
        self.previous: PacketCipher | None = None
        self.next: PacketCipher | None = None
        self.generation = 0
        self.phase = 0
        self.first_pn = 0

    def release(self) -> None:
        """Drop the AEAD objects of every kept generation (see PacketCipher.release)."""
        for cipher in (self.current, self.previous, self.next):
            if cipher is not None:
                cipher.release()

    def open(self, pn: int, key_phase: int, header: memoryview | bytes,
             body: memoryview | bytes, out: memoryview | None = None) -> tuple[Payload, bool]:
        """Decrypt a DATA packet (into ``out`` if given); returns ``(payload, rotated)``.
        Raises :class:`CryptoError` if no key fits."""
        if key_phase == self.phase:
            return self.current.open_sealed(pn, header, body, out), False
        if self.previous is not None and pn < self.first_pn:
            return self.previous.open_sealed(pn, header, body, out), False
        if pn < self.first_pn:
            raise CryptoError("packet from a key generation that has been discarded")
        if self.next is None:
            self.next = self.current.next_generation()
        payload = self.next.open_sealed(pn, header, body, out)
        self.previous, self.current, self.next = self.current, self.next, None
        self.generation += 1
        self.phase ^= 1
        self.first_pn = pn
        return payload, True


class Protection:
    """Seals outgoing and opens incoming DATA packets for one session.

    Empty (no keys) until :meth:`install`; :attr:`ciphers_live` says an AEAD object was built
    since the last :meth:`release`, which the session's idle timer uses.
    """

    __slots__ = ("_counters", "_emit", "ciphers_live", "key_update_pending", "next_pn",
                 "recv_buffer", "recv_keys", "replay", "send_buffers", "send_keys")

    def __init__(self, counters: SessionCounters, emit: Callable[[SessionEvent], None]) -> None:
        self._counters = counters
        self._emit = emit
        self.send_keys: SendKeys | None = None
        self.recv_keys: RecvKeys | None = None
        self.replay = ReplayWindow()
        self.next_pn = 0
        self.ciphers_live = False
        self.key_update_pending: int | None = None  # a generation to announce in KEY_UPDATE
        # the endpoint's, when its caller sends each batch before the next (see buffers.py)
        self.send_buffers: SendBuffers | None = None
        # the endpoint's: large packets are opened into it, so their payload is valid only
        # until the next packet, and whatever keeps their bytes copies them (see buffers.py)
        self.recv_buffer: memoryview | None = None

    def install(self, send: PacketCipher, recv: PacketCipher, now: float) -> None:
        self.send_keys = SendKeys(send, now)
        self.recv_keys = RecvKeys(recv)

    def seal(self, cid: bytes, payload: bytes | bytearray) -> tuple[Datagram, int]:
        """The sealed packet for ``payload`` and the packet number it took: a large one
        written into one of the endpoint's :attr:`send_buffers` where it has them."""
        keys = self.send_keys
        if keys is None:  # pragma: no cover - callers check
            raise UsageError("no traffic keys yet")
        pn = self.next_pn
        self.next_pn = pn + 1
        self.ciphers_live = True
        keys.packets += 1
        self._counters.packets_sent += 1
        buffers = self.send_buffers
        if buffers is not None:
            out = buffers.take(len(payload) + DATA_OVERHEAD)
            if out is not None:
                return keys.cipher.seal_into(cid, pn, keys.phase, payload, out), pn
        return keys.cipher.seal(cid, pn, keys.phase, payload), pn

    def unprotect(self, keys: RecvKeys, pn: int, key_phase: int, header: memoryview | bytes,
                  body: memoryview | bytes) -> Payload | DropReason:
        """The payload of an authentic, new packet, or why it was dropped. Raises
        :class:`ProtocolViolation` for an authentic packet number that jumps too far. A large
        payload is a view of the endpoint's :attr:`recv_buffer`: valid until the next packet."""
        replay = self.replay
        if pn <= replay.largest and not replay.check(pn):
            self._counters.replays_dropped += 1
            return DropReason.REPLAY
        out = self.recv_buffer
        if out is not None and len(body) < SMALLEST + TAG_LEN:
            out = None  # a small payload: its own bytes cost no heap churn
        try:
            if key_phase == keys.phase:  # the current key, without a rotation
                payload, rotated = keys.current.open_sealed(pn, header, body, out), False
            else:
                payload, rotated = keys.open(pn, key_phase, header, body, out)
        except CryptoError:
            self._counters.decrypt_failures += 1
            return DropReason.DECRYPT_FAILED
        if pn - replay.largest > MAX_PN_JUMP:  # authentic, so the peer itself jumped ahead
            raise ProtocolViolation(f"packet number {pn} jumps more than {MAX_PN_JUMP} past "
                                    f"the largest received, {replay.largest}")
        replay.accept(pn)
        self.ciphers_live = True
        if rotated:
            self._counters.key_updates_received += 1
            self._emit(KeyUpdated("receive", keys.generation))
        return payload

    def check_key_update(self, generation: int) -> None:
        """A KEY_UPDATE frame must announce the generation its packet used."""
        keys = self.recv_keys
        if keys is None or generation != keys.generation:
            raise ProtocolViolation(
                f"KEY_UPDATE announces generation {generation}, the packet used "
                f"{keys.generation if keys else 'none'}")

    def maybe_rotate(self, now: float, max_packets: int, interval: float,
                     largest_acked: int) -> None:
        """Move the send key to its next generation when it has sealed ``max_packets`` or is
        ``interval`` old, once the peer acknowledged the current one (phase bit safety)."""
        keys = self.send_keys
        if keys is None:
            return
        due = keys.packets >= max_packets or now >= keys.started_at + interval
        if due and (keys.generation == 0 or largest_acked >= keys.first_pn):
            keys.rotate(self.next_pn, now)
            self._counters.key_updates_sent += 1
            self.key_update_pending = keys.generation
            self._emit(KeyUpdated("send", keys.generation))

    def release(self) -> None:
        """Drop the AEAD objects (rebuilt from the keys on the next packet): an idle session
        then keeps 32-byte keys, not KiBs of cipher tables."""
        if self.send_keys is not None:
            self.send_keys.cipher.release()
        if self.recv_keys is not None:
            self.recv_keys.release()
        self.ciphers_live = False
