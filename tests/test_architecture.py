"""The import graph: layers point down, modules form no cycle (read with ``ast``, nothing run).

Layers, top to bottom: ops > consumers > producers > events | adapters > supplybus | schemas.
A module may import its own layer's folder and any lower layer; ``events`` and ``adapters``
are independent of each other. Every import counts, also one inside a function: a lazy import
hides a dependency, it does not remove it. Folders map to import names through the
``package-dir`` table of pyproject.toml (``supplybus.events.codec`` is ``events/codec.py``).
"""

from __future__ import annotations

import ast
import tomllib
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RANKS = {"ops": 4, "consumers": 3, "producers": 2, "events": 1, "adapters": 1, "schemas": 0}
LAYERS = "ops > consumers > producers > events | adapters > supplybus | schemas"


def package_dir(root: Path) -> dict[str, str]:
    """pyproject.toml's ``[tool.setuptools] package-dir``: import name -> folder."""
    config = tomllib.loads((root / "pyproject.toml").read_text())
    return dict(config["tool"]["setuptools"]["package-dir"])


def find_modules(root: Path, packages: Mapping[str, str]) -> dict[str, Path]:
    """Every module of the package (``a.b`` for ``a/b.py``, ``a`` for ``a/__init__.py``)."""
    found: dict[str, Path] = {}
    for package, folder in sorted(packages.items(), key=lambda kv: kv[0].count(".")):
        for path in sorted((root / folder).rglob("*.py")):
            parts = path.relative_to(root / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


def imports_of(name: str, path: Path, known: Mapping[str, Path]) -> list[tuple[int, str]]:
    """(line, module) for each supplybus module that ``name`` imports, at any depth."""
    is_package = path.name == "__init__.py"
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".")[: len(name.split(".")) - node.level + is_package]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                found.append((node.lineno, full if full in known else base))
    ours = {(line, target) for line, target in found if target.split(".")[0] == "supplybus"}
    return sorted(ours)


def layer(module: str) -> str:
    part = module.split(".")[1] if "." in module else ""
    return part if part in RANKS else "supplybus"


def rank(module: str) -> int:
    return RANKS.get(layer(module), 0)


def check(root: Path) -> list[str]:
    """One line per violation: upward or sideways imports, unknown modules, import cycles."""
    modules = find_modules(root, package_dir(root))
    graph: dict[str, set[str]] = {name: set() for name in modules}
    problems: list[str] = []
    for name, path in modules.items():
        where = path.relative_to(root)
        for line, target in imports_of(name, path, modules):
            if target not in modules:
                problems.append(f"{where}:{line}: {name} imports {target}, which does not exist")
                continue
            graph[name].add(target)
            src, dst = layer(name), layer(target)
            if src != dst and rank(target) >= rank(name) and rank(target) > 0:
                kind = "upward" if rank(target) > rank(name) else "sideways"
                problems.append(
                    f"{where}:{line}: {name} imports {target} ({kind}: {src} may not import {dst})"
                )
    problems.extend(f"import cycle: {' -> '.join(c)}" for c in cycles(graph))
    return problems


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """One shortest cycle per strongly connected component of more than one module."""
    return sorted(_shortest_cycle(graph, c) for c in _components(graph))


def _shortest_cycle(graph: Mapping[str, set[str]], component: set[str]) -> list[str]:
    start = min(component)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for dep in sorted(graph[node] & component):
                if dep == start:
                    return [*paths[node], start]
                if dep not in paths:
                    paths[dep] = [*paths[node], dep]
                    following.append(dep)
        frontier = following
    raise AssertionError(f"no cycle through {start}")  # a component always has one


def _components(graph: Mapping[str, set[str]]) -> list[set[str]]:
    """Tarjan's strongly connected components, keeping those of two modules or more."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    result: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for dep in graph[node]:
            if dep not in index:
                visit(dep)
                low[node] = min(low[node], low[dep])
            elif dep in stack:
                low[node] = min(low[node], index[dep])
        if low[node] == index[node]:
            component = set()
            while True:
                top = stack.pop()
                component.add(top)
                if top == node:
                    break
            if len(component) > 1:
                result.append(component)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def test_imports_follow_the_layers_without_cycles() -> None:
    problems = check(ROOT)
    head = f"{len(problems)} import-graph violation(s) (layers {LAYERS}):"
    assert not problems, "\n".join([head, *problems])


def test_every_folder_of_the_package_is_declared() -> None:
    """setuptools installs only the folders listed in ``packages`` (and warns about the rest)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = set(config["tool"]["setuptools"]["packages"])
    found = set()
    for package, folder in package_dir(ROOT).items():
        for path in [ROOT / folder, *(ROOT / folder).rglob("*")]:
            parts = path.relative_to(ROOT / folder).parts
            if path.is_dir() and all(p.isidentifier() and p != "__pycache__" for p in parts):
                found.add(".".join((package, *parts)))
    assert found == declared, (
        f"pyproject.toml packages: add {sorted(found - declared)}, "
        f"remove {sorted(declared - found)}"
    )


def test_the_check_finds_upward_imports_cycles_and_unknown_modules(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.setuptools]\npackage-dir = { "supplybus" = "supplybus", '
        '"supplybus.events" = "events", "supplybus.ops" = "ops", "supplybus.adapters" = "ad" }\n'
    )
    files = {
        "supplybus/__init__.py": "",
        "supplybus/config.py": "from supplybus.errors import E\n",
        "supplybus/errors.py": "",
        "events/__init__.py": "",
        "events/a.py": "def f():\n    from supplybus.ops import tool\n",
        "events/b.py": "from . import c\n",
        "events/c.py": "import supplybus.events.b\nfrom supplybus.adapters.k import x\n",
        "events/d.py": "from supplybus.ops.gone import y\n",
        "ops/__init__.py": "",
        "ops/tool.py": "from supplybus.events import a\nfrom ..config import Settings\n",
        "ad/__init__.py": "",
        "ad/k.py": "",
    }
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    problems = check(tmp_path)
    assert [p.split(" (")[0] for p in problems] == [
        "events/a.py:2: supplybus.events.a imports supplybus.ops.tool",
        "events/c.py:2: supplybus.events.c imports supplybus.adapters.k",
        "events/d.py:1: supplybus.events.d imports supplybus.ops.gone, which does not exist",
        "import cycle: supplybus.events.a -> supplybus.ops.tool -> supplybus.events.a",
        "import cycle: supplybus.events.b -> supplybus.events.c -> supplybus.events.b",
    ]
    assert "upward" in problems[0] and "sideways" in problems[1]
