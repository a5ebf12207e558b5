"""Fuzz every decoder: packet headers, frames, handshake payloads, settings and DHT messages
(decoded alone and fed to a DHT, which must answer or drop them without raising).

Decoding must either succeed or raise a ``ProtocolError``; anything decoded must re-encode to
bytes that decode to the same frames. Run: ``python fuzz/fuzz_decode.py -max_total_time=60``.
"""

from __future__ import annotations

import contextlib

from stt_proto.dht import DHT, Contact
from stt_proto.dht import messages as dht_messages
from stt_proto.errors import ProtocolError
from stt_proto.frames import encode_frames, parse_frames
from stt_proto.handshake_payload import TransportSettings, decode_payload, decode_preference
from stt_proto.packet import parse_packet
from stt_proto.randomness import DeterministicRandom

_DHT = DHT(bytes(32), DeterministicRandom(1))
_SENDER = Contact(b"\x01" * 32, ("127.0.0.1", 4000))


def TestOneInput(data: bytes) -> None:  # atheris calls it by this name
    try:
        frames = parse_frames(data)
    except ProtocolError:
        pass
    else:
        again = parse_frames(encode_frames(frames))
        if again != frames and not _only_padding_merge(frames, again):
            raise AssertionError(f"frames did not round-trip: {frames!r} -> {again!r}")
    try:
        message = dht_messages.decode(data)
    except ProtocolError:
        pass
    else:
        if dht_messages.decode(dht_messages.encode(message)) != message:
            raise AssertionError(f"DHT message did not round-trip: {message!r}")
    _DHT.receive(_SENDER, data, 0.0)
    _DHT.messages_to_send()
    for decoder in (parse_packet, decode_payload, TransportSettings.decode, decode_preference):
        with contextlib.suppress(ProtocolError):
            decoder(data)  # type: ignore[operator]


def _only_padding_merge(first: list[object], second: list[object]) -> bool:
    from stt_proto.frames import PaddingFrame

    strip = [f for f in first if not isinstance(f, PaddingFrame)]
    return strip == [f for f in second if not isinstance(f, PaddingFrame)]


if __name__ == "__main__":
    from fuzz.runner import fuzz

    fuzz(TestOneInput)
