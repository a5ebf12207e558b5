"""PNG plots of a suite run (matplotlib, an optional dependency)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot(results: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib  # type: ignore[import-not-found, unused-ignore]

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # type: ignore[import-not-found, unused-ignore]

    folder.mkdir(parents=True, exist_ok=True)
    rows = results["goodput"]
    runtimes = sorted({r["runtime"] for r in rows})
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for runtime in runtimes:
        mine = sorted((r for r in rows if r["runtime"] == runtime), key=lambda r: r["frame"])
        frames = [r["frame"] for r in mine]
        ax.plot(frames, [r["stt"] / 1e6 for r in mine], marker="o", label=f"STT ({runtime})")
        ax.plot(frames, [r["raw"] / 1e6 for r in mine], linestyle="--", marker=".",
                label=f"raw UDP+AEAD ({runtime})")
        offload = [r for r in mine if "stt_offload" in r]
        if offload:
            ax.scatter([r["frame"] for r in offload], [r["stt_offload"] / 1e6 for r in offload],
                       marker="*", s=80, label=f"STT with GSO/GRO ({runtime})")
        if mine and "aioquic" in mine[0]:
            ax.plot(frames, [r["aioquic"] / 1e6 for r in mine], linestyle="-.", marker="x",
                    label=f"aioquic ({runtime})")
        if mine and "tcp_tls" in mine[0]:
            ax.axhline(mine[0]["tcp_tls"] / 1e6, linestyle=":", linewidth=1,
                       label=f"TCP+TLS 1.3 ({runtime})")
    remote = sorted(results.get("goodput_remote", []), key=lambda r: r["frame"])
    if remote:
        where = f"{remote[0]['runtime']}, receiver in another process"
        frames = [r["frame"] for r in remote]
        ax.plot(frames, [r["stt"] / 1e6 for r in remote], marker="s", linewidth=2,
                label=f"STT ({where})")
        ax.plot(frames, [r["raw"] / 1e6 for r in remote], linestyle="--", marker="s",
                label=f"raw UDP+AEAD ({where})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")  # 1,200-byte figures are tens of MB/s, 64 KB ones thousands
    ax.set_xlabel("frame size (bytes)")
    ax.set_ylabel("goodput (MB/s, log scale)")
    ax.set_title("Goodput against frame size, one stream, loopback")
    ax.legend(fontsize=7)
    fig.tight_layout()
    goodput_path = folder / "goodput.png"
    fig.savefig(goodput_path, dpi=110)
    plt.close(fig)

    lat = results["latency"]
    fig, ax = plt.subplots(figsize=(6, 4))
    xs = range(len(lat))
    width = 0.2
    for offset, key, label in ((-1.5, "raw_p50", "raw p50"), (-0.5, "stt_p50", "STT p50"),
                               (0.5, "raw_p99", "raw p99"), (1.5, "stt_p99", "STT p99")):
        ax.bar([x + offset * width for x in xs], [r[key] * 1e6 for r in lat], width,
               label=label)
    ax.set_xticks(list(xs), [f"{r['runtime']}\n{r.get('where', 'one loop')}" for r in lat],
                  fontsize=7)
    ax.set_ylabel("round trip (µs)")
    ax.set_title("Ping-pong latency, no_delay stream vs raw UDP")
    ax.legend(fontsize=8)
    fig.tight_layout()
    latency_path = folder / "latency.png"
    fig.savefig(latency_path, dpi=110)
    plt.close(fig)
    return [goodput_path, latency_path]
