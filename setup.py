"""Compiles the protocol core's per-packet modules with mypyc where this machine can.

The sources are ordinary, mypy --strict clean Python and stay the reference: mypyc turns the
same files into C extensions that Python imports in their place (the core's small-message round
trip about 3 x faster, a bulk transfer end to end up to 25 %, where the AEAD and the kernel
take most of the time). Without a C compiler, the Python headers or mypy at build time, or
with ``STT_PURE=1`` in the environment, the package installs as pure Python and behaves the
same.
"""

from __future__ import annotations

import ast
import os
import shutil
import sys
import sysconfig
from pathlib import Path

from setuptools import setup
from setuptools.command.build_ext import build_ext


def _compiled_modules() -> list[str]:
    """stt_proto/_native.py's list: the modules a packet passes through, sender and receiver,
    and what they call per packet. The rest (handshake, Noise, DHT, simulator, events, config)
    runs per session or per lookup and stays interpreted."""
    tree = ast.parse(Path("stt_proto/_native.py").read_text(encoding="utf-8"))
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else None
        if isinstance(target, ast.Name) and target.id == "COMPILED_MODULES":
            names = ast.literal_eval(node.value)
            return ["stt_proto/" + name.replace(".", "/") + ".py" for name in names]
    raise RuntimeError("stt_proto/_native.py lost COMPILED_MODULES")


def _can_compile() -> str | None:
    """None when mypyc can build here, else why not."""
    if os.environ.get("STT_PURE", "") not in ("", "0"):
        return "STT_PURE is set"
    if sys.implementation.name != "cpython":
        return f"mypyc needs CPython, this is {sys.implementation.name}"
    include = sysconfig.get_paths().get("include")
    if not include or not (Path(include) / "Python.h").exists():
        return "the Python headers (Python.h) are missing"
    compiler = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    if shutil.which(compiler.split()[0]) is None:
        return f"no C compiler ({compiler.split()[0]})"
    try:
        import mypyc.build  # noqa: F401
    except ImportError:
        return "mypy (which provides mypyc) is not installed"
    return None


def _ext_modules() -> list[object]:
    reason = _can_compile()
    if reason is not None:
        print(f"stt-transport: installing pure Python ({reason})", file=sys.stderr)
        return []
    from mypyc.build import mypycify

    try:
        return list(mypycify(_compiled_modules(), opt_level="3", group_name="stt_proto"))
    except (Exception, SystemExit) as exc:  # mypyc reports its errors by exiting
        print(f"stt-transport: installing pure Python (mypyc failed: {exc!r})", file=sys.stderr)
        return []


class _BuildExtOrFallBack(build_ext):
    """A compiler that fails part-way leaves the package pure Python, not uninstallable: the
    extensions built so far are an incomplete set, which stt_proto/_native.py ignores."""

    def run(self) -> None:
        try:
            super().run()
        except Exception as exc:  # CompileError, LinkError, a missing tool...
            print(f"stt-transport: installing pure Python (compiling failed: {exc})",
                  file=sys.stderr)
            self.extensions = []


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": _BuildExtOrFallBack})
