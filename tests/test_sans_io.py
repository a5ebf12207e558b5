"""stt_proto stays sans-I/O: no event loop, socket, thread or clock module is imported."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import stt_proto

FORBIDDEN = {"asyncio", "trio", "anyio", "socket", "select", "selectors", "threading", "time"}
PACKAGE = Path(stt_proto.__file__).parent


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            names.update(a.value.split(".")[0] for a in node.args
                         if isinstance(a, ast.Constant) and isinstance(a.value, str))
    return names


def test_no_module_of_stt_proto_imports_io_or_clock_modules() -> None:
    files = sorted(PACKAGE.rglob("*.py"))
    assert len(files) > 10
    offenders = {str(f.relative_to(PACKAGE)): sorted(_imported_modules(f) & FORBIDDEN)
                 for f in files if _imported_modules(f) & FORBIDDEN}
    assert offenders == {}


def test_importing_stt_proto_pulls_in_none_of_them_itself() -> None:
    """In a fresh interpreter, importing every stt_proto module adds none of those modules
    (the third-party libraries it builds on are imported first, so only stt_proto is measured)."""
    code = f"""
import sys, importlib, pkgutil
import attrs, cryptography.hazmat.primitives.ciphers.aead
import cryptography.hazmat.primitives.asymmetric.x25519, cryptography.exceptions
before = set(sys.modules)
import stt_proto
for info in pkgutil.walk_packages(stt_proto.__path__, "stt_proto."):
    if True:
        importlib.import_module(info.name)
added = {{m.split(".")[0] for m in set(sys.modules) - before}}
print(sorted(added & set({sorted(FORBIDDEN)!r})))
"""
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True,
                            timeout=60, cwd=PACKAGE.parent)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_randomness_only_from_the_injectable_source() -> None:
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text()
        if path.name == "randomness.py":
            continue
        assert "os.urandom" not in text and "secrets." not in text, path
