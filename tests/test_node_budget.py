"""The node-wide receive budget (issue 21 item 5): however many sessions send messages larger
than their windows, the node reassembles only as many as ``receive_budget`` holds (the others
wait, their peers stalled within the stream window), new sessions are refused meanwhile, and
reading lets every transfer complete byte-exact: no deadlock, even when every stream of many
sessions holds a partial message."""

from __future__ import annotations

import hashlib
from typing import Any

import anyio
import pytest

from stt_proto import Endpoint, EndpointConfig, Session, SettingsError
from stt_proto.budget import MemoryBudget
from stt_proto.events import SessionTerminated
from stt_proto.streams import RecvSide
from stt_runtime.settings import NodeSettings, SocketSettings

from .conftest import Pair, make_pair
from .test_node_lifecycle import run_in

LIMIT = 1 << 20  # the smallest receive_budget allowed
MAX_MESSAGE = 256 * 1024
SERVER = {"receive_budget": LIMIT, "recv_buffer_size": 65536, "max_message_size": MAX_MESSAGE}


def held(endpoint: Endpoint) -> tuple[int, int]:
    """Receive bytes the endpoint buffers (out of order, being cut, cut and unread), and what
    flow control alone allows them: every stream's window."""
    total = windows = 0
    for session in endpoint.sessions.values():
        if session.data is None:
            continue
        for stream in session.data.streams.streams.values():
            recv: RecvSide = stream.recv
            total += recv.buffered_bytes + recv._parts_bytes + recv.unread_bytes
            windows += recv.window
    return total, windows


