"""One end of a transfer across two network namespaces (:mod:`stt_bench.netns`), run inside one
of them with ``ip netns exec``; it talks to its starter in lines on stdout.

    python -m stt_bench.netns_peer receive HOST SIZE SETTINGS_JSON
        prints "ready PORT NODE_ID_HEX", receives one stream of SIZE bytes and prints
        "received SHA256_HEX SECONDS" (from the session's acceptance to the last byte)
    python -m stt_bench.netns_peer send HOST PORT NODE_ID_HEX SIZE SEED SETTINGS_JSON [SHRINK...]
        sends SIZE bytes from random.Random(SEED) and prints "sent SHA256_HEX PATH_MTU STATE
        BLACK_HOLES SECONDS"; with SHRINK (a command lowering the link's MTU), runs it once a
        third of the data is out
    python -m stt_bench.netns_peer udp-receive HOST SECONDS
        prints "ready PORT", then "got N" (the size of the first datagram) or "none" when
        nothing came within SECONDS of a line on stdin (the sender is done)
    python -m stt_bench.netns_peer udp-send HOST PORT SIZE COUNT
        sends COUNT datagrams of SIZE bytes from a plain UDP socket the kernel may fragment
        (the control proving a fragment-dropping rule works)

SETTINGS_JSON is the ``STTNode`` keywords (``{}``: the defaults).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import selectors
import socket
import subprocess
import sys
import time
import warnings
from typing import Any

CHUNK = 256 * 1024
# <linux/in.h>, <linux/in6.h>: Python's socket module does not export them
IP_MTU_DISCOVER, IPV6_MTU_DISCOVER, IPV6_DONTFRAG, PMTUDISC_DONT = 10, 23, 62, 0


async def receive(host: str, size: int, settings: dict[str, Any]) -> None:
    from stt_asyncio import STTNode  # here: the UDP controls start faster without it

    async with STTNode(host=host, **settings) as node:
        print(f"ready {node.address[1]} {node.node_id.hex()}", flush=True)
        session = await node.accept()
        start = time.perf_counter()
        stream = await session.accept_stream()
        digest, got = hashlib.sha256(), 0
        async for message in stream:
            digest.update(message)
            got += len(message)
        seconds = time.perf_counter() - start
        assert got == size, (got, size)
        print(f"received {digest.hexdigest()} {seconds:.4f}", flush=True)
        await asyncio.sleep(0.5)


async def send(host: str, port: int, node_id: str, size: int, seed: int,
               settings: dict[str, Any], shrink: list[str]) -> None:
    from stt_asyncio import STTNode

    data = random.Random(seed).randbytes(size)
    async with STTNode(**settings) as node:
        session = await node.connect((host, port), bytes.fromhex(node_id), timeout=10)
        start = time.perf_counter()
        stream = session.open_stream()
        for offset in range(0, size, CHUNK):
            if shrink and offset >= size // 3:
                subprocess.run(shrink, check=True)
                shrink = []
            await stream.send(data[offset:offset + CHUNK])
        await stream.close()
        await stream.flush()
        stats = session.get_stats()
        print(f"sent {hashlib.sha256(data).hexdigest()} {stats.path_mtu} "
              f"{stats.path_mtu_state} {stats.path_mtu_black_holes} "
              f"{time.perf_counter() - start:.4f}", flush=True)
        await asyncio.sleep(0.5)


def _socket(host: str) -> socket.socket:
    return socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)


def udp_receive(host: str, seconds: float) -> None:
    """Wait for the first datagram until ``seconds`` after the starter writes a line (the
    sender is done: a slow start of the sender under load is no loss), at most 30 s."""
    with _socket(host) as sock, selectors.DefaultSelector() as selector:
        sock.bind((host, 0))
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        selector.register(sys.stdin, selectors.EVENT_READ)
        print(f"ready {sock.getsockname()[1]}", flush=True)
        deadline = time.monotonic() + 30
        while (wait := deadline - time.monotonic()) > 0:
            for key, _ in selector.select(wait):
                if key.fileobj is sock:
                    print(f"got {len(sock.recv(65536))}", flush=True)
                    return
                sys.stdin.readline()
                selector.unregister(sys.stdin)
                deadline = min(deadline, time.monotonic() + seconds)
        print("none", flush=True)


def udp_send(host: str, port: int, size: int, count: int) -> None:
    """Datagrams larger than the link, don't-fragment off: the kernel cuts them into fragments."""
    with _socket(host) as sock:
        if sock.family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, PMTUDISC_DONT)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_DONTFRAG, 0)
        else:
            sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, PMTUDISC_DONT)
        for _ in range(count):
            sock.sendto(bytes(size), (host, port))
            time.sleep(0.01)


def main(argv: list[str]) -> None:
    # small kernel socket buffers warn: a figure of the defaults, not noise on the starter's pipe
    warnings.simplefilter("ignore", RuntimeWarning)
    command, args = argv[0], argv[1:]
    if command == "receive":
        asyncio.run(receive(args[0], int(args[1]), json.loads(args[2])))
    elif command == "send":
        asyncio.run(send(args[0], int(args[1]), args[2], int(args[3]), int(args[4]),
                         json.loads(args[5]), args[6:]))
    elif command == "udp-receive":
        udp_receive(args[0], float(args[1]))
    elif command == "udp-send":
        udp_send(args[0], int(args[1]), int(args[2]), int(args[3]))
    else:
        raise SystemExit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
