"""The broker's ACL (broker/acl.py) against what each part's code really subscribes to
and publishes, role by role, so that the ACL cannot drift from the code: the
subscriptions are taken from the objects the parts build (the agent's transport, its
Home Assistant bridge, the ledger's, ``forecast serve``'s and the dashboard's
subscription lists); the publishes from the topic functions their code calls. Every
topic of broker/topics.py has a publisher in the table. That Mosquitto applies the
rendered file so: tests/test_provision_broker.py and tests/test_provision_run.py."""

from __future__ import annotations

import base64
import inspect
import subprocess
from pathlib import Path

import pytest

from wattmesh.agents.agent import AgentConfig, agent_transport
from wattmesh.agents.ha_bridge import HomeAssistantBridge
from wattmesh.agents.homeassistant import HaTopics, HomeAssistantConfig
from wattmesh.agents.meter import SimulatedMeter
from wattmesh.agents.presence import StatusSigner
from wattmesh.broker.acl import (
    Access,
    Grant,
    HomeAssistantAccess,
    allows,
    dashboard_grants,
    forecaster_grants,
    household_grants,
    ledger_grants,
    market_acl,
    render_acl,
)
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.mosquitto_passwd import hash_password, password_line
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, TransportConfig
from wattmesh.cli.forecast_cli import serve_subscriptions
from wattmesh.dashboard.live import live_subscriptions
from wattmesh.ledger.service import ledger_subscriptions

T = Topics("m1")
ME, OTHER = "h001", "h002"
BASE = TransportConfig(address=BrokerAddress("127.0.0.1", 1883), client_id="c")
HA = HomeAssistantConfig()


def _ha_access(agent: str) -> HomeAssistantAccess:
    return HomeAssistantAccess(HA.prefix, HaTopics(T, agent, HA.prefix).node_id)


def _mine() -> tuple[Grant, ...]:
    return household_grants(T, ME, home_assistant=_ha_access(ME))


def _bridge() -> HomeAssistantBridge:
    meter = SimulatedMeter(start=0, interval_s=900, demand_wh=[1], pv_wh=[0], clock=lambda: 0)
    return HomeAssistantBridge(HA, AgentConfig(ME, T), BASE, meter, sw_version="test")


def _household_subscriptions() -> list[str]:
    agent = agent_transport(AgentConfig(ME, T), BASE)
    return [f for f, _ in agent._subscriptions] + [f for f, _ in _bridge().transport._subscriptions]


def _household_publishes() -> list[str]:
    """The agent's publishes: its signed messages (agents/agent.py, _audit_feed.py),
    diagnostics (agent.py), its status and will (presence.py), and the bridge's."""
    status = StatusSigner(SigningKey.generate(), T, ME).connect_messages()
    assert status.will is not None
    bridge = _bridge()
    ha = bridge.ha
    return [
        T.reading(ME),
        T.order(ME),
        T.diagnostics(ME),
        T.audit_request(ME),
        status.will.topic,
        *(topic for topic, *_ in status.publish),
        *(topic for topic, *_ in bridge.transport._on_connect_publish),  # discovery etc.
        ha.meter,
        ha.price,
        ha.trade,
        ha.availability,
    ]


# (role, grants, subscriptions from the code, publishes of the code)
ROLES = {
    "household": (_mine, _household_subscriptions, _household_publishes),
    "ledger": (
        lambda: ledger_grants(T),
        lambda: [f for f, _ in ledger_subscriptions(T)],
        # ledger/service.py: _publish of announce, trades, checkpoint, summary, and
        # each household's error, receipt and checkpoint reply.
        lambda: [
            T.announce,
            T.trades,
            T.checkpoint,
            T.summary,
            T.error(ME),
            T.receipt(OTHER),
            T.checkpoint_reply(ME),
        ],
    ),
    "forecaster": (
        lambda: forecaster_grants(T),
        lambda: [f for f, _ in serve_subscriptions(T)],
        # forecasting/server.py: forecasts, the neighbourhood's, anomaly flags, its health.
        lambda: [T.forecast(ME), T.neighbourhood_forecast, T.anomaly(OTHER), T.forecaster_health],
    ),
    "dashboard": (
        lambda: dashboard_grants(T),
        lambda: [f for f, _ in live_subscriptions(T)],
        list,
    ),
}


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_read_everything_its_code_subscribes_to(role: str) -> None:
    grants, subscriptions, _ = ROLES[role]
    wanted = subscriptions()
    assert wanted
    assert [f for f in wanted if not allows(grants(), Access.READ, f)] == []


