"""Many idle sessions between two nodes in this process: RSS per session and per stream, and
the time to close them all."""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any

from stt_asyncio import STTNode
from stt_proto.session import CIPHER_IDLE_RELEASE

from ..alloc import trim_heap
from ..common import MiB, on_loopback, one_peer_sessions


def _rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


EXTRA_STREAMS = 3  # idle streams per session beyond the first


def _settled_rss() -> tuple[int, int]:
    """RSS now, and RSS once the allocator has returned whole free pages (malloc_trim)."""
    gc.collect()
    before = _rss()
    trim_heap()
    return before, _rss()


def _growth(after: tuple[int, int], start: tuple[int, int]) -> tuple[int, int]:
    """RSS growth over a phase, as held and once trimmed. A phase starts where the last
    reading left the heap, trimmed: measured from the untrimmed reading instead, memory that
    was free before the phase (the suite's earlier workloads, the last phase's slack) and
    that the phase reused would be taken off its growth, below even the trimmed figure."""
    return after[0] - start[1], after[1] - start[1]


async def idle_sessions(count: int) -> dict[str, float]:
    """Open ``count`` sessions between two nodes in this process, then one stream each with
    one message, then ``EXTRA_STREAMS`` more; report RSS per idle session, for the first
    stream of a session (which also brings the session's transfer state into use) and per
    further idle stream (both ends hold each, so growth is divided by 2 x count), and the time
    to close them all.

    Each figure is taken once the sessions are idle (no packet for longer than
    ``CIPHER_IDLE_RELEASE``, so they have dropped their AEAD objects), as RSS and as RSS after
    ``malloc_trim(0)``, both from the trimmed heap the phase started with (:func:`_growth`):
    memory freed by the handshakes stays in the heap for reuse, and the second figure leaves
    it out."""
    settings: dict[str, Any] = {
        "max_sessions": count + 16, "retry_threshold": count + 16, **one_peer_sessions(count),
        "keep_alive_interval": 60.0, "keep_alive_timeout": 600.0,
        "recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB}
    idle = CIPHER_IDLE_RELEASE + 0.5
    settings = on_loopback(settings)
    async with STTNode(**settings) as server, STTNode(**settings) as client:
        before = _settled_rss()
        start = time.perf_counter()
        sessions: list[Any] = []
        for first in range(0, count, 500):
            batch = range(first, min(count, first + 500))
            sessions += await asyncio.gather(*(client.connect(server.address, server.node_id)
                                               for _ in batch))
        connect_time = time.perf_counter() - start
        accepted = [await server.accept() for _ in range(count)]
        await asyncio.sleep(idle)
        with_sessions = _settled_rss()
        streams = [s.open_stream() for s in sessions]
        await asyncio.gather(*(st.send(b"x") for st in streams))
        incoming = await asyncio.gather(*(s.accept_stream() for s in accepted))
        await asyncio.gather(*(st.receive() for st in incoming))
        await asyncio.sleep(idle)
        with_first = _settled_rss()
        more = [s.open_stream() for s in sessions for _ in range(EXTRA_STREAMS)]
        await asyncio.gather(*(st.send(b"x") for st in more))
        incoming = await asyncio.gather(*(s.accept_stream() for s in accepted
                                          for _ in range(EXTRA_STREAMS)))
        await asyncio.gather(*(st.receive() for st in incoming))
        await asyncio.sleep(idle)
        with_streams = _settled_rss()
        start = time.perf_counter()
        await client.close()
        # ``accepted`` holds every session of the server's: public facades, no private state
        while (not all(s.is_closed for s in accepted)
               and time.perf_counter() - start < 30):
            await asyncio.sleep(0.001)  # until the peer has seen every CLOSE
        close_time = time.perf_counter() - start
        open_after = sum(not s.is_closed for s in accepted)
    per = 2 * count
    sessions_held, sessions_trimmed = _growth(with_sessions, before)
    first_held, first_trimmed = _growth(with_first, with_sessions)
    more_held, more_trimmed = _growth(with_streams, with_first)
    return {"sessions": count, "connect_s": connect_time,
            "rss_per_session_untrimmed": sessions_held / per,
            "rss_first_stream_untrimmed": first_held / per,
            "rss_per_stream_untrimmed": more_held / per / EXTRA_STREAMS,
            "rss_per_session": sessions_trimmed / per,
            "rss_first_stream": first_trimmed / per,
            "rss_per_stream": more_trimmed / per / EXTRA_STREAMS,
            "close_s": close_time, "server_sessions_after_close": open_after}
