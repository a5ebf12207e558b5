"""File transfer over STT: the protocol both ends of ``stt send`` / ``stt receive`` share.

One session carries one or more files, each on its own stream:

1. sender -> receiver: a JSON header ``{"name", "size", "folder": [..], "resume": bool}``;
2. receiver -> sender: ``{"offset": N}``: how much of this file (same sender, path and size) it
   holds already (0 unless the sender asked to resume), or it closes the session with one of the
   application codes below and a reason;
3. sender -> receiver: ``size - N`` bytes of data in messages of up to 1 MiB, then
   ``{"sha256": HEX}`` (of the whole file), then FIN. More data than declared is refused;
4. receiver -> sender: ``{"saved": NAME, "sha256": HEX}`` once the digest matched and the file
   was moved to its final name (or a close with ``CHECKSUM``).

The sender closes the session with code 0 after its last file. Everything the peer supplies
(names, digests, close reasons) is shown as plain text: passed through
:func:`stt_proto.peer_text.sanitize` and printed as ``Text`` or in columns with markup off.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
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

from stt_proto import STTError
from stt_proto.peer_text import sanitize

from .names import FALLBACK, MAX_NAME, safe_folder, safe_name

__all__ = ["CHUNK", "FAILURES", "FALLBACK", "MAX_NAME", "Header", "parse_header",
           "report_failure", "summary"]

CHUNK = 1024 * 1024
MAX_SIZE = 1 << 62  # a declared size beyond any disk
MAX_MESSAGE = CHUNK + 4096  # the largest message either side reads in a transfer

# Application error codes of a session the receiver (or the sender) ends.
REFUSED = 0x100          # this sender is not allowed here, or the user said no
BAD_REQUEST = 0x101      # a malformed header, trailer or reply
TOO_MUCH_DATA = 0x102    # more data than the header declared
CHECKSUM = 0x103         # the whole file's sha256 did not match
IDLE = 0x104             # nothing arrived for the idle timeout
BUSY = 0x105             # too many transfers at once, or this file is being received already
RECEIVER_FAILED = 0x106  # the receiver could not store the file (disk full, permissions, ...)
SENDER_FAILED = 0x107    # the sender could not read its file
SHUTTING_DOWN = 0x108    # the receiver was stopped


class TransferFailed(Exception):
    """A transfer that ended early, phrased for the user; ``keep`` says whether its partial
    file is worth keeping for a resume (the sender vanished or went quiet), ``refused`` that
    the sender was turned away before it sent anything."""

    def __init__(self, message: str, keep: bool = False, refused: bool = False) -> None:
        super().__init__(message)
        self.keep = keep
        self.refused = refused


FAILURES = (STTError, TransferFailed, RuntimeError, ValueError, KeyError, TimeoutError, OSError)


@attrs.frozen
class Header:
    """What the sender says about a file, made safe: ``name`` a base name, ``folder`` the safe
    components of its place in a directory send."""

    name: str
    size: int
    folder: tuple[str, ...] = ()
    resume: bool = False

    @property
    def relative(self) -> str:
        return "/".join((*self.folder, self.name))


def _malformed(detail: str) -> ValueError:
    return ValueError(f"the sender's header is malformed: {detail}")


def parse_header(raw: bytes) -> Header:
    """The sender's header, every field checked and made safe; anything else a ValueError."""
    try:
        header = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _malformed("not JSON") from None
    if not isinstance(header, dict):
        raise _malformed("not a JSON object")
    name, size = header.get("name"), header.get("size")
    folder, resume = header.get("folder", []), header.get("resume", False)
    if not isinstance(name, str):
        raise _malformed("no name")
    if type(size) is not int or not 0 <= size <= MAX_SIZE:
        raise _malformed("the size is not a byte count")
    if not isinstance(folder, list) or not all(isinstance(part, str) for part in folder):
        raise _malformed("the folder is not a list of names")
    if type(resume) is not bool:
        raise _malformed("resume is not true or false")
    return Header(safe_name(name), size, tuple(safe_folder(folder)), resume)


def _parse_header(raw: bytes) -> tuple[str, int]:
    """``(name, size)`` of a header (the earlier form of :func:`parse_header`)."""
    header = parse_header(raw)
    return header.name, header.size


def parse_json(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object message from the peer, or a ValueError naming ``what`` it should be."""
    try:
        value = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        value = None
    if not isinstance(value, dict):
        raise ValueError(f"the peer's {what} is malformed")
    return value


def encode(value: dict[str, Any]) -> bytes:
    return json.dumps(value).encode()


def progress_bar(console: Console, show: bool = True) -> Progress:
    """A transfer's bar, on a terminal only (and only when ``show``: one live display at a
    time per terminal)."""
    # markup off: the description holds a file name, perhaps the peer's
    return Progress(TextColumn("{task.description}", style="progress.description",
                               markup=False), BarColumn(),
                    "[progress.percentage]{task.percentage:>3.0f}%", TransferSpeedColumn(),
                    TimeRemainingColumn(), console=console, transient=True,
                    disable=not (show and console.is_terminal))


_progress = progress_bar


def summary(console: Console, title: str, size: int, elapsed: float, session: Any,
            digest: str, extra: dict[str, str] | None = None, moved: int | None = None) -> None:
    """The figures of one transfer: a table on a terminal, plain ``key: value`` lines (the
    sha256 whole) anywhere else. ``moved``: the bytes that crossed the network (less than
    ``size`` after a resume), what the throughput is of."""
    stats = session.get_stats()
    moved = size if moved is None else moved
    rows = {**(extra or {}),
            "size": f"{size:,} bytes",
            "time": f"{elapsed:.3f} s",
            "throughput": f"{moved / max(elapsed, 1e-9) / 1e6:,.1f} MB/s",
            "rtt": f"{stats.rtt_ms:.2f} ms (min {stats.rtt_min_ms:.2f})",
            "loss": f"{stats.loss_rate:.2%} ({stats.packets_lost} packets)",
            "sha256": digest}
    if not console.is_terminal:
        console.print(Text(sanitize(title, 2 * MAX_NAME + 1000)), soft_wrap=True)
        for key, value in rows.items():
            console.print(Text(f"  {key}: {sanitize(value, 1000)}"), soft_wrap=True)
        return
    table = Table(title=Text(sanitize(title, 2 * MAX_NAME + 1000)), show_header=False)
    for key, value in rows.items():
        table.add_row(key, Text(sanitize(value, 1000)))
    console.print(table)


def report_failure(console: Console, exc: BaseException) -> None:
    """Print why a transfer failed; the message may quote the peer, so it is plain text."""
    console.print(Text.assemble(("transfer failed: ", "red"), sanitize(str(exc))),
                  soft_wrap=True)
