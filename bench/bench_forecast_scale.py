"""``forecast serve`` at scale: 1,000 households x 2 targets, refits and updates timed.

Drives the service's own code path (:class:`forecasting.server.ForecastServer` over SQLite
and a private Mosquitto): :meth:`~ForecastServer.refit_all` for each full refit (store read,
``fit_household`` in the 2-worker process pool, fits saved) and
:meth:`~ForecastServer.handle` with each household's signed reading for the forecast-only
update (stored fit -> signed retained forecast, no refit). The history: 60 days hourly per
household, the UCI household's demand (tests/data) and the 5 kWp Greensboro PV, each
household on its own days, scaled and with its own noise, as cumulative meter registers.

The service's days as they come: the history is logged up to a day before the end, and
the first refits run then (the baseline, and Prophet's first refit: two fits per
forecast, the second calibrating its band); then the last day's readings are logged and
the next day's refits run: Prophet's steady state (one fit per forecast, warm-started,
its band calibrated on its own stored forecasts of the day just logged), the baseline
again, ``auto`` when it chooses (the backtests among naive-day, mean-7d and mean-14d,
then the chosen model; stored) and on a day it fits the stored choice, ``mean-7d`` by
name, the choosing backtests on their own (:func:`forecasting._fit.select_household` in
the same pool), and the update. Peak RSS of the parent and of the largest worker
(sampled with psutil over the process tree) and the tree's CPU seconds beside each.

Usage: ``python bench/bench_forecast_scale.py [--households N] [--skip-prophet]
[--skip-simple] [--window-days D]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _machine import machine_line
from _mosquitto import run_mosquitto

from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.messages import ReadingBody, TrainedOn, sign_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Message, Transport, TransportConfig
from wattmesh.forecasting._fit import FitJob, select_household
from wattmesh.forecasting.backtesting import parse_measured_csv
from wattmesh.forecasting.history import (
    HistoryStore,
    LoggedBatch,
    LoggedReading,
    series_from_readings,
)
from wattmesh.forecasting.server import ForecastServer, ServeConfig

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
STEP = 3600
DAYS = 60
DAY = 86_400 // STEP
T0 = 1_796_000_000 - 1_796_000_000 % 86_400
NOW = T0 + DAYS * 86_400
WORKERS = 2
FORECASTER = SigningKey.generate()
TARGETS = {"refit_s": 180.0, "update_s": 30.0}


def _profile(file: str) -> list[float]:
    series = parse_measured_csv((DATA / file).read_text(), name=file)
    known = [v for v in series.values_w if v is not None]
    mean = sum(known) / len(known)
    return [mean if v is None else float(v) for v in series.values_w]


def _household(rng: random.Random, demand_w: list[float], pv_w: list[float], n: int) -> Iterator[
    ReadingBody
]:  # fmt: skip
    """Cumulative registers of one household over ``n`` hours (a reading each hour)."""
    first = NOW - n * STEP
    d0 = rng.randrange(0, (len(demand_w) - n) // DAY) * DAY
    p0 = rng.randrange(0, (len(pv_w) - n) // DAY) * DAY
    scale = rng.uniform(0.5, 1.8)
    capacity = rng.choice((0.0, 0.6, 0.8, 1.0, 1.2, 1.6))  # x 5 kWp; a fifth without PV
    imp = exp = pv = 0
    yield ReadingBody(first, 0, 0, 0, 0)
    for i in range(n):
        d = max(round(demand_w[d0 + i] * scale * rng.uniform(0.8, 1.2)), 0)
        p = max(round(pv_w[p0 + i] * capacity * rng.uniform(0.9, 1.1)), 0)
        imp += max(d - p, 0)
        exp += max(p - d, 0)
        pv += p
        yield ReadingBody(first + (i + 1) * STEP, imp, exp, pv, 0)


def populate(store: HistoryStore, households: int) -> tuple[list[str], list[LoggedReading]]:
    """Log every household's readings up to a day before ``NOW``; the last day's readings
    (logged later, for the next day's refit) are returned."""
    rng = random.Random(14)
    demand_w, pv_w = _profile("uci_household_demand.csv"), _profile("greensboro_pv_5kwp.csv")
    agents = [f"h{k:04d}" for k in range(households)]
    idx = 0
    last_day: list[LoggedReading] = []
    for first in range(0, households, 50):
        readings: list[LoggedReading] = []
        for agent in agents[first : first + 50]:
            for body in _household(rng, demand_w, pv_w, (DAYS + 1) * DAY):
                logged = LoggedReading(agent, idx, body.meter_time, body)
                (last_day if body.meter_time > NOW - 86_400 else readings).append(logged)
                idx += 1
        on = TrainedOn(idx, "ab" * 32)
        store.add_logged(LoggedBatch(readings, [], 0, idx, on))
    return agents, last_day


class PeakRss:
    """Peak RSS (MiB) of this process and of its largest descendant, sampled every 50 ms,
    and the CPU seconds the tree used meanwhile (this process, the forkserver, the pool's
    workers with the cmdstan runs they waited for): with other work on the machine, CPU
    seconds / cores is what the wall time would be alone."""

    def __init__(self) -> None:
        self.parent_mib = 0.0
        self.worker_mib = 0.0
        self._cpu: dict[int, float] = {}
        self._start: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _once(self) -> None:
        me = psutil.Process()
        self.parent_mib = max(self.parent_mib, me.memory_info().rss / 2**20)
        self._cpu[me.pid] = sum(me.cpu_times()[:2])
        for child in me.children():  # the forkserver
            with contextlib.suppress(psutil.Error):
                self._cpu[child.pid] = sum(child.cpu_times()[:2])
                for worker in child.children():  # pool workers, with their cmdstan runs
                    self.worker_mib = max(self.worker_mib, worker.memory_info().rss / 2**20)
                    self._cpu[worker.pid] = sum(worker.cpu_times()[:4])

    def _sample(self) -> None:
        while not self._stop.wait(0.05):
            with contextlib.suppress(psutil.Error):  # a worker that just ended
                self._once()

    @property
    def cpu_s(self) -> float:
        return sum(v - self._start.get(pid, 0.0) for pid, v in self._cpu.items())

    def __enter__(self) -> PeakRss:
        self._once()
        self._start = dict(self._cpu)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        with contextlib.suppress(psutil.Error):
            self._once()


@dataclass
class Row:
    name: str
    seconds: float
    per_s: float
    parent_mib: float
    worker_mib: float
    cpu_s: float
    models: str = ""


async def _timed(name: str, count: int, run: Callable[[], Awaitable[str]], rows: list[Row]) -> None:
    with PeakRss() as peak:
        started = time.perf_counter()
        models = await run()
        seconds = time.perf_counter() - started
    rows.append(
        Row(name, seconds, count / seconds, peak.parent_mib, peak.worker_mib, peak.cpu_s, models)
    )
    print(f"  {name}: {seconds:.1f} s, {peak.cpu_s:.1f} CPU s ({models})", flush=True)


WINDOW_DAYS = [DAYS]


def _server(topics: Topics, link: Transport, store: HistoryStore, model: str, registry: dict[
    str, VerifyingKey
], now: int = NOW) -> ForecastServer:  # fmt: skip
    config = ServeConfig(
        topics, interval_s=STEP, horizon=DAY, window_days=WINDOW_DAYS[0], demand_model=model,
        pv_model=model, workers=WORKERS,
    )  # fmt: skip
    return ForecastServer(
        config, key=FORECASTER, transport=link, store=store, registry=registry,
        clock=lambda: now,
    )  # fmt: skip


def _models(store: HistoryStore, agents: list[str]) -> str:
    """How many fits of each model (both targets) the store holds now."""
    counts: dict[str, int] = {}
    for agent in agents:
        fit = store.fit(agent)
        assert fit is not None, agent
        for f in (fit.demand, fit.pv):
            label = f.model if f.fallback is None else f"{f.model} (fallback)"
            counts[label] = counts.get(label, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _jobs(store: HistoryStore, agents: list[str]) -> list[FitJob]:
    jobs = []
    for agent in agents:
        rows = store.readings(agent, since_s=NOW - DAYS * 86_400)
        start, demand, pv = series_from_readings(((f, r) for _, f, r in rows), STEP)
        jobs.append(FitJob(agent, start, STEP, tuple(demand), tuple(pv), DAY))
    return jobs


async def run(households: int, skip_prophet: bool, skip_simple: bool) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore(f"sqlite:///{tmp}/forecast.db")
        started = time.perf_counter()
        agents, last_day = populate(store, households)
        print(f"  history: {households} x {(DAYS + 1) * DAY} hourly readings stored in "
              f"{time.perf_counter() - started:.1f} s", flush=True)  # fmt: skip
        keys = {a: SigningKey.generate() for a in agents}
        registry = {a: k.verifying for a, k in keys.items()}
        topics = Topics("bench-scale")
        with run_mosquitto(Path(tmp), "") as (port, _):
            address = BrokerAddress("127.0.0.1", port)
            async with Transport(TransportConfig(address=address, client_id="fc-bench")) as link:
                await asyncio.wait_for(link.wait_connected(), 10)
                yesterday: list[tuple[int, str, str] | None]
                yesterday = [(NOW - 86_400, "naive-day", "seasonal naive (baseline), day 1")]
                if not skip_prophet:  # the first refit: cold, two fits per forecast
                    yesterday.append((NOW - 86_400, "prophet", "Prophet, first (cold, 2 fits)"))
                today: list[tuple[int, str, str] | None] = []
                if not skip_prophet:  # the next day's: warm, one fit, band from the past
                    today.append((NOW, "prophet", "Prophet, steady state (the next day)"))
                today.append((NOW, "naive-day", "seasonal naive (baseline), day 2"))
                if not skip_simple:
                    today += [
                        (NOW, "auto", "auto: choose + fit"),
                        (NOW, "auto", "auto: the stored choice"),
                        (NOW, "mean-7d", "mean-7d by name"),
                    ]
                for step in [*yesterday, None, *today]:
                    if step is None:  # the last day is logged
                        on = TrainedOn(len(last_day), "cd" * 32)
                        store.add_logged(LoggedBatch(last_day, [], 0, len(last_day), on))
                        continue
                    now, model, label = step
                    server = _server(topics, link, store, model, registry, now)
                    try:
                        await _timed(
                            f"full refit: {label}", 2 * households,
                            lambda s=server: _refit(s, store, agents), rows,
                        )  # fmt: skip
                    finally:
                        server.close()
                if not skip_simple:
                    await _timed("choosing backtests alone", 2 * households,
                                 lambda: _backtests(store, agents), rows)  # fmt: skip
                messages = [_reading(topics, a, keys[a]) for a in agents]
                server = _server(topics, link, store, "auto", registry)
                await _timed("forecast-only update", households,
                             lambda: _update(server, messages), rows)  # fmt: skip
        store.close()
    return rows


async def _refit(server: ForecastServer, store: HistoryStore, agents: list[str]) -> str:
    await server.refit_all()
    assert server.counters["fits"] == len(agents), server.counters
    choices = server.counters["model_choices"]
    return _models(store, agents) + (f"; {choices} choices made" if choices else "")


def _choose(store: HistoryStore, agents: list[str]) -> list[tuple[str, str]]:
    jobs = _jobs(store, agents)
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(WORKERS, mp_context=context) as pool:
        return list(pool.map(select_household, jobs, chunksize=16))


async def _backtests(store: HistoryStore, agents: list[str]) -> str:
    chosen = await asyncio.to_thread(_choose, store, agents)  # the loop keeps the link alive
    counts: dict[str, int] = {}
    for pair in chosen:
        for name in pair:
            counts[name] = counts.get(name, 0) + 1
    return ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))


