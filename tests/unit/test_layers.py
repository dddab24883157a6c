"""The floor plan holds: every import points down (docs/architecture.md).

    everloop/                 entry points: CLI, dev stack, worker assembly, seed, sweeper
    api/  activities/         the HTTP API; the workflows' side effects (never each other)
    services/                 the domain layer
    capabilities/  workflows/ tools; deterministic workflow code (never each other)
    core/                     the ground: settings, db, schemas, errors, net, crypto, ...

A module may import its own package and any floor below its own, nothing above or beside it.
Workflow code imports no database layer at all (only temporalio, msgspec and core's pure modules),
so the sandbox never loads SQLAlchemy. Every import counts, also those inside functions and in
`workflow.unsafe.imports_passed_through()` blocks: the check reads the source, it does not run it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FLOORS: dict[str, int] = {
    "everloop": 0,
    "api": 1,
    "activities": 1,
    "services": 2,
    "capabilities": 3,
    "workflows": 3,
    "core": 4,
}
# What workflow modules may import from the project (deterministic, no I/O, no database layer).
WORKFLOW_MAY_IMPORT = ("core.schemas", "core.ids", "core.durability")
WORKFLOW_MAY_NOT_IMPORT = ("sqlalchemy", "asyncpg", "redis", "httpx", "litellm")


def imports_of(path: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                # `from core import file_store` imports the module core.file_store.
                yield node.lineno, f"{node.module}.{alias.name}"


def modules() -> list[Path]:
    return sorted(p for package in FLOORS for p in (ROOT / package).rglob("*.py"))


def problems(path: Path, package: str) -> list[str]:
    """What is wrong with the imports of `path`, a module of `package`."""
    floor = FLOORS[package]
    found = []
    for line, name in imports_of(path):
        target = name.split(".")[0]
        if package == "workflows" and (
            name.startswith(WORKFLOW_MAY_NOT_IMPORT)
            or (target in FLOORS and target != "workflows" and not name.startswith(WORKFLOW_MAY_IMPORT))
        ):
            found.append(f"{path.name}:{line} workflow code imports {name}")
        elif target in FLOORS and target != package and FLOORS[target] <= floor:
            beside = "beside" if FLOORS[target] == floor else "above"
            found.append(f"{path.name}:{line} {package}/ imports {name}, which is {beside} it")
    return found


def test_every_import_points_down() -> None:
    found = [problem for path in modules() for problem in problems(path, path.relative_to(ROOT).parts[0])]
    assert found == []


def test_the_check_sees_every_package() -> None:
    # A package missing from FLOORS would never be checked: every top-level package is in the plan.
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists() and p.name != "tests"}
    assert packages == set(FLOORS)


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        (
            "capabilities",
            "from api.app import create_app",
            "capabilities/ imports api.app.create_app, which is above it",
        ),
        ("services", "from activities import llm", "services/ imports activities.llm, which is above it"),
        (
            "capabilities",
            "import workflows.session",
            "capabilities/ imports workflows.session, which is beside it",
        ),
        ("api", "from activities.llm import x", "api/ imports activities.llm.x, which is beside it"),
        ("core", "from services import files", "core/ imports services.files, which is above it"),
        ("workflows", "from core.db.base import Base", "workflow code imports core.db.base.Base"),
        ("workflows", "import sqlalchemy", "workflow code imports sqlalchemy"),
    ],
)
def test_the_check_catches_a_wrong_import(tmp_path: Path, package: str, source: str, expected: str) -> None:
    module = tmp_path / "probe.py"
    module.write_text(f"def f() -> None:\n    {source}\n")  # inside a function counts too
    assert problems(module, package) == [f"probe.py:2 {expected}"]


def test_the_check_allows_what_points_down(tmp_path: Path) -> None:
    module = tmp_path / "probe.py"
    module.write_text("from core.db import Database\nfrom capabilities import registry\nimport msgspec\n")
    assert problems(module, "services") == []
