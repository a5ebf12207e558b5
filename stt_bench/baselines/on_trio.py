"""Raw UDP baselines on trio: trio's own readiness waits (``trio.lowlevel.wait_readable``) on
non-blocking sockets, the strongest plain-trio way to move datagrams, so each ratio compares STT
with the best the same loop can do without it."""

from __future__ import annotations

import time

import trio

from ..common import udp_pair
from .aead import make_sealer


async def raw_aead_blast(frame_size: int, seconds: float) -> float:
    """Bytes/s of payload: one task seals and sends, another drains and opens."""
    tx, rx = udp_pair()
    seal, open_ = make_sealer(frame_size)
    received = 0
    target = rx.getsockname()
    buffer = bytearray(65536)
    done = trio.current_time() + seconds

    async def receiver() -> None:
        nonlocal received
        while True:
            await trio.lowlevel.wait_readable(rx)
            while True:
                try:
                    size = rx.recv_into(buffer)
                except BlockingIOError:
                    break
                received += open_(buffer, size)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(receiver)
            counter = 0
            while trio.current_time() < done:
                for _ in range(64):
                    try:
                        tx.sendto(seal(counter), target)
                    except BlockingIOError:
                        await trio.lowlevel.wait_writable(tx)
                        break
                    counter += 1
                await trio.lowlevel.checkpoint()
            await trio.sleep(0.05)
            nursery.cancel_scope.cancel()
    finally:
        tx.close()
        rx.close()
    return received / seconds


async def raw_ping_pong(count: int) -> list[float]:
    """Raw UDP echo: a server task and the client, each waiting for readability."""
    a, b = udp_pair()
    target = b.getsockname()
    times: list[float] = []

    async def server() -> None:
        while True:
            await trio.lowlevel.wait_readable(b)
            while True:
                try:
                    data, addr = b.recvfrom(64)
                except BlockingIOError:
                    break
                b.sendto(data, addr)

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(server)
            for _ in range(count):
                start = time.perf_counter()
                a.sendto(b"ping", target)
                while True:
                    await trio.lowlevel.wait_readable(a)
                    try:
                        a.recvfrom(64)
                        break
                    except BlockingIOError:
                        continue
                times.append(time.perf_counter() - start)
            nursery.cancel_scope.cancel()
    finally:
        a.close()
        b.close()
    return times
