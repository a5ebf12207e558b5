"""The receiving end of ``stt receive`` / ``stt listen``: who may send, where files land, and
how every failure reaches the sender.

A sender that is not allowed is refused before it can send a byte. A file is written to a hidden
partial file beside its destination and moved to a name that replaces nothing only once its
sha256 matched; more data than declared, a wrong digest, a sender silent past the idle timeout,
a disk error: each closes the session with an application code and a one-line reason, so the
sender learns at once instead of waiting. A partial file outlives a sender that vanished, so that
``stt send --resume`` can continue it; it is removed on a protocol error or when the receiver is
interrupted.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NoReturn

import anyio
import attrs
import click
from rich.console import Console
from rich.progress import Progress
from rich.text import Text

from stt_proto import KeepAliveTimeout, SessionClosed, StreamClosed, StreamReset
from stt_proto.peer_text import sanitize

from .allow import Allowed
from .names import make_folder, partial_path, place
from .transfer import (
    BAD_REQUEST,
    BUSY,
    CHECKSUM,
    CHUNK,
    IDLE,
    RECEIVER_FAILED,
    REFUSED,
    TOO_MUCH_DATA,
    Header,
    TransferFailed,
    parse_header,
    parse_json,
    progress_bar,
    summary,
)

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]


@attrs.frozen
class ReceiveOptions:
    """How a receiver treats senders (picklable: ``stt listen --workers`` hands it over)."""

    output: Path
    allowed: Allowed
    idle_timeout: float = 30.0
    max_transfers: int = 16


@attrs.frozen
class Received:
    """One file stored: where, its size and sha256, who sent it, where a resume began."""

    path: Path
    size: int
    sha256: str
    sender: bytes
    resumed_from: int = 0


_active = 0  # sessions this process is receiving from now (each holds at most one open file)
_bars = 0  # progress bars shown now: concurrent transfers show one, rich allows one live display


def size_text(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    raise AssertionError  # pragma: no cover


async def _close(session: Any, code: int, reason: str) -> None:
    with contextlib.suppress(Exception):
        await session.close(code, reason)


async def _abort(session: Any, code: int, reason: str,
                 message: str | None = None) -> NoReturn:
    """Close the session with ``code`` and ``reason`` (what the sender prints) and raise
    TransferFailed with ``message`` (what we print)."""
    await _close(session, code, reason)
    raise TransferFailed(message or reason, refused=code in (REFUSED, BUSY))


async def _next(options: ReceiveOptions, session: Any, stream: Any, what: str) -> bytes:
    """The sender's next message on ``stream``, or TransferFailed saying why none came."""
    try:
        with anyio.fail_after(options.idle_timeout):
            return bytes(await stream.receive())
    except TimeoutError:
        await _close(session, IDLE, f"the receiver heard nothing for {options.idle_timeout:g} s")
        raise TransferFailed(f"{_who(session)} sent nothing for {options.idle_timeout:g} s "
                             f"(waiting for the {what}); dropped it", keep=True) from None
    except StreamClosed:
        await _close(session, BAD_REQUEST, f"the stream ended before the {what}")
        raise TransferFailed(f"{_who(session)} stopped before the {what}", keep=True) from None
    except (SessionClosed, KeepAliveTimeout, StreamReset) as exc:
        raise TransferFailed(f"{_who(session)} went away ({sanitize(str(exc))})",
                             keep=True) from None


@contextlib.contextmanager
def _one_bar(console: Console) -> Iterator[Progress]:
    """A progress bar, shown unless another transfer's is (concurrent senders to one
    ``stt listen``): rich refuses a second live display on one console."""
    global _bars
    show = _bars == 0
    _bars += show
    try:
        with progress_bar(console, show) as progress:
            yield progress
    finally:
        _bars -= show


def _who(session: Any) -> str:
    return f"the sender {bytes(session.peer_id).hex()}"


