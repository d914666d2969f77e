"""The toolchain boundary, read from the source (ast; nothing is imported).

The runtime (``edgefusion/``) never imports the toolchain (``export/``, ``calibration/``):
only the CLI's toolchain module reaches it, lazily, from inside its command functions.
The torch backend is named by string in the backend registry, which is the other lazy
seam and involves no import statement. Between the three folders the import graph has
no cycle.
"""

from __future__ import annotations

import ast
import itertools
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("edgefusion", "export", "calibration")
TOOLCHAIN = ("export", "calibration")
SEAM = Path("edgefusion/cli/toolchain.py")  # the one runtime module allowed to reach the toolchain


def _modules(folder: str) -> list[Path]:
    return sorted(p for p in (ROOT / folder).rglob("*.py") if ".venv" not in p.parts)


def _imports(path: Path) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, at module level?) for each absolute import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    top = {id(n) for n in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno, id(node) in top
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, node.lineno, id(node) in top


def _root(module: str) -> str:
    return module.split(".", 1)[0]


def _graph() -> dict[str, dict[str, list[str]]]:
    """folder -> imported folder -> ["path:line", ...] (edges between the three folders only)."""
    graph: dict[str, dict[str, list[str]]] = {f: {} for f in FOLDERS}
    for folder in FOLDERS:
        for path in _modules(folder):
            if path.relative_to(ROOT) == SEAM:
                continue  # the CLI sits above both toolchain folders and imports them only when a command runs
            for module, line, _ in _imports(path):
                target = _root(module)
                if target in FOLDERS and target != folder:
                    graph[folder].setdefault(target, []).append(f"{path.relative_to(ROOT)}:{line}")
    return graph


def _cycle(graph: dict[str, dict[str, list[str]]]) -> list[str] | None:
    """One cycle of folders (first node repeated at the end), or None."""
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> list[str] | None:
        if node in path:
            return [*path[path.index(node):], node]
        if node in done:
            return None
        for nxt in sorted(graph[node]):
            found = visit(nxt, [*path, node])
            if found:
                return found
        done.add(node)
        return None

    for start in sorted(graph):
        found = visit(start, [])
        if found:
            return found
    return None


def test_the_runtime_imports_the_toolchain_only_from_the_cli_seam():
    offenders = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in _modules("edgefusion")
        for module, line, _ in _imports(path)
        if _root(module) in TOOLCHAIN and path.relative_to(ROOT) != SEAM
    ]
    assert not offenders, ("edgefusion/ must not import export/ or calibration/ (only "
                           f"{SEAM} may, lazily):\n" + "\n".join(offenders))


def test_the_cli_seam_imports_the_toolchain_lazily():
    eager = [f"{SEAM}:{line} imports {module} at module level"
             for module, line, at_top in _imports(ROOT / SEAM) if at_top and _root(module) in TOOLCHAIN]
    assert not eager, "importing the CLI must not import the toolchain (torch):\n" + "\n".join(eager)


def test_no_import_cycle_between_runtime_export_and_calibration():
    graph = _graph()
    cycle = _cycle(graph)
    if cycle:
        edges = [f"{a} -> {b}: " + ", ".join(graph[a][b][:3]) + (" …" if len(graph[a][b]) > 3 else "")
                 for a, b in itertools.pairwise(cycle)]
        pytest.fail("import cycle between folders " + " -> ".join(cycle) + ":\n" + "\n".join(edges))
    assert "export" not in graph["calibration"], f"calibration/ imports export/: {graph['calibration']['export']}"


def test_the_cycle_finder_finds_a_cycle():
    # The acyclicity test above is only as good as this helper.
    assert _cycle({"a": {"b": []}, "b": {"c": []}, "c": {"a": []}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b": []}, "b": {}, "c": {"a": []}}) is None


def test_the_torch_backend_without_torch_says_what_to_install():
    block = ("import importlib.abc, sys\n"
             "class NoTorch(importlib.abc.MetaPathFinder):\n"
             "    def find_spec(self, name, path=None, target=None):\n"
             "        if name == 'torch' or name.startswith('torch.'):\n"
             "            raise ImportError('torch is blocked in this test', name='torch')\n"
             "sys.meta_path.insert(0, NoTorch())\n")
    code = ("from edgefusion import load_package, open_backend\n"
            "from edgefusion.errors import MissingDependencyError\n"
            "try:\n"
            "    open_backend('torch', load_package('smart_home'))\n"
            "except MissingDependencyError as exc:\n"
            "    print(exc)\n")
    p = subprocess.run([sys.executable, "-c", block + code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert "the 'torch' backend needs the Python module 'torch'" in p.stdout
    assert "pip install 'edgefusion[train]'" in p.stdout
