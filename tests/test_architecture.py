"""The layering of docs/architecture.md, checked on the sources: stt_proto (sans-I/O core) <-
stt_runtime (shared I/O and facades) <- stt_asyncio | stt_anyio (loop bindings) <- stt_bench
(benchmarks) <- stt_cli.

Imports are read with ``ast`` (nothing is imported to find them). The first cycle check uses
module-level imports only, as the interpreter runs them at import time: those under
``if TYPE_CHECKING:`` and inside functions are left out; the second adds those inside
functions. The layer checks read every import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("stt_proto", "stt_runtime", "stt_asyncio", "stt_anyio", "stt_bench", "stt_cli",
            "seigr_toolset_transmissions")
LIBRARY = ("stt_proto", "stt_runtime", "stt_asyncio", "stt_anyio")
TOOLS = ("stt_bench", "stt_cli")  # the benchmarks, and the command that runs them
EVENT_LOOPS = {"asyncio", "trio", "anyio", "sniffio", "uvloop"}
IO_MODULES = EVENT_LOOPS | {"socket", "select", "selectors", "threading", "time",
                            "multiprocessing"}
MAX_LINES = 520
# Modules allowed past MAX_LINES, each with a ceiling and the reason (none at present).
LONG_MODULES: dict[str, tuple[int, str]] = {}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _import_nodes(tree: ast.Module, in_functions: bool,
                  type_checking: bool) -> list[ast.Import | ast.ImportFrom]:
    """The import statements of ``tree`` run at import time, plus those deferred into
    functions (``in_functions``) and those under ``if TYPE_CHECKING:`` (``type_checking``)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                found.append(node)
            elif isinstance(node, ast.If):
                if type_checking or not _is_type_checking(node.test):
                    visit(node.body)
                visit(node.orelse)
            elif isinstance(node, ast.Try):
                for block in (node.body, node.orelse, node.finalbody,
                              *(h.body for h in node.handlers)):
                    visit(block)
            elif isinstance(node, ast.With):
                visit(node.body)
            elif in_functions:
                visit([child for child in ast.iter_child_nodes(node)
                       if isinstance(child, ast.stmt)])

    visit(tree.body)
    return found


