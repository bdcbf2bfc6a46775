"""scripts/rename_packages.py: the rewrite of the imports is exact and idempotent."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def rename() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "rename_packages", ROOT / "scripts" / "rename_packages.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


SOURCE = '''"""Docstring naming ledger.store stays prose."""

import agents
import agents.metering as metering
from broker.keys import load
from ledger import store
import wattmesh.cli
from wattmesh.report import x


def f(ledger):
    raise ValueError("x") from ledger
    log = logging.getLogger("agents.meter")  # comment on agents.meter stays
    path = "ledger.db"
    probe = "import agents.sequence, broker.keys\\nfrom ledger import m"
    return ledger.store.append, resources.files("agents.metering"), log, path, probe
'''

EXPECTED = '''"""Docstring naming ledger.store stays prose."""

from wattmesh import agents
import wattmesh.agents.metering as metering
from wattmesh.broker.keys import load
from wattmesh.ledger import store
import wattmesh.cli
from wattmesh.report import x


def f(ledger):
    raise ValueError("x") from ledger
    log = logging.getLogger("wattmesh.agents.meter")  # comment on agents.meter stays
    path = "ledger.db"
    probe = "import wattmesh.agents.sequence, wattmesh.broker.keys\\nfrom wattmesh.ledger import m"
    return ledger.store.append, resources.files("wattmesh.agents.metering"), log, path, probe
'''


def test_rewrites_imports_and_module_strings_only(rename: ModuleType) -> None:
    modules = rename.Modules.scan(ROOT)
    problems: list[str] = []
    assert rename.rewrite_python(SOURCE, modules, problems) == EXPECTED
    assert problems == []


def test_a_second_run_changes_nothing(rename: ModuleType) -> None:
    modules = rename.Modules.scan(ROOT)
    assert rename.rewrite_python(EXPECTED, modules, []) == EXPECTED
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    once = rename.rewrite_pyproject(pyproject, ["cli"])
    assert rename.rewrite_pyproject(once, ["cli"]) == once


def test_the_pyproject_rewrite_leaves_no_old_name(rename: ModuleType) -> None:
    # Fails when a pyproject edit moves a line the script's replacements expect.
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    once = rename.rewrite_pyproject(pyproject, ["cli"])
    assert 'include = ["wattmesh*"]' in once
    assert 'packages = ["wattmesh"]\n' in once and 'root_packages = ["wattmesh"]' in once
    linter = once.split("[tool.importlinter]")[1]
    names = ("agents", "broker", "forecasting", "ledger")
    quoted = [f'"{name}{end}' for name in names for end in ('"', ".")]
    assert [q for q in quoted if q in linter] == []


def test_an_import_that_would_bind_wattmesh_is_left_for_a_person(rename: ModuleType) -> None:
    problems: list[str] = []
    source = "import ledger.store\n"
    assert rename.rewrite_python(source, rename.Modules.scan(ROOT), problems) == source
    assert problems == ["line 1: `import ledger.store` binds the package name; rewrite by hand"]


def test_markdown_keeps_paths_and_renames_modules(rename: ModuleType) -> None:
    text = "`broker/subscriber.py` (`broker.subscriber.Subscriber`), `ledger.toml`\n"
    assert rename.rewrite_text(text, rename.Modules.scan(ROOT)) == (
        "`broker/subscriber.py` (`wattmesh.broker.subscriber.Subscriber`), `ledger.toml`\n"
    )
