"""What a DHT call is: Kademlia's constants, the kinds of user operation, and an operation in
progress with what it has gathered so far."""

from __future__ import annotations

from enum import Enum

import attrs

from ..errors import STTError, UsageError
from .ids import ALPHA, K
from .lookup import Lookup
from .records import SignedRecord


@attrs.frozen(slots=True)
class DHTConfig:
    """Kademlia's constants. The defaults are the paper's; tests shorten the intervals."""

    k: int = K
    alpha: int = ALPHA
    rpc_timeout: float = 2.0  # seconds an RPC may take, handshake to a new contact included
    record_ttl: float = 86400.0  # how long holders keep a value put() with no ttl
    republish_interval: float = 3600.0  # how often this node stores its values again
    refresh_interval: float = 3600.0  # buckets unheard-from this long are looked up afresh
    get_quorum: int = 3  # holders with a valid record a get hears from before it may stop
    # Limits against hostile peers (docs/dht.md, "Limits").
    lookup_timeout: float = 10.0  # a lookup then ends with what it has
    lookup_dials: int = 2 * K  # queries per lookup to contacts no handshake has proven yet
    dial_backoff: float = 60.0  # an address whose unproven dial failed is left alone this long
    max_records: int = 20_000  # records held for others, in all
    store_quota: int = 100  # records a publisher may keep here...
    contact_store_quota: int = 400  # ...one in the routing table...
    near_store_quota: int = 1_000  # ...one among the k contacts nearest this node

    def __attrs_post_init__(self) -> None:
        if min(self.k, self.alpha, self.get_quorum, self.lookup_dials, self.max_records,
               self.store_quota, self.contact_store_quota, self.near_store_quota) < 1:
            raise UsageError("DHT k, alpha, get_quorum, lookup_dials, max_records and the "
                             "store quotas must be at least 1")
        if min(self.rpc_timeout, self.record_ttl, self.republish_interval,
               self.refresh_interval, self.lookup_timeout, self.dial_backoff) <= 0:
            raise UsageError("DHT timeouts and intervals must be positive")
        if self.republish_interval >= self.record_ttl:
            raise UsageError("republish_interval must be shorter than record_ttl, or values "
                             "would lapse between re-publications")


class OpKind(Enum):
    BOOTSTRAP = "bootstrap"
    FIND_NODE = "find_node"
    GET = "get"
    GET_ALL = "get_all"
    PUT = "put"


class Operation:
    """A user's DHT call in progress. When ``done``, ``error`` is None and ``result`` holds the
    answer: bootstrap the routing table's size; find_node the k nearest contacts that answered;
    get the freshest verified value (or None); get_all every publisher's verified record, as
    :class:`DHTRecord` s, freshest first; put how many nodes stored the value. Gets leave the
    verified records found, one per publisher and freshest first, in ``records``."""

    __slots__ = ("done", "error", "found", "id", "internal", "kind", "lookup", "publisher",
                 "record", "records", "result", "store_pending", "target", "ttl", "verified")

    def __init__(self, op_id: int, kind: OpKind, target: bytes, *, internal: bool) -> None:
        self.id = op_id
        self.kind = kind
        self.target = target
        self.internal = internal  # re-publication or refresh: nobody waits for it
        self.done = False
        self.error: STTError | None = None
        self.result: object = None
        self.records: list[SignedRecord] = []
        self.found: dict[bytes, SignedRecord] = {}  # a get's best record per publisher so far
        self.verified: set[SignedRecord] = set()  # records already checked (holders repeat them)
        self.publisher: bytes | None = None  # a get wanting one publisher's record only
        self.lookup: Lookup | None = None
        self.store_pending = 0
        self.record: SignedRecord | None = None  # a put's
        self.ttl = 0
