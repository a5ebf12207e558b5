"""File transfer over one STT stream: a JSON header message, then 1 MiB data messages.

Everything the peer supplies (the file name, its digest, close reasons in errors) is shown as
plain text: passed through :func:`stt_proto.peer_text.sanitize` and printed as ``Text`` or in
columns with markup off, so escapes and rich markup in it are displayed, never interpreted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table
from rich.text import Text

from stt_asyncio import Session, StreamClosed, STTError, STTNode
from stt_proto.peer_text import sanitize

CHUNK = 1024 * 1024
MAX_NAME = 200  # UTF-8 bytes of a received file's name (filesystems allow 255)
FAILURES = (STTError, RuntimeError, ValueError, KeyError, TimeoutError)


def _progress(console: Console) -> Progress:
    # markup off: the description holds a file name, perhaps the peer's
    return Progress(TextColumn("{task.description}", style="progress.description",
                               markup=False), BarColumn(),
                    "[progress.percentage]{task.percentage:>3.0f}%", TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def summary(console: Console, title: str, size: int, elapsed: float, session: Session,
            digest: str) -> None:
    stats = session.get_stats()
    table = Table(title=Text(sanitize(title)), show_header=False)
    table.add_row("size", f"{size:,} bytes")
    table.add_row("time", f"{elapsed:.3f} s")
    table.add_row("throughput", f"{size / max(elapsed, 1e-9) / 1e6:,.1f} MB/s")
    table.add_row("rtt", f"{stats.rtt_ms:.2f} ms (min {stats.rtt_min_ms:.2f})")
    table.add_row("loss", f"{stats.loss_rate:.2%} ({stats.packets_lost} packets)")
    table.add_row("sha256", digest)
    console.print(table)


async def send_file(node: STTNode, path: Path, to: tuple[str, int], peer_id: bytes,
                    console: Console) -> str:
    session = await node.connect(to, peer_id)
    stream = session.open_stream()
    size = path.stat().st_size
    await stream.send(json.dumps({"name": path.name, "size": size}).encode())
    digest = hashlib.sha256()
    start = time.perf_counter()
    with _progress(console) as progress, path.open("rb") as handle:
        task = progress.add_task(f"sending {sanitize(path.name)}", total=size)
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            await stream.send(chunk)
            progress.advance(task, len(chunk))
        await stream.close()
        await stream.flush()
    verdict = sanitize((await stream.receive()).decode("utf-8", "replace"), 100)
    elapsed = time.perf_counter() - start
    if verdict != digest.hexdigest():
        raise RuntimeError(f"the receiver computed sha256 {verdict}, we sent "
                           f"{digest.hexdigest()}")
    summary(console, f"sent {path.name}", size, elapsed, session, digest.hexdigest())
    await session.close(0, "transfer complete")
    return digest.hexdigest()


async def receive_file(session: Session, directory: Path, console: Console) -> dict[str, Any]:
    stream = await session.accept_stream()
    name, size = _parse_header(await stream.receive())
    target = directory / name
    digest = hashlib.sha256()
    received = 0
    start = time.perf_counter()
    with _progress(console) as progress, target.open("wb") as handle:
        task = progress.add_task(f"receiving {name}", total=size)
        while True:
            try:
                chunk = await stream.receive()
            except StreamClosed:
                break
            handle.write(chunk)
            digest.update(chunk)
            received += len(chunk)
            progress.advance(task, len(chunk))
    elapsed = time.perf_counter() - start
    await stream.send(digest.hexdigest().encode())
    await stream.close()
    # The sender closes the session once it has checked the digest: wait for that, so that
    # the digest is never cut off by our own close.
    with contextlib.suppress(STTError, TimeoutError):
        await asyncio.wait_for(session.accept_stream(), 10.0)
    summary(console, f"received {name} -> {target}", received, elapsed, session,
            digest.hexdigest())
    if received != size:
        raise RuntimeError(f"expected {size} bytes, got {received}")
    return {"path": target, "size": received, "sha256": digest.hexdigest()}


async def receive_files(directory: Path, session: Session) -> None:
    """``stt listen``'s handler for one session: receive a file into ``directory``. Module-level,
    so that ``--workers`` can hand it to worker processes."""
    console = Console()
    try:
        await receive_file(session, directory, console)
    except FAILURES as exc:
        report_failure(console, exc)


def _parse_header(raw: bytes) -> tuple[str, int]:
    """The sender's header as ``(name, size)``: the name made a safe file name (no path, no
    control characters, bounded), anything malformed a ValueError."""
    try:
        header = json.loads(raw)
        name, size = header["name"], header["size"]
    except (UnicodeDecodeError, json.JSONDecodeError, TypeError, KeyError):
        raise ValueError("the sender's header is malformed") from None
    if not isinstance(name, str) or type(size) is not int or size < 0:
        raise ValueError("the sender's header is malformed")
    name = Path(sanitize(name, MAX_NAME)).name  # never a path from the peer
    name = name.encode()[:MAX_NAME].decode("utf-8", "ignore")  # printable: no surrogates
    return (name if name not in ("", ".", "..") else "received.bin"), size


def report_failure(console: Console, exc: BaseException) -> None:
    """Print why a transfer failed; the message may quote the peer, so it is plain text."""
    console.print(Text.assemble(("transfer failed: ", "red"), sanitize(str(exc))))
