"""A ping-pong re-arms no timer per message (asyncio binding): each message moves the
session's deadlines (the loss timer set on send, cleared on the answer's ACK; the ACK delay),
and the driver keeps one armed handle that is replaced only when a deadline moves earlier
than it (``AsyncioDriver._arm_timer``). A guard: replacing the handle on every change cost
a cancelled handle and a new one per message at each end."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stt_asyncio import STTNode

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
ROUNDS = 300


def test_a_ping_pong_rearms_no_timer_per_message() -> None:
    armed: list[float] = []

    async def main() -> None:
        loop = asyncio.get_running_loop()
        call_later = loop.call_later

        def counted(delay: float, callback: Any, *args: Any) -> asyncio.TimerHandle:
            armed.append(delay)
            return call_later(delay, callback, *args)

        async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
            server_session: list[Any] = []

            async def serve() -> None:
                session = await server.accept()
                server_session.append(session)
                stream = await session.accept_stream()
                async for message in stream:
                    await stream.send(message)

            task = asyncio.create_task(serve())
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            for _ in range(20):  # past the handshake's timers
                await stream.send(b"warm")
                await stream.receive()
            loop.call_later = counted  # type: ignore[method-assign]
            try:
                for _ in range(ROUNDS):
                    await stream.send(b"ping")
                    assert await stream.receive() == b"ping"
            finally:
                loop.call_later = call_later  # type: ignore[method-assign]
            task.cancel()

    asyncio.run(main())
    # both nodes on this loop: 2 x ROUNDS messages; a timer that fires early and re-arms now
    # and then (once per few ms) is expected, one per message is not
    assert len(armed) < ROUNDS // 10, f"{len(armed)} timers armed in {ROUNDS} round trips"
