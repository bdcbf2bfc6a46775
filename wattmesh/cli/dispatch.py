"""The ``wattmesh`` command line: parses the arguments and runs the chosen command.

Each subcommand imports what it needs only when it runs, so ``wattmesh agent`` works on
an edge device that installed only the agent's extra (no SQLAlchemy, pandas or prophet).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from wattmesh.broker.errors import FailureError, KeyFileError, WattmeshError
from wattmesh.ledger.store_errors import StoreError

EXIT_USAGE = 2
EXIT_FAILED = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a command its pipe ended


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _cmd_keys_new(args: argparse.Namespace) -> int:
    from wattmesh.broker.keys import write_key_pair

    try:
        key = write_key_pair(Path(args.out))
    except OSError as exc:  # an existing private key is a KeyFileError already
        raise KeyFileError(f"cannot write a key pair into {args.out}: {exc.strerror}") from exc
    print(key.kid)
    return 0


def _cmd_ledger_verify(args: argparse.Namespace) -> int:
    from wattmesh.cli.verify_cli import run_verify

    return run_verify(args)


def _cmd_ledger_migrate(args: argparse.Namespace) -> int:
    from wattmesh.ledger.schema import migrate_database

    before, after = migrate_database(args.db)
    if before == after:
        print(f"ok: the ledger schema is at revision {after} already; nothing to do")
    else:
        print(f"ok: migrated the ledger schema from revision {before} to {after}")
    return 0


def _cmd_ledger_statement(args: argparse.Namespace) -> int:
    from wattmesh.cli.statement_cli import run_statement_command

    return run_statement_command(args)


def _cmd_ledger_run(args: argparse.Namespace) -> int:
    from wattmesh.cli.ledger_run import run_ledger_command, validate_config_command

    if args.validate_config:
        return validate_config_command(Path(args.config))
    return run_ledger_command(Path(args.config))


def _cmd_simulate(args: argparse.Namespace) -> int:
    from wattmesh.cli.simulate_cli import run_simulate_command

    return run_simulate_command(args)


def _cmd_market_clear(args: argparse.Namespace) -> int:
    from wattmesh.cli.market_cli import run_market_clear_command

    return run_market_clear_command(args.mechanism, Path(args.file))


def _cmd_agent(args: argparse.Namespace) -> int:
    from wattmesh.cli.agent_cli import run_agent_command, validate_config_command

    if args.validate_config:
        return validate_config_command(Path(args.config))
    return run_agent_command(Path(args.config))


def _cmd_meter_read(args: argparse.Namespace) -> int:
    from wattmesh.cli.meter_cli import run_meter_read

    return run_meter_read(args.meter, as_json=args.json, timeout_s=args.timeout)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wattmesh", description="Peer-to-peer energy trading for microgrids.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for add in (_add_simulate, _add_keys, _add_ledger, _add_market, _add_agent, _add_meter):
        add(sub)
    from wattmesh.cli.registry_cli import add_registry_commands  # stdlib only at import time

    add_registry_commands(sub)
    from wattmesh.cli.dashboard_cli import add_dashboard_commands  # stdlib only at import time

    add_dashboard_commands(sub)
    from wattmesh.cli.forecast_cli import add_forecast_commands  # stdlib only at import time

    add_forecast_commands(sub)
    _add_forecast(sub)  # after any other ``forecast`` commands: it joins their group
    from wattmesh.cli.provision_cli import add_provision_command  # stdlib only at import

    add_provision_command(sub)
    return parser


def _add_forecast(sub: argparse._SubParsersAction[_Parser]) -> None:
    """``forecast backtest``, in the ``forecast`` group (made here unless one exists)."""
    from wattmesh.cli.forecast_backtest_cli import add_backtest_command  # stdlib only at import

    forecast = sub.choices.get("forecast")
    if forecast is None:
        forecast = sub.add_parser("forecast", help="the forecasting service and its backtests")
        forecast.add_subparsers(dest="forecast_command", required=True, parser_class=_Parser)
    group = next(a for a in forecast._actions if isinstance(a, argparse._SubParsersAction))
    add_backtest_command(group)


def _add_simulate(sub: argparse._SubParsersAction[_Parser]) -> None:
    sim = sub.add_parser("simulate", help="run a whole neighbourhood on this machine")
    # Flags a scenario file may set default to None here: given, they override the file
    # (wattmesh/cli/simulate_setup.py applies the defaults named in their help).
    sim.add_argument(
        "--scenario", default=None, help="scenario file (TOML): households, tariffs, market"
    )
    sim.add_argument(
        "--validate-config", action="store_true", help="check --scenario, exit 0/1; no run"
    )
    sim.add_argument("--households", type=int, default=None, help="how many (default 20)")
    sim.add_argument("--days", type=int, default=None, help="simulated days to trade (default 2)")
    sim.add_argument(
        "--seed", type=int, default=None, help="seed of every random choice (default 1)"
    )
    sim.add_argument(
        "--pv-share", type=float, default=None, help="share of households with PV (default 0.4)"
    )
    sim.add_argument(
        "--battery-share", type=float, default=None, help="share of PV households with a battery"
    )
    sim.add_argument("--broker", default="auto", help="auto, or mqtt://host:port")
    sim.add_argument("--db", default=None, help="ledger database URL (default: out/ledger.db)")
    sim.add_argument(
        "--forecaster",
        choices=("prophet", "naive"),
        default=None,
        help="the households' forecasts (default prophet; naive is quicker)",
    )
    sim.add_argument(
        "--history-days", type=int, default=None, help="history before the period (default 28)"
    )
    sim.add_argument(
        "--report", default=None, help="report file (JSON; default WORKDIR/report.json)"
    )
    sim.add_argument(
        "--workdir", default="out", help="folder for the ledger, broker and report (default out)"
    )
    sim.add_argument(
        "--currency", default=None, help="currency of the amounts, ISO 4217 (default EUR)"
    )
    sim.add_argument("--quiet", action="store_true", help="no progress bar or table")
    sim.add_argument(
        "--mechanism",
        default=None,
        help="uniform (default), pay-as-bid, sdr or mmr; several, comma-separated, compare",
    )
    sim.add_argument("--tariffs", default=None, help="time-of-use tariff schedule (JSON)")
    sim.add_argument(
        "--network-fee-micro-per-kwh",
        type=int,
        default=None,
        help="operator's network fee per locally traded kWh (micro-units; default 0)",
    )
    sim.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the dashboard over the run (and after it, until Ctrl-C)",
    )
    from wattmesh.cli.dashboard_cli import port_number  # stdlib only at import time

    sim.add_argument(
        "--dashboard-port",
        type=port_number,
        default=8080,
        help="the dashboard's port (default 8080; 0: any free port)",
    )
    sim.add_argument("--html", default=None, help="also write the report as one HTML file")
    sim.add_argument(
        "--inject-faults",
        type=float,
        default=0.0,
        metavar="RATE",
        help="share of household-days with one injected fault; the report scores the"
        " flags in the log against them (default 0: none)",
    )
    sim.set_defaults(func=_cmd_simulate)


def _add_keys(sub: argparse._SubParsersAction[_Parser]) -> None:
    keys = sub.add_parser("keys", help="household and operator keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, parser_class=_Parser)
    new = keys_sub.add_parser("new", help="write a new P-256 key pair and print its key id")
    new.add_argument("--out", required=True, help="directory for private_key.pem (0600)")
    new.set_defaults(func=_cmd_keys_new)


def _add_ledger(sub: argparse._SubParsersAction[_Parser]) -> None:
    ledger = sub.add_parser("ledger", help="run or inspect the ledger")
    ledger_sub = ledger.add_subparsers(dest="ledger_command", required=True, parser_class=_Parser)
    run = ledger_sub.add_parser("run", help="run the market operator on the wall clock")
    run.add_argument("--config", required=True, help="operator configuration (TOML)")
    run.add_argument(
        "--validate-config", action="store_true", help="check the configuration, exit 0/1"
    )
    run.set_defaults(func=_cmd_ledger_run)
    verify = ledger_sub.add_parser("verify", help="recheck every hash, signature and checkpoint")
    verify.add_argument("--db", required=True, help="database URL, e.g. sqlite:///out/ledger.db")
    trusted = verify.add_mutually_exclusive_group()
    trusted.add_argument("--operator-key", help="the operator's public key (PEM) to trust")
    trusted.add_argument(
        "--operator-key-id", help="the operator key id to trust (64 hex digits, SHA-256 of its DER)"
    )
    verify.set_defaults(func=_cmd_ledger_verify)

    migrate = ledger_sub.add_parser(
        "migrate", help="bring the ledger database's schema up to this version (back it up first)"
    )
    migrate.add_argument("--db", required=True, help="database URL, e.g. sqlite:///out/ledger.db")
    migrate.set_defaults(func=_cmd_ledger_migrate)
    statement = ledger_sub.add_parser("statement", help="one household's bill, from the log")
    statement.add_argument("--db", required=True, help="database URL")
    statement.add_argument("--household", required=True, help="the household's agent id")
    statement.add_argument("--from", dest="date_from", help="first day, YYYY-MM-DD (UTC)")
    statement.add_argument("--to", dest="date_to", help="last day, YYYY-MM-DD (UTC), inclusive")
    statement.add_argument(
        "--format", choices=("csv", "json"), default="json", help="output format (default json)"
    )
    statement.set_defaults(func=_cmd_ledger_statement)
    from wattmesh.cli.ledger_cli import add_proof_commands  # stdlib only at import time

    add_proof_commands(ledger_sub)


def _add_market(sub: argparse._SubParsersAction[_Parser]) -> None:
    market = sub.add_parser("market", help="offline market tools")
    market_sub = market.add_subparsers(dest="market_command", required=True, parser_class=_Parser)
    clear = market_sub.add_parser("clear", help="clear a JSON order book and print JSON")
    clear.add_argument("--mechanism", default="uniform", help="uniform, pay-as-bid, sdr or mmr")
    clear.add_argument("file", help="order book (JSON, see docs/protocol.md)")
    clear.set_defaults(func=_cmd_market_clear)


def _add_agent(sub: argparse._SubParsersAction[_Parser]) -> None:
    agent = sub.add_parser("agent", help="run a household agent")
    agent.add_argument("--config", required=True, help="agent configuration (TOML)")
    agent.add_argument(
        "--validate-config", action="store_true", help="check the configuration, exit 0/1"
    )
    agent.set_defaults(func=_cmd_agent)


def _add_meter(sub: argparse._SubParsersAction[_Parser]) -> None:
    meter = sub.add_parser("meter", help="test a meter's wiring")
    meter_sub = meter.add_subparsers(dest="meter_command", required=True, parser_class=_Parser)
    read = meter_sub.add_parser("read", help="print one reading (UTC time, Wh registers, W)")
    read.add_argument(
        "--meter", required=True, help="e.g. p1-serial:/dev/ttyUSB0, p1-tcp:host:port"
    )
    read.add_argument("--json", action="store_true", help="one JSON object instead of text")
    read.add_argument("--timeout", type=_seconds, default=30.0, help="seconds to wait (default 30)")
    read.set_defaults(func=_cmd_meter_read)


def _seconds(text: str) -> float:
    """A positive, finite number of seconds (otherwise a usage error, exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value < float("inf"):  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except BrokenPipeError:  # the reader went away (`... | head`): stop quietly
        _discard_stdout()
        return EXIT_BROKEN_PIPE


def _discard_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit meets no closed pipe."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _run(argv: Sequence[str] | None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        code = func(args)
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except StoreError as exc:  # the database failed: not a bad argument
        print(f"wattmesh: error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except FailureError:  # not a bad argument either: an unexpected failure (traceback, 1)
        raise
    except WattmeshError as exc:
        print(f"wattmesh: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
