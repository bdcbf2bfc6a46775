"""Fuzz the ledger's ingest path: random and mutated messages never crash it and never
leave anything in the log; only the households' genuine messages are ever stored.

A hypothesis state machine drives one ledger (a fresh SQLite file or PostgreSQL
database per run) through an open interval, feeding genuine messages, redeliveries,
byte mutations and JSON mutations in any order, then closes the interval and checks
the log.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from tests.conftest import _with_database
from tests.ledgerkit import T0, TARIFF, House, new_ledger
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import Side, decode_message
from wattmesh.ledger.entries import EntryKind
from wattmesh.ledger.ledger import RedeliveredError
from wattmesh.ledger.verify import verify_ledger

OPERATOR = SigningKey.generate()
HOUSES = [House(f"h00{i}") for i in (1, 2, 3)]
# Genuine messages for the open interval: each house's reading and order.
GENUINE = [
    payload
    for house in HOUSES
    for payload in (
        house.reading(T0),
        house.order(T0, Side.BUY if house.agent != "h002" else Side.SELL, 250, 150_000),
    )
]
GENUINE_IDS = {decode_message(p).message_id for p in GENUINE}

_JSON_LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),
    st.text(st.characters(codec=None, exclude_categories=()), max_size=10),
)


@st.composite
def byte_mutants(draw: st.DrawFn) -> bytes:
    data = bytearray(draw(st.sampled_from(GENUINE)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete"]))
        if op == "flip":
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=4))
        else:
            del data[at : at + draw(st.integers(1, 8))]
        if not data:
            break
    return bytes(data)


def _paths(obj: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [path] if path else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += _paths(value, (*path, key))
    return found


@st.composite
def json_mutants(draw: st.DrawFn) -> bytes:
    obj = json.loads(draw(st.sampled_from(GENUINE)))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(obj)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = obj
        for key in path[:-1]:
            parent = parent[key]
        op = draw(st.sampled_from(["replace", "nudge", "delete", "add"]))
        value = parent[path[-1]]
        if op == "replace":
            parent[path[-1]] = draw(_JSON_LEAVES)
        elif op == "nudge" and isinstance(value, int) and not isinstance(value, bool):
            parent[path[-1]] = value + draw(st.sampled_from([-1, 1]))
        elif op == "delete":
            del parent[path[-1]]
        else:
            parent[draw(st.text(max_size=6))] = draw(_JSON_LEAVES)
    # Key order and escaping vary too: a re-serialised genuine message is still genuine.
    text = json.dumps(obj, ensure_ascii=draw(st.booleans()), sort_keys=draw(st.booleans()))
    return text.encode("utf-8", "surrogatepass")


PAYLOADS = st.one_of(
    st.sampled_from(GENUINE),
    byte_mutants(),
    json_mutants(),
    st.binary(max_size=300),
)


class IngestMachine(RuleBasedStateMachine):
    new_database: Any = None  # set by the test: () -> (url, cleanup)

    @initialize()
    def open_ledger(self) -> None:
        self.url, self.cleanup = self.new_database()
        self.ledger = new_ledger(self.url, OPERATOR, HOUSES)
        self.ledger.open_interval(T0, TARIFF)
        self.size = self.ledger.size
        self.accepted: set[str] = set()
        self.rejected = 0
        self.redelivered = 0

    @rule(payload=PAYLOADS)
    def ingest(self, payload: bytes) -> None:
        missing = self.ledger.missing()
        reason: RejectReason | None = None
        redelivered = False
        try:
            message = self.ledger.ingest(payload)
        except RedeliveredError:
            redelivered = True
        except MessageError as exc:
            reason = exc.reason
        if redelivered:  # acknowledged, not stored again, and only for what was taken
            assert decode_message(payload).message_id in self.accepted
            assert self.ledger.missing() == missing
            self.redelivered += 1
            return
        if reason is not None:
            assert reason in set(RejectReason)
            assert self.ledger.missing() == missing  # nothing of it was taken
            self.rejected += 1
            return
        # Only a genuine message can carry a valid signature, and each is taken once.
        assert message.message_id in GENUINE_IDS
        assert message.message_id not in self.accepted
        self.accepted.add(message.message_id)

    @invariant()
    def nothing_is_logged_before_gate_closure(self) -> None:
        if hasattr(self, "ledger"):
            assert self.ledger.size == self.size
            assert sum(self.ledger.rejections.values()) == self.rejected
            assert self.ledger.redeliveries == self.redelivered

    def teardown(self) -> None:
        if not hasattr(self, "ledger"):
            return
        try:
            self.ledger.close_interval()
            report = verify_ledger(self.ledger.store, self.ledger.operator_key.verifying)
            assert report.ok, report.problem
            stored = set()
            for entry in self.ledger.store.iter_entries():
                if entry.kind in (EntryKind.READING, EntryKind.ORDER):
                    obj = json.loads(entry.data)
                    wire = json.dumps({"signed": obj["signed"], "sig": obj["sig"]}).encode()
                    stored.add(decode_message(wire).message_id)
            assert stored == self.accepted
        finally:
            self.ledger.store.close()
            self.cleanup()


_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _sqlite_databases() -> tuple[str, Any]:
    tmp = tempfile.TemporaryDirectory()
    return f"sqlite:///{Path(tmp.name) / 'ledger.db'}", tmp.cleanup


def test_ingest_fuzz_on_sqlite() -> None:
    IngestMachine.new_database = staticmethod(_sqlite_databases)
    IngestMachine.TestCase.settings = _SETTINGS
    IngestMachine.TestCase().runTest()


@pytest.mark.postgres
def test_ingest_fuzz_on_postgresql(pg_server_url: str) -> None:
    import psycopg

    admin = pg_server_url.replace("postgresql+psycopg://", "postgresql://")

    def new_database() -> tuple[str, Any]:
        name = f"wattmesh_fuzz_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

        def drop() -> None:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

        return _with_database(pg_server_url, name), drop

    IngestMachine.new_database = staticmethod(new_database)
    IngestMachine.TestCase.settings = settings(_SETTINGS, max_examples=12)  # a database per run
    IngestMachine.TestCase().runTest()
