"""agent.toml validation: pydantic, unknown keys, secrets from files, file modes, meters."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import get_args

import pytest

from tests.securebroker import make_pki
from wattmesh.agents._clock import DEFAULT_MAX_DRIFT_S
from wattmesh.agents._outbox import DEFAULT_CAPACITY
from wattmesh.agents._publisher import DEFAULT_COMMIT_INTERVAL_S, DEFAULT_MAX_IN_FLIGHT
from wattmesh.agents.agent import AgentConfig
from wattmesh.agents.battery import PERMILLE
from wattmesh.agents.lifecycle import DEFAULT_FLUSH_TIMEOUT_S, OutboxSettings
from wattmesh.agents.metering.p1 import P1Version
from wattmesh.agents.metering.spec import ModbusRtuSpec, ModbusTcpSpec, P1SerialSpec, P1TcpSpec
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import write_key_pair
from wattmesh.broker.topics import Topics
from wattmesh.config import agent_schema
from wattmesh.config.agent_config import (
    ReplaySpec,
    check_agent_config,
    check_agent_config_isolated,
    load_agent_config,
)

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
agent_id = "h001"
market_id = "m1"
broker = "{broker}"
key_file = "keys/private_key.pem"
state_dir = "state"
"""


def _write(tmp_path: Path, extra: str = "", *, broker: str = "mqtt://127.0.0.1:1883") -> Path:
    if not (tmp_path / "keys" / "private_key.pem").exists():
        write_key_pair(tmp_path / "keys")
    (tmp_path / "profile.json").write_text(
        '{"start": 0, "interval_s": 900, "demand_wh": [1], "pv_wh": [0]}', encoding="utf-8"
    )
    meter = '[meter]\nkind = "replay"\nfile = "profile.json"\n' if "[meter]" not in extra else ""
    path = tmp_path / "agent.toml"
    path.write_text(BASE.format(broker=broker) + extra + "\n" + meter, encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    config, problems = check_agent_config(path)
    assert config is None
    return problems


def _validate_cli(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", "agent", "--config", str(path), "--validate-config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )


def test_minimal_config_is_valid(tmp_path: Path) -> None:
    config = load_agent_config(_write(tmp_path))
    assert config.agent.agent_id == "h001" and config.agent.topics.market_id == "m1"
    assert config.transport.client_id == "m1-h001" and config.transport.tls is None
    assert config.meter == ReplaySpec(tmp_path / "profile.json")
    assert config.homeassistant is None  # off by default
    result = _validate_cli(tmp_path / "agent.toml")
    assert result.returncode == 0 and "ok (agent h001, market m1)" in result.stdout


def test_every_problem_is_listed_with_its_toml_path(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        'colour = "red"\n[mqtt]\nkeepalive_s = 0\n[mqtt.tls]\ncafile = "ca.pem"\n'
        '[homeassistant]\nprefx = "ha"\n',
    )
    problems = _problems(path)
    assert "colour: unknown key" in problems
    assert "mqtt.tls.cafile: unknown key" in problems
    assert "homeassistant.prefx: unknown key" in problems
    assert any(
        p.startswith("mqtt.keepalive_s: Input should be greater than or equal to 1")
        for p in problems
    )
    result = _validate_cli(path)
    assert result.returncode == 1
    assert result.stderr.count("\n") == len(problems) == 4
    assert f"{path}: colour: unknown key" in result.stderr


def test_missing_keys_and_unknown_meter_kind(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('agent_id = "h001"\n[meter]\nkind = "smart"\n', encoding="utf-8")
    problems = _problems(path)
    for key in ("market_id", "broker", "key_file", "state_dir"):
        assert f"{key}: Field required" in problems
    assert any(
        p.startswith("meter: unknown meter kind; expected replay, p1-serial") for p in problems
    )


def test_a_password_in_the_toml_is_refused(tmp_path: Path) -> None:
    problems = _problems(_write(tmp_path, '[mqtt]\nusername = "h001"\npassword = "hunter2"\n'))
    assert problems == [
        "mqtt.password: unknown key (secrets are read from files: use password_file)"
    ]


def test_password_comes_from_a_private_file(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.password"
    secret.write_text("s3cret\n", encoding="utf-8")
    secret.chmod(0o600)
    path = _write(tmp_path, '[mqtt]\nusername = "h001"\npassword_file = "mqtt.password"\n')
    config = load_agent_config(path)
    assert (config.transport.username, config.transport.password) == ("h001", "s3cret")
    secret.chmod(0o644)
    assert _problems(path) == [
        f"mqtt.password_file: {secret} is readable by others (mode 644); chmod 600 it"
    ]


def test_a_world_readable_private_key_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path)
    key = tmp_path / "keys" / "private_key.pem"
    key.chmod(0o644)
    (problem,) = _problems(path)
    assert (
        problem.startswith("key_file: ")
        and "readable by others" in problem
        and "chmod 600" in problem
    )
    with pytest.raises(ConfigError, match="key_file"):
        load_agent_config(path)


def test_tls_settings(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "pki")
    tls = (
        f'[mqtt.tls]\nca_file = "{pki.ca}"\n'
        f'cert_file = "{pki.client_cert}"\nkey_file = "{pki.client_key}"\n'
    )
    config = load_agent_config(_write(tmp_path, tls, broker="mqtts://broker.example.net"))
    assert config.transport.address.port == 8883
    assert config.transport.tls is not None and config.transport.tls.ca_file == pki.ca
    assert _problems(_write(tmp_path, tls)) == [
        "mqtt.tls: TLS settings need an mqtts:// broker URL"
    ]
    missing = '[mqtt.tls]\nca_file = "nope.pem"\n'
    (problem,) = _problems(_write(tmp_path, missing, broker="mqtts://b:8884"))
    assert problem.startswith("mqtt.tls.ca_file: ") and "nope.pem does not exist" in problem


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ('kind = "p1-serial"\ndevice = "/dev/ttyUSB0"', P1SerialSpec("/dev/ttyUSB0")),
        (
            'kind = "p1-tcp"\nhost = "10.0.0.9"\nport = 2001\nversion = "4"',
            P1TcpSpec("10.0.0.9", 2001, P1Version.DSMR4),
        ),
        ('kind = "modbus-tcp"\nhost = "gw"\nmap = "sdm630"', ModbusTcpSpec("gw", 502, "sdm630", 1)),
        (
            'kind = "modbus-rtu"\ndevice = "/dev/ttyUSB0"\nmap = "sdm120"\nbaud = 2400',
            ModbusRtuSpec("/dev/ttyUSB0", "sdm120", 1, 2400),
        ),
    ],
)
def test_meter_kinds(tmp_path: Path, section: str, expected: object) -> None:
    assert load_agent_config(_write(tmp_path, f"[meter]\n{section}\n")).meter == expected


