"""The sender's time series: one sample of ``session.get_stats()`` every ~10 ms, kept in memory
while the transfer runs (no file I/O on the sender's loop) and written as JSON lines after it.

The first line of a series file is a header (``{"kind": "header", ...}``: the case, the
bottleneck rate and the phase marks), then one line per sample (``"t"``: seconds since the
sender started sending), then, added by the runner after the transfer, the receiver's wire bytes
received every ~10 ms (``{"kind": "receiver", ...}``, on the same time axis: the delivery rate).
:mod:`stt_bench.impaired.plot` draws it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SAMPLE_INTERVAL = 0.010

# What each sample keeps of SessionStats: enough to see the window, pacing, delivery, RTT
# samples, losses and the controller's phase over time.
FIELDS = ("bytes_in_flight", "pacing_rate_mbps", "rtt_latest_ms", "app_limited",
          "congestion_state", "cwnd_bytes", "rtt_ms", "rtt_min_ms", "packets_lost",
          "packets_sent", "bytes_sent", "throughput_mbps", "path_mtu")


def sample(stats: object, t: float) -> dict[str, Any]:
    """One line of the series: ``t`` and the fields of ``stats`` (a SessionStats)."""
    doc: dict[str, Any] = {"t": round(t, 6)}
    for name in FIELDS:
        doc[name] = getattr(stats, name, None)
    return doc


def write(path: str | Path, header: dict[str, Any], samples: Iterable[dict[str, Any]]) -> None:
    """The header line, then one line per sample."""
    with open(path, "w", encoding="utf-8") as out:
        out.write(json.dumps({"kind": "header", **header}) + "\n")
        for doc in samples:
            out.write(json.dumps(doc) + "\n")


def read(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]],
                                  list[tuple[float, int]]]:
    """The header (empty when the file has none), the sender's samples and the receiver's
    (seconds, bytes received) pairs of a series file."""
    header: dict[str, Any] = {}
    samples: list[dict[str, Any]] = []
    received: list[tuple[float, int]] = []
    with open(path, encoding="utf-8") as source:
        for line in source:
            if not line.strip():
                continue
            doc = json.loads(line)
            kind = doc.get("kind")
            if kind == "header":
                header = doc
            elif kind == "receiver":
                received.append((float(doc["t"]), int(doc["bytes_received_wire"])))
            else:
                samples.append(doc)
    return header, samples, received


def append_received(path: str | Path, received: Iterable[tuple[float, int]]) -> None:
    """Add the receiver's (seconds since the sender's start, wire bytes received: datagrams
    as the bottleneck counts them, less their UDP headers) to a series."""
    with open(path, "a", encoding="utf-8") as out:
        for t, count in received:
            out.write(json.dumps({"kind": "receiver", "t": round(t, 6),
                                  "bytes_received_wire": count}) + "\n")


def rate_mbps(points: list[tuple[float, int]], window: float = 0.1) -> list[float]:
    """The rate of a cumulative byte count at each point, over the last ``window`` seconds
    (Mbit/s): the delivery rate from the receiver's wire bytes received."""
    rates: list[float] = []
    start = 0
    for t, count in points:
        while points[start][0] < t - window:
            start += 1
        t0, count0 = points[start]
        rates.append((count - count0) * 8 / 1e6 / (t - t0) if t > t0 else 0.0)
    return rates


def summarise(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """What a glance at the series should tell: the phases and the time spent in each, the
    peak in-flight and window, the RTT range, the losses and the app-limited share."""
    if not samples:
        return {}
    phases: dict[str, float] = {}
    for before, after in itertools.pairwise(samples):
        state = str(before["congestion_state"] or "?")
        phases[state] = phases.get(state, 0.0) + after["t"] - before["t"]
    rtts = [doc["rtt_latest_ms"] for doc in samples if doc["rtt_latest_ms"]]
    limited = sum(1 for doc in samples if doc["app_limited"])
    return {
        "seconds": samples[-1]["t"] - samples[0]["t"],
        "phases_s": {state: round(span, 3) for state, span in phases.items()},
        "max_in_flight": max(doc["bytes_in_flight"] or 0 for doc in samples),
        "max_cwnd": max(doc["cwnd_bytes"] or 0 for doc in samples),
        "rtt_latest_ms": [round(min(rtts), 2), round(max(rtts), 2)] if rtts else [],
        "rtt_min_ms": samples[-1]["rtt_min_ms"],
        "packets_lost": samples[-1]["packets_lost"],
        "packets_sent": samples[-1]["packets_sent"],
        "app_limited_share": round(limited / len(samples), 3),
    }


def rtt_samples(samples: list[dict[str, Any]]) -> list[float]:
    """The latest RTT at each sample while data was in flight (ms): the queueing a flow
    builds is these less the base RTT."""
    return [round(doc["rtt_latest_ms"], 3) for doc in samples
            if doc["rtt_latest_ms"] and doc["bytes_in_flight"]]
