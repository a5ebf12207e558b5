"""The DHT's protocol logic: answer RPCs, run lookups, store, re-publish, expire, refresh.

Messages come in from contacts whose ids their sessions' handshakes proved
(:meth:`DHT.receive`) and go out as ``(contact, bytes)`` pairs (:meth:`DHT.messages_to_send`); the
caller carries them. Time only moves through ``now``. Operations started by the user
(:meth:`find_node`, :meth:`get`, :meth:`get_all`, :meth:`put`, :meth:`bootstrap`) finish into
:meth:`next_done`. Values travel as records signed by their publisher (:mod:`.records`): storers
take a record only from its publisher and only with a valid signature, and readers check every
record they are handed, so a forged one is dropped and counted (``dht_bad_records``).
"""

from __future__ import annotations

import heapq
from collections import deque
from collections.abc import Iterable

import attrs

from ..errors import DecodeError, DHTError, UsageError
from ..identity import Identity
from ..randomness import RandomSource
from .dialing import DialGuard
from .ids import Contact, check_id
from .lookup import Lookup
from .messages import (
    MAX_RECORDS_PER_REPLY,
    MAX_TTL,
    MAX_VALUE_SIZE,
    Kind,
    Message,
    WireRecord,
    decode,
    encode,
)
from .operations import DHTConfig, Operation, OpKind
from .records import MAX_SEQ, DHTRecord, SignedRecord
from .routing import RoutingTable
from .rpcs import OnReply, Rpc, RpcTable
from .storage import ValueStore

__all__ = ["DHT", "DHTConfig", "OpKind", "Operation"]

@attrs.define(slots=True)
class _Publication:
    record: SignedRecord
    ttl: int
    until: float | None  # stop re-publishing then (a put with an explicit ttl)
    due: float