@pytest.mark.parametrize("role", ROLES)
def test_each_role_may_publish_everything_its_code_publishes(role: str) -> None:
    grants, _, publishes = ROLES[role]
    assert [t for t in publishes() if not allows(grants(), Access.WRITE, t)] == []


@pytest.mark.parametrize("role", ROLES)
def test_each_role_is_granted_nothing_its_code_does_not_use(role: str) -> None:
    """Exactly what they need: every grant is used by a subscription or a publish
    (a household's reads of the public summary and neighbourhood forecast, its own
    status and diagnostics aside:
    for its owner's tools, such as Home Assistant logged in as the household; and the
    forecaster's read of its own health, for its container's health probe)."""
    grants, subscriptions, publishes = ROLES[role]
    used = [(Access.READ, f) for f in subscriptions()] + [(Access.WRITE, t) for t in publishes()]
    own = {
        "household": {T.summary, T.neighbourhood_forecast, T.status(ME), T.diagnostics(ME)},
        "forecaster": {T.forecaster_health},  # the container's health probe reads it
    }.get(role, set())
    for grant in grants():
        wanted = [Access.READ, Access.WRITE] if grant.access is Access.READWRITE else [grant.access]
        if grant.filter in own:
            wanted = [a for a in wanted if a is not Access.READ]
        for access in wanted:
            assert any(a is access and allows([grant], access, f) for a, f in used), grant


def test_every_topic_of_the_tree_has_a_publisher_in_the_table() -> None:
    """A topic added to broker/topics.py fails here until a role publishes it."""
    names = [
        name
        for name, member in inspect.getmembers(Topics)
        if not name.startswith("_")
        and (isinstance(member, property) or inspect.isfunction(member))
        and name not in {"root", "household", "agent_of", "classify"}
        and not name.startswith("all_")
    ]
    published = [t for _, _, publishes in ROLES.values() for t in publishes()]
    for name in names:
        member = getattr(T, name)
        topics = [member(a) for a in (ME, OTHER)] if callable(member) else [member]
        assert any(t in published for t in topics), name


def test_a_household_may_not_touch_another_households_topics() -> None:
    mine = _mine()
    for topic in (T.reading(OTHER), T.order(OTHER), T.status(OTHER), T.audit_request(OTHER)):
        assert not allows(mine, Access.WRITE, topic)
    for private in (T.forecast, T.error, T.receipt, T.checkpoint_reply, T.reading, T.status):
        assert not allows(mine, Access.READ, private(OTHER))
    for filter_ in (T.all_readings, f"{T.root}/household/+/forecast", f"{T.root}/#", "#"):
        assert not allows(mine, Access.READ, filter_)
    other_device = HaTopics(T, OTHER, HA.prefix).config("sensor", "power")
    assert not allows(mine, Access.WRITE, other_device)
    for market in (T.announce, T.trades, T.checkpoint, T.summary, T.forecast(ME)):
        assert not allows(mine, Access.WRITE, market)


def test_the_rendered_file_has_a_block_per_user_and_nothing_for_anonymous() -> None:
    text = render_acl(market_acl(T, [OTHER, ME], home_assistant=_ha_access))
    before_users = text.split("\nuser ", 1)[0]
    assert [line for line in before_users.splitlines() if not line.startswith("#")] == []
    users = [line.split()[1] for line in text.splitlines() if line.startswith("user ")]
    assert users == ["ledger", "forecaster", "dashboard", "healthcheck", ME, OTHER]
    assert f"topic write {T.reading(ME)}" in text
    assert f"topic read {T.all_readings}" in text


def test_service_names_and_shared_discovery_nodes_are_refused() -> None:
    with pytest.raises(ConfigError, match="service usernames"):
        market_acl(T, ["ledger"])
    # HA node ids replace '.' by '_': h.1 and h_1 would publish each other's entities.
    with pytest.raises(ConfigError, match="share Home Assistant node"):
        market_acl(T, ["h.1", "h_1"], home_assistant=_ha_access)


def test_password_lines_are_mosquitto_passwd_s(tmp_path: Path) -> None:
    """The hash of a line written by the installed mosquitto_passwd, recomputed."""
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "u1", "s3cret"], check=True)
    user, hashed = path.read_text(encoding="utf-8").strip().split(":", 1)
    _, kind, iterations, salt, _digest = hashed.split("$")
    assert (user, kind) == ("u1", "7")
    ours = hash_password("s3cret", salt=base64.b64decode(salt), iterations=int(iterations))
    assert ours == hashed
    line = password_line("u1", "s3cret")
    assert line.startswith("u1:$7$101$") and line != password_line("u1", "s3cret")  # own salt
    with pytest.raises(ConfigError):
        password_line("a:b", "x")
