"""Raw UDP baselines on an asyncio loop (asyncio or uvloop): sealed datagrams as fast as the
socket takes them, and a ping-pong through reader callbacks. The ceiling of any encrypted
Python transport on the same loop."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from typing import Any

from ..common import udp_pair
from .aead import make_sealer


async def blast(sock: socket.socket, seal: Callable[[int], bytes], target: Any,
                done: float) -> None:
    """The raw baseline's sender: sealed datagrams as fast as the socket takes them, 64 per
    loop pass, until the loop's clock reaches ``done``."""
    loop = asyncio.get_running_loop()
    counter = 0
    while loop.time() < done:
        for _ in range(64):
            try:
                sock.sendto(seal(counter), target)
            except BlockingIOError:
                break
            counter += 1
        await asyncio.sleep(0)


async def raw_aead_blast(frame_size: int, seconds: float) -> float:
    """Bytes/s of payload received: sender seals and sends, receiver drains and opens."""
    loop = asyncio.get_running_loop()
    tx, rx = udp_pair()
    seal, open_ = make_sealer(frame_size)
    received = 0
    buffer = bytearray(65536)
    done = loop.time() + seconds

    def on_readable() -> None:
        nonlocal received
        while True:
            try:
                size = rx.recv_into(buffer)
            except BlockingIOError:
                return
            received += open_(buffer, size)

    loop.add_reader(rx.fileno(), on_readable)
    try:
        await blast(tx, seal, rx.getsockname(), done)
        await asyncio.sleep(0.05)
    finally:
        loop.remove_reader(rx.fileno())
        tx.close()
        rx.close()
    return received / seconds


async def raw_ping_pong(count: int) -> list[float]:
    """Raw UDP echo through the event loop: reader callbacks on both sockets, the client
    awaiting a future that its callback resolves (as STT's streams do)."""
    loop = asyncio.get_running_loop()
    a, b = udp_pair()
    waiter: asyncio.Future[None] | None = None

    def server_readable() -> None:
        while True:
            try:
                data, addr = b.recvfrom(64)
            except BlockingIOError:
                return
            b.sendto(data, addr)

    def client_readable() -> None:
        while True:
            try:
                a.recvfrom(64)
            except BlockingIOError:
                return
            if waiter is not None and not waiter.done():
                waiter.set_result(None)

    loop.add_reader(b.fileno(), server_readable)
    loop.add_reader(a.fileno(), client_readable)
    times: list[float] = []
    target = b.getsockname()
    try:
        for _ in range(count):
            waiter = loop.create_future()
            start = time.perf_counter()
            a.sendto(b"ping", target)
            await waiter
            times.append(time.perf_counter() - start)
    finally:
        loop.remove_reader(a.fileno())
        loop.remove_reader(b.fileno())
        a.close()
        b.close()
    return times
