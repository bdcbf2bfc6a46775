"""``wattmesh dashboard serve | login | rebuild``: the trade dashboard's commands.

* ``serve [--config dashboard.toml] [--db URL] [--broker mqtt://host:port]
  [--host H] [--port P] [--currency EUR] [--validate-config]``: the web application
  (:mod:`wattmesh.dashboard.app`)
  until SIGTERM/SIGINT; the flags override the file, and ``--db`` alone is enough to
  look at a ledger. It prints ``dashboard: URL`` once it listens.
* ``login --key PEM --url URL --household ID``: sign the server's challenge with the
  household's private key and print the one-time login link
  (:func:`wattmesh.dashboard.auth.login_link`).
* ``rebuild [--config F] [--db URL] [--read-model URL]``: drop the read model and fold
  the whole log into it again; prints the entries folded and the time it took.

Exit codes: 0 done (``serve``: stopped by a signal); 1 ``--validate-config`` found
problems (one line per problem, as ``ledger run --validate-config``), a database
failed, or the dashboard could not be reached or refused a login (one line); 2 bad
arguments or configuration (one line).

:class:`DashboardThread` serves the dashboard on a thread of its own, for ``wattmesh
simulate --dashboard`` (the simulation keeps its event loop busy).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wattmesh.broker.errors import ConfigError

if TYPE_CHECKING:
    from wattmesh.config.dashboard_config import DashboardConfig
    from wattmesh.dashboard.app import DashboardSettings

__all__ = ["DashboardThread", "add_dashboard_commands", "dashboard_settings"]

EXIT_OK = 0
EXIT_FAILED = 1
_START_TIMEOUT_S = 60.0


def add_dashboard_commands(sub: Any) -> None:
    """Register ``wattmesh dashboard serve | login | rebuild`` (stdlib only at import)."""
    dashboard = sub.add_parser("dashboard", help="the trade dashboard (a web application)")
    dash_sub = dashboard.add_subparsers(
        dest="dashboard_command", required=True, parser_class=type(dashboard)
    )
    serve = dash_sub.add_parser("serve", help="serve the dashboard until SIGTERM/SIGINT")
    rebuild = dash_sub.add_parser("rebuild", help="rebuild the read model from the ledger's log")
    for parser in (serve, rebuild):
        parser.add_argument("--config", help="dashboard configuration (TOML)")
        parser.add_argument("--db", help="the ledger's database URL (overrides the file)")
    serve.add_argument("--broker", help="mqtt://host:port for live updates (overrides the file)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=port_number, help="port (default 8080; 0: any free port)")
    serve.add_argument("--currency", type=currency_code, help="ISO 4217 code (default EUR)")
    serve.add_argument("--validate-config", action="store_true", help="check --config, exit 0/1")
    serve.set_defaults(func=run_serve)
    rebuild.add_argument("--read-model", help="the read model's database URL")
    rebuild.set_defaults(func=run_rebuild)
    login = dash_sub.add_parser("login", help="print a household's one-time login link")
    login.add_argument("--key", required=True, help="the household's private key (PEM file)")
    login.add_argument("--url", required=True, help="the dashboard, e.g. http://host:8080/")
    login.add_argument("--household", required=True, help="the household's agent id")
    login.set_defaults(func=run_login)


def port_number(text: str) -> int:
    """A TCP port, 0..65535 (0: any free port); otherwise a usage error (exit 2)."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number 0..65535, got {text!r}")
    return port


def currency_code(text: str) -> str:
    """An ISO 4217 currency code (three capitals); otherwise a usage error (exit 2)."""
    if not (len(text) == 3 and text.isascii() and text.isalpha() and text.isupper()):
        raise argparse.ArgumentTypeError(f"must be an ISO 4217 code like EUR, got {text!r}")
    return text


# ----------------------------------------------------------------------------- serve


def run_serve(args: argparse.Namespace) -> int:
    if args.validate_config:
        if args.config is None:
            raise ConfigError("--validate-config checks a file: give --config dashboard.toml")
        return _validate(Path(args.config))
    settings = dashboard_settings(
        _config(args), broker=args.broker, host=args.host, port=args.port, currency=args.currency
    )
    return asyncio.run(_serve(settings))


def _validate(path: Path) -> int:
    from wattmesh.config.dashboard_config import check_dashboard_config

    config, problems = check_dashboard_config(path)
    if config is None:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    broker = "none" if config.transport is None else config.transport.address.url
    print(f"{path}: ok (ledger {_shown(config.ledger_url)}, broker {broker}, "
          f"http {config.host}:{config.port})")  # fmt: skip
    return EXIT_OK


def _config(args: argparse.Namespace) -> DashboardConfig:
    """The file's configuration with ``--db`` over it; ``--db`` alone is enough."""
    from wattmesh.config.dashboard_config import (
        DashboardConfig,
        dashboard_db_url,
        load_dashboard_config,
    )

    if args.config is None and args.db is None:
        raise ConfigError("give --db URL (the ledger's database) or --config dashboard.toml")
    config = None if args.config is None else load_dashboard_config(Path(args.config))
    if args.db is None:
        assert config is not None
        return config
    try:
        ledger_url = dashboard_db_url(args.db)  # a relative path: from the working folder
    except ConfigError as exc:
        raise ConfigError(f"--db: {exc}") from exc
    if config is None:
        return DashboardConfig(ledger_url=ledger_url)
    return dataclasses.replace(config, ledger_url=ledger_url)


