"""The Kademlia DHT, sans-I/O: routing table, RPC codec, value store, iterative lookups.

:class:`DHT` is the protocol logic alone: messages in from authenticated contacts, messages out
to contacts, deadlines, finished operations. :class:`DHTLinks` carries those messages over
encrypted STT sessions opened for the purpose, so a contact's node id is always the one its Noise
handshake proved; the :class:`~stt_proto.Endpoint` owns both. Values are records signed by
their publisher (:mod:`.records`), checked by every storer and reader.
"""

from __future__ import annotations

from .ids import ALPHA, ID_LEN, Contact, K, distance
from .messages import MAX_VALUE_SIZE
from .records import DHTRecord, SignedRecord, record_key
from .routing import RoutingTable
from .service import DHT, DHTConfig, Operation
from .storage import Record, ValueStore

__all__ = [
    "ALPHA",
    "DHT",
    "ID_LEN",
    "K",
    "MAX_VALUE_SIZE",
    "Contact",
    "DHTConfig",
    "DHTRecord",
    "Operation",
    "Record",
    "RoutingTable",
    "SignedRecord",
    "ValueStore",
    "distance",
    "record_key",
]
