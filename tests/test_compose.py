"""The neighbourhood's compose.yaml and .env (wattmesh.provision.compose), checked
statically: no Docker engine runs here, so the files are parsed, compared with what
they must say, and validated against the Compose Specification's schema."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from wattmesh.cli.dispatch import build_parser
from wattmesh.provision.compose import (
    MOSQUITTO_IMAGE,
    POSTGRES_IMAGE,
    household_service,
    render_compose,
    render_env,
)

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docker" / "compose.yaml"
EXAMPLE_HOUSEHOLDS = ["h001", "h002", "h003"]  # docker/compose.yaml's neighbourhood
SERVICES = ["mosquitto", "postgres", "ledger", "forecaster", "dashboard"]


def _tool(name: str) -> str:
    path = Path(sys.executable).parent / name
    found = str(path) if path.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: pip install --group dev (pyproject.toml)")
    return found


def _parse(text: str) -> dict[str, Any]:
    data = YAML(typ="safe", pure=True).load(io.StringIO(text))
    assert isinstance(data, dict)
    return data


def _validate(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_tool("check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_checked_in_example_is_what_render_compose_writes() -> None:
    assert EXAMPLE.read_text(encoding="utf-8") == render_compose(EXAMPLE_HOUSEHOLDS), (
        "docker/compose.yaml is stale: regenerate it with render_compose(['h001', 'h002', 'h003'])"
    )


@pytest.mark.parametrize("households", [3, 5])
def test_compose_files_pass_the_compose_specification(tmp_path: Path, households: int) -> None:
    if households == 3:
        path = EXAMPLE
    else:
        path = tmp_path / "compose.yaml"
        path.write_text(render_compose([f"h{i:03d}" for i in range(1, households + 1)]))
    result = _validate(path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok -- validation done" in result.stdout


def test_the_schema_check_rejects_a_misspelled_depends_on_condition(tmp_path: Path) -> None:
    text = render_compose(["h001", "h002"])
    path = tmp_path / "compose.yaml"
    path.write_text(text.replace("service_healthy", "service_healty", 1))
    result = _validate(path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "service_healty" in result.stdout


def test_one_service_per_household_from_the_template() -> None:
    households = ["h001", "h002", "a.b-c_d", "Z9"]
    data = _parse(render_compose(households))
    services = data["services"]
    assert list(services) == SERVICES + [f"household-{h}" for h in households]
    template = data["x-household"]
    for household in households:
        service = services[f"household-{household}"]
        # the merge key gave each household the whole template, plus its own folder
        assert {k: v for k, v in service.items() if k != "volumes"} == template
        assert service["volumes"] == [
            f"./households/{household}:/etc/wattmesh:ro",
            f"household-{household}-data:/var/lib/wattmesh",
        ]
        assert f"household-{household}-data" in data["volumes"]
    assert template["image"] == "${WATTMESH_IMAGE_AGENT:-wattmesh-agent:0.1.0}"
    assert template["build"] == {
        "context": "${WATTMESH_SOURCE_DIR:-..}",
        "dockerfile": "docker/Dockerfile",
        "target": "agent",
    }
    assert template["command"] == ["wattmesh", "agent", "--config", "/etc/wattmesh/agent.toml"]
    assert "household-" not in str(data["x-services"])
    # the text uses the anchor and merge key, not a copy per household
    text = render_compose(households)
    assert text.count("<<: *household") == len(households)
    assert text.count("x-household: &household") == 1


def test_services_start_in_order_of_health_and_restart() -> None:
    data = _parse(render_compose(["h001"]))
    services = data["services"]
    for name, service in services.items():
        assert service["restart"] == "unless-stopped", name
        for dependency, how in service.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in services[dependency], f"{name} waits on {dependency}"
    assert set(services["ledger"]["depends_on"]) == {"mosquitto", "postgres"}
    for name in ("forecaster", "dashboard"):
        assert set(services[name]["depends_on"]) == {"mosquitto", "postgres", "ledger"}
    assert set(services["household-h001"]["depends_on"]) == {"mosquitto", "ledger"}
    for name in SERVICES:
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and check["retries"] >= 1


def test_images_are_pinned_and_built_from_the_dockerfile_targets() -> None:
    services = _parse(render_compose(["h001"]))["services"]
    assert re.fullmatch(r"eclipse-mosquitto:2\.0\.\d+", MOSQUITTO_IMAGE)
    assert re.fullmatch(r"postgres:16\.\d+-bookworm", POSTGRES_IMAGE)
    assert services["mosquitto"]["image"] == MOSQUITTO_IMAGE
    assert services["postgres"]["image"] == POSTGRES_IMAGE
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.M))
    for name in ("ledger", "forecaster", "dashboard", "household-h001"):
        build = services[name]["build"]
        assert build["dockerfile"] == "docker/Dockerfile" and build["target"] in stages
        expected = "agent" if name.startswith("household-") else "services"
        assert build["target"] == expected, name


def test_what_each_service_runs_and_mounts() -> None:
    services = _parse(render_compose(["h001"]))["services"]
    assert services["mosquitto"]["volumes"] == [
        "./mosquitto:/mosquitto/config:ro",
        "mosquitto-data:/mosquitto/data",
    ]
    assert services["mosquitto"]["ports"] == ["${WATTMESH_MQTT_TLS_PORT:-8883}:8883"]
    probe = services["mosquitto"]["healthcheck"]["test"][1]
    # `$$` is compose's escape: the shell inside the container gets `$SYS` and `$(cat ...)`
    assert "-t '$$SYS/broker/uptime'" in probe and "$$(cat /mosquitto/config/" in probe
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    assert services["postgres"]["healthcheck"]["test"][:2] == ["CMD", "pg_isready"]
    for name, folder, config in (
        ("ledger", "ledger", "ledger.toml"),
        ("forecaster", "forecasting", "forecast.toml"),
        ("dashboard", "dashboard", "dashboard.toml"),
    ):
        service = services[name]
        assert service["volumes"][0] == f"./{folder}:/etc/wattmesh:ro"
        assert service["volumes"][1].endswith(":/var/lib/wattmesh")
        assert service["command"][-2:] == ["--config", f"/etc/wattmesh/{config}"]
    assert "http://127.0.0.1:9100/metrics" in services["ledger"]["healthcheck"]["test"][-1]
    assert "http://127.0.0.1:8080/api/health" in services["dashboard"]["healthcheck"]["test"][-1]
    assert services["dashboard"]["ports"] == ["${WATTMESH_DASHBOARD_PORT:-8080}:8080"]


def test_health_probes_run_as_written() -> None:
    """The probes are real programs: the HTTP one fails on a port where nothing answers,
    the forecaster's is a command this wattmesh parses (tests/test_forecast_health.py
    runs it against a broker)."""
    services = _parse(render_compose(["h001"]))["services"]
    http = services["ledger"]["healthcheck"]["test"][-1].replace("9100", "9")
    assert (
        subprocess.run([sys.executable, "-c", http], check=False, capture_output=True).returncode
        == 1
    )
    forecaster = services["forecaster"]["healthcheck"]["test"]
    assert forecaster[:4] == ["CMD", "wattmesh", "forecast", "health"]
    args = build_parser().parse_args(forecaster[2:])
    assert (args.config, args.timeout) == ("/etc/wattmesh/forecast.toml", 10.0)
    for name in ("ledger", "forecaster", "dashboard"):
        assert (
            build_parser()
            .parse_args(services[name]["command"][1:])
            .config.startswith("/etc/wattmesh/")
        )
    agent = _parse(render_compose(["h001"]))["x-household"]["command"]
    assert build_parser().parse_args(agent[1:]).config == "/etc/wattmesh/agent.toml"


def test_bad_households_are_refused() -> None:
    for bad in ["", "-h1", "h 1", "h/1", "x" * 65, ".h"]:
        with pytest.raises(ValueError, match="household id"):
            household_service(bad)
    with pytest.raises(ValueError, match="unique"):
        render_compose(["h001", "h001"])
    with pytest.raises(ValueError, match="at least one"):
        render_compose([])


def test_env_holds_every_variable_the_compose_file_reads() -> None:
    env = render_env(postgres_password="s3cret-Pw_1", source_dir="/srv/wattmesh")
    values = dict(line.split("=", 1) for line in env.splitlines() if not line.startswith("#"))
    assert values["POSTGRES_PASSWORD"] == "s3cret-Pw_1"
    assert values["WATTMESH_SOURCE_DIR"] == "/srv/wattmesh"
    assert values["COMPOSE_PROJECT_NAME"] == "wattmesh"
    used = set(re.findall(r"\$\{([A-Z_]+)[:}]", render_compose(["h001"])))
    assert used <= set(values), used - set(values)
    ported = render_env(
        postgres_password="p", source_dir="/s", dashboard_port=18080, mqtt_tls_port=18883
    )
    assert "WATTMESH_DASHBOARD_PORT=18080\n" in ported
    assert "WATTMESH_MQTT_TLS_PORT=18883\n" in ported


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("postgres_password", "a$b", "cannot be written"),
        ("postgres_password", "a\nb", "cannot be written"),
        ("postgres_password", "", "cannot be written"),
        ("source_dir", "/a b ", "cannot be written"),
        ("project_name", "Big Name", "project name"),
        ("dashboard_port", 0, "port"),
        ("mqtt_tls_port", 65536, "port"),
    ],
)
def test_env_refuses_values_it_cannot_write(field: str, value: object, reason: str) -> None:
    settings: dict[str, Any] = {"postgres_password": "p", "source_dir": "/s", field: value}
    with pytest.raises(ValueError, match=reason):
        render_env(**settings)


def test_the_yaml_writer_keeps_every_value_as_written() -> None:
    from wattmesh.provision._yaml import Anchored, Merge, dump

    tricky = ["yes", "no", "on", "null", "~", "1.0", "0o17", "a: b", "x # y", "", "é", "'q'"]
    document = {
        "x-t": Anchored("t", {"list": tricky, "n": 3, "b": True, "empty": {}}),
        "odd key: 1": {"<<": Merge("t"), "n": 4},
    }
    parsed = _parse(dump(document))
    assert parsed["x-t"] == {"list": tricky, "n": 3, "b": True, "empty": {}}
    assert parsed["odd key: 1"] == {"list": tricky, "n": 4, "b": True, "empty": {}}
    with pytest.raises(ValueError, match="anchor"):
        dump({"k": Anchored("bad name", {})})
