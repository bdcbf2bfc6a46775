"""Check logged signed messages (parse, schema, columns, signature) inline or on workers.

``cryptography`` holds the GIL while it verifies, so threads do not help; worker
processes (``spawn``: nothing of the parent's state is inherited) take chunks of jobs
and return the first that fails, with the reason. The verifier submits while it keeps
walking the log, and asks for the first failure at the end or when it finds another
problem (the earlier position wins).
"""

from __future__ import annotations

import base64
import binascii
import multiprocessing
from collections import deque
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from functools import lru_cache
from typing import NamedTuple

from broker.errors import MessageError
from broker.keys import VerifyingKey
from broker.messages import SignedMessage
from ledger.logged import decode_logged

CHUNK = 500


class MessageJob(NamedTuple):
    """One logged reading or order and what it must match: its columns, the market, the
    DER public key registered for its agent at that point of the log."""

    idx: int
    kind: str
    agent: str | None
    agent_seq: int | None
    interval: int
    market: str
    signed: bytes
    sig_text: bytes
    key_der: bytes


Failure = tuple[int, str]
"""``(log position, problem)``."""


@lru_cache(maxsize=65_536)
def _key(der: bytes) -> VerifyingKey:
    return VerifyingKey.from_der(der)


def _decode(job: MessageJob) -> SignedMessage | str:
    try:
        signature = base64.b64decode(job.sig_text, validate=True)
    except (binascii.Error, ValueError):
        return "stored message's sig is not base64"
    try:
        return decode_logged(job.kind, job.signed, signature)
    except MessageError as exc:
        return f"stored message does not decode: {exc}"


def check_message(job: MessageJob) -> str | None:
    """The problem with one logged message, or None when it holds."""
    message = _decode(job)
    if isinstance(message, str):
        return message
    header = message.header
    if header.agent != job.agent or header.seq != job.agent_seq:
        return "entry columns do not match the signed message"
    if header.market != job.market or header.interval != job.interval:
        return "signed message belongs to another market or interval"
    key = _key(job.key_der)
    if key.kid != header.kid:
        return "signature check failed: message names another key id"
    if not key.verify(message.signature, job.signed):
        return "signature check failed: signature does not verify"
    return None


def first_bad_message(jobs: Sequence[MessageJob]) -> Failure | None:
    """The first job (in order) that fails, with its problem; None if all hold."""
    for job in jobs:
        problem = check_message(job)
        if problem is not None:
            return job.idx, problem
    return None


class MessageChecker:
    """Collects message checks; ``workers <= 1`` checks each one at once, inline."""

    def __init__(self, workers: int) -> None:
        self._pool: ProcessPoolExecutor | None = None
        if workers > 1:
            context = multiprocessing.get_context("spawn")
            self._pool = ProcessPoolExecutor(workers, mp_context=context)
        self._jobs: list[MessageJob] = []
        self._futures: deque[Future[Failure | None]] = deque()
        self._failure: Failure | None = None

    def add(self, job: MessageJob) -> Failure | None:
        """Queue one check; inline, return its failure at once (else None)."""
        if self._pool is None:
            problem = check_message(job)
            return None if problem is None else (job.idx, problem)
        self._jobs.append(job)
        if len(self._jobs) >= CHUNK:
            self._submit()
        return None

    def _submit(self) -> None:
        if self._jobs and self._pool is not None:
            self._futures.append(self._pool.submit(first_bad_message, self._jobs))
            self._jobs = []

    def first_failure(self) -> Failure | None:
        """Wait for every queued check; the earliest failure, or None."""
        self._submit()
        while self._futures:
            result = self._futures.popleft().result()
            if result is not None and (self._failure is None or result[0] < self._failure[0]):
                self._failure = result
        return self._failure

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