class DHT:
    """The DHT of the node ``own_id``. It signs what it puts with ``identity``; without one it
    serves and reads but cannot publish."""

    def __init__(self, own_id: bytes, rng: RandomSource, config: DHTConfig | None = None,
                 now: float = 0.0, *, identity: Identity | None = None) -> None:
        if identity is not None and identity.node_id != own_id:
            raise UsageError("the DHT's identity must be the node's own")
        self.own_id = own_id
        self.identity = identity
        self.config = config or DHTConfig()
        self.routing_table = RoutingTable(own_id, self.config.k, now)
        self.store = ValueStore(self.config.max_records, self.config.store_quota)
        self._guard = DialGuard(self.config.dial_backoff)
        self.port = 0  # this node's listening port, announced in every message
        self._rng = rng
        self._out: list[tuple[Contact, bytes]] = []
        self._rpcs = RpcTable(rng)
        self._done: deque[Operation] = deque()
        self._looking: dict[int, Operation] = {}  # operations whose lookup runs, by id
        self._lookup_heap: list[tuple[float, int]] = []  # their deadlines
        self._published: dict[bytes, _Publication] = {}
        self._republish_heap: list[tuple[float, bytes]] = []
        self._next_refresh = now + self.config.refresh_interval
        self._next_op = 0
        self._deadline: float | None = None
        self._deadline_stale = True
        self.malformed = 0
        self.unsolicited = 0
        self.requests_served = 0
        self.rpc_timeouts = 0
        self.bad_records = 0  # records whose signature or publisher did not check out
        self.lookups_timed_out = 0
        self.contacts_skipped = 0  # NODES contacts a lookup passed over (per-lookup caps)

    # -- operations -------------------------------------------------------------------------------

    def bootstrap(self, seeds: Iterable[Contact], now: float) -> Operation:
        """Join through ``seeds``: look our own id up, which fills the routing table."""
        op = self._start(OpKind.BOOTSTRAP, self.own_id, internal=False)
        seeds = list(seeds)
        if not seeds and not len(self.routing_table):
            raise UsageError("bootstrap needs at least one (host, port, node_id) seed")
        self._lookup(op, now, extra=seeds)
        return op

    def find_node(self, node_id: bytes, now: float, *, internal: bool = False) -> Operation:
        op = self._start(OpKind.FIND_NODE, check_id(node_id), internal=internal)
        self._lookup(op, now)
        return op

    def get(self, key: bytes, now: float, *, publisher: bytes | None = None) -> Operation:
        """Look ``key`` up; the result is the freshest verified value (only ``publisher``'s,
        when given: see :func:`~stt_proto.dht.records.record_key`)."""
        return self._get(OpKind.GET, key, now, publisher)

    def get_all(self, key: bytes, now: float) -> Operation:
        """Look ``key`` up; the result is every publisher's verified record, freshest first."""
        return self._get(OpKind.GET_ALL, key, now, None)

    def _get(self, kind: OpKind, key: bytes, now: float, publisher: bytes | None) -> Operation:
        op = self._start(kind, check_id(key, "DHT key"), internal=False)
        if publisher is not None:
            op.publisher = check_id(publisher, "publisher node id")
        local = self.store.get(op.target, now, op.publisher)
        for stored in local:  # verified when stored
            op.found[stored.publisher] = stored.signed
        self._lookup(op, now, want_value=True, holders=1 if local else 0)
        return op

    def put(self, key: bytes, value: bytes | bytearray | memoryview, now: float,
            ttl: float | None = None, *, timestamp_ms: int | None = None) -> Operation:
        """Sign ``value`` and store it under ``key`` at the k nodes nearest it, and keep
        re-publishing it (until ``ttl`` seconds have passed, when one is given).
        ``timestamp_ms`` is the publisher's clock that readers rank publishers by (the runtimes
        pass Unix time; by default ``now`` in ms, which suits one shared simulated clock)."""
        key = check_id(key, "DHT key")
        value = bytes(value)
        if self.identity is None:
            raise UsageError("this DHT has no identity to sign records with")
        if len(value) > MAX_VALUE_SIZE:
            raise UsageError(f"a DHT value is at most {MAX_VALUE_SIZE} bytes, got {len(value)}")
        if ttl is not None and not 1 <= ttl <= MAX_TTL:
            raise UsageError(f"ttl must be in 1..{MAX_TTL} seconds, got {ttl!r}")
        stamp = int(now * 1000) if timestamp_ms is None else int(timestamp_ms)
        if not 0 <= stamp <= MAX_SEQ:
            raise UsageError(f"timestamp_ms must be in 0..{MAX_SEQ}, got {timestamp_ms!r}")
        previous = self._published.get(key)
        # Seeded from the clock so a restarted node (which forgot its last sequence) still
        # outranks the records it put before.
        seq = max(previous.record.seq + 1 if previous else 1, stamp)
        if seq > MAX_SEQ:
            raise UsageError(f"the sequence number of {key.hex()} has run out")
        record = SignedRecord.sign(self.identity, key, value, seq, stamp)
        seconds = int(self.config.record_ttl if ttl is None else ttl)
        due = now + self.config.republish_interval
        self._published[key] = _Publication(record, seconds, None if ttl is None else now + ttl,
                                            due)
        heapq.heappush(self._republish_heap, (due, key))
        return self._put(key, record, seconds, now, internal=False)

    def _put(self, key: bytes, record: SignedRecord, ttl: int, now: float, *,
             internal: bool) -> Operation:
        op = self._start(OpKind.PUT, key, internal=internal)
        op.record, op.ttl = record, ttl
        self._lookup(op, now)
        return op

    def cancel(self, op: Operation) -> None:
        """Give up on ``op`` (its caller went away); late replies are ignored."""
        op.done = True

    def next_done(self) -> Operation | None:
        """The next user operation that finished."""
        return self._done.popleft() if self._done else None

    # -- input ------------------------------------------------------------------------------------

    def receive(self, sender: Contact, data: bytes | bytearray | memoryview,
                now: float) -> None:
        """A message from ``sender``, whose id its session's handshake proved. Never raises."""
        try:
            message = decode(data)
        except DecodeError:
            self.malformed += 1
            return
        self._deadline_stale = True
        stale = self.routing_table.observe(sender, now)
        if stale is not None:  # a full bucket: keep its oldest member only if it still answers
            self._request(stale, Kind.PING, now, _ignore)
        if message.is_request:
            self._answer(sender, message, now)
            return
        rpc = self._rpcs.take_reply(sender.node_id, message)
        if rpc is None:
            self.unsolicited += 1
            return
        if rpc.unproven:
            self._guard.settled(rpc.contact, False, now)
        rpc.on_reply(message, now)

    def peer_unreachable(self, node_id: bytes, now: float) -> None:
        """The session to ``node_id`` failed (refused, timed out, wrong id): fail its RPCs now
        rather than at their timeouts."""
        for rpc in self._rpcs.take_peer(node_id):
            self._rpc_failed(rpc, now)

    def _answer(self, sender: Contact, request: Message, now: float) -> None:
        self.requests_served += 1
        kind, rpc_id, port = request.kind, request.rpc_id, self.port
        if kind is Kind.PING:
            reply = Message(Kind.PONG, rpc_id, port)
        elif kind is Kind.STORE:
            record = request.record
            # Only a record's publisher stores it (so nobody replays a superseded record to a
            # node that never saw the newer one), and only with a signature that holds.
            if (record is None or record.publisher != sender.node_id
                    or not record.verify(request.target)):
                self.bad_records += 1
                ok = False
            else:
                ok = self.store.put(request.target, record, request.ttl, now,
                                    self._quota(record.publisher))
            reply = Message(Kind.STORED, rpc_id, port, ok=ok)
        else:
            records = self.store.get(request.target, now, request.publisher or None) \
                if kind is Kind.FIND_VALUE else []
            if records:
                reply = Message(Kind.VALUE, rpc_id, port, records=tuple(
                    WireRecord(r.signed, max(1, int(r.expires_at - now)))
                    for r in records[:MAX_RECORDS_PER_REPLY]))
            else:
                nearest = self.routing_table.closest(request.target, exclude=sender.node_id)
                reply = Message(Kind.NODES, rpc_id, port, contacts=tuple(nearest))
        self._out.append((sender, encode(reply)))

    # -- lookups ----------------------------------------------------------------------------------

    def _start(self, kind: OpKind, target: bytes, *, internal: bool) -> Operation:
        self._next_op += 1
        self._deadline_stale = True
        return Operation(self._next_op, kind, target, internal=internal)

    def _lookup(self, op: Operation, now: float, *, extra: list[Contact] | None = None,
                want_value: bool = False, holders: int = 0) -> None:
        cfg = self.config
        lookup = op.lookup = Lookup(op.target, self.own_id, cfg.k, cfg.alpha, want_value,
                                    cfg.get_quorum, max_dials=cfg.lookup_dials,
                                    deadline=now + cfg.lookup_timeout)
        lookup.holders = holders
        lookup.add(self.routing_table.closest(op.target), proven=True)
        if extra:
            lookup.add(extra, proven=True)  # seeds: the user vouches for them
        self._looking[op.id] = op
        heapq.heappush(self._lookup_heap, (lookup.deadline, op.id))
        self._advance(op, now)

    def _advance(self, op: Operation, now: float) -> None:
        lookup = op.lookup
        if op.done or lookup is None:
            return
        if now >= lookup.deadline and not lookup.finished:
            lookup.stop()
            self.lookups_timed_out += 1
        kind = Kind.FIND_VALUE if lookup.want_value else Kind.FIND_NODE
        for contact in self._queries(lookup):

            def on_reply(reply: Message | None, at: float,
                         node_id: bytes = contact.node_id) -> None:
                if op.done:
                    return  # a late reply (the quorum was met, or the caller gave up)
                if reply is None:
                    lookup.failed(node_id)
                else:
                    unproven = self._learn(lookup, node_id, reply.contacts, at)
                    lookup.answered(node_id, unproven, self._take_records(op, reply.records))
                self._advance(op, at)

            self._request(contact, kind, now, on_reply, target=op.target,
                          publisher=op.publisher or b"")
        if lookup.finished:
            op.lookup = None
            self._looking.pop(op.id, None)
            self.contacts_skipped += lookup.skipped
            self._lookup_finished(op, lookup, now)

    def _learn(self, lookup: Lookup, responder: bytes, contacts: tuple[Contact, ...],
               now: float) -> tuple[Contact, ...]:
        """Add a NODES reply's contacts the routing table knows to the lookup as proven;
        return the unproven claims that may be dialed (:class:`.dialing.DialGuard`)."""
        proven, unproven = self._guard.sort(contacts, lookup.address_of(responder),
                                            self.routing_table, now)
        if proven:
            lookup.add(proven, proven=True)
        return tuple(unproven)

    def _queries(self, lookup: Lookup) -> list[Contact]:
        """The lookup's next queries, less those to an address where another id is being
        dialed (each of those fails at once, which may free a slot for another)."""
        chosen: list[Contact] = []
        while queries := lookup.next_queries():
            busy = [c for c in queries if c.node_id not in self.routing_table
                    and self._guard.busy(c)]
            for contact in busy:
                lookup.failed(contact.node_id)
            chosen += [c for c in queries if c not in busy]
            if not busy:
                break
        return chosen

    def _lookup_finished(self, op: Operation, lookup: Lookup, now: float) -> None:
        nearest = lookup.result()
        if op.kind is OpKind.PUT:
            self._store_at(op, nearest, now)
            return
        if op.kind is OpKind.BOOTSTRAP and not len(self.routing_table):
            op.error = DHTError("bootstrap failed: none of the seeds answered")
        elif op.kind not in (OpKind.GET, OpKind.GET_ALL):  # a get took records as they came
            op.result = nearest
        self._finish(op, now)

    def _take_records(self, op: Operation, records: tuple[WireRecord, ...]) -> bool:
        """Keep a reply's records that verify (the freshest per publisher); count the rest.
        Whether the reply held any valid record."""
        valid = False
        key, wanted, verified = op.target, op.publisher, op.verified
        for wire in records:
            record = wire.record
            publisher = record.publisher
            if wanted is not None and publisher != wanted:
                continue  # not the publisher asked for: not worth verifying
            if record not in verified:
                if not record.verify(key):
                    self.bad_records += 1
                    continue
                verified.add(record)
            valid = True
            best = op.found.get(publisher)
            if best is None or record.freshness > best.freshness:
                op.found[publisher] = record
        return valid

    def _store_at(self, op: Operation, holders: list[Contact], now: float) -> None:
        stored_here = 0
        farthest = holders[-1].node_id if holders else None
        record = op.record
        assert record is not None  # a put's operation always carries its record
        if len(holders) < self.config.k or (farthest is not None and _nearer(
                self.own_id, farthest, op.target)):
            stored_here = int(self.store.put(op.target, record, op.ttl, now,
                                             self._quota(record.publisher)))
        op.result = stored_here
        op.store_pending = len(holders)
        if not holders:
            if not stored_here:
                op.error = DHTError("put found no node to store at")
            self._finish(op, now)
            return
        for contact in holders:
            def on_stored(reply: Message | None, at: float) -> None:
                op.store_pending -= 1
                if reply is not None and reply.ok:
                    op.result = int(op.result) + 1  # type: ignore[call-overload]
                if op.store_pending == 0:
                    self._finish(op, at)

            self._request(contact, Kind.STORE, now, on_stored, target=op.target,
                          record=record, ttl=op.ttl)

    def _finish(self, op: Operation, now: float) -> None:
        if op.done:
            return
        if op.kind in (OpKind.GET, OpKind.GET_ALL):
            op.records = sorted(op.found.values(), key=lambda r: r.freshness, reverse=True)
            op.verified = set()
            if op.kind is OpKind.GET:
                op.result = op.records[0].value if op.records else None
            else:
                op.result = [DHTRecord.of(r) for r in op.records]
        elif op.kind is OpKind.BOOTSTRAP and op.error is None:
            op.result = len(self.routing_table)
        op.done = True
        if not op.internal:
            self._done.append(op)

    # -- RPCs -------------------------------------------------------------------------------------

    def _request(self, contact: Contact, kind: Kind, now: float,
                 on_reply: OnReply, *, target: bytes = b"",
                 publisher: bytes = b"", record: SignedRecord | None = None,
                 ttl: int = 0) -> None:
        unproven = contact.node_id not in self.routing_table
        if unproven:
            self._guard.started(contact)
        rpc_id = self._rpcs.add(Rpc(contact, kind, now + self.config.rpc_timeout, on_reply,
                                    unproven))
        self._out.append((contact, encode(Message(
            kind, rpc_id, self.port, target=target, record=record, ttl=ttl,
            publisher=publisher if kind is Kind.FIND_VALUE else b""))))
        self._deadline_stale = True

    def _rpc_failed(self, rpc: Rpc, now: float) -> None:
        self.rpc_timeouts += 1
        contact = rpc.contact
        if rpc.unproven:  # whoever named this contact may have named a victim: let it rest
            self._guard.settled(contact, True, now)
        self.routing_table.failed(contact.node_id)
        rpc.on_reply(None, now)

    def _quota(self, publisher: bytes) -> int:
        """How many records ``publisher`` may keep here: more the nearer the routing table
        puts it (a table slot is earned by a proven session, and buckets keep their old
        contacts over newcomers)."""
        cfg = self.config
        if publisher == self.own_id:
            return cfg.near_store_quota
        return (cfg.store_quota, cfg.contact_store_quota,
                cfg.near_store_quota)[self.routing_table.closeness(publisher)]

    def messages_to_send(self) -> list[tuple[Contact, bytes]]:
        out, self._out = self._out, []
        return out

    @property
    def has_output(self) -> bool:
        return bool(self._out)

    # -- timers -----------------------------------------------------------------------------------

    def get_timer(self) -> float | None:
        if not self._deadline_stale:
            return self._deadline
        # An empty table has nothing to refresh: an idle node with no contacts needs no timer.
        candidates = [self._next_refresh] if len(self.routing_table) else []
        rpc_deadline = self._rpcs.next_deadline()
        if rpc_deadline is not None:
            candidates.append(rpc_deadline)
        expiry = self.store.next_expiry()
        if expiry is not None:
            candidates.append(expiry)
        if self._republish_heap:
            candidates.append(self._republish_heap[0][0])
        lookups = self._lookup_heap
        while lookups and lookups[0][1] not in self._looking:
            heapq.heappop(lookups)
        if lookups:
            candidates.append(lookups[0][0])
        self._deadline = min(candidates, default=None)
        self._deadline_stale = False
        return self._deadline

    def handle_timer(self, now: float) -> None:
        self._deadline_stale = True
        for rpc in self._rpcs.take_expired(now):
            self._rpc_failed(rpc, now)
        lookups = self._lookup_heap
        while lookups and lookups[0][0] <= now:
            _, op_id = heapq.heappop(lookups)
            op = self._looking.pop(op_id, None)  # a cancelled one just leaves
            if op is not None:
                self._advance(op, now)  # past its deadline: it ends with what it has
        self.store.expire(now)
        self._republish(now)
        if now >= self._next_refresh:
            self._next_refresh = now + self.config.refresh_interval
            self._refresh(now)

    def _republish(self, now: float) -> None:
        heap = self._republish_heap
        while heap and heap[0][0] <= now:
            due, key = heapq.heappop(heap)
            publication = self._published.get(key)
            if publication is None or publication.due != due:
                continue  # put again since
            if publication.until is not None and now >= publication.until:
                del self._published[key]
                continue
            publication.due = now + self.config.republish_interval
            heapq.heappush(heap, (publication.due, key))
            ttl = publication.ttl if publication.until is None else max(
                1, int(publication.until - now))
            self._put(key, publication.record, ttl, now, internal=True)

    def _refresh(self, now: float) -> None:
        """Look up an id in every bucket unheard-from for a refresh interval."""
        if not len(self.routing_table):
            return
        for index in self.routing_table.stale_buckets(now, self.config.refresh_interval):
            self.routing_table.touch_bucket(index, now)
            target = self.routing_table.id_in_bucket(index, self._rng.token_bytes(32))
            self.find_node(target, now, internal=True)

    def stats(self) -> dict[str, int]:
        return {"dht_contacts": len(self.routing_table), "dht_records": len(self.store),
                "dht_published": len(self._published), "dht_rpcs_pending": len(self._rpcs),
                "dht_requests_served": self.requests_served, "dht_malformed": self.malformed,
                "dht_unsolicited": self.unsolicited, "dht_rpc_timeouts": self.rpc_timeouts,
                "dht_bad_records": self.bad_records, "dht_stale_records": self.store.stale,
                "dht_store_refused": self.store.refused, "dht_store_evicted": self.store.evicted,
                "dht_lookups_timed_out": self.lookups_timed_out,
                "dht_contacts_refused": self._guard.refused + self.contacts_skipped}


def _nearer(a: bytes, b: bytes, target: bytes) -> bool:
    t = int.from_bytes(target, "big")
    return (int.from_bytes(a, "big") ^ t) < (int.from_bytes(b, "big") ^ t)


def _ignore(reply: Message | None, now: float) -> None:
    """A bucket check's ping needs no callback: the reply refreshes the contact, a timeout
    counts against it (both in the routing table)."""
