"""Where a received file goes: safe names from the peer's text, never replacing a file.

A peer chooses the names of the files it sends; the receiver must not let it choose where they
land. Each name (and each folder of a directory send) becomes one safe path component: no
separators, no ``..``, no leading dot (no ``.bashrc``, no hidden files, nothing that could be the
receiver's own ``stt.key`` once the name is made unique), no control characters, bounded length.
A file is written under a hidden partial name and moved to its final name, chosen so that it
replaces nothing, only once its sha256 matched.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from stt_proto.peer_text import sanitize

MAX_NAME = 200  # UTF-8 bytes of a received file's name (filesystems allow 255; room for " (N)")
MAX_DEPTH = 32  # folders in one received path
FALLBACK = "received.bin"
PARTIAL_PREFIX = ".stt-partial-"


def safe_component(text: str) -> str:
    """``text`` as one safe file name component, or ``""`` when nothing safe remains."""
    text = text.rstrip("/\\")
    text = text[max(text.rfind("/"), text.rfind("\\")) + 1:]  # never a path from the peer
    text = sanitize(text[:4 * MAX_NAME], 8 * MAX_NAME).strip().lstrip(".").strip()
    if len(text.encode()) <= MAX_NAME:
        return text
    suffix = Path(text).suffix  # cut the stem, keep the extension
    if len(suffix.encode()) > MAX_NAME // 10 or suffix == text:
        suffix = ""
    stem = text[:len(text) - len(suffix)].encode()[:MAX_NAME - len(suffix.encode())]
    return stem.decode("utf-8", "ignore").rstrip() + suffix  # whole characters only


def safe_name(text: str) -> str:
    """A received file's base name (``received.bin`` when the peer's is unusable)."""
    return safe_component(text) or FALLBACK


def safe_folder(parts: list[str]) -> list[str]:
    """The folders of a directory send, each component made safe; empty ones dropped."""
    folder = [part for part in map(safe_component, parts) if part]
    if len(folder) > MAX_DEPTH:
        raise ValueError(f"the path is more than {MAX_DEPTH} folders deep")
    return folder


def make_folder(output: Path, folder: list[str]) -> Path:
    """``output/folder...``, created as needed, refusing to pass through a symlink (which
    could lead out of ``output``) or a file."""
    directory = output
    for part in folder:
        directory = directory / part
        if directory.is_symlink():
            raise ValueError(f"{part!r} in the output directory is a symbolic link")
        directory.mkdir(mode=0o777, exist_ok=True)
        if not directory.is_dir():
            raise ValueError(f"{part!r} in the output directory is not a directory")
    return directory


def partial_path(directory: Path, sender: bytes, relative: str, size: int) -> Path:
    """The hidden file a transfer is written to: one per sender, path and size, so that a
    resumed transfer finds what it left, and two senders never share a file."""
    key = hashlib.sha256(b"\0".join([sender, relative.encode("utf-8", "replace"),
                                     str(size).encode()])).hexdigest()[:32]
    return directory / f"{PARTIAL_PREFIX}{key}"


def numbered(name: str, number: int) -> str:
    """``name (N).ext``: the N-th alternative to ``name``."""
    if number == 0:
        return name
    suffix = Path(name).suffix
    stem = name[:-len(suffix)] if suffix and suffix != name else name
    if stem == name:
        suffix = ""
    return f"{stem} ({number}){suffix}"


def place(partial: Path, directory: Path, name: str, limit: int = 10_000) -> Path:
    """Move ``partial`` to ``directory/name``, or ``name (1).ext``, ``name (2).ext``, ...:
    the first that does not exist. The name is reserved with O_EXCL first, so concurrent
    receivers (threads, tasks or processes) never pick the same one, and nothing is replaced."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    for number in range(limit):
        candidate = directory / numbered(name, number)
        try:
            fd = os.open(candidate, flags, 0o600)
        except FileExistsError:
            continue
        os.close(fd)
        try:
            os.replace(partial, candidate)
        except BaseException:
            candidate.unlink(missing_ok=True)
            raise
        return candidate
    raise FileExistsError(f"{limit} files named like {name!r} exist already")
