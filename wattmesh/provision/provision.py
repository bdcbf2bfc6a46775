"""``wattmesh provision``: a neighbourhood's keys, certificates and configs, in one folder (I/O).

Every key comes from the OS's randomness (``cryptography``'s key generation,
:mod:`secrets`); only the households' replayed load profiles come from a seed (the
simulation's generator, :func:`wattmesh.sim.scenario.build_scenario`). Layout and
what the ACL allows: docs/provisioning.md.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path, PurePosixPath
from typing import Final

from wattmesh.agents.homeassistant import HaTopics, HomeAssistantConfig
from wattmesh.broker.acl import (
    DASHBOARD,
    FORECASTER,
    LEDGER,
    MONITOR,
    HomeAssistantAccess,
    market_acl,
    render_acl,
)
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W
from wattmesh.broker.errors import ConfigError
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.mosquitto_passwd import password_file
from wattmesh.broker.topics import Topics, check_segment
from wattmesh.ledger.household_registry import Household, Registry, write_registry
from wattmesh.provision import _configs as cfg
from wattmesh.provision._certs import Issued, client_cert, new_ca, server_cert
from wattmesh.provision._files import Writer
from wattmesh.provision._layout import MOSQUITTO_UID, SERVICE_UID, Layout
from wattmesh.provision._mosquitto_conf import BrokerFiles, render_mosquitto_conf

__all__ = ["Plan", "Provisioned", "compose_db_url", "local_broker_files", "provision"]

PROFILE_INTERVAL_S: Final = 900  # the replayed profiles' step (the simulation's)
_DB_NAME: Final = "wattmesh"


@dataclass(frozen=True)
class Plan:
    """What to generate. ``interval_s``: the market's interval; ``profile_days``: how
    long each household's replayed profile lasts from today 00:00 UTC;
    ``profile_seed`` and ``pv_share``: the simulation's generator."""

    households: int
    market_id: str = "m1"
    hostnames: tuple[str, ...] = ()
    interval_s: int = 900
    profile_days: int = 30
    profile_seed: int = 1
    pv_share: float = 0.4
    home_assistant: bool = False
    max_power_w: int = DEFAULT_MAX_POWER_W

    def __post_init__(self) -> None:
        if not 1 <= self.households <= 9999:
            raise ConfigError(f"--households must be in 1..9999, got {self.households}")
        check_segment(self.market_id, "market id")
        if not 1 <= self.interval_s <= 86_400 or 86_400 % self.interval_s:
            raise ConfigError(f"the interval must divide a day (s), got {self.interval_s}")
        if not 1 <= self.profile_days <= 366:
            raise ConfigError(f"profile days must be in 1..366, got {self.profile_days}")
        for name in self.hostnames:
            if not name or any(c.isspace() or c in "/," for c in name):
                raise ConfigError(f"--hostname {name!r} is not a host name or IP address")

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """``h001, h002, ...``: the simulation's names (four digits past 999)."""
        width = max(3, len(str(self.households)))
        return tuple(f"h{i:0{width}d}" for i in range(1, self.households + 1))


@dataclass(frozen=True)
class Provisioned:
    """What was written: the layout, the households, the PostgreSQL password (also in
    the configs' database URL), and the ``chown`` commands still to run (not root)."""

    layout: Layout
    market_id: str
    agent_ids: tuple[str, ...]
    postgres_password: str
    endpoints: cfg.Endpoints
    chown_commands: tuple[str, ...]
    stale: tuple[str, ...] = ()  # household folders of an earlier run, not provisioned now


def compose_db_url(password: str) -> str:
    return f"postgresql://wattmesh:{password}@postgres:5432/{_DB_NAME}"


