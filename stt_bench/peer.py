"""One end of a two-process benchmark, run as a process of its own:

    python -m stt_bench.peer '{"runtime": "uvloop", "role": "sink", "kind": "stt", ...}'

The headline figures come from two such processes, started fresh for each measurement by
:mod:`stt_bench.twoproc`: they import the library, open a node with default settings and do
nothing else (no allocator tuning, no buffer sizes, no priorities), as an application embedding
STT would. A peer talks to the process that started it in JSON lines: it writes one line when it
is ready (its address and node id) and one with its result, and reads a line on stdin where it
must wait for its starter ("report", "go", or end of input to finish).

The roles (``sink``, ``source``, ``echo``, ``pinger``, ``hs_server``, ``hs_client``) are
written once per runtime in :mod:`stt_bench.workloads.ends_asyncio` (asyncio and uvloop) and
:mod:`stt_bench.workloads.ends_trio` (trio, through ``stt_anyio``).
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any


def run_roles(spec: dict[str, Any], asyncio_roles: str, trio_roles: str) -> int:
    """Run ``spec["role"]`` on ``spec["runtime"]``: the coroutine function of that name in the
    ``ROLES`` table of module ``asyncio_roles`` (asyncio, uvloop) or ``trio_roles`` (trio)."""
    import importlib

    runtime = spec["runtime"]
    if runtime == "trio":
        import trio

        trio.run(importlib.import_module(trio_roles).ROLES[spec["role"]], spec)
        return 0
    import asyncio

    coro = importlib.import_module(asyncio_roles).ROLES[spec["role"]](spec)
    if runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec: dict[str, Any] = json.loads(args[0])
    # the node warns when the kernel grants smaller socket buffers than asked: a figure of
    # the defaults, reported by the starter, not noise on this process's stderr
    warnings.simplefilter("ignore", RuntimeWarning)
    return run_roles(spec, "stt_bench.workloads.ends_asyncio", "stt_bench.workloads.ends_trio")


if __name__ == "__main__":
    sys.exit(main())
