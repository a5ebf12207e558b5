"""Where the CPU goes: cProfile's own time per function over one stream on one asyncio loop,
grouped by concern (framing, recovery, streams, session, runtime, AEAD, socket I/O)."""

from __future__ import annotations

import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys

from ..common import MiB
from .on_asyncio import stt_throughput

FILE_CATEGORIES = (
    ("framing", ("frames.py", "frame_types.py", "packet.py", "varint.py")),
    ("recovery + congestion", ("recovery.py", "ack.py", "rangeset.py", "rtt.py", "congestion/",
                               "replay.py")),
    ("streams", ("stt_proto/streams/",)),
    ("session + endpoint", ("session.py", "stt_proto/session/", "endpoint.py", "dataplane.py")),
    ("runtime (stt_asyncio + asyncio)", ("stt_asyncio/", "asyncio/", "uvloop")),
)


def category(filename: str, function: str) -> str:
    """The concern (a row of ``FILE_CATEGORIES``, AEAD, socket I/O or other) of a cProfile row."""
    if filename == "~":  # a builtin: cProfile names it by its type
        if "AESGCM" in function or "ChaCha20Poly1305" in function:
            return "AEAD"
        if "socket" in function:
            return "socket I/O"
        return "other"
    path = filename.replace("\\", "/")
    for name, needles in FILE_CATEGORIES:
        if any(needle in path for needle in needles):
            return name
    return "other"


def profile_summary(frame_size: int, seconds: float) -> dict[str, float]:
    """Share of CPU time by concern for one stream at ``frame_size``, both ends on one asyncio
    loop (cProfile's own time per function, grouped by module)."""
    settings = {"max_frame_size": frame_size, "recv_buffer_size": 8 * MiB,
                "send_buffer_size": 8 * MiB}
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(stt_throughput(settings, seconds))
    profiler.disable()
    shares: dict[str, float] = {}
    rows = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    for (filename, _, function), row in rows.items():
        concern = category(filename, function)
        shares[concern] = shares.get(concern, 0.0) + row[2]
    total = sum(shares.values()) or 1.0
    return {name: value / total for name, value in sorted(shares.items(),
                                                          key=lambda kv: -kv[1])}


def profile_summary_of_sources(frame_size: int, seconds: float) -> dict[str, float]:
    """:func:`profile_summary` over the Python sources of the core: cProfile sees no function
    inside mypyc-compiled modules, so with the compiled build it runs in a child process with
    ``STT_PURE=1``. The shares are then those of the sources, not of the compiled build."""
    import stt_proto

    if not stt_proto.COMPILED:
        return profile_summary(frame_size, seconds)
    code = ("import json, sys; from stt_bench.workloads.profile import profile_summary; "
            "print(json.dumps(profile_summary(int(sys.argv[1]), float(sys.argv[2]))))")
    result = subprocess.run([sys.executable, "-c", code, str(frame_size), str(seconds)],
                            capture_output=True, text=True, check=True, timeout=300,
                            env={**os.environ, "STT_PURE": "1"})
    shares: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return shares