def provision(
    out: Path,
    plan: Plan,
    *,
    force: bool = False,
    endpoints: Callable[[str], cfg.Endpoints] | None = None,
    broker_files: BrokerFiles | None = None,
    now: dt.datetime | None = None,
) -> Provisioned:
    """Write everything into ``out``; refuse (ConfigError) if it holds private keys
    already, unless ``force``. ``endpoints`` turns the generated PostgreSQL password
    into the parts' addresses (default: the compose topology's); ``broker_files``:
    the broker's paths and ports in ``mosquitto.conf`` (default: the container's)."""
    layout = Layout(out)
    existing = layout.private_keys()
    if existing and not force:
        shown = ", ".join(str(p) for p in existing[:3])
        more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
        msg = f"{out} holds keys already ({shown}{more}); use --force to replace them all"
        raise ConfigError(msg)
    when = now or dt.datetime.now(dt.UTC)
    pg_password = secrets.token_urlsafe(24)
    ends = (endpoints or (lambda pw: cfg.Endpoints(db_url=compose_db_url(pw))))(pg_password)
    out.mkdir(parents=True, exist_ok=True)
    w = Writer()
    ca = new_ca(f"wattmesh {plan.market_id} CA", now=when)
    w.folder(layout.ca, uid=None)
    w.file(layout.ca / "ca.key", ca.key_pem)
    w.file(layout.ca / "ca.crt", ca.cert_pem, mode=0o644)
    operator, forecaster = SigningKey.generate(), SigningKey.generate()
    agents = {agent: SigningKey.generate() for agent in plan.agent_ids}
    passwords = _write_mosquitto(w, layout, plan, ca, broker_files or BrokerFiles(), now=when)
    common: dict[str, bytes | str] = {
        cfg.CA: ca.cert_pem,
        cfg.OPERATOR_PUB: operator.verifying.pem(),
        cfg.FORECASTER_PUB: forecaster.verifying.pem(),
    }
    registry = Registry({a: Household(a, k.verifying) for a, k in agents.items()})

    def service(folder: Path, user: str, files: dict[str, bytes | str]) -> None:
        w.folder(folder, uid=SERVICE_UID)
        leaf = client_cert(ca, user, now=when)
        own: dict[str, bytes | str] = {
            cfg.PASSWORD: passwords[user] + "\n",
            cfg.CLIENT_CERT: leaf.cert_pem,
            cfg.CLIENT_KEY: leaf.key_pem,
        }
        for name, data in (common | own | files).items():
            w.file(folder / name, data)
        if user in (LEDGER, FORECASTER):
            write_registry(folder / cfg.REGISTRY, registry)
            (folder / cfg.REGISTRY).chmod(0o600)

    service(
        layout.ledger,
        LEDGER,
        {
            cfg.OPERATOR_KEY: operator.private_pem(),
            "ledger.toml": cfg.ledger_toml(plan.market_id, ends, interval_s=plan.interval_s),
        },
    )
    service(
        layout.forecasting,
        FORECASTER,
        {
            cfg.FORECASTER_KEY: forecaster.private_pem(),
            "forecast.toml": cfg.forecast_toml(plan.market_id, ends, interval_s=plan.interval_s),
        },
    )
    service(
        layout.dashboard,
        DASHBOARD,
        {
            cfg.OPERATOR_TOKEN: secrets.token_urlsafe(32) + "\n",
            "dashboard.toml": cfg.dashboard_toml(plan.market_id, ends),
        },
    )
    w.folder(layout.postgres, uid=None)
    w.folder(layout.households, uid=None)
    for agent, key, profile in zip(agents, agents.values(), _profiles(plan, when), strict=True):
        folder = layout.household(agent)
        toml = cfg.agent_toml(
            plan.market_id,
            agent,
            ends,
            max_power_w=plan.max_power_w,
            home_assistant=plan.home_assistant,
        )
        service(
            folder,
            agent,
            {
                cfg.AGENT_KEY: key.private_pem(),
                cfg.AGENT_PUB: key.verifying.pem(),
                "agent.toml": toml,
                cfg.PROFILE: profile,
            },
        )
    for folder in (layout.households, layout.root):
        folder.chmod(0o755)  # the containers' folders below keep their own modes
    _write_docker_files(w, layout, plan.agent_ids, pg_password)
    chown = w.chown()
    stale = sorted(p.name for p in layout.households.iterdir() if p.name not in agents)
    return Provisioned(
        layout, plan.market_id, plan.agent_ids, pg_password, ends, tuple(chown), tuple(stale)
    )


