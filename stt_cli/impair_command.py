"""``stt impair``: a UDP forwarder that impairs the path, for testing STT or any UDP program.

It runs :class:`stt_runtime.impair.ImpairedLink` (the simulator's link model on real sockets)
in the foreground until Ctrl-C, SIGTERM or ``--duration``, then prints its counters. Each
option applies to both directions, or ``FORWARD,BACK`` sets them apart.
"""

from __future__ import annotations

import contextlib
import errno
import signal
import socket
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import attrs
import click

from stt_proto.sim import LinkProfile
from stt_runtime.impair import ImpairedLink, describe, impairment
from stt_runtime.impair.units import parse_duration, parse_fraction, parse_queue, parse_rate

from .errors import CLIError, describe_os_error

T = TypeVar("T")


def _address(text: str, option: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint=f"'{option}'")
    host = host.strip("[]")
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise click.BadParameter(f"cannot find the host {host!r}: {reason}",
                                 param_hint=f"'{option}'") from None
    return str(found[0][4][0]), int(port)


def _both(text: str, option: str, parse: Callable[[str], T]) -> tuple[T, T]:
    """``VALUE`` for both directions or ``FORWARD,BACK``, each parsed, errors naming ``option``."""
    parts = text.split(",")
    if len(parts) > 2:
        raise click.BadParameter(f"expected VALUE or FORWARD,BACK, got {text!r}",
                                 param_hint=f"'{option}'")
    try:
        values = [parse(part) for part in parts]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=f"'{option}'") from None
    return values[0], values[-1]


def _profiles(rate: str, delay: str, jitter: str, loss: str, queue: str | None,
              duplicate: str, reorder: str, reorder_delay: str) -> tuple[LinkProfile, LinkProfile]:
    rates = _both(rate, "--rate", parse_rate)
    delays = _both(delay, "--delay", parse_duration)
    round_trip = delays[0] + delays[1]
    queues: tuple[int | None, int | None] = (None, None)
    if queue is not None:
        sides = _both(queue, "--queue", str)
        try:
            queues = (parse_queue(sides[0], rates[0], round_trip),
                      parse_queue(sides[1], rates[1], round_trip))
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="'--queue'") from None
    settings: dict[str, tuple[Any, Any]] = {
        "jitter": _both(jitter, "--jitter", parse_duration),
        "loss": _both(loss, "--loss", parse_fraction),
        "duplicate": _both(duplicate, "--duplicate", parse_fraction),
        "reorder": _both(reorder, "--reorder", parse_fraction),
        "reorder_delay": _both(reorder_delay, "--reorder-delay", parse_duration),
    }
    forward, back = ({name: values[side] for name, values in settings.items()}
                     for side in (0, 1))
    return (impairment(rate=rates[0], delay=delays[0], queue=queues[0], **forward),
            impairment(rate=rates[1], delay=delays[1], queue=queues[1], **back))


def _shown(address: tuple[str, int]) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@click.command()
@click.option("--listen", "listen", required=True, metavar="HOST:PORT",
              help="Where clients send (port 0: any free port, printed at start).")
@click.option("--to", "to", required=True, metavar="HOST:PORT",
              help="Where their datagrams go; replies go back to each client.")
@click.option("--rate", default="unlimited", show_default=True,
              help="Bottleneck rate of UDP payload: 100mbit, 20Mbit/s, 12.5MB/s.")
@click.option("--delay", default="0", show_default=True, help="One-way delay: 25ms.")
@click.option("--jitter", default="0", show_default=True,
              help="Extra delay, uniform in 0..JITTER per datagram (reorders when larger than "
                   "the spacing).")
@click.option("--loss", default="0", show_default=True, help="Random loss: 1% or 0.01.")
@click.option("--queue", default=None, show_default="1MiB",
              help="Drop-tail queue at the bottleneck: 1bdp (rate x both delays), 64KiB, 1MB.")
@click.option("--reorder", default="0", show_default=True,
              help="Share of datagrams held back by --reorder-delay.")
@click.option("--reorder-delay", default="5ms", show_default=True)
@click.option("--duplicate", default="0", show_default=True,
              help="Share of datagrams sent twice.")
@click.option("--mtu", type=click.IntRange(1, 65535), default=None,
              help="Drop datagrams larger than this many bytes (a path's MTU less the IP and "
                   "UDP headers, with fragments dropped): 1472 models Ethernet over IPv4.")
@click.option("--seed", type=int, default=None, help="Repeat the same random fates.")
@click.option("--duration", type=click.FloatRange(0, min_open=True), default=None,
              help="Stop after this many seconds (default: at Ctrl-C or SIGTERM).")
def impair(listen: str, to: str, rate: str, delay: str, jitter: str, loss: str,
           queue: str | None, reorder: str, reorder_delay: str, duplicate: str,
           mtu: int | None, seed: int | None, duration: float | None) -> None:
    """Forward UDP from --listen to --to (and replies back) through a link with a rate,
    delay, jitter, loss, a drop-tail queue, reordering and duplication: the simulator's link
    model on real sockets. Each option is VALUE for both directions or FORWARD,BACK.
    Prints the counters on exit."""
    listen_at, target = _address(listen, "--listen"), _address(to, "--to")
    forward, back = _profiles(rate, delay, jitter, loss, queue, duplicate, reorder,
                              reorder_delay)
    if mtu is not None:
        forward, back = attrs.evolve(forward, mtu=mtu), attrs.evolve(back, mtu=mtu)
    try:
        link = ImpairedLink(listen_at, target, forward, back, seed=seed)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CLIError(f"{listen} is in use (choose another --listen port)") from None
        raise CLIError(describe_os_error(exc, f"listen on {listen}")) from None
    previous = signal.signal(signal.SIGTERM, lambda *_: link.stop())
    try:
        click.echo(f"impairing {_shown(link.address)} -> {_shown(target)}")
        click.echo(f"forward: {describe(forward)}")
        click.echo(f"back: {describe(back)}")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it: print the counters
            link.run(duration)
    finally:
        signal.signal(signal.SIGTERM, previous)
        link.close()
    click.echo(link.stats().summary())
