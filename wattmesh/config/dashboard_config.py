"""``dashboard.toml``: the configuration of ``wattmesh dashboard serve``.

Validated like ``ledger.toml`` (:mod:`wattmesh.config.ledger_config`): pydantic with
unknown keys refused (:mod:`wattmesh.config.dashboard_schema`), then the files it names;
every problem is reported with its TOML path, all in one round. Relative paths are
relative to the file's folder (also a relative SQLite path). The ledger's database must
exist (the dashboard only reads it); secrets come from files that only their owner may
read (the operator token, the MQTT password). Format: docs/dashboard.md and
``examples/dashboard.toml``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from wattmesh.broker.errors import ConfigError, WattmeshError
from wattmesh.broker.keys import VerifyingKey, load_verifying_key
from wattmesh.broker.transport import Session, TransportConfig
from wattmesh.config.agent_validate import read_toml
from wattmesh.config.dashboard_schema import PATTERNS, DashboardSection
from wattmesh.config.ledger_config import mqtt_transport, secret_line, validate_schema
from wattmesh.ledger.store_open import check_sqlite_location, normalise_db_url, sqlite_path

__all__ = [
    "MIN_TOKEN_CHARS",
    "DashboardConfig",
    "check_dashboard_config",
    "dashboard_db_url",
    "load_dashboard_config",
]

MIN_TOKEN_CHARS = 16  # an operator token shorter than this is guessable


@dataclass(frozen=True)
class DashboardConfig:
    """Everything ``wattmesh dashboard serve`` takes from the file, checked."""

    ledger_url: str
    read_model_url: str | None = None
    transport: TransportConfig | None = None  # None: no broker, no live updates
    market_id: str | None = None  # None: the ledger's
    operator_key: VerifyingKey | None = None  # None: the ledger's stored key
    operator_token: str | None = None  # None: no operator login
    forecaster_key: VerifyingKey | None = None  # None: forecasts checked with operator_key
    host: str = "127.0.0.1"
    port: int = 8080
    currency: str = "EUR"  # ISO 4217 code of the ledger's micro-units
    verify_every_s: int = 3600  # verify the log at start and then so often; 0: never


def check_dashboard_config(path: Path) -> tuple[DashboardConfig | None, list[str]]:
    """Validate ``path``: the configuration, or None and every problem."""
    raw, problem = read_toml(path)
    if raw is None:
        return None, [problem or "cannot read the file"]
    section, problems = validate_schema(raw, DashboardSection, PATTERNS)
    base = path.parent
    if section is None:
        return None, problems + _url_problems(raw, base, problems)
    return _build(section, base)


def load_dashboard_config(path: Path) -> DashboardConfig:
    """The checked configuration; ConfigError listing every problem otherwise."""
    config, problems = check_dashboard_config(path)
    if config is None:
        raise ConfigError(f"{path}: " + f"; {path}: ".join(problems))
    return config


def dashboard_db_url(url: str, *, base: Path | None = None, ledger: bool = True) -> str:
    """A database URL for the dashboard, a relative SQLite path made absolute from
    ``base`` (default: the working folder); ConfigError saying what is wrong. The
    ledger's (``ledger=True``) must be an existing SQLite file or a PostgreSQL URL (not
    contacted); a read model's SQLite file must be in an existing folder."""
    url = url.strip()
    prefix = "sqlite:///"
    if url.startswith("sqlite:") and not url.startswith(prefix):
        raise ConfigError(f"{url!r}: a SQLite database needs a file: sqlite:///FILE")
    if url.startswith(prefix):
        name = url.removeprefix(prefix)
        if not name or name == ":memory:":
            raise ConfigError(f"{url!r}: the dashboard needs a SQLite file")
        url = prefix + str((base or Path.cwd()) / name)  # an absolute name stays
    normalise_db_url(url)
    path = sqlite_path(url)
    if path is not None:
        check_sqlite_location(path, url)
        if ledger and not path.is_file():
            raise ConfigError(f"no ledger database at {url}: no such file")
    return url


def _url_problems(raw: Mapping[str, object], base: Path, problems: list[str]) -> list[str]:
    """The database URLs' problems beside the schema's, so one round names them all."""
    database = raw.get("database")
    if not isinstance(database, Mapping):
        return []
    found: list[str] = []
    for key, ledger in (("url", True), ("read_model_url", False)):
        url = database.get(key)
        if isinstance(url, str) and not any(p.startswith(f"database.{key}:") for p in problems):
            try:
                dashboard_db_url(url, base=base, ledger=ledger)
            except ConfigError as exc:
                found.append(f"database.{key}: {exc}")
    return found


def _build(s: DashboardSection, base: Path) -> tuple[DashboardConfig | None, list[str]]:
    problems: list[str] = []

    def add(where: str, message: str) -> None:
        problems.append(f"{where}: {message}")

    urls: dict[str, str | None] = {"url": None, "read_model_url": None}
    for name, url in (("url", s.database.url), ("read_model_url", s.database.read_model_url)):
        if url is not None:
            try:
                urls[name] = dashboard_db_url(url, base=base, ledger=name == "url")
            except ConfigError as exc:
                add(f"database.{name}", str(exc))
    keys: dict[str, VerifyingKey] = {}
    for name, file in (
        ("operator_key_file", s.operator_key_file),
        ("forecaster_key_file", s.forecaster_key_file),
    ):
        if file is not None:
            try:
                keys[name] = load_verifying_key(base / file)
            except WattmeshError as exc:
                add(name, str(exc))
    token = None
    if s.operator_token_file is not None:
        token = secret_line(base / s.operator_token_file, "operator_token_file", add)
        if token is not None and len(token.strip()) < MIN_TOKEN_CHARS:
            add("operator_token_file", f"the token must be at least {MIN_TOKEN_CHARS} characters")
    transport = None
    if s.mqtt is not None:
        client_id = f"{s.market_id or 'wattmesh'}-dashboard-{os.getpid()}"
        transport = mqtt_transport(s.mqtt, client_id, base, add, session=Session.CLEAN)
    ledger_url = urls["url"]
    if problems or ledger_url is None:
        return None, problems
    config = DashboardConfig(
        ledger_url=ledger_url,
        read_model_url=urls["read_model_url"],
        transport=transport,
        market_id=s.market_id,
        operator_key=keys.get("operator_key_file"),
        operator_token=None if token is None else token.strip(),
        forecaster_key=keys.get("forecaster_key_file"),
        host=s.http.host,
        port=s.http.port,
        currency=s.currency,
        verify_every_s=s.verify_every_s,
    )
    return config, []
