"""``wattmesh forecast ...``: the forecasting service's commands.

``forecast health --config forecast.toml`` is its health check
(:mod:`wattmesh.cli.forecast_health`). ``forecast serve --config forecast.toml
[--validate-config]`` runs the service
(:mod:`forecasting.server`) as the composition root wires it:

1. read and check ``forecast.toml`` (:mod:`wattmesh.config.forecast_config`), the
   registry included;
2. open the service's own tables (:class:`forecasting.history.HistoryStore`) and the
   ledger's log, read only (:class:`wattmesh.cli.forecast_feed.LedgerFeed`);
3. connect (clean session, client id ``<market>-forecaster`` unless configured),
   subscribed to every household's readings and the retained ``market/checkpoint``:
   each checkpoint announced makes it read the log up to the latest signed one;
4. serve until SIGTERM/SIGINT, then publish ``stopped`` health and exit 0.

Exit codes: 0 clean shutdown, or ``--validate-config`` found it valid; 1
``--validate-config`` found problems, or the service failed (one ERROR line); 2 an
invalid configuration when running (one line on stderr).

Other subcommands of the ``forecast`` group (``backtest``) register beside ``serve``
in :func:`add_forecast_commands`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from wattmesh.broker.topics import Topics
    from wattmesh.config.forecast_config import ForecastServeConfig

__all__ = [
    "add_forecast_commands",
    "run_serve_command",
    "serve_subscriptions",
    "validate_config_command",
]

_LOG = logging.getLogger(__name__)
EXIT_OK, EXIT_FAILED = 0, 1


def add_forecast_commands(sub: Any) -> None:
    """Register the ``forecast`` command group: ``serve`` (stdlib only at import)."""
    forecast = sub.add_parser("forecast", help="the forecasting service and its tools")
    forecast_sub = forecast.add_subparsers(
        dest="forecast_command", required=True, parser_class=type(forecast)
    )
    serve = forecast_sub.add_parser("serve", help="publish each household's forecasts")
    serve.add_argument("--config", required=True, help="service configuration (TOML)")
    serve.add_argument(
        "--validate-config", action="store_true", help="check the configuration, exit 0/1"
    )
    serve.set_defaults(func=_cmd_serve)
    health = forecast_sub.add_parser(
        "health", help="exit 0 if the running service's signed health says ok"
    )
    health.add_argument("--config", required=True, help="the service's configuration (TOML)")
    health.add_argument(
        "--timeout", type=float, default=5.0, help="seconds to wait for the broker (default 5)"
    )
    health.set_defaults(func=_cmd_health)


def _cmd_serve(args: argparse.Namespace) -> int:
    if args.validate_config:
        return validate_config_command(Path(args.config))
    return run_serve_command(Path(args.config))


def _cmd_health(args: argparse.Namespace) -> int:
    from wattmesh.cli.forecast_health import run_health_command

    return run_health_command(Path(args.config), args.timeout)


def validate_config_command(path: Path) -> int:
    """Check ``path`` without connecting anywhere: 0 if valid, 1 listing every problem."""
    from wattmesh.config.forecast_config import check_forecast_config

    config, problems = check_forecast_config(path)
    if config is None:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return EXIT_FAILED
    print(
        f"{path}: ok (market {config.market_id}, {len(config.households)} households, "
        f"models demand {config.demand_model} pv {config.pv_model}, "
        f"refit daily at {config.refit_hour_utc:02d}:00 UTC)"
    )
    return EXIT_OK


def serve_subscriptions(topics: Topics) -> list[tuple[str, int]]:
    """What ``forecast serve`` reads: the readings, and the checkpoints that say which
    of them the log holds (the broker's ACL grants exactly these, broker/acl.py)."""
    return [(topics.all_readings, 1), (topics.checkpoint, 1)]


def run_serve_command(path: Path) -> int:
    from wattmesh.config.forecast_config import load_forecast_config

    config = load_forecast_config(path)  # ConfigError: exit 2 (wattmesh.cli)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(_main(config))


async def _main(config: ForecastServeConfig) -> int:
    from wattmesh.broker.transport import Transport
    from wattmesh.cli.forecast_feed import LedgerFeed
    from wattmesh.forecasting.history import HistoryStore, LoggedBatch
    from wattmesh.forecasting.server import ForecastServer, ServeConfig

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    topics = config.topics
    store = HistoryStore(config.db_url)
    feed = LedgerFeed(
        config.ledger_url,
        market_id=config.market_id,
        operator_key=config.operator_key,
        keys=config.households,
    )

    async def read_log() -> LoggedBatch | None:
        position, _ = await asyncio.to_thread(store.position)
        return await asyncio.to_thread(feed.read, position)

    transport = Transport(config.transport, subscriptions=serve_subscriptions(topics))
    try:
        async with transport:
            server = ForecastServer(
                ServeConfig(
                    topics,
                    interval_s=config.interval_s,
                    horizon=config.horizon,
                    window_days=config.window_days,
                    select_every_days=config.select_every_days,
                    demand_model=config.demand_model,
                    pv_model=config.pv_model,
                    refit_hour_utc=config.refit_hour_utc,
                    workers=config.workers,
                    pv_capacity_w=config.pv_capacity_w,
                ),
                key=config.forecaster_key,
                transport=transport,
                store=store,
                registry=config.households,
            )
            _LOG.info(
                "forecasting for market %s: %d households, connecting to %s as %s",
                config.market_id,
                len(config.households),
                config.transport.address.url,
                config.transport.client_id,
            )
            await server.run(stop, checkpoint_topic=topics.checkpoint, read_log=read_log)
    except Exception as exc:
        _LOG.error("stopping: %s: %s", type(exc).__name__, exc, exc_info=exc)
        return EXIT_FAILED
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        feed.close()
        store.close()
    _LOG.info("stopped cleanly")
    return EXIT_OK