def payload(index: int, number: int, size: int) -> bytes:
    seed = hashlib.sha256(f"{index}/{number}".encode()).digest()
    return (seed * (size // len(seed) + 1))[:size]


class Watch:
    """Run-until condition checking the server's budget at every step."""

    def __init__(self, pair: Pair) -> None:
        self.pair = pair
        self.peak_reserved = 0
        self.peak_held = 0

    def __call__(self) -> bool:
        budget = self.pair.server.budget
        total, windows = held(self.pair.server)
        self.peak_reserved = max(self.peak_reserved, budget.reserved)
        self.peak_held = max(self.peak_held, total)
        assert budget.reserved <= LIMIT
        # Beyond each stream's window, only what the budget granted is held.
        assert total <= windows + budget.messages, (total, windows, budget.messages)
        return False


def senders(pair: Pair, count: int, messages: list[int],
            streams: int = 1) -> list[tuple[Session, Session, int]]:
    """``count`` client sessions each sending ``messages`` (sizes) on ``streams`` streams."""
    sessions = [pair.established() for _ in range(count)]  # all before any data flows
    out: list[tuple[Session, Session, int]] = []
    for client, server in sessions:
        for _ in range(streams):
            stream_id = client.open_stream()
            for number, size in enumerate(messages):
                assert client.send_message(stream_id, payload(len(out), number, size))
            out.append((client, server, stream_id))
    return out


def read_all(pair: Pair, flows: list[tuple[Session, Session, int]], messages: list[int],
             watch: Watch, timeout: float = 60.0) -> None:
    """Read every message as it completes; each arrives whole and in order."""
    got: dict[int, list[bytes]] = {index: [] for index in range(len(flows))}

    def done() -> bool:
        watch()
        for index, (_, server, stream_id) in enumerate(flows):
            while (message := server.receive_message(stream_id)) is not None:
                got[index].append(message)
        return all(len(m) == len(messages) for m in got.values())

    assert pair.net.run_until(done, timeout), {i: len(m) for i, m in got.items()}
    for index, received in got.items():
        assert received == [payload(index, n, size) for n, size in enumerate(messages)]


@pytest.mark.parametrize(("sessions", "streams"), [(8, 1), (3, 6)])
def test_large_messages_are_reassembled_within_the_budget_and_complete(
        sessions: int, streams: int) -> None:
    """8 sessions x 2 messages of 250 KB, or 3 sessions x 6 streams (18 partial messages at
    once), each message four times its stream's window: unbudgeted, the node held all 4 MB
    (4.5 MB) at once before anyone read."""
    pair = make_pair(server_config=SERVER)
    sizes = [250_000, 250_000]
    flows = senders(pair, sessions, sizes, streams)
    watch = Watch(pair)
    pair.net.run_until(watch, 10.0)  # nobody reads: the peers stall
    server = pair.server
    total = len(flows) * sum(sizes)
    assert watch.peak_held < total // 2  # the senders were held back
    assert server.budget.denials > 0 and server.budget.over
    assert server.get_stats().receive_budget_used == server.budget.reserved
    read_all(pair, flows, sizes, watch)
    assert watch.peak_reserved <= LIMIT
    assert server.budget.messages == 0  # every reservation given back as its message was read
    assert not server.budget.over
    pair.established()  # admitted again


def test_every_stream_holding_a_partial_message_does_not_deadlock() -> None:
    """Ten sessions each send one message of max_message_size, over four times what the budget
    can reassemble at once: they are granted in turn as the reader takes each one."""
    pair = make_pair(server_config=SERVER)
    flows = senders(pair, 10, [MAX_MESSAGE])
    watch = Watch(pair)
    read_all(pair, flows, [MAX_MESSAGE], watch)
    assert pair.server.budget.denials > 0
    assert watch.peak_reserved <= LIMIT


def test_new_sessions_are_refused_while_the_budget_is_spent() -> None:
    pair = make_pair(server_config=SERVER)
    senders(pair, 8, [250_000, 250_000])
    pair.net.run_until(Watch(pair), 10.0)
    assert pair.server.budget.over
    refusals = pair.server.refusals_sent
    late = pair.connect()
    pair.net.run(2.0)
    assert not late.confirmed and late.is_closed
    assert pair.server.refusals_sent > refusals
    events = []
    while (event := late.next_event()) is not None:
        events.append(event)
    assert any(isinstance(e, SessionTerminated) for e in events)


def test_closing_sessions_gives_their_reservations_back() -> None:
    pair = make_pair(server_config=SERVER)
    flows = senders(pair, 8, [250_000])
    pair.net.run_until(Watch(pair), 10.0)
    budget = pair.server.budget
    assert budget.messages > 0 and budget.over
    for client, _, _ in flows:
        client.close(0, "done", pair.net.now)
    pair.net.run(5.0)
    assert not pair.server.sessions
    assert (budget.reserved, budget.messages, budget.windows, budget.over) == (0, 0, 0, False)


class User:
    def __init__(self) -> None:
        self.grants: list[tuple[int, int, int]] = []

    def granted(self, key: int, end: int, amount: int) -> bool:
        self.grants.append((key, end, amount))
        return True


def test_reservations_are_all_or_nothing_and_served_in_order() -> None:
    budget = MemoryBudget(1000)
    a, b, c = User(), User(), User()
    assert budget.reserve(a, 0, 100, 400)
    assert budget.reserve(a, 2, 100, 400)
    assert not budget.reserve(b, 0, 300, 300)  # 200 left: all or nothing, so it waits
    assert not budget.reserve(b, 0, 300, 300)  # asked again: still one request
    assert not budget.reserve(c, 0, 50, 50)  # it would fit, but b asked first
    assert budget.over and budget.denials == 2
    assert budget.grow(0, 100) == 0  # no window growth while a reservation waits
    budget.release(400, message=True)
    assert b.grants == [(0, 300, 300)] and c.grants == [(0, 50, 50)]
    assert budget.reserved == 750 and not budget.over
    assert budget.grow(0, 600) == 250  # what is left, and at most half the budget
    budget.release(400, message=True)
    assert budget.grow(250, 600) == 500  # half the budget: the window share is spent
    assert budget.peak == 1000
    budget.release(500, message=False)  # the windows were used up
    assert budget.reserve(a, 4, 9, 2000)  # longer than half the budget: reserves half
    assert (budget.reserved, budget.messages, budget.windows) == (850, 850, 0)
    assert not budget.reserve(b, 2, 9, 200)
    budget.cancel(b)  # b's session is gone
    budget.release(500, message=True)
    assert b.grants == [(0, 300, 300)] and not budget.over


@pytest.mark.parametrize(("name", "value"), [("receive_budget", 1000), ("receive_budget", "x"),
                                             ("datagram_budget", 10), ("datagram_budget", 1.5)])
def test_budget_settings_are_checked_and_named(name: str, value: object) -> None:
    with pytest.raises(SettingsError, match=name):
        NodeSettings.build(**{name: value})


def test_budget_defaults_fit_a_small_server() -> None:
    assert EndpointConfig().receive_budget + SocketSettings().datagram_budget <= 1 << 30


# -- unread DATAGRAMs: one budget for the node (the runtimes' queues) ------------------------------

@pytest.mark.parametrize("runtime", ["asyncio", "anyio-asyncio"])
def test_unread_datagrams_share_the_node_budget(runtime: str) -> None:
    """Each session queued up to 1,024 unread datagrams whatever the node held: two sessions
    here fill the node's 64 KiB between them, and the rest drop as "node_budget"."""
    size = 1000
    budget = 1 << 16
    fits = budget // size

    async def main(node_class: Any) -> None:
        server = node_class(host="127.0.0.1", datagram_budget=budget)
        clients = [node_class(host="127.0.0.1") for _ in range(2)]
        with anyio.fail_after(20):
            await server.start()
            for client in clients:
                await client.start()
            try:
                sessions = [await c.connect(server.address, server.node_id) for c in clients]
                accepted = [await server.accept() for _ in clients]
                for burst in range(8):  # 2 x 80 datagrams, paced so that the sender keeps all
                    for session in sessions:
                        for index in range(10):
                            await session.send_datagram(bytes([burst * 10 + index]) * size)
                    await anyio.sleep(0.02)
                await anyio.sleep(0.2)
                held = server._datagram_budget.queued
                assert held <= budget
                stats = [s.get_stats() for s in accepted]
                dropped = sum(s.datagrams_dropped_by_reason["node_budget"] for s in stats)
                queued = sum(len(s._datagrams) for s in accepted)
                assert queued == fits and held == fits * size
                assert dropped == 160 - fits  # none lost on loopback: every other one counted
                assert all(s.datagrams_dropped >= s.datagrams_dropped_by_reason["node_budget"]
                           for s in stats)
                for session in accepted:  # reading gives the budget back
                    for _ in range(len(session._datagrams)):
                        assert len(await session.receive_datagram()) == size
                assert server._datagram_budget.queued == 0
                await sessions[0].send_datagram(b"again" * 10)
                assert await accepted[0].receive_datagram() == b"again" * 10
            finally:
                for client in clients:
                    await client.close()
                await server.close()

    run_in(runtime, main)


@pytest.mark.parametrize("runtime", ["asyncio", "trio"])
def test_a_node_over_its_receive_budget_completes_every_transfer(runtime: str) -> None:
    """Six peers at once each send two messages of 250 KB to a node whose budget reassembles
    four at a time: the reads free reservations and the waiting peers are granted theirs."""
    size = 250_000

    async def main(node_class: Any) -> None:
        server = node_class(host="127.0.0.1", **SERVER)
        clients = [node_class(host="127.0.0.1") for _ in range(6)]
        got: dict[int, list[bytes]] = {}

        async def send(index: int, client: Any) -> None:
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream()
            await stream.send(index.to_bytes(2, "big") + payload(index, 0, size))
            await stream.send(index.to_bytes(2, "big") + payload(index, 1, size))
            await stream.receive()  # the server's answer: everything arrived

        async def serve_one() -> None:
            session = await server.accept()
            stream = await session.accept_stream()
            first = await stream.receive()
            index = int.from_bytes(first[:2], "big")
            got[index] = [first[2:], (await stream.receive())[2:]]
            await stream.send(b"ok")

        with anyio.fail_after(60):
            await server.start()
            for client in clients:
                await client.start()
            try:
                async with anyio.create_task_group() as group:
                    for _ in clients:
                        group.start_soon(serve_one)
                    for index, client in enumerate(clients):
                        group.start_soon(send, index, client)
                budget = server._endpoint.budget
                assert budget.denials > 0  # some waited for a reservation
                assert budget.peak <= LIMIT
                with anyio.move_on_after(2):  # the last reads' releases land on the next poll
                    while budget.messages:
                        await anyio.sleep(0.01)
                assert budget.messages == 0
            finally:
                for client in clients:
                    await client.close()
                await server.close()
        assert sorted(got) == list(range(6))
        for index, messages in got.items():
            assert messages == [payload(index, 0, size), payload(index, 1, size)]

    run_in(runtime, main)
