"""Two asyncio nodes on loopback: a client sends messages on a stream, the server echoes them.

Run: ``python examples/echo_asyncio.py`` (uses uvloop when it is installed).
"""

from __future__ import annotations

import asyncio

import stt_asyncio
from stt_asyncio import Session, StreamClosed, STTNode


async def echo_server(node: STTNode) -> None:
    session: Session = await node.accept()
    stream = await session.accept_stream()
    try:
        async for message in stream:
            await stream.send(message)
    finally:
        await stream.close()


async def main() -> None:
    async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
        serving = asyncio.create_task(echo_server(server))
        session = await client.connect(server.address, server.node_id)
        stream = session.open_stream(no_delay=True)
        for word in (b"hello", b"encrypted", b"world"):
            await stream.send(word)
            assert await stream.receive() == word
        await stream.close()
        try:
            await stream.receive()
        except StreamClosed:
            print("echoed 3 messages; rtt", round(session.get_stats().rtt_ms, 3), "ms")
        await serving


if __name__ == "__main__":
    stt_asyncio.run(main())
