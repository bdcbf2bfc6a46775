"""``wattmesh provision`` (issue 15): the folder it writes, the modes and owners of its
files, every configuration valid for its part's ``--validate-config``, keys from the
OS's randomness (two runs share none), the certificates, and no overwriting of keys
without ``--force``."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest
from cryptography import x509

from wattmesh.broker.keys import load_signing_key
from wattmesh.cli.dispatch import main
from wattmesh.ledger.household_registry import load_registry
from wattmesh.provision._configs import Endpoints
from wattmesh.provision._layout import MOSQUITTO_UID, SERVICE_UID
from wattmesh.provision.provision import Plan, provision

N = 3
AGENTS = ("h001", "h002", "h003")


def _provision(out: Path, *extra: str) -> int:
    return main(
        [
            "provision",
            "--households",
            str(N),
            "--out",
            str(out),
            "--market-id",
            "m7",
            "--hostname",
            "broker.example.net",
            "--hostname",
            "192.168.1.5",
            "--profile-days",
            "2",
            *extra,
        ]
    )


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("provision") / "hood"
    assert _provision(folder) == 0
    return folder


def test_every_configuration_is_valid_for_its_part(
    out: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checks = [
        ("ledger", "run", "--validate-config", "--config", str(out / "ledger/ledger.toml")),
        (
            "forecast",
            "serve",
            "--validate-config",
            "--config",
            str(out / "forecasting/forecast.toml"),
        ),
        (
            "dashboard",
            "serve",
            "--validate-config",
            "--config",
            str(out / "dashboard/dashboard.toml"),
        ),
        *(
            ("agent", "--validate-config", "--config", str(out / "households" / a / "agent.toml"))
            for a in AGENTS
        ),
    ]
    for args in checks:
        code = main(list(args))
        printed = capsys.readouterr()
        assert code == 0, (args, printed.err)
        assert ": ok" in printed.out
    main(list(checks[0]))
    assert "market m7, 3 households" in capsys.readouterr().out


def test_the_layout_and_what_refers_to_what(out: Path) -> None:
    for name in ("mosquitto.conf", "passwd", "acl", "ca.crt", "server.crt", "server.key"):
        assert (out / "mosquitto" / name).is_file(), name
    registry = load_registry(out / "ledger/registry.json")
    assert sorted(registry.households) == list(AGENTS)
    assert (out / "forecasting/registry.json").read_bytes() == (
        out / "ledger/registry.json"
    ).read_bytes()
    operator = load_signing_key(out / "ledger/operator_key.pem").verifying.pem()
    forecaster = load_signing_key(out / "forecasting/forecaster_key.pem").verifying.pem()
    for folder in ("forecasting", "dashboard", *(f"households/{a}" for a in AGENTS)):
        assert (out / folder / "operator_pub.pem").read_bytes() == operator, folder
    for folder in ("ledger", "dashboard", *(f"households/{a}" for a in AGENTS)):
        assert (out / folder / "forecaster_pub.pem").read_bytes() == forecaster, folder
    for agent in AGENTS:
        key = load_signing_key(out / "households" / agent / "private_key.pem")
        assert registry.households[agent].key.kid == key.kid
        profile = json.loads((out / "households" / agent / "profile.json").read_text())
        assert profile["interval_s"] == 900 and len(profile["demand_wh"]) == 2 * 96
        assert len(profile["pv_wh"]) == 2 * 96 and profile["start"] % 86_400 == 0
    acl = (out / "mosquitto/acl").read_text()
    assert "user h002\ntopic write wattmesh/m7/household/h002/reading\n" in acl
    passwd = (out / "mosquitto/passwd").read_text().splitlines()
    assert sorted(line.split(":")[0] for line in passwd) == sorted(
        ("dashboard", "forecaster", "healthcheck", "ledger", *AGENTS)
    )
    assert all(line.split(":")[1].startswith("$7$101$") for line in passwd)
    env = (out / ".env").read_text()
    password = next(x for x in env.splitlines() if x.startswith("POSTGRES_PASSWORD="))
    db_url = f"postgresql://wattmesh:{password.split('=', 1)[1]}@postgres:5432/wattmesh"
    assert f'url = "{db_url}"' in (out / "ledger/ledger.toml").read_text()
    assert stat.S_IMODE((out / ".env").stat().st_mode) == 0o600
    compose = (out / "compose.yaml").read_text()
    assert all(f"household-{a}:" in compose for a in AGENTS)
    conf = (out / "mosquitto/mosquitto.conf").read_text()
    for line in ("allow_anonymous false", "persistence true", "listener 1883", "listener 8883"):
        assert line in conf.splitlines()
    assert "require_certificate true" in conf


def test_secrets_are_0600_and_owned_by_the_uid_that_reads_them(out: Path) -> None:
    for path in (out / "mosquitto").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    for folder in ("ledger", "forecasting", "dashboard", *(f"households/{a}" for a in AGENTS)):
        assert stat.S_IMODE((out / folder).stat().st_mode) == 0o700, folder
        for path in (out / folder).iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert stat.S_IMODE((out / "ca/ca.key").stat().st_mode) == 0o600
    if os.geteuid() != 0:
        pytest.skip("owners are set when provisioning as root")
    assert {p.stat().st_uid for p in (out / "mosquitto").rglob("*")} == {MOSQUITTO_UID}
    assert (out / "mosquitto").stat().st_uid == MOSQUITTO_UID
    services = [out / "ledger", out / "dashboard", out / "households/h001"]
    assert {p.stat().st_uid for f in services for p in (f, *f.iterdir())} == {SERVICE_UID}
    assert (out / "ca/ca.key").stat().st_uid == 0  # never mounted into a container


def test_the_certificates(out: Path) -> None:
    ca = x509.load_pem_x509_certificate((out / "mosquitto/ca.crt").read_bytes())
    server = x509.load_pem_x509_certificate((out / "mosquitto/server.crt").read_bytes())
    names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(names.get_values_for_type(x509.DNSName)) == {
        "mosquitto",
        "localhost",
        "broker.example.net",
    }
    assert {str(ip) for ip in names.get_values_for_type(x509.IPAddress)} == {
        "127.0.0.1",
        "192.168.1.5",
    }
    server.verify_directly_issued_by(ca)
    leaf = x509.load_pem_x509_certificate((out / "households/h002/client.crt").read_bytes())
    leaf.verify_directly_issued_by(ca)
    assert leaf.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == "h002"


def test_existing_keys_are_kept_unless_forced(
    out: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    second = tmp_path / "hood"
    assert _provision(second) == 0
    before = (second / "households/h001/private_key.pem").read_bytes()
    assert before != (out / "households/h001/private_key.pem").read_bytes()  # no seed
    capsys.readouterr()
    assert _provision(second) == 2
    err = capsys.readouterr().err
    assert "holds keys already" in err and "--force" in err
    assert (second / "households/h001/private_key.pem").read_bytes() == before
    assert _provision(second, "--force") == 0
    assert (second / "households/h001/private_key.pem").read_bytes() != before


def test_help_and_bad_arguments(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["provision", "--help"])
    assert exit_.value.code == 0
    text = capsys.readouterr().out
    for words in ("--households", "--hostname", "--force", "mosquitto/", "0600", "1883"):
        assert words in text
    assert main(["provision", "--households", "0", "--out", str(tmp_path / "x")]) == 2
    assert (
        main(["provision", "--households", "2", "--out", str(tmp_path / "y"), "--market-id", "a/b"])
        == 2
    )
    assert "market id" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_forced_with_fewer_households_names_the_stale_folders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "hood"
    assert _provision(folder) == 0
    assert main(["provision", "--households", "1", "--out", str(folder), "--force"]) == 0
    assert "households/{h002,h003} of an earlier run" in capsys.readouterr().out
    assert "h002" not in (folder / "mosquitto/acl").read_text()


def test_tls_endpoints_give_configurations_that_validate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The TLS variant: every part connects to 8883 with its client certificate."""

    def tls(password: str) -> Endpoints:
        return Endpoints(db_url=f"postgresql://wattmesh:{password}@postgres/wattmesh", tls=True)

    done = provision(tmp_path / "hood", Plan(households=1, profile_days=1), endpoints=tls)
    agent = done.layout.household("h001") / "agent.toml"
    ledger = done.layout.ledger / "ledger.toml"
    assert 'broker = "mqtts://mosquitto:8883"' in agent.read_text()
    assert "[mqtt.tls]" in ledger.read_text() and "port = 8883" in ledger.read_text()
    assert main(["agent", "--validate-config", "--config", str(agent)]) == 0
    assert main(["ledger", "run", "--validate-config", "--config", str(ledger)]) == 0
    assert capsys.readouterr().out.count(": ok") == 2


def test_the_tls_flag(tmp_path: Path) -> None:
    folder = tmp_path / "hood"
    args = ["provision", "--households", "1", "--profile-days", "1", "--tls", "--out"]
    assert main([*args, str(folder)]) == 0
    assert "port = 8883" in (folder / "dashboard/dashboard.toml").read_text()
    assert "mqtts://mosquitto:8883" in (folder / "households/h001/agent.toml").read_text()
