"""The import graph: data flows down, so imports point down, and nothing goes round in a cycle.

docs/architecture.md draws the same layers; a module that starts importing one above it (the
client from the engine, the CLI from the core) fails here first.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "twilio_numbers_async"

#: Lowest first. A module may import from its own layer or below, never above.
LAYERS: list[set[str]] = [
    {"_version", "errors", "_country_codes", "_nanp"},
    {"_checks"},
    {"models", "retry", "_adaptive"},
    {"ratelimit", "_serde"},
    {"_transport", "_settings", "_retrying"},
    {"_gateway"},
    {"_reads"},
    {"_candidates"},
    {"_purchase"},
    {"bulk"},
    {"client"},
    {"redis_limiter"},
    {"sandbox"},
    {"pytest_plugin"},
    {"cli", "__main__"},
]
LAYER = {name: depth for depth, names in enumerate(LAYERS) for name in names}


def unit(path: Path) -> str:
    """The layer's name of a file: a top-level module, or the package it is in."""
    relative = path.relative_to(PACKAGE)
    return relative.parts[0].removesuffix(".py")


def imported_units(path: Path) -> set[str]:
    """The package's units that ``path`` imports at run time (TYPE_CHECKING blocks aside)."""
    tree = ast.parse(path.read_text(), str(path))
    here = path.relative_to(PACKAGE).parts
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
            node.body = []  # type hints may look anywhere; nothing runs there
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(here[: len(here) - node.level])
                parts = [*base, *(node.module.split(".") if node.module else [])]
                names = [alias.name for alias in node.names] if not node.module else [""]
                for name in names:
                    target = [*parts, name] if name else parts
                    if target:
                        found.add(target[0].removesuffix(".py"))
            elif node.module and node.module.startswith("twilio_numbers_async."):
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("twilio_numbers_async."):
                    found.add(alias.name.split(".")[1])
    return found - {unit(path)}


FILES = sorted(p for p in PACKAGE.rglob("*.py") if unit(p) != "__init__")


def test_every_module_has_a_layer() -> None:
    assert {unit(path) for path in FILES} - {"__init__"} <= set(LAYER)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path: Path) -> None:
    mine = LAYER[unit(path)]
    upward = sorted(u for u in imported_units(path) if LAYER.get(u, -1) > mine)
    assert upward == [], f"{unit(path)} (layer {mine}) imports from above: {upward}"


def test_the_core_never_imports_its_sandbox_or_its_cli() -> None:
    core = [p for p in FILES if LAYER[unit(p)] <= LAYER["client"]]
    for path in core:
        assert not imported_units(path) & {"sandbox", "cli", "pytest_plugin"}, path


def test_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for path in FILES:
        graph.setdefault(unit(path), set()).update(imported_units(path) & set(LAYER))
    done: set[str] = set()

    def visit(node: str, trail: list[str]) -> None:
        assert node not in trail, f"an import cycle: {' -> '.join([*trail, node])}"
        if node in done:
            return
        for target in graph.get(node, ()):
            visit(target, [*trail, node])
        done.add(node)

    for node in graph:
        visit(node, [])
