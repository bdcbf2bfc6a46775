"""The first, state-free step of a batch ingest: decode payloads and list the signature
checks they need (:meth:`ledger.ledger.Ledger.ingest_many`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from broker.errors import MessageError
from broker.keys import VerifyingKey
from broker.messages import SignedMessage, decode_message
from ledger.sigcheck import SignatureJob


@dataclass(frozen=True)
class PreparedBatch:
    """Decoded payloads of a batch, in arrival order, and the signature checks they need;
    ``keys`` pairs each job with (position in the batch, the key it checks against)."""

    items: tuple[tuple[bytes, str | None], ...]
    decoded: tuple[SignedMessage | MessageError, ...]
    jobs: tuple[SignatureJob, ...]
    keys: tuple[tuple[int, VerifyingKey], ...]


def prepare_batch(
    items: Sequence[tuple[bytes, str | None]],
    keys: Mapping[str, VerifyingKey],
    ders: Mapping[str, bytes],
) -> PreparedBatch:
    """Decode each ``(payload, topic_agent)``; a job for every message whose agent has a
    registered key with the key id it names. ``ders``: the DER encoding of each agent's
    key in ``keys`` (the key ring keeps both). Changes nothing; the jobs may then run
    anywhere (another thread, worker processes)."""
    decoded: list[SignedMessage | MessageError] = []
    jobs: list[SignatureJob] = []
    job_keys: list[tuple[int, VerifyingKey]] = []
    for payload, _agent in items:
        try:
            message = decode_message(payload)
        except MessageError as exc:
            decoded.append(exc)
            continue
        key = keys.get(message.header.agent)
        if key is not None and key.kid == message.header.kid:
            jobs.append((ders[message.header.agent], message.signature, message.signed_bytes))
            job_keys.append((len(decoded), key))
        decoded.append(message)
    return PreparedBatch(tuple(items), tuple(decoded), tuple(jobs), tuple(job_keys))
