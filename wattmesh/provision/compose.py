"""The neighbourhood's ``compose.yaml`` and ``.env`` (pure: functions returning text).

``wattmesh provision`` writes both into its folder DIR, next to the folders they mount:
``mosquitto/`` (the broker's configuration, read-only), ``ledger/``, ``forecasting/``,
``dashboard/`` and ``households/<id>/``, each mounted read-only at ``/etc/wattmesh`` in
its container, with a named volume at ``/var/lib/wattmesh`` for its state. Each
household is a service of its own (each holds its own signing key, so replicas would
not do), made from one template (``x-household: &household``). The images are built
from ``docker/Dockerfile`` (targets ``agent`` and ``services``) in the source tree that
``.env`` names. docker/README.md explains the services; docker/compose.yaml is this
module's output for three households (tests/test_docker_files.py keeps it current).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final

from wattmesh.provision._yaml import Anchored, Merge, Node, dump

__all__ = [
    "DASHBOARD_PORT",
    "LEDGER_METRICS_PORT",
    "MOSQUITTO_IMAGE",
    "POSTGRES_IMAGE",
    "household_service",
    "render_compose",
    "render_env",
]

MOSQUITTO_IMAGE: Final = "eclipse-mosquitto:2.0.22"
POSTGRES_IMAGE: Final = "postgres:16.10-bookworm"
AGENT_IMAGE: Final = "wattmesh-agent:0.1.0"
SERVICES_IMAGE: Final = "wattmesh-services:0.1.0"
DASHBOARD_PORT: Final = 8080  # dashboard.toml [http] port, inside its container
LEDGER_METRICS_PORT: Final = 9100  # ledger.toml [metrics] port, inside its container
MQTT_PORT: Final = 1883  # plain, on the compose network only
MQTT_TLS_PORT: Final = 8883  # TLS with client certificates, published on the host
CONFIG_DIR: Final = "/etc/wattmesh"
DATA_DIR: Final = "/var/lib/wattmesh"
DATABASE: Final = "wattmesh"  # PostgreSQL database and user

# An agent id (a topic segment, broker.topics) that also makes a service and host name.
_HOUSEHOLD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_HEADER = (
    "# A wattmesh neighbourhood, written by `wattmesh provision` "
    "(wattmesh.provision.compose): do not edit.\n"
    "# Run from this folder: docker compose up -d --build   (docker/README.md)\n"
)
_PYTHON_GET = "import urllib.request; urllib.request.urlopen({url!r}, timeout=4)"
_MOSQUITTO_PROBE = (
    "mosquitto_sub -h localhost -p 1883 -u healthcheck"
    ' -P "$$(cat /mosquitto/config/healthcheck_password)"'
    " -t '$$SYS/broker/uptime' -C 1 -W 3"
)
# The forecasting service serves no port: its probe reads its retained, signed health
# (wattmesh.cli.forecast_health), which costs an interpreter start (about 1 s of CPU, measured).
_FORECASTER_PROBE = ["CMD", "wattmesh", "forecast", "health", "--timeout", "10", "--config"]


def household_service(household: str) -> str:
    """The compose service (and host) name of household ``household``."""
    if not _HOUSEHOLD_ID.fullmatch(household):
        raise ValueError(
            f"household id {household!r}: 1 to 64 of A-Z a-z 0-9 _ . -, "
            "starting with a letter or digit"
        )
    return f"household-{household}"


def render_compose(households: Sequence[str]) -> str:
    """The ``compose.yaml`` of a neighbourhood of ``households`` (agent ids, in order)."""
    names = [household_service(h) for h in households]
    if not names:
        raise ValueError("a neighbourhood needs at least one household")
    if len(set(names)) != len(names):
        raise ValueError("household ids must be unique")
    services: dict[str, Node] = {
        "mosquitto": _mosquitto(),
        "postgres": _postgres(),
        "ledger": _ledger(),
        "forecaster": _forecaster(),
        "dashboard": _dashboard(),
    }
    volumes: dict[str, Node] = {
        "mosquitto-data": {},
        "postgres-data": {},
        "ledger-data": {},
        "forecaster-data": {},
        "dashboard-data": {},
    }
    for household, name in zip(households, names, strict=True):
        services[name] = {
            "<<": Merge("household"),
            "volumes": [f"./households/{household}:{CONFIG_DIR}:ro", f"{name}-data:{DATA_DIR}"],
        }
        volumes[f"{name}-data"] = {}
    document: dict[str, Node] = {
        "x-services": Anchored("services", _image("WATTMESH_IMAGE_SERVICES", SERVICES_IMAGE)),
        "x-household": Anchored("household", _household_template()),
        "services": services,
        "volumes": volumes,
    }
    return _HEADER + "\n" + dump(document)


def render_env(
    *,
    postgres_password: str,
    source_dir: str,
    project_name: str = "wattmesh",
    dashboard_port: int = DASHBOARD_PORT,
    mqtt_tls_port: int = MQTT_TLS_PORT,
    image_agent: str = AGENT_IMAGE,
    image_services: str = SERVICES_IMAGE,
) -> str:
    """The ``.env`` next to ``compose.yaml`` (it holds a password: write it 0600).

    ``source_dir`` is the wattmesh source tree the images are built from (the build
    context); the ports are where the host publishes the dashboard and MQTT over TLS.
    """
    values = {
        "COMPOSE_PROJECT_NAME": project_name,
        "POSTGRES_PASSWORD": postgres_password,
        "WATTMESH_SOURCE_DIR": source_dir,
        "WATTMESH_IMAGE_AGENT": image_agent,
        "WATTMESH_IMAGE_SERVICES": image_services,
        "WATTMESH_DASHBOARD_PORT": str(dashboard_port),
        "WATTMESH_MQTT_TLS_PORT": str(mqtt_tls_port),
    }
    if not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", project_name):
        raise ValueError(f"project name {project_name!r}: lower-case letters, digits, _ and -")
    for port in (dashboard_port, mqtt_tls_port):
        if not 1 <= port <= 65535:
            raise ValueError(f"port {port} is not in 1..65535")
    lines = ["# wattmesh neighbourhood settings for compose.yaml (secret: keep it 0600)"]
    for key, value in values.items():
        if not value or any(c in value for c in "\n\r'\"$#") or value != value.strip():
            raise ValueError(f"{key}: {value!r} cannot be written into .env as it is")
        lines.append(f"{key}={value}")
    return "\n".join(lines) + "\n"


def _image(variable: str, default: str) -> dict[str, Node]:
    target = "agent" if variable == "WATTMESH_IMAGE_AGENT" else "services"
    return {
        "image": f"${{{variable}:-{default}}}",
        "build": {
            "context": "${WATTMESH_SOURCE_DIR:-..}",
            "dockerfile": "docker/Dockerfile",
            "target": target,
        },
        "restart": "unless-stopped",
    }


def _healthy(*services: str) -> dict[str, Node]:
    return {name: {"condition": "service_healthy"} for name in services}


def _check(test: Sequence[str], *, start_period: str = "30s") -> dict[str, Node]:
    return {
        "test": list(test),
        "interval": "15s",
        "timeout": "5s",
        "retries": 5,
        "start_period": start_period,
    }


def _http_check(url: str, *, start_period: str) -> dict[str, Node]:
    return _check(["CMD", "python", "-c", _PYTHON_GET.format(url=url)], start_period=start_period)


def _command(*args: str) -> list[str]:
    return ["wattmesh", *args, "--config"]


def _household_template() -> dict[str, Node]:
    return {
        **_image("WATTMESH_IMAGE_AGENT", AGENT_IMAGE),
        "command": [*_command("agent"), f"{CONFIG_DIR}/agent.toml"],
        "depends_on": _healthy("mosquitto", "ledger"),
    }


def _mosquitto() -> dict[str, Node]:
    return {
        "image": MOSQUITTO_IMAGE,
        "restart": "unless-stopped",
        "ports": [f"${{WATTMESH_MQTT_TLS_PORT:-{MQTT_TLS_PORT}}}:{MQTT_TLS_PORT}"],
        "volumes": ["./mosquitto:/mosquitto/config:ro", "mosquitto-data:/mosquitto/data"],
        "healthcheck": _check(["CMD-SHELL", _MOSQUITTO_PROBE], start_period="10s"),
    }


def _postgres() -> dict[str, Node]:
    return {
        "image": POSTGRES_IMAGE,
        "restart": "unless-stopped",
        "environment": {
            "POSTGRES_DB": DATABASE,
            "POSTGRES_USER": DATABASE,
            "POSTGRES_PASSWORD": "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is set in .env}",
        },
        "volumes": ["postgres-data:/var/lib/postgresql/data"],
        "healthcheck": _check(
            ["CMD", "pg_isready", "-U", DATABASE, "-d", DATABASE], start_period="20s"
        ),
    }


def _service(folder: str, data_volume: str) -> dict[str, Node]:
    return {
        "<<": Merge("services"),
        "volumes": [f"./{folder}:{CONFIG_DIR}:ro", f"{data_volume}:{DATA_DIR}"],
    }


def _ledger() -> dict[str, Node]:
    # /metrics is served once the ledger holds the lease, has connected and runs.
    url = f"http://127.0.0.1:{LEDGER_METRICS_PORT}/metrics"
    return {
        **_service("ledger", "ledger-data"),
        "command": [*_command("ledger", "run"), f"{CONFIG_DIR}/ledger.toml"],
        "depends_on": _healthy("mosquitto", "postgres"),
        "healthcheck": _http_check(url, start_period="60s"),
        "stop_grace_period": "30s",  # SIGTERM closes the open interval first
    }


def _forecaster() -> dict[str, Node]:
    return {
        **_service("forecasting", "forecaster-data"),
        "command": [*_command("forecast", "serve"), f"{CONFIG_DIR}/forecast.toml"],
        "depends_on": _healthy("mosquitto", "postgres", "ledger"),
        "healthcheck": {
            **_check([*_FORECASTER_PROBE, f"{CONFIG_DIR}/forecast.toml"], start_period="60s"),
            "interval": "60s",
            "timeout": "20s",
            "retries": 3,
        },
    }


def _dashboard() -> dict[str, Node]:
    # /api/health answers 503 while the ledger's database cannot be opened and read.
    url = f"http://127.0.0.1:{DASHBOARD_PORT}/api/health"
    return {
        **_service("dashboard", "dashboard-data"),
        "command": [*_command("dashboard", "serve"), f"{CONFIG_DIR}/dashboard.toml"],
        "ports": [f"${{WATTMESH_DASHBOARD_PORT:-{DASHBOARD_PORT}}}:{DASHBOARD_PORT}"],
        "depends_on": _healthy("mosquitto", "postgres", "ledger"),
        "healthcheck": _http_check(url, start_period="120s"),
        "stop_grace_period": "40s",  # a verification in progress may take 30 s to stop
    }
