"""How results are shown: the suite's tables (``python -m stt_bench``), ``stt bench``'s tables
and the JSON documents both write. Every figure sits beside its baseline from the same run, as a
ratio; nothing here measures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


def to_json(doc: dict[str, Any]) -> str:
    """A results document as JSON text (the form ``--json`` writes, for both tools)."""
    return json.dumps(doc, indent=2)


def write_json(doc: dict[str, Any], path: Path) -> None:
    path.write_text(to_json(doc))


# -- the suite ----------------------------------------------------------------------------------

def ratio_of(row: dict[str, Any], key: str) -> str:
    """STT over the baseline ``key`` of a suite row, or n/a where that baseline is missing."""
    value = row.get(key)
    return "n/a" if value is None else f"{row['stt'] / value:.2f}"


def goodput_table(rows: list[dict[str, Any]], repeats: int, seconds: float) -> Table:
    """STT without UDP offload beside raw UDP+AEAD, TCP+TLS and aioquic, per runtime and frame."""
    table = Table(title=f"Goodput, one stream of 1 MiB messages, no UDP offload (median of "
                        f"{repeats} runs of {seconds:g} s, taken in turn; ratios against "
                        f"baselines from this run)")
    for column in ("runtime", "frame B", "raw UDP+AEAD MB/s", "STT MB/s", "STT/raw",
                   "TCP+TLS MB/s", "STT/TLS", "aioquic MB/s", "STT/aioquic"):
        table.add_column(column, justify="right")
    for row in rows:
        quic = row.get("aioquic")
        quic_label = "n/a" if quic is None else f"{quic / 1e6:,.1f}"
        if quic is not None and row["aioquic_datagram"] != row["frame"]:
            quic_label += f" (at {row['aioquic_datagram']} B)"
        table.add_row(row["runtime"], str(row["frame"]), f"{row['raw'] / 1e6:,.0f}",
                      f"{row['stt'] / 1e6:,.0f}", ratio_of(row, "raw"),
                      f"{row['tcp_tls'] / 1e6:,.0f}", ratio_of(row, "tcp_tls"),
                      quic_label, ratio_of(row, "aioquic"))
    return table


def offload_table(rows: list[dict[str, Any]], repeats: int, seconds: float) -> Table:
    """STT with GSO/GRO (its default) beside the same run without, the raw baseline (which
    has no offload) and aioquic (which has none either) at the same datagram size."""
    table = Table(title=f"Goodput with GSO/GRO (udp_offload=True, the default; the datagrams "
                        f"on the wire keep the frame size; median of {repeats} runs of "
                        f"{seconds:g} s)")
    for column in ("runtime", "frame B", "STT without MB/s", "STT with MB/s", "gain",
                   "with/raw", "with/aioquic"):
        table.add_column(column, justify="right")
    for row in rows:
        with_offload = row.get("stt_offload")
        if with_offload is None:
            continue
        quic = row.get("aioquic")
        table.add_row(row["runtime"], str(row["frame"]), f"{row['stt'] / 1e6:,.0f}",
                      f"{with_offload / 1e6:,.0f}", f"{with_offload / row['stt']:.2f}",
                      f"{with_offload / row['raw']:.2f}",
                      "n/a" if quic is None else f"{with_offload / quic:.1f}")
    return table


def latency_table(rows: list[dict[str, Any]], count: int) -> Table:
    """Ping-pong percentiles, STT's no_delay stream beside raw UDP, per runtime and echo end."""
    table = Table(title=f"Ping-pong, {count} round trips on a no_delay stream vs raw UDP")
    for column in ("runtime", "echo server", "raw p50 µs", "raw p99 µs", "STT p50 µs",
                   "STT p99 µs", "p50 ratio", "p99 ratio"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["runtime"], row["where"], f"{row['raw_p50'] * 1e6:.0f}",
                      f"{row['raw_p99'] * 1e6:.0f}",
                      f"{row['stt_p50'] * 1e6:.0f}", f"{row['stt_p99'] * 1e6:.0f}",
                      f"{row['stt_p50'] / row['raw_p50']:.2f}",
                      f"{row['stt_p99'] / row['raw_p99']:.2f}")
    return table


