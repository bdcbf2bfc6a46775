"""Terminal front end of ``wattmesh simulate``: progress bar, summary table, report file."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wattmesh.broker.errors import ConfigError
from wattmesh.ledger.mechanisms.base import MarketRules
from wattmesh.ledger.mechanisms.catalog import Mechanism
from wattmesh.ledger.mechanisms.tariffs import TariffSchedule
from wattmesh.sim.html_report import HOUSEHOLD_KPI_HEAD, household_cells, summary_figures
from wattmesh.sim.simulate import SimulationConfig, run_simulation


def run_simulate_command(args: argparse.Namespace) -> int:
    config = SimulationConfig(
        households=args.households,
        days=args.days,
        seed=args.seed,
        pv_share=args.pv_share,
        battery_share=args.battery_share,
        broker=args.broker,
        db_url=args.db,
        forecaster=args.forecaster,
        workdir=Path(args.workdir),
        history_days=args.history_days,
        tariffs=None if args.tariffs is None else load_tariffs(Path(args.tariffs)),
        mechanism=_mechanism(args.mechanism, args.network_fee_micro_per_kwh),
        currency=args.currency,
        inject_faults=args.inject_faults,
    )
    path = config.workdir / "report.json" if args.report is None else Path(args.report)
    html = None if args.html is None else Path(args.html)
    _writable_paths(config.workdir, path, html)  # before the run, not after it
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    console = Console(stderr=True, quiet=args.quiet)
    bar = Progress(
        TextColumn("[bold]simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("intervals"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = bar.add_task("intervals", total=config.days * 86_400 // config.interval_s)

    def advance(done: int, total: int) -> None:
        bar.start()  # (once) after the dashboard's URL
        bar.update(task, completed=done, total=total)

    def publish(report: dict[str, Any]) -> None:
        bar.stop()
        _publish(report, path, html, quiet=args.quiet)

    watch = None
    if args.dashboard:
        from wattmesh.cli.simulate_watch import DashboardWatch

        watch = DashboardWatch(
            args.dashboard_port,
            publish=publish,
            after_start=bar.start,
            currency=config.currency,
            workdir=config.workdir,
        )
    try:
        report = asyncio.run(run_simulation(config, progress=advance, watcher=watch))
    finally:
        bar.stop()
        if watch is not None:
            watch.close()
    if watch is None:
        publish(report)
    return 0 if report["verified"] else 1


def _publish(report: dict[str, Any], path: Path, html: Path | None, *, quiet: bool) -> None:
    """Write the report (and its HTML page), print the table."""
    try:
        path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--report: cannot write {path}: {exc.strerror}") from exc
    if html is not None:
        from wattmesh.sim.html_report import write_html_report

        try:
            write_html_report(report, html)
        except OSError as exc:
            raise ConfigError(f"--html: cannot write {html}: {exc.strerror}") from exc
    if not quiet:
        Console().print(summary_table(report))
        households = household_table(report)
        if households is not None:
            Console().print(households)
        Console().print(f"report written to {path}")
        if html is not None:
            Console().print(f"HTML report written to {html}")


def _writable_paths(workdir: Path, report: Path, html: Path | None = None) -> None:
    """Create the working folder and the reports' folders; ConfigError if they cannot
    be, or if a report's path is a folder."""
    folders = [("--workdir", workdir), ("--report", report.parent)]
    if html is not None:
        folders.append(("--html", html.parent))
    for option, folder in folders:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"{option}: cannot create {folder}: {exc.strerror}") from exc
    for option, file in (("--report", report), ("--html", html)):
        if file is not None and file.is_dir():
            raise ConfigError(f"{option}: {file} is a folder")


def _mechanism(name: str, network_fee_micro_per_kwh: int) -> Mechanism:
    try:
        rules = MarketRules(network_fee_micro_per_kwh=network_fee_micro_per_kwh)
    except ValueError as exc:
        raise ConfigError(f"--network-fee-micro-per-kwh: {exc}") from exc
    try:
        return Mechanism(name, rules)
    except ValueError as exc:
        raise ConfigError(f"--mechanism: {exc}") from exc


def load_tariffs(path: Path) -> TariffSchedule:
    """A time-of-use schedule file: a JSON list of periods (docs/protocol.md)."""
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise ValueError("must be a JSON list of objects")
        return TariffSchedule.from_json(rows)
    except (OSError, ValueError) as exc:  # JSONDecodeError and UnicodeDecodeError too
        raise ConfigError(f"--tariffs {path}: {exc}") from exc


def summary_table(report: dict[str, Any]) -> Table:
    table = Table(
        title=f"wattmesh simulate: {report['households']} households, "
        f"{report['days']} days, seed {report['seed']}"
    )
    table.add_column("figure")
    table.add_column("value", justify="right")
    rows = summary_figures(report)
    rows.append(("ledger root", report["ledger_root"][:16] + "…"))
    rows.append(("ledger verified", "yes" if report["verified"] else "NO"))
    for kind, row in report.get("faults", {}).get("kinds", {}).items():
        rows.append((f"faults {kind}", _fault_cell(row)))
    for name, value in rows:
        table.add_row(name, value)
    return table


HOUSEHOLD_ROWS = 25
"""The terminal shows every household up to this many, else the ones worst off."""


def household_table(report: dict[str, Any]) -> Table | None:
    """Each household's bill against its grid-only bill and its KPIs (the households
    worst off first when there are more than ``HOUSEHOLD_ROWS``); None without KPIs."""
    rows = [h for h in report.get("per_household", []) if h.get("kpi")]
    if not rows:
        return None
    title = "households: bill against the grid-only bill (KPIs from metered energy)"
    if len(rows) > HOUSEHOLD_ROWS:
        rows = sorted(rows, key=lambda h: h["kpi"]["saving_micro"])[:HOUSEHOLD_ROWS]
        title += f"; the {HOUSEHOLD_ROWS} with the smallest saving (all in the report)"
    table = Table(title=title)
    table.add_column("household")
    for name in HOUSEHOLD_KPI_HEAD:
        table.add_column(name, justify="right")
    for h in rows:
        table.add_row(h["agent"], *household_cells(h, report["currency"]))
    return table


def _fault_cell(row: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f} %"

    return (
        f"{row['injected']} injected, recall {pct(row['recall'])},"
        f" precision {pct(row['precision'])}"
    )
