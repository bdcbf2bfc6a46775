"""The running dashboard's state: read model, ledger store, keys, sessions; the log follower.

The log follower folds what the ledger appended into the read model every
``sync_every_s`` (sooner when the bus says an interval cleared), each sync in a worker
thread and at most :data:`SYNC_BATCH` entries at a time, and pushes one ``interval``
event per interval that closed, and one for the last interval again when a sync adds
entries that close none (its overview carries no household's own figures).
A ledger database that cannot be read is retried at each tick and said on /health.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select

from wattmesh.broker.errors import WattmeshError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.transport import TransportConfig
from wattmesh.dashboard import _tables as tables
from wattmesh.dashboard import queries
from wattmesh.dashboard._hub import Hub
from wattmesh.dashboard.auth import Challenges, OperatorToken, Sessions, Tickets, Viewer
from wattmesh.dashboard.live import Listener, Writes
from wattmesh.dashboard.metrics import DashboardMetrics
from wattmesh.dashboard.readmodel import ReadModel, ReadModelError, SyncResult
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.store_open import failure_reason
from wattmesh.ledger.verify import stored_operator_key, verify_ledger

__all__ = ["SYNC_BATCH", "Runtime", "RuntimeConfig", "public_overview"]

_LOG = logging.getLogger(__name__)

SYNC_BATCH = 20_000
"""Log entries folded by one sync call; a long catch-up takes several ticks."""
_EVENTS_PER_SYNC = 16  # a catch-up pushes the last intervals only
VERIFY_GRACE_S = 30.0  # how long a stop waits for a verification in progress


@dataclass(frozen=True)
class RuntimeConfig:
    """What the runtime needs of the settings (app.DashboardSettings holds it all)."""

    ledger_url: str
    read_model_url: str
    broker: TransportConfig | None
    market_id: str | None
    operator_key: VerifyingKey | None
    forecaster_key: VerifyingKey | None
    operator_token: str | None
    sync_every_s: float
    currency: str = "EUR"
    operator_ticket: str | None = None
    verify_every_s: float = 0.0  # 0: never


def public_overview(overview: dict[str, Any], viewer: Viewer) -> dict[str, Any]:
    """The overview as ``viewer`` may see it: anomalies name only the households it may see."""
    anomalies = []
    for item in overview.get("anomalies", []):
        shown = dict(item)
        if not viewer.may_see(str(shown.get("household", ""))):
            shown.pop("household", None)
        anomalies.append(shown)
    return {**overview, "anomalies": anomalies}


def _problem(exc: BaseException) -> str:
    reason = failure_reason(exc)
    return reason if reason is not None else " ".join(str(exc).split()) or type(exc).__name__


class Runtime:
    """Everything the handlers and background tasks share."""

    def __init__(self, config: RuntimeConfig, metrics: DashboardMetrics, hub: Hub) -> None:
        self.config = config
        self.metrics, self.hub = metrics, hub
        self.rm = ReadModel(config.read_model_url)
        self.ledger: LedgerStore | None = None
        self.ledger_problem: str | None = "not opened yet"
        self.writes = Writes()
        self.wake = asyncio.Event()
        self.keys: dict[str, VerifyingKey] = {}
        self.operator_key = config.operator_key
        self.market_id = config.market_id
        self.sessions = Sessions()
        self.tickets = Tickets()
        if config.operator_ticket is not None:
            self.tickets.admit_operator(config.operator_ticket)
        self.challenges = Challenges(origin="", lookup=self.keys.get)
        self.operator_token = (
            OperatorToken(config.operator_token) if config.operator_token is not None else None
        )
        self.ready = asyncio.Event()  # the first sync was tried (keys and meta known if any)
        self._caught_up_s = time.monotonic()
        self.on_bus = asyncio.Event()  # the bus listener was connected and subscribed once
        self.market_known = asyncio.Event()  # market id and operator key known
        self.listener: Listener | None = None  # the bus listener, once it runs
        self.keys_version = 0  # counts the changes of ``keys``
        self._keys_acted_on = 0
        self._verify_pushed: str | None = None  # the last verify result pushed to browsers

    def close(self) -> None:
        if self.ledger is not None:
            self.ledger.close()
        self.rm.close()

    # ------------------------------------------------------------------ the ledger

    def _open_ledger(self) -> LedgerStore:
        if self.ledger is None:
            self.ledger = LedgerStore.read_only(self.config.ledger_url)
        return self.ledger

    def _drop_ledger(self, exc: BaseException) -> None:
        problem = _problem(exc)
        if problem != self.ledger_problem:
            # A database failure is one line; anything else is a bug: its traceback, once.
            trace = (
                exc if failure_reason(exc) is None and not isinstance(exc, WattmeshError) else None
            )
            _LOG.warning("cannot read the ledger: %s", problem, exc_info=trace)
        self.ledger_problem = problem
        if self.ledger is not None:
            self.ledger.close()
            self.ledger = None

    def sync_once(self) -> SyncResult | None:
        """Fold up to :data:`SYNC_BATCH` new entries (in a worker thread); None on failure."""
        try:
            result = self.rm.sync(self._open_ledger(), max_entries=SYNC_BATCH)
        except ReadModelError as exc:  # its own database: the ledger is not to blame
            _LOG.warning("cannot update the read model: %s", exc)
            self.metrics.sync_failures.inc()
            return None
        except Exception as exc:
            self._drop_ledger(exc)
            self.metrics.sync_failures.inc()
            return None
        if self.ledger_problem is not None:
            _LOG.info("reading the ledger at %s", self.config.ledger_url)
        self.ledger_problem = None
        self.metrics.sync_entries.inc(result.applied)
        if result.applied or not self.keys:
            self._load_keys()
        return result

    def _load_keys(self) -> None:
        h = tables.household
        with self.rm.engine.connect() as conn:
            rows = conn.execute(select(h.c.id, h.c.public_key_der).where(h.c.revoked == 0)).all()
        fresh = {}
        for household, der in rows:
            known = self.keys.get(household)
            fresh[household] = (
                known if known is not None and known.der() == der else VerifyingKey.from_der(der)
            )
        if fresh != self.keys:  # changed in place: the event loop reads it meanwhile
            for gone in set(self.keys) - set(fresh):
                del self.keys[gone]
            self.keys.update(fresh)
            self.keys_version += 1
        state = {k: self.rm.state(k) for k in ("market_id", "origin", "operator_public_key")}
        if self.market_id is None:
            self.market_id = state["market_id"]
        if state["origin"] is not None:
            self.challenges.origin = state["origin"]
        elif not self.challenges.origin and self.market_id is not None:
            self.challenges.origin = self.market_id
        if self.operator_key is None and state["operator_public_key"] is not None:
            self.operator_key = VerifyingKey.from_der(
                base64.b64decode(state["operator_public_key"])
            )

    def ledger_check(self) -> tuple[bool, str | None]:
        """Whether the ledger database can be opened and read now (a fresh connection)."""
        try:
            store = LedgerStore.read_only(self.config.ledger_url)
        except (WattmeshError, OSError, Exception) as exc:
            return False, _problem(exc)
        try:
            store.size()
        except Exception as exc:
            return False, _problem(exc)
        finally:
            store.close()
        return True, None

    def presence_counts(self) -> tuple[int, int]:
        """Households online and households known (two counts, for a ``presence`` event)."""
        p, h = tables.presence, tables.household
        with self.rm.engine.connect() as conn:
            online = conn.execute(select(func.count()).where(p.c.online == 1)).scalar_one()
            known = conn.execute(select(func.count()).select_from(h)).scalar_one()
        return int(online), int(known)

    # ------------------------------------------------------------------ verifying

    def verify_now(self) -> dict[str, Any] | None:
        """Verify the whole log as it is now (a fresh read-only connection; the check
        :func:`ledger.verify.verify_ledger` makes, as ``wattmesh ledger verify``) against
        the configured operator key (``operator_key_file``: anchored); without one,
        against the key the ledger stores, and the result says it is not anchored (the
        database alone vouches for it). The result, or None when there is nothing to
        verify (an empty ledger) or the database could not be read (that is the
        ledger's health, said on /health, not a verification's)."""
        key = self.config.operator_key
        try:
            store = LedgerStore.read_only(self.config.ledger_url)
            try:
                size = store.size()
                trusted = key if key is not None else stored_operator_key(store)
                report = (
                    None
                    if size == 0 or trusted is None
                    else verify_ledger(store, trusted, size=size)
                )
            finally:
                store.close()
        except Exception as exc:
            _LOG.warning("could not verify the ledger: %s", _problem(exc))
            return None
        if report is None:
            return None
        return {
            "ok": report.ok,
            "problem": report.problem,
            "tree_size": size,
            "kid": report.key_id,
            "anchored": key is not None,
        }

    async def verify_every(self, every_s: float) -> None:
        """Verify the log at start and then every ``every_s`` seconds (in a worker
        thread), record each result in the read model and wake the follower, which
        pushes it as a ``health`` event."""
        await self.ready.wait()  # the ledger's stored key is known if it has one
        while True:
            started = time.monotonic()
            check = asyncio.ensure_future(asyncio.to_thread(self.verify_now))
            try:
                result = await asyncio.shield(check)
            except asyncio.CancelledError:
                # The thread reads through a connection of its own: let it finish and
                # close it (a stop would otherwise leave it open), for a while at most.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(check), VERIFY_GRACE_S)
                raise
            if result is not None:
                at_s = int(time.time())
                if not result["ok"]:
                    _LOG.warning("the ledger failed verification: %s", result["problem"])
                await self.writes.run(functools.partial(self.rm.record_verify, **result, at_s=at_s))
                self.wake.set()
            took_s = time.monotonic() - started
            await asyncio.sleep(max(every_s - took_s, 0.0))  # the schedule, not a sync

    def _verify_changed(self) -> str | None:
        """The read model's last verify result if it is not the one pushed last."""
        value = self.rm.state("last_verify")
        return None if value is None or value == self._verify_pushed else value

    async def _push_verify(self) -> None:
        """Push a ``health`` event with the last verify result when it changed (this
        server's verifier or another writer, as ``simulate`` at the end of its run)."""
        value = await self.writes.run(self._verify_changed)
        if value is not None:
            self._verify_pushed = value
            event = {"type": "health", "last_verify": json.loads(value)}
            self.hub.broadcast(json.dumps(event, separators=(",", ":")))

    # ------------------------------------------------------------------ the follower

    async def follow(self) -> None:
        """Fold the log as it grows and push an ``interval`` event per closed interval."""
        ledger_ok: bool | None = None
        while True:
            self.wake.clear()
            result = await self.writes.run(self.sync_once)
            self.ready.set()
            if self.market_id is not None and self.operator_key is not None:
                self.market_known.set()
            if ledger_ok is not (result is not None):
                ledger_ok = result is not None
                event = {"ok": ledger_ok, "problem": self.ledger_problem}
                self.hub.broadcast(json.dumps({"type": "health", "ledger": event}))
            if result is not None:
                try:
                    await self._after_sync(result)
                except Exception:  # the read model failed to answer: the next step retries
                    _LOG.exception("could not push the newly closed intervals")
                if result.applied >= SYNC_BATCH:
                    continue  # catching up: no pause
            try:
                await self._push_verify()
            except Exception:  # the read model failed to answer: the next step retries
                _LOG.exception("could not push the last verify result")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.config.sync_every_s):
                    await self.wake.wait()

    async def _after_sync(self, result: SyncResult) -> None:
        lag = await asyncio.to_thread(self.rm.state, "ledger_size")
        self.metrics.sync_lag_entries.set(max(int(lag or 0) - result.tree_size, 0))
        if result.applied < SYNC_BATCH:
            self._caught_up_s = time.monotonic()
        self.metrics.sync_lag_s.set(time.monotonic() - self._caught_up_s)
        if self.keys_version != self._keys_acted_on and self.listener is not None:
            self._keys_acted_on = self.keys_version
            await self.listener.keys_changed()
        if not result.applied:
            return
        now_s = int(time.time())
        heard = None if self.listener is None else self.listener.heard
        overview = await asyncio.to_thread(
            queries.overview, self.rm, now_s=now_s, currency=self.config.currency, heard=heard
        )
        shown = public_overview(overview, Viewer("anonymous"))
        # Entries that closed no interval (e.g. the closing round of a simulation, whose
        # settlements complete the last traded interval) still change figures: they are
        # announced as the last interval again, so open pages fetch it once more.
        last = (overview.get("last") or {}).get("interval")
        again = () if last is None else (int(last),)
        for interval in result.closed[-_EVENTS_PER_SYNC:] or again:
            event = {"type": "interval", "interval": interval, "overview": shown}
            self.hub.broadcast(json.dumps(event, separators=(",", ":")))
