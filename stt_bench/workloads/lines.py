"""How a benchmark peer process (:mod:`stt_bench.peer`) talks to the process that started it:
JSON lines on stdout, plain lines on stdin. Apart from the roles so that they and the entry
point import it without importing each other."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit(doc: dict[str, Any]) -> None:
    """One JSON line to the starting process, written through at once."""
    sys.stdout.write(json.dumps(doc) + "\n")
    sys.stdout.flush()


def read_line() -> str:
    """The starter's next line ("" at end of input); blocking, so runtimes call it in a
    thread."""
    return sys.stdin.readline().strip()
