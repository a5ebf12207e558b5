"""A peer process for interop tests: an stt_anyio node on the backend named in argv[1]
("trio" or "asyncio"), or an stt_asyncio node when argv[1] is "stt_asyncio"; argv[2] is the
number of streams to answer, the optional argv[3] the transport ("udp" or "websocket").

It prints "READY <port> <node id hex>", accepts one session, and answers every stream the
client opens with the sha256 of everything received on it, then exits."""

from __future__ import annotations

import asyncio
import hashlib
import sys
import warnings

import anyio

import stt_asyncio
from stt_anyio import Stream, STTNode

warnings.simplefilter("ignore")


TRANSPORT = sys.argv[3] if len(sys.argv) > 3 else "udp"


async def main(streams: int) -> None:
    async with STTNode(transport=TRANSPORT) as node:
        print("READY", node.address[1], node.node_id.hex(), flush=True)
        session = await node.accept()

        async def answer(stream: Stream) -> None:
            digest = hashlib.sha256()
            async for message in stream:
                digest.update(message)
            await stream.send(digest.hexdigest().encode())
            await stream.send_eof()  # the client checks the digest; it may close at once

        async with anyio.create_task_group() as group:
            for _ in range(streams):
                group.start_soon(answer, await session.accept_stream())


async def main_asyncio(streams: int) -> None:
    async with stt_asyncio.STTNode(transport=TRANSPORT) as node:
        print("READY", node.address[1], node.node_id.hex(), flush=True)
        session = await node.accept()

        async def answer(stream: stt_asyncio.Stream) -> None:
            digest = hashlib.sha256()
            async for message in stream:
                digest.update(message)
            await stream.send(digest.hexdigest().encode())
            await stream.close()

        async with asyncio.TaskGroup() as group:
            for _ in range(streams):
                group.create_task(answer(await session.accept_stream()))


if __name__ == "__main__":
    if sys.argv[1] == "stt_asyncio":
        stt_asyncio.run(main_asyncio(int(sys.argv[2])))
    else:
        anyio.run(main, int(sys.argv[2]), backend=sys.argv[1])
