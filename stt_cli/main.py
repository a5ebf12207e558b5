"""``stt``: key generation and benchmarks.

``stt bench`` measures the protocol core in this process and prints each figure beside a baseline
measured in the same run, as a ratio (absolute numbers on shared machines are noisy).
"""

from __future__ import annotations

import asyncio
import functools
import statistics
import time
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

from .alloc import tune_heap

console = Console()
MiB = 1024 * 1024


@click.group()
@click.version_option(package_name="stt-transport")
@click.option("--heap-tuning/--no-heap-tuning", default=True, show_default=True,
              help="Keep freed heap memory for reuse (glibc mallopt); see docs/tuning.md.")
@click.pass_context
def main(ctx: click.Context, heap_tuning: bool) -> None:
    """STT: encrypted, multiplexed peer-to-peer transport."""
    ctx.obj = {"heap_tuned": tune_heap() if heap_tuning else False}


@main.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="stt.key")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def keygen(path: Path, force: bool) -> None:
    """Create an identity (static X25519 key) at PATH, mode 0600, and print its node id."""
    if path.exists() and not force:
        raise click.ClickException(f"{path} exists; pass --force to overwrite it")
    identity = Identity.generate()
    identity.save(path)
    console.print(f"node id: [bold]{identity.node_id.hex()}[/bold]  (saved to {path})")


def _load_identity(path: Path | None) -> Identity:
    return Identity.load(path) if path else Identity.generate()


def _host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def _run(runtime: str, coro: Any) -> Any:
    if runtime == "uvloop":
        import uvloop  # type: ignore[import-not-found, unused-ignore]

        return uvloop.run(coro)
    return asyncio.run(coro)


runtime_option = click.option("--runtime", type=click.Choice(["asyncio", "uvloop"]),
                              default="asyncio", show_default=True)


@main.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--to", "to", required=True, help="HOST:PORT of the receiver.")
@click.option("--peer-id", required=True, help="The receiver's node id (hex).")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--psk", help="Network pre-shared key (64 hex digits).")
@runtime_option
def send(file: Path, to: str, peer_id: str, identity: Path | None, psk: str | None,
         runtime: str) -> None:
    """Send FILE to a receiver (`stt receive` / `stt listen`), with a progress bar."""
    from stt_asyncio import STTNode

    from .transfer import send_file

    async def go() -> None:
        async with STTNode(identity=_load_identity(identity), host=None,  # IPv4 and IPv6
                           psk=bytes.fromhex(psk) if psk else None) as node:
            await send_file(node, file, _host_port(to), bytes.fromhex(peer_id), console)

    _run(runtime, go())


def _serve(host: str | None, port: int, identity: Path | None, psk: str | None, output: Path,
           runtime: str, once: bool, workers: int = 1) -> None:
    from stt_asyncio import STTNode

    from .transfer import FAILURES, receive_file, receive_files, report_failure

    async def go() -> None:
        async with STTNode(identity=_load_identity(identity), host=host, port=port,
                           psk=bytes.fromhex(psk) if psk else None, workers=workers) as node:
            bound_host, bound_port = node.address
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            print(f"listening on {shown}:{bound_port} node id {node.node_id.hex()}"
                  + (f" ({workers} worker processes)" if workers > 1 else ""), flush=True)
            if not once:
                await node.serve(functools.partial(receive_files, output))
                return
            session = await node.accept()
            try:
                await receive_file(session, output, console)
            except FAILURES as exc:
                report_failure(console, exc)  # plain text: the reason may be the peer's
                raise SystemExit(1) from None
            await asyncio.sleep(0.05)  # let the final acknowledgements leave

    _run(runtime, go())


serve_options = [
    click.option("--host", default=None, show_default="every interface, IPv4 and IPv6"),
    click.option("--port", default=0, show_default=True, type=int),
    click.option("--identity", type=click.Path(dir_okay=False, path_type=Path)),
    click.option("--psk", help="Network pre-shared key (64 hex digits)."),
    click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=".",
                 show_default=True),
    runtime_option,
]


def _with_serve_options(func: Any) -> Any:
    for option in reversed(serve_options):
        func = option(func)
    return func


@main.command()
@_with_serve_options
def receive(host: str | None, port: int, identity: Path | None, psk: str | None, output: Path,
            runtime: str) -> None:
    """Receive one file, print a summary, exit."""
    _serve(host, port, identity, psk, output, runtime, once=True)


@main.command()
@_with_serve_options
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Processes sharing the port (SO_REUSEPORT), each owning its peers' sessions.")
def listen(host: str | None, port: int, identity: Path | None, psk: str | None, output: Path,
           runtime: str, workers: int) -> None:
    """Receive files until interrupted, each session concurrently."""
    _serve(host, port, identity, psk, output, runtime, once=False, workers=workers)


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


