"""The mypyc build of the per-packet modules: all of them load compiled or none do, STT_PURE
and an edited source both select the Python sources, and a partial build is never mixed."""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import stt_proto
from stt_proto._native import COMPILED_MODULES

PACKAGE = Path(stt_proto.__file__).parent
EXTENSIONS = tuple(importlib.machinery.EXTENSION_SUFFIXES)

# Loads the set and reports, per module, whether it came from a .py, then runs one handshake
# and one message each way through the simulator, so the selected build is also exercised.
PROBE = """
import importlib, json, warnings
warnings.simplefilter("always")
with warnings.catch_warnings(record=True) as caught:
    import stt_proto
from stt_proto._native import COMPILED_MODULES
from stt_proto import DeterministicRandom, Endpoint, EndpointConfig
from stt_proto.sim import Network
net = Network(seed=1, record_trace=False)
a = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(1)), ("10.0.0.1", 1))
b = net.add_endpoint(Endpoint(EndpointConfig(), rng=DeterministicRandom(2)), ("10.0.0.2", 2))
session = a.connect(("10.0.0.2", 2), b.identity.node_id, 0.0)
net.run(0.5)
peer = b.sessions[b.next_event().session_id]
sid = session.open_stream()
session.send_message(sid, b"ping")
net.run(1.0)
got = peer.receive_message(sid)
files = {name: importlib.import_module("stt_proto." + name).__file__
         for name in COMPILED_MODULES}
print(json.dumps({"compiled": stt_proto.COMPILED, "got": got.decode(),
                  "sources": sorted(n for n, f in files.items() if f.endswith(".py")),
                  "warnings": [str(w.message) for w in caught]}))
"""


def _probe(root: Path, **env: str) -> dict[str, object]:
    import json

    environment = {k: v for k, v in os.environ.items() if k != "STT_PURE"}
    environment.update(env, PYTHONPATH=str(root))
    result = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True,
                            timeout=120, cwd=root, env=environment)
    assert result.returncode == 0, result.stderr
    report: dict[str, object] = json.loads(result.stdout)
    assert report["got"] == "ping"
    return report


def _copy_of_the_build(tmp_path: Path) -> Path:
    """This checkout's stt_proto with its compiled modules and their shared library."""
    shutil.copytree(PACKAGE, tmp_path / "stt_proto",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for shared in PACKAGE.parent.glob("stt_proto__mypyc*"):
        shutil.copy2(shared, tmp_path)
    return tmp_path


def _compiled_here() -> bool:
    return any((PACKAGE / "session" / f"core{suffix}").exists() for suffix in EXTENSIONS)


needs_build = pytest.mark.skipif(not _compiled_here(),
                                 reason="no compiled build here (a pure install)")


def test_the_whole_set_loads_one_way() -> None:
    """Each listed module is a source file, and all of them loaded compiled or none did."""
    for name in COMPILED_MODULES:
        assert PACKAGE.joinpath(*name.split(".")).with_suffix(".py").exists(), name
    files = {name: importlib.import_module(f"stt_proto.{name}").__file__ or ""
             for name in COMPILED_MODULES}
    compiled = {name for name, file in files.items() if file.endswith(EXTENSIONS)}
    assert compiled == (set(COMPILED_MODULES) if stt_proto.COMPILED else set())


def test_stt_pure_runs_the_sources(tmp_path: Path) -> None:
    root = _copy_of_the_build(tmp_path)
    report = _probe(root, STT_PURE="1")
    assert report["compiled"] is False
    assert report["sources"] == sorted(COMPILED_MODULES)
    assert report["warnings"] == []  # asked for: nothing to warn about


@needs_build
def test_the_compiled_build_runs_when_current(tmp_path: Path) -> None:
    report = _probe(_copy_of_the_build(tmp_path))
    assert report["compiled"] is True
    assert report["sources"] == []
    assert report["warnings"] == []


@needs_build
def test_an_edited_source_selects_all_the_sources_with_a_warning(tmp_path: Path) -> None:
    root = _copy_of_the_build(tmp_path)
    edited = root / "stt_proto" / "streams" / "recv.py"
    (built,) = [p for p in edited.parent.glob("recv.*") if p.name.endswith(EXTENSIONS)]
    later = built.stat().st_mtime + 60  # saved a minute after the build
    os.utime(edited, (later, later))
    report = _probe(root)
    assert report["compiled"] is False
    assert report["sources"] == sorted(COMPILED_MODULES)  # all of them, not just recv
    (warning,) = report["warnings"]
    assert "streams.recv changed after the last build" in str(warning)
    assert "pip install -e ." in str(warning)


@needs_build
def test_a_partial_build_selects_all_the_sources_with_a_warning(tmp_path: Path) -> None:
    root = _copy_of_the_build(tmp_path)
    (missing,) = [p for p in (root / "stt_proto").glob("rtt.*") if p.name.endswith(EXTENSIONS)]
    missing.unlink()
    report = _probe(root)
    assert report["compiled"] is False
    assert report["sources"] == sorted(COMPILED_MODULES)
    (warning,) = report["warnings"]
    assert f"1 of {len(COMPILED_MODULES)} compiled modules missing" in str(warning)
