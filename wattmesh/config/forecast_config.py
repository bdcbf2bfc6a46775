"""``forecast.toml``: the configuration of ``wattmesh forecast serve``.

Validated like ``ledger.toml`` (:mod:`wattmesh.config.ledger_config`): pydantic with
unknown keys refused (:mod:`wattmesh.config.forecast_schema`), then the files it names;
every problem is reported with its TOML path, all in one round. Relative paths are
relative to the file's folder (also relative SQLite paths). The registry file is the
ledger's (read here, in the composition root: ``forecasting/`` does not import
``ledger/``). Secrets come from files only their owner may read (the forecaster's
private key, the MQTT password). Format: docs/forecasting.md and
``examples/forecast.toml``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from wattmesh.broker.errors import ConfigError, WattmeshError
from wattmesh.broker.keys import SigningKey, VerifyingKey, load_signing_key, load_verifying_key
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import Session, TransportConfig
from wattmesh.config.agent_validate import read_toml
from wattmesh.config.forecast_schema import PATTERNS, ForecastSection
from wattmesh.config.ledger_config import mqtt_transport, validate_schema
from wattmesh.ledger.household_registry import load_registry
from wattmesh.ledger.store_open import check_sqlite_location, normalise_db_url, sqlite_path

__all__ = ["ForecastServeConfig", "check_forecast_config", "load_forecast_config"]


@dataclass(frozen=True)
class ForecastServeConfig:
    """Everything ``wattmesh forecast serve`` needs, checked."""

    market_id: str
    topics: Topics
    interval_s: int
    forecaster_key: SigningKey
    operator_key: VerifyingKey
    registry_path: Path
    households: Mapping[str, VerifyingKey]
    db_url: str
    ledger_url: str
    transport: TransportConfig
    demand_model: str = "auto"
    pv_model: str = "auto"
    horizon: int = 96
    window_days: int = 28
    select_every_days: int = 7
    refit_hour_utc: int = 2
    workers: int = 2
    pv_capacity_w: Mapping[str, int] = field(default_factory=dict)


def check_forecast_config(path: Path) -> tuple[ForecastServeConfig | None, list[str]]:
    """Validate ``path``: the configuration, or None and every problem."""
    raw, problem = read_toml(path)
    if raw is None:
        return None, [problem or "cannot read the file"]
    section, problems = validate_schema(raw, ForecastSection, PATTERNS)
    if section is None:
        extra = _url_problems(raw, path.parent, problems) + _model_problems(raw)
        return None, problems + extra
    return _build(section, path.parent)


def load_forecast_config(path: Path) -> ForecastServeConfig:
    """The checked configuration; ConfigError listing every problem otherwise."""
    config, problems = check_forecast_config(path)
    if config is None:
        raise ConfigError(f"{path}: " + f"; {path}: ".join(problems))
    return config


def db_url(url: str, base: Path) -> str:
    """``url`` with a relative SQLite path made absolute from ``base``; ConfigError for
    in-memory SQLite or a SQLite file in a missing folder. Nothing is contacted."""
    url = url.strip()
    prefix = "sqlite:///"
    if url.startswith("sqlite:") and not url.startswith(prefix):
        raise ConfigError(f"{url!r}: a SQLite database needs a file: sqlite:///FILE")
    if url.startswith(prefix):
        name = url.removeprefix(prefix)
        if not name or name == ":memory:":
            raise ConfigError(f"{url!r}: the service needs a SQLite file")
        url = prefix + str(base / name)  # an absolute name stays
    normalise_db_url(url)
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_location(path, url)
    return url


def _url_problems(raw: Mapping[str, object], base: Path, problems: list[str]) -> list[str]:
    """The database URLs' problems beside the schema's, so one round names them all."""
    found: list[str] = []
    for section in ("database", "ledger"):
        table = raw.get(section)
        url = table.get("url") if isinstance(table, Mapping) else None
        if isinstance(url, str) and not any(p.startswith(f"{section}.url:") for p in problems):
            try:
                db_url(url, base)
            except ConfigError as exc:
                found.append(f"{section}.url: {exc}")
    return found


def _model_problems(raw: Mapping[str, object]) -> list[str]:
    """The model names' problems beside the schema's (they are checked by name)."""
    from wattmesh.forecasting.server import check_choice  # no pandas, prophet or pvlib

    table = raw.get("models")
    if not isinstance(table, Mapping):
        return []
    found: list[str] = []
    for target in ("demand", "pv"):
        choice = table.get(target)
        problem = None
        if isinstance(choice, str):
            problem = check_choice(choice, "demand" if target == "demand" else "pv")
        if problem is not None:
            found.append(f"models.{target}: {problem}")
    return found


def _build(s: ForecastSection, base: Path) -> tuple[ForecastServeConfig | None, list[str]]:
    problems: list[str] = []

    def add(where: str, message: str) -> None:
        problems.append(f"{where}: {message}")

    topics = None
    try:
        topics = Topics(s.market_id, s.topic_prefix)
    except ConfigError as exc:
        add("topic_prefix", str(exc))
    key = operator = None
    try:
        key = load_signing_key(base / s.forecaster_key_file)
    except WattmeshError as exc:
        add("forecaster_key_file", str(exc))
    try:
        operator = load_verifying_key(base / s.operator_key_file)
    except WattmeshError as exc:
        add("operator_key_file", str(exc))
    households = None
    registry_path = base / s.registry_file
    try:
        households = load_registry(registry_path).keys
    except ConfigError as exc:
        add("registry_file", str(exc))
    urls: dict[str, str] = {}
    for name, url in (("database", s.database.url), ("ledger", s.ledger.url)):
        try:
            urls[name] = db_url(url, base)
        except ConfigError as exc:
            add(f"{name}.url", str(exc))
    from wattmesh.forecasting.server import check_choice  # no pandas, prophet or pvlib

    for where, problem in (
        ("models.demand", check_choice(s.models.demand, "demand")),
        ("models.pv", check_choice(s.models.pv, "pv")),
    ):
        if problem is not None:
            add(where, problem)
    if households is not None:
        for agent in sorted(set(s.pv_capacity_w) - set(households)):
            add(f"pv_capacity_w.{agent}", "not a household of the registry")
    if s.interval_s <= 86_400 and 86_400 % s.interval_s:
        add("interval_s", f"must divide a day (86400 s), got {s.interval_s}")
    transport = mqtt_transport(
        s.mqtt, f"{s.market_id}-forecaster", base, add, session=Session.CLEAN
    )
    if (
        problems
        or topics is None
        or key is None
        or operator is None
        or households is None
        or transport is None
    ):
        return None, problems
    config = ForecastServeConfig(
        market_id=s.market_id,
        topics=topics,
        interval_s=s.interval_s,
        forecaster_key=key,
        operator_key=operator,
        registry_path=registry_path,
        households=households,
        db_url=urls["database"],
        ledger_url=urls["ledger"],
        transport=transport,
        demand_model=s.models.demand,
        pv_model=s.models.pv,
        horizon=s.models.horizon,
        window_days=s.models.window_days,
        select_every_days=s.models.select_every_days,
        refit_hour_utc=s.refit.hour_utc,
        workers=s.refit.workers,
        pv_capacity_w=dict(s.pv_capacity_w),
    )
    return config, []
