"""Terminal front end of ``wattmesh simulate``: progress bar, summary table, report file.

Its settings come from :mod:`wattmesh.cli.simulate_setup` (flags over ``--scenario``);
several mechanisms make one run each in ``WORKDIR/<mechanism>/`` and a comparison
(:mod:`wattmesh.sim.comparison`) as the main report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from wattmesh.broker.errors import ConfigError
from wattmesh.cli.simulate_setup import plan_runs
from wattmesh.sim.comparison import comparison_figures, comparison_report
from wattmesh.sim.html_report import pct, summary_figures
from wattmesh.sim.simulate import SimulationConfig, run_simulation


def run_simulate_command(args: argparse.Namespace) -> int:
    scenario = None
    if args.scenario is not None:
        from wattmesh.config.scenario_config import load_scenario

        if args.validate_config:
            return _validate(Path(args.scenario), args)
        scenario = load_scenario(Path(args.scenario))
    elif args.validate_config:
        raise ConfigError("--validate-config checks a file: give --scenario FILE")
    plan = plan_runs(args, scenario)
    path = Path(args.workdir) / "report.json" if args.report is None else Path(args.report)
    html = None if args.html is None else Path(args.html)
    _writable_paths(Path(args.workdir), path, html)  # before the run, not after it
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    if not plan.comparison:
        report = _run_one(plan.configs[0], args, path, html)
        return 0 if report["verified"] else 1
    runs = []
    for config in plan.configs:
        name = config.mechanism.name
        if not args.quiet:
            Console(stderr=True).print(f"[bold]mechanism {name}[/bold] (in {config.workdir})")
        one_path = config.workdir / "report.json"
        one_html = None if html is None else config.workdir / "report.html"
        _writable_paths(config.workdir, one_path, one_html)
        report = _run_one(config, args, one_path, one_html, table=False)
        runs.append((name, report, str(one_path)))
    main = comparison_report(runs)
    _publish(main, path, html, quiet=args.quiet)
    return 0 if main["verified"] else 1


def _validate(path: Path, args: argparse.Namespace) -> int:
    """``--validate-config``: the file, then the scenario it makes with the flags given
    (measured profiles covering the period); 0 if valid, 1 listing every problem."""
    from wattmesh.config.scenario_config import check_scenario
    from wattmesh.sim.plan import build_planned

    scenario, problems = check_scenario(path)
    if scenario is not None:
        try:
            config = plan_runs(args, scenario).configs[0]
            built = build_planned(
                config.plan(), days=config.days, seed=config.seed, history_days=config.history_days
            )
        except (ConfigError, ValueError) as exc:
            problems = [str(exc)]
    if problems:
        for problem in problems:
            print(f"{path}: {problem}", file=sys.stderr)
        return 1
    names = ",".join(c.mechanism.name for c in plan_runs(args, scenario).configs)
    print(
        f"{path}: ok ({len(built.households)} households, {config.days} days from "
        f"{built.interval_start(built.history_intervals).isoformat()}, mechanism {names})"
    )
    return 0


def _run_one(
    config: SimulationConfig,
    args: argparse.Namespace,
    path: Path,
    html: Path | None,
    *,
    table: bool = True,
) -> dict[str, Any]:
    """One run with its progress bar (and dashboard), its report written."""
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
        _publish(report, path, html, quiet=args.quiet or not table)

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
    return report


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
    if not quiet and report.get("kind") == "comparison":
        Console().print(comparison_table(report))
    elif not quiet:
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


def comparison_table(report: dict[str, Any]) -> Table:
    """The comparison of ``simulate --mechanism a,b,...``: figures down, mechanisms across."""
    head, rows = comparison_figures(report)
    table = Table(
        title=f"wattmesh simulate: {len(report['mechanisms'])} mechanisms, "
        f"{report['households']} households, {report['days']} days, seed {report['seed']}"
    )
    table.add_column(head[0])
    for name in head[1:]:
        table.add_column(name, justify="right")
    for row in rows:
        table.add_row(*row)
    return table


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
    title = f"households (amounts in {report['currency']}; KPIs from metered energy)"
    if len(rows) > HOUSEHOLD_ROWS:
        rows = sorted(rows, key=lambda h: h["kpi"]["saving_micro"])[:HOUSEHOLD_ROWS]
        title += f"; the {HOUSEHOLD_ROWS} that saved least (all in the report)"
    table = Table(title=title)
    table.add_column("household")
    for name in ("bill", "grid-only", "saving", "%", "self-suff.", "self-cons."):
        table.add_column(name, justify="right")
    table.add_column("worse off", justify="right")
    for h in rows:
        k = h["kpi"]
        table.add_row(
            h["agent"],
            *(f"{k[m] / 1_000_000:,.2f}" for m in ("bill_micro", "grid_only_bill_micro")),
            f"{k['saving_micro'] / 1_000_000:,.2f}",
            pct(k["savings_pct"], ratio=False),
            pct(k["self_sufficiency"]),
            pct(k["self_consumption"]),
            f"{k['worse_off_intervals']:,} ({k['worse_off_micro'] / 1_000_000:,.2f})",
        )
    return table


def _fault_cell(row: dict[str, Any]) -> str:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.0f} %"

    return (
        f"{row['injected']} injected, recall {pct(row['recall'])},"
        f" precision {pct(row['precision'])}"
    )
