"""The DHT's RPC messages and their codec. Every decoder input is hostile: anything malformed,
truncated, oversized or with trailing bytes raises :class:`DecodeError` and is dropped.

Layout: ``kind (1) | sender port (2) | rpc id (8) | body``. The port is the sender's STT socket
port, for transports where the observed source port is not the one it listens on (WebSocket).
Bodies: FIND_NODE a 32-byte target; FIND_VALUE a 32-byte key, optionally followed by the one
publisher id wanted; NODES a count and that many contacts (id, family, address, port); VALUE a
count and that many signed records, each followed by its ttl left in seconds; STORE a key, ttl
and one signed record (see :mod:`.records`); STORED one byte (1 stored, 0 refused); PING and PONG
nothing.
"""

from __future__ import annotations

import ipaddress
import struct
from enum import IntEnum

import attrs

from ..errors import DecodeError
from ..varint import decode_varint, encode_varint
from .ids import ID_LEN, Contact, K
from .records import MAX_VALUE_SIZE, SignedRecord

__all__ = ["MAX_RECORDS_PER_REPLY", "MAX_TTL", "MAX_VALUE_SIZE", "REQUESTS", "Kind", "Message",
           "WireRecord", "decode", "encode"]

MAX_RECORDS_PER_REPLY = 8  # publishers' records for one key in one VALUE reply
MAX_TTL = 7 * 86400  # seconds a STORE may ask a value to live
_HEADER = struct.Struct("!BHQ")


class Kind(IntEnum):
    PING = 1
    PONG = 2
    FIND_NODE = 3
    NODES = 4
    FIND_VALUE = 5
    VALUE = 6
    STORE = 7
    STORED = 8


REQUESTS = frozenset({Kind.PING, Kind.FIND_NODE, Kind.FIND_VALUE, Kind.STORE})


@attrs.frozen(slots=True)
class WireRecord:
    """One publisher's signed value for a key, as a VALUE reply carries it."""

    record: SignedRecord
    ttl: int  # seconds it has left at the replying node


@attrs.frozen(slots=True)
class Message:
    kind: Kind
    rpc_id: int
    port: int
    target: bytes = b""  # FIND_NODE, FIND_VALUE, STORE (the key)
    publisher: bytes = b""  # FIND_VALUE: only this publisher's record is wanted (or b"": all)
    contacts: tuple[Contact, ...] = ()  # NODES
    records: tuple[WireRecord, ...] = ()  # VALUE
    record: SignedRecord | None = None  # STORE
    ttl: int = 0  # STORE
    ok: bool = False  # STORED

    @property
    def is_request(self) -> bool:
        return self.kind in REQUESTS


def encode(message: Message) -> bytes:
    kind = message.kind
    out = bytearray(_HEADER.pack(kind, message.port, message.rpc_id))
    if kind in (Kind.FIND_NODE, Kind.FIND_VALUE):
        out += message.target
        if kind is Kind.FIND_VALUE:
            out += message.publisher
    elif kind is Kind.NODES:
        out.append(len(message.contacts))
        for contact in message.contacts:
            out += contact.node_id + _encode_address(contact.address)
    elif kind is Kind.VALUE:
        out.append(len(message.records))
        for wire in message.records:
            out += wire.record.encode() + encode_varint(wire.ttl)
    elif kind is Kind.STORE:
        if message.record is None:
            raise ValueError("a STORE message needs its record")
        out += message.target + encode_varint(message.ttl) + message.record.encode()
    elif kind is Kind.STORED:
        out.append(1 if message.ok else 0)
    return bytes(out)


