"""``wattmesh simulate --dashboard``: the dashboard over the running simulation, and after it.

A :class:`wattmesh.sim.simulate.Watcher`: when the run has its ledger and broker, it
starts the dashboard (:class:`wattmesh.cli.dashboard_cli.DashboardThread`, on a thread
of its own) over the run's ledger database, broker, market and operator key, and prints
``dashboard: URL`` before anything else; when the run is over it hands the report on
(written, table printed) and keeps serving, the broker still running, until SIGINT or
SIGTERM.

The operator's figures (the households table and pages) need an operator login: each
run draws a random operator token, written to ``<workdir>/dashboard-operator-token``
(mode 0600) for the login page, and a one-time login link (valid for its first use
within an hour), both printed beside the URL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from wattmesh.broker.transport import Session, TransportConfig
from wattmesh.cli.dashboard_cli import DashboardThread, dashboard_settings
from wattmesh.config.dashboard_config import DashboardConfig
from wattmesh.ledger.store_open import sqlite_path
from wattmesh.sim.simulate import RunSite

__all__ = ["TOKEN_FILE", "DashboardWatch", "write_token"]

TOKEN_FILE = "dashboard-operator-token"  # noqa: S105 (a file name, not a secret)


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to ``path``, readable by its owner only (mode 0600, also when the
    file was there before)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{token}\n".encode())
    finally:
        os.close(fd)


class DashboardWatch:
    """Serves the dashboard from the run's start until a signal after its end."""

    def __init__(
        self,
        port: int,
        *,
        publish: Callable[[dict[str, Any]], None],
        after_start: Callable[[], None] | None = None,
        host: str = "127.0.0.1",
        currency: str = "EUR",
        workdir: Path = Path("out"),
    ) -> None:
        self.port = port
        self.currency = currency
        self.workdir = workdir
        self.host = host
        self.publish = publish
        self.after_start = after_start
        self.url: str | None = None
        self._thread: DashboardThread | None = None
        self._site: RunSite | None = None
        self._read_model: str | None = None

    def started(self, site: RunSite) -> None:
        read_model = _fresh_read_model(site.db_url)
        self._site, self._read_model = site, read_model
        token, ticket = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        token_file = self.workdir / TOKEN_FILE
        write_token(token_file, token)
        config = DashboardConfig(
            ledger_url=site.db_url,
            read_model_url=read_model,
            transport=TransportConfig(
                address=site.broker,
                client_id=f"{site.market_id}-dashboard",
                session=Session.CLEAN,
            ),
            market_id=site.market_id,
            operator_key=site.operator_key,
            forecaster_key=site.forecaster_key,
            host=self.host,
            port=self.port,
            operator_token=token,
            currency=self.currency,
            verify_every_s=0,  # the run verifies its ledger at its end (recorded below)
        )
        settings = dataclasses.replace(dashboard_settings(config), operator_ticket=ticket)
        self._thread = DashboardThread(settings)
        self.url = self._thread.start()
        print(f"dashboard: {self.url}", flush=True)
        print(f"dashboard: operator login (once, within 1 h): {self.url}login?ticket={ticket}")
        print(f"dashboard: operator token in {token_file} (the login page takes it)", flush=True)
        if self.after_start is not None:
            self.after_start()

    async def finished(self, report: dict[str, Any]) -> None:
        await asyncio.to_thread(self._record_verify, report)
        self.publish(report)
        print(f"dashboard: {self.url} (still serving; Ctrl-C to stop)", flush=True)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)

    def _record_verify(self, report: dict[str, Any]) -> None:
        """The run's own verification of its ledger (``verify_ledger`` at its end, against
        the operator key) into the dashboard's read model: the overview shows it."""
        from wattmesh.dashboard.readmodel import ReadModel

        site = self._site
        if site is None:
            return
        model = ReadModel(self._read_model or ReadModel.default_url(site.db_url))
        try:
            model.record_verify(
                ok=bool(report["verified"]),
                problem=report.get("verify_problem"),
                tree_size=int(report["ledger_entries"]),
                kid=site.operator_key.kid,
                at_s=int(time.time()),
            )
        finally:
            model.close()

    def close(self) -> None:
        """Stop the dashboard (if it runs) and wait for it."""
        if self._thread is not None:
            self._thread.stop()


def _fresh_read_model(ledger_url: str) -> str | None:
    """The run's read model: for a SQLite ledger (made afresh for the run) the file
    beside it, removed first so that no earlier run's tables remain; None otherwise
    (a PostgreSQL ledger the run found empty: the read model's default place)."""
    path = sqlite_path(ledger_url)
    if path is None:
        return None
    model = Path(f"{path}.dashboard.db")
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{model}{suffix}").unlink(missing_ok=True)
    return f"sqlite:///{model}"
