"""``LedgerService.run_ingest`` over a real Mosquitto, verifying on worker processes,
from the transport or from a ``Subscriber`` on its own connection: the same acceptances,
rejections (sent on the error topic) and log as verifying inline (each decision is
:meth:`Ledger.ingest`'s one by one: tests/test_ledger_batch.py)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

from tests.ledgerkit import T0, TARIFF, House, new_ledger
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import RejectionBody, Side, decode_message
from wattmesh.broker.subscriber import Subscriber
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.sigcheck import PoolVerifier

TIMEOUT_S = 20.0


def _bad_signature(wire: bytes) -> bytes:
    at = wire.index(b'"sig":"') + 12
    return wire[:at] + (b"A" if wire[at : at + 1] != b"A" else b"B") + wire[at + 1 :]


MODES = ("inline", "batched", "batched-subscriber")


async def _run(
    broker: BrokerAddress, db: str, market: str, payloads: list[tuple[str, bytes]], *, mode: str
) -> tuple[Ledger, list[tuple[str, str]]]:
    topics = Topics(market)
    ledger = new_ledger(db, SigningKey.generate(), HOUSES, market=market)
    ledger.open_interval(T0, TARIFF)
    tag = f"{market}-{mode}"
    batched = mode != "inline"
    own = mode == "batched-subscriber"  # ingest on its own connection; transport publishes
    ingest = Transport(
        TransportConfig(address=broker, client_id=f"ledger-{tag}"),
        subscriptions=[] if own else ledger_subscriptions(topics),
    )
    subscriber = Subscriber(
        TransportConfig(address=broker, client_id=f"ingest-{tag}"), ledger_subscriptions(topics)
    )
    errors = Transport(
        TransportConfig(address=broker, client_id=f"errors-{tag}"),
        subscriptions=[(f"{topics.root}/household/+/error", 1)],
    )
    service = LedgerService(
        ledger, OperatorConfig(topics), key=ledger.operator_key, transport=ingest
    )
    pool = PoolVerifier(2, min_batch=1) if batched else None
    rejections: list[tuple[str, str]] = []
    try:
        async with ingest, errors, subscriber:
            await asyncio.wait_for(
                asyncio.gather(
                    ingest.wait_connected(), errors.wait_connected(), subscriber.wait_connected()
                ),
                TIMEOUT_S,
            )
            source = subscriber if own else None
            running = asyncio.create_task(service.run_ingest(pool, source=source))
            for agent, payload in payloads:
                await errors.publish(topics.order(agent), payload, qos=1)
            await service.wait_until(
                lambda: ledger.open_orders == len(HOUSES) and sum(ledger.rejections.values()) == 3,
                TIMEOUT_S,
            )
            inbox = errors.messages()
            for _ in range(3):
                body = decode_message(
                    (await asyncio.wait_for(anext(inbox), TIMEOUT_S)).payload
                ).body
                assert isinstance(body, RejectionBody)
                rejections.append((body.ref, body.reason.value))
            await (subscriber.close() if own else ingest.aclose())
            await asyncio.wait_for(running, TIMEOUT_S)
    finally:
        if pool is not None:
            pool.close()
    return ledger, sorted(rejections)


HOUSES = [House(f"h{i}") for i in range(3)]


async def test_batched_ingest_over_mqtt_matches_one_by_one(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    market = f"m{uuid.uuid4().hex[:8]}"
    payloads: list[tuple[str, bytes]] = []
    for n, house in enumerate(HOUSES):
        house.seq = 0
        payloads.append(
            (house.agent, house.order(T0, Side.BUY if n else Side.SELL, 100, 90_000, market=market))
        )
    a, b = HOUSES[0], HOUSES[1]
    payloads += [
        (a.agent, _bad_signature(a.order(T0, Side.SELL, 5, 1, market=market))),
        (a.agent, a.order(T0, Side.SELL, 5, 1, market=market, seq=1)),  # replayed seq
        (b.agent, a.order(T0, Side.SELL, 5, 1, market=market)),  # on another's topic
    ]
    results = []
    for mode in MODES:
        ledger, rejections = await _run(
            mosquitto, f"sqlite:///{tmp_path / f'{mode}.db'}", market, payloads, mode=mode
        )
        outcome = ledger.close_interval()
        results.append((outcome.orders, rejections, dict(ledger.rejections), ledger.root))
        ledger.store.close()
    assert results[0] == results[1] == results[2]
    assert results[1][0] == len(HOUSES)
    assert {reason for _ref, reason in results[1][1]} == {"bad_signature", "replay", "key_mismatch"}
