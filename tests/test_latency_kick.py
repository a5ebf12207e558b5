"""An echo on asyncio (a default stream's send, which defers its poll with a kick, then a
receive, which runs that poll at once) leaves the loop no callback to run for the kick: the
deferred poll, already done, is cancelled rather than run empty once per message."""

from __future__ import annotations

import asyncio

import pytest

from stt_asyncio import STTNode

pytestmark = pytest.mark.filterwarnings("ignore:the kernel granted:RuntimeWarning")
ROUNDS = 50


def test_an_echo_runs_no_empty_kick_callback_per_message() -> None:
    ran: list[bool] = []  # one entry per kick callback the loop ran: was a poll still owed?
    echoed: list[bytes] = []

    async def main() -> None:
        async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
            kicked_service = server._kicked_service

            def counted() -> None:
                ran.append(server._kick_handle is not None)
                kicked_service()

            server._kicked_service = counted  # type: ignore[method-assign]

            async def serve() -> None:
                session = await server.accept()
                stream = await session.accept_stream()
                async for message in stream:
                    await stream.send(message)  # kicks: the poll is deferred ...
                    echoed.append(message)  # ... and the next receive() runs it

            task = asyncio.create_task(serve())
            session = await client.connect(server.address, server.node_id)
            stream = session.open_stream(no_delay=True)
            await stream.send(b"warm")
            assert await stream.receive() == b"warm"
            ran.clear()
            for _ in range(ROUNDS):
                await stream.send(b"ping")
                assert await stream.receive() == b"ping"
            task.cancel()

    asyncio.run(main())
    assert len(echoed) == ROUNDS + 1
    assert ran.count(False) == 0, f"{ran.count(False)} empty kick callbacks in {ROUNDS} echoes"

