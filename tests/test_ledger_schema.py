"""The ledger database's schema version and migrations (``ledger/schema.py``).

The fixture ``tests/data/ledger_v0`` is a ledger written before the schema had a
version (see its README): it opens read-only as it is, is refused for writing until
``wattmesh ledger migrate``, then migrates and verifies with its operator key anchored,
on SQLite and (loaded from its SQL dump) on PostgreSQL.
"""

from __future__ import annotations

import gzip
import shutil
import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlmodel import SQLModel

from wattmesh.broker.keys import load_verifying_key
from wattmesh.cli.dispatch import main
from wattmesh.ledger import _status  # noqa: F401  (its table into SQLModel.metadata)
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.schema import VERSION_TABLE, head_revision, migrate_database, schema_state
from wattmesh.ledger.store import LedgerStore
from wattmesh.ledger.store_errors import NoLedgerDatabase, SchemaVersionError
from wattmesh.ledger.verify import verify_ledger
from wattmesh.sim.simkeys import simulation_key

FIXTURE = Path(__file__).resolve().parent / "data" / "ledger_v0"
OPERATOR_PEM = FIXTURE / "operator_public_key.pem"
V0_ROOT = "ea58cd08b973cc6974ac30179215cdf54c82ae9a98d76b731389fd1e5170f158"
V0_ENTRIES, V0_CHECKPOINTS = 1556, 98
V0_CLOSES = 97  # interval closes in the fixture's log
LEDGER_TABLES = {
    "log_entry",
    "checkpoint",
    "merkle_node",
    "ledger_meta",
    "intake",
    "state_snapshot",
    "household_status",
}


def _sqlite_v0(tmp_path: Path) -> str:
    path = tmp_path / "v0.db"
    with gzip.open(FIXTURE / "ledger.sqlite.gz") as packed, path.open("wb") as out:
        shutil.copyfileobj(packed, out)
    return f"sqlite:///{path}"


def _pg_v0(pg_url: str) -> str:
    """The fixture's SQL dump loaded into the empty database ``pg_url``."""
    script = gzip.decompress((FIXTURE / "ledger.pg.sql.gz").read_bytes()).decode("utf-8")
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(plain) as conn:
        conn.execute(script)  # no parameters: the simple protocol, many statements
    return pg_url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def v0_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return _sqlite_v0(tmp_path)
    return _pg_v0(request.getfixturevalue("pg_url"))


def _revision(url: str) -> str | None:
    store = LedgerStore.read_only(url)
    try:
        with store.engine.connect() as conn:
            return schema_state(conn).revision
    finally:
        store.close()


