"""``stt keygen``, ``stt id``, ``stt send``, ``stt receive`` and ``stt listen``.

Each runs on the runtime ``--runtime`` names (asyncio, uvloop or trio: the transfer code uses
anyio's primitives, which run on all three) and fails in one line (see :mod:`stt_cli.errors`).
"""

from __future__ import annotations

import errno
import functools
import socket
import sys
import tempfile
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from stt_proto import Identity

from .allow import Allowed, allow_options, allowed_from_options, node_id_option, psk_option
from .errors import USAGE, CLIError, describe_os_error

T = TypeVar("T")
console = Console()

RUNTIMES = ("asyncio", "uvloop", "trio")
runtime_option = click.option("--runtime", type=click.Choice(RUNTIMES), default="asyncio",
                              show_default=True, help="The event loop to run on.")


def run_on(runtime: str, main: Callable[[Any], Coroutine[Any, Any, T]]) -> T:
    """``main(STTNode)`` on ``runtime``, with that runtime's node class."""
    if runtime == "trio":
        import anyio

        from stt_anyio import STTNode as AnyioNode

        return anyio.run(main, AnyioNode, backend="trio")
    import asyncio

    from stt_asyncio import STTNode

    if runtime == "uvloop":
        try:
            import uvloop  # type: ignore[import-not-found, unused-ignore]
        except ImportError:
            raise CLIError("uvloop is not installed: pip install 'stt-transport[uvloop]'") \
                from None
        return uvloop.run(main(STTNode))  # type: ignore[no-any-return, unused-ignore]
    return asyncio.run(main(STTNode))


def load_identity(path: Path | None) -> Identity:
    """The identity in ``path`` (a fresh one when None), or one line saying what is wrong."""
    if path is None:
        return Identity.generate()
    try:
        return Identity.load(path)
    except OSError as exc:
        raise CLIError(describe_os_error(exc, f"read the identity {path}")) from None
    except ValueError as exc:
        raise CLIError(f"{path} is not a usable identity file ({exc}); `stt keygen` makes "
                       "one") from None


