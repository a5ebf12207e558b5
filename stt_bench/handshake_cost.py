"""What one handshake costs each side inside the protocol core:

    python -m stt_bench.handshake_cost [--retry] [--steps] [--count 2000]

A client endpoint and a server endpoint (``stt_proto``, compiled where installed so) hand each
other their datagrams in memory: no sockets, no event loop, no runtime objects. ``count``
handshakes are started at once, as in the two-process burst of ``stt_bench.twoproc``; each
side's calls are timed with ``time.process_time`` and the time the garbage collector spent is
taken from ``gc.callbacks``. Beside it, the floor (one side's X25519 and hashes, measured with
``cryptography`` and ``hashlib`` alone). With ``--retry`` the server answers every INITIAL with
a RETRY first, as the default ``retry_threshold`` (1,024 half-open) does for about half of a
2,000-handshake burst. With ``--steps`` each exchange's cost is printed too (the node's
answer to message 1, its reading of message 3, ...). docs/performance.md reads the results
against what the two-process run measures.
"""

from __future__ import annotations

import argparse
import gc
import time
from typing import Any

from stt_proto import DeterministicRandom, Endpoint, EndpointConfig

from . import twoproc
from .common import GcClock

CLIENT, SERVER = ("10.0.0.1", 1), ("10.0.0.2", 2)
SECONDS_PER_ROUND = 0.0005  # virtual time between exchanges: no timer comes due meanwhile


def core_handshakes(count: int, retry: bool, seed: int = 1) -> dict[str, Any]:
    """``count`` concurrent handshakes between two endpoints in this process: CPU seconds per
    handshake of each side, GC seconds per handshake (both sides), datagrams each way."""
    settings = {"max_sessions": count + 1, "max_sessions_per_identity": count + 1,
                "max_half_open_per_address": count + 1, "max_half_open": max(4096, count + 1)}
    client = Endpoint(EndpointConfig.build(**settings), rng=DeterministicRandom(seed))
    server = Endpoint(EndpointConfig.build(**settings, retry_threshold=0 if retry else count + 1),
                      rng=DeterministicRandom(seed + 1))
    gc.collect()  # what earlier runs left behind is not this run's to traverse
    collector = GcClock().install()
    try:
        now = 0.0
        started = time.process_time()
        sessions = [client.connect(SERVER, server.identity.node_id, now) for _ in range(count)]
        client_cpu = time.process_time() - started
        server_cpu = 0.0
        connect_cpu = client_cpu
        sent = {"client": 0, "server": 0}
        rounds: list[tuple[float, float, float, float]] = []  # CPU and datagrams each way
        while True:
            started = time.process_time()
            outbound = client.datagrams_to_send(now)
            middle = time.process_time()
            for datagram, _ in outbound:
                server.receive_datagram(datagram, CLIENT, now)
            inbound = server.datagrams_to_send(now)
            after_server = time.process_time()
            for datagram, _ in inbound:
                client.receive_datagram(datagram, SERVER, now)
            round_client = middle - started + time.process_time() - after_server
            client_cpu += round_client
            server_cpu += after_server - middle
            sent["client"] += len(outbound)
            sent["server"] += len(inbound)
            rounds.append((round_client / count, (after_server - middle) / count,
                           len(outbound) / count, len(inbound) / count))
            if not outbound and not inbound:
                break  # (the last, empty round is kept: its polls cost too)
            now += SECONDS_PER_ROUND
    finally:
        collector.remove()
    confirmed = sum(session.confirmed for session in sessions)
    if confirmed != count:
        raise RuntimeError(f"only {confirmed} of {count} handshakes completed")
    return {"count": count, "retry": retry, "client_cpu_s": client_cpu / count,
            "server_cpu_s": server_cpu / count, "gc_s": collector.seconds / count,
            "client_datagrams": sent["client"] / count,
            "server_datagrams": sent["server"] / count,
            "connect_cpu_s": connect_cpu / count, "rounds": rounds}


def report(result: dict[str, Any], floor: dict[str, float]) -> str:
    per_side = floor["per_side_s"]
    return (f"{result['count']:,} handshakes{' through a RETRY' if result['retry'] else ''}: "
            f"client {result['client_cpu_s'] * 1e6:.0f} µs, server "
            f"{result['server_cpu_s'] * 1e6:.0f} µs per handshake "
            f"({result['client_cpu_s'] / per_side:.2f} / {result['server_cpu_s'] / per_side:.2f}"
            f" of the floor, {per_side * 1e6:.0f} µs); of which GC {result['gc_s'] * 1e6:.0f} µs "
            f"(both sides); datagrams per handshake client -> server "
            f"{result['client_datagrams']:.2f}, server -> client {result['server_datagrams']:.2f}")


def steps(result: dict[str, Any]) -> str:
    """Each exchange of the run, per handshake: what the client's ``connect()`` cost, then per
    round the client's poll with its reading of the server's answers, and the server's reading
    with its poll. Round 1 is message 1 in, message 2 out (or a RETRY); the next, message 3 in
    and HANDSHAKE_DONE out."""
    lines = [f"  connect(): client {result['connect_cpu_s'] * 1e6:.0f} µs"]
    for index, (client, server, outbound, inbound) in enumerate(result["rounds"], 1):
        if not outbound and not inbound:
            continue  # the closing poll that found nothing either way
        lines.append(f"  round {index}: client -> server {outbound:.2f} datagrams, server "
                     f"{server * 1e6:.0f} µs to read them and answer with {inbound:.2f}, client "
                     f"{client * 1e6:.0f} µs to send and to read the answers")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m stt_bench.handshake_cost",
                                     description=__doc__)
    parser.add_argument("--count", type=int, default=2000, help="concurrent handshakes")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--retry", action="store_true", help="every handshake through a RETRY")
    parser.add_argument("--steps", action="store_true", help="each exchange's cost as well")
    args = parser.parse_args(argv)
    floor = twoproc.handshake_floor()
    for seed in range(args.repeats):
        result = core_handshakes(args.count, args.retry, seed * 2 + 1)
        print(report(result, floor), flush=True)
        if args.steps:
            print(steps(result), flush=True)


if __name__ == "__main__":
    main()
