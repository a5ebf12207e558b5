"""What a session's runtime facade holds while nobody waits on it (issue 25, handshakes/s):
every object it owns is one more for each full garbage-collector pass over thousands of live
sessions. Its wake-up signals are made by the first wait, and a wait made after the event
still sees it (the condition is checked before every wait)."""

from __future__ import annotations

import asyncio
import gc

from stt_asyncio import STTNode
from stt_runtime.session import Session

SIGNALS = ("_incoming_signal", "_datagram_signal", "_state_signal")


def _owned(session: Session) -> int:
    """GC-tracked objects the facade owns (not the node or the core session it points to)."""
    shared = (session._node, session._proto)
    return sum(1 for name in Session.__slots__
               if name != "__weakref__" and (value := getattr(session, name, None)) is not None
               and gc.is_tracked(value) and value not in shared)


def test_an_idle_accepted_session_owns_no_signal() -> None:
    async def main() -> None:
        async with STTNode() as server, STTNode() as client:
            dialled = await client.connect(server.address, server.node_id, timeout=5.0)
            accepted = await server.accept()
            assert all(getattr(accepted, name) is None for name in SIGNALS)
            # the stream table and the two queues; three signals more before
            assert _owned(accepted) <= 3
            assert dialled._state_signal is not None  # connect waited for the handshake
            # each wait still wakes: a stream and a datagram sent before anyone waited
            stream = dialled.open_stream()
            await stream.send(b"first")
            await dialled.send_datagram(b"datagram")
            incoming = await asyncio.wait_for(accepted.accept_stream(), 5.0)
            assert await asyncio.wait_for(incoming.receive(), 5.0) == b"first"
            assert await asyncio.wait_for(accepted.receive_datagram(), 5.0) == b"datagram"
            # and a wait made before the event is woken by it
            waiting = asyncio.ensure_future(accepted.accept_stream())
            await asyncio.sleep(0.01)
            assert accepted._incoming_signal is not None and not waiting.done()
            second = dialled.open_stream()
            await second.send(b"second")
            assert (await asyncio.wait_for(waiting, 5.0)).stream_id == second.stream_id

    asyncio.run(main())


def test_handshakes_leave_no_cyclic_garbage() -> None:
    """Established sessions and what their handshakes left: none of it waits for the cycle
    collector (what a burst of thousands of handshakes would make it trace and free)."""

    async def main() -> None:
        async with STTNode(host="127.0.0.1", max_sessions_per_identity=100) as server, \
                STTNode(host="127.0.0.1") as client:
            accepted: list[Session] = []

            async def accept() -> None:
                while True:
                    accepted.append(await server.accept())

            task = asyncio.ensure_future(accept())
            await client.connect(server.address, server.node_id, timeout=5.0)  # warm up
            gc.collect()
            gc.set_debug(gc.DEBUG_SAVEALL)
            try:
                kept = await asyncio.gather(*(
                    client.connect(server.address, server.node_id, timeout=5.0)
                    for _ in range(40)))
                await asyncio.sleep(0.2)
                found = gc.collect()
                garbage = [type(o).__qualname__ for o in gc.garbage]
            finally:
                gc.set_debug(0)
                gc.garbage.clear()
            task.cancel()
            assert len(kept) == 40 and len(accepted) == 41
            assert found == 0, garbage

    asyncio.run(main())