def host_port(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` too) with the host name resolved to an address."""
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"expected HOST:PORT, got {text!r}", param_hint="'--to'")
    host = host.strip("[]")
    try:
        found = socket.getaddrinfo(host, int(port), type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise CLIError(f"cannot find the host {host!r}: {reason}") from None
    return str(found[0][4][0]), int(port)


@click.command()
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path), default="stt.key")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def keygen(path: Path, force: bool) -> None:
    """Create an identity (static X25519 key) at PATH, mode 0600; print its path and node id."""
    if path.exists() and not force:
        raise CLIError(f"{path} exists; pass --force to overwrite it", USAGE)
    identity = Identity.generate()
    try:
        identity.save(path)
    except OSError as exc:
        raise CLIError(describe_os_error(exc, f"write {path}")) from None
    click.echo(f"key: {path}")
    click.echo(f"node id: {identity.node_id.hex()}")


@click.command(name="id")
@click.argument("keyfile", type=click.Path(dir_okay=False, path_type=Path))
def node_id(keyfile: Path) -> None:
    """Print the node id of the identity in KEYFILE."""
    click.echo(load_identity(keyfile).node_id.hex())


@click.command()
@click.argument("path", metavar="FILE|DIR",
                type=click.Path(exists=True, path_type=Path))
@click.option("--to", "to", required=True, help="HOST:PORT of the receiver.")
@click.option("--peer-id", required=True, callback=node_id_option,
              help="The receiver's node id (64 hex digits).")
@click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
              help="Our identity file (default: a fresh identity).")
@click.option("--psk", callback=psk_option, help="Network pre-shared key (64 hex digits).")
@click.option("--resume", is_flag=True,
              help="Continue a transfer that was cut off, from what the receiver holds.")
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1, 3600),
              help="Seconds to wait for the receiver to answer.")
@runtime_option
def send(path: Path, to: str, peer_id: bytes, identity: Path | None, psk: bytes | None,
         resume: bool, timeout: float, runtime: str) -> None:
    """Send FILE, or every file under DIR, to `stt receive` / `stt listen`."""
    from .sender import send_paths

    address = host_port(to)
    me = load_identity(identity)

    async def go(node_class: Any) -> None:
        async with node_class(identity=me, host=None, psk=psk) as node:  # IPv4 and IPv6
            await send_paths(node, path, address, peer_id, console, resume, timeout)

    run_on(runtime, go)


serve_options = [
    click.option("--host", default=None, show_default="every interface, IPv4 and IPv6"),
    click.option("--port", default=0, show_default=True, type=click.IntRange(0, 65535)),
    click.option("--identity", type=click.Path(dir_okay=False, path_type=Path),
                 help="Our identity file (default: a fresh identity)."),
    click.option("--psk", callback=psk_option, help="Network pre-shared key (64 hex digits)."),
    click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=".",
                 show_default=True, help="Where received files go (never replacing one)."),
    *allow_options,
    click.option("--idle-timeout", default=30.0, show_default=True,
                 type=click.FloatRange(0.1, 86400),
                 help="Drop a sender that sends nothing for this many seconds."),
    click.option("--max-transfers", default=16, show_default=True, type=click.IntRange(1, 4096),
                 help="Senders received from at once (each holds one open file)."),
    runtime_option,
]


def _with_serve_options(func: Any) -> Any:
    for option in reversed(serve_options):
        func = option(func)
    return func


def _check_output(output: Path) -> None:
    if not output.is_dir():
        raise CLIError(f"the output directory {output} does not exist (create it, or pass "
                       "--output DIR)", USAGE)
    try:
        with tempfile.TemporaryFile(dir=output, prefix=".stt-probe-"):
            pass
    except OSError as exc:
        raise CLIError(f"cannot write to the output directory {output}: "
                       f"{exc.strerror or exc} (choose another --output)") from None


def _serve(settings: dict[str, Any], options: Any, runtime: str, once: bool) -> None:
    from .receiver import receive_session, serve_session
    from .transfer import TransferFailed

    port = settings["port"]

    async def go(node_class: Any) -> None:
        node = node_class(**settings)
        try:
            await node.start()
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise CLIError(f"port {port} is in use (choose another --port, or stop the "
                               "program using it)") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise CLIError(f"cannot listen on {settings['host']}: not an address of this "
                               "machine") from None
            raise CLIError(describe_os_error(exc, f"listen on port {port}")) from None
        try:
            bound_host, bound_port = node.address
            shown = f"[{bound_host}]" if ":" in bound_host else bound_host
            workers = settings.get("workers", 1)
            print(f"listening on {shown}:{bound_port} node id {node.node_id.hex()}"
                  + (f" ({workers} worker processes)" if workers > 1 else ""), flush=True)
            if not once:
                await node.serve(functools.partial(serve_session, options))
                return
            while True:  # until one allowed sender has sent its files
                session = await node.accept()
                try:
                    received = await receive_session(options, session, console,
                                                     raise_failures=True)
                except TransferFailed as exc:
                    if exc.refused:
                        print(f"stt: {exc}", file=sys.stderr, flush=True)
                        continue
                    raise CLIError(str(exc)) from None
                if received:
                    return
        finally:
            await node.close()

    run_on(runtime, go)


def _options(output: Path, allow: tuple[bytes, ...], allow_file: Path | None, allow_any: bool,
             idle_timeout: float, max_transfers: int, ask: bool, why: str) -> Any:
    from .receiver import ReceiveOptions

    allowed = allowed_from_options(allow, allow_file, allow_any)
    if not allowed.configured:
        if not ask:
            raise CLIError(f"nobody may send files here{why}: pass --allow NODE_ID, "
                           "--allow-file FILE or --allow-any", USAGE)
        allowed = Allowed(ask=True)
    _check_output(output)
    return ReceiveOptions(output, allowed, idle_timeout, max_transfers)


@click.command()
@_with_serve_options
def receive(host: str | None, port: int, identity: Path | None, psk: bytes | None,
            output: Path, allow: tuple[bytes, ...], allow_file: Path | None, allow_any: bool,
            idle_timeout: float, max_transfers: int, runtime: str) -> None:
    """Receive the files of one allowed sender, print a summary of each, exit. With no
    --allow option, ask on the terminal about each file."""
    ask = sys.stdin.isatty()
    options = _options(output, allow, allow_file, allow_any, idle_timeout, max_transfers,
                       ask, " and there is no terminal to ask on")
    settings = {"identity": load_identity(identity), "host": host, "port": port, "psk": psk}
    _serve(settings, options, runtime, once=True)


@click.command()
@_with_serve_options
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 256),
              help="Processes sharing the port (SO_REUSEPORT), each owning its peers' sessions.")
def listen(host: str | None, port: int, identity: Path | None, psk: bytes | None,
           output: Path, allow: tuple[bytes, ...], allow_file: Path | None, allow_any: bool,
           idle_timeout: float, max_transfers: int, runtime: str, workers: int) -> None:
    """Receive files from allowed senders until interrupted, each session concurrently."""
    options = _options(output, allow, allow_file, allow_any, idle_timeout, max_transfers,
                       False, " (stt listen takes files only from senders you allow)")
    settings = {"identity": load_identity(identity), "host": host, "port": port, "psk": psk,
                "workers": workers}
    _serve(settings, options, runtime, once=False)


COMMANDS = (keygen, node_id, send, receive, listen)
