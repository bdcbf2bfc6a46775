"""Shared fixtures of the dashboard's server tests: a small simulated ledger, its keys, helpers."""

from __future__ import annotations

import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import DummyCookieJar, web
from aiohttp.test_utils import TestClient, TestServer
from openapi_schema_validator import OAS31Validator

from tests.ledgerkit import drop_append_only_triggers
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.transport import BrokerAddress
from wattmesh.dashboard._routes import RUNTIME
from wattmesh.dashboard.app import CSP, DashboardSettings, make_app
from wattmesh.dashboard.auth import COOKIE_NAME
from wattmesh.dashboard.openapi import openapi_document
from wattmesh.sim.simkeys import simulation_key
from wattmesh.sim.simulate import SimulationConfig, run_simulation

SEED = 7
MARKET = "sim"
HOUSEHOLDS = ("h001", "h002", "h003")
TOKEN = "operator-token-for-the-tests-0123"


@dataclass(frozen=True)
class SimLedger:
    """A finished simulation's ledger file and the keys that signed it."""

    path: Path
    report: dict[str, Any]

    @property
    def url(self) -> str:
        return f"sqlite:///{self.path}"

    def key(self, name: str) -> SigningKey:
        return simulation_key(SEED, name)

    def copy(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "ledger.db"
        shutil.copyfile(self.path, target)
        return target


async def simulate_ledger(workdir: Path, broker: BrokerAddress) -> SimLedger:
    """Three households trading for one day over ``broker``."""
    config = SimulationConfig(
        households=len(HOUSEHOLDS),
        days=1,
        seed=SEED,
        pv_share=0.5,
        forecaster="naive",
        history_days=7,
        workdir=workdir,
        gate_timeout_s=30.0,
        broker=broker.url,
    )
    report = await run_simulation(config)
    assert report["verified"] is True, report["verify_problem"]
    return SimLedger(workdir / "ledger.db", report)


@dataclass(frozen=True)
class Tail:
    """Log rows cut off a copy of a ledger, to append again later (the log growing)."""

    path: Path
    entries: list[tuple[Any, ...]]
    checkpoints: list[tuple[Any, ...]]
    interval: int  # the interval whose clearing is in the tail

    def append(self) -> None:
        with sqlite3.connect(self.path) as conn:
            marks = ",".join("?" * len(self.entries[0]))
            conn.executemany(f"INSERT INTO log_entry VALUES ({marks})", self.entries)
            marks = ",".join("?" * len(self.checkpoints[0]))
            conn.executemany(f"INSERT INTO checkpoint VALUES ({marks})", self.checkpoints)


def cut_last_interval(path: Path) -> Tail:
    """Remove from the ledger at ``path`` everything from the last cleared interval on."""
    drop_append_only_triggers(sa.create_engine(f"sqlite:///{path}"))
    with sqlite3.connect(path) as conn:
        last_clearing, interval = conn.execute(
            "SELECT idx, interval FROM log_entry WHERE kind = 'clearing' ORDER BY idx DESC LIMIT 1"
        ).fetchone()
        (before,) = conn.execute(
            "SELECT max(idx) FROM log_entry WHERE kind = 'checkpoint_ref' AND idx < ?",
            (last_clearing,),
        ).fetchone()
        cut = before + 1
        entries = conn.execute("SELECT * FROM log_entry WHERE idx >= ? ORDER BY idx", (cut,))
        kept_entries = entries.fetchall()
        checkpoints = conn.execute("SELECT * FROM checkpoint WHERE tree_size > ?", (cut,))
        kept_checkpoints = checkpoints.fetchall()
        conn.execute("DELETE FROM log_entry WHERE idx >= ?", (cut,))
        conn.execute("DELETE FROM checkpoint WHERE tree_size > ?", (cut,))
    return Tail(path, kept_entries, kept_checkpoints, interval)


_DOCUMENT = openapi_document()


def check_shape(data: Any, schema: str) -> None:
    """Raise unless ``data`` is what the OpenAPI document says ``schema`` is."""
    root = {**_DOCUMENT, "$ref": f"#/components/schemas/{schema}"}
    OAS31Validator(root).validate(data)


Client = TestClient[web.Request, web.Application]


async def started(settings: DashboardSettings) -> Client:
    """A test client of the dashboard once its first sync is done (no cookie jar: the
    tests send the cookie of the viewer they mean)."""
    app = make_app(settings)
    client: Client = TestClient(TestServer(app), cookie_jar=DummyCookieJar())
    await client.start_server()
    await app[RUNTIME].ready.wait()  # the first sync was done
    return client


async def get_json(client: Client, path: str, status: int = 200, cookie: str | None = None) -> Any:
    """GET ``path`` as the viewer of ``cookie``; check the status and the security headers."""
    headers = {"Cookie": f"{COOKIE_NAME}={cookie}"} if cookie else {}
    response = await client.get(path, headers=headers)
    assert response.status == status, (path, await response.text())
    assert response.headers["Content-Security-Policy"] == CSP
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    if response.content_type == "application/json":
        return await response.json()
    return await response.text()


def session_cookie(response: Any) -> str:
    morsel = response.cookies[COOKIE_NAME]
    return str(morsel.value)


async def operator_cookie(client: Client) -> str:
    response = await client.post("/api/login/operator", json={"token": TOKEN})
    assert response.status == 200
    return session_cookie(response)
