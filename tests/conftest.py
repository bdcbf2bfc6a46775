"""Shared pytest fixtures."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import pytest_asyncio

from tests.ledgerkit import House, households
from wattmesh.broker.embedded import embedded_broker
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.mosquitto import MosquittoProcess, find_mosquitto
from wattmesh.broker.transport import BrokerAddress

# ============================================================================
# MQTT brokers
#
# ``mosquitto``     one private Mosquitto per test session (own process, free port).
# ``amqtt_broker``  an embedded amqtt broker per test: it runs on the test's own
#                   event loop, so it cannot outlive a function-scoped loop.
# ``broker``        parametrised over both (ids "mosquitto", "amqtt").
# Tests that kill/restart a broker must use their own MosquittoProcess.
# ============================================================================


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[BrokerAddress]:
    """Address of a private Mosquitto shared by the whole session."""
    if find_mosquitto() is None:
        pytest.fail("mosquitto not found: apt-get install mosquitto", pytrace=False)
    process = MosquittoProcess(tmp_path_factory.mktemp("mosquitto"))
    await process.start()
    try:
        yield process.address
    finally:
        await process.stop()


@pytest_asyncio.fixture
async def amqtt_broker() -> AsyncIterator[BrokerAddress]:
    """Address of an embedded amqtt broker running on the test's event loop."""
    async with embedded_broker() as address:
        yield address


@pytest.fixture(params=["mosquitto", "amqtt"])
def broker(request: pytest.FixtureRequest) -> BrokerAddress:
    """A broker address, once per broker kind."""
    kind: str = request.param
    fixture_name = "mosquitto" if kind == "mosquitto" else "amqtt_broker"
    address: BrokerAddress = request.getfixturevalue(fixture_name)
    return address


# ============================================================================
# end of MQTT brokers
# ============================================================================


# ============================================================================
# Databases
#
# ``pg_server_url``  a PostgreSQL server for the session: WATTMESH_TEST_PG_URL if set
#                    (e.g. postgresql://postgres@127.0.0.1:5432/postgres), otherwise a
#                    private server started with pgserver (it ships its own binaries and,
#                    unlike initdb, runs as root).
# ``pg_url``         a fresh, empty database on that server for one test.
# ``db_url``         parametrised: a SQLite file and a PostgreSQL database.
# ============================================================================

PG_ENV = "WATTMESH_TEST_PG_URL"


@pytest.fixture(scope="session")
def pg_server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = os.environ.get(PG_ENV)
    if url:
        yield url
        return
    try:
        runtime = tmp_path_factory.mktemp("xdg-runtime")
        runtime.chmod(0o700)
        os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
        import pgserver
    except ImportError:
        pytest.skip(f"no PostgreSQL: install pgserver or set {PG_ENV}")
    # Outside pytest's basetemp: pgserver runs PostgreSQL as its own user, and pytest
    # prunes old basetemp folders (another pytest run may remove them under us).
    datadir = Path(tempfile.mkdtemp(prefix="wattmesh-pg-"))
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    import psycopg

    name = f"wattmesh_test_{uuid.uuid4().hex[:12]}"
    admin = pg_server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield _with_database(pg_server_url, name)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


# ============================================================================
# end of databases
# ============================================================================


# ============================================================================
# Ledger tests (builders in tests/ledgerkit.py)
#
# ``operator``  a fresh operator signing key.
# ``houses``    households h001, h002, h003, each with a fresh key, by id.
# ============================================================================


@pytest.fixture
def operator() -> SigningKey:
    return SigningKey.generate()


@pytest.fixture
def houses() -> dict[str, House]:
    return households("h001", "h002", "h003")