# -- stt bench ----------------------------------------------------------------------------------

def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:,.0f}"


def _ratio_text(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(doc: dict[str, Any], where: str, against: str, console: Console) -> None:
    """The tables of ``doc`` (``stt bench --json``'s document) on ``console``."""
    if "goodput" in doc:
        rows = doc["goodput"]
        table = Table(title=f"Goodput {against} ({where}), one stream of 1 MiB messages")
        columns = ["frame bytes", "raw UDP+AEAD MB/s", "STT MB/s", "ratio", "STT RTT ms"]
        remote = any("direction" in row for row in rows)
        for column in (["direction", *columns] if remote else columns):
            table.add_column(column, justify="right")
        for row in rows:
            cells = [str(row["frame_size"]), _mb(row["raw_bytes_per_s"]),
                     _mb(row["stt_bytes_per_s"]), _ratio_text(row["ratio"]),
                     "—" if row["stt_rtt_ms"] is None else f"{row['stt_rtt_ms']:.2f}"]
            table.add_row(*([row["direction"], *cells] if remote else cells))
        console.print(table)
    if "latency" in doc:
        lat = doc["latency"]
        table = Table(title=f"Ping-pong {against} ({where}), {lat['count']} round trips")
        for column in ("", "p50 us", "p99 us"):
            table.add_column(column, justify="right")
        for name, key in (("raw UDP", "raw"), ("STT no_delay stream", "stt")):
            figures = lat[key] or {}
            table.add_row(name, *(f"{figures[k]:.0f}" if k in figures else "—"
                                  for k in ("p50_us", "p99_us")))
        ratio = lat["ratio"] or {}
        table.add_row("ratio", _ratio_text(ratio.get("p50")), _ratio_text(ratio.get("p99")))
        console.print(table)
    if "sessions" in doc:
        sessions = doc["sessions"]
        console.print(f"{sessions['sessions']} concurrent handshakes {against} ({where}): "
                      f"[bold]{sessions['handshakes_per_s']:,.0f}/s[/bold]")
    if "packet_protection" in doc:
        table = Table(title="STT packet protection vs bare AEAD (same process, same run)")
        for column in ("cipher", "frame bytes", "bare AEAD MB/s", "STT packets MB/s", "ratio"):
            table.add_column(column, justify="right")
        for row in doc["packet_protection"]:
            table.add_row(row["cipher"], str(row["frame_size"]), _mb(row["raw_bytes_per_s"]),
                          _mb(row["stt_bytes_per_s"]), _ratio_text(row["ratio"]))
        console.print(table)
        console.print(f"Noise XX handshakes (both ends in this process, simulator): "
                      f"[bold]{doc['handshakes_per_s']:,.0f}/s[/bold]")
    if doc.get("raw_note"):
        console.print(doc["raw_note"], markup=False)


# -- the suite's headline (two processes, defaults, no tuning) -----------------------------------

def _x(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def headline_goodput_table(rows: list[dict[str, Any]], repeats: int, seconds: float) -> Table:
    """STT beside the raw UDP+AES-GCM blast, both between two fresh processes; the tuned
    column and aioquic where measured."""
    tuned = any("stt_tuned" in row for row in rows)
    quic = any("aioquic_default" in row for row in rows)
    table = Table(title=f"HEADLINE: goodput between two processes, default STTNode settings, "
                        f"no tuning; one stream of 1 MiB messages (median of {repeats} runs of "
                        f"{seconds:g} s, ratios from the same run)")
    columns = ["runtime", "frame", "raw UDP+AES-GCM MB/s", "STT MB/s", "STT/raw"]
    if tuned:
        columns += ["STT heap-tuned MB/s", "tuned/raw"]
    if quic:
        columns += ["aioquic defaults MB/s", "STT/it", "aioquic 16 KiB MB/s", "STT/it"]
    for column in columns:
        table.add_column(column, justify="right")
    for row in rows:
        cells = [row["runtime"], row["frame"], _mb(row["raw"]), _mb(row["stt"]),
                 _x(row["ratio"])]
        if tuned:
            cells += [_mb(row.get("stt_tuned")), _x(row.get("tuned_ratio"))]
        if quic:
            cells += [_mb(row.get("aioquic_default")) if "aioquic_default" in row else "",
                      _x(row.get("over_aioquic_default"), 1) if "aioquic_default" in row
                      else "",
                      _mb(row.get("aioquic_best")) if "aioquic_best" in row else "",
                      _x(row.get("over_aioquic_best"), 1) if "aioquic_best" in row else ""]
        table.add_row(*cells)
    return table


def headline_latency_table(rows: list[dict[str, Any]]) -> Table:
    """Ping-pong to an echo process: STT's no_delay stream beside raw UDP, per runtime."""
    count, repeats = (rows[0]["count"], rows[0]["repeats"]) if rows else (0, 0)
    table = Table(title=f"HEADLINE: ping-pong with the echo end in another process, default "
                        f"settings, no_delay stream vs raw UDP ({repeats} x {count} round "
                        f"trips each)")
    for column in ("runtime", "raw p50 µs", "raw p99 µs", "STT p50 µs", "STT p99 µs",
                   "p50 ratio", "p99 ratio"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["runtime"], *(f"{row[k] * 1e6:.0f}" for k in
                                        ("raw_p50", "raw_p99", "stt_p50", "stt_p99")),
                      _x(row["p50_ratio"]), _x(row["p99_ratio"]))
    return table


def handshake_line(doc: dict[str, Any]) -> str:
    """Handshakes/s per runtime beside the X25519 + hash floor, and the CPU per handshake
    that bounds it: the node's (one process, so one core's worth at most) and the clients'."""
    floor = doc["floor"]
    return (f"HEADLINE: handshakes/s, {doc['concurrent']:,} concurrent with one node from "
            f"{doc['clients']} client process{'' if doc['clients'] == 1 else 'es'} (median): "
            + ", ".join(f"{rt} {f['handshakes_per_s']:,.0f} ({f['of_floor']:.2f} of the floor)"
                        for rt, f in doc["runtimes"].items())
            + f". Floor, one side's X25519 + BLAKE2s cost measured with cryptography/hashlib "
              f"alone: {floor['per_side_s'] * 1e6:.0f} µs "
              f"(X25519 {floor['x25519_s'] * 1e6:.0f} µs, hashes {floor['hash_s'] * 1e6:.0f} "
              f"µs) = {floor['floor_per_s']:,.0f}/s on one core. CPU per handshake, node / "
              f"clients (3,000/s leaves the node {1e6 / 3000:.0f} µs of its one core): "
            + ", ".join(f"{rt} {f['node_cpu_s'] * 1e6:.0f} / {f['clients_cpu_s'] * 1e6:.0f} µs"
                        for rt, f in doc["runtimes"].items()))


def targets_table(checks: list[dict[str, Any]]) -> Table:
    """Issue 25's targets, each with this run's figure and PASS / FAIL (or not measured)."""
    table = Table(title="Targets (issue 25): two processes, defaults, no tuning, ratios from "
                        "this run")
    for column in ("target", "runtime", "measured", "limit", "result"):
        table.add_column(column, justify="right")
    for check in checks:
        value = check["measured"]
        digits = 0 if check["limit"] >= 100 else 2
        result = {True: "PASS", False: "FAIL", None: "not measured"}[check["pass"]]
        table.add_row(check["target"], check["runtime"], _x(value, digits),
                      ("≥ " if check["at_least"] else "≤ ") + f"{check['limit']:g}", result)
    return table
