"""``wattmesh ledger run --config ledger.toml [--validate-config]``: the market operator.

Composition (docs/ARCHITECTURE.md, "Running the operator"):

1. Read and check ``ledger.toml`` (:mod:`wattmesh.config.ledger_config`).
2. Take the leadership lease (:mod:`ledger.lease`) before touching the market: a
   standby process waits here (a line every ``lease.poll_s`` at debug level, one at
   info) and takes over when the leader dies. Nothing else happens before: the MQTT
   client id is shared by both processes, so only the leader may connect.
3. Open the store; the :class:`ledger.ledger.Ledger` rebuilds its state from the log,
   checking what it reads (:mod:`ledger.startcheck`), and the rest of the log is
   checked in the background (:mod:`ledger.logcheck`), its result gating every close
   (an interval that was open when the previous leader died left nothing behind: it
   is opened again if it is within the gate grace, else skipped); log what changed in
   the registry file (new keys, rotations, revocations).
4. Connect with a persistent MQTT session (stable client id), so the broker queues
   what households publish while the ledger restarts or fails over: the ingest is a
   receive-only :class:`broker.subscriber.Subscriber` on that session, in batches
   (:meth:`ledger.service.LedgerService.run_ingest`); the operator publishes
   on a second, clean connection (``<client id>-publish``).
5. Serve ``/metrics`` if ``[metrics]`` asks (:mod:`wattmesh.cli.ledger_metrics`), and
   run :class:`ledger.operator.MarketOperator` on the wall clock until SIGTERM/SIGINT:
   an open interval is closed at once with what has arrived (logged, checkpointed,
   announced), then the process disconnects, releases the lease and exits 0.

Exit codes: 0 clean shutdown; 1 the lease was lost (another process may be acting), a
task the operator depends on (the ingest) ended or failed while it ran (one ERROR
line naming it and why), the log does not verify (at start, or found by the
background check of :mod:`ledger.logcheck`: one ERROR line naming the first bad
entry) or ``--validate-config`` found problems; 2 an invalid configuration or registry
when running (one line on stderr).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import logging
import os
import signal
import sys
from pathlib import Path

from wattmesh.broker.errors import CommandError, ConfigError, FailureError
from wattmesh.broker.subscriber import Subscriber
from wattmesh.broker.transport import Session, Transport
from wattmesh.cli.ledger_metrics import LedgerMetrics, serve_metrics
from wattmesh.config.ledger_config import LedgerRunConfig, check_ledger_config, load_ledger_config
from wattmesh.ledger.lease import LeaderLease, LeaseLost
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.logcheck import DamageFound, first_damage, start_log_check
from wattmesh.ledger.operator import MarketOperator
from wattmesh.ledger.schedule import Clock, SystemClock
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.sigcheck import InlineVerifier, PoolVerifier, SignatureVerifier, preload
from wattmesh.ledger.startcheck import LogDamaged
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.store_open import store_failures

_LOG = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_FAILED = 1


def validate_config_command(path: Path) -> int:
    """Check ``path`` without connecting anywhere: 0 if valid, 1 listing every problem."""
    config, problems = check_ledger_config(path)
    if config is None:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{path}: ok (market {config.market_id}, {len(config.registry.households)} households, "
        f"mechanism {config.mechanism.name}, interval {config.schedule.interval_s} s)"
    )
    return EXIT_OK


def run_ledger_command(path: Path) -> int:
    config = load_ledger_config(path)  # ConfigError: exit 2 (wattmesh.cli)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # A database that cannot be reached or read (lease, store) ends the run with one
    # line, a StoreError: exit 1 (wattmesh.cli).
    with store_failures(config.db_url):
        return asyncio.run(_main(config))


async def _main(config: LedgerRunConfig) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await serve_ledger(config, stop=stop, clock=SystemClock())
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


async def serve_ledger(config: LedgerRunConfig, *, stop: asyncio.Event, clock: Clock) -> int:
    """Lead the market until ``stop`` is set; the exit code (see the module doc)."""
    lease = LeaderLease(config.db_url, name=config.market_id)
    try:
        if not await _become_leader(lease, stop, config.lease_poll_s):
            _LOG.info("stopped while standing by")
            return EXIT_OK
        _LOG.info("leader of market %s (database %s)", config.market_id, _safe(config.db_url))
        await _lead(config, lease, stop, clock)
    except LeaseLost as exc:
        _LOG.error("stopping: %s", exc)
        return EXIT_FAILED
    except TaskEnded as exc:
        # One ERROR line (the cause's traceback with it), exit 1: systemd restarts us.
        _LOG.error("stopping: %s", exc, exc_info=exc.__cause__)
        return EXIT_FAILED
    except LogDamaged as exc:
        if not isinstance(exc, DamageFound):  # the start check: name the first bad entry
            operator = config.operator_key.verifying
            exc = await asyncio.to_thread(first_damage, config.db_url, exc, operator)
        _LOG.error("stopping: %s; nothing more is appended", exc)
        return EXIT_FAILED
    finally:
        lease.close()
    _LOG.info("stopped cleanly")
    return EXIT_OK


async def _become_leader(lease: LeaderLease, stop: asyncio.Event, poll_s: float) -> bool:
    """Poll the lease until it is ours (True) or ``stop`` is set (False)."""
    said = False
    while not await asyncio.to_thread(lease.try_acquire):
        if not said:
            _LOG.info("standing by: another process leads this market")
            said = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), poll_s)
        if stop.is_set():
            return False
    return True


def _verifier(workers: int, keys: list[bytes]) -> SignatureVerifier:
    """Inline, or ``workers`` processes that load the registered ``keys`` as they start."""
    if workers == 0:
        preload(keys)
        return InlineVerifier()
    return PoolVerifier(workers, keys=keys)


async def _lead(
    config: LedgerRunConfig, lease: LeaderLease, stop: asyncio.Event, clock: Clock
) -> None:
    store = LedgerStore(config.db_url)
    verifier: SignatureVerifier | None = None
    log_check = None
    try:
        ledger = Ledger(
            store,
            market_id=config.market_id,
            operator_key=config.operator_key,
            mechanism=config.mechanism,
            metering=config.registry.metering(),
            tariffs=config.tariffs,
        )
        last = ledger.last_closed_interval
        first = config.schedule.next_interval(clock.now_s(), last)
        changes = ledger.register(
            config.registry.keys, interval=first, revoked=config.registry.revoked
        )
        _LOG.info(
            "log of %d entries, last closed interval %s; registry %s: %d households, "
            "%d change(s) logged",
            ledger.size,
            last,
            config.registry_path,
            len(ledger.households),
            changes,
        )
        # The restore checked what it read (LogDamaged); the rest of the log is checked
        # in the background, and the operator's lease check refuses to write after it
        # found damage (ledger/logcheck.py).
        log_check, checking = start_log_check(
            store, config.db_url, stop, config.registry.metering(), config.operator_key.verifying
        )
        verifier = _verifier(config.signature_workers, ledger.key_ders())
        # The state restored at start (log, keys) lives as long as the process: out of
        # the collector's generations, so collections during an ingest burst do not
        # walk it again and again (BENCHMARKS.md, ingest from Mosquitto).
        gc.freeze()
        topics = config.topics
        # Two connections: the ingest (receive-only Subscriber, the persistent session
        # under the configured client id) and the operator's publishes (a clean
        # session under "<client id>-publish", subscribed to nothing).
        publish_config = dataclasses.replace(
            config.transport,
            client_id=f"{config.transport.client_id}-publish",
            session=Session.CLEAN,
        )
        transport = Transport(publish_config)
        subscriber = Subscriber(config.transport, ledger_subscriptions(topics))
        async with transport, subscriber:
            if not await _connected(transport, subscriber, stop):
                log_check.check()  # stopped because the background check found damage?
                return
            _LOG.info(
                "connected to %s as %s (persistent session) and %s",
                config.transport.address.url,
                config.transport.client_id,
                publish_config.client_id,
            )
            service = LedgerService(
                ledger,
                OperatorConfig(
                    topics,
                    interval_s=config.schedule.interval_s,
                    gate_timeout_s=config.schedule.gate_timeout_s,
                ),
                key=config.operator_key,
                transport=transport,
                forecaster_key=config.forecaster_key,
            )
            ingest = asyncio.create_task(
                service.run_ingest(
                    verifier,
                    max_batch=config.max_batch,
                    source=subscriber,
                    not_before=service.first_open,  # after a restart: no `late` before the reopen
                ),
                name="ledger-ingest",
            )
            async with contextlib.AsyncExitStack() as serving:
                metrics = await _metrics(serving, config, service)
                operator = MarketOperator(
                    service,
                    config.schedule,
                    config.tariffs,
                    clock=clock,
                    lease=log_check.gate(lease),
                    on_interval=None if metrics is None else metrics.observe,
                )
                operating = asyncio.create_task(operator.run(stop), name="market-operator")
                try:
                    await _supervise(operating, [ingest])
                    log_check.check()  # stopped because the background check found damage?
                finally:
                    for task in (operating, ingest):
                        task.cancel()
                    await asyncio.gather(operating, ingest, return_exceptions=True)
    finally:
        if log_check is not None:
            checking.cancel()
            await asyncio.gather(checking, return_exceptions=True)
            log_check.close(store)
        if isinstance(verifier, PoolVerifier):
            verifier.close()
        store.close()


async def _metrics(
    stack: contextlib.AsyncExitStack, config: LedgerRunConfig, service: LedgerService
) -> LedgerMetrics | None:
    """The /metrics endpoint of ``[metrics]``, served until ``stack`` closes (None:
    not configured); ConfigError (exit 2) when its address cannot be listened on."""
    if config.metrics is None:
        return None
    host, port = config.metrics
    metrics = LedgerMetrics(service)
    try:
        await stack.enter_async_context(serve_metrics(metrics, host, port))
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"metrics: cannot listen on {host}:{port}: {why}") from exc
    _LOG.info("metrics on http://%s:%d/metrics", host, port)
    return metrics


class TaskEnded(CommandError, FailureError):
    """A task the operator depends on ended (or raised) while the market was running."""


async def _supervise(main: asyncio.Task[None], helpers: list[asyncio.Task[None]]) -> None:
    """Wait for ``main`` (the operator: it returns when stopped; LeaseLost passes
    through); any task that ends first, or ``main`` raising anything else, is a
    :class:`TaskEnded` naming the task and why, so the process exits 1 (and systemd
    restarts it) instead of running on without it."""
    await asyncio.wait([main, *helpers], return_when=asyncio.FIRST_COMPLETED)
    ended = main if main.done() else next(task for task in helpers if task.done())
    if ended is main and not main.cancelled() and main.exception() is None:
        return
    if ended.cancelled():
        raise TaskEnded(f"task {ended.get_name()} was cancelled")
    exc = ended.exception()
    if isinstance(exc, LeaseLost | LogDamaged):  # the lease or the log check's gate
        raise exc
    if exc is None:
        raise TaskEnded(f"task {ended.get_name()} ended while the market was running")
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]  # the ingest's TaskGroup: name what failed inside it
    raise TaskEnded(f"task {ended.get_name()} failed: {type(exc).__name__}: {exc}") from exc


async def _connected(transport: Transport, subscriber: Subscriber, stop: asyncio.Event) -> bool:
    """Wait for both first connections (the broker may be down); False if stopped first."""

    async def both() -> None:
        await asyncio.gather(transport.wait_connected(), subscriber.wait_connected())

    connected = asyncio.ensure_future(both())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({connected, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (connected, stopped):
            task.cancel()
        await asyncio.gather(connected, stopped, return_exceptions=True)
    return not stop.is_set()


def _safe(url: str) -> str:
    """A database URL without its password, for the log."""
    head, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{head}{sep}{user}:***@{host}"
