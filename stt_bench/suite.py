"""Run the whole benchmark suite with one command and print every figure beside its baseline
from the same run, as a ratio; ``--json`` saves the results, ``--plot`` draws PNGs.

    python -m stt_bench [--quick] [--tuned] [--json results.json] [--plot docs/img]

(``python -m benchmarks`` runs the same.) The headline comes first and is measured as users run
STT (:mod:`stt_bench.headline`): two fresh processes per figure, default settings, no tuning
in either, every runtime; then issue 25's targets with PASS / FAIL. The figures with both ends
in this one process (the same process for every workload, never heap-tuned) follow as a
secondary section, labelled so.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

from rich.console import Console

import stt_proto

from . import twoproc
from .baselines.quic import MAX_DATAGRAM as AIOQUIC_MAX_DATAGRAM
from .baselines.quic import available as aioquic_available
from .common import MiB, median, percentile
from .headline import (
    FRAMES,
    QUICK_FRAMES,
    measure_goodput,
    measure_handshakes,
    measure_latency,
    short_of_a_core,
    targets,
)
from .registry import run_on
from .report import (
    goodput_table,
    handshake_line,
    headline_goodput_table,
    headline_latency_table,
    latency_table,
    offload_table,
    targets_table,
    write_json,
)
from .workloads import path_mtu, workers_many
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


def goodput(runtimes: list[str], sizes: tuple[int, ...], seconds: float,
            repeats: int) -> list[dict[str, Any]]:
    """Secondary, both ends in this process. Per runtime and frame size: STT, the raw
    UDP+AEAD blast and (asyncio loops, when installed) aioquic at the same datagram size;
    TCP+TLS per runtime. Each is the median of ``repeats`` runs taken in turn (raw, STT, ...
    then again); every sample is kept in the JSON."""
    quic = aioquic_available()
    rows = []
    for runtime in runtimes:
        for size in sizes:
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
        for row in rows[-len(sizes):]:
            row["tcp_tls"] = median(tls)
            row["tcp_tls_runs"] = tls
    return rows


def latency(runtimes: list[str], count: int) -> list[dict[str, Any]]:
    """Secondary: ping-pong with both ends on one loop, raw UDP and STT measured the same
    way (the headline has the echo end in another process)."""
    rows = []
    for runtime in runtimes:
        raw = run_on(runtime, "raw_ping_pong", count)
        ours = run_on(runtime, "stt_ping_pong", {"no_delay": True}, count)
        rows.append({"runtime": runtime, "where": "one loop", "raw_p50": median(raw),
                     "raw_p99": percentile(raw, .99), "stt_p50": median(ours),
                     "stt_p99": percentile(ours, .99)})
    return rows


def headline(args: argparse.Namespace, runtimes: list[str], seconds: float, repeats: int,
             count: int) -> dict[str, Any]:
    """The headline section (two processes, defaults, no tuning) and the targets, printed."""
    frames = QUICK_FRAMES if args.quick else FRAMES
    quic = aioquic_available()
    rows = measure_goodput(runtimes, frames, seconds, repeats, args.tuned, quic)
    console.print(headline_goodput_table(rows, repeats, seconds))
    host = short_of_a_core(rows)
    if host:
        console.print(f"Under {twoproc.STARVED:.0%} of a core for the busier process of the pair "
                      f"(the raw blast is busy all the time, so there the machine withheld its "
                      f"CPUs; STT may also have waited): {', '.join(host)}.")
    lat = measure_latency(runtimes, count, repeats)
    console.print(headline_latency_table(lat))
    concurrent = 200 if args.quick else args.concurrent
    hs = measure_handshakes(runtimes, concurrent, args.clients, repeats)
    console.print(handshake_line(hs))
    checks = targets(rows, lat, hs)
    console.print(targets_table(checks))
    if not quic:
        console.print("aioquic is not installed: pip install 'stt-transport[bench]' for that "
                      "baseline")
    return {"goodput": rows, "latency": lat, "handshakes": hs, "targets": checks,
            "tuned_column": args.tuned, "short_of_a_core": host}


def path_mtu_section(quick: bool) -> dict[str, Any]:
    """Issue 28's targets: discovery's times (simulator), goodput across a real path that
    drops datagrams over 1,472 bytes (stt impair on loopback) and across a 1,500-byte veth
    link dropping IP fragments between network namespaces (where permitted), default settings
    against max_frame_size=1400; then the targets, PASS / FAIL."""
    from rich.table import Table

    size = 8 * MiB if quick else 64 * MiB
    sim = path_mtu.simulated()
    real = path_mtu.real_path(size)
    across = path_mtu.namespaces(size, repeats=1 if quick else 2)
    console.print(
        f"Path MTU (issue 28): a 1,472-byte path found {sim['found_s']:.2f} s after the first "
        f"handshake packet on a 50 ms path, a path shrunk mid-transfer recovered from in "
        f"{sim['black_hole_recovered_s']:.2f} s (simulator); {size // MiB} MiB across a real "
        f"200 Mbit/s path dropping datagrams over 1,472 bytes (stt impair on loopback, both "
        f"nodes and the forwarder in this process: its CPU sets the pace, so not the target's "
        f"measure): {real['discovered'] / 1e6:,.1f} MB/s with the default settings (found "
        f"{real['path_mtu']} B), {real['by_hand'] / 1e6:,.1f} MB/s with max_frame_size=1400 set "
        f"by hand: {real['ratio']:.2f} x")
    if "skipped" in across:
        console.print(f"Path MTU across network namespaces: skipped: {across['skipped']}")
    else:
        console.print(
            f"Path MTU across network namespaces: {size // MiB} MiB over IPv{across['family']} "
            f"across a 1,500-byte veth link shaped to {across['rate']} whose ends drop IP "
            f"fragments ({across['rule']} rule, proven by a fragmented control datagram): "
            f"{across['discovered'] / 1e6:,.1f} MB/s with the default settings (found "
            f"{across['discovered_path_mtu']} B), {across['by_hand'] / 1e6:,.1f} MB/s with "
            f"max_frame_size=1400 set by hand: {across['ratio']:.2f} x (median of "
            f"{len(across['discovered_runs'])} each)")
    checks = path_mtu.targets(sim, across)
    table = Table(title="Targets (issue 28): path MTU, figures from this run")
    for column in ("target", "measured", "limit", "result"):
        table.add_column(column, justify="right")
    for check in checks:
        value = check["measured"]
        table.add_row(check["target"], "n/a" if value is None else f"{value:.2f}",
                      ("≥ " if check["at_least"] else "≤ ") + f"{check['limit']:g}",
                      {True: "PASS", False: "FAIL", None: "not measured"}[check["pass"]])
    console.print(table)
    return {**sim, **real, "namespaces": across, "targets": checks}


def secondary(args: argparse.Namespace, runtimes: list[str], seconds: float, repeats: int,
              count: int) -> dict[str, Any]:
    """Both ends in this one process (not heap-tuned): the earlier tables, labelled so."""
    results: dict[str, Any] = {}
    console.rule("SECONDARY: both ends in one process (not how an application runs STT)")
    main_runtime = "uvloop" if "uvloop" in runtimes else "asyncio"
    one = [main_runtime] if args.quick else runtimes
    sizes = (1200, 65000) if args.quick else SIZES
    results["goodput"] = rows = goodput(one, sizes, seconds, repeats)
    console.print(goodput_table(rows, repeats, seconds))
    console.print(offload_table(rows, repeats, seconds))
    core = results["core"] = {size: run_on("asyncio", "core_goodput", size, seconds)
                              for size in (1200, 65000)}
    raw_of = {r["frame"]: r["raw"] for r in rows if r["runtime"] == main_runtime}
    console.print("The protocol core alone (two endpoints in memory, no sockets, no loop): "
                  + ", ".join(f"{size} B {rate / 1e6:,.0f} MB/s = {rate / raw_of[size]:.2f} x "
                              f"raw UDP+AEAD ({main_runtime}, one process)"
                              for size, rate in core.items()))
    by = {(r["runtime"], r["frame"]): r["stt"] for r in rows}
    if ("uvloop", 65000) in by and ("trio", 65000) in by:
        console.print(f"trio / uvloop goodput at 64 KB: "
                      f"{by[('trio', 65000)] / by[('uvloop', 65000)]:.2f}")
    results["latency"] = lat = latency(one, count)
    console.print(latency_table(lat, count))

    sessions = 300 if args.quick else args.sessions
    idle = results["idle"] = run_on(main_runtime, "idle_sessions", sessions)
    kib = {key: value / 1024 for key, value in idle.items() if key.startswith("rss")}
    console.print(
        f"{sessions:,} idle sessions ({main_runtime}, runtime wrappers included), KiB of RSS "
        f"after malloc_trim (untrimmed in brackets): {kib['rss_per_session']:.1f} "
        f"({kib['rss_per_session_untrimmed']:.1f}) per session, "
        f"{kib['rss_first_stream']:.1f} ({kib['rss_first_stream_untrimmed']:.1f}) for a "
        f"session's first stream, {kib['rss_per_stream']:.1f} "
        f"({kib['rss_per_stream_untrimmed']:.1f}) per further idle stream; opened in "
        f"{idle['connect_s']:.1f} s, all closed (peer saw CLOSE) in {idle['close_s']:.2f} s")

    # 4 client processes x 16 sessions: the 64 the balance target starts at
    scaling = results["workers"] = workers_many.sweep([1, 2] if args.quick else [1, 2, 4], 4,
                                                      16, max(seconds, 1.0))
    for line in workers_many.report_lines(scaling):
        console.print(line, markup=False, highlight=False)

    shares = results["profile"] = profile_summary_of_sources(65000, seconds)
    console.print("CPU profile, 64 KB frames, both ends on one asyncio loop (cProfile, over the "
                  "Python sources: it cannot see inside compiled modules): "
                  + ", ".join(f"{k} {v:.0%}" for k, v in shares.items()))
    return results


def main(argv: list[str] | None = None, prog: str = "python -m stt_bench") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs (a smoke test)")
    parser.add_argument("--tuned", action="store_true",
                        help="also measure STT's two-process goodput with the stt command's "
                             "glibc heap settings in both processes (a labelled column; the "
                             "headline stays untuned)")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--plot", type=Path, help="write PNG plots into this folder")
    parser.add_argument("--concurrent", type=int, default=2000,
                        help="concurrent handshakes with one node")
    parser.add_argument("--clients", type=int, default=1,
                        help="client processes the handshakes come from (1: on 2 cores the node "
                             "and its load get one each; more share the node's core)")
    parser.add_argument("--sessions", type=int, default=10_000, help="idle sessions to hold")
    parser.add_argument("--headline-only", action="store_true",
                        help="the headline section and its targets only (no path-MTU or "
                             "one-process sections): about half the time, for a machine lent "
                             "for a few minutes")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", RuntimeWarning)  # small kernel socket buffers: reported
    seconds = 0.3 if args.quick else 2.0
    repeats = 1 if args.quick else 3
    count = 200 if args.quick else 3000
    runtimes = available_runtimes()
    results: dict[str, Any] = {"heap_tuned": False, "seconds": seconds, "repeats": repeats,
                               "compiled": stt_proto.COMPILED, "runtimes": runtimes}
    print("core: " + ("compiled with mypyc (setup.py)" if stt_proto.COMPILED
                      else "pure Python (STT_PURE=1, or nothing compiled)")
          + "; no process is heap-tuned" + (" (but the labelled tuned column)" if args.tuned
                                            else ""))
    results["headline"] = headline(args, runtimes, seconds, repeats, count)
    if not args.headline_only:
        results["path_mtu"] = path_mtu_section(args.quick)
        results["one_process"] = secondary(args, runtimes, seconds, repeats, count)
    if args.json:
        write_json(results, args.json)
    if args.plot:
        from .plots import plot

        for path in plot(results, args.plot):
            console.print(f"wrote {path}")
    return 0
