"""What the protocol core costs per message inside a running loop, against the same calls run
back to back: ``python -m stt_bench.core_share [--runtime uvloop]``.

*In the loop*: two nodes in one process on one asyncio loop (uvloop with ``--runtime
uvloop``), default settings, a ping-pong of 4-byte messages on a ``no_delay`` stream answered
by an echo task, as in ``stt_bench.stages``. Each node's core is wrapped so that its
``receive_datagram`` (open a datagram, handle its frames) and ``datagrams_to_send`` (a poll:
timers, ACKs, packets sealed) are timed with ``time.perf_counter``; beside them, the process's
CPU time per round trip.

*Back to back*: the same two calls and the same messages between two cores handed each
other's datagrams in memory, with nothing else running between them (no loop, no sockets,
no runtime).

The difference is what the core pays for the code that runs between its calls in a real
program (the loop, the runtime, the kernel): with both ends in one process there is no other
process to blame. docs/latency.md reads the results.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from stt_asyncio import STTNode
from stt_proto import DeterministicRandom, EndpointConfig
from stt_proto.node import Node

from .workloads.on_asyncio import echo_stream

MESSAGE = b"ping"
CLIENT, SERVER = ("10.0.0.1", 1), ("10.0.0.2", 2)
STEP = 0.0002  # virtual seconds between messages back to back: timers come due as they would


class _TimedCore:
    """A node's core with its two per-datagram calls timed; everything else passes through."""

    def __init__(self, core: Node, totals: dict[str, float]) -> None:
        self._core = core
        self._totals = totals

    def receive_datagram(self, data: Any, addr: Any, now: float) -> None:
        started = time.perf_counter()
        self._core.receive_datagram(data, addr, now)
        self._totals["receive"] += time.perf_counter() - started
        self._totals["receives"] += 1

    def datagrams_to_send(self, now: float, max_datagrams: int | None = None) -> Any:
        started = time.perf_counter()
        out = self._core.datagrams_to_send(now, max_datagrams)
        self._totals["poll"] += time.perf_counter() - started
        self._totals["polls"] += 1
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


async def _in_loop(count: int, warmup: int) -> dict[str, float]:
    totals = dict.fromkeys(("receive", "receives", "poll", "polls"), 0.0)
    async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
        for node in (server, client):
            core = node._endpoint
            assert core is not None  # started
            node._endpoint = _TimedCore(core, totals)  # type: ignore[assignment]
        task, _, stream = await echo_stream(server, client)
        try:
            for _ in range(warmup):
                await stream.send(MESSAGE)
                await stream.receive()
            for key in totals:
                totals[key] = 0.0
            cpu = time.process_time()
            for _ in range(count):
                await stream.send(MESSAGE)
                await stream.receive()
            cpu = time.process_time() - cpu
        finally:
            task.cancel()
    return {"cpu_per_round_trip_s": cpu / count,
            "receive_s": totals["receive"] / totals["receives"],
            "receives_per_round_trip": totals["receives"] / count,
            "poll_s": totals["poll"] / totals["polls"],
            "polls_per_round_trip": totals["polls"] / count}


def in_loop(runtime: str, count: int, warmup: int = 500) -> dict[str, float]:
    """The core's calls timed inside a running loop (see the module's docstring)."""
    if runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        result: dict[str, float] = uvloop.run(_in_loop(count, warmup))
        return result
    return asyncio.run(_in_loop(count, warmup))


def back_to_back(count: int, warmup: int = 500) -> dict[str, float]:
    """One message at a time from a client's core to a server's, in memory: seconds per
    message for ``send_message`` with the poll that seals it, ``receive_datagram``, and the
    poll after input with the events handed out and the message read."""
    client = Node(EndpointConfig.build(), rng=DeterministicRandom(1))
    server = Node(EndpointConfig.build(), rng=DeterministicRandom(2))
    now = 0.0

    def exchange() -> None:
        for sender, receiver, source in ((client, server, CLIENT), (server, client, SERVER)):
            for datagram, _ in sender.datagrams_to_send(now):
                receiver.receive_datagram(datagram, source, now)

    def settle(rounds: int = 1) -> None:
        """Let time pass: what is due runs and is delivered (ACKs, timers)."""
        nonlocal now
        for _ in range(rounds):
            now += STEP
            for node in (client, server):
                deadline = node.get_timer()
                if deadline is not None and deadline <= now:
                    node.handle_timer(now)
            exchange()

    ours = client.connect(SERVER, server.identity.node_id, now)
    settle(8)
    stream_id = ours.open_stream(None, True, 0)
    ours.send_message(stream_id, MESSAGE)
    settle(8)
    theirs = next(iter(server.endpoint.sessions.values()))
    while theirs.next_event() is not None:
        pass
    theirs.receive_message(stream_id)
    clock = time.perf_counter
    spent = [0.0, 0.0, 0.0]
    for index in range(warmup + count):
        if index == warmup:
            spent = [0.0, 0.0, 0.0]
        started = clock()
        ours.send_message(stream_id, MESSAGE)
        out = client.datagrams_to_send(now, 32)
        sealed = clock()
        for datagram, _ in out:
            server.receive_datagram(datagram, CLIENT, now)
        opened = clock()
        answer = server.datagrams_to_send(now, 32)
        for session in server.take_touched():
            while session.next_event() is not None:
                pass
        message = theirs.receive_message(stream_id)
        read = clock()
        if message != MESSAGE:
            raise RuntimeError(f"message {index} did not arrive at once")
        spent[0] += sealed - started
        spent[1] += opened - sealed
        spent[2] += read - opened
        for datagram, _ in answer:  # its ACK
            client.receive_datagram(datagram, SERVER, now)
        settle()
    return {"send_and_seal_s": spent[0] / count, "receive_s": spent[1] / count,
            "poll_events_read_s": spent[2] / count}


def report(runtime: str, loop: dict[str, float], direct: dict[str, float]) -> str:
    us = 1e6
    core = (loop["receive_s"] * loop["receives_per_round_trip"]
            + loop["poll_s"] * loop["polls_per_round_trip"])
    return "\n".join((
        f"{runtime}, both nodes in one process: {loop['cpu_per_round_trip_s'] * us:.1f} us of "
        f"CPU per round trip, of which the core {core * us:.1f} us "
        f"({core / loop['cpu_per_round_trip_s']:.0%})",
        f"  receive_datagram {loop['receive_s'] * us:.2f} us x "
        f"{loop['receives_per_round_trip']:.2f} per round trip; datagrams_to_send "
        f"{loop['poll_s'] * us:.2f} us x {loop['polls_per_round_trip']:.2f}",
        f"back to back, in memory: send_message + the poll that seals "
        f"{direct['send_and_seal_s'] * us:.2f} us, receive_datagram "
        f"{direct['receive_s'] * us:.2f} us, the poll after input + events + the read "
        f"{direct['poll_events_read_s'] * us:.2f} us"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stt_bench.core_share", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runtime", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--count", type=int, default=5000, help="round trips / messages timed")
    parser.add_argument("--warmup", type=int, default=500, help="untimed ones before")
    args = parser.parse_args(argv)
    print(report(args.runtime, in_loop(args.runtime, args.count, args.warmup),
                 back_to_back(args.count, args.warmup)))


if __name__ == "__main__":
    main()
