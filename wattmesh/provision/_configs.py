"""The configuration files ``wattmesh provision`` writes (pure: text only).

Every path in them is relative to the file's own folder (a container mounts that
folder at ``/etc/wattmesh``), except the state and data folders (``Endpoints``):
those live on a volume. Formats: docs/protocol.md ("wattmesh ledger run"),
docs/forecasting.md ("The service"), docs/dashboard.md, wattmesh/config/agent_config.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final

from wattmesh.broker.acl import DASHBOARD, FORECASTER, LEDGER

__all__ = [
    "Endpoints",
    "agent_toml",
    "dashboard_toml",
    "forecast_toml",
    "ledger_toml",
]

# File names inside each folder (docs/provisioning.md, "Layout").
PASSWORD: Final = "mqtt_password"  # noqa: S105 - a file name
CA: Final = "ca.crt"
CLIENT_CERT: Final = "client.crt"
CLIENT_KEY: Final = "client.key"
OPERATOR_KEY: Final = "operator_key.pem"
OPERATOR_PUB: Final = "operator_pub.pem"
FORECASTER_KEY: Final = "forecaster_key.pem"
FORECASTER_PUB: Final = "forecaster_pub.pem"
REGISTRY: Final = "registry.json"
OPERATOR_TOKEN: Final = "operator_token"  # noqa: S105 - a file name
AGENT_KEY: Final = "private_key.pem"
AGENT_PUB: Final = "public_key.pem"
PROFILE: Final = "profile.json"


@dataclass(frozen=True)
class Endpoints:
    """Where the parts find each other and keep their state.

    The defaults are the compose topology's (service names as host names); a local
    run overrides them. ``tls``: the clients connect to ``mqtt_tls_port`` with their
    client certificate (else the plain ``mqtt_port`` with their password only).
    """

    db_url: str
    mqtt_host: str = "mosquitto"
    mqtt_port: int = 1883
    mqtt_tls_port: int = 8883
    tls: bool = False
    state_root: str = "/var/lib/wattmesh"
    dashboard_host: str = "0.0.0.0"  # noqa: S104 - inside its container, published by compose
    dashboard_port: int = 8080
    ledger_metrics_port: int | None = 9100  # the ledger's /metrics (its health); None: off


def _s(value: str) -> str:
    """A TOML basic string (JSON's escapes are TOML's)."""
    return json.dumps(value)


def _service_mqtt(ends: Endpoints, username: str, client_id: str) -> str:
    port = ends.mqtt_tls_port if ends.tls else ends.mqtt_port
    text = (
        f"[mqtt]\nhost = {_s(ends.mqtt_host)}\nport = {port}\nclient_id = {_s(client_id)}\n"
        f"username = {_s(username)}\npassword_file = {_s(PASSWORD)}\n"
    )
    if ends.tls:
        text += (
            f"[mqtt.tls]\nca_file = {_s(CA)}\ncert_file = {_s(CLIENT_CERT)}\n"
            f"key_file = {_s(CLIENT_KEY)}\n"
        )
    return text


def ledger_toml(market_id: str, ends: Endpoints, *, interval_s: int) -> str:
    return (
        "# wattmesh ledger run --config ledger.toml  (written by wattmesh provision)\n"
        f"market_id = {_s(market_id)}\n"
        f"operator_key_file = {_s(OPERATOR_KEY)}\n"
        f"forecaster_key_file = {_s(FORECASTER_PUB)}\n"
        f"registry_file = {_s(REGISTRY)}\n"
        f"interval_s = {interval_s}\n"
        f"[database]\nurl = {_s(ends.db_url)}\n"
        + _service_mqtt(ends, LEDGER, f"{market_id}-ledger")
        + _gate(interval_s)
        + '[mechanism]\nname = "uniform"\n'
        "[[tariffs]]\nstart_hour_utc = 0\n"
        "retail_micro_per_kwh = 250000\nfeed_in_micro_per_kwh = 70000\n"
        "[[tariffs]]\nstart_hour_utc = 16\n"
        "retail_micro_per_kwh = 380000\nfeed_in_micro_per_kwh = 90000\n"
        "[[tariffs]]\nstart_hour_utc = 20\n"
        "retail_micro_per_kwh = 250000\nfeed_in_micro_per_kwh = 70000\n" + _metrics(ends)
    )


def _gate(interval_s: int) -> str:
    """The defaults (120 s, 30 s) where the interval allows, else 3/4 and 1/4 of it."""
    timeout_s = min(120.0, interval_s * 0.75)
    grace_s = min(30.0, interval_s * 0.25)
    return f"[gate]\ntimeout_s = {timeout_s}\ngrace_s = {grace_s}\n"


def _metrics(ends: Endpoints) -> str:
    if ends.ledger_metrics_port is None:
        return ""
    return f'[metrics]\nport = {ends.ledger_metrics_port}\nhost = "0.0.0.0"\n'


def forecast_toml(market_id: str, ends: Endpoints, *, interval_s: int) -> str:
    return (
        "# wattmesh forecast serve --config forecast.toml  (written by wattmesh provision)\n"
        f"market_id = {_s(market_id)}\n"
        f"forecaster_key_file = {_s(FORECASTER_KEY)}\n"
        f"operator_key_file = {_s(OPERATOR_PUB)}\n"
        f"registry_file = {_s(REGISTRY)}\n"
        f"interval_s = {interval_s}\n"
        f"[database]\nurl = {_s(ends.db_url)}\n"
        f"[ledger]\nurl = {_s(ends.db_url)}\n"
        + _service_mqtt(ends, FORECASTER, f"{market_id}-forecaster")
        + '[models]\ndemand = "auto"\npv = "auto"\n'
        "[refit]\nhour_utc = 2\nworkers = 1\n"
    )


def dashboard_toml(market_id: str, ends: Endpoints) -> str:
    return (
        "# wattmesh dashboard serve --config dashboard.toml  (written by wattmesh provision)\n"
        f"market_id = {_s(market_id)}\n"
        f"operator_key_file = {_s(OPERATOR_PUB)}\n"
        f"forecaster_key_file = {_s(FORECASTER_PUB)}\n"
        f"operator_token_file = {_s(OPERATOR_TOKEN)}\n"
        f"[database]\nurl = {_s(ends.db_url)}\n"
        + _service_mqtt(ends, DASHBOARD, f"{market_id}-dashboard")
        + f"[http]\nhost = {_s(ends.dashboard_host)}\nport = {ends.dashboard_port}\n"
    )


def agent_toml(
    market_id: str, agent_id: str, ends: Endpoints, *, max_power_w: int, home_assistant: bool
) -> str:
    if ends.tls:
        broker = f"mqtts://{ends.mqtt_host}:{ends.mqtt_tls_port}"
        tls = (
            f"[mqtt.tls]\nca_file = {_s(CA)}\ncert_file = {_s(CLIENT_CERT)}\n"
            f"key_file = {_s(CLIENT_KEY)}\n"
        )
    else:
        broker, tls = f"mqtt://{ends.mqtt_host}:{ends.mqtt_port}", ""
    return (
        "# wattmesh agent --config agent.toml  (written by wattmesh provision)\n"
        f"agent_id = {_s(agent_id)}\n"
        f"market_id = {_s(market_id)}\n"
        f"broker = {_s(broker)}\n"
        f"key_file = {_s(AGENT_KEY)}\n"
        f"state_dir = {_s(f'{ends.state_root}/{agent_id}')}\n"
        f"operator_key_file = {_s(OPERATOR_PUB)}\n"
        f"forecaster_key_file = {_s(FORECASTER_PUB)}\n"
        f"max_power_w = {max_power_w}\n"
        f"[mqtt]\nusername = {_s(agent_id)}\npassword_file = {_s(PASSWORD)}\n"
        + tls
        + "# The simulation's profile of this household, replayed on the wall clock;\n"
        "# a real meter instead: docs/meters.md.\n"
        f'[meter]\nkind = "replay"\nfile = {_s(PROFILE)}\n'
        + ("[homeassistant]\nenabled = true\n" if home_assistant else "")
    )
