"""The programs under examples/ and the complete programs in the docs run as written."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Every ```python block of the README and of docs/*.md is a complete program, run as written
# (fragments that could not run are written as ```text). The manual's chapter (docs/manual/)
# has its own harness: tests/conformance/test_seed_chapter.py.
PROGRAMS = [(doc.name, index, code)
            for doc in DOCS
            for index, code in enumerate(
                re.findall(r"```python\n(.*?)```", doc.read_text(), re.S))]


def _run(args: list[str]) -> str:
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=60,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(path: Path) -> None:
    assert _run([str(path)]).strip()


def test_the_trio_example_runs_on_asyncio_too() -> None:
    assert "over asyncio" in _run([str(ROOT / "examples" / "echo_trio.py"), "--asyncio"])


def test_the_docs_have_programs() -> None:
    assert {name for name, _, _ in PROGRAMS} >= {"README.md", "api.md", "driving-the-core.md",
                                                 "dht.md", "getting-started.md"}


@pytest.mark.parametrize("name, index, code", PROGRAMS,
                         ids=[f"{name}-{index}" for name, index, _ in PROGRAMS])
def test_doc_program_runs(name: str, index: int, code: str, tmp_path: Path) -> None:
    program = tmp_path / "program.py"  # a file: worker processes import its handler
    program.write_text(code)
    _run([str(program)])