def _reading(topics: Topics, agent: str, key: SigningKey) -> Message:
    wire = sign_message(
        key, ReadingBody(NOW, 0, 0, 0, 0), market=topics.market_id, interval=NOW, agent=agent,
        seq=NOW, expires=NOW + STEP,
    ).to_wire()  # fmt: skip
    return Message(topics.reading(agent), wire, retain=False)


async def _update(server: ForecastServer, messages: list[Message]) -> str:
    for message in messages:
        await server.handle(message)
    assert server.counters["forecasts_published"] == len(messages), server.counters
    assert server.counters["fits"] == 0, server.counters  # no refit
    return f"{len(messages)} forecasts published"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--households", type=int, default=1000)
    parser.add_argument("--skip-prophet", action="store_true")
    parser.add_argument("--skip-simple", action="store_true", help="only baseline and Prophet")
    parser.add_argument("--window-days", type=int, default=DAYS, help="history fitted on")
    args = parser.parse_args()
    WINDOW_DAYS[0] = args.window_days
    print(machine_line())
    print(f"forecast serve at scale: {args.households} households x 2 targets, {DAYS} days "
          f"hourly stored, {args.window_days}-day window fitted, {WORKERS} workers",
          flush=True)  # fmt: skip
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    rows = asyncio.run(run(args.households, args.skip_prophet, args.skip_simple))
    print(
        f"load average after: {os.getloadavg()[0]:.1f} (1 min; other work on the machine "
        "skews the figures)"
    )
    print("\n| run | wall s | CPU s / 2 | series/s | parent peak RSS MiB | worker peak RSS MiB "
          "| models |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r.name} | {r.seconds:.1f} | {r.cpu_s / WORKERS:.1f} | {r.per_s:.0f} | "
              f"{r.parent_mib:.0f} | {r.worker_mib:.0f} | {r.models} |")  # fmt: skip
    base = rows[0].seconds
    print(f"\nbaseline (seasonal naive) full refit: {base:.1f} s")
    for r in rows:
        if r.name.startswith("full refit"):
            ok = "meets" if r.seconds <= TARGETS["refit_s"] else "MISSES"
            print(f"{r.name}: {r.seconds:.1f} s, {r.seconds / base:.1f} x baseline; "
                  f"{ok} the {TARGETS['refit_s']:.0f} s target")  # fmt: skip
    update = rows[-1]
    ok = "meets" if update.seconds <= TARGETS["update_s"] else "MISSES"
    print(f"forecast-only update: {update.seconds:.1f} s; {ok} the "
          f"{TARGETS['update_s']:.0f} s target")  # fmt: skip


if __name__ == "__main__":
    main()
