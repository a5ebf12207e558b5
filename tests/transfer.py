"""Helpers that drive stream transfers between paired sessions in the simulator."""

from __future__ import annotations

import random

import attrs

from stt_proto import Session
from stt_proto.events import Address
from stt_proto.sim import Network


def mixed_messages(total: int, seed: int, largest: int = 4 * 1024 * 1024) -> list[bytes]:
    """Messages of mixed sizes (1 B up to ``largest``) adding up to about ``total`` bytes."""
    rng = random.Random(seed)
    sizes = [1, 7, 100, 1200, 5000, 16_384, 70_000, 300_000, 1 << 20, largest]
    out: list[bytes] = []
    used = 0
    while used < total:
        size = min(rng.choice(sizes), total - used) or 1
        out.append(rng.randbytes(size))
        used += size
    return out


@attrs.define
class Transfer:
    """Sends ``messages`` on one new stream of ``sender`` and collects them at ``receiver``."""

    net: Network
    sender: Session
    receiver: Session
    messages: list[bytes]
    read: bool = True
    stream_id: int = -1
    received: list[bytes] = attrs.field(factory=list)
    sent: int = 0
    closed: bool = False
    finished_at: float | None = None

    def __attrs_post_init__(self) -> None:
        self.stream_id = self.sender.open_stream()

    def pump(self) -> None:
        while self.sent < len(self.messages) and self.sender.send_message(
                self.stream_id, self.messages[self.sent]):
            self.sent += 1
        if self.sent == len(self.messages) and not self.closed:
            self.sender.close_stream(self.stream_id)
            self.closed = True
        for session in (self.sender, self.receiver):
            while session.next_event() is not None:
                pass
        while self.read and (m := self.receiver.receive_message(self.stream_id)) is not None:
            self.received.append(m)
        if self.finished_at is None and len(self.received) == len(self.messages):
            self.finished_at = self.net.now

    @property
    def done(self) -> bool:
        return self.finished_at is not None

    @property
    def bytes_received(self) -> int:
        return sum(len(m) for m in self.received)


def run_transfers(net: Network, transfers: list[Transfer], timeout: float) -> bool:
    """Step the network, pumping every transfer, until all are done or ``timeout`` passes."""
    end = net.now + timeout
    while net.now < end:
        for transfer in transfers:
            transfer.pump()
        if all(t.done for t in transfers):
            return True
        if not net.step(end):
            for transfer in transfers:
                transfer.pump()
            if not net.step(end):
                break
    return all(t.done for t in transfers)


def link_marks(net: Network, transfer: Transfer, marks: tuple[float, ...], src: Address,
               dst: Address) -> list[tuple[int, int]]:
    """Run ``transfer`` in 10 ms steps (idle gaps included) and, at each of ``marks`` seconds
    from now, read the ``src`` → ``dst`` link's (delivered, queue drops) counters."""
    start = net.now
    out: list[tuple[int, int]] = []
    for mark in marks:
        while net.now - start < mark and not transfer.done:
            step_end = net.now + 0.01
            run_transfers(net, [transfer], timeout=0.01)
            net.now = max(net.now, step_end)
        counters = net.link_counters(src, dst)
        out.append((counters.delivered, counters.queue_drops))
    return out
