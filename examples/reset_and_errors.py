"""What a receiver sees when its peer aborts a stream or closes the session.

Run: ``python examples/reset_and_errors.py``.
"""

from __future__ import annotations

import asyncio

import stt_asyncio
from stt_asyncio import SessionClosed, StreamReset, STTNode


async def main() -> None:
    async with STTNode(host="127.0.0.1") as server, STTNode(host="127.0.0.1") as client:
        session = await client.connect(server.address, server.node_id)
        stream = session.open_stream()
        await stream.send(b"the first half of a file")
        await stream.reset(42)  # abort: the receiver must not mistake this for the end

        peer = await server.accept()
        incoming = await peer.accept_stream()
        try:
            async for _ in incoming:
                pass
        except StreamReset as reset:
            print("transfer aborted by the peer, code", reset.error_code)

        await session.close(7, "shutting down")
        try:
            await asyncio.wait_for(peer.accept_stream(), 5)
        except SessionClosed as closed:
            print("session closed by peer:", closed.error_code, closed.reason)


if __name__ == "__main__":
    stt_asyncio.run(main())
