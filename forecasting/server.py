"""``wattmesh forecast serve``'s service: logged readings in, retained signed forecasts out.

Training data is what the ledger logged, never what the bus alone carries: the
composition root (``wattmesh/cli/forecast_cli.py``) reads the ledger's log up to its
latest signed checkpoint each time one is announced, keeps the readings whose
signatures verify (:class:`forecasting.history.LoggedBatch`) and hands them to
:meth:`ForecastServer.take_logged`; they go into the service's own SQL tables. Each
fit is trained on those readings only and remembers the checkpoint that covers them,
which every forecast it gives names in ``trained_on``.

A reading on the bus (signature checked against the registry) asks for the
household's forecast of its interval: the stored fit's bands from that interval on,
published retained and signed. Fits run in a process pool (``workers`` 0: inline),
household by household (never every household's model at once): all of them on the
daily schedule (``refit_hour_utc``), and at once a household whose fit is a stand-in
for too little history (refitted with every logged batch) or no longer covers the
interval asked for. Each refit hands the fit the household's stored one (Prophet
warm-starts from its parameters) and the point forecasts earlier fits made of the
intervals logged since (kept for :data:`~forecasting.history.PAST_DAYS` days: the fitted
models calibrate their bands on them instead of fitting twice). ``auto`` chooses each
household and target's model by backtests every ``select_every_days`` (from
:data:`SELECT_MIN_DAYS` of history; shorter ones choose at each refit); in between the
stored choice is fitted by name. A retained signed ``health`` message reports state and
counters (``model_choices``, the choices made and stored, is counted in
:attr:`ForecastServer.counters` but not yet on the wire).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import ForecastBody, HealthBody, ReadingBody, Signer, decode_message
from wattmesh.broker.topics import READING, Topics
from wattmesh.broker.transport import Message, Transport
from wattmesh.forecasting import _neighbourhood
from wattmesh.forecasting._fit import (
    CATALOG_AUTO,
    USES_PAST,
    FitJob,
    ModelChoice,
    check_choice,
    fit_household,
)
from wattmesh.forecasting._models import intervals_per_day
from wattmesh.forecasting._serve_anomalies import flags_after_fit
from wattmesh.forecasting._serve_bodies import body_of, covers, was_chosen
from wattmesh.forecasting.anomaly import anomaly_body
from wattmesh.forecasting.history import (
    Episode,
    HistoryStore,
    LoggedBatch,
    StoredFit,
    series_from_readings,
)

__all__ = ["ForecastServer", "ModelChoice", "ServeConfig", "check_choice"]

_LOG = logging.getLogger(__name__)
SERVICE_ID = "forecaster"
STAND_IN = "history_mean"  # the model of too little history
SELECT_MIN_DAYS = 7
"""Days of history from which an ``auto`` choice is stored and kept (its backtest has
its full 5 day-ahead origins)."""


@dataclass(frozen=True)
class ServeConfig:
    topics: Topics
    interval_s: int = 900
    horizon: int = 96  # intervals in each forecast
    window_days: int = 28  # history fitted on
    demand_model: ModelChoice = "auto"
    pv_model: ModelChoice = "auto"
    refit_hour_utc: int = 2
    workers: int = 2  # 0: fit in this process
    select_every_days: int = 7  # auto: the choosing backtests' schedule
    pv_capacity_w: Mapping[str, int] = field(default_factory=dict)


class ForecastServer:
    """See the module docstring."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        key: SigningKey,
        transport: Transport,
        store: HistoryStore,
        registry: Mapping[str, VerifyingKey],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.transport = transport
        self.store = store
        self.registry = registry
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.started_s = int(clock())
        self.last_refit_s: int | None = None
        self._signer = Signer(key, config.topics.market_id, SERVICE_ID)
        self._seq = 0
        self._locks: dict[str, asyncio.Lock] = {}
        self._pool: Executor | None = None
        self._log_lock = asyncio.Lock()  # log batches apply one at a time, in order
        self._background: set[asyncio.Task[None]] = set()
        self._log_failed = False  # the last read of the log failed: health "degraded"
        self._day = intervals_per_day(config.interval_s)

    # ------------------------------------------------------------------ inputs

    async def take_logged(self, batch: LoggedBatch) -> None:
        """Keep what the log added and refit the households that need it now."""
        await asyncio.to_thread(self.store.add_logged, batch)
        self.counters["logged_readings"] += len(batch.readings)
        self.counters["logged_refused"] += batch.refused
        agents = sorted({r.agent for r in batch.readings})
        stale = [a for a in agents if await self._needs_refit(a)]
        if stale:
            fitted = set(await asyncio.to_thread(self.store.fitted_agents))
            await self.refit(stale)
            if not set(stale) <= fitted:  # households got their first fits
                await self.publish_neighbourhood()
        _LOG.info(
            "log read to checkpoint %d: %d readings, %d refused; %d households refitted",
            batch.checkpoint.tree_size,
            len(batch.readings),
            batch.refused,
            len(stale),
        )
        await self.publish_health("ok")

    async def handle(self, message: Message) -> None:
        """A reading on the bus: publish its household's forecast for its interval."""
        where = self.config.topics.classify(message.topic)
        if where is None or where.kind != READING or where.agent not in self.registry:
            self.counters["readings_ignored"] += 1
            return
        agent = where.agent
        try:
            decoded = decode_message(message.payload)
            decoded.body_as(ReadingBody)
            if decoded.header.agent != agent or decoded.header.market != self._signer.market:
                raise ValueError("another household's or market's reading")
            decoded.verify(self.registry[agent])
        except (MessageError, ValueError):
            self.counters["readings_ignored"] += 1
            return
        self.counters["readings_verified"] += 1
        interval = decoded.header.interval
        interval -= interval % self.config.interval_s
        await self.publish_forecast(agent, interval)

    # ----------------------------------------------------------------- outputs

    async def publish_forecast(self, agent: str, interval: int) -> None:
        """The household's retained forecast from ``interval`` (refit first if its fit
        does not reach that far; a forecast of zeros before it has any history)."""
        horizon = self.config.horizon
        fit = await asyncio.to_thread(self.store.fit, agent)
        if fit is None or not covers(fit, interval, horizon):
            await self.refit([agent])
            fit = await asyncio.to_thread(self.store.fit, agent)
        if fit is None or not covers(fit, interval, horizon):
            zero = (0,) * horizon
            body = ForecastBody(
                interval, self.config.interval_s, zero, zero, "zero", "no logged history yet",
                version="zero/1", issued_s=int(self.clock()), trained_on=None,
            )  # fmt: skip
        else:
            body = body_of(fit, interval, horizon, issued_s=int(self.clock()))
        message = self._signer.sign(
            body, interval=interval, seq=self._next_seq(),
            expires=interval + horizon * self.config.interval_s,
        )  # fmt: skip
        topic = self.config.topics.forecast(agent)
        await self.transport.publish(topic, message.to_wire(), qos=1, retain=True)
        self.counters["forecasts_published"] += 1

    async def publish_neighbourhood(self) -> None:
        """The neighbourhood's forecast (:mod:`forecasting._neighbourhood`: the sum of
        the households' trainable histories over their common window), from the current
        interval, retained and signed on ``market/forecast``. A failure is logged and
        counted; the service goes on."""
        step, horizon = self.config.interval_s, self.config.horizon
        now = int(self.clock())
        since = now - self.config.window_days * 86_400
        try:
            series = await asyncio.to_thread(
                _neighbourhood.histories, self.store, since_s=since, interval_s=step
            )
            agg = _neighbourhood.aggregate(series, interval_s=step)
            del series
            if agg is None:
                return
            call = functools.partial(
                _neighbourhood.neighbourhood_fit,
                agg,
                steps=self._steps(agg.start_s + len(agg.demand_wh) * step, now),
                demand_model=self.config.demand_model,
                pv_model=self.config.pv_model,
                pv_capacity_w=dict(self.config.pv_capacity_w),
            )
            if self.config.workers == 0:
                demand, pv = call()
            else:
                demand, pv = await asyncio.get_running_loop().run_in_executor(
                    self._executor(), call
                )
        except Exception:
            _LOG.exception("the neighbourhood forecast failed")
            self.counters["neighbourhood_failures"] += 1
            return
        _, trained_on = await asyncio.to_thread(self.store.position)
        interval = now - now % step
        fit = StoredFit(_neighbourhood.NEIGHBOURHOOD, now, trained_on, demand, pv)
        body = body_of(fit, interval, horizon, issued_s=now)
        reason = _neighbourhood.left_out_reason(agg)
        if reason is not None:
            body = dataclasses.replace(
                body, fallback=reason if body.fallback is None else f"{body.fallback}; {reason}"
            )
        message = self._signer.sign(
            body, interval=interval, seq=self._next_seq(), expires=interval + horizon * step
        )
        topic = self.config.topics.neighbourhood_forecast
        await self.transport.publish(topic, message.to_wire(), qos=1, retain=True)
        self.counters["neighbourhood_forecasts_published"] += 1
        self.counters["neighbourhood_households"] = len(agg.agents)

    async def publish_health(self, state: str) -> None:
        """The retained signed health; ``ok`` says ``degraded`` while the last read of the
        ledger's log failed."""
        if state == "ok" and self._log_failed:
            state = "degraded"
        _, trained_on = await asyncio.to_thread(self.store.position)
        counters = dict(self.counters)
        counters["households"] = len(await asyncio.to_thread(self.store.fitted_agents))
        body = HealthBody(state, self.started_s, counters, trained_on, self.last_refit_s)
        now = int(self.clock())
        message = self._signer.sign(body, interval=now - now % self.config.interval_s,
                                    seq=self._next_seq(), expires=0)  # fmt: skip
        health = self.config.topics.forecaster_health
        await self.transport.publish(health, message.to_wire(), qos=1, retain=True)

    # -------------------------------------------------------------------- fits

    async def refit(self, agents: list[str]) -> None:
        """Fit each of ``agents`` on its logged history (a few at a time in the pool)."""
        slots = asyncio.Semaphore(max(self.config.workers, 1) * 2)

        async def one(agent: str) -> None:
            async with slots, self._locks.setdefault(agent, asyncio.Lock()):
                await self._refit_one(agent)

        await asyncio.gather(*(one(agent) for agent in agents))
        self.last_refit_s = int(self.clock())

    async def refit_all(self) -> None:
        agents = await asyncio.to_thread(self.store.agents)
        started = time.monotonic()
        await self.refit(agents)
        _LOG.info("refitted %d households in %.1f s", len(agents), time.monotonic() - started)
        keep_from = int(self.clock()) - (self.config.window_days + 1) * 86_400
        await asyncio.to_thread(self.store.forget_before, keep_from)
        await self.publish_neighbourhood()
        await self.publish_health("ok")

    async def _refit_one(self, agent: str) -> None:
        now = int(self.clock())
        since = now - self.config.window_days * 86_400
        rows = await asyncio.to_thread(self.store.readings, agent, since_s=since)
        _, trained_on = await asyncio.to_thread(self.store.position)
        previous = await asyncio.to_thread(self.store.fit, agent)  # Prophet warm-starts from it
        start, demand, pv = series_from_readings(
            ((flagged, r) for _, flagged, r in rows), self.config.interval_s
        )
        if not demand:
            return
        history_end = start + len(demand) * self.config.interval_s
        if previous is not None:  # its forecasts of what was logged since: the next bands
            await asyncio.to_thread(self.store.keep_past, previous, history_end, USES_PAST)
        past = await asyncio.to_thread(self.store.past, agent)
        choices = await asyncio.to_thread(self.store.choices, agent)
        days = len(demand) // self._day
        models = {
            target: self._model(configured, choices.get(target), now, days)
            for target, configured in (
                ("demand", self.config.demand_model), ("pv", self.config.pv_model)
            )
        }  # fmt: skip
        job = FitJob(
            agent=agent,
            start_s=start,
            interval_s=self.config.interval_s,
            demand_wh=tuple(demand),
            pv_wh=tuple(pv),
            steps=self._steps(start + len(demand) * self.config.interval_s, now),
            demand_model=models["demand"],
            pv_model=models["pv"],
            pv_capacity_w=self.config.pv_capacity_w.get(agent),
            demand_state=None if previous is None else previous.demand.state,
            pv_state=None if previous is None else previous.pv.state,
            demand_past=past.get("demand", ()),
            pv_past=past.get("pv", ()),
        )  # fmt: skip
        try:
            if self.config.workers == 0:
                demand_fit, pv_fit = fit_household(job)
            else:
                loop = asyncio.get_running_loop()
                demand_fit, pv_fit = await loop.run_in_executor(
                    self._executor(), fit_household, job
                )
        except Exception:
            _LOG.exception("%s: the fit failed; its previous model stays", agent)
            self.counters["fit_failures"] += 1
            return
        previous = await asyncio.to_thread(self.store.fit, agent)
        fit = StoredFit(agent, now, trained_on, demand_fit, pv_fit)
        await asyncio.to_thread(self.store.save_fit, fit)
        self.counters["fits"] += 1
        for fitted in (demand_fit, pv_fit):
            if models[fitted.target] == "auto" and was_chosen(fitted) and days >= SELECT_MIN_DAYS:
                await asyncio.to_thread(self.store.save_choice, agent, fitted.target,
                                        fitted.model, now)  # fmt: skip
                self.counters["model_choices"] += 1
        await self.publish_anomalies(agent, rows, previous)

    async def publish_anomalies(
        self,
        agent: str,
        rows: list[tuple[int, bool, ReadingBody]],
        previous: StoredFit | None = None,
    ) -> None:
        """The anomaly hook after each fit: the detectors over the household's logged
        readings (flagged ones left out) and settlements: night export, short delivery,
        and the demand logged since the ``previous`` fit against that fit's band (unless
        a stand-in model made it); each new episode kept in the store (one overlapping a
        kept episode of its kind is the same episode), then signed and published on
        ``household/<id>/anomaly`` for the ledger to log: once, restarts included."""
        since = int(self.clock()) - self.config.window_days * 86_400
        settled = await asyncio.to_thread(self.store.settled, agent, since_s=since)
        flags = flags_after_fit(
            agent, rows, previous, self.config.interval_s, STAND_IN, settled=settled
        )
        for flag in flags:
            episode = Episode(
                flag.agent, flag.kind, flag.interval, flag.window_start, flag.window_end
            )
            if not await asyncio.to_thread(self.store.add_episode, episode):
                continue
            message = self._signer.sign(
                anomaly_body(flag),
                interval=flag.interval,
                seq=self._next_seq(),
                expires=flag.window_end + 86_400,
            )
            await self.transport.publish(
                self.config.topics.anomaly(agent), message.to_wire(), qos=1
            )
            self.counters["anomalies_published"] += 1

    def _model(
        self, configured: ModelChoice, stored: tuple[str, int] | None, now: int, days: int
    ) -> ModelChoice:
        """What to fit: ``auto``'s stored choice while younger than ``select_every_days``
        (and the history long enough to have made it), else what is configured."""
        if configured != "auto" or stored is None or days < SELECT_MIN_DAYS:
            return configured
        model, chosen_s = stored
        fresh = now - chosen_s < self.config.select_every_days * 86_400
        return model if fresh and model in CATALOG_AUTO else configured

    def _steps(self, history_end: int, now: int) -> int:
        """Enough to forecast ``horizon`` intervals from now until a day from now."""
        behind = max(now - history_end, 0) // self.config.interval_s
        return behind + self.config.horizon + min(self._day, 7 * 96)

    async def _needs_refit(self, agent: str) -> bool:
        fit = await asyncio.to_thread(self.store.fit, agent)
        if fit is None or STAND_IN in (fit.demand.model, fit.pv.model):
            return True
        return fit.demand.model == fit.pv.model == "zero"  # nothing measured yet

    def _executor(self) -> Executor:
        if self._pool is None:
            context = multiprocessing.get_context("forkserver")
            self._pool = ProcessPoolExecutor(self.config.workers, mp_context=context)
        return self._pool

    def _next_seq(self) -> int:
        self._seq = max(self._seq + 1, time.time_ns() // 1000)
        return self._seq

    # -------------------------------------------------------------------- loop

    async def run(
        self,
        stop: asyncio.Event,
        *,
        checkpoint_topic: str,
        read_log: Callable[[], Awaitable[LoggedBatch | None]],
    ) -> None:
        """Serve until ``stop``: readings from the bus, the log on each checkpoint
        announced (and once at start), all households refitted on the schedule."""
        await self.publish_health("starting")
        await self._read_log(read_log)
        tasks = {
            asyncio.create_task(self._messages(checkpoint_topic, read_log), name="messages"),
            asyncio.create_task(self._schedule(stop), name="refit-schedule"),
        }
        stopped = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait({*tasks, stopped}, return_when=asyncio.FIRST_COMPLETED)
            for task in done - {stopped}:
                task.result()  # a task that failed ends the service with its error
        finally:
            pending = (*tasks, stopped, *self._background)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.publish_health("stopped"), 5)
            self.close()

    async def _messages(
        self, checkpoint_topic: str, read_log: Callable[[], Awaitable[LoggedBatch | None]]
    ) -> None:
        async for message in self.transport.messages():
            if message.topic == checkpoint_topic:  # beside the readings: fits may take a while
                task = asyncio.create_task(self._read_log(read_log), name="read-log")
                self._background.add(task)
                task.add_done_callback(self._log_read_done)
            else:
                await self.handle(message)

    async def _read_log(self, read_log: Callable[[], Awaitable[LoggedBatch | None]]) -> None:
        async with self._log_lock:
            try:
                batch = await read_log()
            except Exception:
                self._log_failed = True
                await self.publish_health("degraded")
                raise
            self._log_failed = False
            if batch is not None:
                await self.take_logged(batch)

    def _log_read_done(self, task: asyncio.Task[None]) -> None:
        self._background.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.counters["log_read_failures"] += 1
            _LOG.error("reading the ledger's log failed: %s: %s", type(exc).__name__, exc,
                       exc_info=exc)  # fmt: skip

    async def _schedule(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            now = self.clock()
            due = now - now % 86_400 + self.config.refit_hour_utc * 3600
            if due <= now:
                due += 86_400
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), due - now)
            if not stop.is_set():
                await self.refit_all()

    def close(self) -> None:
        if isinstance(self._pool, ProcessPoolExecutor):
            self._pool.shutdown(cancel_futures=True)
        self._pool = None
