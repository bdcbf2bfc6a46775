"""The edge agent's import closure stays light, and the CLI loads subcommands lazily."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import agents

HEAVY = ("numpy", "pandas", "prophet", "sqlalchemy", "sqlmodel", "pvlib", "amqtt", "cmdstanpy")
ROOT = Path(__file__).resolve().parents[1]


def _loaded_after(code: str) -> set[str]:
    probe = code + "\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules if m.split(".")[0] in HEAVY}


def test_every_agents_module_imports_without_heavy_dependencies() -> None:
    names = [m.name for m in pkgutil.walk_packages(agents.__path__, "agents.")]
    assert "agents.agent" in names and "agents.meter" in names
    assert {"agents.metering.p1", "agents.metering.modbus", "agents.metering.spec"} <= set(names)
    loaded = _loaded_after("\n".join(f"import {name}" for name in names))
    assert set(names) <= loaded
    assert _heavy(loaded) == set()


def test_agent_cli_path_imports_without_heavy_dependencies() -> None:
    loaded = _loaded_after(
        "import wattmesh.cli, wattmesh.agent_cli\n"
        "wattmesh.cli.build_parser().parse_args(['agent', '--config', 'x.toml'])"
    )
    assert "wattmesh.agent_cli" in loaded
    assert _heavy(loaded) == set()


def test_meter_read_cli_path_imports_without_heavy_dependencies() -> None:
    loaded = _loaded_after(
        "import wattmesh.cli, wattmesh.meter_cli\n"
        "wattmesh.cli.build_parser().parse_args(['meter', 'read', '--meter', 'p1-file:x'])"
    )
    assert {"wattmesh.meter_cli", "agents.metering.open", "agents.metering.p1"} <= loaded
    assert _heavy(loaded) == set()
    # P1 users install only the agent extra: pymodbus loads only for a Modbus meter.
    assert "pymodbus" not in {m.split(".")[0] for m in loaded}


def test_the_probe_would_notice_a_heavy_import() -> None:
    # The check above is only worth something if importing e.g. the ledger store shows up.
    assert "sqlalchemy" in {m.split(".")[0] for m in _loaded_after("import ledger.store")}


def test_agent_help_runs_on_the_agent_closure() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", "agent", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0
    assert "--config" in result.stdout