@main.command()
@click.argument("kind", type=click.Choice(["throughput", "latency", "sessions", "core"]),
                default="throughput")
@click.option("--seconds", default=3.0, show_default=True, help="Time per measurement.")
@click.option("--frame-size", "frame_sizes", multiple=True, type=int,
              help="max_frame_size to measure (repeatable). Default: the preset's, or 1200, "
                   "16384 and 65000.")
@click.option("--runtime", type=click.Choice(["asyncio", "uvloop", "trio"]), default="asyncio",
              show_default=True)
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=None,
              help="Node settings for STT (the raw baseline has none).")
@click.option("--count", default=2000, show_default=True,
              help="Round trips (latency) or sessions (sessions).")
@click.pass_context
def bench(ctx: click.Context, kind: str, seconds: float, frame_sizes: tuple[int, ...],
          runtime: str, preset: str | None, count: int) -> None:
    """Benchmark on loopback, both ends in this process, each figure beside its baseline
    measured on the same loop in the same run (printed as a ratio)."""
    from . import bench as b

    if runtime == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]  # noqa: F401
        except ImportError:
            raise click.ClickException("uvloop is not installed: pip install "
                                       "'stt-transport[uvloop]'") from None
    base_settings: dict[str, Any] = dict(PRESETS[preset]) if preset else {}
    if frame_sizes:
        sizes = frame_sizes
    elif preset:
        sizes = (base_settings["max_frame_size"],)
    else:
        sizes = (1200, 16384, 65000)
    heap = "heap tuned" if (ctx.obj or {}).get("heap_tuned") else "default heap"
    core = "compiled core" if stt_proto.COMPILED else "pure-Python core (STT_PURE or no build)"
    where = f"{runtime}, {preset or 'default settings'}, {heap}, {core}"
    if kind == "throughput":
        table = Table(title=f"Goodput on loopback ({where}), one stream of 1 MiB messages")
        for column in ("frame bytes", "raw UDP+AEAD MB/s", "STT MB/s", "ratio", "STT RTT ms"):
            table.add_column(column, justify="right")
        for size in sizes:
            settings = {"recv_buffer_size": 8 * MiB, "send_buffer_size": 8 * MiB,
                        **base_settings, "max_frame_size": size}
            base = b.run_on(runtime, "raw_aead_blast", size, seconds)
            ours, info = b.run_on(runtime, "stt_throughput", settings, seconds)
            table.add_row(str(size), f"{base / 1e6:,.0f}", f"{ours / 1e6:,.0f}",
                          f"{ours / base:.2f}", f"{info['rtt_ms']:.2f}")
        console.print(table)
    elif kind == "latency":
        settings = {**base_settings, "no_delay": True}
        raw = b.run_on(runtime, "raw_ping_pong", count)
        ours = b.run_on(runtime, "stt_ping_pong", settings, count)
        table = Table(title=f"Ping-pong on loopback ({where}), {count} round trips")
        for column in ("", "p50 us", "p99 us"):
            table.add_column(column, justify="right")
        table.add_row("raw UDP", f"{b.median(raw) * 1e6:.0f}",
                      f"{b.percentile(raw, .99) * 1e6:.0f}")
        table.add_row("STT no_delay stream", f"{b.median(ours) * 1e6:.0f}",
                      f"{b.percentile(ours, .99) * 1e6:.0f}")
        table.add_row("ratio", f"{b.median(ours) / b.median(raw):.2f}",
                      f"{b.percentile(ours, .99) / b.percentile(raw, .99):.2f}")
        console.print(table)
    elif kind == "sessions":
        n = min(count, 5000)
        rate = b.run_on(runtime, "handshakes", base_settings, n)
        console.print(f"{n} concurrent handshakes on loopback ({where}): "
                      f"[bold]{rate:,.0f}/s[/bold]")
    else:
        _core_bench(seconds, sizes)


def _core_bench(seconds: float, frame_sizes: tuple[int, ...]) -> None:
    table = Table(title="STT packet protection vs bare AEAD (same process, same run)")
    for column in ("cipher", "frame bytes", "bare AEAD MB/s", "STT packets MB/s", "ratio"):
        table.add_column(column, justify="right")
    for cipher in ("AESGCM", "ChaChaPoly"):
        for size in frame_sizes:
            base = _raw_aead_rate(cipher, size, seconds)
            ours = _packet_rate(cipher, size, seconds)
            table.add_row(cipher, str(size), f"{base / 1e6:,.0f}", f"{ours / 1e6:,.0f}",
                          f"{ours / base:.2f}")
    console.print(table)
    rate, _ = _handshakes(500)
    console.print(f"Noise XX handshakes (both ends in this process, simulator): "
                  f"[bold]{rate:,.0f}/s[/bold]")


if __name__ == "__main__":
    main()
