"""One end of tests/test_pmtu_netns.py, run inside a network namespace (``ip netns exec``).

    python -m tests.netns_peer receive HOST SIZE
        prints "ready PORT NODE_ID_HEX", then receives one stream of SIZE bytes and prints
        "received SHA256_HEX"
    python -m tests.netns_peer send HOST PORT NODE_ID_HEX SIZE SEED [SHRINK_CMD...]
        sends SIZE bytes from random.Random(SEED) with default settings and prints
        "sent SHA256_HEX PATH_MTU STATE BLACK_HOLES SECONDS"; with SHRINK_CMD, runs it (a
        command lowering the link's MTU) once a third of the data is out
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import subprocess
import sys
import time

from stt_asyncio import STTNode

CHUNK = 256 * 1024


async def receive(host: str, size: int) -> None:
    async with STTNode(host=host) as node:
        print(f"ready {node.address[1]} {node.node_id.hex()}", flush=True)
        session = await node.accept()
        stream = await session.accept_stream()
        digest, got = hashlib.sha256(), 0
        async for message in stream:
            digest.update(message)
            got += len(message)
        assert got == size, (got, size)
        print(f"received {digest.hexdigest()}", flush=True)
        await asyncio.sleep(0.5)


async def send(host: str, port: int, node_id: str, size: int, seed: int,
               shrink: list[str]) -> None:
    data = random.Random(seed).randbytes(size)
    start = time.monotonic()
    async with STTNode() as node:
        session = await node.connect((host, port), bytes.fromhex(node_id), timeout=10)
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
              f"{time.monotonic() - start:.3f}", flush=True)
        await asyncio.sleep(0.5)


def main(argv: list[str]) -> None:
    if argv[0] == "receive":
        asyncio.run(receive(argv[1], int(argv[2])))
    else:
        asyncio.run(send(argv[1], int(argv[2]), argv[3], int(argv[4]), int(argv[5]), argv[6:]))


if __name__ == "__main__":
    main(sys.argv[1:])
