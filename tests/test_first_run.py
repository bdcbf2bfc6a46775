"""What a first run meets: help for every option, ``python -m wattmesh``, a closed pipe."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ledgerkit import T0, TARIFF, House, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE


def _options(parser: argparse.ArgumentParser, path: str) -> list[tuple[str, argparse.Action]]:
    """Every argument of every (sub)command, by command path."""
    found: list[tuple[str, argparse.Action]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found += _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            found.append((path, action))
    return found


def test_every_option_of_every_command_says_what_it_does() -> None:
    options = _options(build_parser(), "wattmesh")
    assert len(options) > 40  # the walk reached the subcommands
    silent = [
        f"{path} {'/'.join(a.option_strings) or a.dest}"
        for path, a in options
        if not a.help or a.help == argparse.SUPPRESS
    ]
    assert silent == []


def test_simulate_help_explains_its_first_options() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wattmesh.cli", "simulate", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    for expected in (
        "--households HOUSEHOLDS how many",
        "--days DAYS simulated days",
        "--seed SEED seed of every random choice",
        "--pv-share PV_SHARE share of households with PV",
        "--report REPORT report file (JSON; default WORKDIR/report.json)",
        "--workdir WORKDIR folder for the ledger",
        "--currency CURRENCY currency of the amounts",
    ):
        assert expected in text, text


def test_python_dash_m_wattmesh_runs_the_command() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "wattmesh", "market", "--help"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: wattmesh market")


OPERATOR = SigningKey.generate()


@pytest.fixture
def ledger_db(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    house = House("h001")
    ledger = new_ledger(url, OPERATOR, (house,))
    ledger.open_interval(T0, TARIFF, trading=False)
    ledger.ingest(house.reading(T0))
    ledger.close_interval()
    ledger.store.close()
    return url


@pytest.mark.parametrize(
    "command",
    [
        ["ledger", "statement", "--household", "h001", "--format", "csv", "--db"],
        ["ledger", "statement", "--household", "h001", "--db"],
        ["ledger", "verify", "--operator-key-id", OPERATOR.kid, "--db"],
        ["ledger", "prove", "--entry", "0", "--db"],
    ],
    ids=["statement-csv", "statement-json", "verify", "prove"],
)
def test_a_printing_command_into_a_closed_pipe_stops_quietly(
    ledger_db: str, command: list[str]
) -> None:
    """``wattmesh ledger statement ... | head``: the reader is gone before the output."""
    args = [*command, ledger_db] if command[-1] == "--db" else command
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write now fails with EPIPE
    try:
        result = subprocess.run(
            [sys.executable, "-m", "wattmesh", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            check=False,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert (result.returncode, result.stderr) == (EXIT_BROKEN_PIPE, "")