def _write_mosquitto(
    w: Writer,
    layout: Layout,
    plan: Plan,
    ca: Issued,
    files: BrokerFiles,
    *,
    now: dt.datetime,
) -> dict[str, str]:
    """The broker's folder; returns each MQTT user's password."""
    topics, when = Topics(plan.market_id), now
    users = (LEDGER, FORECASTER, DASHBOARD, MONITOR, *plan.agent_ids)
    passwords = {user: secrets.token_urlsafe(32) for user in users}
    ha = HomeAssistantConfig()

    def discovery(agent: str) -> HomeAssistantAccess:
        return HomeAssistantAccess(ha.prefix, HaTopics(topics, agent, ha.prefix).node_id)

    acl = render_acl(market_acl(topics, plan.agent_ids, home_assistant=discovery))
    server = server_cert(ca, plan.hostnames, now=when)
    folder = w.folder(layout.mosquitto, uid=MOSQUITTO_UID)
    w.file(folder / "mosquitto.conf", render_mosquitto_conf(files))
    w.file(folder / "passwd", password_file(passwords))
    w.file(folder / "acl", acl)
    w.file(folder / "ca.crt", ca.cert_pem)
    w.file(folder / "server.crt", server.cert_pem)
    w.file(folder / "server.key", server.key_pem)
    w.file(folder / "healthcheck_password", passwords[MONITOR] + "\n")  # its health check
    return passwords


def local_broker_files(layout: Layout, *, plain_port: int, tls_port: int, data_dir: Path) -> str:
    """``mosquitto.conf`` for running the generated broker as a local process: this
    folder's files, loopback only, the given ports, every denial logged."""
    import getpass

    files = replace(
        BrokerFiles(),
        config_dir=PurePosixPath(layout.mosquitto),
        data_dir=PurePosixPath(data_dir),
        plain_port=plain_port,
        tls_port=tls_port,
        bind="127.0.0.1",
        log_file=PurePosixPath(data_dir / "mosquitto.log"),
        user=getpass.getuser(),
        log_types=("all",),
    )
    return render_mosquitto_conf(files)


def _profiles(plan: Plan, when: dt.datetime) -> list[str]:
    """Each household's replay profile (``agents`` replay meter's JSON), from today
    00:00 UTC for ``plan.profile_days``, by the simulation's generator."""
    from wattmesh.sim.scenario import build_scenario

    start = when.astimezone(dt.UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    scenario = build_scenario(
        households=plan.households,
        days=plan.profile_days,
        seed=plan.profile_seed,
        pv_share=plan.pv_share,
        start=start,
        history_days=0,
        interval_s=PROFILE_INTERVAL_S,
    )
    epoch = int(start.timestamp())
    return [
        json.dumps(
            {
                "start": epoch,
                "interval_s": PROFILE_INTERVAL_S,
                "demand_wh": list(h.demand_wh),
                "pv_wh": list(h.pv_wh),
            },
            separators=(",", ":"),
        )
        for h in scenario.households
    ]


def _write_docker_files(
    w: Writer, layout: Layout, agent_ids: tuple[str, ...], postgres_password: str
) -> None:
    """``compose.yaml`` and ``.env`` (0600: PostgreSQL's password), whose images build
    from the source tree this package runs from (:mod:`wattmesh.provision.compose`)."""
    import wattmesh
    from wattmesh.provision.compose import render_compose, render_env

    source = Path(wattmesh.__file__).resolve().parent.parent
    w.file(layout.compose_file, render_compose(agent_ids), mode=0o644)
    env = render_env(postgres_password=postgres_password, source_dir=str(source))
    w.file(layout.env_file, env)
