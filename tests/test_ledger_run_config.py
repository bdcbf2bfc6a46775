"""``wattmesh ledger run --validate-config``: every problem named by its TOML path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.transport import Session
from wattmesh.cli import main
from wattmesh.config.ledger_config import load_ledger_config
from wattmesh.ledger.household_registry import write_registry

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
market_id = "m1"
operator_key_file = "operator/private_key.pem"
registry_file = "registry.json"
interval_s = 900

[database]
url = "sqlite:///ledger.db"

[mqtt]
host = "127.0.0.1"
username = "ledger"
password_file = "mqtt.password"

[gate]
timeout_s = 120.0
grace_s = 30.0

[mechanism]
name = "uniform"
k = "1/2"

[[tariffs]]
start_hour_utc = 0
retail_micro_per_kwh = 300000
feed_in_micro_per_kwh = 80000
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_key_pair(tmp_path / "operator")
    write_registry(tmp_path / "registry.json", {"h001": SigningKey.generate().verifying})
    password = tmp_path / "mqtt.password"
    password.write_text("secret\n", encoding="utf-8")
    password.chmod(0o600)
    return tmp_path


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["ledger", "run", "--config", str(path), "--validate-config"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_valid_file_passes_and_builds_the_run_configuration(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "ledger.toml"
    path.write_text(BASE, encoding="utf-8")
    code, out, err = _validate(path, capsys)
    assert (code, err) == (0, "")
    assert "ok (market m1, 1 households, mechanism uniform, interval 900 s)" in out
    config = load_ledger_config(path)
    assert config.db_url == f"sqlite:///{folder / 'ledger.db'}"  # relative to the file
    assert config.transport.session is Session.PERSISTENT
    assert config.transport.client_id == "m1-ledger"
    assert config.transport.password == "secret"
    assert config.transport.address.port == 1883
    assert (config.schedule.gate_timeout_s, config.schedule.grace_s) == (120.0, 30.0)


def test_the_example_configuration_is_valid(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "keys").mkdir()
    shutil.move(folder / "operator", folder / "keys" / "operator")
    path = folder / "ledger.toml"
    shutil.copy(ROOT / "examples" / "ledger.toml", path)
    code, _, err = _validate(path, capsys)
    assert (code, err) == (0, "")
    assert load_ledger_config(path).tariffs.at(17 * 3600).retail_micro_per_kwh == 380_000


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("interval_s = 900", "interval_s = 0", "interval_s: Input should be greater than or equal to 1"),  # noqa: E501
        ("interval_s = 900", "interval_s = 100", "gate.timeout_s: must not exceed interval_s = 100"),  # noqa: E501
        ("grace_s = 30.0", "grace_s = 120.0", "gate.grace_s: must be below gate.timeout_s"),
        ("timeout_s = 120.0", "timeout_s = 0", "gate.timeout_s: Input should be greater than 0"),
        ("timeout_s = 120.0", 'timeout_s = "120"', "gate.timeout_s: Input should be a valid"),
        ('name = "uniform"', 'name = "vickrey"', "mechanism.name: unknown mechanism 'vickrey'"),
        ('k = "1/2"', 'k = "3/2"', "mechanism.k: k must lie in [0, 1]"),
        ('k = "1/2"', 'k = "half"', "mechanism.k: String should match pattern"),
        ('name = "uniform"\nk = "1/2"', 'name = "sdr"\nk = "1/3"', "mechanism.k: k applies to"),
        ("start_hour_utc = 0", "start_hour_utc = 6", "tariffs: a tariff schedule needs"),
        ("start_hour_utc = 0", "start_hour_utc = 24", "tariffs[0].start_hour_utc: Input should"),
        ("retail_micro_per_kwh = 300000", "retail_micro_per_kwh = -1", "tariffs[0].retail_micro"),
        ("retail_micro_per_kwh = 300000", 'retail_micro_per_kwh = "3"', "tariffs[0].retail_micro"),
        ('host = "127.0.0.1"', 'host = "127.0.0.1"\nport = 70000', "mqtt.port: Input should be"),
        ('host = "127.0.0.1"', 'host = "127.0.0.1"\npasword_file = "x"', "mqtt.pasword_file: unknown key"),  # noqa: E501
        ('password_file = "mqtt.password"', 'password = "x"', "mqtt.password: unknown key (secrets"),  # noqa: E501
        ('username = "ledger"\n', "", "mqtt.password_file: a password needs mqtt.username"),
        ('url = "sqlite:///ledger.db"', 'url = "mysql://db/x"', "database.url: unsupported database URL"),  # noqa: E501
        ('url = "sqlite:///ledger.db"', 'url = "sqlite:///:memory:"', "database.url: the ledger needs"),  # noqa: E501
        ('market_id = "m1"', 'market_id = "m/1"', "market_id: String should match pattern"),
        ('market_id = "m1"\n', "", "market_id: Field required"),
        ("[gate]", "[gate]\nwait_s = 3", "gate.wait_s: unknown key"),
        ('registry_file = "registry.json"', 'registry_file = "none.json"', "registry_file: cannot read"),  # noqa: E501
        ('operator_key_file = "operator/private_key.pem"', 'operator_key_file = "registry.json"', "operator_key_file: "),  # noqa: E501
        ("80000\n", '80000\n[mqtt.tls]\nca_file = "ca.pem"\n', "mqtt.tls.ca_file: "),
        ('registry_file = "registry.json"', 'registry_file = "registry.json"\nforecaster_key_file = "none.pem"', "forecaster_key_file: "),  # noqa: E501
    ],
)  # fmt: skip
def test_each_bad_value_exits_1_naming_its_toml_path(
    folder: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, problem: str
) -> None:
    assert old in BASE
    path = folder / "ledger.toml"
    path.write_text(BASE.replace(old, new, 1), encoding="utf-8")
    code, out, err = _validate(path, capsys)
    assert code == 1
    assert out == ""
    assert f"{path}: {problem}" in err, err


def test_secret_files_readable_by_others_are_refused(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "ledger.toml"
    path.write_text(BASE, encoding="utf-8")
    (folder / "operator" / "private_key.pem").chmod(0o644)
    (folder / "mqtt.password").chmod(0o640)
    code, _, err = _validate(path, capsys)
    assert code == 1
    assert f"{path}: operator_key_file: " in err and "chmod 600" in err
    assert f"{path}: mqtt.password_file: " in err and "(mode 640)" in err


def test_not_toml_and_missing_files_exit_1(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "ledger.toml"
    path.write_text("market_id = \n", encoding="utf-8")
    assert _validate(path, capsys)[0] == 1
    code, _, err = _validate(folder / "absent.toml", capsys)
    assert code == 1 and "cannot read the file" in err


def test_running_with_an_invalid_file_exits_2_with_one_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "ledger.toml"
    path.write_text(BASE.replace("interval_s = 900", "interval_s = 100"), encoding="utf-8")
    code = main(["ledger", "run", "--config", str(path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and "gate.timeout_s" in err


def test_a_network_fee_is_taken_and_fixed_for_the_ledger(folder: Path) -> None:
    """docs/protocol.md: ``mechanism.network_fee_micro_per_kwh`` is charged (settlement
    posts it to ``operator/fees``, tests/test_ledger_fees.py), not refused; like the
    mechanism it is recorded at the first start and cannot change afterwards."""
    from wattmesh.broker.errors import ConfigError
    from wattmesh.ledger.ledger import Ledger
    from wattmesh.ledger.store import LedgerStore

    path = folder / "ledger.toml"
    path.write_text(
        BASE.replace('k = "1/2"\n', 'k = "1/2"\nnetwork_fee_micro_per_kwh = 20000\n'),
        encoding="utf-8",
    )
    config = load_ledger_config(path)
    assert config.mechanism.rules.network_fee_micro_per_kwh == 20_000
    store = LedgerStore(config.db_url)
    try:
        Ledger(store, market_id="m1", operator_key=config.operator_key, mechanism=config.mechanism)
        path.write_text(BASE, encoding="utf-8")  # the fee removed again
        without = load_ledger_config(path)
        with pytest.raises(ConfigError, match="mechanism"):
            Ledger(
                store,
                market_id="m1",
                operator_key=without.operator_key,
                mechanism=without.mechanism,
            )
    finally:
        store.close()


def test_schema_and_database_url_problems_are_reported_in_one_round(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "ledger.toml"
    bad = BASE.replace("interval_s = 900", "interval_s = 0").replace(
        'url = "sqlite:///ledger.db"', 'url = "sqlite:///:memory:"'
    )
    path.write_text(bad, encoding="utf-8")
    code, out, err = _validate(path, capsys)
    assert (code, out) == (1, "")
    assert f"{path}: interval_s: Input should be greater than or equal to 1" in err, err
    assert f"{path}: database.url: the ledger needs a SQLite file" in err, err


def test_metrics_are_off_unless_a_port_is_given(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "ledger.toml"
    path.write_text(BASE, encoding="utf-8")
    assert load_ledger_config(path).metrics is None
    path.write_text(BASE + "\n[metrics]\nport = 9108\n", encoding="utf-8")
    assert load_ledger_config(path).metrics == ("127.0.0.1", 9108)
    path.write_text(BASE + '\n[metrics]\nport = 9108\nhost = "0.0.0.0"\n', encoding="utf-8")
    assert load_ledger_config(path).metrics == ("0.0.0.0", 9108)


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("[metrics]\nport = 0\n", "metrics.port: Input should be greater than or equal to 1"),
        ("[metrics]\nport = 70000\n", "metrics.port: Input should be less than or equal to 65535"),
        ('[metrics]\nport = "9108"\n', "metrics.port: Input should be a valid integer"),
        ('[metrics]\nhost = "::1"\n', "metrics.port: Field required"),
        ("[metrics]\nport = 9108\npath = '/m'\n", "metrics.path: unknown key"),
    ],
)
def test_a_bad_metrics_section_is_named_by_its_path(
    folder: Path, capsys: pytest.CaptureFixture[str], section: str, problem: str
) -> None:
    path = folder / "ledger.toml"
    path.write_text(BASE + "\n" + section, encoding="utf-8")
    code, _, err = _validate(path, capsys)
    assert code == 1
    assert problem in err
