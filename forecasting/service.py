"""The forecasting service: turns household readings into per-household forecasts.

It subscribes to every household's signed readings, derives per-interval demand and PV
energy from the cumulative registers, refits a model per household once a day (Prophet,
or a seasonal-naive model), and publishes a signed forecast for the next intervals to
each household's forecast topic every time a new reading arrives.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import ForecastBody, ReadingBody, Signer, decode_message
from wattmesh.broker.topics import READING, Topics
from wattmesh.broker.transport import Message, Transport
from wattmesh.forecasting._fit import Fitted, fit_builtin
from wattmesh.forecasting._models import Series
from wattmesh.forecasting.anomaly import AnomalyFlag, anomaly_body

__all__ = ["ForecastService", "ForecasterConfig", "ModelName"]

_LOG = logging.getLogger(__name__)

ModelName = Literal["prophet", "naive"]
SERVICE_ID = "forecaster"


@dataclass(frozen=True)
class ForecasterConfig:
    topics: Topics
    interval_s: int = 900
    horizon: int = 96  # intervals published with every forecast
    model: ModelName = "prophet"
    refit_intervals: int = 96  # refit each household's model once per this many intervals
    window_intervals: int = 28 * 96  # history kept and fitted on
    min_history_intervals: int = 2 * 96  # below this, Prophet falls back to seasonal naive
    workers: int = 2  # model fits in parallel


@dataclass
class _Household:
    start: int  # epoch s of demand[0] / pv[0]
    demand: list[int] = field(default_factory=list)
    pv: list[int] = field(default_factory=list)
    last: ReadingBody | None = None
    fitted_at: int | None = None
    demand_fc: Fitted | None = None
    pv_fc: Fitted | None = None


class ForecastService:
    """Consumes readings and publishes forecasts; see the module docstring."""

    def __init__(
        self,
        config: ForecasterConfig,
        *,
        key: SigningKey,
        transport: Transport,
        registry: Mapping[str, VerifyingKey] | None = None,
    ) -> None:
        self.config = config
        self.key = key
        self.transport = transport
        self._signer = Signer(key, config.topics.market_id, SERVICE_ID)
        self.registry = registry
        self.ignored: Counter[str] = Counter()
        self.fits = 0
        self.models: Counter[str] = Counter()  # which model produced each fitted series
        self._households: dict[str, _Household] = {}
        self._seq = 0
        self._fit_slots = asyncio.Semaphore(config.workers)
        # Prophet is not thread-safe (it filters warnings process-wide), so fits run in
        # worker processes; the naive model is cheap enough to run inline.
        self._pool: ProcessPoolExecutor | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._agent_locks: dict[str, asyncio.Lock] = {}

    def load_history(
        self, agent: str, *, start: int, demand_wh: Sequence[int], pv_wh: Sequence[int]
    ) -> None:
        """Seed a household's history (e.g. from the ledger's readings or a scenario)."""
        if len(demand_wh) != len(pv_wh):
            raise ValueError("demand and PV histories differ in length")
        keep = self.config.window_intervals
        skipped = max(len(demand_wh) - keep, 0)
        self._households[agent] = _Household(
            start=start + skipped * self.config.interval_s,
            demand=list(demand_wh[skipped:]),
            pv=list(pv_wh[skipped:]),
        )

    async def run(self) -> None:
        try:
            async for message in self.transport.messages():
                task = asyncio.create_task(self.handle(message))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        finally:
            for task in self._tasks:
                task.cancel()

    async def handle(self, message: Message) -> None:
        where = self.config.topics.classify(message.topic)
        if where is None or where.kind != READING:
            self.ignored["bad_topic"] += 1  # never raises: forecast(agent) stays valid
            return
        agent = where.agent
        try:
            decoded = decode_message(message.payload)
            reading = decoded.body_as(ReadingBody)
            if decoded.header.agent != agent:
                raise MessageError(RejectReason.KEY_MISMATCH, "topic names another household")
            if self.registry is not None:
                key = self.registry.get(agent)
                if key is None:
                    self.ignored["unknown_key"] += 1
                    return
                decoded.verify(key)
        except MessageError as exc:
            self.ignored[exc.reason.value] += 1
            return
        lock = self._agent_locks.setdefault(agent, asyncio.Lock())
        async with lock:
            await self._on_reading(agent, reading)

    async def _on_reading(self, agent: str, reading: ReadingBody) -> None:
        interval_s = self.config.interval_s
        now = reading.meter_time - reading.meter_time % interval_s
        hh = self._households.get(agent)
        if hh is None:
            hh = self._households[agent] = _Household(start=now)
        _append_deltas(hh, reading, interval_s)
        hh.last = reading
        history_end = hh.start + len(hh.demand) * interval_s
        if history_end != now:
            _LOG.info(
                "%s: history ends at %s, reading at %s; restarting it", agent, history_end, now
            )
            hh.start, hh.demand, hh.pv = now, [], []
            hh.fitted_at = None
        self._trim(hh)
        if hh.fitted_at is None or now - hh.fitted_at >= self.config.refit_intervals * interval_s:
            await self._refit(hh, now)
        if hh.demand_fc is None or hh.pv_fc is None or hh.fitted_at is None:
            raise RuntimeError("refit left no forecast")  # unreachable: _refit sets all three
        offset = (now - hh.fitted_at) // interval_s
        body = _body(hh.demand_fc, hh.pv_fc, now, offset, self.config.horizon)
        self._seq += 1
        expires = now + self.config.horizon * interval_s
        message = self._signer.sign(body, interval=now, seq=self._seq, expires=expires)
        topic = self.config.topics.forecast(agent)
        await self.transport.publish(topic, message.to_wire(), qos=1, retain=True)

    def demand_band(
        self, agent: str, start: int, count: int
    ) -> tuple[tuple[int, ...], tuple[int, ...]] | None:
        """The p10 and p90 of the household's current demand fit for ``count`` intervals
        from ``start`` (None when its fit does not cover them all)."""
        hh = self._households.get(agent)
        fit = None if hh is None else hh.demand_fc
        if fit is None or start < fit.start_s:
            return None
        offset = (start - fit.start_s) // fit.interval_s
        if offset + count > len(fit.p10_wh):
            return None
        cut = slice(offset, offset + count)
        return fit.p10_wh[cut], fit.p90_wh[cut]

    def forget(self, flag: AnomalyFlag) -> int:
        """Not to learn from a flagged episode: the household's history over the flag's
        evidence window takes the medians its current fits forecast for it (where they
        cover it). Returns the intervals replaced."""
        hh = self._households.get(flag.agent)
        if hh is None or hh.demand_fc is None or hh.pv_fc is None:
            return 0
        step = self.config.interval_s
        replaced = 0
        for at in range(flag.window_start, flag.window_end, step):
            i = (at - hh.start) // step
            k = (at - hh.demand_fc.start_s) // step
            if 0 <= i < len(hh.demand) and 0 <= k < len(hh.demand_fc.p50_wh):
                hh.demand[i] = hh.demand_fc.p50_wh[k]
                hh.pv[i] = hh.pv_fc.p50_wh[k] if k < len(hh.pv_fc.p50_wh) else hh.pv[i]
                replaced += 1
        return replaced

    async def publish_anomaly(self, flag: AnomalyFlag) -> None:
        """Sign and publish an anomaly flag on the household's ``anomaly`` topic (not
        retained: the ledger logs it, which is its record)."""
        body = anomaly_body(flag)
        self._seq += 1
        message = self._signer.sign(
            body, interval=flag.interval, seq=self._seq, expires=flag.window_end + 86_400
        )
        topic = self.config.topics.anomaly(flag.agent)
        await self.transport.publish(topic, message.to_wire(), qos=1)

    def _trim(self, hh: _Household) -> None:
        extra = len(hh.demand) - self.config.window_intervals
        if extra > 0:
            del hh.demand[:extra]
            del hh.pv[:extra]
            hh.start += extra * self.config.interval_s

    async def _refit(self, hh: _Household, now: int) -> None:
        interval_s = self.config.interval_s
        steps = self.config.horizon + self.config.refit_intervals
        demand = Series(hh.start, interval_s, tuple(hh.demand))
        pv = Series(hh.start, interval_s, tuple(hh.pv))
        model, minimum = self.config.model, self.config.min_history_intervals
        if model == "naive":
            demand_fc = fit_one(demand, steps, "demand", model, minimum)
            pv_fc = fit_one(pv, steps, "pv", model, minimum)
        else:
            if self._pool is None:
                context = multiprocessing.get_context("forkserver")
                self._pool = ProcessPoolExecutor(self.config.workers, mp_context=context)
            loop = asyncio.get_running_loop()
            async with self._fit_slots:
                demand_fc, pv_fc = await asyncio.gather(
                    loop.run_in_executor(
                        self._pool, fit_one, demand, steps, "demand", model, minimum
                    ),
                    loop.run_in_executor(self._pool, fit_one, pv, steps, "pv", model, minimum),
                )
        hh.demand_fc, hh.pv_fc, hh.fitted_at = demand_fc, pv_fc, now
        self.fits += 1
        self.models[demand_fc.model] += 1
        self.models[pv_fc.model] += 1

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


def fit_one(
    series: Series, steps: int, kind: Literal["demand", "pv"], model: ModelName, minimum: int
) -> Fitted:
    """Fit one series and forecast ``steps`` intervals with its 10/50/90 % bands (runs in
    a worker process); any model but ``prophet`` is the seasonal naive one."""
    choice: Literal["prophet", "naive"] = "prophet" if model == "prophet" else "naive"
    return fit_builtin(series, steps, kind, choice, min_history=minimum, capacity_wh=None)


def _body(demand: Fitted, pv: Fitted, now: int, offset: int, horizon: int) -> ForecastBody:
    """The forecast of ``horizon`` intervals from ``now``, ``offset`` steps into the fits."""
    cut = slice(offset, offset + horizon)
    versions = dict.fromkeys((demand.version, pv.version))
    return ForecastBody(
        start=now,
        interval_s=demand.interval_s,
        demand_wh=demand.p50_wh[cut],
        pv_wh=pv.p50_wh[cut],
        model=demand.model,
        fallback=demand.fallback or pv.fallback,
        version="+".join(versions),
        issued_s=now,
        trained_on=None,  # the bus's readings, not the ledger's log
        demand_p10_wh=demand.p10_wh[cut],
        demand_p90_wh=demand.p90_wh[cut],
        pv_p10_wh=pv.p10_wh[cut],
        pv_p90_wh=pv.p90_wh[cut],
    )


def demand_and_pv(last: ReadingBody, reading: ReadingBody) -> tuple[int, int] | None:
    """Demand and PV energy (Wh) between two readings, or None when not to be learnt from.

    Demand is ``d_import - d_export + d_pv - d_battery_in + d_battery_out`` (battery
    terms only when both readings carry battery registers; None when just one does or a
    register went backwards), clamped at 0.
    """
    d_import = reading.import_wh - last.import_wh
    d_export = reading.export_wh - last.export_wh
    d_pv = reading.pv_wh - last.pv_wh
    d_in = d_out = 0
    if (last.battery_in_wh is None) != (reading.battery_in_wh is None):
        return None  # a battery appeared or vanished: its registers have no baseline
    if last.battery_in_wh is not None and reading.battery_in_wh is not None:
        d_in = reading.battery_in_wh - last.battery_in_wh
        d_out = (reading.battery_out_wh or 0) - (last.battery_out_wh or 0)
    if min(d_import, d_export, d_pv, d_in, d_out) < 0:
        return None  # registers went backwards: do not learn from it
    return max(d_import - d_export + d_pv - d_in + d_out, 0), d_pv


def _append_deltas(hh: _Household, reading: ReadingBody, interval_s: int) -> None:
    """Append the energy between the last reading and this one, one value per interval.

    A gap of several intervals is spread evenly over them (remainder on the last).
    """
    last = hh.last
    if last is None:
        return
    steps = (reading.meter_time - last.meter_time) // interval_s
    if steps <= 0:
        return
    energy = demand_and_pv(last, reading)
    if energy is None:
        return
    demand, d_pv = energy
    for i in range(steps):
        last_step = i == steps - 1
        hh.demand.append(demand // steps + (demand % steps if last_step else 0))
        hh.pv.append(d_pv // steps + (d_pv % steps if last_step else 0))