def test_unknown_register_map_is_reported(tmp_path: Path) -> None:
    (problem,) = _problems(
        _write(tmp_path, '[meter]\nkind = "modbus-tcp"\nhost = "gw"\nmap = "abb"\n')
    )
    assert problem.startswith("meter.map: unknown register map 'abb'")


def test_no_secret_can_be_given_on_the_command_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", "agent", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0 and "password" not in result.stdout.lower()


def test_unreadable_or_broken_toml_is_one_clear_problem(tmp_path: Path) -> None:
    assert _problems(tmp_path / "missing.toml") == [
        "cannot read the file: No such file or directory"
    ]
    broken = tmp_path / "broken.toml"
    broken.write_text('agent_id = "h001\n', encoding="utf-8")
    (problem,) = _problems(broken)
    assert problem.startswith("not valid TOML: ")
    result = _validate_cli(broken)
    assert result.returncode == 1 and result.stderr.startswith(f"{broken}: not valid TOML")


def test_modbus_meter_without_the_modbus_extra_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "pymodbus", None)  # as on a Pi with only [agent]
    path = _write(
        tmp_path, '[meter]\nkind = "modbus-rtu"\ndevice = "/dev/ttyUSB0"\nmap = "sdm630"\n'
    )
    assert _problems(path) == [
        "meter.kind: modbus-rtu needs pymodbus: pip install 'wattmesh[agent,modbus]'"
    ]


