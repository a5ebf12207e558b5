"""The suite's headline: STT as an application embeds it, measured first. Two fresh processes
per figure on the same runtime (:mod:`stt_bench.twoproc`), STTNode at its default settings
(bound to loopback; only ``max_frame_size`` and, at 1,200 B, ``udp_offload`` set to the case
measured), no allocator or buffer tuning in either process, every baseline measured the same way
in the same run, and every ratio the median of the per-repeat ratios (each repeat takes its
baseline and STT back to back, and the repeats sweep the whole matrix in turn, so a burst of
noise moves one sample of one pair). Every sample is kept in the JSON.

:func:`targets` checks the figures against issue 25's targets.
"""

from __future__ import annotations

from typing import Any

from . import twoproc
from .common import median, percentile

# (label, max_frame_size, udp_offload: None leaves the default)
FRAMES: tuple[tuple[str, int, bool | None], ...] = (
    ("1,200 B", 1200, False), ("1,200 B + offload", 1200, True),
    ("16 KiB", 16384, None), ("64 KB", 65000, None))
QUICK_FRAMES = FRAMES[1:]
DEFAULT_FRAME = "16 KiB"  # STTNode's default max_frame_size: STT at its defaults
AIOQUIC_BEST = 16384  # aioquic's largest working datagram (stt_bench.baselines.quic)


def stt_settings(size: int, offload: bool | None) -> dict[str, Any]:
    """The node settings of one headline case: the defaults but for the frame measured."""
    settings: dict[str, Any] = {"max_frame_size": size}
    if offload is not None:
        settings["udp_offload"] = offload
    return settings


def _ratios(ours: list[float], theirs: list[float]) -> list[float]:
    return [a / b for a, b in zip(ours, theirs, strict=True) if b > 0]


def measure_goodput(runtimes: list[str], frames: tuple[tuple[str, int, bool | None], ...],
                    seconds: float, repeats: int, tuned: bool,
                    quic: bool) -> list[dict[str, Any]]:
    """Per runtime and frame: STT and the raw UDP+AES-GCM blast, each from a sink process
    fed by a source process; with ``tuned``, STT again with the heap settings in both
    processes; on asyncio loops with ``quic``, aioquic at its defaults and at its best
    datagram size (kept on the default-frame row)."""
    rows: dict[tuple[str, str], dict[str, Any]] = {
        (rt, label): {"runtime": rt, "frame": label, "frame_bytes": size,
                      "udp_offload": offload, "raw_runs": [], "stt_runs": [],
                      "raw_busy": [], "stt_busy": []}
        for rt in runtimes for label, size, offload in frames}
    for _ in range(repeats):
        for runtime in runtimes:
            raw: dict[int, dict[str, Any]] = {}
            for label, size, offload in frames:
                row = rows[(runtime, label)]
                if size not in raw:  # one baseline per datagram size and repeat
                    raw[size] = twoproc.transfer(runtime, "raw", seconds, frame=size)
                row["raw_runs"].append(raw[size]["rate"])
                row["raw_busy"].append(raw[size]["busy"])
                settings = stt_settings(size, offload)
                stt = twoproc.transfer(runtime, "stt", seconds, settings=settings)
                row["stt_runs"].append(stt["rate"])
                row["stt_busy"].append(stt["busy"])
                if tuned:
                    row.setdefault("stt_tuned_runs", []).append(twoproc.goodput(
                        runtime, "stt", seconds, settings=settings, tuned=True))
                if quic and runtime != "trio" and label == DEFAULT_FRAME:
                    row.setdefault("aioquic_default_runs", []).append(
                        twoproc.goodput(runtime, "quic", seconds))
                    row.setdefault("aioquic_best_runs", []).append(
                        twoproc.goodput(runtime, "quic", seconds, datagram=AIOQUIC_BEST))
    result = []
    for row in rows.values():
        for key in [k for k in row if k.endswith("_runs")]:
            row[key.removesuffix("_runs")] = median(row[key])
        row["ratio"] = median(_ratios(row["stt_runs"], row["raw_runs"]))
        if "stt_tuned_runs" in row:
            row["tuned_ratio"] = median(_ratios(row["stt_tuned_runs"], row["raw_runs"]))
        for which in ("default", "best"):
            if f"aioquic_{which}_runs" in row:
                row[f"over_aioquic_{which}"] = median(
                    _ratios(row["stt_runs"], row[f"aioquic_{which}_runs"]))
        result.append(row)
    return result


