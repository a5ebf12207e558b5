"""Node ids, contacts and the XOR metric."""

from __future__ import annotations

import attrs

from ..errors import UsageError
from ..events import Address

ID_LEN = 32  # 256-bit ids: a node's id is the BLAKE2s digest of its static key
ID_BITS = ID_LEN * 8
K = 20  # bucket size and replication factor
ALPHA = 3  # lookup parallelism


@attrs.frozen(slots=True)
class Contact:
    """A node that can be reached: its id and the address of its STT socket."""

    node_id: bytes
    address: Address


def distance(a: bytes, b: bytes) -> int:
    """The Kademlia XOR distance between two ids, as an integer."""
    return int.from_bytes(a, "big") ^ int.from_bytes(b, "big")


def bucket_index(own: bytes, other: bytes) -> int:
    """Which k-bucket ``other`` belongs in: the index of the highest differing bit (0..255)."""
    return distance(own, other).bit_length() - 1


def check_id(value: bytes | bytearray | memoryview, what: str = "DHT node id") -> bytes:
    """A 32-byte id as bytes, or a clear UsageError."""
    if not isinstance(value, bytes | bytearray | memoryview) or len(value) != ID_LEN:
        raise UsageError(f"a {what} must be {ID_LEN} bytes (stt_proto.hash_data gives one), "
                         f"got {value!r:.60}")
    return bytes(value)
