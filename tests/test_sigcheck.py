"""Batch signature verifiers (ledger/sigcheck.py): real P-256 signatures, inline and on
worker processes that load the registered keys as they start; verdicts in job order."""

from __future__ import annotations

from broker.keys import SigningKey
from ledger.sigcheck import InlineVerifier, PoolVerifier, SignatureJob


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
