"""Run the whole benchmark suite with one command and print every figure beside its baseline
from the same run, as a ratio; ``--json`` saves the results, ``--plot`` draws PNGs.

    python -m stt_bench [--quick] [--json results.json] [--plot docs/img]

(``python -m benchmarks`` runs the same.)
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

import stt_proto

from .alloc import tune_heap
from .baselines.quic import MAX_DATAGRAM as AIOQUIC_MAX_DATAGRAM
from .baselines.quic import available as aioquic_available
from .common import MiB, median, percentile
from .registry import run_on
from .report import goodput_table, latency_table, offload_table, remote_table, write_json
from .workloads.profile import profile_summary_of_sources

SIZES = (1200, 4096, 16384, 65000)
# also measured with GSO/GRO (the default); a 65,000-byte datagram cannot be segmented
OFFLOAD_SIZES = (1200, 4096, 16384)
# wide enough for the tables when the output goes to a file or a CI log (rich assumes 80)
console = Console() if sys.stdout.isatty() else Console(width=132)


def available_runtimes() -> list[str]:
    runtimes = ["asyncio"]
    try:
        import uvloop  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        runtimes.append("uvloop")
    except ImportError:
        pass
    return [*runtimes, "trio"]


def goodput(runtimes: list[str], seconds: float, repeats: int) -> list[dict[str, Any]]:
    """Per runtime and frame size: STT, the raw UDP+AEAD blast and (asyncio loops, when
    installed) aioquic at the same datagram size; TCP+TLS per runtime. Each is the median of
    ``repeats`` runs taken in turn (raw, STT, ... then again), so a burst of noise on this
    shared machine moves one sample, not the ratio; every sample is kept in the JSON."""
    quic = aioquic_available()
    rows = []
    for runtime in runtimes:
        for size in SIZES:
            settings = {"recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB,
                        "max_frame_size": size, "udp_offload": False}
            runs: dict[str, list[float]] = {}
            for _ in range(repeats):
                runs.setdefault("raw", []).append(
                    run_on(runtime, "raw_aead_blast", size, seconds))
                runs.setdefault("stt", []).append(
                    run_on(runtime, "stt_throughput", settings, seconds)[0])
                if size in OFFLOAD_SIZES:
                    runs.setdefault("stt_offload", []).append(run_on(
                        runtime, "stt_throughput", {**settings, "udp_offload": True},
                        seconds)[0])
                if quic and runtime != "trio":
                    runs.setdefault("aioquic", []).append(
                        run_on(runtime, "aioquic_throughput", size, seconds))
            row: dict[str, Any] = {"runtime": runtime, "frame": size}
            for key, samples in runs.items():
                row[key] = median(samples)
                row[f"{key}_runs"] = samples
            if "aioquic" in row:
                row["aioquic_datagram"] = min(size, AIOQUIC_MAX_DATAGRAM)
            rows.append(row)
        tls = [run_on(runtime, "tcp_tls_throughput", seconds) for _ in range(repeats)]
        for row in rows[-len(SIZES):]:
            row["tcp_tls"] = median(tls)
            row["tcp_tls_runs"] = tls
    return rows


def goodput_remote(runtime: str, seconds: float, repeats: int) -> list[dict[str, Any]]:
    """Per frame size, with the receiver in another process: the raw UDP+AEAD blast and STT,
    each timed by its receiver; medians of ``repeats`` runs taken in turn."""
    rows = []
    for size in SIZES:
        settings = {"recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB,
                    "max_frame_size": size, "udp_offload": False}
        runs: dict[str, list[float]] = {"raw": [], "stt": []}
        for _ in range(repeats):
            for kind, samples in runs.items():
                samples.append(run_on(runtime, "remote_goodput", kind, settings, seconds))
        row: dict[str, Any] = {"runtime": runtime, "frame": size}
        for key, samples in runs.items():
            row[key] = median(samples)
            row[f"{key}_runs"] = samples
        rows.append(row)
    return rows


def latency(runtimes: list[str], count: int) -> list[dict[str, Any]]:
    """Ping-pong with both ends on one loop (every runtime), and with the echo server in
    another process (asyncio loops): raw UDP and STT measured the same way each time."""
    rows = []
    for runtime in runtimes:
        raw = run_on(runtime, "raw_ping_pong", count)
        ours = run_on(runtime, "stt_ping_pong", {"no_delay": True}, count)
        rows.append({"runtime": runtime, "where": "one loop", "raw_p50": median(raw),
                     "raw_p99": percentile(raw, .99), "stt_p50": median(ours),
                     "stt_p99": percentile(ours, .99)})
    for runtime in runtimes:
        if runtime == "trio":
            continue
        raw = run_on(runtime, "remote_ping_pong", "raw", {}, count)
        ours = run_on(runtime, "remote_ping_pong", "stt", {"no_delay": True}, count)
        rows.append({"runtime": runtime, "where": "two processes", "raw_p50": median(raw),
                     "raw_p99": percentile(raw, .99), "stt_p50": median(ours),
                     "stt_p99": percentile(ours, .99)})
    return rows


def main(argv: list[str] | None = None, prog: str = "python -m stt_bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plot", type=Path, help="write PNG plots into this folder")
    parser.add_argument("--sessions", type=int, default=10_000, help="idle sessions to hold")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # small kernel socket buffers: reported
    heap = tune_heap()
    seconds = 0.3 if args.quick else 2.0
    repeats = 1 if args.quick else 3
    count = 200 if args.quick else 3000
    runtimes = available_runtimes()
    results: dict[str, Any] = {"heap_tuned": heap, "seconds": seconds, "repeats": repeats,
                               "compiled": stt_proto.COMPILED}
    print("core: " + ("compiled with mypyc (setup.py)" if stt_proto.COMPILED
                      else "pure Python (STT_PURE=1, or nothing compiled)"))

    results["goodput"] = rows = goodput(runtimes, seconds, repeats)
    console.print(goodput_table(rows, repeats, seconds))
    console.print(offload_table(rows, repeats, seconds))
    main_runtime = "uvloop" if "uvloop" in runtimes else "asyncio"
    results["goodput_remote"] = remote = goodput_remote(main_runtime, seconds, repeats)
    console.print(remote_table(remote, main_runtime, repeats, seconds))
    core = results["core"] = {size: run_on("asyncio", "core_goodput", size, seconds)
                              for size in (1200, 65000)}
    raw_of = {r["frame"]: r["raw"] for r in rows if r["runtime"] == main_runtime}
    console.print("The protocol core alone (two endpoints in memory, no sockets, no loop): "
                  + ", ".join(f"{size} B {rate / 1e6:,.0f} MB/s = {rate / raw_of[size]:.2f} x "
                              f"raw UDP+AEAD ({main_runtime})" for size, rate in core.items()))
    if not aioquic_available():
        console.print("aioquic is not installed: pip install 'stt-transport[bench]' for that "
                      "baseline")
    by = {(r["runtime"], r["frame"]): r["stt"] for r in rows}
    if ("uvloop", 65000) in by:
        console.print(f"trio / uvloop goodput at 64 KB: "
                      f"{by[('trio', 65000)] / by[('uvloop', 65000)]:.2f}")

    results["latency"] = lat = latency(runtimes, count)
    console.print(latency_table(lat, count))

    n = 100 if args.quick else 500
    # median of ``repeats`` runs, as for goodput: one burst of noise once moved a single
    # run by a quarter; every sample is kept in the JSON
    handshake_runs = {rt: [run_on(rt, "handshakes", {}, n) for _ in range(repeats)]
                      for rt in runtimes}
    results["handshakes_runs"] = handshake_runs
    results["handshakes"] = {rt: median(runs) for rt, runs in handshake_runs.items()}
    console.print(f"Handshakes/s ({n} concurrent, median of {repeats} runs): " + ", ".join(
        f"{rt} {rate:,.0f}" for rt, rate in results["handshakes"].items()))

    sessions = 300 if args.quick else args.sessions
    idle_runtime = "uvloop" if "uvloop" in runtimes else "asyncio"
    idle = results["idle"] = run_on(idle_runtime, "idle_sessions", sessions)
    kib = {key: value / 1024 for key, value in idle.items() if key.startswith("rss")}
    console.print(
        f"{sessions:,} idle sessions ({idle_runtime}, runtime wrappers included), KiB of RSS "
        f"after malloc_trim (as measured): {kib['rss_per_session']:.1f} "
        f"({kib['rss_per_session_untrimmed']:.1f}) per session, "
        f"{kib['rss_first_stream']:.1f} ({kib['rss_first_stream_untrimmed']:.1f}) for a "
        f"session's first stream, {kib['rss_per_stream']:.1f} "
        f"({kib['rss_per_stream_untrimmed']:.1f}) per further idle stream; opened in "
        f"{idle['connect_s']:.1f} s, all closed (peer saw CLOSE) in {idle['close_s']:.2f} s")

    clients = 4
    scaling = results["workers"] = [run_on(idle_runtime, "workers_goodput", workers, clients,
                                           max(seconds, 1.0)) for workers in (1, 2)]
    console.print(f"Workers (SO_REUSEPORT), {clients} client processes, {scaling[0]['cpus']} "
                  f"CPUs: 1 worker {scaling[0]['goodput'] / 1e6:,.0f} MB/s, 2 workers "
                  f"{scaling[1]['goodput'] / 1e6:,.0f} MB/s, "
                  f"{scaling[1]['goodput'] / scaling[0]['goodput']:.2f} x")

    shares = results["profile"] = profile_summary_of_sources(65000, seconds)
    console.print("CPU profile, 64 KB frames, both ends on one asyncio loop (cProfile, over the "
                  "Python sources: it cannot see inside compiled modules): "
                  + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    if args.json:
        write_json(results, args.json)
    if args.plot:
        from .plots import plot

        for path in plot(results, args.plot):
            console.print(f"wrote {path}")
    return 0

