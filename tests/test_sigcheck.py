"""Batch signature verifiers (ledger/sigcheck.py): real P-256 signatures, inline and on
worker processes that load the registered keys as they start; verdicts in job order;
payloads decoded and verified on the workers exactly as inline."""

from __future__ import annotations

from broker.errors import MessageError, RejectReason
from broker.keys import SigningKey
from broker.messages import OrderBody, Side, sign_message
from ledger.sigcheck import Checked, DecodeJob, InlineVerifier, PoolVerifier, SignatureJob


def _jobs(count: int, bad: set[int]) -> tuple[list[SignatureJob], list[bool], list[bytes]]:
    keys = [SigningKey.generate() for _ in range(3)]
    jobs: list[SignatureJob] = []
    for n in range(count):
        key = keys[n % 3]
        data = b"message %d" % n
        signed = data if n not in bad else b"another message"
        jobs.append((key.verifying.der(), key.sign(signed), data))
    return jobs, [n not in bad for n in range(count)], [k.verifying.der() for k in keys]


def test_a_pool_splits_a_batch_over_its_workers_and_keeps_the_order() -> None:
    jobs, expected, ders = _jobs(300, {10, 149, 150, 299})
    pool = PoolVerifier(2, min_batch=64, keys=ders)
    try:
        pool.warm_up()  # every worker started and holding the keys
        assert pool.submit(jobs).result(timeout=60) == expected
        assert pool.verify_all(jobs) == expected
        small = jobs[:5]  # below min_batch: checked inline, already done
        future = pool.submit(small)
        assert future.done() and future.result() == expected[:5]
    finally:
        pool.close()
    assert InlineVerifier().submit(jobs).result() == expected


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
        pooled = pool.submit_decode(jobs).result(timeout=60)
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
