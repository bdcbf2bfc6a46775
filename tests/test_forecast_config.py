"""``wattmesh forecast serve --validate-config``: every problem named by its TOML path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wattmesh.broker.keys import SigningKey, write_key_pair
from wattmesh.broker.transport import Session
from wattmesh.cli import main
from wattmesh.config.forecast_config import load_forecast_config
from wattmesh.ledger.household_registry import write_registry

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
market_id = "m1"
forecaster_key_file = "forecaster/private_key.pem"
operator_key_file = "operator/public_key.pem"
registry_file = "registry.json"

[mqtt]
host = "127.0.0.1"
username = "forecaster"
password_file = "mqtt.password"
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    write_key_pair(tmp_path / "operator")
    write_key_pair(tmp_path / "forecaster")
    write_registry(tmp_path / "registry.json", {"h001": SigningKey.generate().verifying})
    password = tmp_path / "mqtt.password"
    password.write_text("secret\n", encoding="utf-8")
    password.chmod(0o600)
    return tmp_path


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["forecast", "serve", "--config", str(path), "--validate-config"])
    out, err = capsys.readouterr()
    return code, out, err


def test_defaults_fill_a_minimal_file(folder: Path) -> None:
    path = folder / "forecast.toml"
    path.write_text(BASE, encoding="utf-8")
    config = load_forecast_config(path)
    assert (config.demand_model, config.pv_model, config.refit_hour_utc) == ("auto", "auto", 2)
    assert config.select_every_days == 7
    assert config.db_url == f"sqlite:///{folder / 'forecast.db'}"
    assert config.ledger_url == f"sqlite:///{folder / 'ledger.db'}"
    assert set(config.households) == {"h001"}
    assert config.transport.client_id == "m1-forecaster"
    assert config.transport.session is Session.CLEAN
    assert config.transport.password == "secret"


def test_the_example_configuration_is_valid(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (folder / "keys").mkdir()
    shutil.move(folder / "operator", folder / "keys" / "operator")
    shutil.move(folder / "forecaster", folder / "keys" / "forecaster")
    shutil.copy(ROOT / "examples" / "forecast.toml", folder / "forecast.toml")
    code, out, err = _validate(folder / "forecast.toml", capsys)
    assert (code, err) == (0, "")
    assert "ok (market m1, 1 households, models demand auto pv auto" in out


def test_every_problem_is_named_by_its_path_in_one_round(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "forecast.toml"
    path.write_text(
        BASE.replace('"forecaster/private_key.pem"', '"missing.pem"').replace(
            'registry_file = "registry.json"', 'registry_file = "none.json"\nbogus = 1'
        )
        + '[models]\ndemand = "magic"\nhorizon = 0\nselect_every_days = 0\n'
        + "[refit]\nhour_utc = 24\n"
        + '[database]\nurl = "sqlite:///:memory:"\n',
        encoding="utf-8",
    )
    code, out, err = _validate(path, capsys)
    assert (code, out) == (1, "")
    lines = err.splitlines()
    for where in (
        "bogus: unknown key",
        "models.demand:",
        "models.horizon:",
        "models.select_every_days:",
        "refit.hour_utc:",
    ):
        assert any(f"{path}: {where}" in line for line in lines), (where, lines)
    assert any("database.url:" in line for line in lines), lines  # beside the schema's


def test_file_problems_are_named_by_their_paths(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "forecast.toml"
    path.write_text(
        "interval_s = 7\n"
        + BASE.replace('"forecaster/private_key.pem"', '"missing.pem"').replace(
            '"registry.json"', '"none.json"'
        ),
        encoding="utf-8",
    )
    (folder / "mqtt.password").chmod(0o644)
    code, _, err = _validate(path, capsys)
    assert code == 1
    for where in ("forecaster_key_file:", "registry_file:", "mqtt.password_file:"):
        assert f"{path}: {where}" in err, (where, err)
    assert "interval_s: must divide a day" in err


def test_capacities_name_registered_households(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "forecast.toml"
    path.write_text(BASE + "[pv_capacity_w]\nh999 = 5000\n", encoding="utf-8")
    code, _, err = _validate(path, capsys)
    assert code == 1
    assert f"{path}: pv_capacity_w.h999: not a household of the registry" in err


def test_running_with_an_invalid_file_exits_2_with_one_line(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "forecast.toml"
    path.write_text(BASE + "bogus = 1\n", encoding="utf-8")
    code = main(["forecast", "serve", "--config", str(path)])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and "bogus: unknown key" in err
