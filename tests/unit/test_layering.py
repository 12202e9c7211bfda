"""The top-level packages import each other in one direction only, and the API's modules load
without Bytewax.

Every import in the source counts (also those inside functions and `if TYPE_CHECKING:`), so a
lazy import cannot hide a cycle. The allowed edges are the layering:

    schemas   shapes and errors shared by everyone: imports none of ours
    ports     what the flow and the API plug into (store, bus, metrics, settings, status,
              keys, analyst SQL, watch requests): schemas only
    flows     the dataflow and its pure domain modules: ports, schemas
    api       the FastAPI app: the flow's pure modules (math, state, valuation; never the
              Bytewax ones, see the last test), ports, schemas
    devnet    anvil, deployment, simulators: the flow's integer math, schemas
    defimon   the composition root (command line, runtime): everything
    bench     benchmarks: like the composition root
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections import defaultdict
from itertools import pairwise
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

ALLOWED: dict[str, set[str]] = {
    "schemas": set(),
    "ports": {"schemas"},
    "protocols": {"ports", "schemas"},
    "flows": {"protocols", "ports", "schemas"},
    "api": {"flows", "protocols", "ports", "schemas"},
    "devnet": {"protocols", "schemas"},
    "defimon": {"api", "devnet", "flows", "protocols", "ports", "schemas"},
    "bench": {"api", "defimon", "devnet", "flows", "protocols", "ports", "schemas"},
}


def packages() -> set[str]:
    return {
        p.name
        for p in ROOT.iterdir()
        if (p / "__init__.py").exists() and p.name != "tests" and p.name != "node_modules"
    }


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module]
    return []  # relative imports stay inside their package


def package_graph() -> dict[tuple[str, str], list[str]]:
    """(importer, imported) package pairs, each with the module imports that make it."""
    ours = packages()
    edges: dict[tuple[str, str], list[str]] = defaultdict(list)
    for package in sorted(ours):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                for name in imported(node):
                    top = name.split(".")[0]
                    if top in ours and top != package:
                        edges[(package, top)].append(f"{module} imports {name}")
    return edges


def find_cycle(edges: set[tuple[str, str]]) -> list[str] | None:
    following: dict[str, list[str]] = defaultdict(list)
    for a, b in sorted(edges):
        following[a].append(b)
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in following[node]:
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)) is not None:
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(following):
        if start not in state and (cycle := visit(start)) is not None:
            return cycle
    return None


def test_every_top_level_package_has_a_place_in_the_layering() -> None:
    assert packages() == set(ALLOWED), "add the new package to ALLOWED (and to this docstring)"


def test_the_packages_import_each_other_without_a_cycle() -> None:
    edges = package_graph()
    cycle = find_cycle(set(edges))
    if cycle is not None:
        why = [f"{a} -> {b}: {edges[(a, b)][0]}" for a, b in pairwise(cycle)]
        raise AssertionError("import cycle: " + "; ".join(why))
    # The layering says this too; the cycle search is what would name the loop.
    assert find_cycle({(a, b) for a, bs in ALLOWED.items() for b in bs}) is None


def test_each_import_between_packages_is_an_allowed_edge() -> None:
    edges = package_graph()
    wrong = {
        f"{a} -> {b}": found[:3] for (a, b), found in edges.items() if b not in ALLOWED.get(a, ())
    }
    assert wrong == {}
    # The graph is read from the source: the composition root's edges must be there.
    assert {("defimon", "api"), ("defimon", "flows"), ("flows", "ports")} <= set(edges)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert find_cycle({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == ["a", "b", "c", "a"]
    assert find_cycle({("a", "b"), ("a", "c"), ("b", "c")}) is None


def test_what_defimon_api_imports_loads_no_bytewax() -> None:
    """The modules `defimon api` runs on (the integration test runs the process itself)."""
    code = (
        "import sys\n"
        "import api.app, defimon.chains, defimon.cli, defimon.instance, defimon.nats_bus\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'bytewax'"
        " or m in ('flows.dataflow', 'flows.source', 'flows.sinks', 'defimon.runtime')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
