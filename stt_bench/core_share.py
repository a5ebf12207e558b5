"""What the protocol core costs per message inside a running loop, against the same calls run
back to back: ``python -m stt_bench.core_share [--runtime uvloop]``.

*In the loop*: two nodes in one process on one asyncio loop (uvloop with ``--runtime
uvloop``), default settings, a ping-pong of 4-byte messages on a ``no_delay`` stream answered
by an echo task, as in ``stt_bench.stages``. Each node's core is wrapped so that its
``receive_datagram`` (open a datagram, handle its frames) and ``datagrams_to_send`` (a poll:
timers, ACKs, packets sealed) are timed with ``time.perf_counter``, the polls that send
apart from those that find nothing to send; beside them, the process's CPU time per round
trip, and each round trip's time with what it held besides the ping and its echo (a garbage
collection, a timer's run, another datagram), which says what the slowest 1 % are made of.
The raw UDP echo on the same kind of loop (the suite's one-loop baseline) gives the CPU a
round trip needs without STT.

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
import gc
import time
from typing import Any

from stt_asyncio import STTNode
from stt_proto import DeterministicRandom, EndpointConfig
from stt_proto.node import Node

from .common import median, percentile
from .registry import run_on
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
        spent = time.perf_counter() - started
        self._totals["poll"] += spent
        self._totals["polls"] += 1
        self._totals["datagrams"] += len(out)
        if not out:  # a poll that found nothing to send (its timers refreshed all the same)
            self._totals["empty_poll"] += spent
            self._totals["empty_polls"] += 1
        return out

    def handle_timer(self, now: float) -> None:
        self._totals["timer_runs"] += 1
        self._core.handle_timer(now)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._core, name)


def _tail(times: list[float], marks: list[tuple[float, float, int]]) -> dict[str, float]:
    """p50 and p99 of the round trips, and what the slowest 1 % had that others had not:
    a garbage collection, a timer's run, more than the ping and its echo on the wire."""
    p50, p99 = median(times), percentile(times, 0.99)
    slow = [mark for took, mark in zip(times, marks, strict=True) if took >= p99]
    collected = sum(1 for _, _, collections in slow if collections)
    timed = sum(1 for _, timer_runs, _ in slow if timer_runs)
    extra = sum(1 for datagrams, _, _ in slow if datagrams > 2)
    plain = sum(1 for datagrams, timer_runs, collections in slow
                if datagrams <= 2 and not timer_runs and not collections)
    return {"p50_s": p50, "p99_s": p99, "tail_plain": plain / len(slow),
            "tail_collected": collected / len(slow), "tail_timers": timed / len(slow),
            "tail_extra_datagrams": extra / len(slow)}


async def _in_loop(count: int, warmup: int) -> dict[str, float]:
    totals = dict.fromkeys(("receive", "receives", "poll", "polls", "empty_poll",
                            "empty_polls", "datagrams", "timer_runs"), 0.0)
    collections = [0]

    def collecting(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            collections[0] += 1

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
            times: list[float] = []
            marks: list[tuple[float, float, int]] = []  # datagrams, timer runs, collections
            gc.callbacks.append(collecting)
            cpu = time.process_time()
            for _ in range(count):
                datagrams, timer_runs, collected = (totals["datagrams"], totals["timer_runs"],
                                                    collections[0])
                started = time.perf_counter()
                await stream.send(MESSAGE)
                await stream.receive()
                times.append(time.perf_counter() - started)
                marks.append((totals["datagrams"] - datagrams,
                              totals["timer_runs"] - timer_runs, collections[0] - collected))
            cpu = time.process_time() - cpu
        finally:
            if collecting in gc.callbacks:
                gc.callbacks.remove(collecting)
            task.cancel()
    sending = totals["polls"] - totals["empty_polls"]
    return {"cpu_per_round_trip_s": cpu / count,
            "receive_s": totals["receive"] / totals["receives"],
            "receives_per_round_trip": totals["receives"] / count,
            "poll_s": totals["poll"] / totals["polls"],
            "polls_per_round_trip": totals["polls"] / count,
            "sending_poll_s": (totals["poll"] - totals["empty_poll"]) / max(sending, 1),
            "sending_polls_per_round_trip": sending / count,
            "empty_poll_s": totals["empty_poll"] / max(totals["empty_polls"], 1),
            "empty_polls_per_round_trip": totals["empty_polls"] / count,
            **_tail(times, marks)}


def in_loop(runtime: str, count: int, warmup: int = 500) -> dict[str, float]:
    """The core's calls timed inside a running loop (see the module's docstring)."""
    if runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        result: dict[str, float] = uvloop.run(_in_loop(count, warmup))
        return result
    return asyncio.run(_in_loop(count, warmup))


def raw_in_loop(runtime: str, count: int) -> dict[str, float]:
    """The raw UDP echo on one loop (the suite's one-loop baseline): the process's CPU per
    round trip and the round trip's p50, to set beside the STT loop's."""
    cpu = time.process_time()
    times = run_on(runtime, "raw_ping_pong", count)
    cpu = time.process_time() - cpu
    return {"cpu_per_round_trip_s": cpu / count, "p50_s": median(times)}


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


def report(runtime: str, loop: dict[str, float], direct: dict[str, float],
           raw: dict[str, float]) -> str:
    us = 1e6
    core = (loop["receive_s"] * loop["receives_per_round_trip"]
            + loop["poll_s"] * loop["polls_per_round_trip"])
    outside = loop["cpu_per_round_trip_s"] - core
    raw_cpu = raw["cpu_per_round_trip_s"]
    return "\n".join((
        f"{runtime}, both nodes in one process: {loop['cpu_per_round_trip_s'] * us:.1f} us of "
        f"CPU per round trip, of which the core {core * us:.1f} us "
        f"({core / loop['cpu_per_round_trip_s']:.0%})",
        f"  receive_datagram {loop['receive_s'] * us:.2f} us x "
        f"{loop['receives_per_round_trip']:.2f} per round trip; datagrams_to_send "
        f"{loop['poll_s'] * us:.2f} us x {loop['polls_per_round_trip']:.2f}: "
        f"{loop['sending_poll_s'] * us:.2f} us x {loop['sending_polls_per_round_trip']:.2f} "
        f"that send, {loop['empty_poll_s'] * us:.2f} us x "
        f"{loop['empty_polls_per_round_trip']:.2f} that find nothing to send",
        f"  round trip p50 {loop['p50_s'] * us:.1f} us, p99 {loop['p99_s'] * us:.1f} us "
        f"({loop['p99_s'] / loop['p50_s']:.2f} x); of the slowest 1 %, "
        f"{loop['tail_plain']:.0%} had nothing the others had not (2 datagrams, no timer, no "
        f"collection), {loop['tail_collected']:.0%} a garbage collection, "
        f"{loop['tail_timers']:.0%} a timer's run, {loop['tail_extra_datagrams']:.0%} more "
        f"datagrams",
        f"raw UDP echo on the same kind of loop: {raw_cpu * us:.1f} us of CPU per round trip "
        f"(p50 {raw['p50_s'] * us:.1f} us); STT's core alone {core / raw_cpu:.1f} x that, "
        f"the rest of STT's round trip alone (loop, runtime, kernel) {outside / raw_cpu:.1f} x",
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
                 back_to_back(args.count, args.warmup), raw_in_loop(args.runtime, args.count)))


if __name__ == "__main__":
    main()