async def ask(question: str) -> bool:
    """Put ``question`` to the user on the terminal; anything but y/yes is no."""
    click.echo(question, nl=False, err=True)
    fd = sys.stdin.fileno()
    await anyio.wait_readable(fd)
    answer = os.read(fd, 4096).decode("utf-8", "replace")
    return answer.strip().lower() in ("y", "yes")


def _open_partial(partial: Path) -> IO[bytes]:
    """The partial file, opened for update and locked: BlockingIOError when another transfer
    (in this process or another) holds it."""
    fd = os.open(partial, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o666)
    handle = os.fdopen(fd, "r+b", buffering=0)  # a write error is seen at the write
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BaseException:
            handle.close()
            raise
    return handle


def _write_all(handle: IO[bytes], data: bytes) -> None:
    """Write all of ``data`` (an unbuffered write may be short, at a size limit)."""
    view = memoryview(data)
    while view:
        written = handle.write(view)
        if not written:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        view = view[written:]


def _resume_point(handle: IO[bytes], header: Header) -> tuple[int, Any]:
    """How much of the file the partial holds (0 unless resuming) and the digest of it."""
    digest = hashlib.sha256()
    held = os.fstat(handle.fileno()).st_size if header.resume else 0
    if held > header.size:
        held = 0
    handle.seek(0)
    left = held
    while left:
        block = handle.read(min(CHUNK, left))
        if not block:
            break
        digest.update(block)
        left -= len(block)
    held -= left
    handle.truncate(held)
    handle.seek(held)
    return held, digest


async def receive_one(options: ReceiveOptions, session: Any, stream: Any,
                      console: Console) -> Received:
    """Receive the file the sender announces on ``stream``."""
    peer = bytes(session.peer_id)
    try:
        header = parse_header(await _next(options, session, stream, "header"))
    except ValueError as exc:
        await _abort(session, BAD_REQUEST, str(exc), f"refused a malformed header from "
                     f"{peer.hex()}: {exc}")
    if not options.allowed.admits(peer):
        question = (f"accept {header.relative} ({size_text(header.size)}) from "
                    f"{peer.hex()}? [y/N] ")
        if not await ask(question):
            await _abort(session, REFUSED, f"the receiver declined {header.relative}",
                         f"declined {header.relative} from {peer.hex()}")
    try:
        directory = make_folder(options.output, list(header.folder))
        partial = partial_path(directory, peer, header.relative, header.size)
        handle = _open_partial(partial)
    except BlockingIOError:
        await _abort(session, BUSY, f"the receiver is receiving {header.relative} from you "
                     "already")
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        await _abort(session, RECEIVER_FAILED, f"the receiver cannot store {header.relative}: "
                     f"{reason}")
    keep = placed = False
    try:
        with handle:
            offset, digest = _resume_point(handle, header)
            await stream.send(f'{{"offset": {offset}}}'.encode())
            received = offset
            start = time.perf_counter()
            with _one_bar(console) as progress:
                task = progress.add_task(f"receiving {header.relative}", total=header.size,
                                         completed=offset)
                while received < header.size:
                    chunk = await _next(options, session, stream, "data")
                    if received + len(chunk) > header.size:
                        await _abort(session, TOO_MUCH_DATA,
                                     f"more data than the {header.size:,} bytes declared",
                                     f"{peer.hex()} sent more than the {header.size:,} bytes "
                                     f"it declared for {header.relative}; removed it")
                    try:
                        _write_all(handle, chunk)
                    except OSError as exc:
                        await _abort(session, RECEIVER_FAILED, f"the receiver cannot write "
                                     f"{header.relative}: {exc.strerror or exc}")
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(task, completed=received)
            trailer = parse_json(await _next(options, session, stream, "checksum"), "checksum")
            elapsed = time.perf_counter() - start
            expected = trailer.get("sha256")
            if expected != digest.hexdigest():
                shown = sanitize(str(expected), 80)
                await _abort(session, CHECKSUM, f"sha256 mismatch: the receiver computed "
                             f"{digest.hexdigest()}, the sender says {shown}",
                             f"{header.relative} from {peer.hex()} failed its sha256 check; "
                             "removed it")
            try:
                handle.flush()
                os.fsync(handle.fileno())
                final = place(partial, directory, header.name)
            except OSError as exc:
                await _abort(session, RECEIVER_FAILED, f"the receiver cannot store "
                             f"{header.relative}: {exc.strerror or exc}")
            placed = True
        saved = "/".join((*header.folder, final.name))
        await stream.send(json.dumps({"saved": saved, "sha256": digest.hexdigest()}).encode())
        await stream.close()
    except TransferFailed as exc:
        keep = exc.keep
        raise
    except ValueError as exc:  # a malformed trailer
        await _abort(session, BAD_REQUEST, str(exc), f"{peer.hex()}: {exc}")
    finally:
        if not placed and not keep:
            partial.unlink(missing_ok=True)
    title = f"received {header.relative} -> {final} from {peer.hex()}"
    extra = {"resumed at": f"{offset:,} bytes"} if offset else None
    summary(console, title, header.size, elapsed, session, digest.hexdigest(), extra,
            moved=header.size - offset)
    return Received(final, header.size, digest.hexdigest(), peer, offset)


