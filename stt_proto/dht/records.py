"""Signed DHT records: what a publisher puts, and how storers and readers check it.

A record carries its publisher's two public keys (their hash is the publisher's node id, so
nobody can name another node as publisher), a per-(publisher, key) sequence number, the
publisher's clock in milliseconds when it put the value, the value, and an Ed25519 signature
over all of that and the key. Storers verify before storing and readers verify every record a
reply carries: a forged or altered record is dropped and counted, never returned.
"""

from __future__ import annotations

import hashlib

import attrs

from ..errors import DecodeError
from ..identity import KEY_LEN, SIGNATURE_LEN, Identity, node_id_for, verify_signature
from ..varint import decode_varint, encode_varint
from .ids import ID_LEN, check_id

MAX_VALUE_SIZE = 8192  # bytes in one stored value
MAX_SEQ = (1 << 62) - 1  # a varint's range
_SIGNING_LABEL = b"STT DHT record v1\x00"
_KEY_LABEL = b"STT DHT record key v1\x00"


def record_key(publisher: bytes, name: bytes) -> bytes:
    """The key for ``publisher``'s record called ``name``: BLAKE2s-256 over both. Read it back
    with ``get(key, publisher=publisher)`` so only that publisher's record counts: others can
    store under the same key, but no one else can sign as ``publisher``."""
    publisher = check_id(publisher, "publisher node id")
    return hashlib.blake2s(_KEY_LABEL + publisher + bytes(name), digest_size=ID_LEN).digest()


def signed_message(key: bytes, static_key: bytes, signing_key: bytes, seq: int,
                   timestamp_ms: int, value: bytes) -> bytes:
    """What a record's signature covers (domain-separated; every field fixed-size or
    length-prefixed, so no two records share an encoding)."""
    return b"".join((_SIGNING_LABEL, key, static_key, signing_key, seq.to_bytes(8, "big"),
                     timestamp_ms.to_bytes(8, "big"), encode_varint(len(value)), value))


@attrs.frozen(slots=True)
class SignedRecord:
    """One publisher's signed value for a key (the key itself is not carried: it is the key
    asked for, and the signature covers it)."""

    static_key: bytes  # the publisher's X25519 public key
    signing_key: bytes  # the publisher's Ed25519 public key
    seq: int  # rises with every put of this key by this publisher
    timestamp_ms: int  # the publisher's clock when it put the value
    value: bytes
    signature: bytes

    @property
    def publisher(self) -> bytes:
        """The publisher's node id, which the two keys define."""
        return node_id_for(self.static_key, self.signing_key)

    @property
    def freshness(self) -> tuple[int, int, bytes]:
        """Newer sorts higher: the publisher's time, then its sequence, then (a tie between
        publishers) the publisher id."""
        return (self.timestamp_ms, self.seq, self.publisher)

    def verify(self, key: bytes) -> bool:
        """Whether the signature holds for ``key``. Never raises."""
        return verify_signature(self.signing_key, self.signature, signed_message(
            key, self.static_key, self.signing_key, self.seq, self.timestamp_ms, self.value))

    @classmethod
    def sign(cls, identity: Identity, key: bytes, value: bytes, seq: int,
             timestamp_ms: int) -> SignedRecord:
        static, signing = identity.public_key, identity.signing_public
        signature = identity.sign(signed_message(key, static, signing, seq, timestamp_ms, value))
        return cls(static, signing, seq, timestamp_ms, value, signature)

    def encode(self) -> bytes:
        return b"".join((self.static_key, self.signing_key, encode_varint(self.seq),
                         encode_varint(self.timestamp_ms), encode_varint(len(self.value)),
                         self.value, self.signature))

    @classmethod
    def decode(cls, body: bytes, pos: int) -> tuple[SignedRecord, int]:
        """A record starting at ``pos``, and where it ends. Raises DecodeError."""
        if pos + 2 * KEY_LEN > len(body):
            raise DecodeError("DHT record keys truncated")
        static, signing = body[pos:pos + KEY_LEN], body[pos + KEY_LEN:pos + 2 * KEY_LEN]
        seq, pos = decode_varint(body, pos + 2 * KEY_LEN)
        timestamp_ms, pos = decode_varint(body, pos)
        size, pos = decode_varint(body, pos)
        if size > MAX_VALUE_SIZE:
            raise DecodeError(f"DHT record value of {size} bytes exceeds {MAX_VALUE_SIZE}")
        end = pos + size + SIGNATURE_LEN
        if end > len(body):
            raise DecodeError("DHT record value or signature truncated")
        return cls(static, signing, seq, timestamp_ms, body[pos:pos + size],
                   body[pos + size:end]), end


@attrs.frozen(slots=True)
class DHTRecord:
    """A verified record as ``get_all`` returns it."""

    publisher: bytes  # the publisher's node id
    value: bytes
    seq: int
    timestamp_ms: int  # the publisher's clock when it put the value (Unix ms in the runtimes)

    @classmethod
    def of(cls, record: SignedRecord) -> DHTRecord:
        return cls(record.publisher, record.value, record.seq, record.timestamp_ms)
