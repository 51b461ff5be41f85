"""The import structure: the contracts in .importlinter hold, and no two of mailer's
packages import each other (ARCHITECTURE.md says who may import whom)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parent.parent


def lint_imports(*arguments: str) -> subprocess.CompletedProcess[str]:
    """`lint-imports` run on the repository, without a cache left behind."""
    script = Path(sys.executable).with_name("lint-imports")
    command = str(script) if script.exists() else shutil.which("lint-imports")
    assert command, "lint-imports is not installed (pip install -e '.[dev]')"
    return subprocess.run(
        [command, "--no-cache", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def package_cycles() -> dict[frozenset[str], list[str]]:
    """Each set of mailer's top-level packages and modules that import one another in a
    circle, with the imports that tie it."""
    graph = grimp.build_graph("mailer")
    tops = sorted({".".join(name.split(".")[:2]) for name in graph.modules if "." in name})
    imports: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for top in tops:
        for module in {top} | graph.find_descendants(top):
            for imported in graph.find_modules_directly_imported_by(module):
                target = ".".join(imported.split(".")[:2])
                if target in tops and target != top:
                    imports[top][target].append(f"{module} -> {imported}")
    cycles = {}
    for group in _strongly_connected(tops, {top: set(imports[top]) for top in tops}):
        if len(group) > 1:
            ties = [line for a in group for b in group for line in imports[a].get(b, [])]
            cycles[frozenset(group)] = sorted(ties)
    return cycles


def _strongly_connected(nodes: list[str], edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of a small directed graph."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in sorted(edges[node]):
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            groups.append(sorted(group))

    for node in nodes:
        if node not in index:
            visit(node)
    return groups


def test_the_import_contracts_hold() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_two_packages_import_each_other() -> None:
    cycles = package_cycles()
    report = "\n".join(
        f"{' <-> '.join(sorted(group))}:\n  " + "\n  ".join(ties) for group, ties in cycles.items()
    )
    assert not cycles, f"packages that import each other:\n{report}"
