"""docs/ARCHITECTURE.md names every product module, and its tables stay readable.

The map ("Where is X") is only useful if it is complete: this walks the product
packages on disk (not what git or an installed distribution lists) and fails on a
module the document does not name by its path, e.g. ``ledger/verify.py``.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ARCHITECTURE = ROOT / "docs" / "ARCHITECTURE.md"
PACKAGES = ("agents", "broker", "dashboard", "forecasting", "ledger", "wattmesh")
MAX_CELL_WORDS = 30


def product_modules() -> list[str]:
    """Every ``.py`` file of the product packages, as a path from the repository root.

    Symbolic links to folders are not followed, so ``wattmesh/agents`` (a link to
    ``agents/`` once the packages install as ``wattmesh.agents``) does not count twice.
    """
    found: list[str] = []
    for package in PACKAGES:
        for folder, dirs, files in os.walk(ROOT / package, followlinks=False):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            found.extend(
                (Path(folder) / name).relative_to(ROOT).as_posix()
                for name in sorted(files)
                if name.endswith(".py")
            )
    return found


def named_in(text: str, module: str) -> bool:
    """Whether the text names the module by its path (a package's ``__init__.py`` by its folder)."""
    name = module
    if name.endswith("/__init__.py"):
        return f"`{name}`" in text or f"`{name.removesuffix('__init__.py')}`" in text
    return f"`{name}" in text


def table_cells(text: str) -> list[str]:
    cells: list[str] = []
    for line in text.splitlines():
        if line.startswith("|") and not re.fullmatch(r"[|\s:-]+", line):
            cells.extend(cell.strip() for cell in line.strip().strip("|").split("|"))
    return cells


def test_the_walk_finds_the_modules_the_issue_named() -> None:
    modules = product_modules()
    assert {"broker/topics.py", "broker/keys.py", "broker/errors.py", "ledger/verify.py"} <= set(
        modules
    )
    assert "wattmesh/cli/dispatch.py" in modules
    assert len(modules) > 100


def test_every_product_module_is_named_in_the_architecture_map() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    missing = [module for module in product_modules() if not named_in(text, module)]
    assert missing == [], f"docs/ARCHITECTURE.md does not name: {missing}"


def test_named_in_takes_a_path_and_not_a_bare_file_name() -> None:
    assert named_in("see `ledger/verify.py`", "ledger/verify.py")
    assert not named_in("see `verify.py`", "ledger/verify.py")
    assert named_in("`agents/metering/` real meters", "agents/metering/__init__.py")
    assert not named_in("`agents/metering/p1.py`", "agents/metering/__init__.py")


def test_no_table_cell_of_the_architecture_runs_long() -> None:
    text = ARCHITECTURE.read_text(encoding="utf-8")
    long_cells = [cell for cell in table_cells(text) if len(cell.split()) > MAX_CELL_WORDS]
    assert long_cells == []


def test_every_module_opens_with_one_line_that_says_what_it_is() -> None:
    """A module's docstring starts with one line, then a blank line or its end: the line
    a newcomer reads first (the detail follows, or lives in docs)."""
    unclear = []
    for module in product_modules():
        doc = ast.get_docstring(ast.parse((ROOT / module).read_text(encoding="utf-8")))
        lines = [] if doc is None else doc.splitlines()
        if not lines or not lines[0].strip() or (len(lines) > 1 and lines[1].strip()):
            unclear.append(module)
    assert unclear == []