def test_outbox_and_health_defaults(tmp_path: Path) -> None:
    config = load_agent_config(_write(tmp_path))
    assert config.outbox == OutboxSettings(
        capacity=DEFAULT_CAPACITY, commit_interval_s=1.0, flush_timeout_s=5.0, max_in_flight=64
    )
    assert config.agent.max_clock_drift_s == DEFAULT_MAX_DRIFT_S
    assert config.agent.diagnostics_interval_s == 60.0


def test_outbox_and_health_settings_reach_the_agent(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "[outbox]\ncapacity = 5000\ncommit_interval_s = 2.5\nflush_timeout_s = 0\n"
        "max_in_flight = 8\n"
        "[health]\nmax_clock_drift_s = 30\ndiagnostics_interval_s = 300\n",
    )
    config = load_agent_config(path)
    assert config.outbox == OutboxSettings(
        capacity=5000, commit_interval_s=2.5, flush_timeout_s=0, max_in_flight=8
    )
    assert (config.agent.max_clock_drift_s, config.agent.diagnostics_interval_s) == (30, 300.0)
    result = _validate_cli(path)
    assert result.returncode == 0 and "ok (agent h001" in result.stdout


def test_bad_outbox_and_health_settings_are_listed(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[outbox]\ncapacity = 0\ncommit_interval_s = -1\nflush_timeout_s = "soon"\nsize = 3\n'
        "max_in_flight = 0\n"
        "[health]\nmax_clock_drift_s = 1.5\ndiagnostics_interval_s = 0.1\n",
    )
    problems = _problems(path)
    expected = {
        "outbox.capacity": "Input should be greater than or equal to 1",
        "outbox.commit_interval_s": "Input should be greater than or equal to 0",
        "outbox.flush_timeout_s": "Input should be a valid number",
        "outbox.size": "unknown key",
        "outbox.max_in_flight": "Input should be greater than or equal to 1",
        "health.max_clock_drift_s": "Input should be a valid integer",
        "health.diagnostics_interval_s": "Input should be greater than or equal to 1",
    }
    assert len(problems) == len(expected)
    for where, message in expected.items():
        assert any(p.startswith(f"{where}: {message}") for p in problems), (where, problems)
    result = _validate_cli(path)
    assert result.returncode == 1
    assert f"{path}: outbox.capacity: Input should be greater" in result.stderr
    assert result.stderr.count("\n") == len(expected)


@pytest.mark.parametrize(
    "extra",
    [
        "",
        '[meter]\nkind = "p1-tcp"\nhost = "10.0.0.9"\nport = 2001\nversion = "5B"\n'
        "[outbox]\ncapacity = 50\n[health]\nmax_clock_drift_s = 10\n",
        'colour = "red"\n[mqtt]\nkeepalive_s = 0\n[homeassistant]\nprefix = "a b"\n',
        '[meter]\nkind = "smart"\n[outbox]\ncapacity = -1\n',
        '[meter]\nkind = "p1-serial"\nbaud = 1\n',
    ],
)
def test_the_agent_validates_in_a_child_process_with_the_same_verdict(
    tmp_path: Path, extra: str
) -> None:
    # wattmesh agent keeps pydantic out of its own process; the verdict must not change.
    path = _write(tmp_path, extra)
    isolated, here = check_agent_config_isolated(path), check_agent_config(path)
    assert isolated[1] == here[1]
    assert (isolated[0] is None) == (here[0] is None) == bool(here[1])
    if isolated[0] is not None and here[0] is not None:
        # Key objects do not compare equal; their key ids do.
        assert isolated[0].key.verifying.kid == here[0].key.verifying.kid
        assert replace(isolated[0], key=here[0].key) == here[0]


