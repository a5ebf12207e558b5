"""``stt bench``: each figure beside a baseline measured in the same run, as a ratio (absolute
numbers on shared machines are noisy).

With no peer both ends run on loopback in this process; ``--serve`` runs the far end of a
remote measurement and ``--to HOST:PORT --peer-id HEX`` measures against it (goodput both ways,
ping-pong latency, raw UDP baselines when the server runs one). ``--json`` prints one JSON
document instead of tables; a transient status line shows progress on a terminal. Failures
(a wrong peer id, an unreachable peer) are one line through ``stt_cli.errors``.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305
from rich.console import Console
from rich.table import Table

import stt_proto
from stt_proto import PRESETS, DeterministicRandom, Endpoint, Identity, NodeConfig
from stt_proto.packet import PacketCipher, parse_packet
from stt_proto.sim import LinkProfile, Network

MiB = 1024 * 1024
KINDS = ("throughput", "latency", "sessions", "core")
console = Console()


def _raw_aead_rate(cipher: str, size: int, seconds: float) -> float:
    """Baseline: seal+open with the bare AEAD, nothing else. Bytes per second."""
    aead = AESGCM(bytes(32)) if cipher == "AESGCM" else ChaCha20Poly1305(bytes(32))
    payload = bytes(size)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        nonce = n.to_bytes(12, "big")
        aead.decrypt(nonce, aead.encrypt(nonce, payload, b"header-bytes"), b"header-bytes")
        n += 1
    return n * size / (time.perf_counter() - start)


def _packet_rate(cipher: str, size: int, seconds: float) -> float:
    """STT packet protection: seal into a packet, parse the header, open. Bytes per second."""
    send, recv = PacketCipher(cipher, bytes(32)), PacketCipher(cipher, bytes(32))
    payload = bytes(size)
    cid = bytes(8)
    n = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        recv.open(parse_packet(send.seal(cid, n, 0, payload)))
        n += 1
    return n * size / (time.perf_counter() - start)


def _handshakes(count: int) -> tuple[float, float]:
    """Complete ``count`` handshakes between two endpoints in the simulator (no link delay);
    returns (handshakes per second of CPU, median virtual handshake time)."""
    net = Network(seed=1, default_profile=LinkProfile(latency=0.0), record_trace=False)
    a, b = ("10.0.0.1", 1), ("10.0.0.2", 2)
    client = net.add_endpoint(Endpoint(NodeConfig(max_sessions=count + 1),
                                       rng=DeterministicRandom(1)), a)
    server = net.add_endpoint(Endpoint(NodeConfig(max_sessions=count + 1,
                                                  retry_threshold=count + 1),
                                       rng=DeterministicRandom(2)), b)
    start = time.perf_counter()
    sessions = [client.connect(b, server.identity.node_id, net.now) for _ in range(count)]
    net.run_until(lambda: all(s.confirmed for s in sessions), 10.0)
    elapsed = time.perf_counter() - start
    done = sum(s.confirmed for s in sessions)
    return done / elapsed, statistics.median(s.rtt.smoothed for s in sessions)


# -- progress ----------------------------------------------------------------------------------

Progress = Callable[[str], None]


@contextmanager
def live_status(as_json: bool) -> Iterator[Progress]:
    """A transient status line on a terminal (stderr under --json, so stdout holds only the
    JSON); elsewhere a no-op."""
    target = Console(stderr=True) if as_json else console
    if not target.is_terminal:
        yield lambda text: None
        return
    with target.status("starting…") as status:
        yield lambda text: status.update(text)


# -- the measurements ---------------------------------------------------------------------------

def local_throughput(runtime: str, base: dict[str, Any], sizes: tuple[int, ...],
                     seconds: float, progress: Progress) -> dict[str, Any]:
    from . import bench as b

    rows = []
    for size in sizes:
        settings = {"recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB, **base,
                    "max_frame_size": size}
        progress(f"raw UDP+AEAD blast, {size}-byte frames ({seconds:g} s)…")
        raw = b.run_on(runtime, "raw_aead_blast", size, seconds)
        progress(f"STT, one stream, {size}-byte frames ({seconds:g} s)…")
        ours, info = b.run_on(runtime, "stt_throughput", settings, seconds)
        rows.append({"frame_size": size, "raw_bytes_per_s": raw, "stt_bytes_per_s": ours,
                     "ratio": ours / raw if raw else None, "stt_rtt_ms": info["rtt_ms"]})
    return {"goodput": rows}


def local_latency(runtime: str, base: dict[str, Any], count: int,
                  progress: Progress) -> dict[str, Any]:
    from . import bench as b
    from .bench_client import latency_summary

    progress(f"raw UDP ping-pong, {count} round trips…")
    raw = b.run_on(runtime, "raw_ping_pong", count)
    progress(f"STT ping-pong, {count} round trips…")
    ours = b.run_on(runtime, "stt_ping_pong", {**base, "no_delay": True}, count)
    return {"latency": latency_summary(ours, raw)}


def local_sessions(runtime: str, base: dict[str, Any], count: int,
                   progress: Progress) -> dict[str, Any]:
    from . import bench as b

    n = min(count, 5000)
    progress(f"{n} concurrent handshakes…")
    return {"sessions": {"sessions": n,
                         "handshakes_per_s": b.run_on(runtime, "handshakes", base, n)}}


def local_core(seconds: float, sizes: tuple[int, ...], progress: Progress) -> dict[str, Any]:
    rows = []
    for cipher in ("AESGCM", "ChaChaPoly"):
        for size in sizes:
            progress(f"{cipher}, {size}-byte frames ({2 * seconds:g} s)…")
            raw = _raw_aead_rate(cipher, size, seconds)
            ours = _packet_rate(cipher, size, seconds)
            rows.append({"cipher": cipher, "frame_size": size, "raw_bytes_per_s": raw,
                         "stt_bytes_per_s": ours, "ratio": ours / raw})
    progress("Noise XX handshakes in the simulator…")
    rate, _ = _handshakes(500)
    return {"packet_protection": rows, "handshakes_per_s": rate}


def _runner(runtime: str) -> tuple[Any, Callable[..., Any]]:
    """(the STTNode class, a function running an async function to completion) for
    ``runtime``."""
    import anyio

    if runtime == "trio":
        from stt_anyio import STTNode as AnyioNode

        return AnyioNode, lambda fn, *args: anyio.run(fn, *args, backend="trio")
    from stt_asyncio import STTNode

    options = {"use_uvloop": runtime == "uvloop"}
    return STTNode, lambda fn, *args: anyio.run(fn, *args, backend="asyncio",
                                                backend_options=options)


# -- output --------------------------------------------------------------------------------------

def _mb(value: float | None) -> str:
    return "—" if value is None else f"{value / 1e6:,.0f}"


def _ratio(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render(doc: dict[str, Any], where: str, against: str) -> None:
    """The tables of ``doc`` (the --json document) on the console."""
    if "goodput" in doc:
        rows = doc["goodput"]
        table = Table(title=f"Goodput {against} ({where}), one stream of 1 MiB messages")
        columns = ["frame bytes", "raw UDP+AEAD MB/s", "STT MB/s", "ratio", "STT RTT ms"]
        remote = any("direction" in row for row in rows)
        for column in (["direction", *columns] if remote else columns):
            table.add_column(column, justify="right")
        for row in rows:
            cells = [str(row["frame_size"]), _mb(row["raw_bytes_per_s"]),
                     _mb(row["stt_bytes_per_s"]), _ratio(row["ratio"]),
                     f"{row['stt_rtt_ms']:.2f}"]
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
        table.add_row("ratio", _ratio(ratio.get("p50")), _ratio(ratio.get("p99")))
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
                          _mb(row["stt_bytes_per_s"]), _ratio(row["ratio"]))
        console.print(table)
        console.print(f"Noise XX handshakes (both ends in this process, simulator): "
                      f"[bold]{doc['handshakes_per_s']:,.0f}/s[/bold]")
    if doc.get("raw_note"):
        console.print(doc["raw_note"], markup=False)


# -- the command ---------------------------------------------------------------------------------

def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint="'--to'")
    return host.strip("[]"), int(port)


def _peer_id(text: str) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise click.BadParameter("expected 64 hex digits", param_hint="'--peer-id'")
    return raw


def _check_runtime(runtime: str) -> None:
    if runtime == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            raise click.ClickException("uvloop is not installed: pip install "
                                       "'stt-transport[uvloop]'") from None


def _node_settings(identity: Path | None, psk: str | None) -> dict[str, Any]:
    settings: dict[str, Any] = {"identity": Identity.load(identity) if identity else None}
    if psk:
        try:
            settings["psk"] = bytes.fromhex(psk)
        except ValueError:
            raise click.BadParameter("expected 64 hex digits", param_hint="'--psk'") from None
    return settings


@click.command()
@click.argument("kind", type=click.Choice(KINDS), required=False)
@click.option("--seconds", default=3.0, show_default=True, type=click.FloatRange(0.05, 60),
              help="Time per measurement.")
@click.option("--frame-size", "frame_sizes", multiple=True, type=click.IntRange(1200, 65536),
              help="max_frame_size to measure (repeatable). Default: the preset's, or 1200, "
                   "16384 and 65000 (against a peer: 16384).")
@click.option("--runtime", type=click.Choice(["asyncio", "uvloop", "trio"]), default="asyncio",
              show_default=True)
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Node settings for STT (the raw baseline has none).")
@click.option("--count", default=2000, show_default=True, type=click.IntRange(1, 1_000_000),
              help="Round trips (latency) or sessions (sessions).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document, no tables.")
@click.option("--to", "to", metavar="HOST:PORT",
              help="Measure against a peer running `stt bench --serve`.")
@click.option("--peer-id", metavar="HEX", help="That peer's node id (with --to).")
@click.option("--serve", is_flag=True, help="Run the far end for `stt bench --to`.")
@click.option("--host", default=None, show_default="every interface, IPv4 and IPv6",
              help="Address to bind (--serve).")
@click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port to bind (--serve).")
@click.option("--raw-port", default=0, show_default=True, type=click.IntRange(0, 65535),
              help="Port of the raw UDP baseline (--serve).")
@click.option("--no-raw", is_flag=True,
              help="--serve: run no raw UDP baseline; --to: measure none.")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="Identity file (default: a fresh key).")
@click.option("--psk", help="Network pre-shared key (64 hex digits).")
@click.pass_context
def bench(ctx: click.Context, kind: str | None, seconds: float, frame_sizes: tuple[int, ...],
          runtime: str, preset: str | None, count: int, as_json: bool, to: str | None,
          peer_id: str | None, serve: bool, host: str | None, port: int, raw_port: int,
          no_raw: bool, identity: Path | None, psk: str | None) -> None:
    """Benchmark STT, each figure beside its baseline from the same run (as a ratio).

    KIND is throughput, latency, sessions or core (default: throughput; against a peer:
    throughput and latency). With no peer, both ends run on loopback in this process."""
    if serve and to:
        raise click.UsageError("--serve and --to exclude each other")
    if bool(to) != bool(peer_id):
        raise click.UsageError("--to and --peer-id go together")
    if (serve or to) and kind == "core":
        raise click.UsageError("the core benchmark runs in this process only")
    if serve and kind:
        raise click.UsageError("--serve takes no KIND: the client chooses what to measure")
    _check_runtime(runtime)
    if serve:
        _serve(runtime, host, port, None if no_raw else raw_port, identity, psk, as_json)
        return
    base: dict[str, Any] = dict(PRESETS[preset]) if preset else {}
    if frame_sizes:
        sizes = frame_sizes
    elif preset:
        sizes = (base["max_frame_size"],)
    else:
        sizes = (16384,) if to else (1200, 16384, 65000)
    heap = "heap tuned" if (ctx.obj or {}).get("heap_tuned") else "default heap"
    core = "compiled core" if stt_proto.COMPILED else "pure-Python core (STT_PURE or no build)"
    where = f"{runtime}, {preset or 'default settings'}, {heap}, {core}"
    doc: dict[str, Any] = {"kind": kind or ("all" if to else "throughput"), "runtime": runtime,
                           "preset": preset, "build": "compiled" if stt_proto.COMPILED else "pure",
                           "heap_tuned": bool((ctx.obj or {}).get("heap_tuned")),
                           "seconds": seconds, "peer": None}
    with live_status(as_json) as progress:
        if to:
            address, node_id = _host_port(to), _peer_id(peer_id or "")
            settings = {**_node_settings(identity, psk), **base}
            doc["peer"] = {"address": to, "peer_id": node_id.hex()}
            doc.update(_remote(runtime, settings, address, node_id, doc["kind"], sizes,
                               seconds, count, not no_raw, progress))
        elif doc["kind"] == "throughput":
            doc.update(local_throughput(runtime, base, sizes, seconds, progress))
        elif doc["kind"] == "latency":
            doc.update(local_latency(runtime, base, count, progress))
        elif doc["kind"] == "sessions":
            doc.update(local_sessions(runtime, base, count, progress))
        else:
            doc.update(local_core(seconds, sizes, progress))
    if as_json:
        click.echo(json.dumps(doc, indent=2))
    else:
        render(doc, where, f"with {to}" if to else "on loopback")


def _remote(runtime: str, settings: dict[str, Any], address: tuple[str, int], node_id: bytes,
            kind: str, sizes: tuple[int, ...], seconds: float, count: int, use_raw: bool,
            progress: Progress) -> dict[str, Any]:
    from .bench_client import run_remote

    node_class, run = _runner(runtime)
    settings = {"recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB, **settings}

    async def go() -> dict[str, Any]:
        async with node_class(**settings) as node:
            result: dict[str, Any] = await run_remote(node, address, node_id, kind, sizes,
                                                      seconds, count, use_raw, progress)
            return result

    result: dict[str, Any] = run(go)
    return result


def _serve(runtime: str, host: str | None, port: int, raw_port: int | None,
           identity: Path | None, psk: str | None, as_json: bool) -> None:
    from ._loopback import one_peer_sessions
    from .bench_client import MAX_REMOTE_SESSIONS
    from .bench_serve import serve

    node_class, run = _runner(runtime)
    settings = {**_node_settings(identity, psk), "host": host, "port": port,
                "max_frame_size": 65536, "no_delay": True,  # echo replies never wait
                "recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB,
                **one_peer_sessions(MAX_REMOTE_SESSIONS)}

    async def go() -> None:
        await serve(node_class(**settings), host, raw_port, as_json)

    run(go)
