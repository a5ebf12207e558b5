"""``stt bench``: each figure beside a baseline measured in the same run, as a ratio (absolute
numbers on shared machines are noisy).

With no peer, each figure comes from two fresh processes on loopback started for it, at the
node settings asked for and with no heap tuning unless ``stt --heap-tuning`` asks (as an
application runs; ``--one-process`` puts both ends in this process instead). ``--serve`` runs
the far end of a remote measurement and ``--to HOST:PORT --peer-id HEX`` measures against it
(goodput both ways, ping-pong latency, raw UDP baselines when the server runs one). ``--json``
prints one JSON document instead of tables; a transient status line shows progress on a
terminal. Failures (a wrong peer id, an unreachable peer) are one line through
``stt_cli.errors``.

The measurements, baselines, remote protocol and tables are the ``stt_bench`` package's; this
module parses the command line and picks them (imported when a measurement runs, so ``stt``'s
other commands load none of them).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from rich.console import Console

import stt_proto
from stt_bench.common import MiB, one_peer_sessions
from stt_bench.report import render, to_json
from stt_proto import Identity
from stt_runtime.settings import PRESETS

from .errors import CLIError

KINDS = ("throughput", "latency", "sessions", "core")
console = Console()


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
                     seconds: float, progress: Progress, one_process: bool,
                     tuned: bool) -> dict[str, Any]:
    """Goodput beside the raw UDP+AEAD blast per frame size: between two fresh processes on
    ``runtime`` with the node settings ``base`` (the headline's method, see
    :mod:`stt_bench.twoproc`; heap-tuned only when ``tuned``), or both ends in this process."""
    from stt_bench import twoproc
    from stt_bench.registry import run_on

    rows = []
    for size in sizes:
        progress(f"raw UDP+AEAD blast, {size}-byte frames ({seconds:g} s)…")
        if one_process:
            settings = {"recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB, **base,
                        "max_frame_size": size}
            raw = run_on(runtime, "raw_aead_blast", size, seconds)
            progress(f"STT, one stream, {size}-byte frames ({seconds:g} s)…")
            ours, info = run_on(runtime, "stt_throughput", settings, seconds)
            rtt: float | None = info["rtt_ms"]
        else:
            raw = twoproc.goodput(runtime, "raw", seconds, frame=size, tuned=tuned)
            progress(f"STT, one stream, {size}-byte frames ({seconds:g} s)…")
            ours = twoproc.goodput(runtime, "stt", seconds, tuned=tuned,
                                   settings={**base, "max_frame_size": size})
            rtt = None
        rows.append({"frame_size": size, "raw_bytes_per_s": raw, "stt_bytes_per_s": ours,
                     "ratio": ours / raw if raw else None, "stt_rtt_ms": rtt})
    return {"goodput": rows}


def local_latency(runtime: str, base: dict[str, Any], count: int, progress: Progress,
                  one_process: bool, tuned: bool) -> dict[str, Any]:
    """Ping-pong beside raw UDP: to an echo process (the default), or on one loop."""
    from stt_bench import twoproc
    from stt_bench.registry import run_on
    from stt_bench.remote.client import latency_summary

    progress(f"raw UDP ping-pong, {count} round trips…")
    raw = (run_on(runtime, "raw_ping_pong", count) if one_process
           else twoproc.ping_pong(runtime, "raw", count, tuned=tuned))
    progress(f"STT ping-pong, {count} round trips…")
    ours = (run_on(runtime, "stt_ping_pong", {**base, "no_delay": True}, count) if one_process
            else twoproc.ping_pong(runtime, "stt", count, settings=base, tuned=tuned))
    return {"latency": latency_summary(ours, raw)}


def local_sessions(runtime: str, base: dict[str, Any], count: int, progress: Progress,
                   one_process: bool, tuned: bool) -> dict[str, Any]:
    """Concurrent handshakes with one node: from two client processes (the default), or with
    the client in this process too."""
    from stt_bench import twoproc
    from stt_bench.registry import run_on

    n = min(count, 5000)
    progress(f"{n} concurrent handshakes…")
    rate = (run_on(runtime, "handshakes", base, n) if one_process
            else twoproc.handshakes(runtime, n, 2, settings=base,
                                    tuned=tuned)["handshakes_per_s"])
    return {"sessions": {"sessions": n, "handshakes_per_s": rate}}


def local_core(seconds: float, sizes: tuple[int, ...], progress: Progress) -> dict[str, Any]:
    from stt_bench.baselines.aead import bare_aead_rate
    from stt_bench.workloads.core import packet_rate, simulator_handshakes

    rows = []
    for cipher in ("AESGCM", "ChaChaPoly"):
        for size in sizes:
            progress(f"{cipher}, {size}-byte frames ({2 * seconds:g} s)…")
            raw = bare_aead_rate(cipher, size, seconds)
            ours = packet_rate(cipher, size, seconds)
            rows.append({"cipher": cipher, "frame_size": size, "raw_bytes_per_s": raw,
                         "stt_bytes_per_s": ours, "ratio": ours / raw})
    progress("Noise XX handshakes in the simulator…")
    rate, _ = simulator_handshakes(500)
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
@click.option("--one-process", is_flag=True,
              help="Run both ends in this process (default: two fresh processes, as an "
                   "application runs, for throughput, latency and sessions).")
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
          runtime: str, preset: str | None, count: int, as_json: bool, one_process: bool,
          to: str | None,
          peer_id: str | None, serve: bool, host: str | None, port: int, raw_port: int,
          no_raw: bool, identity: Path | None, psk: str | None) -> None:
    """Benchmark STT, each figure beside its baseline from the same run (as a ratio).

    KIND is throughput, latency, sessions or core (default: throughput; against a peer:
    throughput and latency). With no peer, two fresh processes on loopback (--one-process:
    both ends in this one)."""
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
    tuned = bool((ctx.obj or {}).get("heap_tuned"))
    heap = "heap tuned" if tuned else "default heap"
    core = "compiled core" if stt_proto.COMPILED else "pure-Python core (STT_PURE or no build)"
    ends = "" if to or kind == "core" else \
        ("both ends in this process, " if one_process else "two processes, ")
    where = f"{ends}{runtime}, {preset or 'default settings'}, {heap}, {core}"
    doc: dict[str, Any] = {"kind": kind or ("all" if to else "throughput"), "runtime": runtime,
                           "preset": preset, "build": "compiled" if stt_proto.COMPILED else "pure",
                           "heap_tuned": tuned, "seconds": seconds, "peer": None,
                           "ends": None if to or kind == "core" else
                           ("one process" if one_process else "two processes")}
    with live_status(as_json) as progress:
        if to:
            address, node_id = _host_port(to), _peer_id(peer_id or "")
            settings = {**_node_settings(identity, psk), **base}
            doc["peer"] = {"address": to, "peer_id": node_id.hex()}
            doc.update(_remote(runtime, settings, address, node_id, doc["kind"], sizes,
                               seconds, count, not no_raw, progress))
        elif doc["kind"] == "throughput":
            doc.update(local_throughput(runtime, base, sizes, seconds, progress, one_process,
                                        tuned))
        elif doc["kind"] == "latency":
            doc.update(local_latency(runtime, base, count, progress, one_process, tuned))
        elif doc["kind"] == "sessions":
            doc.update(local_sessions(runtime, base, count, progress, one_process, tuned))
        else:
            doc.update(local_core(seconds, sizes, progress))
    if as_json:
        click.echo(to_json(doc))
    else:
        render(doc, where, f"with {to}" if to else "on loopback", console)


def _remote(runtime: str, settings: dict[str, Any], address: tuple[str, int], node_id: bytes,
            kind: str, sizes: tuple[int, ...], seconds: float, count: int, use_raw: bool,
            progress: Progress) -> dict[str, Any]:
    from stt_bench.remote.client import RemoteError, run_remote

    node_class, run = _runner(runtime)
    settings = {"recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB, **settings}

    async def go() -> dict[str, Any]:
        async with node_class(**settings) as node:
            result: dict[str, Any] = await run_remote(node, address, node_id, kind, sizes,
                                                      seconds, count, use_raw, progress)
            return result

    try:
        result: dict[str, Any] = run(go)
    except BaseException as exc:
        failure = _remote_failure(exc, RemoteError)
        if failure is None:
            raise
        raise CLIError(str(failure)) from None
    return result


def _remote_failure(exc: BaseException, kind: type[Exception]) -> Exception | None:
    """The ``kind`` error (the bench server's refusal) that ``exc`` is or leads with in a task
    group's exception group, unless the group also holds a Ctrl-C; None otherwise. ``stt``
    shows it as its own one-line failure (stt_bench does not import the command-line tool)."""
    if isinstance(exc, BaseExceptionGroup):
        interrupts, _ = exc.split((KeyboardInterrupt, click.Abort))
        if interrupts is not None or not exc.exceptions:
            return None
        return _remote_failure(exc.exceptions[0], kind)
    return exc if isinstance(exc, kind) else None


def _serve(runtime: str, host: str | None, port: int, raw_port: int | None,
           identity: Path | None, psk: str | None, as_json: bool) -> None:
    from stt_bench.remote.client import MAX_REMOTE_SESSIONS
    from stt_bench.remote.serve import serve

    node_class, run = _runner(runtime)
    settings = {**_node_settings(identity, psk), "host": host, "port": port,
                "max_frame_size": 65536, "no_delay": True,  # echo replies never wait
                "recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB,
                **one_peer_sessions(MAX_REMOTE_SESSIONS)}

    async def go() -> None:
        await serve(node_class(**settings), host, raw_port, as_json)

    run(go)
