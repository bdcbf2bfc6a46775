"""A PostgreSQL database for a benchmark: a fresh database on ``WATTMESH_TEST_PG_URL``
if set (e.g. the machine's ``postgresql://postgres@127.0.0.1:5432/postgres``), else on a
private server started with pgserver, as ``tests/conftest.py`` does."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

PG_ENV = "WATTMESH_TEST_PG_URL"


@contextlib.contextmanager
def pg_server() -> Iterator[tuple[str, str]]:
    """``(server URL, description)`` for the duration of the block."""
    url = os.environ.get(PG_ENV)
    if url:
        yield url, f"PostgreSQL from {PG_ENV}"
        return
    runtime = Path(tempfile.mkdtemp(prefix="wattmesh-xdg-"))
    runtime.chmod(0o700)
    os.environ.setdefault("XDG_RUNTIME_DIR", str(runtime))
    import pgserver

    datadir = Path(tempfile.mkdtemp(prefix="wattmesh-bench-pg-"))
    server = pgserver.get_server(datadir, cleanup_mode="stop")
    try:
        yield str(server.get_uri()), "private PostgreSQL (pgserver, Unix socket)"
    finally:
        server.cleanup()
        shutil.rmtree(datadir, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)


@contextlib.contextmanager
def pg_database(server_url: str) -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards."""
    import psycopg

    name = f"wattmesh_bench_{uuid.uuid4().hex[:12]}"
    admin = server_url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
