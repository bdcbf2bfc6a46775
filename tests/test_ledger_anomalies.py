"""The forecaster's anomaly flags in the ledger: taken only under its key, re-checked by verify."""

from __future__ import annotations

import json

import pytest

from wattmesh.agents._audit import entry_parties
from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import AnomalyBody, Signer
from wattmesh.broker.topics import Topics
from wattmesh.ledger.anomalies import anomaly_entry, anomaly_problem, take_anomaly

T0 = 1_748_822_400
BODY = AnomalyBody(
    agent="h001",
    anomaly="night_export",
    interval=T0 + 3600,
    reason="exported 600 Wh over 4 interval(s) while clear-sky PV is 0",
    score_milli=1000,
    window_start=T0 + 3600,
    window_end=T0 + 7200,
)


def _wire(key: SigningKey, *, agent: str = "forecaster", market: str = "m1") -> bytes:
    message = Signer(key, market, agent).sign(
        BODY, interval=BODY.interval, seq=1, expires=T0 + 10**6
    )
    return message.to_wire()


def test_taken_only_from_the_forecaster_under_its_key() -> None:
    forecaster, other = SigningKey.generate(), SigningKey.generate()
    key = forecaster.verifying
    taken = take_anomaly(_wire(forecaster), agent="h001", market_id="m1", key=key)
    assert taken.body == BODY
    cases = [
        (_wire(other), "h001", key, RejectReason.KEY_MISMATCH),  # another key id
        (_wire(forecaster, agent="h001"), "h001", key, RejectReason.KEY_MISMATCH),
        (_wire(forecaster, market="m2"), "h001", key, RejectReason.WRONG_MARKET),
        (_wire(forecaster), "h002", key, RejectReason.KEY_MISMATCH),  # topic: another household
        (_wire(forecaster), "h001", None, RejectReason.UNKNOWN_KEY),  # no forecaster_key_file
        (b"{}", "h001", key, RejectReason.SCHEMA),
    ]
    for wire, agent, k, reason in cases:
        with pytest.raises(MessageError) as caught:
            take_anomaly(wire, agent=agent, market_id="m1", key=k)
        assert caught.value.reason is reason
    assert Topics("m1").anomaly("h001") == "wattmesh/m1/household/h001/anomaly"
    assert Topics("m1").classify(Topics("m1").anomaly("h001")) == ("h001", "anomaly")


def test_the_logged_entry_verifies_and_tampering_is_caught() -> None:
    forecaster = SigningKey.generate()
    message = take_anomaly(
        _wire(forecaster), agent="h001", market_id="m1", key=forecaster.verifying
    )
    entry = anomaly_entry(message, forecaster.verifying)
    assert (entry.kind, entry.agent, entry.interval, entry.agent_seq) == (
        "anomaly", "h001", BODY.interval, None,
    )  # fmt: skip
    assert anomaly_problem("m1", "h001", entry.interval, entry.data) is None
    assert entry_parties(entry.data) == {"h001"}  # the household's audit sees it as its own
    assert anomaly_problem("m2", "h001", entry.interval, entry.data) is not None
    assert anomaly_problem("m1", "h002", entry.interval, entry.data) is not None
    assert anomaly_problem("m1", "h001", entry.interval + 900, entry.data) is not None
    obj = json.loads(entry.data)
    obj["signed"]["body"]["score_milli"] = 10
    forged = json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()
    assert "bad_signature" in str(anomaly_problem("m1", "h001", entry.interval, forged))
    assert anomaly_problem("m1", "h001", entry.interval, b"[]") == "anomaly entry is malformed"


def test_the_body_is_checked() -> None:
    with pytest.raises(MessageError):
        AnomalyBody.from_json({**BODY.to_json(), "score_milli": 1001})
    with pytest.raises(MessageError):
        AnomalyBody.from_json({**BODY.to_json(), "anomaly": "ghost"})
    with pytest.raises(MessageError):
        AnomalyBody.from_json({**BODY.to_json(), "interval": T0})  # outside the window
    assert AnomalyBody.from_json(BODY.to_json()) == BODY


def test_the_dashboard_folds_it_with_source_forecaster() -> None:
    from wattmesh.dashboard._fold import fold

    forecaster = SigningKey.generate()
    message = take_anomaly(
        _wire(forecaster), agent="h001", market_id="m1", key=forecaster.verifying
    )
    entry = anomaly_entry(message, forecaster.verifying)
    changes = fold([(41, entry.interval, json.loads(entry.data))], rows={}, stats={}, keys={})
    assert changes.anomalies == [
        {
            "household": "h001",
            "interval": BODY.interval,
            "kind": "night_export",
            "detail": json.dumps(
                {
                    "idx": 41,
                    "reason": BODY.reason,
                    "score_milli": 1000,
                    "window_end": BODY.window_end,
                    "window_start": BODY.window_start,
                }
            ),
            "source": "forecaster",
        }
    ]
