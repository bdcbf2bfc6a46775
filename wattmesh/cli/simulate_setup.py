"""``wattmesh simulate``'s settings: flags over a scenario file over the defaults.

One :class:`SimulationConfig` per mechanism to run.

A flag given on the command line wins; a value the scenario file (``--scenario``) gives
comes next; the default (:data:`DEFAULTS`) last. ``--mechanism`` (or the file's
``market.mechanism``) may name several mechanisms, comma-separated: the same scenario and
seed then runs under each (:mod:`wattmesh.sim.comparison`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from wattmesh.broker.errors import ConfigError
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.sim.sim_config import SimulationConfig

if TYPE_CHECKING:  # not at run time: it imports pvlib, which a plain run needs later
    from wattmesh.config.scenario_config import ScenarioFile

__all__ = ["DEFAULTS", "Plan", "load_tariffs", "plan_runs"]

DEFAULTS: Final[dict[str, Any]] = {
    "households": 20,
    "days": 2,
    "seed": 1,
    "pv_share": 0.4,
    "battery_share": 0.0,
    "forecaster": "prophet",
    "history_days": 28,
    "currency": "EUR",
    "mechanism": "uniform",
    "network_fee_micro_per_kwh": 0,
}


@dataclass(frozen=True)
class Plan:
    """The runs to make: one per mechanism, in the order named."""

    configs: tuple[SimulationConfig, ...]

    @property
    def comparison(self) -> bool:
        return len(self.configs) > 1


def plan_runs(args: argparse.Namespace, scenario: ScenarioFile | None) -> Plan:
    """The runs ``args`` (and the scenario file, if any) ask for (ConfigError: why not)."""
    file: dict[str, Any] = {}
    if scenario is not None:
        file = {
            "households": scenario.generated,
            "days": scenario.days,
            "seed": scenario.seed,
            "pv_share": scenario.pv_share,
            "battery_share": scenario.battery_share,
            "forecaster": scenario.forecaster,
            "history_days": scenario.history_days,
            "currency": scenario.currency,
            "mechanism": ",".join(scenario.mechanisms) if scenario.mechanisms else None,
            "network_fee_micro_per_kwh": scenario.network_fee_micro_per_kwh,
        }
        if scenario.households and scenario.generated is None:
            file["households"] = 0  # only the households the file lists

    def pick(name: str) -> Any:
        given = getattr(args, name)
        if given is not None:
            return given
        if file.get(name) is not None:
            return file[name]
        return DEFAULTS[name]

    fee = pick("network_fee_micro_per_kwh")
    k = scenario.k if scenario is not None else Fraction(1, 2)
    names = [n.strip() for n in str(pick("mechanism")).split(",") if n.strip()]
    if not names or len(set(names)) != len(names):
        raise ConfigError(f"--mechanism: name each mechanism once, got {pick('mechanism')!r}")
    mechanisms = [_mechanism(name, k, fee) for name in names]
    tariffs = scenario.tariffs if scenario is not None else None
    if args.tariffs is not None:
        tariffs = load_tariffs(Path(args.tariffs))
    extra: dict[str, Any] = {}
    if scenario is not None:
        extra = {"planned": scenario.households, "start": scenario.start}
        extra["interval_s"] = scenario.interval_s
        if scenario.location is not None:
            extra["latitude_deg"], extra["longitude_deg"] = scenario.location
    workdir = Path(args.workdir)
    several = len(mechanisms) > 1
    if several and args.db is not None:
        raise ConfigError("--db: several mechanisms need a database each; leave --db out")
    if several and args.dashboard:
        raise ConfigError("--dashboard watches one run: name one mechanism")
    configs = tuple(
        SimulationConfig(
            households=pick("households"),
            days=pick("days"),
            seed=pick("seed"),
            pv_share=pick("pv_share"),
            battery_share=pick("battery_share"),
            broker=args.broker,
            db_url=args.db,
            forecaster=pick("forecaster"),
            workdir=workdir / m.name if several else workdir,
            history_days=pick("history_days"),
            tariffs=tariffs,
            mechanism=m,
            currency=pick("currency"),
            inject_faults=args.inject_faults,
            **extra,
        )
        for m in mechanisms
    )
    return Plan(configs)


def _mechanism(name: str, k: Fraction, network_fee_micro_per_kwh: int) -> Mechanism:
    try:
        rules = MarketRules(k, network_fee_micro_per_kwh=network_fee_micro_per_kwh)
    except ValueError as exc:
        raise ConfigError(f"--network-fee-micro-per-kwh: {exc}") from exc
    try:
        return Mechanism(name, rules)
    except ValueError as exc:
        raise ConfigError(f"--mechanism: {exc}") from exc


def load_tariffs(path: Path) -> TariffSchedule:
    """A time-of-use schedule file: a JSON list of periods (docs/protocol.md)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("must be a JSON list of objects")
        return TariffSchedule.from_json(rows)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ConfigError(f"--tariffs {path}: {exc}") from exc
