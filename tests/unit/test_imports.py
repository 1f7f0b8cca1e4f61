"""The import structure: every module imports on its own, no import cycle, no import of the
simulators from the daemon's packages, the daemon's subpackages in layers (a lower one
never imports a higher one), no source file above 600 lines.

Modules are found on disk with pkgutil, so new ones are covered without editing this file.
The import graph is read from the source with ``ast``: every ``import`` and ``from ...
import``, including those inside functions and under ``if TYPE_CHECKING:``, since an
import a type checker follows is as much a dependency for the reader as one Python runs.
An import counts for the module it names: ``from a.b import c`` for ``a.b.c`` when that
is a module, else for ``a.b`` (a package's ``__init__``).
"""

from __future__ import annotations

import ast
import itertools
import pkgutil
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("smppd", "control", "throttling", "correlation", "vault", "simulators")
# The daemon's own packages: the simulators are a test and demo tool they never import.
DAEMON_PACKAGES = ("smppd", "control", "correlation")
MAX_LINES = 600



def discover() -> list[str]:
    """Dotted names of every package and module under the top-level packages, without
    importing any of them (walk_packages would import packages in this process)."""
    names: list[str] = []

    def walk(path: Path, prefix: str) -> None:
        for info in pkgutil.iter_modules([str(path)]):
            name = f"{prefix}.{info.name}"
            names.append(name)
            if info.ispkg:
                walk(path / info.name, name)

    for package in PACKAGES:
        if (ROOT / package / "__init__.py").exists():
            names.append(package)
            walk(ROOT / package, package)
    return sorted(names)


MODULES = discover()


def source_of(module: str) -> Path:
    path = ROOT.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


# --------------------------------------------------------------------------- the graph


@dataclass(frozen=True)
class Edge:
    target: str  # a project module, or the dotted name as written when it is not one
    line: int


def _project_module(name: str, modules: set[str]) -> str | None:
    """The longest prefix of ``name`` that is a project module (``a.b.C`` -> ``a.b``)."""
    parts = name.split(".")
    while parts:
        candidate = ".".join(parts)
        if candidate in modules:
            return candidate
        parts.pop()
    return None


def imports_of(module: str, modules: set[str]) -> list[Edge]:
    """Every import statement of ``module``'s file, resolved to the modules it names."""
    path = source_of(module)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    return imports_in(path.read_text(encoding="utf-8"), package, modules)


def imports_in(source: str, package: str, modules: set[str]) -> list[Edge]:
    """Every import statement of ``source``, anywhere in it; relative ones resolved from
    ``package`` (the module's own package, or itself for an ``__init__``)."""
    tree = ast.parse(source)
    edges: list[Edge] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                edges.append(Edge(_project_module(alias.name, modules) or alias.name,
                                  node.lineno))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # `from a import b`: b is the submodule a.b when there is one, else a name in a
                name = f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base
                edges.append(Edge(_project_module(name, modules) or name, node.lineno))
    return edges


