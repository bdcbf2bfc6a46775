"""``ledger.toml``: the operator's configuration for ``wattmesh ledger run``.

Validated with pydantic (:mod:`wattmesh.config.ledger_schema`, unknown keys refused), then
the files it names are checked; every problem is reported with its TOML path, e.g.
``gate.timeout_s: must lie in (0, interval_s = 900], got 1000.0``. Relative paths are
relative to the configuration file's folder (also a relative SQLite database path).
Secrets come from files: the operator's private key and the MQTT password file must
not be readable by group or others (chmod 600). Format: docs/protocol.md
("`wattmesh ledger run`") and ``examples/ledger.toml``.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from pydantic import TypeAdapter, ValidationError

from wattmesh.broker.errors import ConfigError, WattmeshError
from wattmesh.broker.keys import SigningKey, VerifyingKey, load_signing_key, load_verifying_key
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Session, TlsConfig, TransportConfig
from wattmesh.config.agent_validate import read_toml
from wattmesh.config.ledger_schema import PATTERNS, LedgerMqttSection, LedgerSection
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.household_registry import Registry, load_registry
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule, TouPeriod
from wattmesh.ledger.schedule import Schedule
from wattmesh.ledger.store_open import check_sqlite_location, normalise_db_url, sqlite_path

_UNKNOWN_KEY = {"extra_forbidden", "unexpected_keyword_argument"}
_MQTT_PORT, _MQTTS_PORT = 1883, 8883
_Add = Callable[[str, str], None]  # records a problem: (TOML path, message)
S = TypeVar("S")


@dataclass(frozen=True)
class LedgerRunConfig:
    """Everything ``wattmesh ledger run`` needs, checked."""

    market_id: str
    topics: Topics
    db_url: str
    operator_key: SigningKey
    registry_path: Path
    registry: Registry
    transport: TransportConfig
    schedule: Schedule
    mechanism: Mechanism
    tariffs: TariffSchedule
    max_batch: int
    signature_workers: int
    lease_poll_s: float
    metrics: tuple[str, int] | None = None  # (host, port) of /metrics; None: not served
    forecaster_key: VerifyingKey | None = None  # anomaly flags logged only under it


def _where(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out or "(top level)"


def validate_sections(raw: Mapping[str, object]) -> tuple[LedgerSection | None, list[str]]:
    """The validated sections, or None and every problem (TOML path first)."""
    return validate_schema(raw, LedgerSection, PATTERNS)


def validate_schema(
    raw: Mapping[str, object], schema: type[S], patterns: Mapping[str, re.Pattern[str]]
) -> tuple[S | None, list[str]]:
    """``raw`` validated as ``schema`` (a pydantic dataclass, unknown keys refused) and
    its string ``patterns`` (TOML path -> pattern), or None and every problem."""
    problems: list[str] = []
    section: S | None = None
    try:
        section = TypeAdapter(schema).validate_python(dict(raw))
    except ValidationError as exc:
        for error in exc.errors():
            message = error["msg"]
            where = _where(error["loc"])
            if error["type"] in _UNKNOWN_KEY:
                message = "unknown key"
                if where.endswith("password"):
                    message += " (secrets are read from files: use password_file)"
            problems.append(f"{where}: {message}")
    for where, pattern in patterns.items():
        value: object = raw
        for part in where.split("."):
            value = value.get(part) if isinstance(value, Mapping) else None
        if isinstance(value, str) and not pattern.match(value):
            problems.append(f"{where}: String should match pattern '{pattern.pattern}'")
    if problems:
        return None, problems
    return section, []


def check_ledger_config(path: Path) -> tuple[LedgerRunConfig | None, list[str]]:
    """Validate ``path``: the configuration, or None and every problem."""
    raw, problem = read_toml(path)
    if raw is None:
        return None, [problem or "cannot read the file"]
    section, problems = validate_sections(raw)
    if section is None:
        return None, problems + _url_problems(raw, path.parent, problems)
    return _build(section, path.parent)


def _url_problems(raw: Mapping[str, object], base: Path, problems: list[str]) -> list[str]:
    """The database URL's problems beside the schema's, so that one round names them all
    (the URL is otherwise checked only once the schema passed)."""
    database = raw.get("database")
    url = database.get("url") if isinstance(database, Mapping) else None
    if not isinstance(url, str) or any(p.startswith("database.url:") for p in problems):
        return []
    found: list[str] = []
    _db_url(url, base, lambda where, message: found.append(f"{where}: {message}"))
    return found


def load_ledger_config(path: Path) -> LedgerRunConfig:
    """The checked configuration; ConfigError listing every problem otherwise."""
    config, problems = check_ledger_config(path)
    if config is None:
        raise ConfigError(f"{path}: " + f"; {path}: ".join(problems))
    return config


def _build(s: LedgerSection, base: Path) -> tuple[LedgerRunConfig | None, list[str]]:
    problems: list[str] = []

    def add(where: str, message: str) -> None:
        problems.append(f"{where}: {message}")

    topics = None
    try:
        topics = Topics(s.market_id, s.topic_prefix)
    except ConfigError as exc:
        add("topic_prefix", str(exc))
    key = None
    try:
        key = load_signing_key(base / s.operator_key_file)
    except WattmeshError as exc:
        add("operator_key_file", str(exc))
    forecaster_key = None
    if s.forecaster_key_file is not None:
        try:
            forecaster_key = load_verifying_key(base / s.forecaster_key_file)
        except WattmeshError as exc:
            add("forecaster_key_file", str(exc))
    registry = None
    registry_path = base / s.registry_file
    try:
        registry = load_registry(registry_path)
    except ConfigError as exc:
        add("registry_file", str(exc))
    db_url = _db_url(s.database.url, base, add)
    schedule = None
    if s.gate.timeout_s > s.interval_s:
        add(
            "gate.timeout_s", f"must not exceed interval_s = {s.interval_s}, got {s.gate.timeout_s}"
        )
    elif s.gate.grace_s >= s.gate.timeout_s:
        add(
            "gate.grace_s",
            f"must be below gate.timeout_s = {s.gate.timeout_s}, got {s.gate.grace_s}",
        )
    else:
        schedule = Schedule(s.interval_s, s.gate.timeout_s, s.gate.grace_s)
    mechanism = _mechanism(s, add)
    tariffs = None
    try:
        tariffs = TariffSchedule(
            tuple(
                TouPeriod(
                    p.start_hour_utc, GridTariff(p.retail_micro_per_kwh, p.feed_in_micro_per_kwh)
                )
                for p in s.tariffs
            )
        )
    except ValueError as exc:
        add("tariffs", str(exc))
    transport = mqtt_transport(s.mqtt, f"{s.market_id}-ledger", base, add)
    if (
        problems
        or topics is None
        or key is None
        or registry is None
        or db_url is None
        or schedule is None
        or mechanism is None
        or tariffs is None
        or transport is None
    ):
        return None, problems
    config = LedgerRunConfig(
        market_id=s.market_id,
        topics=topics,
        db_url=db_url,
        operator_key=key,
        registry_path=registry_path,
        registry=registry,
        transport=transport,
        schedule=schedule,
        mechanism=mechanism,
        tariffs=tariffs,
        max_batch=s.ingest.max_batch,
        signature_workers=s.ingest.signature_workers,
        lease_poll_s=s.lease.poll_s,
        metrics=None if s.metrics is None else (s.metrics.host, s.metrics.port),
        forecaster_key=forecaster_key,
    )
    return config, []


def _db_url(url: str, base: Path, add: _Add) -> str | None:
    """The URL with a relative SQLite path made absolute; refused: in-memory SQLite, a
    SQLite file in a missing folder or one that is not a SQLite database."""
    url = url.strip()
    prefix = "sqlite:///"
    if url.startswith("sqlite:") and not url.startswith(prefix):
        add("database.url", f"{url!r}: a SQLite database needs a file: sqlite:///FILE")
        return None
    if url.startswith(prefix):
        name = url.removeprefix(prefix)
        if not name or name == ":memory:":
            add("database.url", "the ledger needs a SQLite file (the lease lives beside it)")
            return None
        url = prefix + str(base / name)  # base / "/abs" is "/abs"
    try:
        normalise_db_url(url)
        path = sqlite_path(url)
        if path is not None:  # as LedgerStore checks it; PostgreSQL is not contacted
            check_sqlite_location(path, url)
    except ConfigError as exc:
        add("database.url", str(exc))
        return None
    return url


def _mechanism(s: LedgerSection, add: _Add) -> Mechanism | None:
    m = s.mechanism
    numerator, _, denominator = m.k.partition("/")
    if not numerator.isdigit() or not denominator.isdigit() or int(denominator) == 0:
        return None  # reported by the pattern check
    try:
        rules = MarketRules(Fraction(int(numerator), int(denominator)), m.network_fee_micro_per_kwh)
    except ValueError as exc:
        add("mechanism.k", str(exc))
        return None
    try:
        return Mechanism(m.name, rules)
    except ValueError as exc:
        add("mechanism.k" if "k applies" in str(exc) else "mechanism.name", str(exc))
        return None


def mqtt_transport(
    m: LedgerMqttSection,
    client_id: str,
    base: Path,
    add: _Add,
    *,
    session: Session = Session.PERSISTENT,  # orders sent while the ledger restarts are queued
) -> TransportConfig | None:
    """The connection an ``[mqtt]`` section describes (``client_id``: unless it names
    one), its files read relative to ``base``; None after ``add`` got its problems."""
    failed = False

    def fail(where: str, message: str) -> None:
        nonlocal failed
        failed = True
        add(where, message)

    tls = None
    if m.tls is not None:
        files: dict[str, Path | None] = {}
        for name, value in (
            ("ca_file", m.tls.ca_file),
            ("cert_file", m.tls.cert_file),
            ("key_file", m.tls.key_file),
        ):
            files[name] = None if value is None else base / value
            if value is not None and not (base / value).is_file():
                fail(f"mqtt.tls.{name}", f"{base / value} does not exist or is not a file")
        try:
            tls = TlsConfig(files["ca_file"], files["cert_file"], files["key_file"])
            if not failed:
                tls.context()  # loads the CA and client certificate now, not at connect time
        except (ValueError, OSError) as exc:
            fail("mqtt.tls", str(exc))
    password = None
    if m.password_file is not None:
        if m.username is None:
            fail("mqtt.password_file", "a password needs mqtt.username")
        password = secret_line(base / m.password_file, "mqtt.password_file", fail)
    port = m.port if m.port is not None else (_MQTTS_PORT if m.tls is not None else _MQTT_PORT)
    if failed:
        return None
    return TransportConfig(
        address=BrokerAddress(m.host, port),
        client_id=m.client_id or client_id,
        username=m.username,
        password=password,
        keepalive_s=m.keepalive_s,
        inbound_queue_size=m.inbound_queue_size,
        tls=tls,
        session=session,
    )


def secret_line(path: Path, where: str, fail: _Add) -> str | None:
    """The first line of a file that only its owner may read."""
    try:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            fail(where, f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); chmod 600 it")
            return None
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        fail(where, f"cannot read {path}: {exc.strerror}")
        return None
    if not lines or not lines[0]:
        fail(where, f"{path} is empty")
        return None
    return lines[0]
