"""The library form of ``stt send`` / ``stt receive``: one file over a session the caller
holds (used by programs and tests; the commands themselves are :mod:`stt_cli.commands`). Apart
from :mod:`stt_cli.transfer` so that the shared protocol module imports neither end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from .allow import Allowed
from .receiver import ReceiveOptions, receive_session
from .sender import send_paths
from .transfer import FAILURES, report_failure

__all__ = ["receive_file", "receive_files", "send_file"]


async def send_file(node: Any, path: Path, to: tuple[str, int], peer_id: bytes,
                    console: Console) -> str:
    """Send one file (the library form of ``stt send FILE``); returns its sha256."""
    results = await send_paths(node, path, to, peer_id, console)
    return results[0].sha256


async def receive_file(session: Any, directory: Path, console: Console) -> dict[str, Any]:
    """Receive the first file of ``session`` into ``directory`` from whoever sent it (the
    caller decided to accept this peer): ``{"path", "size", "sha256"}``."""
    options = ReceiveOptions(directory, Allowed(any=True))
    received = await receive_session(options, session, console, raise_failures=True)
    if not received:
        raise RuntimeError("the sender sent no file")
    first = received[0]
    return {"path": first.path, "size": first.size, "sha256": first.sha256}


async def receive_files(directory: Path, session: Any) -> None:
    """A ``serve()`` handler taking files from anyone into ``directory``; failures printed.
    ``stt listen`` uses :func:`stt_cli.receiver.serve_session`, which checks the sender."""
    console = Console()
    try:
        await receive_file(session, directory, console)
    except FAILURES as exc:
        report_failure(console, exc)

