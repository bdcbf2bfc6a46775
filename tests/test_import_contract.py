"""The edge agent's import closure stays light, and the CLI loads subcommands lazily."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys
from pathlib import Path

from wattmesh import agents
from wattmesh.broker.keys import write_key_pair

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
    names = [m.name for m in pkgutil.walk_packages(agents.__path__, f"{agents.__name__}.")]
    assert "wattmesh.agents.agent" in names and "wattmesh.agents.meter" in names
    assert {
        "wattmesh.agents.metering.p1",
        "wattmesh.agents.metering._modbus",
        "wattmesh.agents.metering.spec",
    } <= set(names)
    loaded = _loaded_after("\n".join(f"import {name}" for name in names))
    assert set(names) <= loaded
    assert _heavy(loaded) == set()


def test_agent_cli_path_imports_without_heavy_dependencies() -> None:
    loaded = _loaded_after(
        "import wattmesh.cli, wattmesh.cli.agent_cli\n"
        "wattmesh.cli.build_parser().parse_args(['agent', '--config', 'x.toml'])"
    )
    assert "wattmesh.cli.agent_cli" in loaded
    assert _heavy(loaded) == set()


def test_meter_read_cli_path_imports_without_heavy_dependencies() -> None:
    loaded = _loaded_after(
        "import wattmesh.cli, wattmesh.cli.meter_cli\n"
        "wattmesh.cli.build_parser().parse_args(['meter', 'read', '--meter', 'p1-file:x'])"
    )
    assert {
        "wattmesh.cli.meter_cli",
        "wattmesh.agents.metering.open",
        "wattmesh.agents.metering.p1",
    } <= loaded
    assert _heavy(loaded) == set()
    # P1 users install only the agent extra: pymodbus loads only for a Modbus meter.
    assert "pymodbus" not in {m.split(".")[0] for m in loaded}


def test_the_probe_would_notice_a_heavy_import() -> None:
    # The check above is only worth something if importing e.g. the ledger store shows up.
    assert "sqlalchemy" in {m.split(".")[0] for m in _loaded_after("import wattmesh.ledger.store")}


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


def test_the_running_agent_keeps_pydantic_and_heavy_packages_out(tmp_path: Path) -> None:
    # What `wattmesh agent --config` loads before it connects: the configuration is
    # validated with pydantic in a child process, so pydantic never stays resident.
    write_key_pair(tmp_path / "keys")
    config = tmp_path / "agent.toml"
    config.write_text(
        'agent_id = "h001"\nmarket_id = "m1"\nbroker = "mqtt://127.0.0.1:1883"\n'
        'key_file = "keys/private_key.pem"\nstate_dir = "state"\n'
        '[meter]\nkind = "p1-tcp"\nhost = "127.0.0.1"\nport = 2001\n',
        encoding="utf-8",
    )
    loaded = _loaded_after(
        "import wattmesh.cli, wattmesh.cli.agent_cli\n"
        "from pathlib import Path\n"
        "from wattmesh.config.agent_config import load_agent_config_isolated\n"
        f"config = load_agent_config_isolated(Path({str(config)!r}))\n"
        "assert config.agent.agent_id == 'h001'\n"
        "import wattmesh.agents.lifecycle, wattmesh.agents.metering.open"
    )
    top = {m.split(".")[0] for m in loaded}
    assert agents.__name__ in loaded and {"aiomqtt", "dsmr_parser"} <= top
    # Its own forecast (issue 14) is part of it, on the standard library alone.
    assert {"wattmesh.agents._selfcast", "wattmesh.agents._forecast_source"} <= loaded
    assert _heavy(loaded) == set()
    assert "pydantic" not in top and "pydantic_core" not in top
    # The validated sections come back as JSON into constraint-free dataclasses: no
    # annotated-types / typing-extensions (0.7 MB) and no pickle (0.3 MB) stay loaded.
    assert not {"annotated_types", "typing_extensions", "pickle", "_pickle"} & top
    # The Home Assistant bridge and Modbus load only when configured.
    assert "wattmesh.agents.ha_bridge" not in loaded and "pymodbus" not in top
    assert "importlib.metadata" not in loaded  # only the bridge needs the version
    # dsmr-parser's clients package (serial and asyncio readers, serialx) is not needed,
    # nor its parsers module, which loads dlms-cosem (attrs, asn1crypto, dateutil: 5 MB)
    # for encrypted telegrams: the agent reads P1 lines itself (tests/test_p1_reference.py).
    assert "dsmr_parser.clients" not in loaded and "serialx" not in top
    assert (
        "dsmr_parser.parsers" not in loaded and "dsmr_parser.telegram_specifications" not in loaded
    )
    assert not {"dlms_cosem", "attr", "asn1crypto", "dateutil", "ctypes"} & top


def test_the_probe_would_notice_pydantic() -> None:
    assert "pydantic" in {
        m.split(".")[0] for m in _loaded_after("import wattmesh.config.agent_validate")
    }
