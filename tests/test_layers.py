"""The code's imports point one way: the layering ARCHITECTURE.md describes.

Read from the source with `ast`, so a new module is checked without listing
it: an import cycle anywhere in `router/` or `sla/`, or an import from a lower
layer into a higher one, fails here with the offending module and line.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower number = lower layer. A module may import its own package and any lower
# layer; packages on the same layer stay apart.
LAYERS: dict[str, int] = {
    "router.runtime": 0,  # settings, errors, asyncio helpers, per-replica metrics, serving
    "router.store": 1,  # Redis: keys, client, script runner, batcher, leases, notify
    "sla": 2,  # calendars, policies, clocks, timers, webhooks
    "router.routing": 3,  # config, rules, membership, the engine and its Lua library
    "router.security": 4,  # auth, access scopes, privacy, audit trail
    "router.wfm": 4,  # Erlang staffing, forecasts, live statistics, the state exporter
    "router.archive": 4,  # the history archive in PostgreSQL: schema, (next) archiver
    "router.api": 5,  # the HTTP shell
    "router.cli": 6,  # the command line (serves the app)
    "router": 7,  # router/__main__.py
}


def package_of(module: str) -> str:
    best = ""
    for pkg in LAYERS:
        if (module == pkg or module.startswith(pkg + ".")) and len(pkg) > len(best):
            best = pkg
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def sources() -> dict[str, Path]:
    return {
        module_name(p): p for top in ("router", "sla") for p in sorted((ROOT / top).rglob("*.py"))
    }


def project_imports(path: Path, known: set[str]) -> list[tuple[str, int]]:
    """Project modules `path` imports, with line numbers; a `from X import y`
    that names a submodule counts as importing it."""
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, int]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, node.lineno))
            found += [
                (f"{node.module}.{a.name}", node.lineno)
                for a in node.names
                if f"{node.module}.{a.name}" in known
            ]
    return [(m, line) for m, line in found if m in known]


def graph() -> dict[str, list[tuple[str, int]]]:
    mods = sources()
    known = set(mods)
    return {m: project_imports(p, known) for m, p in mods.items()}


def test_every_module_belongs_to_a_layer() -> None:
    unplaced = [m for m in sources() if not package_of(m)]
    assert not unplaced, f"modules outside every layer of LAYERS: {unplaced}"


def test_imports_point_down() -> None:
    upward = []
    for mod, imports in graph().items():
        here = package_of(mod)
        for target, line in imports:
            there = package_of(target)
            if there == here or target == here:
                continue
            if LAYERS[there] >= LAYERS[here]:
                upward.append(f"{mod}:{line} imports {target} ({here} -> {there})")
    assert not upward, "imports that do not point down:\n" + "\n".join(upward)


def test_no_module_imports_the_app() -> None:
    """The typed app keys live in router.api.appkeys; only the command line and the
    tests build the app."""
    offenders = [
        f"{mod}:{line}"
        for mod, imports in graph().items()
        for target, line in imports
        if target == "router.api.app" and not mod.startswith("router.cli")
    ]
    assert not offenders, f"modules importing router.api.app: {offenders}"


def find_cycle(edges: dict[str, list[tuple[str, int]]]) -> list[str] | None:
    """A cycle in the module graph (deferred imports inside functions count too)."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target, _ in edges.get(node, []):
            if target == node:
                continue
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycles() -> None:
    edges = graph()
    # a package's __init__ is imported with each of its modules: not a cycle by itself
    for mod in edges:
        edges[mod] = [(t, line) for t, line in edges[mod] if not mod.startswith(t + ".")]
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"a": [("b", 1)], "b": [("a", 1)]}, ["a", "b", "a"]),
        ({"a": [("b", 1)], "b": [("c", 1)], "c": []}, None),
    ],
)
def test_cycle_finder_finds_cycles(
    edges: dict[str, list[tuple[str, int]]], expected: list[str] | None
) -> None:
    assert find_cycle(edges) == expected
