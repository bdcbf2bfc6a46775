"""The ledger refuses an order above what the household's connection carries over the
interval (issue 11, finding 4): ``beyond_connection``, counted, nothing stored; one at
the bound is accepted. The limit is the registry's ``max_power_w`` or the default."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from tests.ledgerkit import MARKET, T0, TARIFF, House
from wattmesh.broker.connection import DEFAULT_MAX_POWER_W, energy_limit_wh
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import RejectionBody, Side, decode_message
from wattmesh.broker.topics import Topics
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig
from wattmesh.ledger._admission import Admission, OpenInterval
from wattmesh.ledger.keyring import KeyRing
from wattmesh.ledger.ledger import Ledger
from wattmesh.ledger.metering import MeteringConfig
from wattmesh.ledger.service import LedgerService, OperatorConfig, ledger_subscriptions
from wattmesh.ledger.store import LedgerStore

TIMEOUT_S = 10.0
LIMITS = MeteringConfig(max_power_w={"small": 3_680})  # 16 A single-phase; "big": default


def _admission(houses: dict[str, House]) -> Admission:
    ring = KeyRing()
    entries = ring.plan({a: h.key.verifying for a, h in houses.items()}, {}, interval=T0)
    for at, entry in enumerate(entries):
        ring.apply(entry.kind, entry.agent, json.loads(entry.data), at=at)
    return Admission(MARKET, ring, lambda _a, _i: False, lambda _a, _s: None, LIMITS.limit_w)


@pytest.mark.parametrize(
    ("agent", "interval_s", "bound_wh"),
    [
        ("big", 20, 96),  # 17,250 W * 20 s = 95.8 Wh, rounded up as for readings
        ("big", 900, 4_313),
        ("small", 900, 920),  # 3,680 W * 900 s = 920 Wh exactly
        ("small", 3_600, 3_680),
    ],
)
@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_admission_refuses_an_order_beyond_the_connection(
    agent: str, interval_s: int, bound_wh: int, side: Side
) -> None:
    limit_w = LIMITS.limit_w(agent)
    assert energy_limit_wh(limit_w, interval_s) == bound_wh  # the readings' formula
    houses = {a: House(a) for a in ("big", "small")}
    admission = _admission(houses)
    op = OpenInterval(T0, TARIFF, True, interval_s)
    over = decode_message(houses[agent].order(T0, side, bound_wh + 1, 200_000))
    with pytest.raises(MessageError) as info:
        admission.admit(over, agent, op, verified=None)
    assert info.value.reason is RejectReason.BEYOND_CONNECTION
    assert info.value.detail == (
        f"{bound_wh + 1} Wh is above the {bound_wh} Wh a connection of {limit_w} W "
        f"carries in {interval_s} s"
    )
    assert admission.rejections == {RejectReason.BEYOND_CONNECTION: 1}
    assert op.orders == {}
    at_bound = decode_message(houses[agent].order(T0, side, bound_wh, 200_000))
    assert admission.admit(at_bound, agent, op, verified=None) is at_bound
    assert op.orders == {agent: at_bound}


def test_the_issue_s_order_of_9_mwh_in_20_s_is_refused() -> None:
    house = House("h001")
    admission = _admission({"h001": house})
    op = OpenInterval(T0, TARIFF, True, 20)
    order = decode_message(house.order(T0, Side.BUY, 9_000_000, 270_000))
    with pytest.raises(MessageError) as info:
        admission.admit(order, "h001", op, verified=None)
    assert info.value.reason is RejectReason.BEYOND_CONNECTION


def test_the_ledger_bounds_orders_by_the_registry_limit_and_the_interval(db_url: str) -> None:
    houses = {a: House(a) for a in ("big", "small")}
    ledger = Ledger(
        LedgerStore(db_url), market_id=MARKET, operator_key=SigningKey.generate(), metering=LIMITS
    )
    ledger.register({a: h.key.verifying for a, h in houses.items()}, interval=T0)
    ledger.open_interval(T0, TARIFF, interval_s=900)
    default_wh = energy_limit_wh(DEFAULT_MAX_POWER_W, 900)
    for agent, bound_wh in (("big", default_wh), ("small", 920)):
        house = houses[agent]
        with pytest.raises(MessageError) as info:
            ledger.ingest(house.order(T0, Side.BUY, bound_wh + 1, 200_000), topic_agent=agent)
        assert info.value.reason is RejectReason.BEYOND_CONNECTION
        ledger.ingest(house.order(T0, Side.BUY, bound_wh, 200_000), topic_agent=agent)
    assert ledger.rejections == {RejectReason.BEYOND_CONNECTION: 2}
    assert ledger.open_orders == 2
    ledger.close_interval()
    ledger.store.close()


async def test_the_operator_refuses_an_order_beyond_the_connection_over_mqtt(
    mosquitto: BrokerAddress, tmp_path: Path
) -> None:
    """Through ``LedgerService.run_interval`` (which gives the ledger the interval's
    length) over Mosquitto: the household hears ``beyond_connection`` on its error
    topic, and its order at the bound is what the interval logs."""
    house = House("h001")
    topics = Topics(MARKET)
    ledger = Ledger(
        LedgerStore(f"sqlite:///{tmp_path}/ledger.db"),
        market_id=MARKET,
        operator_key=SigningKey.generate(),
    )
    ledger.register({house.agent: house.key.verifying}, interval=T0)

    def client(name: str) -> TransportConfig:
        return TransportConfig(address=mosquitto, client_id=f"{name}-bound-{id(ledger)}")

    ingest = Transport(client("ledger"), subscriptions=ledger_subscriptions(topics))
    household = Transport(
        client("h001"), subscriptions=[(topics.error("h001"), 1), (topics.announce, 1)]
    )
    service = LedgerService(
        ledger,
        OperatorConfig(topics, interval_s=20, gate_timeout_s=TIMEOUT_S),
        key=ledger.operator_key,
        transport=ingest,
    )
    async with ingest, household:
        await asyncio.wait_for(
            asyncio.gather(ingest.wait_connected(), household.wait_connected()), TIMEOUT_S
        )
        inbox = household.messages()
        running = asyncio.create_task(service.run_ingest())
        interval = asyncio.create_task(service.run_interval(T0, TARIFF))
        try:
            await asyncio.wait_for(anext(inbox), TIMEOUT_S)  # the open announcement
            await household.publish(topics.reading("h001"), house.reading(T0), qos=1)
            over = house.order(T0, Side.BUY, 97, 200_000, expires=T0 + 20)
            await household.publish(topics.order("h001"), over, qos=1)
            rejection = decode_message((await asyncio.wait_for(anext(inbox), TIMEOUT_S)).payload)
            assert isinstance(rejection.body, RejectionBody)
            assert rejection.body.reason is RejectReason.BEYOND_CONNECTION
            assert rejection.body.ref == decode_message(over).message_id
            at_bound = house.order(T0, Side.BUY, 96, 200_000, expires=T0 + 20)
            await household.publish(topics.order("h001"), at_bound, qos=1)
            outcome = await asyncio.wait_for(interval, TIMEOUT_S)
        finally:
            interval.cancel()
            running.cancel()
            await asyncio.gather(interval, running, return_exceptions=True)
    assert outcome.orders == 1
    assert ledger.rejections == {RejectReason.BEYOND_CONNECTION: 1}
    ledger.store.close()
