"""The operator's responses (``ledger/_responder.py``): per-household token buckets and
first-of-interval log keys on an injected clock, the bounded queue that never makes
the ingest wait, and reading what a response refers to (audit requests, rejected
payloads)."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import OrderBody, Side, decode_message, sign_message
from wattmesh.ledger._responder import (
    MAX_AUDIT_REQUEST_BYTES,
    RESPONSE_BURST,
    Build,
    FirstPerInterval,
    Responder,
    TokenBuckets,
    audit_from_size,
    rejection_reference,
)


def test_a_bucket_gives_its_burst_then_one_token_per_refill_period() -> None:
    buckets = TokenBuckets(capacity=3, refill_per_s=0.5)
    assert [buckets.take("h1", 100.0) for _ in range(4)] == [True, True, True, False]
    assert not buckets.take("h1", 101.9)  # 0.95 of a token
    assert buckets.take("h1", 102.0)  # two seconds: one token
    assert not buckets.take("h1", 102.0)


def test_refused_takes_do_not_postpone_the_refill() -> None:
    buckets = TokenBuckets(capacity=1, refill_per_s=1.0)
    assert buckets.take("h1", 0.0)
    for at in (0.25, 0.5, 0.75):  # a flood while empty: the partial token is kept
        assert not buckets.take("h1", at)
    assert buckets.take("h1", 1.0)


def test_a_bucket_holds_no_more_than_its_capacity_and_households_are_apart() -> None:
    buckets = TokenBuckets(capacity=2, refill_per_s=1.0)
    assert buckets.take("h1", 0.0)
    assert buckets.take("h1", 0.0)
    assert not buckets.take("h1", 0.0)
    assert buckets.take("h2", 0.0)  # another household's bucket is full
    # A day idle refills two tokens, not 86,400.
    assert [buckets.take("h1", 86_400.0) for _ in range(3)] == [True, True, False]
    assert not buckets.take("h1", 85_000.0)  # a clock that went back gives nothing


def test_first_per_interval_is_once_per_key_and_bounded() -> None:
    seen = FirstPerInterval(max_keys=2)
    assert seen.first(("h1", "schema"), 900)
    assert not seen.first(("h1", "schema"), 900)
    assert seen.first(("h1", "late"), 900)
    assert not seen.first(("h2", "schema"), 900)  # the interval's keys are used up
    assert seen.first(("h1", "schema"), 1800)  # a new interval starts afresh
    assert seen.first(("h2", "schema"), 1800)


class Clock:
    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


async def test_allowed_counts_what_the_buckets_refuse() -> None:
    clock = Clock()
    responder = Responder(clock=clock)
    assert all(responder.allowed("h1") for _ in range(RESPONSE_BURST))
    assert not responder.allowed("h1")
    assert not responder.allowed("h1")
    assert responder.counts.limited == 2
    clock.now_s = 1.0
    assert responder.allowed("h1")
    assert responder.counts.limited == 2


async def test_offer_never_waits_and_a_full_queue_drops_and_counts() -> None:
    responder = Responder(queue_size=2, window=8)
    release = asyncio.Event()
    sent: list[int] = []

    async def send(n: int) -> None:
        await release.wait()
        sent.append(n)

    def build(n: int) -> Build:
        return lambda: send(n)

    # Not running: nothing drains the queue; the third offer is dropped at once.
    assert responder.offer(build(1))
    assert responder.offer(build(2))
    assert not responder.offer(build(3))
    assert (responder.counts.dropped, responder.queued) == (1, 2)

    async with responder.running():
        release.set()
        await asyncio.wait_for(responder.drained(), 5)
    assert sorted(sent) == [1, 2]
    assert responder.counts.as_tuple() == (2, 0, 1, 0)


async def test_a_response_that_fails_to_build_or_send_is_counted_and_the_rest_go() -> None:
    responder = Responder()
    done = asyncio.Event()

    def broken() -> None:
        raise RuntimeError("the store went away")

    async def refused() -> None:
        raise ConnectionError("transport closed")

    async def fine() -> None:
        done.set()

    async with responder.running():
        responder.offer(broken)
        responder.offer(refused)
        responder.offer(lambda: None)  # nothing to send after all
        responder.offer(fine)
        await asyncio.wait_for(responder.drained(), 5)
    assert done.is_set()
    assert responder.counts.as_tuple() == (1, 0, 2, 0)


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"from_size": 12}', 12),
        (b'{"from_size": 0}', 0),  # in range or not is the service's to judge
        (b'{"from_size": true}', None),  # a bool is no size
        (b'{"from_size": 1.5}', None),
        (b'{"from_size": "3"}', None),
        (b'{"from_size": 3, "more": 1}', None),
        (b"[3]", None),
        (b"not json", None),
        (b"\xff\xfe", None),  # not UTF-8
        (b"[" * 100_000, None),  # over the size limit before any parsing
        (b'{"from_size": ' + b"1" * (MAX_AUDIT_REQUEST_BYTES) + b"}", None),
    ],
)
def test_an_audit_request_names_a_size_or_nothing(payload: bytes, expected: int | None) -> None:
    assert audit_from_size(payload) == expected


def test_a_rejection_refers_to_the_message_id_or_the_payloads_hash() -> None:
    wire = sign_message(
        SigningKey.generate(),
        OrderBody(Side.BUY, 10, 100_000),
        market="m1",
        interval=900,
        agent="h1",
        seq=7,
        expires=1800,
    ).to_wire()
    assert rejection_reference(wire) == (decode_message(wire).message_id, 7)
    junk = b'{"not": "a message"}'
    assert rejection_reference(junk) == (hashlib.sha256(junk).hexdigest(), None)