def import_graph() -> dict[str, dict[str, int]]:
    """{module: {project module it imports: line of the first such import}}."""
    modules = set(MODULES)
    graph: dict[str, dict[str, int]] = {}
    for module in MODULES:
        targets: dict[str, int] = {}
        for edge in imports_of(module, modules):
            if edge.target in modules and edge.target != module:
                targets[edge.target] = min(targets.get(edge.target, edge.line), edge.line)
        graph[module] = targets
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[frozenset[str]]:
    """Tarjan's algorithm: the components of more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[frozenset[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph[node]:
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(frozenset(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def describe(component: frozenset[str], graph: dict[str, dict[str, int]]) -> str:
    """One cycle through the component, each step with the file and line of its import."""
    start = min(component)
    # Shortest way back to start (BFS inside the component).
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph[node]):
            if succ in component and succ not in previous:
                previous[succ] = node
                queue.append(succ)
    path = [start]
    while path[-1] != start or len(path) == 1:
        path.append(previous[path[-1]])
    path.reverse()
    def step(a: str, b: str) -> str:
        return f"  {a} -> {b}  ({source_of(a).relative_to(ROOT)}:{graph[a][b]})"

    steps = [step(a, b) for a, b in itertools.pairwise(path)]
    others = [step(a, b) for a in sorted(component) for b in sorted(graph[a])
              if b in component and (a, b) not in itertools.pairwise(path)]
    text = f"cycle among {sorted(component)}:\n" + "\n".join(steps)
    return text + ("\n other imports inside it:\n" + "\n".join(others) if others else "")


GRAPH = import_graph()
CYCLES = strongly_connected(GRAPH)


# --------------------------------------------------------------------------- tests


def test_discovery_finds_the_protocol_layer() -> None:
    assert {"smppd", "smppd.protocol.pdu", "smppd.link.connection"} <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_module_imports_on_its_own(module: str) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", f"import {module}"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_graph_sees_every_kind_of_import() -> None:
    """Function-level and TYPE_CHECKING imports count, relative ones resolve."""
    source = (
        "from typing import TYPE_CHECKING\n"
        "import smppd.protocol.pdu\n"
        "from . import connection\n"
        "from ..protocol.constants import Status\n"
        "from ...control import app\n"
        "if TYPE_CHECKING:\n"
        "    from smppd.link.bind import BindWorker\n"
        "def later():\n"
        "    import simulators.server\n"
    )
    edges = imports_in(source, "smppd.link", set(MODULES))
    assert {e.target for e in edges} == {
        "typing", "smppd.protocol.pdu", "smppd.link.connection", "smppd.protocol.constants",
        "control.app", "smppd.link.bind", "simulators.server"}
    assert [e.line for e in edges if e.target == "simulators.server"] == [9]


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = {"a": {"b": 3}, "b": {"c": 7}, "c": {"a": 1, "d": 2}, "d": {}}
    assert strongly_connected(graph) == [frozenset({"a", "b", "c"})]


def test_no_import_cycle() -> None:
    assert not CYCLES, "\n".join(describe(c, GRAPH) for c in CYCLES)


def test_daemon_packages_do_not_import_the_simulators() -> None:
    modules = set(MODULES)
    found = [
        f"{source_of(m).relative_to(ROOT)}:{edge.line} imports {edge.target}"
        for m in MODULES if m.split(".")[0] in DAEMON_PACKAGES
        for edge in imports_of(m, modules) if edge.target.split(".")[0] == "simulators"
    ]
    assert not found, "\n".join(found)


# smppd's subpackages, lowest first: each may import those before it, never one after it.
# protocol: pure SMPP; link: a bind to an SMSC; intake: messages in and receipts back;
# cluster and webhooks: to the platform and to HTTP callbacks; runtime: wiring, lifecycle,
# CLI. smppd.config and the top-level modules (seams, metrics) are below all of them but
# protocol.
LAYERS = ("protocol", "config", "link", "intake", "cluster", "webhooks", "runtime")


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    if parts[0] != "smppd" or len(parts) < 2:
        return None
    if parts[1] in LAYERS:
        return LAYERS.index(parts[1])
    return None  # a top-level module of smppd (seams, metrics, smppctl): not layered


def test_the_layers_name_every_subpackage() -> None:
    subpackages = {m.split(".")[1] for m in MODULES
                   if m.startswith("smppd.") and source_of(".".join(m.split(".")[:2])).name
                   == "__init__.py"}
    assert subpackages == set(LAYERS)


def test_smppd_subpackages_import_only_lower_layers() -> None:
    # cluster and webhooks are side by side: neither imports the other.
    upward = []
    for module in MODULES:
        own = layer_of(module)
        if own is None:
            continue
        for target, line in GRAPH[module].items():
            other = layer_of(target)
            if other is not None and other != own and (
                    other > own or {LAYERS[own], LAYERS[other]} == {"cluster", "webhooks"}):
                upward.append(f"{source_of(module).relative_to(ROOT)}:{line} imports {target}")
    assert not upward, "\n".join(upward)


def _line_counts() -> dict[str, int]:
    counts = {}
    for module in MODULES:
        path = source_of(module)
        with path.open(encoding="utf-8") as fh:
            counts[str(path.relative_to(ROOT))] = sum(1 for _ in fh)
    return counts


LINES = _line_counts()


def test_no_source_file_above_600_lines() -> None:
    long = {f: n for f, n in LINES.items() if n > MAX_LINES}
    assert not long, f"above {MAX_LINES} lines: {long}"