def decode(data: bytes | bytearray | memoryview) -> Message:
    raw = bytes(data)
    if len(raw) < _HEADER.size:
        raise DecodeError(f"DHT message of {len(raw)} bytes is shorter than its header")
    kind_value, port, rpc_id = _HEADER.unpack_from(raw)
    try:
        kind = Kind(kind_value)
    except ValueError:
        raise DecodeError(f"unknown DHT message kind {kind_value}") from None
    body = raw[_HEADER.size:]
    if kind in (Kind.PING, Kind.PONG):
        _expect_end(body, 0, kind)
        return Message(kind, rpc_id, port)
    if kind is Kind.FIND_NODE:
        _expect_end(body, ID_LEN, kind)
        return Message(kind, rpc_id, port, target=body)
    if kind is Kind.FIND_VALUE:
        if len(body) not in (ID_LEN, 2 * ID_LEN):
            raise DecodeError(f"FIND_VALUE body is {len(body)} bytes, expected {ID_LEN} or "
                              f"{2 * ID_LEN}")
        return Message(kind, rpc_id, port, target=body[:ID_LEN], publisher=body[ID_LEN:])
    if kind is Kind.NODES:
        return Message(kind, rpc_id, port, contacts=_decode_contacts(body))
    if kind is Kind.VALUE:
        return Message(kind, rpc_id, port, records=_decode_records(body))
    if kind is Kind.STORE:
        if len(body) < ID_LEN:
            raise DecodeError("STORE lacks its key")
        ttl, pos = decode_varint(body, ID_LEN)
        if not 1 <= ttl <= MAX_TTL:
            raise DecodeError(f"STORE ttl {ttl} s not in 1..{MAX_TTL}")
        record, pos = SignedRecord.decode(body, pos)
        if pos != len(body):
            raise DecodeError("trailing bytes after the STORE record")
        return Message(kind, rpc_id, port, target=body[:ID_LEN], record=record, ttl=ttl)
    # STORED
    _expect_end(body, 1, kind)
    if body[0] > 1:
        raise DecodeError(f"STORED flag {body[0]} is neither 0 nor 1")
    return Message(kind, rpc_id, port, ok=body[0] == 1)


def _expect_end(body: bytes, size: int, kind: Kind) -> None:
    if len(body) != size:
        raise DecodeError(f"{kind.name} body is {len(body)} bytes, expected {size}")


def _encode_address(address: tuple[str, int]) -> bytes:
    ip = ipaddress.ip_address(address[0])
    return bytes([ip.version]) + ip.packed + address[1].to_bytes(2, "big")


def _decode_contacts(body: bytes) -> tuple[Contact, ...]:
    if not body:
        raise DecodeError("NODES lacks its count")
    count = body[0]
    if count > K:
        raise DecodeError(f"NODES carries {count} contacts, more than {K}")
    pos = 1
    contacts = []
    for _ in range(count):
        if pos + ID_LEN + 1 > len(body):
            raise DecodeError("NODES contact truncated")
        node_id = body[pos:pos + ID_LEN]
        family = body[pos + ID_LEN]
        pos += ID_LEN + 1
        size = {4: 4, 6: 16}.get(family)
        if size is None:
            raise DecodeError(f"NODES contact has address family {family}")
        if pos + size + 2 > len(body):
            raise DecodeError("NODES contact address truncated")
        ip = ipaddress.ip_address(body[pos:pos + size])
        port = int.from_bytes(body[pos + size:pos + size + 2], "big")
        pos += size + 2
        if port == 0:
            raise DecodeError("NODES contact has port 0")
        contacts.append(Contact(node_id, (str(ip), port)))
    if pos != len(body):
        raise DecodeError("trailing bytes after NODES contacts")
    return tuple(contacts)


def _decode_records(body: bytes) -> tuple[WireRecord, ...]:
    if not body:
        raise DecodeError("VALUE lacks its count")
    count = body[0]
    if not 1 <= count <= MAX_RECORDS_PER_REPLY:
        raise DecodeError(f"VALUE carries {count} records, not 1..{MAX_RECORDS_PER_REPLY}")
    pos = 1
    records = []
    for _ in range(count):
        record, pos = SignedRecord.decode(body, pos)
        ttl, pos = decode_varint(body, pos)
        if ttl > MAX_TTL:
            raise DecodeError(f"VALUE record ttl {ttl} s exceeds {MAX_TTL}")
        records.append(WireRecord(record, ttl))
    if pos != len(body):
        raise DecodeError("trailing bytes after VALUE records")
    return tuple(records)
