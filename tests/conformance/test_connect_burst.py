"""Many concurrent connects, as a client with a pool of sessions opens them: their handshakes
start as they are made, not after the whole burst, and cancelling the burst cleans up."""

from __future__ import annotations

import os
import select
import socket

import anyio

from .runtimes import Runtime

COUNT = 300  # each connect makes a key pair (30-70 us): the burst takes 10-20 ms of steps


def _holds_datagram(sock: socket.socket) -> bool:
    return bool(select.select([sock], [], [], 0)[0])


def test_a_burst_of_connects_sends_its_first_initials_before_the_last_connect_starts(
        rt: Runtime) -> None:
    """A connect defers its INITIAL to the node's next poll, which the loop runs after every
    task ready now; with hundreds ready, that poll is not held back for all of them
    (stt_runtime.node_core.KICK_DEFER_MAX): connects that start after an INITIAL has
    arrived at the peer prove it."""

    async def body(rt: Runtime) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.bind(("127.0.0.1", 0))
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            started_after_first = 0
            started = 0
            seen = False
            all_started = anyio.Event()
            async with rt.node(host="127.0.0.1") as node:

                async def one() -> None:
                    nonlocal started, started_after_first, seen
                    seen = seen or _holds_datagram(peer)
                    started_after_first += seen
                    started += 1
                    if started == COUNT:
                        all_started.set()
                    await node.connect(peer.getsockname(), os.urandom(32))

                with anyio.fail_after(30):
                    async with anyio.create_task_group() as group:
                        for _ in range(COUNT):
                            group.start_soon(one)
                        await all_started.wait()
                        group.cancel_scope.cancel()  # the peer never answers
                with anyio.fail_after(5):  # each cancelled connect closes its session
                    while node.get_stats()["sessions_open"]:
                        await anyio.sleep(0.01)
            assert started == COUNT
            assert started_after_first > 0, "every connect ran before the first INITIAL left"
            data, _ = peer.recvfrom(2048)
            assert len(data) >= 1200  # an INITIAL, padded

    rt.run(body)
