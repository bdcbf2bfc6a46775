"""Scenario files of ``wattmesh simulate --scenario FILE`` (TOML).

Validated like ``ledger.toml`` (:mod:`wattmesh.config.ledger_config`): pydantic with
unknown keys refused (:mod:`wattmesh.config.scenario_schema`), then what the schema
cannot say (mechanism names, tariff periods, batteries, a demand for every household,
ids, the CSV files); every problem is reported with its TOML path, all in one round.
CSV paths are relative to the file's folder. The measured profiles are read here (the
format of ``wattmesh forecast backtest``: :func:`wattmesh.forecasting.backtesting.
parse_measured_csv`); whether they cover the run's days is checked when the scenario is
built (the command line may change the days). Format: docs/simulation.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, time
from fractions import Fraction
from pathlib import Path

from wattmesh.agents.battery import BatterySpec
from wattmesh.broker.errors import ConfigError
from wattmesh.config.agent_validate import read_toml
from wattmesh.config.ledger_config import validate_schema
from wattmesh.config.scenario_schema import (
    AGENT_ID,
    PATTERNS,
    HouseholdSection,
    ScenarioSection,
)
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule, TouPeriod
from wattmesh.sim.plan import HouseholdPlan, MeasuredProfile

__all__ = ["ScenarioFile", "check_scenario", "load_scenario", "read_profile"]

_Add = Callable[[str, str], None]  # records a problem: (TOML path, message)


@dataclass(frozen=True)
class ScenarioFile:
    """A checked scenario file; ``None``: not given (the flag or its default applies)."""

    path: Path
    seed: int | None = None
    days: int | None = None
    history_days: int | None = None
    start: datetime | None = None
    interval_s: int = 900
    forecaster: str | None = None
    currency: str | None = None
    location: tuple[float, float] | None = None  # (latitude_deg, longitude_deg)
    mechanisms: tuple[str, ...] | None = None
    k: Fraction = Fraction(1, 2)
    network_fee_micro_per_kwh: int | None = None
    tariffs: TariffSchedule | None = None
    generated: int | None = None
    pv_share: float | None = None
    battery_share: float | None = None
    households: tuple[HouseholdPlan, ...] = ()


def check_scenario(path: Path) -> tuple[ScenarioFile | None, list[str]]:
    """Validate ``path``: the scenario, or None and every problem."""
    raw, problem = read_toml(path)
    if raw is None:
        return None, [problem or "cannot read the file"]
    section, problems = validate_schema(raw, ScenarioSection, PATTERNS)
    if section is None:
        return None, problems
    return _build(section, path)


def load_scenario(path: Path) -> ScenarioFile:
    """The checked scenario; ConfigError listing every problem otherwise."""
    scenario, problems = check_scenario(path)
    if scenario is None:
        raise ConfigError(f"{path}: " + f"; {path}: ".join(problems))
    return scenario


def read_profile(path: Path, *, name: str) -> MeasuredProfile:
    """A ``timestamp,value_w`` CSV file as energy per file step (ConfigError: why not)."""
    from wattmesh.forecasting.backtesting import parse_measured_csv

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigError(f"cannot read {path}: {why}") from exc
    series = parse_measured_csv(text, name=str(path))
    if any(v is not None and v < 0 for v in series.values_w):
        raise ConfigError(f"{path}: a value_w is negative (want power drawn or produced, >= 0)")
    return MeasuredProfile(
        name=name,
        start_epoch_s=series.start_epoch_s,
        step_s=series.interval_s,
        wh=tuple(series.energy_wh()),
    )


def _build(s: ScenarioSection, path: Path) -> tuple[ScenarioFile | None, list[str]]:
    problems: list[str] = []

    def add(where: str, message: str) -> None:
        problems.append(f"{where}: {message}")

    if 3600 % s.interval_s:
        add("interval_s", f"must divide an hour (3600 s), got {s.interval_s}")
    if s.currency is not None and not (
        len(s.currency) == 3 and s.currency.isascii() and s.currency.isupper()
    ):
        add("currency", f"must be an ISO 4217 code like EUR, not {s.currency!r}")
    start = _start(s, add)
    names, k = _mechanisms(s, add)
    tariffs = None
    if s.tariffs is not None:
        try:
            tariffs = TariffSchedule(
                tuple(
                    TouPeriod(
                        p.start_hour_utc,
                        GridTariff(p.retail_micro_per_kwh, p.feed_in_micro_per_kwh),
                    )
                    for p in s.tariffs
                )
            )
        except ValueError as exc:
            add("tariffs", str(exc))
    households = _households(s, path.parent, add)
    if problems:
        return None, problems
    location = None if s.location is None else (s.location.latitude_deg, s.location.longitude_deg)
    return ScenarioFile(
        path=path,
        seed=s.seed,
        days=s.days,
        history_days=s.history_days,
        start=start,
        interval_s=s.interval_s,
        forecaster=s.forecaster,
        currency=s.currency,
        location=location,
        mechanisms=names,
        k=k,
        network_fee_micro_per_kwh=s.market.network_fee_micro_per_kwh,
        tariffs=tariffs,
        generated=s.generated.households,
        pv_share=s.generated.pv_share,
        battery_share=s.generated.battery_share,
        households=households,
    ), []


def _start(s: ScenarioSection, add: _Add) -> datetime | None:
    if s.start is None:
        return None
    if isinstance(s.start, datetime):
        if s.start.tzinfo is None:
            add("start", "give its UTC offset (e.g. 2025-06-30T00:00:00Z) or a date")
            return None
        start = s.start.astimezone(UTC)
    else:
        start = datetime.combine(s.start, time(0), tzinfo=UTC)
    if int(start.timestamp()) % s.interval_s or start.microsecond:
        add("start", f"must fall on an interval boundary (interval_s = {s.interval_s})")
        return None
    return start


def _mechanisms(s: ScenarioSection, add: _Add) -> tuple[tuple[str, ...] | None, Fraction]:
    m = s.market
    numerator, _, denominator = m.k.partition("/")
    k = Fraction(1, 2)
    if numerator.isdigit() and denominator.isdigit() and int(denominator):
        k = Fraction(int(numerator), int(denominator))
    if m.mechanism is None:
        return None, k
    names = (m.mechanism,) if isinstance(m.mechanism, str) else tuple(m.mechanism)
    if len(set(names)) != len(names):
        add("market.mechanism", "names a mechanism twice")
    try:
        rules = MarketRules(k, m.network_fee_micro_per_kwh or 0)
    except ValueError as exc:
        add("market.k", str(exc))
        return names, k
    for i, name in enumerate(names):
        where = "market.mechanism" if isinstance(m.mechanism, str) else f"market.mechanism[{i}]"
        try:
            Mechanism(name, rules)
        except ValueError as exc:
            add("market.k" if "k applies" in str(exc) else where, str(exc))
    return names, k


def _households(s: ScenarioSection, base: Path, add: _Add) -> tuple[HouseholdPlan, ...]:
    seen: set[str] = set()
    plans: list[HouseholdPlan] = []
    generated = {f"h{i + 1:03d}" for i in range(s.generated.households or 0)}
    for i, h in enumerate(s.households):
        where = f"households[{i}]"
        if not AGENT_ID.match(h.id):
            add(f"{where}.id", "want 1-64 letters, digits, '_', '.' or '-'")
        elif h.id in seen:
            add(f"{where}.id", f"{h.id!r} names two households")
        elif h.id in generated:
            add(f"{where}.id", f"{h.id!r} is also a generated household's id")
        seen.add(h.id)
        plan = _household(h, where, base, add)
        if plan is not None:
            plans.append(plan)
    return tuple(plans)


def _household(h: HouseholdSection, where: str, base: Path, add: _Add) -> HouseholdPlan | None:
    ok = True
    if (h.annual_demand_wh is None) == (h.demand_csv is None):
        add(where, "give its demand: annual_demand_wh or demand_csv (one of them)")
        ok = False
    if h.pv_csv is not None and h.pv_peak_w == 0:
        add(f"{where}.pv_peak_w", "give the PV's peak power (W) with pv_csv")
        ok = False
    if (h.tilt_deg is None) != (h.azimuth_deg is None):
        add(where, "give tilt_deg and azimuth_deg together (or neither: seeded)")
        ok = False
    battery = None
    if h.battery is not None:
        b = h.battery
        try:
            battery = BatterySpec(
                b.capacity_wh,
                b.max_charge_w,
                b.max_discharge_w,
                b.round_trip_permille,
                b.min_soc_wh,
            )
        except ValueError as exc:
            add(f"{where}.battery", str(exc))
            ok = False
    profiles: dict[str, MeasuredProfile | None] = {"demand_csv": None, "pv_csv": None}
    for key, file in (("demand_csv", h.demand_csv), ("pv_csv", h.pv_csv)):
        if file is not None:
            try:
                profiles[key] = read_profile(base / file, name=f"{where}.{key} ({file})")
            except ConfigError as exc:
                add(f"{where}.{key}", str(exc))
                ok = False
    if not ok:
        return None
    orientation = None
    if h.tilt_deg is not None and h.azimuth_deg is not None:
        orientation = (h.tilt_deg, h.azimuth_deg)
    return HouseholdPlan(
        agent_id=h.id,
        pv_peak_w=h.pv_peak_w,
        annual_demand_wh=h.annual_demand_wh,
        orientation=orientation,
        battery=battery,
        max_power_w=h.max_power_w,
        demand=profiles["demand_csv"],
        pv=profiles["pv_csv"],
    )
