"""Which build of the per-packet modules Python loads: mypyc's compiled one or the sources.

``setup.py`` compiles the modules named in :data:`COMPILED_MODULES` with mypyc, where the
machine can, into C extensions placed beside the sources, and Python's import system prefers an
extension to a ``.py`` of the same name. :func:`select_build` turns that preference round, for
the whole set at once, when

- ``STT_PURE=1`` is in the environment (to debug, profile or fuzz the Python itself), or
- a source is newer than its compiled module, that is, edited since the last build: running the
  old machine code would silently ignore the edit, so a warning says so and the sources run, or
- only part of the set is compiled.

All or none, because compiled modules reach each other's classes natively: a compiled session
cannot drive an interpreted stream. The sources are the reference and behave the same.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

# Read by setup.py (as a literal), so keep it one plain tuple of dotted names under stt_proto.
COMPILED_MODULES = (
    "varint",
    "rangeset",
    "replay",
    "ack",
    "rtt",
    "frame_types",
    "frames",
    "packet",
    "buffers",
    "stats",
    "recovery",
    "congestion.base",
    "congestion.cubic",
    "congestion.newreno",
    "congestion.bbr",
    "streams.records",
    "streams.assembly",
    "streams.send",
    "streams.recv",
    "streams.stream",
    "streams.packetizer",
    "streams.manager",
    "dataplane",
    "path",
    "pmtu",
    "session.state",
    "session.timers",
    "session.protection",
    "noise.primitives",
    "noise.state",
    "handshake_payload",
    "handshake",
    "admission",
    "session.handshake_phase",
    "session.app",
    "session.receive",
    "session.output",
    "session.ending",
    "session.timeouts",
    "session.core",
    "timer_table",
    "endpoint",
    "node",
)

# An extension written in the same second as its source (as a wheel unpacks) is not stale.
_STALE_AFTER_S = 2.0


class _SourcesFirst(importlib.abc.MetaPathFinder):
    """Finds the listed modules' ``.py`` files ahead of the extensions beside them."""

    def __init__(self, sources: dict[str, Path]) -> None:
        self._sources = sources

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        source = self._sources.get(fullname)
        if source is None:
            return None
        return importlib.util.spec_from_file_location(fullname, source)


def _extension_of(source: Path) -> Path | None:
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        candidate = source.with_name(source.stem + suffix)
        if candidate.exists():
            return candidate
    return None


def select_build(package: str, package_dir: Path) -> bool:
    """Arrange for the compiled modules to load, or the sources; True when compiled ones will.

    Call before any listed module is imported.
    """
    sources = {f"{package}.{name}": package_dir.joinpath(*name.split(".")).with_suffix(".py")
               for name in COMPILED_MODULES}
    extensions = {name: _extension_of(source) for name, source in sources.items()}
    built = [name for name, ext in extensions.items() if ext is not None]
    if not built:
        return False
    reason = None
    if os.environ.get("STT_PURE", "") not in ("", "0"):
        reason = ""
    elif len(built) < len(sources):
        reason = f"{len(sources) - len(built)} of {len(sources)} compiled modules missing"
    else:
        stale = [name for name, ext in extensions.items() if ext is not None
                 and sources[name].stat().st_mtime > ext.stat().st_mtime + _STALE_AFTER_S]
        if stale:
            reason = f"{', '.join(stale)} changed after the last build"
    if reason is None:
        return True
    if reason:
        warnings.warn(f"{package}: running the Python sources, not the compiled modules: "
                      f"{reason}; rebuild with `pip install -e .`", RuntimeWarning, stacklevel=3)
    sys.meta_path.insert(0, _SourcesFirst(sources))
    return False


COMPILED = select_build(__name__.rpartition(".")[0], Path(__file__).parent)
"""True when the per-packet modules run compiled (see ``setup.py``), False when interpreted."""
