"""The forecasting service's messages: per-household ``forecast`` and ``anomaly``, its ``health``.

A ``forecast`` carries, per interval from ``start``, the median (``demand_wh``,
``pv_wh``: what every agent reads) and the 10 % and 90 % quantiles of demand and PV
energy in Wh; the model, its version, when it was issued and the signed checkpoint of
the ledger's log that covers the readings it was trained on (``trained_on``: tree size
and hex root, or null). ``health`` is the service's retained self-report: a state and
counters. Both are bodies of the signed envelope (:mod:`broker.messages`), signed by
the forecasting service (``agent`` = ``forecaster``); docs/protocol.md is the contract.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

from wattmesh.broker._validate import (
    as_object,
    exact_keys,
    get_choice,
    get_int,
    get_int_list,
    get_opt_str,
    get_str,
    schema_error,
)

__all__ = [
    "ANOMALY_KINDS",
    "HEALTH_COUNTERS",
    "MAX_FORECAST_STEPS",
    "MAX_REASON_CHARS",
    "AnomalyBody",
    "ForecastBody",
    "HealthBody",
    "TrainedOn",
]

MAX_FORECAST_STEPS: Final = 7 * 96
HEALTH_COUNTERS: Final = (
    "households",  # households with a model (or a forecast) in the service
    "readings_verified",  # readings from the bus whose signature verified
    "readings_ignored",  # readings from the bus not acted on (bad topic, signature, key)
    "logged_readings",  # readings taken from the ledger's log into the training data
    "logged_refused",  # logged readings refused (unknown household, signature)
    "forecasts_published",
    "fits",  # household fits (both targets) done
    "fit_failures",  # fits that raised (the household keeps its previous model)
)
HEALTH_STATES: Final = ("starting", "ok", "degraded", "stopped")
_HEX = "0123456789abcdef"
_LISTS = ("demand_wh", "pv_wh", "demand_p10_wh", "demand_p90_wh", "pv_p10_wh", "pv_p90_wh")
_FORECAST_KEYS = frozenset(
    {"start", "interval_s", *_LISTS, "model", "version", "issued_s", "fallback", "trained_on"}
)


@dataclass(frozen=True)
class TrainedOn:
    """A signed checkpoint of the ledger's log: ``tree_size`` leaves, ``root`` in hex."""

    tree_size: int
    root: str  # 64 lowercase hex digits

    def to_json(self) -> dict[str, Any]:
        return {"tree_size": self.tree_size, "root": self.root}

    @classmethod
    def from_json(cls, value: Any) -> TrainedOn | None:
        if value is None:
            return None
        obj = as_object(value, "trained_on")
        exact_keys(obj, {"tree_size", "root"}, "trained_on")
        root = get_str(obj, "root", max_len=64)
        if len(root) != 64 or root.strip(_HEX):
            raise schema_error("trained_on.root must be 64 lowercase hex digits")
        return cls(get_int(obj, "tree_size", minimum=1), root)


