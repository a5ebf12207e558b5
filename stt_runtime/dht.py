"""``node.dht``: the node's Kademlia DHT, awaited. Shared by both runtimes, which inject the
signal type, the clock and the kick that services the node core; every protocol decision is in
:mod:`stt_proto.dht`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from stt_proto import Node, UsageError
from stt_proto.dht import Contact, DHTRecord, Operation, RoutingTable

from ._signal import Signal


class NodeDHT:
    """Kademlia over the node's socket: 256-bit ids, k = 20, alpha = 3, XOR metric; values are
    records signed by their publisher, re-published hourly and expiring after a day at the
    nodes holding them."""

    def __init__(self, node: Callable[[], Node], now: Callable[[], float],
                 kick: Callable[[], None], new_signal: Callable[[], Signal]) -> None:
        self._node = node  # raises UsageError while the node is not running
        self._now = now
        self._kick = kick
        self._new_signal = new_signal
        self._waiters: dict[int, Signal] = {}
        self._closed = False

    @property
    def routing_table(self) -> RoutingTable:
        """The contacts this node knows, by bucket (iterate it, ``len()`` it, ``closest()``)."""
        return self._node().dht.routing_table

    async def bootstrap(self, peers: Iterable[tuple[str, int, bytes]]) -> int:
        """Join the DHT through known nodes ``(host, port, node_id)``; returns how many contacts
        the routing table then holds. Raises DHTError when none of them answers."""
        seeds = [Contact(bytes(node_id), (host, int(port))) for host, port, node_id in peers]
        node = self._node()
        result: int = await self._run(node.dht.bootstrap(seeds, self._now()))
        return result

    async def put(self, key: bytes, value: bytes, ttl: float | None = None) -> int:
        """Sign ``value`` (at most 8 KiB) and store it under the 32-byte ``key`` at the k nodes
        nearest it, and keep re-publishing it; returns how many nodes stored it. The record
        carries this node's wall clock (Unix ms), which readers rank publishers by."""
        node = self._node()
        result: int = await self._run(node.dht.put(
            key, value, self._now(), ttl, timestamp_ms=int(time.time() * 1000)))
        return result

    async def get(self, key: bytes, *, publisher: bytes | None = None) -> bytes | None:
        """The freshest verified value stored under ``key`` (only ``publisher``'s, when given),
        or None when nobody holds one."""
        node = self._node()
        result: bytes | None = await self._run(node.dht.get(key, self._now(),
                                                                publisher=publisher))
        return result

    async def get_all(self, key: bytes) -> list[DHTRecord]:
        """Every publisher's verified record under ``key`` (publisher, value, seq,
        timestamp_ms), freshest first; empty when nobody holds one."""
        node = self._node()
        result: list[DHTRecord] = await self._run(node.dht.get_all(key, self._now()))
        return result

    async def find_node(self, node_id: bytes) -> list[Contact]:
        """The k nodes nearest ``node_id`` that answered (the node itself first, if it exists)."""
        node = self._node()
        result: list[Contact] = await self._run(node.dht.find_node(node_id, self._now()))
        return result

    async def _run(self, op: Operation) -> Any:
        if op.done:
            return self._outcome(op)
        signal = self._waiters[op.id] = self._new_signal()
        self._kick()
        try:
            while not op.done:
                if self._closed:
                    raise UsageError("the node closed while a DHT call was waiting")
                await signal.wait()
        finally:
            self._waiters.pop(op.id, None)
            if not op.done:  # cancelled, or the node closed: stop its RPCs' callbacks
                self._abandon(op)
        return self._outcome(op)

    def _abandon(self, op: Operation) -> None:
        try:
            self._node().dht.cancel(op)
        except UsageError:
            op.done = True

    @staticmethod
    def _outcome(op: Operation) -> Any:
        if op.error is not None:
            raise op.error
        return op.result

    def dispatch(self, node: Node) -> None:
        """Wake the callers whose operations finished (the runtime calls this after output)."""
        while (op := node.dht.next_done()) is not None:
            signal = self._waiters.get(op.id)
            if signal is not None:
                signal.set()

    def close(self) -> None:
        self._closed = True
        for signal in self._waiters.values():
            signal.set()
