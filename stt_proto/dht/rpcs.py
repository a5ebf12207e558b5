"""The DHT's RPCs in flight: each waits, under a random id, for a reply of the right kind from
the contact it went to, until its deadline."""

from __future__ import annotations

import heapq
from collections.abc import Callable

import attrs

from ..randomness import RandomSource
from .ids import Contact
from .messages import Kind, Message

REPLY_KINDS = {Kind.PING: (Kind.PONG,), Kind.FIND_NODE: (Kind.NODES,),
               Kind.FIND_VALUE: (Kind.NODES, Kind.VALUE), Kind.STORE: (Kind.STORED,)}

OnReply = Callable[[Message | None, float], None]  # None: the RPC failed


@attrs.define(slots=True)
class Rpc:
    contact: Contact
    kind: Kind
    deadline: float
    on_reply: OnReply
    unproven: bool  # to a contact the routing table did not hold


class RpcTable:
    def __init__(self, rng: RandomSource) -> None:
        self._rng = rng
        self._pending: dict[int, Rpc] = {}
        self._heap: list[tuple[float, int]] = []  # deadlines (entries of settled RPCs linger)

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, rpc: Rpc) -> int:
        """Track ``rpc``; returns the fresh random id its request carries."""
        while True:
            rpc_id = int.from_bytes(self._rng.token_bytes(8), "big")
            if rpc_id not in self._pending:
                break
        self._pending[rpc_id] = rpc
        heapq.heappush(self._heap, (rpc.deadline, rpc_id))
        return rpc_id

    def take_reply(self, sender: bytes, message: Message) -> Rpc | None:
        """The RPC ``message`` (a reply from ``sender``) answers, now settled; None when it
        answers none (unknown id, another sender, the wrong kind)."""
        rpc = self._pending.get(message.rpc_id)
        if (rpc is None or rpc.contact.node_id != sender
                or message.kind not in REPLY_KINDS[rpc.kind]):
            return None
        del self._pending[message.rpc_id]
        return rpc

    def take_peer(self, node_id: bytes) -> list[Rpc]:
        """Every RPC to ``node_id``, now settled (its session failed)."""
        ids = [i for i, rpc in self._pending.items() if rpc.contact.node_id == node_id]
        return [self._pending.pop(i) for i in ids]

    def take_expired(self, now: float) -> list[Rpc]:
        """Every RPC whose deadline has come, now settled."""
        expired = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, rpc_id = heapq.heappop(heap)
            rpc = self._pending.pop(rpc_id, None)
            if rpc is not None:
                expired.append(rpc)
        return expired

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap and heap[0][1] not in self._pending:
            heapq.heappop(heap)
        return heap[0][0] if heap else None