@dataclass(frozen=True)
class ForecastBody:
    """Forecast energy per interval from ``start`` (epoch s) in steps of ``interval_s``.

    ``demand_wh``/``pv_wh`` are the medians (50 %); the ``_p10_``/``_p90_`` lists the
    10 % and 90 % quantiles (p10 <= median <= p90 at every step). Left out when built,
    the quantiles are the median (an interval of width 0: no spread known).
    """

    KIND: ClassVar[str] = "forecast"
    start: int
    interval_s: int
    demand_wh: tuple[int, ...]
    pv_wh: tuple[int, ...]
    model: str
    fallback: str | None
    version: str = "1"
    issued_s: int = 0
    trained_on: TrainedOn | None = None
    demand_p10_wh: tuple[int, ...] | None = None
    demand_p90_wh: tuple[int, ...] | None = None
    pv_p10_wh: tuple[int, ...] | None = None
    pv_p90_wh: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        steps = len(self.demand_wh)
        for name, median in (("demand", self.demand_wh), ("pv", self.pv_wh)):
            for q in ("p10", "p90"):
                if getattr(self, f"{name}_{q}_wh") is None:
                    object.__setattr__(self, f"{name}_{q}_wh", median)
        for name in _LISTS:
            if len(getattr(self, name)) != steps:
                raise schema_error(f"{name} has {len(getattr(self, name))} steps, not {steps}")
        for name in ("demand", "pv"):
            low, mid, high = self.quantiles(name)
            if any(not lo <= m <= hi for lo, m, hi in zip(low, mid, high, strict=True)):
                raise schema_error(f"{name}: p10 <= median <= p90 must hold at every step")

    def quantiles(self, target: str) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(p10, median, p90) of ``target`` ("demand" or "pv")."""
        mid: tuple[int, ...] = getattr(self, f"{target}_wh")
        low = getattr(self, f"{target}_p10_wh")
        high = getattr(self, f"{target}_p90_wh")
        return (mid if low is None else low), mid, (mid if high is None else high)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"start": self.start, "interval_s": self.interval_s}
        for name in _LISTS:
            obj[name] = list(getattr(self, name))
        obj.update(
            model=self.model,
            version=self.version,
            issued_s=self.issued_s,
            fallback=self.fallback,
            trained_on=None if self.trained_on is None else self.trained_on.to_json(),
        )
        return obj

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> ForecastBody:
        exact_keys(obj, set(_FORECAST_KEYS), "forecast")
        lists = {name: get_int_list(obj, name, max_items=MAX_FORECAST_STEPS) for name in _LISTS}
        if len({len(values) for values in lists.values()}) != 1:
            raise schema_error("demand_wh, pv_wh and their quantiles differ in length")
        return cls(
            start=get_int(obj, "start"),
            interval_s=get_int(obj, "interval_s", minimum=1, maximum=86_400),
            model=get_str(obj, "model", max_len=64),
            fallback=get_opt_str(obj, "fallback"),
            version=get_str(obj, "version", max_len=64),
            issued_s=get_int(obj, "issued_s"),
            trained_on=TrainedOn.from_json(obj["trained_on"]),
            **lists,
        )


@dataclass(frozen=True)
class HealthBody:
    """The forecasting service's health, retained on ``service/forecaster/health``.

    ``state``: one of :data:`HEALTH_STATES`; ``counters``: every name of
    :data:`HEALTH_COUNTERS` -> its count since the process started; ``trained_on``: the checkpoint
    its training data reaches (null before any); ``last_refit_s``: when the last refit
    ended (epoch s, or null).
    """

    KIND: ClassVar[str] = "health"
    state: str
    started_s: int
    counters: Mapping[str, int]
    trained_on: TrainedOn | None = None
    last_refit_s: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "started_s": self.started_s,
            "counters": {name: self.counters.get(name, 0) for name in HEALTH_COUNTERS},
            "trained_on": None if self.trained_on is None else self.trained_on.to_json(),
            "last_refit_s": self.last_refit_s,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> HealthBody:
        exact_keys(obj, {"state", "started_s", "counters", "trained_on", "last_refit_s"}, "health")
        counters = as_object(obj["counters"], "counters")
        exact_keys(counters, set(HEALTH_COUNTERS), "counters")
        last = obj["last_refit_s"]
        return cls(
            state=get_choice(obj, "state", HEALTH_STATES),
            started_s=get_int(obj, "started_s"),
            counters={k: get_int(counters, k) for k in HEALTH_COUNTERS},
            trained_on=TrainedOn.from_json(obj["trained_on"]),
            last_refit_s=None if last is None else get_int(obj, "last_refit_s"),
        )


ANOMALY_KINDS: Final = ("night_export", "short_delivery", "forecast_deviation")
MAX_REASON_CHARS: Final = 200


@dataclass(frozen=True)
class AnomalyBody:
    """An anomaly the forecasting service found in a household's logged data, on
    ``household/<agent>/anomaly`` (not retained), signed by the forecaster and logged by
    the ledger as an ``anomaly`` entry.

    ``anomaly``: the detector (:data:`ANOMALY_KINDS`); ``interval``: the episode's first
    interval (epoch s); ``score_milli``: the score in [0, 1] in thousandths;
    ``window_start`` .. ``window_end``: the evidence window (epoch s, end exclusive).
    """

    KIND: ClassVar[str] = "anomaly"
    agent: str
    anomaly: str
    interval: int
    reason: str
    score_milli: int
    window_start: int
    window_end: int

    def __post_init__(self) -> None:
        if self.anomaly not in ANOMALY_KINDS:
            raise schema_error(f"anomaly must be one of {', '.join(ANOMALY_KINDS)}")
        if not 0 <= self.score_milli <= 1000:
            raise schema_error("score_milli must lie in [0, 1000]")
        if not self.window_start <= self.interval < self.window_end:
            raise schema_error("the interval must lie in the evidence window")
        if len(self.reason) > MAX_REASON_CHARS:
            raise schema_error(f"reason longer than {MAX_REASON_CHARS} characters")

    def to_json(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "anomaly": self.anomaly,
            "interval": self.interval,
            "reason": self.reason,
            "score_milli": self.score_milli,
            "window_start": self.window_start,
            "window_end": self.window_end,
        }

    @classmethod
    def from_json(cls, obj: Mapping[str, Any]) -> AnomalyBody:
        keys = {"agent", "anomaly", "interval", "reason", "score_milli"}
        exact_keys(obj, keys | {"window_start", "window_end"}, "anomaly")
        return cls(
            agent=get_str(obj, "agent", max_len=64),
            anomaly=get_choice(obj, "anomaly", ANOMALY_KINDS),
            interval=get_int(obj, "interval"),
            reason=get_str(obj, "reason", max_len=MAX_REASON_CHARS),
            score_milli=get_int(obj, "score_milli", minimum=0, maximum=1000),
            window_start=get_int(obj, "window_start"),
            window_end=get_int(obj, "window_end"),
        )
