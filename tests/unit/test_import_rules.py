"""DESIGN.md's layering, checked on every import statement (lazy ones inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "finetuneflow"
QT = {"PySide6", "pyqtgraph", "shiboken6"}
ML_STACK = {"torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate"}
LAYERS = ("core", "storage", "services", "trainer", "gui", "cli")

# Layer -> what it may not import (its own top-level modules or third-party packages).
FORBIDDEN: dict[str, set[str]] = {
    "core": {"storage", "services", "trainer", "gui", "cli", "sqlalchemy", "alembic"}
    | QT | ML_STACK,
    "storage": {"services", "trainer", "gui", "cli"} | QT | ML_STACK,
    "services": {"trainer", "gui", "cli"} | QT | ML_STACK,
    "trainer": {"storage", "services", "gui", "cli", "sqlalchemy", "alembic"} | QT,
    "gui": {"trainer", "cli"} | ML_STACK,
    "cli": {"trainer", "gui"} | QT | ML_STACK,  # `gui` and `trainer` are started lazily: see below
}
# The command line dispatches to the GUI and the trainer; it never imports them at module level.
LAZY_ALLOWED = {("cli", "gui"), ("cli", "trainer")}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    first = relative.parts[0].removesuffix(".py")
    return first if first in LAYERS else "root"


def imported_names(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level name, imported at module level?) for each import; finetuneflow.X → X."""
    found: list[tuple[str, bool]] = []
    module_level = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            top = parts[1] if parts[0] == "finetuneflow" and len(parts) > 1 else parts[0]
            found.append((top, id(node) in module_level))
    return found


def violations() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        layer = layer_of(path)
        forbidden = FORBIDDEN.get(layer, set())
        for name, at_module_level in imported_names(ast.parse(path.read_text(encoding="utf-8"))):
            if name not in forbidden:
                continue
            if (layer, name) in LAZY_ALLOWED and not at_module_level:
                continue
            problems.append(f"{path.relative_to(PACKAGE.parent)} ({layer}) imports {name}")
    return problems


def test_layers_follow_the_design() -> None:
    assert violations() == []


def test_the_checker_catches_a_violation() -> None:
    tree = ast.parse("def f():\n    import torch\nfrom finetuneflow.gui import app\n")
    assert sorted(imported_names(tree)) == [("gui", True), ("torch", False)]


@pytest.mark.parametrize("layer", ["core", "storage", "services", "gui", "cli"])
def test_ml_stack_is_forbidden_outside_the_trainer(layer: str) -> None:
    assert ML_STACK <= FORBIDDEN[layer]