def _imports(module: str, in_functions: bool = False, type_checking: bool = False) -> set[str]:
    """The modules ``module`` imports, absolute names. ``from pkg import name`` counts as
    importing ``pkg.name`` when that is a module of ours, else ``pkg``."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in _import_nodes(tree, in_functions, type_checking):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[:len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        for alias in node.names:
            candidate = f"{base}.{alias.name}"
            names.add(candidate if candidate in MODULES else base)
    return names


def _project_graph(in_functions: bool = False) -> dict[str, set[str]]:
    return {module: {name for name in _imports(module, in_functions) if name in MODULES}
            for module in MODULES}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if target == node:
                continue  # ``from . import x`` inside x's own package __init__ resolves to it
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                cycle = visit(target)
                if cycle is not None:
                    return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle is not None:
                return cycle
    return None


def _top(name: str) -> str:
    return name.split(".", 1)[0]


def _offenders(package: str, forbidden: set[str]) -> dict[str, list[str]]:
    """Every import (deferred and TYPE_CHECKING ones included) of ``package``'s modules that
    names a ``forbidden`` top-level package, by module."""
    found: dict[str, list[str]] = {}
    for module in MODULES:
        if _top(module) == package:
            names = sorted(name for name in _imports(module, True, True)
                           if _top(name) in forbidden)
            if names:
                found[module] = names
    return found


def test_the_graph_sees_the_known_edges() -> None:
    """The parser resolves relative and absolute imports (else the checks below are empty)."""
    graph = _project_graph()
    assert "stt_runtime.node_core" in graph["stt_asyncio.node"]
    assert "stt_runtime.session" in graph["stt_anyio.session"]
    assert "stt_runtime._address" in graph["stt_runtime.udp_io"]  # ``from ._address import``
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles() -> None:
    cycle = _find_cycle(_project_graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_no_library_import_cycles_through_deferred_imports() -> None:
    """Nor, in the library, the benchmarks and the command-line tool, through imports deferred
    into functions: a node's worker entry point that imported its node module lazily (node <->
    workers) hid a cycle from the check above, and so did the benchmarks' lookups by name
    (``bench`` <-> ``bench_*``) before ``stt_bench.registry`` named every workload."""
    checked = (*LIBRARY, *TOOLS)
    graph = {module: {name for name in targets if _top(name) in checked}
             for module, targets in _project_graph(in_functions=True).items()
             if _top(module) in checked}
    cycle = _find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_the_bindings_never_import_each_other() -> None:
    assert _offenders("stt_anyio", {"stt_asyncio"}) == {}
    assert _offenders("stt_asyncio", {"stt_anyio"}) == {}


def test_importing_stt_anyio_loads_no_stt_asyncio() -> None:
    code = ("import sys, stt_anyio; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'stt_asyncio'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_the_core_imports_no_runtime_and_no_io() -> None:
    forbidden = {"stt_runtime", "stt_asyncio", "stt_anyio", "stt_cli"} | IO_MODULES
    assert _offenders("stt_proto", forbidden) == {}


def test_the_shared_runtime_imports_no_event_loop_and_no_binding() -> None:
    assert _offenders("stt_runtime", EVENT_LOOPS | {"stt_asyncio", "stt_anyio", "stt_cli"}) == {}


def test_library_modules_stay_short() -> None:
    too_long: dict[str, int] = {}
    for module, path in MODULES.items():
        if _top(module) not in LIBRARY:
            continue
        name = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        ceiling = LONG_MODULES.get(name, (MAX_LINES, ""))[0]
        if lines > ceiling:
            too_long[name] = lines
    assert too_long == {}, f"modules over {MAX_LINES} lines (or their listed ceiling)"


def test_the_benchmarks_never_import_the_command_line_tool() -> None:
    """stt_bench sits below stt_cli: ``stt bench`` imports it, never the other way round."""
    assert _offenders("stt_bench", {"stt_cli"}) == {}
    assert _offenders("stt_cli", {"stt_bench"})  # the command does use the package


# Third-party objects a benchmark may reach into, with the reason: what the scan below allows.
FOREIGN_PRIVATE = {
    "stt_bench/baselines/quic.py": "aioquic's server and connection expose their transport "
                                   "and QUIC state only as _transport and _quic",
}

# Tools that time the library's own stages from inside: they wrap runtime methods on instances
# by design, so they are exempt (the round trips they time go through the public API).
INSTRUMENTS = {
    "stt_bench/stages.py": "stamps each stage of a round trip inside both nodes",
    "stt_bench/core_share.py": "times the calls each node makes into its core",
}


def _private_uses(path: Path, foreign_ok: bool = False) -> list[str]:
    """The private names ``path`` reaches: a name or module starting with ``_`` of stt_proto,
    stt_runtime, stt_asyncio or stt_anyio, imported (``from stt_proto.x import _y``,
    ``import stt_proto._x``) or as an attribute (``stt_proto._x``); and, unless ``foreign_ok``,
    a private attribute of any object but ``self``/``cls`` (``node._require_endpoint()``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[str] = []

    def private(dotted: str) -> bool:
        parts = dotted.split(".")
        return parts[0] in LIBRARY and any(part.startswith("_") for part in parts[1:])

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if private(alias.name)]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found += [f"{node.module}.{alias.name}" for alias in node.names
                      if private(f"{node.module}.{alias.name}")]
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_")
              and not node.attr.startswith("__")):
            chain = [node.attr]
            value = node.value
            while isinstance(value, ast.Attribute):
                chain.append(value.attr)
                value = value.value
            if not isinstance(value, ast.Name):
                continue
            dotted = ".".join([value.id, *reversed(chain)])
            if private(dotted) or (not foreign_ok and value.id not in ("self", "cls")):
                found.append(dotted)
    return found


def test_private_uses_are_found(tmp_path: Path) -> None:
    """The scan below sees each form it forbids (else it would pass on anything)."""
    sample = tmp_path / "sample.py"
    sample.write_text("import stt_proto._native\nfrom stt_proto.endpoint import _x, Endpoint\n"
                      "from stt_runtime import _drain\nimport stt_proto\n"
                      "y = stt_proto._native.COMPILED\nz = stt_proto.COMPILED\n"
                      "from .common import _local\nnode._require_endpoint()\n"
                      "self._own = node.__class__\n", encoding="utf-8")
    expected = ["stt_proto._native", "stt_proto.endpoint._x", "stt_runtime._drain",
                "stt_proto._native", "node._require_endpoint"]
    assert sorted(_private_uses(sample)) == sorted(expected)
    assert sorted(_private_uses(sample, foreign_ok=True)) == sorted(expected[:-1])


def test_no_benchmark_reaches_a_private_name_of_the_library() -> None:
    """The benchmarks measure what a user can reach: the public API, nothing behind it."""
    found = {}
    for folder in ("stt_bench", "benchmarks"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            name = path.relative_to(ROOT).as_posix()
            if name in INSTRUMENTS:
                continue
            if names := _private_uses(path, foreign_ok=name in FOREIGN_PRIVATE):
                found[name] = names
    assert found == {}
