"""``wattmesh ledger statement``: one household's bill from the log, as CSV or JSON.

Exit codes: 0 printed; 1 the household's figures do not reconcile with its postings
(the log is inconsistent; run ``wattmesh ledger verify``), or the database cannot be
read (unreachable, damaged); 2 bad arguments (a date that is not YYYY-MM-DD, ``--from``
after ``--to``, no such database, a database that holds no ledger, a household that is
not registered in it).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, date, datetime, timedelta

from wattmesh.broker.errors import ConfigError

EXIT_NOT_RECONCILED = 1


def _day_start(text: str, option: str) -> int:
    try:
        day = date.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{option} must be a date YYYY-MM-DD (UTC), not {text!r}") from exc
    if len(text) != 10:
        raise ConfigError(f"{option} must be a date YYYY-MM-DD (UTC), not {text!r}")
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())


def interval_range(first: str | None, last: str | None) -> tuple[int | None, int | None]:
    """``--from``/``--to`` (inclusive UTC dates) as a half-open range of epoch seconds."""
    start = None if first is None else _day_start(first, "--from")
    end = (
        None if last is None else _day_start(last, "--to") + int(timedelta(days=1).total_seconds())
    )
    if start is not None and end is not None and start >= end:
        raise ConfigError(f"--from {first} is after --to {last}")
    return start, end


def run_statement_command(args: argparse.Namespace) -> int:
    from wattmesh.ledger.entries import EntryKind
    from wattmesh.ledger.meta import META_MARKET
    from wattmesh.ledger.statement import StatementError, build_statement
    from wattmesh.ledger.store import LedgerStore
    from wattmesh.ledger.store_open import store_failures

    start, end = interval_range(args.date_from, args.date_to)
    url: str = args.db
    store = LedgerStore.read_only(url)  # never creates or changes a database
    try:
        with store_failures(url):
            if store.get_meta(META_MARKET) is None:
                raise ConfigError(f"the database {url} holds no ledger")
            entries = [json.loads(e.data) for e in store.iter_entries()]
    finally:
        store.close()
    registered = {e["agent"] for e in entries if e.get("kind") == EntryKind.KEY}
    if args.household not in registered:
        raise ConfigError(f"household {args.household!r} is not registered in this ledger")
    try:
        statement = build_statement(entries, household=args.household, start=start, end=end)
    except StatementError as exc:
        print(f"wattmesh: statement does not reconcile: {exc}", file=sys.stderr)
        return EXIT_NOT_RECONCILED
    if args.format == "csv":
        sys.stdout.write(statement.to_csv())
    else:
        out = {"from": args.date_from, "to": args.date_to, **statement.to_json()}
        print(json.dumps(out, indent=2))
    return 0