async def receive_session(options: ReceiveOptions, session: Any, console: Console,
                          raise_failures: bool = False) -> list[Received]:
    """Every file the sender sends in ``session``, until it closes the session. A sender not
    allowed (and not accepted on the terminal) is refused at once. Failures are printed in one
    line (and raised with ``raise_failures``)."""
    global _active
    peer = bytes(session.peer_id)
    received: list[Received] = []
    if not options.allowed.admits(peer) and not options.allowed.ask:
        await _close(session, REFUSED, f"node {peer.hex()} is not allowed to send files here "
                     f"(the receiver can allow it with --allow {peer.hex()})")
        refusal = TransferFailed(f"refused a sender that is not allowed: {peer.hex()}",
                                 refused=True)
        return _failed(console, refusal, raise_failures, received)
    if _active >= options.max_transfers:
        await _close(session, BUSY, f"the receiver is busy with {_active} transfers; "
                     "try again later")
        refusal = TransferFailed(f"refused {peer.hex()}: {_active} transfers in progress",
                                 refused=True)
        return _failed(console, refusal, raise_failures, received)
    _active += 1
    try:
        while True:
            try:
                with anyio.fail_after(options.idle_timeout):
                    stream = await session.accept_stream()
            except TimeoutError:
                await _close(session, IDLE, "the receiver heard nothing for "
                             f"{options.idle_timeout:g} s")
                raise TransferFailed(f"{peer.hex()} sent nothing for "
                                     f"{options.idle_timeout:g} s; dropped it") from None
            except SessionClosed as exc:
                if exc.by_peer and exc.error_code == 0:
                    return received  # the sender is done
                raise TransferFailed(f"the session with {peer.hex()} ended: "
                                     f"{sanitize(str(exc))}") from None
            except KeepAliveTimeout as exc:
                raise TransferFailed(f"{peer.hex()} went away ({exc})") from None
            received.append(await receive_one(options, session, stream, console))
    except TransferFailed as exc:
        return _failed(console, exc, raise_failures, received)
    finally:
        _active -= 1


def _failed(console: Console, exc: TransferFailed, raise_failures: bool,
            received: list[Received]) -> list[Received]:
    if raise_failures:
        raise exc
    lead = "" if exc.refused else "transfer failed: "
    console.print(Text.assemble((lead, "red"), sanitize(str(exc), 1000)), soft_wrap=True)
    return received


async def serve_session(options: ReceiveOptions, session: Any) -> None:
    """``stt listen``'s handler for one session (module-level, so that ``--workers`` can hand
    it to worker processes). Nothing escapes it: an unexpected error closes the session with a
    reason the sender prints."""
    console = Console()
    try:
        await receive_session(options, session, console)
    except Exception as exc:
        await _close(session, RECEIVER_FAILED, f"the receiver failed: {type(exc).__name__}")
        console.print(Text.assemble(("transfer failed: ", "red"),
                                    sanitize(f"{type(exc).__name__}: {exc}", 1000)),
                      soft_wrap=True)
