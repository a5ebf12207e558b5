"""Helpers for the tests that drive the real ``stt`` command in subprocesses on loopback, and a
hand-made sender that speaks the transfer protocol (to send what ``stt send`` never would)."""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import attrs

# Library warnings (pure-Python core, kernel buffer sizes) would be extra stderr lines.
ENV = {**os.environ, "COLUMNS": "200", "PYTHONWARNINGS": "ignore"}
ENV.pop("STT_DEBUG", None)


def stt_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "stt_cli", *args]


def stt(*args: str, timeout: float = 30, stdin: Any = subprocess.DEVNULL,
        ) -> subprocess.CompletedProcess[str]:
    """Run ``stt ARGS`` to completion."""
    return subprocess.run(stt_command(*args), capture_output=True, text=True, timeout=timeout,
                          env=ENV, stdin=stdin)


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one line a failed command printed on stderr (asserting it is one, no traceback)."""
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("stt: "), lines
    return lines[0]


@attrs.define
class Server:
    """A running ``stt receive`` / ``stt listen``, its address and node id, and what it has
    printed on stdout so far (read as it goes, so that it never blocks on a full pipe)."""

    process: subprocess.Popen[str]
    host: str
    port: int
    node_id: str
    queue: queue.Queue[str]
    lines: list[str] = attrs.Factory(list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def wait_for(self, predicate: Callable[[str], bool], timeout: float = 15) -> str:
        """The next stdout line for which ``predicate`` holds."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.queue.get(timeout=left)
            except queue.Empty:
                break
            if not line:
                break
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"no such line; got {self.lines!r}")


def _pump(pipe: Any, lines: queue.Queue[str]) -> None:
    for line in iter(pipe.readline, ""):
        lines.put(line)
    lines.put("")


@contextmanager
def server(command: str, *args: str, stdin: Any = subprocess.DEVNULL) -> Iterator[Server]:
    """``stt COMMAND --host 127.0.0.1 ARGS`` running, until the block ends."""
    process = subprocess.Popen(stt_command(command, "--host", "127.0.0.1", *args),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env=ENV, stdin=stdin)
    try:
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=_pump, args=(process.stdout, lines), daemon=True).start()
        try:
            line = lines.get(timeout=20)
        except queue.Empty:
            line = ""
        if "listening on" not in line:
            process.kill()
            err = process.stderr.read() if process.stderr is not None else ""
            raise AssertionError(f"did not start: {line!r} {err!r}")
        words = line.split()
        host, _, port = words[2].rpartition(":")
        yield Server(process, host, int(port), words[5], lines)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        for pipe in (process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def key(tmp_path: Path, name: str) -> tuple[Path, str]:
    """A new identity file and its node id."""
    path = tmp_path / f"{name}.key"
    result = stt("keygen", str(path))
    assert result.returncode == 0, result.stderr
    return path, result.stdout.split("node id: ")[1].split()[0]


def identity_of(path: Path) -> Any:
    from stt_proto import Identity

    return Identity.load(path)


async def raw_sender(srv: Server, script: Callable[[Any, Any], Any],
                     identity: Any = None, open_stream: bool = True) -> Any:
    """Connect to ``srv`` as a hand-made sender and run ``script(session, stream)`` (the
    stream None without ``open_stream``)."""
    from stt_asyncio import STTNode

    async with STTNode(identity=identity, host="127.0.0.1") as node:
        session = await node.connect((srv.host, srv.port), bytes.fromhex(srv.node_id),
                                     timeout=10)
        stream = session.open_stream() if open_stream else None
        return await script(session, stream)


def run_raw(srv: Server, script: Callable[[Any, Any], Any], identity: Any = None,
            open_stream: bool = True) -> Any:
    return asyncio.run(asyncio.wait_for(raw_sender(srv, script, identity, open_stream), 30))


def header(name: str, size: int, **extra: Any) -> bytes:
    return json.dumps({"name": name, "size": size, **extra}).encode()


def files_in(directory: Path) -> list[str]:
    return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                  if p.is_file())
