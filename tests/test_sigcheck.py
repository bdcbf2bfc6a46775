"""Batch decoding and signature checks (ledger/sigcheck.py): real P-256 signatures,
inline and on worker processes that load the registered keys as they start; results in
job order, a batch split over the workers decided exactly as inline."""

from __future__ import annotations

from wattmesh.broker.errors import MessageError, RejectReason
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, Side, sign_message
from wattmesh.ledger.sigcheck import Checked, DecodeJob, InlineVerifier, PoolVerifier


def _decode_jobs() -> tuple[list[DecodeJob], list[object], list[bytes]]:
    """Orders of three households with, for each, the job's key and what must come back:
    True (verified), False (decoded, not verified: bad signature, another household's
    key, no key), or the reason it does not decode."""
    keys = {f"h{i}": SigningKey.generate() for i in range(3)}
    jobs: list[DecodeJob] = []
    expected: list[object] = []
    for n in range(120):
        agent = f"h{n % 3}"
        key = keys[agent]
        message = sign_message(
            key,
            OrderBody(Side.BUY, 100 + n, 200_000),
            market="m",
            interval=900,
            agent=agent,
            seq=n + 1,
            expires=1800,
        )
        wire, der, outcome = message.to_wire(), key.verifying.der(), True
        if n % 7 == 1:
            wire = wire.replace(b'"quantity_wh":', b'"quantity_wh":-')
            outcome = RejectReason.OUT_OF_BOUNDS
        elif n % 7 == 2:
            der, outcome = keys[f"h{(n + 1) % 3}"].verifying.der(), False
        elif n % 7 == 3:
            der, outcome = None, False
        elif n % 7 == 4:
            other = sign_message(
                key,
                OrderBody(Side.BUY, 1, 1),
                market="m",
                interval=900,
                agent=agent,
                seq=n + 1,
                expires=1800,
            )
            wire = (
                wire[: wire.index(b'"sig":')] + other.to_wire()[other.to_wire().index(b'"sig":') :]
            )
            outcome = False
        elif n % 7 == 5:
            wire, outcome = b"{not json", RejectReason.MALFORMED_JSON
        jobs.append((wire, der))
        expected.append(outcome)
    return jobs, expected, [k.verifying.der() for k in keys.values()]


def _outcomes(results: list[Checked]) -> list[object]:
    return [message.reason if isinstance(message, MessageError) else ok for message, ok in results]


def test_workers_decode_and_verify_as_inline_and_keep_the_order() -> None:
    jobs, expected, ders = _decode_jobs()
    inline = InlineVerifier().submit_decode(jobs).result()
    assert _outcomes(inline) == expected
    pool = PoolVerifier(2, min_batch=64, keys=ders)
    try:
        pool.warm_up()  # every worker started and holding the keys
        pooled = pool.submit_decode(jobs).result(timeout=60)  # split over the workers
        small = pool.submit_decode(jobs[:5])  # below min_batch: checked inline, already done
        assert small.done() and _outcomes(small.result()) == expected[:5]
    finally:
        pool.close()
    assert _outcomes(pooled) == expected
    for (ours, _), (theirs, _) in zip(inline, pooled, strict=True):
        if isinstance(ours, MessageError):  # errors come back whole from a worker
            assert isinstance(theirs, MessageError)
            assert (type(theirs), theirs.reason, theirs.detail) == (
                type(ours),
                ours.reason,
                ours.detail,
            )
        else:
            assert theirs == ours