def dashboard_settings(
    config: DashboardConfig,
    *,
    broker: str | None = None,
    host: str | None = None,
    port: int | None = None,
    currency: str | None = None,
) -> DashboardSettings:
    """The server's settings: ``config`` with the flags given over it."""
    from wattmesh.broker.transport import Session, TransportConfig, parse_broker_url
    from wattmesh.dashboard.app import DashboardSettings

    transport = config.transport
    if broker is not None:
        try:
            address = parse_broker_url(broker)
        except ValueError as exc:
            raise ConfigError(f"--broker: {exc}") from exc
        if transport is None:
            transport = TransportConfig(
                address=address,
                client_id=f"{config.market_id or 'wattmesh'}-dashboard-{os.getpid()}",
                session=Session.CLEAN,
            )
        else:
            transport = dataclasses.replace(transport, address=address)
    return DashboardSettings(
        ledger_url=config.ledger_url,
        read_model_url=config.read_model_url,
        broker=transport,
        market_id=config.market_id,
        operator_key=config.operator_key,
        operator_token=config.operator_token,
        forecaster_key=config.forecaster_key,
        host=config.host if host is None else host,
        port=config.port if port is None else port,
        currency=config.currency if currency is None else currency,
        verify_every_s=config.verify_every_s,
    )


def _said(url: str) -> None:
    print(f"dashboard: {url}", flush=True)


async def _serve(settings: DashboardSettings) -> int:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await serve_until(settings, stop, _said)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return EXIT_OK


async def serve_until(
    settings: DashboardSettings, stop: asyncio.Event, ready: Callable[[str], None]
) -> None:
    """:func:`wattmesh.dashboard.app.serve`; an address it cannot listen on (in use, not
    this machine's) is a ConfigError naming it, not a traceback."""
    from wattmesh.dashboard.app import serve

    listening = False

    def said(url: str) -> None:
        nonlocal listening
        listening = True
        ready(url)

    try:
        await serve(settings, stop=stop, ready=said)
    except OSError as exc:
        if listening:
            raise
        where = f"{settings.host}:{settings.port}"
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ConfigError(f"cannot serve the dashboard on {where}: {why}") from exc


# ----------------------------------------------------------------------------- login


def run_login(args: argparse.Namespace) -> int:
    from wattmesh.broker.keys import load_signing_key
    from wattmesh.broker.topics import check_segment
    from wattmesh.dashboard.auth import LoginFailed, login_link

    household = check_segment(args.household, "--household")
    key = load_signing_key(Path(args.key))
    try:
        link = login_link(args.url, key, household)
    except LoginFailed as exc:  # unreachable, or the login refused: one line
        print(f"wattmesh: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    print(link)
    return EXIT_OK


# ----------------------------------------------------------------------------- rebuild


def run_rebuild(args: argparse.Namespace) -> int:
    from wattmesh.config.dashboard_config import dashboard_db_url

    config = _config(args)
    from wattmesh.dashboard.readmodel import ReadModel, ReadModelError
    from wattmesh.ledger.store import LedgerStore
    from wattmesh.ledger.store_open import store_failures

    url = config.read_model_url or ReadModel.default_url(config.ledger_url)
    if args.read_model is not None:
        try:
            url = dashboard_db_url(args.read_model, ledger=False)
        except ConfigError as exc:
            raise ConfigError(f"--read-model: {exc}") from exc
    store = LedgerStore.read_only(config.ledger_url)
    try:
        with store_failures(config.ledger_url):
            model = ReadModel(url)
            try:
                started = time.perf_counter()
                result = model.rebuild(store)
                took_s = time.perf_counter() - started
            finally:
                model.close()
    except ReadModelError as exc:  # its database failed, or holds a ledger: one line
        print(f"wattmesh: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    finally:
        store.close()
    print(
        f"folded {result.applied} entries ({len(result.closed)} intervals closed, tree size "
        f"{result.tree_size}) into {_shown(url)} in {took_s:.2f} s"
    )
    return EXIT_OK


def _shown(url: str) -> str:
    from wattmesh.ledger.store_open import shown_url

    return shown_url(url)


# ----------------------------------------------------------------------------- thread


class DashboardThread:
    """The dashboard served by :func:`wattmesh.dashboard.app.serve` on a daemon thread
    with its own event loop: :meth:`start` returns its URL once it listens (or raises
    what stopped it), :meth:`stop` ends it and waits."""

    def __init__(self, settings: DashboardSettings) -> None:
        self.settings = settings
        self.url: str | None = None
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="dashboard", daemon=True)

    def start(self, timeout_s: float = _START_TIMEOUT_S) -> str:
        self._thread.start()
        if not self._ready.wait(timeout_s):
            self.stop()
            raise ConfigError(f"the dashboard did not start within {timeout_s:.0f} s")
        if self._failure is not None or self.url is None:
            self._thread.join()
            failure = self._failure
            if isinstance(failure, Exception):
                raise failure
            raise ConfigError("the dashboard stopped before it listened")
        return self.url

    def stop(self) -> None:
        loop, stop = self._loop, self._stop
        if loop is not None and stop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stop.set)
        if self._thread.is_alive():
            self._thread.join()

    def _listening(self, url: str) -> None:
        self.url = url
        self._ready.set()

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # handed to the starting thread
            self._failure = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await serve_until(self.settings, self._stop, self._listening)
