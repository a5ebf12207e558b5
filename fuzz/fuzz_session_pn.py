"""Fuzz the packet numbers of authenticated packets: the fuzzer picks each number.

``fuzz_endpoint`` seals with the session's next packet number, so it could never send a replay,
a reordering or a jump far ahead. Here the input is a run of packets, each a control byte that
chooses its number (a step forward, a step back, a power-of-two jump, or eight bytes taken
whole), a length byte and that many payload bytes (a PING when empty), sealed with the
session's real key and delivered to the endpoint. Besides "nothing raises", it checks the
anti-replay rules as it goes: a number is accepted once, the window stays O(WINDOW), and a jump
past ``MAX_PN_JUMP`` closes the session with ``ProtocolViolation`` without moving the window.
Run: ``python -m fuzz.fuzz_session_pn -max_total_time=60``.
"""

from __future__ import annotations

from fuzz.fuzz_endpoint import CLIENT, _setup
from stt_proto.errors import ProtocolViolation
from stt_proto.frames import PingFrame, encode_frames
from stt_proto.replay import MAX_PN_JUMP, WINDOW

MAX_PN = (1 << 62) - 1  # the largest number a varint, so a DATA header, can carry
MAX_PACKETS = 24
_PING = encode_frames([PingFrame()])


def choose_pn(data: bytes, pos: int, largest: int) -> tuple[int, int]:
    """The packet number a control byte at ``pos`` picks, relative to ``largest`` (the
    largest received), and the position after it."""
    control = data[pos]
    pos += 1
    arg = control >> 2
    how = control & 3
    if how == 0:
        pn = largest + 1 + arg  # in order, or a small gap
    elif how == 1:
        pn = largest - arg  # a replay or a reordered packet
    elif how == 2:
        pn = largest + (1 << arg)  # a jump: to the window's edge, MAX_PN_JUMP, 2**32, ...
    else:
        pn = int.from_bytes(data[pos : pos + 8], "big")
        pos += 8
    return min(max(pn, 0), MAX_PN), pos


def TestOneInput(data: bytes) -> None:  # atheris calls it by this name
    if not data:
        return
    net, server, client_session, server_session = _setup()
    keys = client_session._send_keys
    if keys is None:  # pragma: no cover - _setup waits for the handshake
        raise RuntimeError("no traffic keys")
    window = server_session._replay
    accepted: set[int] = set()
    pos = 0
    for _ in range(MAX_PACKETS):
        if pos >= len(data):
            break
        largest = window.largest
        pn, pos = choose_pn(data, pos, largest)
        length = data[pos] if pos < len(data) else 0
        payload = data[pos + 1 : pos + 1 + length] or _PING
        pos += 1 + length
        was_open = not server_session.is_closed
        expected = window.check(pn)  # what the window says before the packet
        received = server_session.counters.packets_received
        datagram = keys.cipher.seal(server_session.local_cid, pn, keys.phase, payload)
        server.receive_datagram(datagram, CLIENT, net.now)
        if window._missing.bit_length() > WINDOW:
            raise AssertionError("the replay window grew past WINDOW bits")
        if not was_open:
            continue
        if pn - largest > MAX_PN_JUMP:
            if not isinstance(server_session.error, ProtocolViolation):
                raise AssertionError(f"a jump of {pn - largest} did not close the session")
            if window.largest != largest:
                raise AssertionError("a refused jump moved the window")
            continue
        taken = server_session.counters.packets_received > received
        if taken != expected:
            raise AssertionError(f"packet number {pn}: taken {taken}, the window said "
                                 f"{expected}")
        if taken and (pn in accepted or window.check(pn)):
            raise AssertionError(f"packet number {pn} could be accepted twice")
        if pn > largest and not taken:
            raise AssertionError(f"packet number {pn} above the largest was refused")
        if taken:
            accepted.add(pn)
    server.handle_timer(net.now)
    net.run(1.0)  # the endpoint keeps running: timers, replies, closes
    server.get_stats()


if __name__ == "__main__":
    from fuzz.runner import fuzz

    fuzz(TestOneInput)
