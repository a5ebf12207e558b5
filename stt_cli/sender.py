"""The sending end of ``stt send``: a file or a directory tree, resumable, each file's sha256
checked by the receiver before it keeps the file, every failure one line naming its cause."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
from pathlib import Path
from typing import Any

import attrs
from rich.console import Console
from rich.text import Text

from stt_proto import (
    AuthenticationError,
    ConnectionRefused,
    HandshakeError,
    HandshakeTimeout,
    KeepAliveTimeout,
    SessionClosed,
    StreamClosed,
    StreamReset,
    STTError,
)
from stt_proto.peer_text import sanitize

from .errors import CLIError
from .transfer import (
    CHUNK,
    REFUSED,
    SENDER_FAILED,
    encode,
    parse_json,
    progress_bar,
    summary,
)

HANDLER_FAILED = 1  # stt_asyncio.workers: a serve() handler raised


@attrs.frozen
class Outgoing:
    """A file to send: where it is here, its name and the folders it sits in on arrival."""

    path: Path
    name: str
    folder: tuple[str, ...] = ()

    @property
    def relative(self) -> str:
        return "/".join((*self.folder, self.name))


@attrs.frozen
class Sent:
    """One file delivered: the name the receiver saved it under, its size and sha256."""

    relative: str
    saved: str
    size: int
    sha256: str
    resumed_from: int = 0


def collect(path: Path, console: Console | None = None) -> list[Outgoing]:
    """The files to send for ``path``: itself, or every regular file under it (as
    ``DIRNAME/relative/path``). Symbolic links are followed only to files inside the tree;
    the others are skipped and said so."""
    if not path.is_dir():
        return [Outgoing(path, path.name)]
    root = path.resolve()
    found: list[Outgoing] = []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames.sort()
        here = Path(dirpath)
        folder = (root.name, *here.relative_to(path).parts)
        for link in (name for name in dirnames if (here / name).is_symlink()):
            _note(console, f"skipping {here / link}: a symbolic link to a directory")
        for name in sorted(filenames):
            item = here / name
            if item.is_symlink():
                target = item.resolve()
                if not target.is_relative_to(root) or not target.is_file():
                    _note(console, f"skipping {item}: a symbolic link out of {path}")
                    continue
            elif not item.is_file():
                _note(console, f"skipping {item}: not a regular file")
                continue
            found.append(Outgoing(item, name, folder))
    return found


def _note(console: Console | None, text: str) -> None:
    if console is not None:
        console.print(Text(sanitize(text, 2000)), soft_wrap=True, style="yellow")


async def connect(node: Any, to: tuple[str, int], peer_id: bytes, timeout: float) -> Any:
    """A session with the receiver, or CLIError naming why none was made and what to check."""
    where = f"[{to[0]}]:{to[1]}" if ":" in to[0] else f"{to[0]}:{to[1]}"
    try:
        return await node.connect(to, peer_id, timeout=timeout)
    except AuthenticationError as exc:
        found = re.search(r"node id is ([0-9a-f]{64})", str(exc))
        actual = found.group(1) if found else "another node"
        raise CLIError(f"wrong peer id: the node at {where} is {actual}, not {peer_id.hex()} "
                       "(check --peer-id)") from None
    except HandshakeError as exc:
        if "psk" in str(exc):
            raise CLIError(f"the node at {where} rejected the handshake: most likely its --psk "
                           "differs from ours (or only one side has one)") from None
        raise CLIError(f"the handshake with {where} failed: {sanitize(str(exc))}") from None
    except HandshakeTimeout:
        raise CLIError(f"nobody answered at {where} within {timeout:g} s (is a receiver "
                       "running there, and do both sides use the same --psk?)") from None
    except ConnectionRefused as exc:
        raise CLIError(f"{where} refused the session: {sanitize(str(exc))}") from None
    except (SessionClosed, KeepAliveTimeout) as exc:  # refused as soon as it was made
        raise CLIError(closed_message(exc)) from None
    except OSError as exc:
        raise CLIError(f"cannot reach {where}: {exc.strerror or exc}") from None


def closed_message(exc: BaseException) -> str:
    """What the end of a session means for a transfer, in one line."""
    if isinstance(exc, SessionClosed):
        reason = sanitize(exc.reason or "no reason given", 500)
        if not exc.by_peer:
            return f"the session ended: {reason}"
        if exc.error_code == REFUSED:
            return f"refused by the receiver: {reason}"
        if exc.error_code == HANDLER_FAILED:
            return f"the receiver failed: {reason}"
        if exc.error_code == 0:
            return "the receiver closed the session before the transfer finished"
        return f"the receiver stopped the transfer: {reason}"
    if isinstance(exc, KeepAliveTimeout):
        return ("the receiver went away (nothing heard from it); run the same `stt send` "
                "with --resume to continue")
    if isinstance(exc, StreamReset):
        return "the receiver aborted the transfer"
    if isinstance(exc, StreamClosed):
        return "the receiver ended the transfer without a reply"
    return sanitize(str(exc) or type(exc).__name__, 500)


async def send_paths(node: Any, path: Path, to: tuple[str, int], peer_id: bytes,
                     console: Console, resume: bool = False,
                     timeout: float = 10.0) -> list[Sent]:
    """Send ``path`` (a file or a directory tree) to the receiver at ``to``."""
    files = collect(path, console)
    if not files:
        raise CLIError(f"{path} holds no regular file to send")
    session = await connect(node, to, peer_id, timeout)
    sent: list[Sent] = []
    try:
        for item in files:
            sent.append(await send_one(session, item, resume, console))
    except (STTError, ValueError) as exc:
        with contextlib.suppress(Exception):
            await session.close(SENDER_FAILED, "the sender gave up")
        raise CLIError(closed_message(exc)) from None
    except OSError as exc:
        with contextlib.suppress(Exception):
            await session.close(SENDER_FAILED, f"the sender cannot read its file: "
                                f"{exc.strerror or exc}")
        raise CLIError(f"cannot read {exc.filename or path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(Exception):
            await session.close(SENDER_FAILED, "the sender was interrupted")
        raise
    await session.close(0, "transfer complete")
    return sent


async def send_one(session: Any, item: Outgoing, resume: bool, console: Console) -> Sent:
    """One file on a new stream: header, the receiver's offset, data, sha256, its verdict."""
    size = item.path.stat().st_size
    stream = session.open_stream()
    await stream.send(encode({"name": item.name, "size": size, "folder": list(item.folder),
                              "resume": resume}))
    reply = parse_json(bytes(await stream.receive()), "reply")
    offset = reply.get("offset")
    if type(offset) is not int or not 0 <= offset <= size or (offset and not resume):
        raise ValueError("the receiver's reply is malformed")
    digest = hashlib.sha256()
    start = time.perf_counter()
    with progress_bar(console) as progress, item.path.open("rb") as handle:
        left = offset
        while left:  # the part the receiver holds: hashed, not sent
            block = handle.read(min(CHUNK, left))
            if not block:
                raise OSError(0, f"{item.path} shrank while being sent", str(item.path))
            digest.update(block)
            left -= len(block)
        task = progress.add_task(f"sending {sanitize(item.relative)}", total=size,
                                 completed=offset)
        left = size - offset
        while left:
            chunk = handle.read(min(CHUNK, left))
            if not chunk:
                raise OSError(0, f"{item.path} shrank while being sent", str(item.path))
            digest.update(chunk)
            await stream.send(chunk)
            left -= len(chunk)
            progress.advance(task, len(chunk))
        await stream.send(encode({"sha256": digest.hexdigest()}))
        await stream.close()
        verdict = parse_json(bytes(await stream.receive()), "verdict")
    elapsed = time.perf_counter() - start
    saved = sanitize(str(verdict.get("saved", "?")), 300)
    if verdict.get("sha256") != digest.hexdigest():
        raise ValueError(f"the receiver computed sha256 {sanitize(str(verdict.get('sha256')))},"
                         f" we sent {digest.hexdigest()}")
    extra = {"resumed at": f"{offset:,} bytes"} if offset else None
    summary(console, f"sent {item.relative} (saved as {saved})", size, elapsed, session,
            digest.hexdigest(), extra, moved=size - offset)
    return Sent(item.relative, saved, size, digest.hexdigest(), offset)