def test_the_v0_fixture_opens_migrates_and_verifies(
    v0_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    operator = load_verifying_key(OPERATOR_PEM)
    assert _revision(v0_url) is None  # no version: written before there was one
    # Read-only, it is read as it is: it verifies against its anchored key.
    reader = LedgerStore.read_only(v0_url)
    try:
        before = verify_ledger(reader, operator)
    finally:
        reader.close()
    assert before.ok, before.problem
    assert (before.entries, before.checkpoints, before.root.hex()) == (
        V0_ENTRIES,
        V0_CHECKPOINTS,
        V0_ROOT,
    )
    # Opening it to write is refused, with the step that is needed.
    needed = r"has no version .*`wattmesh ledger migrate --db "
    with pytest.raises(SchemaVersionError, match=needed):
        LedgerStore(v0_url)
    assert _revision(v0_url) is None  # the refusal changed nothing
    capsys.readouterr()
    assert main(["ledger", "migrate", "--db", v0_url]) == 0
    head = head_revision()
    assert capsys.readouterr().out == (
        f"ok: migrated the ledger schema from revision unversioned to {head}\n"
    )
    assert _revision(v0_url) == head
    assert main(["ledger", "migrate", "--db", v0_url]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["ledger", "verify", "--db", v0_url, "--operator-key", str(OPERATOR_PEM)]) == 0
    assert capsys.readouterr().out == (
        f"ok: {V0_ENTRIES} entries, {V0_CHECKPOINTS} checkpoints, root {V0_ROOT}, "
        # a log from before market_params: every close re-cleared, its energy as logged
        f"replayed {V0_CLOSES} closes ({V0_CLOSES} before the log's market parameters: "
        f"energy taken as logged), operator key {operator.kid}\n"
    )
    # The migrated ledger opens for writing and restores its state from its log.
    ledger = Ledger(
        LedgerStore(v0_url), market_id="sim", operator_key=simulation_key(7, "operator")
    )
    try:
        assert ledger.size == V0_ENTRIES
        assert sorted(ledger.households) == ["h001", "h002", "h003"]
    finally:
        ledger.store.close()


def _schema_differences(url: str) -> list[object]:
    """What the database at ``url`` lacks or holds otherwise than the models declare
    (the ledger's tables only: Alembic's autogenerate comparison)."""
    store = LedgerStore.read_only(url)

    def ours(_obj: object, name: str | None, kind: str, _reflected: bool, _to: object) -> bool:
        return kind != "table" or name in LEDGER_TABLES

    try:
        with store.engine.connect() as conn:
            context = MigrationContext.configure(
                conn, opts={"include_object": ours, "compare_type": True}
            )
            return list(compare_metadata(context, SQLModel.metadata))
    finally:
        store.close()


def test_a_new_ledger_has_the_head_schema_the_models_declare(db_url: str) -> None:
    LedgerStore(db_url).close()  # made at the head revision: no step needed
    assert _revision(db_url) == head_revision()
    assert _schema_differences(db_url) == []


def test_a_migrated_ledger_has_the_schema_the_models_declare(v0_url: str) -> None:
    migrate_database(v0_url)
    assert _schema_differences(v0_url) == []


def test_a_newer_schema_is_refused_to_write_read_and_migrate(
    db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    LedgerStore(db_url).close()
    writer = LedgerStore(db_url)
    with writer.engine.begin() as conn:
        conn.execute(sa.text(f"UPDATE {VERSION_TABLE} SET version_num = '9999'"))
    writer.close()
    newer = r"revision 9999, which this wattmesh does not know .* upgrade wattmesh"
    with pytest.raises(SchemaVersionError, match=newer):
        LedgerStore(db_url)
    with pytest.raises(SchemaVersionError, match=newer):
        LedgerStore.read_only(db_url)
    capsys.readouterr()
    assert main(["ledger", "migrate", "--db", db_url]) == 2
    assert "which this wattmesh does not know" in capsys.readouterr().err
    kid = "0" * 64
    assert main(["ledger", "verify", "--db", db_url, "--operator-key-id", kid]) == 2
    assert "upgrade wattmesh" in capsys.readouterr().err


def test_migrate_wants_an_existing_ledger(tmp_path: Path) -> None:
    missing = tmp_path / "nosuch.db"
    with pytest.raises(NoLedgerDatabase, match="no such file"):
        migrate_database(f"sqlite:///{missing}")
    assert not missing.exists()
    empty = tmp_path / "empty.db"
    empty.touch()
    with pytest.raises(NoLedgerDatabase, match="holds no ledger to migrate"):
        migrate_database(f"sqlite:///{empty}")
    assert _tables(f"sqlite:///{empty}") == set()


def _tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_two_openers_of_an_empty_database_make_the_ledger_once(db_url: str) -> None:
    """A leader and a standby starting together: the creation is serialised (PostgreSQL's
    advisory lock, SQLite's write lock); both open, one version row."""
    start = threading.Barrier(2)
    failures: list[BaseException] = []

    def open_store() -> None:
        start.wait(timeout=30)
        try:
            LedgerStore(db_url).close()
        except BaseException as exc:  # reported below
            failures.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    store = LedgerStore.read_only(db_url)
    try:
        with store.engine.connect() as conn:
            rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
    finally:
        store.close()
    assert [tuple(row) for row in rows] == [(head_revision(),)]
