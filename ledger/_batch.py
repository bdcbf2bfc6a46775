"""The state-free steps of a batch ingest: each message's key, and the decoded batch.

Used by :meth:`ledger.ledger.Ledger.ingest_many` and the service's pipeline.

Decoding a message and checking its signature need nothing of the ledger's state but
the key, so both run wherever the caller likes (worker processes,
:meth:`ledger.sigcheck.SignatureVerifier.submit_decode`): each job is the payload and
the key registered for the household whose topic it came on. The ledger then admits the
decoded messages in arrival order (:meth:`ledger._admission.Admission.admit_batch`),
checking again inline whatever the worker could not vouch for.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from wattmesh.broker.errors import MessageError
from wattmesh.broker.keys import VerifyingKey
from wattmesh.broker.messages import SignedMessage
from wattmesh.ledger.sigcheck import Checked, DecodeJob


@dataclass(frozen=True)
class DecodeJobs:
    """A batch as received, its jobs, and the key each job's DER stands for."""

    items: tuple[tuple[bytes, str | None], ...]
    jobs: tuple[DecodeJob, ...]
    keys: tuple[VerifyingKey | None, ...]


@dataclass(frozen=True)
class PreparedBatch:
    """Decoded payloads of a batch, in arrival order, and for each position whose
    signature verified, the key it verified against."""

    items: tuple[tuple[bytes, str | None], ...]
    decoded: tuple[SignedMessage | MessageError, ...]
    verified: Mapping[int, VerifyingKey]


def decode_jobs(
    items: Sequence[tuple[bytes, str | None]],
    keys: Mapping[str, VerifyingKey],
    ders: Mapping[str, bytes],
) -> DecodeJobs:
    """A job per ``(payload, topic_agent)``: the payload and the DER of the key
    registered for ``topic_agent`` (None when there is none). ``ders``: the DER of each
    key in ``keys`` (the key ring keeps both)."""
    jobs: list[DecodeJob] = []
    used: list[VerifyingKey | None] = []
    for payload, agent in items:
        key = None if agent is None else keys.get(agent)
        jobs.append((payload, None if key is None or agent is None else ders[agent]))
        used.append(key)
    return DecodeJobs(tuple(items), tuple(jobs), tuple(used))


def prepared(batch: DecodeJobs, checked: Sequence[Checked]) -> PreparedBatch:
    """The batch with the results of its jobs (one per job, in order)."""
    if len(checked) != len(batch.jobs):
        raise ValueError("one result per job")
    verified: dict[int, VerifyingKey] = {}
    for i, ((_message, ok), key) in enumerate(zip(checked, batch.keys, strict=True)):
        if ok and key is not None:
            verified[i] = key
    return PreparedBatch(batch.items, tuple(message for message, _ok in checked), verified)
