"""The two STT ends of an impaired-link run on an asyncio loop (asyncio or uvloop), through the
public API of ``stt_asyncio`` only. Run by :mod:`stt_bench.impaired.end` in a process of its own.

The receiver accepts ``flows`` sessions, one stream each, and only counts bytes (with the arrival
time of each message, for fairness over a window). A sender connects, says so, waits for "go"
when told to (so that several flows start together), sends ``size`` bytes (or for ``seconds``)
as ``message``-byte messages, closes and flushes its stream, then reports its times and writes
its time series.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import stt_proto
from stt_asyncio import STTNode

from ..common import on_loopback
from ..workloads.lines import emit, read_line
from . import series


async def _line() -> str:
    """The starter's next line, read in a worker thread so the loop keeps running."""
    return await asyncio.get_running_loop().run_in_executor(None, read_line)


async def _report(doc: dict[str, Any]) -> None:
    """Write a report line in a worker thread. A report can outgrow the pipe's buffer (the
    receiver's arrivals and samples: 64 KiB after ~10 s), and the starter reads the senders'
    reports first: a write on the loop would stop the node until then, and a sender still
    waiting for the ACK of its last packets would time out (KeepAliveTimeout)."""
    await asyncio.get_running_loop().run_in_executor(None, emit, doc)


async def receiver(spec: dict[str, Any]) -> None:
    """Count every flow's bytes to its sender's FIN, then report each flow's arrivals (per
    message) and its session's wire bytes received every ~10 ms (the delivery rate)."""
    flows: list[dict[str, Any]] = []

    async with STTNode(**on_loopback(spec["settings"])) as node:
        async def drain(flow: dict[str, Any]) -> None:
            session = await node.accept()
            stream = await session.accept_stream()
            flow["accepted"] = time.monotonic()
            arrivals = flow["arrivals"]
            received = flow["received"]

            async def sampling() -> None:
                while True:
                    received.append((time.monotonic(),
                                     session.get_stats().bytes_received_wire))
                    await asyncio.sleep(series.SAMPLE_INTERVAL)

            sampler = asyncio.create_task(sampling())
            async for message in stream:  # to the sender's FIN
                flow["bytes"] += len(message)
                arrivals.append((time.monotonic(), flow["bytes"]))
            sampler.cancel()

        for _ in range(int(spec["flows"])):
            flows.append({"bytes": 0, "arrivals": [], "received": []})
        emit({"address": node.address, "node_id": node.node_id.hex()})
        await asyncio.gather(*(drain(flow) for flow in flows))
        await _report({"flows": flows})
        await _line()  # stay up until the starter has every sender's report


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

        async def sampling() -> None:
            while True:
                samples.append(series.sample(session.get_stats(), time.monotonic() - start))
                await asyncio.sleep(series.SAMPLE_INTERVAL)

        sampler = asyncio.create_task(sampling())
        sent = 0
        end = None if seconds is None else start + float(seconds)
        while (sent < size) if end is None else (time.monotonic() < end):
            part = message if end is not None or size - sent >= chunk else message[:size - sent]
            await stream.send(part)
            sent += len(part)
        queued = time.monotonic()
        await stream.close()
        await stream.flush()
        flushed = time.monotonic()
        sampler.cancel()
        samples.append(series.sample(session.get_stats(), flushed - start))
        report = {"start": start, "queued": queued, "flushed": flushed, "bytes": sent,
                  "series": spec.get("series"), "compiled": stt_proto.COMPILED,
                  "summary": series.summarise(samples),
                  "rtts_ms": series.rtt_samples(samples)}
        if spec.get("series"):
            series.write(spec["series"], {**spec.get("header", {}), **report, "rtts_ms": None},
                          samples)
        await _report(report)
        await _line()  # close the session only when the starter says so


ROLES = {"receiver": receiver, "sender": sender}