def short_of_a_core(rows: list[dict[str, Any]]) -> list[str]:
    """The goodput transfers whose busier process had less than ``STARVED`` of a core
    (``twoproc.transfer``), as "runtime frame kind #repeat (share)": for the raw blast, which
    never waits, the machine did not run it; an STT transfer may also have waited."""
    found = []
    baselines = set()  # (one raw transfer serves the rows of one datagram size)
    for row in rows:
        for kind in ("raw", "stt"):
            if kind == "raw":
                if (row["runtime"], row.get("frame_bytes")) in baselines:
                    continue
                baselines.add((row["runtime"], row.get("frame_bytes")))
            for repeat, busy in enumerate(row.get(f"{kind}_busy", []), 1):
                if busy is not None and max(busy.values()) < twoproc.STARVED:
                    found.append(f"{row['runtime']} {row['frame']} {kind} #{repeat} "
                                 f"({max(busy.values()):.2f})")
    return found


def measure_latency(runtimes: list[str], count: int, repeats: int) -> list[dict[str, Any]]:
    """Per runtime: ``count`` round trips to an echo process, raw UDP and an STT no_delay
    stream (default node settings) taken in turn ``repeats`` times; percentiles over all the
    round trips of each."""
    samples: dict[str, dict[str, list[float]]] = {rt: {"raw": [], "stt": []}
                                                  for rt in runtimes}
    for _ in range(repeats):
        for runtime in runtimes:
            for kind in ("raw", "stt"):
                samples[runtime][kind] += twoproc.ping_pong(runtime, kind, count)
    rows = []
    for runtime, by_kind in samples.items():
        row: dict[str, Any] = {"runtime": runtime, "count": count, "repeats": repeats}
        for kind, times in by_kind.items():
            row[f"{kind}_p50"] = median(times)
            row[f"{kind}_p99"] = percentile(times, .99)
            row[f"{kind}_samples"] = times
        row["p50_ratio"] = row["stt_p50"] / row["raw_p50"]
        row["p99_ratio"] = row["stt_p99"] / row["raw_p99"]
        rows.append(row)
    return rows


def measure_handshakes(runtimes: list[str], count: int, clients: int,
                       repeats: int) -> dict[str, Any]:
    """Per runtime, the median of ``repeats`` runs of ``count`` concurrent handshakes with one
    node from ``clients`` other processes, and the medians of the CPU per handshake of the
    node and of the clients; the floor (X25519 and hashes alone) beside it."""
    floor = twoproc.handshake_floor()
    per_runtime = {}
    for runtime in runtimes:
        runs = [twoproc.handshakes(runtime, count, clients) for _ in range(repeats)]
        rate = median([run["handshakes_per_s"] for run in runs])
        per_runtime[runtime] = {"handshakes_per_s": rate, "runs": runs,
                                "of_floor": rate / floor["floor_per_s"],
                                "node_cpu_s": median([run["node_cpu_s"] for run in runs]),
                                "clients_cpu_s": median([run["clients_cpu_s"] for run in runs])}
    return {"concurrent": count, "clients": clients, "floor": floor, "runtimes": per_runtime}


def _check(target: str, runtime: str, value: float | None, limit: float,
           at_least: bool) -> dict[str, Any]:
    passed = None if value is None else (value >= limit if at_least else value <= limit)
    return {"target": target, "runtime": runtime, "measured": value, "limit": limit,
            "at_least": at_least, "pass": passed}


def targets(goodput: list[dict[str, Any]], latency: list[dict[str, Any]],
            handshakes: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 25's targets, each with the figure measured in this run and whether it holds
    (``pass`` None where this run did not measure it: a runtime not installed, a frame
    ``--quick`` skips, aioquic missing)."""
    by = {(row["runtime"], row["frame"]): row for row in goodput}
    checks = []
    for runtime in ("uvloop", "trio"):
        for frame, limit in (("64 KB", 0.6), ("16 KiB", 0.6), ("1,200 B + offload", 0.5)):
            row = by.get((runtime, frame))
            checks.append(_check(f"goodput / raw UDP+AES-GCM, {frame}", runtime,
                                 None if row is None else row["ratio"], limit, True))
    lat = {row["runtime"]: row for row in latency}
    for runtime in ("uvloop", "asyncio", "trio"):
        row = lat.get(runtime)
        checks.append(_check("ping-pong p50 / raw p50", runtime,
                             None if row is None else row["p50_ratio"], 2.0, False))
        checks.append(_check("ping-pong p99 / raw p99", runtime,
                             None if row is None else row["p99_ratio"], 3.0, False))
    for runtime, figures in handshakes["runtimes"].items():
        checks.append(_check(f"handshakes/s, {handshakes['concurrent']:,} concurrent", runtime,
                             figures["handshakes_per_s"], 3000, True))
    for runtime in ("uvloop", "asyncio"):
        row = by.get((runtime, DEFAULT_FRAME))
        for which, limit, label in (("default", 20.0, "at its defaults"),
                                    ("best", 5.0, f"at {AIOQUIC_BEST:,} B datagrams")):
            value = None if row is None else row.get(f"over_aioquic_{which}")
            checks.append(_check(f"STT goodput (defaults) / aioquic {label}", runtime, value,
                                 limit, True))
    return checks