def test_the_isolated_check_reports_an_unreadable_file(tmp_path: Path) -> None:
    assert check_agent_config_isolated(tmp_path / "missing.toml") == (
        None,
        ["cannot read the file: No such file or directory"],
    )


def test_schema_defaults_agree_with_the_agent() -> None:
    # agent_schema repeats these (it must stay light for the validating child).
    assert agent_schema.DEFAULT_CAPACITY == DEFAULT_CAPACITY
    assert agent_schema.DEFAULT_COMMIT_INTERVAL_S == DEFAULT_COMMIT_INTERVAL_S
    assert agent_schema.DEFAULT_FLUSH_TIMEOUT_S == DEFAULT_FLUSH_TIMEOUT_S
    assert agent_schema.DEFAULT_MAX_IN_FLIGHT == DEFAULT_MAX_IN_FLIGHT
    assert agent_schema.DEFAULT_MAX_DRIFT_S == DEFAULT_MAX_DRIFT_S
    assert agent_schema.PERMILLE == PERMILLE
    assert set(get_args(agent_schema.P1VersionName)) == {v.value for v in P1Version}
    assert AgentConfig(agent_id="a", topics=Topics("m")).diagnostics_interval_s == 60.0


def test_the_forecaster_key_and_the_connection_limit(tmp_path: Path) -> None:
    """``forecaster_key_file`` names a PEM public key (none: no forecast is used);
    ``max_power_w`` defaults to the ledger's default connection limit."""
    config = load_agent_config(_write(tmp_path))
    assert config.agent.forecaster_key is None
    assert config.agent.max_power_w == DEFAULT_MAX_POWER_W == agent_schema.DEFAULT_MAX_POWER_W
    forecaster = write_key_pair(tmp_path / "forecaster")
    extra = 'forecaster_key_file = "forecaster/public_key.pem"\nmax_power_w = 3680\n'
    config = load_agent_config(_write(tmp_path, extra))
    assert config.agent.forecaster_key is not None
    assert config.agent.forecaster_key.kid == forecaster.verifying.kid
    assert config.agent.max_power_w == 3_680


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            'forecaster_key_file = "nope.pem"\n',
            "forecaster_key_file: cannot read public key {tmp}/nope.pem: No such file or directory",
        ),
        (
            'forecaster_key_file = "profile.json"\n',
            "forecaster_key_file: {tmp}/profile.json is not a PEM public key",
        ),
        ("max_power_w = 0\n", "max_power_w: Input should be greater than or equal to 1"),
        ("max_power_w = 1000001\n", "max_power_w: Input should be less than or equal to 1000000"),
    ],
    ids=["missing-key", "not-a-key", "zero-power", "too-much-power"],
)
def test_a_bad_forecaster_key_or_limit_is_named(tmp_path: Path, extra: str, problem: str) -> None:
    assert _problems(_write(tmp_path, extra)) == [problem.format(tmp=tmp_path)]


def test_schema_and_broker_url_problems_are_reported_in_one_round(tmp_path: Path) -> None:
    path = _write(tmp_path, 'colour = "red"\n', broker="http://127.0.0.1:1883")
    for _, problems in (check_agent_config(path), check_agent_config_isolated(path)):
        assert "colour: unknown key" in problems
        assert any(p.startswith("broker: ") and "mqtt(s)://host[:port]" in p for p in problems)
        assert len(problems) == 2, problems
    result = _validate_cli(path)
    assert result.returncode == 1
    assert f"{path}: colour: unknown key" in result.stderr
    assert f"{path}: broker: " in result.stderr
