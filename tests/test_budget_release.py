"""A reservation granted late is never left held (issue 21 item 5's budget).

A large message's request may wait in the node's queue while the message completes without
it: the poll that asks can also double the stream's window (the previous update was less than
two RTTs before) to past the message's end. When the reader had taken the message before the
request was served, the grant used to be kept for bytes already read, and only a read or the
stream's end gives a reservation back: the node's budget stayed short of one message for the
rest of the stream (seen as ``budget.messages == 250,006`` after a transfer, with the faster
compiled core, whose polls come closer together). Likewise a request of a stream that ended
while it waited was granted to nobody, until the session closed."""

from __future__ import annotations

from stt_proto.budget import MemoryBudget
from stt_proto.config import SessionConfig
from stt_proto.frames import ResetStreamFrame
from stt_proto.handshake import local_settings
from stt_proto.streams import StreamManager
from stt_proto.varint import encode_varint, varint_size

LIMIT = 1 << 20
HALF = LIMIT // 2  # the most one reservation takes
SMALL = 20_000  # below the stream's initial window: never reserved
BIG = 250_002  # four times the initial window, less than the largest one
SRTT = 1.0  # every poll within two RTTs of the last: each window update doubles the window
SID = 1  # the peer's first stream (we are the initiator)


class Peer:
    """Our side of a session receiving one stream, the peer's sends scripted."""

    def __init__(self, budget: MemoryBudget) -> None:
        settings = local_settings(SessionConfig(recv_buffer_size=65536,
                                                   max_message_size=256 * 1024))
        self.manager = StreamManager(is_initiator=True, local=settings, peer=settings,
                                     send_buffer=1 << 20, recv_buffer=65536, no_delay=True,
                                     emit=lambda event: None)
        self.manager.attach_budget(budget, lambda: None)
        self.first_window = settings.initial_max_stream_data
        self.offset = 0
        self.now = 0.0

    def send(self, data: bytes) -> bytes:
        """Deliver what the stream's and the session's windows allow; returns the rest."""
        manager = self.manager
        while data:
            stream = manager.streams.get(SID)
            limit = stream.recv.max_data if stream is not None else self.first_window
            room = min(limit - self.offset, manager.conn_recv_max - manager.conn_received)
            if room <= 0:
                break
            chunk, data = data[:room], data[room:]
            manager.on_stream_data(SID, self.offset, chunk, False)
            self.offset += len(chunk)
        return data

    def read_all(self) -> list[bytes]:
        out = []
        while (message := self.manager.receive_message(SID)) is not None:
            out.append(message)
        return out

    def poll(self) -> None:
        self.now += 0.001
        self.manager.collect_window_updates(self.now, SRTT)
        self.manager._control.clear()  # (as if sent)

    @property
    def window(self) -> int:
        return self.manager.streams[SID].recv.window

    @property
    def max_data(self) -> int:
        return self.manager.streams[SID].recv.max_data


def message(size: int) -> bytes:
    return encode_varint(size) + bytes(size)


class Holder:
    """Other sessions' reservations, which fill the budget until released."""

    def __init__(self, budget: MemoryBudget) -> None:
        self.budget = budget
        self.held: list[int] = []

    def fill(self) -> None:
        while (amount := min(HALF, LIMIT - self.budget.reserved)) > 0:
            assert self.budget.reserve(self, len(self.held), 1, amount)
            self.held.append(amount)

    def release_all(self) -> None:
        for amount in self.held:
            self.budget.release(amount, message=True)
        self.held = []

    def granted(self, key: int, end: int, amount: int) -> bool:  # pragma: no cover - never queued
        return True


def test_a_grant_after_its_message_was_read_is_given_back() -> None:
    budget = MemoryBudget(LIMIT)
    holder = Holder(budget)
    peer = Peer(budget)
    # Small messages read as they come: the stream's window doubles to 128 KiB, still
    # shorter than BIG.
    while True:
        assert not peer.send(message(SMALL))
        assert len(peer.read_all()) == 1
        peer.poll()
        if peer.window * 2 >= BIG + varint_size(BIG):
            break
    assert peer.window < BIG
    # More small messages, up to where reading them crosses half the window, then the large
    # message, as much of it as the window allows.
    while peer.max_data - peer.offset > peer.window // 2:
        assert not peer.send(message(SMALL))
    start = peer.offset
    rest = peer.send(message(BIG))
    assert rest
    assert all(len(m) == SMALL for m in peer.read_all())
    # Other sessions hold the whole budget: one poll both asks for the large message's
    # reservation (queued) and, the small ones read, doubles the window past its end.
    holder.fill()
    peer.poll()
    assert budget.over and len(budget._queue) == 1  # the request waits
    assert peer.max_data >= start + varint_size(BIG) + BIG  # and is needed no longer
    # The message completes without it and is read.
    for _ in range(20):
        rest = peer.send(rest)
        peer.poll()
        if not rest:
            break
    assert not rest
    assert len(budget._queue) == 1
    assert [len(m) for m in peer.read_all()] == [BIG]
    # Only now is the request served: nothing is left to pay for, so it comes straight back.
    wakes = budget.wakes
    holder.release_all()
    session = peer.manager.budget
    assert session is not None and session.reserved == 0
    assert budget.messages == 0 and not budget.over
    assert budget.wakes == wakes  # declined, not granted


def test_a_request_of_a_stream_that_ended_while_it_waited_is_withdrawn() -> None:
    budget = MemoryBudget(LIMIT)
    holder = Holder(budget)
    peer = Peer(budget)
    holder.fill()
    assert peer.send(message(BIG))  # within the initial window: most of it waits
    peer.poll()
    assert len(budget._queue) == 1
    # Both halves end: the peer resets its sending half, we reset ours. The stream is gone.
    peer.manager.on_frame(ResetStreamFrame(SID, 7, peer.offset))
    peer.manager.reset_stream(SID, 7)
    assert SID not in peer.manager.streams
    assert not budget._queue  # nobody waits for it
    holder.release_all()
    assert (budget.messages, budget.reserved) == (0, 0)


def test_a_grant_for_a_stream_no_longer_there_is_declined() -> None:
    budget = MemoryBudget(LIMIT)
    session = Peer(budget).manager.budget
    assert session is not None
    holder = Holder(budget)
    holder.fill()
    assert not budget.reserve(session, 5, 300_000, 300_000)  # stream 5: never opened
    holder.release_all()
    assert session.reserved == 0 and budget.reserved == 0 and not budget.over
