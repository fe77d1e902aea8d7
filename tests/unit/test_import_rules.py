"""DESIGN.md's layering, checked on every import statement (lazy ones inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "finetuneflow"
QT = {"PySide6", "pyqtgraph", "shiboken6"}
SQL = {"sqlalchemy", "alembic"}
ML_STACK = {"torch", "transformers", "trl", "peft", "datasets", "bitsandbytes", "accelerate"}
LAYERS = ("core", "storage", "services", "trainer", "gui", "cli")

# Layer -> what it may not import (its own top-level modules or third-party packages).
FORBIDDEN: dict[str, set[str]] = {
    "core": {"storage", "services", "trainer", "gui", "cli"} | SQL | QT | ML_STACK,
    "storage": {"services", "trainer", "gui", "cli"} | QT | ML_STACK,
    # storage/ alone talks SQL: services call its repositories.
    "services": {"trainer", "gui", "cli"} | SQL | QT | ML_STACK,
    "trainer": {"storage", "services", "gui", "cli"} | SQL | QT,
    # The interfaces reach the data through services only.
    "gui": {"trainer", "cli", "storage"} | SQL | ML_STACK,
    "cli": {"trainer", "gui", "storage"} | SQL | QT | ML_STACK,  # gui, trainer: lazily, see below
}
# The command line dispatches to the GUI and the trainer; it never imports them at module level.
LAZY_ALLOWED = {("cli", "gui"), ("cli", "trainer")}


def layer_of(path: Path) -> str:
    relative = path.relative_to(PACKAGE)
    first = relative.parts[0].removesuffix(".py")
    return first if first in LAYERS else "root"


def imported_names(tree: ast.AST, package: tuple[str, ...] = ("finetuneflow",)
                   ) -> list[tuple[str, bool]]:
    """(top-level name, imported at module level?) for each import; finetuneflow.X → X.

    `package` is the importing module's package, to resolve relative imports (`from ..x`).
    """
    found: list[tuple[str, bool]] = []
    module_level = {id(node) for node in getattr(tree, "body", [])}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        elif isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package[:len(package) - (node.level - 1)]
            names = [".".join((*base, node.module)) if node.module else ".".join(base)]
            if not node.module and len(base) == 1:  # `from .. import x` at the top: each x
                names = [f"{base[0]}.{alias.name}" for alias in node.names]
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
        package = ("finetuneflow", *path.relative_to(PACKAGE).parts[:-1])
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for name, at_module_level in imported_names(tree, package):
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


def test_relative_imports_are_resolved() -> None:
    tree = ast.parse("from ...storage import tables\nfrom . import loader\n"
                     "from ... import gui\nfrom ..training import config\n")
    assert sorted(imported_names(tree, ("finetuneflow", "core", "ingest"))) == [
        ("core", True), ("core", True), ("gui", True), ("storage", True)]


def test_services_hold_no_queries() -> None:
    """Services open `context.transaction()` and call repositories; a raw session is storage's."""
    offenders = [str(path.relative_to(PACKAGE.parent))
                 for path in sorted((PACKAGE / "services").rglob("*.py"))
                 if ".session()" in path.read_text(encoding="utf-8")]
    assert offenders == []


@pytest.mark.parametrize("layer", ["core", "storage", "services", "gui", "cli"])
def test_ml_stack_is_forbidden_outside_the_trainer(layer: str) -> None:
    assert ML_STACK <= FORBIDDEN[layer]
