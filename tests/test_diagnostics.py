"""When the agent reports its diagnostics, and how a report goes out (agents/_diagnostics.py).

The schedule is pure; the sender publishes to a real Mosquitto.
"""

from __future__ import annotations

import asyncio
import json
import uuid

from wattmesh.agents._diagnostics import DiagnosticsSender, ReportSchedule, Verdict
from wattmesh.broker.transport import BrokerAddress, Transport, TransportConfig

TIMEOUT_S = 10.0
FINE = Verdict(clock_ok=True, outbox_dropped=0, alarms=0)


def test_the_first_report_is_due_then_one_per_interval_unless_the_verdict_changes() -> None:
    schedule = ReportSchedule(60.0)
    assert schedule.due(100.0, FINE)
    assert not schedule.due(100.0, FINE)
    assert not schedule.due(159.9, FINE)
    assert schedule.due(160.0, FINE)  # one interval after the last report
    assert (schedule.reported_at_s, schedule.reported) == (160.0, FINE)
    assert not schedule.due(161.0, FINE)


def test_a_changed_verdict_is_due_at_once() -> None:
    schedule = ReportSchedule(3600.0)
    assert schedule.due(0.0, FINE)
    for changed in (
        FINE._replace(clock_ok=False),
        FINE._replace(clock_ok=False, outbox_dropped=1),
        FINE._replace(clock_ok=False, outbox_dropped=1, alarms=1),
        FINE,
    ):
        assert schedule.due(1.0, changed)
        assert not schedule.due(2.0, changed)
    assert schedule.reported_at_s == 1.0  # a report not due is not counted as made


async def test_a_report_asked_for_while_one_is_on_its_way_goes_out_after_it(
    mosquitto: BrokerAddress,
) -> None:
    tag = uuid.uuid4().hex[:8]
    topic = f"test/{tag}/diagnostics"
    watch = Transport(
        TransportConfig(address=mosquitto, client_id=f"watch-{tag}"), subscriptions=[(topic, 1)]
    )
    async with watch, Transport(TransportConfig(address=mosquitto, client_id=f"agent-{tag}")) as t:
        await asyncio.wait_for(watch.wait_connected(), TIMEOUT_S)
        inbox = watch.messages()
        builds = 0

        def build() -> dict[str, object]:
            nonlocal builds
            builds += 1
            if builds == 1:
                sender.send()  # something changed while this report is on its way
            return {"report": builds}

        sender = DiagnosticsSender(t, topic, build)
        sender.send()
        sender.send()  # before the first is built: that one reports it
        received = [json.loads((await asyncio.wait_for(anext(inbox), TIMEOUT_S)).payload)]
        received.append(json.loads((await asyncio.wait_for(anext(inbox), TIMEOUT_S)).payload))
        assert received == [{"report": 1}, {"report": 2}]
        await sender.stop()
        await t.publish(topic, b"", qos=1, retain=True)  # leave no retained report behind
