"""What the Noise handshake payloads carry, and the AEAD negotiation.

Payloads are a list of ``(key, length, value)`` records with varint keys and lengths. Message 1
(cleartext but hashed into the handshake) carries the version, the initiator's connection id and
cipher preference, and padding. Message 2 carries the responder's id, preference, chosen cipher,
transport settings and signing key; message 3 the initiator's settings and signing key. A node id
hashes the static key together with the signing key, so each side recomputes the other's id from
the static key Noise proved and the signing key the payload carried. Because every payload is
covered by the handshake hash, rewriting a preference list makes the next message fail to
decrypt: a downgrade cannot succeed.
"""

from __future__ import annotations

from enum import IntEnum

import attrs

from .errors import DecodeError, HandshakeError
from .varint import decode_varint, encode_varint


class Field(IntEnum):
    VERSION = 1
    CONNECTION_ID = 2
    CIPHER_PREFERENCE = 3
    CHOSEN_CIPHER = 4
    SETTINGS = 5
    PURPOSE = 6  # message 3: what the initiator opens the session for (see Purpose)
    SIGNING_KEY = 7  # messages 2 and 3: the sender's Ed25519 public key, part of its node id
    PADDING = 0x3F


class Purpose(IntEnum):
    """Why a session exists. Service sessions (the DHT's) never reach ``node.accept()``."""

    APPLICATION = 0
    DHT = 1


CIPHER_IDS = {"AESGCM": 1, "ChaChaPoly": 2}
CIPHER_NAMES = {v: k for k, v in CIPHER_IDS.items()}


class Setting(IntEnum):
    MAX_FRAME_SIZE = 1
    MAX_CONCURRENT_STREAMS = 2
    MAX_MESSAGE_SIZE = 3
    INITIAL_MAX_DATA = 4
    INITIAL_MAX_STREAM_DATA = 5
    MAX_DATAGRAM_SIZE = 6
    KEEP_ALIVE_TIMEOUT_MS = 7


@attrs.frozen(slots=True)
class TransportSettings:
    """The limits a side announces to its peer."""

    max_frame_size: int = 16384
    max_concurrent_streams: int = 256
    max_message_size: int = 16 * 1024**2
    initial_max_data: int = 2 * 1024**2
    initial_max_stream_data: int = 1024**2
    max_datagram_size: int = 1200
    keep_alive_timeout_ms: int = 30_000

    def encode(self) -> bytes:
        return b"".join(encode_varint(key) + encode_varint(getattr(self, name))
                        for key, name in _SETTING_NAMES.items())

    @classmethod
    def decode(cls, raw: bytes) -> TransportSettings:
        values: dict[str, int] = {}
        names = _SETTING_NAMES
        pos = 0
        while pos < len(raw):
            key, pos = decode_varint(raw, pos)
            value, pos = decode_varint(raw, pos)
            name = names.get(key)
            if name is None:
                continue  # unknown settings are ignored, for forward compatibility
            if name in values:
                raise HandshakeError(f"setting {name} announced twice")
            values[name] = value
        settings = cls(**values)
        if not 1200 <= settings.max_frame_size <= 65507:
            raise HandshakeError(
                f"peer max_frame_size {settings.max_frame_size} not in 1200..65507")
        if settings.max_concurrent_streams < 1 or settings.max_message_size < 1:
            raise HandshakeError("peer announced a zero stream or message limit")
        return settings


# Each setting's key and attribute, in order; built once (iterating an enum is slow, and
# every handshake encodes settings twice and decodes them twice).
_SETTING_NAMES: dict[int, str] = {
    int(setting): field.name
    for setting, field in zip(Setting, attrs.fields(TransportSettings), strict=True)}


def encode_payload(fields: dict[Field, bytes], pad_to: int = 0) -> bytes:
    """Encode records; with ``pad_to``, add a PADDING record so the result is at least that long."""
    out = bytearray()
    for key, value in fields.items():
        out += encode_varint(key) + encode_varint(len(value)) + value
    if pad_to > len(out):
        filler = max(0, pad_to - len(out) - 3)  # the key and a 2-byte length
        out += encode_varint(Field.PADDING) + encode_varint(filler) + bytes(filler)
    return bytes(out)


def decode_payload(raw: bytes) -> dict[int, bytes]:
    """Decode records, rejecting duplicates and truncation; unknown keys are kept and ignored."""
    fields: dict[int, bytes] = {}
    pos = 0
    try:
        while pos < len(raw):
            key, pos = decode_varint(raw, pos)
            length, pos = decode_varint(raw, pos)
            if pos + length > len(raw):
                raise HandshakeError("handshake payload record truncated")
            if key in fields:
                raise HandshakeError(f"handshake payload field {key} repeated")
            fields[key] = raw[pos : pos + length]
            pos += length
    except DecodeError as exc:
        raise HandshakeError(f"malformed handshake payload: {exc}") from None
    return fields


def require(fields: dict[int, bytes], key: Field) -> bytes:
    if key not in fields:
        raise HandshakeError(f"handshake payload lacks the {key.name} field")
    return fields[key]


def encode_preference(names: tuple[str, ...]) -> bytes:
    return bytes(CIPHER_IDS[n] for n in names)


def decode_preference(raw: bytes) -> tuple[str, ...]:
    try:
        names = tuple(CIPHER_NAMES[b] for b in raw)
    except KeyError:
        raise HandshakeError("unknown cipher id in preference list") from None
    if not names or len(set(names)) != len(names) or "ChaChaPoly" not in names:
        raise HandshakeError("invalid cipher preference list")
    return names


def negotiate_cipher(initiator: tuple[str, ...], responder: tuple[str, ...]) -> str:
    """AES-256-GCM only when both sides put it first; ChaCha20-Poly1305 (mandatory) otherwise."""
    if initiator[0] == "AESGCM" and responder[0] == "AESGCM":
        return "AESGCM"
    return "ChaChaPoly"
