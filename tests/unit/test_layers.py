"""The structure, measured from the code's own imports: every import points down a floor,
no module imports its way back to itself, and no product module grows past what one
reader holds in mind. An import that runs upward or closes a circle is how a change in
one place starts breaking another.

Floors, lowest first (README, "Architecture"):

    coupons/ store/ schedules/   the ground: the pure domain, the tables, the beat table
    config/                      settings, read from the environment
    channels/ platforms/         delivery adapters and shop adapters, independent of each other
    services/                    the use cases, the composition root, the ports
    tasks/                       the Celery app, the doorbell, thin tasks
    web/                         the HTTP service
    workers/                     the command line and the demo: they start processes

`bench/` measures from outside and `tests/` are not product code.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOOR = {
    "coupons": 0, "store": 0, "schedules": 0,
    "config": 1,
    "channels": 2, "platforms": 2,
    "services": 3,
    "tasks": 4,
    "web": 5,
    "workers": 6,
}
MAX_LINES = 500
TASK_MODULES = {"tasks.intake", "tasks.plan", "tasks.relay", "tasks.send", "tasks.campaigns", "tasks.expiry",
                "tasks.sync"}


def _product_files() -> dict[str, Path]:
    """Module name → file, for every product module (migrations aside: Alembic's)."""
    modules = {}
    for package in FLOOR:
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            modules[name] = path
    return modules


MODULES = _product_files()


def _resolve(name: str) -> str | None:
    """The product module `name` refers to (a module, else its package), or None."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _imports(module: str) -> set[str]:
    """The product modules `module` imports, wherever in the file (functions included)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            # `from pkg import name`: the module pkg.name when there is one, else pkg itself
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names]
        else:
            continue
        found |= {target for target in map(_resolve, targets) if target is not None and target != module}
    return found


GRAPH = {module: _imports(module) for module in MODULES}


def _floor(module: str) -> int:
    return FLOOR[module.split(".")[0]]


def test_the_floors_cover_every_product_package():
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests", "bench"}
    assert packages == set(FLOOR)


SIDEWAYS = {("store", "coupons")}
"""Imports between packages of one floor: store/ reads and writes the domain's values.
The domain and the beat table stand on nothing of ours; channels/ and platforms/ never
see each other."""


def test_no_import_runs_up_a_floor_or_sideways():
    wrong = sorted(f"{module} imports {target}" for module, targets in GRAPH.items() for target in targets
                   if (package := module.split(".")[0]) != (other := target.split(".")[0])
                   and (_floor(target) > _floor(module)
                        or _floor(target) == _floor(module) and (package, other) not in SIDEWAYS))
    assert wrong == []


def test_settings_stand_on_the_domain_alone():
    assert {target.split(".")[0] for module, targets in GRAPH.items() if module.startswith("config")
            for target in targets} <= {"config", "coupons"}


def test_no_task_imports_another_task():
    # Tasks ring each other by name (tasks/doorbell.py), so each can change alone
    wrong = sorted(f"{module} imports {target}" for module in TASK_MODULES for target in GRAPH[module]
                   if target in TASK_MODULES)
    assert wrong == []


def _cycles() -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(GRAPH[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for module in sorted(GRAPH):
        if module not in index:
            visit(module)
    return found


def test_no_module_imports_its_way_back_to_itself():
    # A package's __init__ that re-exports its modules is not a circle with them
    circles = [c for c in _cycles() if not all(m == c[0] or m.startswith(c[0] + ".") for m in c[1:])]
    assert circles == []


@pytest.mark.parametrize("path", sorted(str(p.relative_to(ROOT)) for p in MODULES.values()))
def test_no_product_module_is_longer_than_one_reader_holds(path):
    lines = len((ROOT / path).read_text().splitlines())
    assert lines <= MAX_LINES, f"{path}: {lines} lines"


def test_the_check_itself_sees_an_upward_import_and_a_circle(tmp_path, monkeypatch):
    """The measurement must be able to fail: a planted upward import and circle are found."""
    fake = {"coupons.a": tmp_path / "a.py", "coupons.b": tmp_path / "b.py", "services.c": tmp_path / "c.py"}
    fake["coupons.a"].write_text("from coupons import b\nimport services.c\n")
    fake["coupons.b"].write_text("def f():\n    from .a import x\n")
    fake["services.c"].write_text("")
    monkeypatch.setattr(sys.modules[__name__], "MODULES", fake)
    graph = {module: _imports(module) for module in fake}
    assert graph == {"coupons.a": {"coupons.b", "services.c"}, "coupons.b": {"coupons.a"}, "services.c": set()}
    monkeypatch.setattr(sys.modules[__name__], "GRAPH", graph)
    assert _cycles() == [["coupons.a", "coupons.b"]]
