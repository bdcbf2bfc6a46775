"""Ledgers for dashboard tests: a small market with every kind of log entry (trades with
a network fee, estimates and their corrections, a flag, a non-trading interval, a key
rotation, a household joining late), built through the real ledger, and the figures a
read model must agree with, recomputed from the log alone."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.engine import Engine

from tests.ledgerkit import STEP, T0, TARIFF, House, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side
from wattmesh.dashboard import _tables
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.statement import Statement, build_statement
from wattmesh.ledger.store import LedgerStore

FEE = Mechanism("uniform", MarketRules(network_fee_micro_per_kwh=10_000))
HELD_AT, BACKFILL_AT = 3, 5  # h003's reading at interval 3 arrives in interval 5
LATE_JOIN, ROTATE, IDLE, BACKWARDS = 4, 5, 6, 8


class MixedMarket:
    """A ledger that grows one interval per :meth:`step` (``intervals`` in all)."""

    def __init__(self, db_url: str, *, intervals: int = 10, seed: int = 3) -> None:
        self.rng = random.Random(seed)
        self.houses = {a: House(a) for a in ("h001", "h002", "h003", "h004")}
        self.ledger: Ledger = new_ledger(
            db_url, SigningKey.generate(), self.houses.values(), mechanism=FEE
        )
        self.intervals = intervals
        self.n = 0
        self.held: bytes | None = None

    @property
    def store(self) -> LedgerStore:
        return self.ledger.store

    def step(self) -> int:
        """Open, fill and close the next interval; return its start."""
        n, rng, ledger = self.n, self.rng, self.ledger
        t = T0 + n * STEP
        if n == LATE_JOIN:
            self.houses["h005"] = House("h005")
            ledger.register({"h005": self.houses["h005"].key.verifying}, interval=t)
        if n == ROTATE:
            new = SigningKey.generate()
            ledger.register({"h002": new.verifying}, interval=t)
            self.houses["h002"].key = new
        trading = n != IDLE
        ledger.open_interval(t, TARIFF, trading=trading)
        for agent, house in self.houses.items():
            if agent == "h004" and n == 0:
                house.meter(import_wh=5_000)  # a register that has counted before
            if agent == "h004" and n == BACKWARDS:
                house.import_wh -= 2_000  # its register goes backwards: flagged
            reading = house.reading(t)
            if agent == "h003" and n == HELD_AT:
                self.held = reading
            elif agent == "h001" and n == self.intervals - 1:
                pass  # never arrives: the interval before stays estimated
            else:
                ledger.ingest(reading)
            if rng.random() < 0.5:
                house.meter(import_wh=rng.randint(0, 600))
            else:
                house.meter(export_wh=rng.randint(0, 900))
        if n == BACKFILL_AT and self.held is not None:
            ledger.ingest(self.held)
        if trading:
            for house in self.houses.values():
                side = Side.BUY if rng.random() < 0.5 else Side.SELL
                price = rng.randint(80_000, 300_000)
                ledger.ingest(house.order(t, side, rng.randint(0, 800), price))
        ledger.close_interval()
        self.n += 1
        return t

    def run(self) -> MixedMarket:
        while self.n < self.intervals:
            self.step()
        return self


def logged(store: LedgerStore) -> list[dict[str, Any]]:
    return [json.loads(e.data) for e in store.iter_entries()]


def statements(store: LedgerStore) -> dict[str, Statement]:
    """Every registered household's statement, built by the ledger's own builder."""
    entries = logged(store)
    agents = sorted({e["agent"] for e in entries if e["kind"] == "key"})
    return {a: build_statement(entries, household=a) for a in agents}


def table_rows(engine: Engine) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """Each read model table's rows, sorted (to compare two read models)."""
    for table in _tables.METADATA.sorted_tables:
        if table.name == "sync_state":
            continue
        with engine.connect() as conn:
            rows = [tuple(r) for r in conn.execute(select(table)).all()]
        yield table.name, sorted(rows, key=repr)
