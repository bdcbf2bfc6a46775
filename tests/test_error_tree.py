"""The exception tree stays whole: every exception class the five packages define
derives from WattmeshError and from its package's branch (broker/errors.py), and the
errors that cross a process boundary survive pickling with their attributes."""

from __future__ import annotations

import importlib
import inspect
import pickle
import pkgutil
from types import ModuleType

import pytest

import wattmesh
import wattmesh.cli.dispatch as cli
from wattmesh import agents, broker, dashboard, forecasting, ledger
from wattmesh.broker.errors import (
    AgentError,
    BrokerError,
    CommandError,
    ConfigError,
    DashboardError,
    FailureError,
    ForecastError,
    LedgerError,
    MessageError,
    RejectReason,
    WattmeshError,
)
from wattmesh.ledger._admission import RedeliveredError
from wattmesh.ledger.logcheck import DamageFound, SnapshotDisagrees
from wattmesh.ledger.settlement import RegisterError
from wattmesh.ledger.startcheck import LogDamaged
from wattmesh.ledger.statement import StatementError
from wattmesh.ledger.store_errors import StoreError
from wattmesh.sim.report import BalanceError

# Keyed by import name, so the test reads the same once the packages are installed as
# wattmesh.broker etc. (scripts/rename_packages.py; docs/ARCHITECTURE.md "Installed names").
BRANCHES: dict[str, type[WattmeshError]] = {
    broker.__name__: BrokerError,
    ledger.__name__: LedgerError,
    agents.__name__: AgentError,
    forecasting.__name__: ForecastError,
    dashboard.__name__: DashboardError,
    wattmesh.__name__: CommandError,
}
# The tree's own nodes: the root, the branches and the two kinds.
NODES = {WattmeshError, ConfigError, FailureError, *BRANCHES.values()}


# Alembic's environment script runs a migration when imported (Alembic executes it with
# a connection in hand); it defines no exception.
SCRIPTS = {"wattmesh.ledger.migrations.env"}


def _modules(package: str) -> list[ModuleType]:
    root = importlib.import_module(package)
    names = [m.name for m in pkgutil.walk_packages(root.__path__, f"{package}.")]
    return [root, *(importlib.import_module(name) for name in names if name not in SCRIPTS)]


def _owner(module: str) -> str:
    """The package of BRANCHES a module belongs to: the longest that contains it."""
    owners = [name for name in BRANCHES if module == name or module.startswith(f"{name}.")]
    return max(owners, key=len, default="")


def _exceptions(package: str) -> list[type[BaseException]]:
    found = {
        value
        for module in _modules(package)
        for value in vars(module).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and _owner(value.__module__) == package
    }
    return sorted(found, key=lambda cls: f"{cls.__module__}.{cls.__qualname__}")


@pytest.mark.parametrize("package", sorted(BRANCHES))
def test_every_exception_is_in_its_packages_branch(package: str) -> None:
    classes = [cls for cls in _exceptions(package) if cls not in NODES]
    outside = [
        f"{cls.__module__}.{cls.__qualname__}"
        for cls in classes
        if not issubclass(cls, BRANCHES[package])
    ]
    assert outside == []


def test_the_walk_finds_the_known_classes() -> None:
    """The walk is not vacuous: it finds classes in each package that has any."""
    names = {cls.__qualname__ for package in BRANCHES for cls in _exceptions(package)}
    expected = {"TransportClosedError", "KeyLogError", "MeterError", "BalanceError"}
    assert expected <= names
    assert {cls for cls in _exceptions(broker.__name__) if cls in NODES} == NODES


def test_config_and_failure_are_exclusive() -> None:
    """The command line maps a ConfigError to exit 2 and a FailureError to exit 1."""
    for package in BRANCHES:
        for cls in _exceptions(package):
            assert not (issubclass(cls, ConfigError) and issubclass(cls, FailureError)), cls


def test_errors_that_cross_a_process_survive_pickling() -> None:
    # MessageError and RedeliveredError come back from the decode workers
    # (ledger/sigcheck.py); LogDamaged and its subclasses carry their entry index.
    for error in (
        MessageError(RejectReason.SCHEMA, "missing field"),
        RedeliveredError(RejectReason.DUPLICATE, "seq 7 again"),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (back.reason, back.detail, str(back)) == (error.reason, error.detail, str(error))
    for damaged in (
        LogDamaged(12, "stored leaf hash does not match"),
        DamageFound(None, "ledger has no metadata"),
        SnapshotDisagrees(None, "the state snapshot at size 9 disagrees"),
    ):
        again = pickle.loads(pickle.dumps(damaged))
        assert type(again) is type(damaged)
        assert (again.first_bad_entry, again.problem, str(again)) == (
            damaged.first_bad_entry,
            damaged.problem,
            str(damaged),
        )


def test_context_is_kept_as_attributes() -> None:
    register = pickle.loads(pickle.dumps(RegisterError("h007", 900, "negative energy in 900")))
    assert (register.agent, register.interval, str(register)) == (
        "h007",
        900,
        "h007: negative energy in 900",
    )
    assert isinstance(register, ValueError)  # callers that catch ValueError still do
    statement = pickle.loads(pickle.dumps(StatementError("h001", 1800, "cost 5 differs")))
    assert (statement.household, statement.interval, str(statement)) == (
        "h001",
        1800,
        "h001, interval 1800: cost 5 differs",
    )


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("--days must be at least 1, got 0"), 2),
        (MessageError(RejectReason.SCHEMA, "missing field"), 2),
        (StoreError("database sqlite:///x.db: disk I/O error"), 1),
    ],
)
def test_the_command_line_maps_the_kinds(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: WattmeshError,
    code: int,
) -> None:
    def fail(_args: object) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_market_clear", fail)
    assert cli.main(["market", "clear", "book.json"]) == code
    assert capsys.readouterr().err == f"wattmesh: error: {error}\n"


def test_a_failure_reaches_the_command_line_as_a_traceback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a bad argument (exit 2): it propagates (traceback, exit 1), as before these
    errors joined the tree."""

    def fail(_args: object) -> int:
        raise BalanceError("P2P energy bought differs from energy sold")

    monkeypatch.setattr(cli, "_cmd_market_clear", fail)
    with pytest.raises(BalanceError, match="P2P energy"):
        cli.main(["market", "clear", "book.json"])
