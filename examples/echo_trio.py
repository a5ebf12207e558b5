"""The echo example on trio with ``stt_anyio``: streams are anyio object streams.

Run: ``python examples/echo_trio.py`` (``--asyncio`` runs the same code on asyncio).
"""

from __future__ import annotations

import sys

import anyio
from anyio.abc import ObjectStream

from stt_anyio import STTNode


async def echo(stream: ObjectStream[bytes]) -> None:
    async for message in stream:  # ends at the peer's send_eof(): anyio.EndOfStream
        await stream.send(message)
    await stream.send_eof()


async def main() -> None:
    async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client, \
            anyio.create_task_group() as group:

        async def serve() -> None:
            session = await server.accept()
            await echo(await session.accept_stream())

        group.start_soon(serve)
        session = await client.connect(server.address, server.node_id)
        stream = session.open_stream()
        for word in (b"hello", b"from", b"anyio"):
            await stream.send(word)
            assert await stream.receive() == word
        await stream.send_eof()
        try:
            await stream.receive()
        except anyio.EndOfStream:
            print("echoed 3 messages over", "asyncio" if "--asyncio" in sys.argv else "trio")


if __name__ == "__main__":
    anyio.run(main, backend="asyncio" if "--asyncio" in sys.argv else "trio")
