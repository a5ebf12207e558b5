"""The two STT ends of an impaired-link run on trio, through the public API of ``stt_anyio``
only: the roles of :mod:`stt_bench.impaired.end_asyncio`, written for trio."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

import trio

import stt_proto
from stt_anyio import STTNode

from ..common import on_loopback
from ..workloads.lines import emit, read_line
from . import series


async def _line() -> str:
    """The starter's next line, read in a worker thread so trio keeps running."""
    return await trio.to_thread.run_sync(read_line)


async def _report(doc: dict[str, Any]) -> None:
    """Write a report line in a worker thread, so that a full pipe stops no node (see
    :func:`stt_bench.impaired.end_asyncio._report`)."""
    await trio.to_thread.run_sync(emit, doc)


async def receiver(spec: dict[str, Any]) -> None:
    """Count every flow's bytes to its sender's EOF, then report each flow's arrivals (per
    message) and its session's wire bytes received every ~10 ms (the delivery rate)."""
    flows = [{"bytes": 0, "arrivals": [], "received": []} for _ in range(int(spec["flows"]))]
    async with STTNode(**on_loopback(spec["settings"])) as node:
        async def drain(flow: dict[str, Any]) -> None:
            session = await node.accept()
            stream = await session.accept_stream()
            flow["accepted"] = time.monotonic()
            arrivals = flow["arrivals"]
            received = flow["received"]
            async with trio.open_nursery() as inner:
                async def sampling() -> None:
                    while True:
                        received.append((time.monotonic(),
                                         session.get_stats().bytes_received_wire))
                        await trio.sleep(series.SAMPLE_INTERVAL)

                inner.start_soon(sampling)
                async for message in stream:  # to the sender's EOF
                    flow["bytes"] += len(message)
                    arrivals.append((time.monotonic(), flow["bytes"]))
                inner.cancel_scope.cancel()

        emit({"address": node.address, "node_id": node.node_id.hex()})
        async with trio.open_nursery() as nursery:
            for flow in flows:
                nursery.start_soon(functools.partial(drain, flow))
        await _report({"flows": flows})
        await _line()


async def sender(spec: dict[str, Any]) -> None:
    """Send one stream's worth, sampling the session's stats, and report."""
    size = int(spec["size"])
    seconds = spec.get("seconds")
    chunk = int(spec["message"])
    host, port = spec["address"]
    async with STTNode(**on_loopback(spec["settings"])) as node:
        session = await node.connect((str(host), int(port)), bytes.fromhex(spec["node_id"]),
                                     timeout=20)
        stream = session.open_stream()
        message = os.urandom(chunk)
        emit({"connected": True})
        if spec.get("wait_go"):
            await _line()
        samples: list[dict[str, Any]] = []
        start = time.monotonic()
        async with trio.open_nursery() as nursery:
            async def sampling() -> None:
                while True:
                    samples.append(series.sample(session.get_stats(),
                                                 time.monotonic() - start))
                    await trio.sleep(series.SAMPLE_INTERVAL)

            nursery.start_soon(sampling)
            sent = 0
            end = None if seconds is None else start + float(seconds)
            while (sent < size) if end is None else (time.monotonic() < end):
                part = (message if end is not None or size - sent >= chunk
                        else message[:size - sent])
                await stream.send(part)
                sent += len(part)
            queued = time.monotonic()
            await stream.close()
            await stream.flush()
            flushed = time.monotonic()
            nursery.cancel_scope.cancel()
        samples.append(series.sample(session.get_stats(), flushed - start))
        report = {"start": start, "queued": queued, "flushed": flushed, "bytes": sent,
                  "series": spec.get("series"), "compiled": stt_proto.COMPILED,
                  "summary": series.summarise(samples),
                  "rtts_ms": series.rtt_samples(samples)}
        if spec.get("series"):
            series.write(spec["series"], {**spec.get("header", {}), **report, "rtts_ms": None},
                          samples)
        await _report(report)
        await _line()


ROLES = {"receiver": receiver, "sender": sender}
