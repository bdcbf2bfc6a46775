"""The settings of one ``wattmesh simulate`` run (:class:`SimulationConfig`), checked.

The command line (``wattmesh/cli/simulate_cli.py``) and a scenario file
(``wattmesh/config/scenario_config.py``) fill it; :func:`wattmesh.sim.simulate.
run_simulation` runs it. Every bad value is a :class:`ConfigError` naming the option.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from wattmesh.broker.errors import ConfigError
from wattmesh.broker.transport import BrokerAddress, parse_broker_url
from wattmesh.forecasting.service import ModelName
from wattmesh.ledger.clearing import GridTariff
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.sim.plan import HouseholdPlan, ScenarioPlan
from wattmesh.sim.pv_model import WEATHER_SITE_LATITUDE_DEG, WEATHER_SITE_LONGITUDE_DEG

__all__ = ["SimulationConfig", "parse_broker_url_or_config_error"]


@dataclass(frozen=True)
class SimulationConfig:
    households: int
    days: int
    seed: int
    pv_share: float = 0.4
    battery_share: float = 0.0  # of the PV households
    broker: str = "auto"  # "auto" or mqtt://host:port
    db_url: str | None = None  # default: sqlite in workdir, recreated
    forecaster: ModelName = "prophet"
    workdir: Path = Path("out")
    market_id: str = "sim"
    interval_s: int = 900
    history_days: int = 28
    tariff: GridTariff = field(default_factory=lambda: GridTariff(300_000, 80_000))
    tariffs: TariffSchedule | None = None  # time-of-use schedule; None: ``tariff`` all day
    mechanism: Mechanism = field(default_factory=Mechanism)
    gate_timeout_s: float = 600.0  # wall-clock backstop only; a healthy run never waits it
    currency: str = "EUR"  # ISO 4217 code of the micro-units (named in the report)
    inject_faults: float = 0.0  # share of household-days with one injected fault
    # A scenario file's (``--scenario``, wattmesh.config.scenario_config): households given
    # one by one (after the ``households`` generated ones), the first simulated interval
    # (None: the default period) and the site.
    planned: tuple[HouseholdPlan, ...] = ()
    start: datetime | None = None
    latitude_deg: float = WEATHER_SITE_LATITUDE_DEG
    longitude_deg: float = WEATHER_SITE_LONGITUDE_DEG

    def __post_init__(self) -> None:
        if self.households < (0 if self.planned else 1):
            least = "0 with households in the scenario" if self.planned else "1"
            raise ConfigError(f"--households must be at least {least}, got {self.households}")
        if self.days < 1:
            raise ConfigError(f"--days must be at least 1, got {self.days}")
        if self.history_days < 1:
            raise ConfigError(f"--history-days must be at least 1, got {self.history_days}")
        if self.seed < 0:
            raise ConfigError(f"--seed must not be negative, got {self.seed}")
        if not 0.0 <= self.pv_share <= 1.0:
            raise ConfigError(f"--pv-share must lie in [0, 1], got {self.pv_share}")
        if not 0.0 <= self.battery_share <= 1.0:
            raise ConfigError(f"--battery-share must lie in [0, 1], got {self.battery_share}")
        if self.forecaster not in ("prophet", "naive"):
            raise ConfigError(f"--forecaster must be prophet or naive, not {self.forecaster!r}")
        if not (len(self.currency) == 3 and self.currency.isascii() and self.currency.isupper()):
            raise ConfigError(
                f"--currency must be an ISO 4217 code like EUR, not {self.currency!r}"
            )
        if not 0.0 <= self.inject_faults <= 1.0:
            raise ConfigError(f"--inject-faults must lie in [0, 1], got {self.inject_faults}")
        generated = {f"h{i + 1:03d}" for i in range(self.households)}
        clash = sorted(generated & {h.agent_id for h in self.planned})
        if clash:
            raise ConfigError(
                f"--households {self.households}: generated household {clash[0]} has the"
                " id of a household in the scenario file"
            )
        if self.broker != "auto":
            parse_broker_url_or_config_error(self.broker)

    def plan(self) -> ScenarioPlan:
        """The scenario to build (:func:`wattmesh.sim.plan.build_planned`)."""
        return ScenarioPlan(
            generated=self.households,
            pv_share=self.pv_share,
            battery_share=self.battery_share,
            households=self.planned,
            start=self.start,
            interval_s=self.interval_s,
            latitude_deg=self.latitude_deg,
            longitude_deg=self.longitude_deg,
        )

    def tariff_at(self, interval: int) -> GridTariff:
        """The grid tariff of the interval starting at ``interval`` (epoch s)."""
        return self.tariff if self.tariffs is None else self.tariffs.at(interval)


def parse_broker_url_or_config_error(url: str) -> BrokerAddress:
    try:
        return parse_broker_url(url)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
