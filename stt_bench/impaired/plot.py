"""Plot a sender's time series (:mod:`stt_bench.impaired.series`) in four panels over time:
window and bytes in flight against the path's BDP and BDP + queue, pacing rate against the
rate of delivery and the bottleneck, RTT samples against the base RTT, and cumulative losses;
the controller's phase shaded behind each panel, app-limited samples marked.

    python -m stt_bench.impaired.plot run.jsonl -o run.png

matplotlib is an optional dependency, imported only here and only when plotting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from . import series

PHASE_COLOURS = {"startup": "#f4cccc", "drain": "#fce5cd", "probe_bw": "#d9ead3",
                 "probe_rtt": "#cfe2f3", "recovery": "#ead1dc", "slow_start": "#f4cccc",
                 "congestion_avoidance": "#d9ead3"}


def _phases(samples: list[dict[str, Any]]) -> list[tuple[str, float, float]]:
    """(phase, start, end) for each run of samples in one controller phase."""
    spans: list[tuple[str, float, float]] = []
    for doc in samples:
        state = str(doc.get("congestion_state") or "?")
        if spans and spans[-1][0] == state:
            spans[-1] = (state, spans[-1][1], doc["t"])
        else:
            if spans:
                spans[-1] = (spans[-1][0], spans[-1][1], doc["t"])
            spans.append((state, doc["t"], doc["t"]))
    return spans


def plot(path: str | Path, output: str | Path, title: str | None = None) -> Path:
    """Draw the series at ``path`` into the PNG ``output``."""
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]
    from matplotlib.patches import Patch  # type: ignore[import-not-found, unused-ignore]

    header, samples, received = series.read(path)
    if not samples:
        raise ValueError(f"{path}: no samples")
    t = [doc["t"] for doc in samples]
    rate = float(header.get("rate_mbps") or 0)
    base = float(header.get("base_rtt_ms") or 0)
    bdp = rate * 1e6 / 8 * base / 1e3
    queue = float(header.get("queue_bytes") or 0)
    fig, axes = plt.subplots(4, 1, figsize=(11, 11), sharex=True)
    spans = _phases(samples)
    for ax in axes:
        for state, start, end in spans:
            ax.axvspan(start, end, color=PHASE_COLOURS.get(state, "#eeeeee"), linewidth=0)
        if header.get("queued") and header.get("start"):
            ax.axvline(header["queued"] - header["start"], color="grey", linestyle=":",
                       linewidth=1)
    kb = 1e3
    ax = axes[0]
    ax.plot(t, [(d["cwnd_bytes"] or 0) / kb for d in samples], label="cwnd")
    ax.plot(t, [(d["bytes_in_flight"] or 0) / kb for d in samples], label="bytes in flight",
            linewidth=0.8)
    if bdp:
        ax.axhline(bdp / kb, color="black", linestyle="--", linewidth=1, label="BDP")
        ax.axhline((bdp + queue) / kb, color="red", linestyle="--", linewidth=1,
                   label="BDP + queue")
    ax.set_ylabel("kB")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[1]
    ax.plot(t, [d["pacing_rate_mbps"] or 0 for d in samples], label="pacing rate")
    if received:
        ax.plot([r[0] for r in received], series.rate_mbps(received),
                label="delivered (receiver, 100 ms)", linewidth=0.8)
    ax.plot(t, [d["throughput_mbps"] or 0 for d in samples], label="send rate (stats)",
            linewidth=0.6, alpha=0.7)
    if rate:
        ax.axhline(rate, color="black", linestyle="--", linewidth=1, label="bottleneck")
        ax.set_ylim(0, rate * 3)
    limited = [d["t"] for d in samples if d.get("app_limited")]
    if limited:
        ax.plot(limited, [0.02 * (rate or 1)] * len(limited), "|", color="purple",
                markersize=6, label="app-limited")
    ax.set_ylabel("Mbit/s")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[2]
    ax.plot(t, [d["rtt_latest_ms"] or None for d in samples], ".", markersize=2,
            label="latest RTT sample")
    ax.plot(t, [d["rtt_ms"] or None for d in samples], label="smoothed RTT", linewidth=0.8)
    ax.plot(t, [d["rtt_min_ms"] or None for d in samples], label="min RTT", linewidth=0.8)
    if base:
        ax.axhline(base, color="black", linestyle="--", linewidth=1, label="base RTT")
        if queue and rate:
            ax.axhline(base + queue * 8 / (rate * 1e6) * 1e3, color="red", linestyle="--",
                       linewidth=1, label="base RTT + full queue")
    ax.set_ylabel("ms")
    ax.legend(loc="upper right", fontsize=8)
    ax = axes[3]
    ax.plot(t, [d["packets_lost"] or 0 for d in samples], label="packets lost (cumulative)")
    ax.set_ylabel("packets")
    ax.set_xlabel("seconds since the first send (dotted: all data queued)")
    handles = [Patch(color=PHASE_COLOURS.get(s, "#eeeeee"), label=s)
               for s in dict.fromkeys(state for state, _, _ in spans)]
    ax.legend(handles=[*ax.get_legend_handles_labels()[0], *handles], loc="upper left",
              fontsize=8)
    case = header.get("case") or {}
    fig.suptitle(title or ", ".join(str(case.get(k)) for k in
                                    ("rate", "delay", "loss", "queue", "runtime", "build")
                                    if case.get(k) is not None))
    fig.tight_layout()
    out = Path(output)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m stt_bench.impaired.plot",
                                description="Plot a sender's time series (JSON lines).")
    p.add_argument("series", help="the JSON-lines file a run wrote (--series)")
    p.add_argument("-o", "--output", default=None, help="the PNG (default: SERIES.png)")
    p.add_argument("--title", default=None)
    args = p.parse_args(argv)
    output = args.output or str(Path(args.series).with_suffix(".png"))
    print(plot(args.series, output, args.title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
