"""Which callable measures which workload on which runtime, written out: ``stt bench`` and the
suite name a workload and a runtime, and :func:`run_on` looks it up here (no lookup by name
through a module's globals, so every benchmark module is imported the ordinary way and the
package has no import cycle).

A workload is an async function; uvloop runs the asyncio ones on its own loop. These are the
workloads with both ends in one process; the headline's two-process measurements are
:mod:`stt_bench.twoproc`'s.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any

from .baselines import on_asyncio as raw_asyncio
from .baselines import on_trio as raw_trio
from .baselines.quic import aioquic_throughput
from .baselines.tls import tcp_tls_throughput, tcp_tls_throughput_trio
from .workloads import on_asyncio as stt_asyncio
from .workloads import on_trio as stt_trio
from .workloads.core import core_goodput
from .workloads.idle import idle_sessions
from .workloads.workers import workers_goodput

Workload = Callable[..., Coroutine[Any, Any, Any]]

ASYNCIO: Mapping[str, Workload] = MappingProxyType({
    # baselines
    "raw_aead_blast": raw_asyncio.raw_aead_blast,
    "raw_ping_pong": raw_asyncio.raw_ping_pong,
    "tcp_tls_throughput": tcp_tls_throughput,
    "aioquic_throughput": aioquic_throughput,
    # STT
    "stt_throughput": stt_asyncio.stt_throughput,
    "stt_ping_pong": stt_asyncio.stt_ping_pong,
    "handshakes": stt_asyncio.handshakes,
    "core_goodput": core_goodput,
    "idle_sessions": idle_sessions,
    "workers_goodput": workers_goodput,
})

TRIO: Mapping[str, Workload] = MappingProxyType({
    "raw_aead_blast": raw_trio.raw_aead_blast,
    "raw_ping_pong": raw_trio.raw_ping_pong,
    "tcp_tls_throughput": tcp_tls_throughput_trio,
    "stt_throughput": stt_trio.stt_throughput,
    "stt_ping_pong": stt_trio.stt_ping_pong,
    "handshakes": stt_trio.handshakes,
})

WORKLOADS: Mapping[str, Mapping[str, Workload]] = MappingProxyType({
    "asyncio": ASYNCIO, "uvloop": ASYNCIO, "trio": TRIO})


def workload(runtime: str, name: str) -> Workload:
    """The callable measuring ``name`` on ``runtime``; LookupError naming what exists."""
    try:
        table = WORKLOADS[runtime]
    except KeyError:
        raise LookupError(f"unknown runtime {runtime!r} (one of {', '.join(WORKLOADS)})") \
            from None
    try:
        return table[name]
    except KeyError:
        raise LookupError(f"no workload {name!r} on {runtime} (one of {', '.join(table)})") \
            from None


def run_on(runtime: str, name: str, *args: Any) -> Any:
    """Run workload ``name`` for ``runtime`` on a fresh event loop; its result."""
    factory = workload(runtime, name)
    if runtime == "trio":
        import trio

        return trio.run(factory, *args)
    if runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        return uvloop.run(factory(*args))
    return asyncio.run(factory(*args))
