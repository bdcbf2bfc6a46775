"""``dashboard.toml`` and ``wattmesh dashboard serve --validate-config``: every problem
named by its TOML path, in one round; relative paths from the file's folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import write_key_pair
from wattmesh.broker.transport import Session
from wattmesh.cli import main
from wattmesh.config.dashboard_config import check_dashboard_config, load_dashboard_config
from wattmesh.ledger.store import LedgerStore

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "a-long-enough-operator-token-0123456789"

BASE = """\
market_id = "m1"
operator_key_file = "keys/operator/public_key.pem"
operator_token_file = "operator.token"

[database]
url = "sqlite:///ledger.db"

[mqtt]
host = "127.0.0.1"
username = "dashboard"
password_file = "mqtt.password"

[http]
host = "127.0.0.1"
port = 8080
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    LedgerStore(f"sqlite:///{tmp_path / 'ledger.db'}").close()  # an (empty) ledger
    (tmp_path / "operator.kid").write_text(write_key_pair(tmp_path / "keys" / "operator").kid)
    for name, secret in (("mqtt.password", "secret"), ("operator.token", TOKEN)):
        (tmp_path / name).write_text(secret + "\n", encoding="utf-8")
        (tmp_path / name).chmod(0o600)
    return tmp_path


def _validate(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["dashboard", "serve", "--config", str(path), "--validate-config"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_valid_file_passes_and_builds_the_configuration(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "dashboard.toml"
    path.write_text(BASE, encoding="utf-8")
    code, out, err = _validate(path, capsys)
    assert (code, err) == (0, "")
    assert out.startswith(f"{path}: ok (ledger sqlite:///{folder / 'ledger.db'}, broker ")
    config = load_dashboard_config(path)
    assert config.ledger_url == f"sqlite:///{folder / 'ledger.db'}"  # from the file's folder
    assert config.read_model_url is None
    assert config.market_id == "m1" and config.operator_token == TOKEN
    assert config.operator_key is not None
    assert config.operator_key.kid == (folder / "operator.kid").read_text()
    assert config.transport is not None
    assert config.transport.session is Session.CLEAN  # a viewer, not a queue to keep
    assert (config.transport.username, config.transport.password) == ("dashboard", "secret")
    assert config.transport.address.port == 1883
    assert (config.host, config.port) == ("127.0.0.1", 8080)


def test_only_the_ledger_database_is_required(folder: Path) -> None:
    path = folder / "dashboard.toml"
    path.write_text('[database]\nurl = "sqlite:///ledger.db"\n', encoding="utf-8")
    config, problems = check_dashboard_config(path)
    assert problems == [] and config is not None
    assert (config.transport, config.market_id, config.operator_key) == (None, None, None)
    assert config.operator_token is None and (config.host, config.port) == ("127.0.0.1", 8080)
    assert config.currency == "EUR"
    assert config.verify_every_s == 3600


def test_the_currency_is_named_in_the_file(folder: Path) -> None:
    path = folder / "dashboard.toml"
    path.write_text(BASE.replace('market_id = "m1"', 'market_id = "m1"\ncurrency = "CHF"'), "utf-8")
    assert load_dashboard_config(path).currency == "CHF"
    path.write_text(
        BASE.replace('market_id = "m1"', 'market_id = "m1"\nverify_every_s = 0'), "utf-8"
    )
    assert load_dashboard_config(path).verify_every_s == 0  # never


def test_the_example_configuration_is_valid(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "dashboard.toml"
    shutil.copy(ROOT / "examples" / "dashboard.toml", path)
    code, _, err = _validate(path, capsys)
    assert (code, err) == (0, "")
    assert load_dashboard_config(path).read_model_url == f"sqlite:///{folder / 'dashboard.db'}"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (
            'url = "sqlite:///ledger.db"',
            'url = "sqlite:///absent.db"',
            "database.url: no ledger database at sqlite:///",
        ),
        (
            'url = "sqlite:///ledger.db"',
            'url = "sqlite:///no/such/ledger.db"',
            "database.url: database sqlite:///",
        ),
        (
            'url = "sqlite:///ledger.db"',
            'url = "mysql://x/y"',
            "database.url: unsupported database URL",
        ),
        (
            'url = "sqlite:///ledger.db"',
            'url = "sqlite://"',
            "database.url: 'sqlite://': a SQLite database needs a file",
        ),
        (
            'url = "sqlite:///ledger.db"',
            'url = ""',
            "database.url: String should have at least 1 character",
        ),
        (
            "[database]",
            '[database]\nread_model_url = "sqlite:///no/such/rm.db"',
            "database.read_model_url: database sqlite:///",
        ),
        ('market_id = "m1"', 'market_id = "m 1"', "market_id: String should match pattern"),
        ('market_id = "m1"', "market_id = 1", "market_id: Input should be a valid string"),
        ('market_id = "m1"', 'market_id = "m1"\ncurrency = "eur"', "currency: String should match"),
        ('market_id = "m1"', 'market_id = "m1"\ncurrency = "EURO"', "currency: String should"),
        ("public_key.pem", "absent.pem", "operator_key_file: cannot read public key"),
        ('"operator.token"', '"absent.token"', "operator_token_file: cannot read"),
        (
            'host = "127.0.0.1"\nusername',
            'host = "127.0.0.1"\nport = 0\nusername',
            "mqtt.port: Input should be greater than or equal to 1",
        ),
        (
            'password_file = "mqtt.password"',
            'password = "secret"',
            "mqtt.password: unknown key (secrets are read from files: use password_file)",
        ),
        ("port = 8080", "port = 70000", "http.port: Input should be less than or equal to 65535"),
        ('market_id = "m1"', 'market_id = "m1"\nverify_every_s = -1', "verify_every_s: Input"),
        ('market_id = "m1"', 'market_id = "m1"\nverify_every_s = "60"', "verify_every_s: Input"),
        ("port = 8080", 'port = "8080"', "http.port: Input should be a valid integer"),
        ("[http]", "[http]\npath = '/x'", "http.path: unknown key"),
        ("[database]", "colour = 'red'\n[database]", "colour: unknown key"),
        ('[database]\nurl = "sqlite:///ledger.db"\n', "", "database: Field required"),
    ],
)
def test_a_problem_is_named_by_its_path(
    folder: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, problem: str
) -> None:
    assert old in BASE
    path = folder / "dashboard.toml"
    path.write_text(BASE.replace(old, new, 1), encoding="utf-8")
    code, out, err = _validate(path, capsys)
    assert (code, out) == (1, "")
    assert f"{path}: {problem}" in err, err


def test_every_problem_is_named_in_one_round(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        BASE.replace('url = "sqlite:///ledger.db"', 'url = "sqlite:///absent.db"')
        .replace("port = 8080", "port = 0")
        .replace('market_id = "m1"', 'market_id = "m 1"')
    )
    path = folder / "dashboard.toml"
    path.write_text(text, encoding="utf-8")
    code, _, err = _validate(path, capsys)
    assert code == 1
    lines = err.splitlines()
    assert len(lines) == 3, lines  # the schema's problems and the URL's, one round
    assert {line.split(": ")[1] for line in lines} == {"http.port", "market_id", "database.url"}


def test_secrets_must_be_private_and_the_token_long(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "dashboard.toml"
    path.write_text(BASE, encoding="utf-8")
    (folder / "operator.token").chmod(0o644)
    (folder / "mqtt.password").chmod(0o640)
    code, _, err = _validate(path, capsys)
    assert code == 1
    assert "operator_token_file: " in err and "is readable by others (mode 644)" in err
    assert "mqtt.password_file: " in err and "(mode 640); chmod 600 it" in err
    (folder / "operator.token").chmod(0o600)
    (folder / "mqtt.password").chmod(0o600)
    (folder / "operator.token").write_text("short\n", encoding="utf-8")
    code, _, err = _validate(path, capsys)
    assert code == 1
    assert err.strip() == f"{path}: operator_token_file: the token must be at least 16 characters"


def test_serving_a_bad_file_is_one_line_and_exit_2(
    folder: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = folder / "dashboard.toml"
    path.write_text(BASE.replace("port = 8080", "port = 0"), encoding="utf-8")
    assert main(["dashboard", "serve", "--config", str(path)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1
    assert err.startswith(f"wattmesh: error: {path}: http.port: Input should be greater")
    with pytest.raises(ConfigError, match=r"http\.port"):
        load_dashboard_config(path)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["serve", "--validate-config"], "--validate-config checks a file: give --config"),
        (["serve"], "give --db URL (the ledger's database) or --config dashboard.toml"),
        (["serve", "--config", "/no/such/dashboard.toml"], "/no/such/dashboard.toml: "),
        (["serve", "--db", "sqlite:///no/such/ledger.db"], "--db: database sqlite:///"),
        (["rebuild"], "give --db URL (the ledger's database) or --config dashboard.toml"),
        (["serve", "--port", "http"], "--port: must be a port number 0..65535, got 'http'"),
        (["serve", "--port", "65536"], "--port: must be a port number 0..65535"),
        (["serve", "--colour"], "unrecognized arguments: --colour"),
        (["login", "--key", "k.pem"], "the following arguments are required: --url, --household"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(["dashboard", *argv])
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    assert code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert len(err.splitlines()) == 1 and message in err, err
