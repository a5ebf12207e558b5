"""PNG plots of a suite run's headline (matplotlib, an optional dependency): goodput and
ping-pong between two processes at default settings, each beside its raw baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    folder.mkdir(parents=True, exist_ok=True)
    head = results["headline"]
    rows = head["goodput"]
    runtimes = list(dict.fromkeys(r["runtime"] for r in rows))
    frames = list(dict.fromkeys(r["frame"] for r in rows))
    by = {(r["runtime"], r["frame"]): r for r in rows}
    fig, ax = plt.subplots(figsize=(8, 5))
    width = 0.8 / max(1, len(runtimes))
    for i, runtime in enumerate(runtimes):
        xs = [j + (i - (len(runtimes) - 1) / 2) * width for j in range(len(frames))]
        ax.bar(xs, [by[(runtime, f)]["ratio"] if (runtime, f) in by else 0 for f in frames],
               width, label=runtime)
    ax.axhline(0.6, linestyle=":", linewidth=1, color="grey", label="target 0.6 (16 KiB, 64 KB)")
    ax.axhline(0.5, linestyle="--", linewidth=1, color="grey",
               label="target 0.5 (1,200 B + offload)")
    ax.set_xticks(range(len(frames)), frames, fontsize=8)
    ax.set_ylabel("STT goodput / raw UDP+AES-GCM blast")
    ax.set_title("Goodput between two processes, default settings, no tuning")
    ax.legend(fontsize=7)
    fig.tight_layout()
    goodput_path = folder / "goodput.png"
    fig.savefig(goodput_path, dpi=110)
    plt.close(fig)

    lat = head["latency"]
    fig, ax = plt.subplots(figsize=(6, 4))
    positions = range(len(lat))
    width = 0.2
    for offset, key, label in ((-1.5, "raw_p50", "raw p50"), (-0.5, "stt_p50", "STT p50"),
                               (0.5, "raw_p99", "raw p99"), (1.5, "stt_p99", "STT p99")):
        ax.bar([x + offset * width for x in positions], [r[key] * 1e6 for r in lat], width,
               label=label)
    ax.set_xticks(list(positions), [r["runtime"] for r in lat], fontsize=8)
    ax.set_ylabel("round trip (µs)")
    ax.set_title("Ping-pong between two processes, no_delay stream vs raw UDP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    latency_path = folder / "latency.png"
    fig.savefig(latency_path, dpi=110)
    plt.close(fig)
    return [goodput_path, latency_path]
