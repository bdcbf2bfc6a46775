"""The rule for a repeated open (docs/protocol.md, "A repeated open"), on its own.

:class:`agents._resend.TradedInterval` is pure state; over Mosquitto (live and retained
copies) and the agent's outbox the same rule is tested in tests/test_agent_resend.py.
"""

from __future__ import annotations

from wattmesh.agents._resend import MAX_OPENS_REMEMBERED, TradedInterval
from wattmesh.broker.keys import SigningKey
from wattmesh.broker.messages import AnnouncementBody, Phase, SignedMessage, sign_message
from wattmesh.broker.topics import Topics

STEP = 900
T = 1_751_241_600  # the interval traded
OPERATOR = SigningKey.generate()
TOPICS = Topics("m1")


def _announcement(interval: int, phase: Phase, seq: int) -> SignedMessage:
    """A signed announcement; each seq gives its own message id."""
    return sign_message(
        OPERATOR,
        AnnouncementBody(phase, STEP, 300_000, 80_000),
        market=TOPICS.market_id,
        interval=interval,
        agent="operator",
        seq=seq,
        expires=interval + STEP,
    )


def _trading(first_open: SignedMessage) -> TradedInterval:
    traded = TradedInterval()
    assert traded.begin(first_open.header.interval, first_open.message_id)
    traded.keep(T, "reading", b"r")
    traded.keep(T, "order", b"o")
    return traded


def test_an_open_with_a_new_id_opens_the_interval_again_a_copy_of_one_acted_on_not() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    # A copy of the open acted on (a reconnect's retained copy, the operator's publish
    # retried, anyone replaying the genuine bytes): nothing to send again.
    assert not traded.opens_again(first)
    reopened = _announcement(T, Phase.OPEN, 2)  # a restarted ledger: a new id
    assert traded.opens_again(reopened)


def test_copies_of_every_open_acted_on_open_nothing_again_even_alternating() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    reopened = _announcement(T, Phase.OPEN, 2)
    traded.reopen(reopened.message_id)
    for _ in range(3):  # replays of both genuine opens, in turn
        assert not traded.opens_again(first)
        assert not traded.opens_again(reopened)
    assert traded.opens_again(_announcement(T, Phase.OPEN, 3))  # a further reopen does


def test_the_opens_remembered_are_bounded_the_oldest_forgotten_first() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    opens = [_announcement(T, Phase.OPEN, seq) for seq in range(2, MAX_OPENS_REMEMBERED + 2)]
    for message in opens:
        traded.reopen(message.message_id)
    assert traded.opens_again(first)  # the oldest of 17 was forgotten
    assert not any(traded.opens_again(message) for message in opens)
    traded.begin(T + STEP, _announcement(T + STEP, Phase.OPEN, 99).message_id)
    assert not traded.opens_again(_announcement(T, Phase.OPEN, 100))  # an older interval


def test_another_interval_or_phase_or_a_cleared_interval_opens_nothing_again() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    for other in (
        _announcement(T - STEP, Phase.OPEN, 2),
        _announcement(T + STEP, Phase.OPEN, 3),
        _announcement(T, Phase.CLEARED, 4),
        _announcement(T, Phase.CLOSED, 5),
    ):
        assert not traded.opens_again(other)
    traded.clear(T - STEP)  # an older interval's clearing changes nothing
    assert traded.opens_again(_announcement(T, Phase.OPEN, 7))
    traded.clear(T)
    again = _announcement(T, Phase.OPEN, 6)
    assert not traded.opens_again(again)
    traded.clear(T - STEP)  # the latest cleared interval stays the latest
    assert traded.cleared == T
    assert not traded.opens_again(again)


def test_nothing_is_opened_again_before_an_interval_is_traded() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    assert not TradedInterval().opens_again(first)


def test_reopen_hands_back_the_kept_copies_and_takes_the_new_id() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    traded.keep(T - STEP, "order", b"late")  # another interval's: not kept
    reopened = _announcement(T, Phase.OPEN, 2)
    assert traded.reopen(reopened.message_id) == (("reading", b"r"), ("order", b"o"))
    assert traded.announced_id == reopened.message_id
    assert not traded.opens_again(reopened)  # no further resend
    assert not traded.opens_again(first)  # nor for the open acted on before
    assert traded.kept == (("reading", b"r"), ("order", b"o"))  # kept for another reopen


def test_begin_takes_only_a_later_interval_and_drops_the_copies() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    assert not traded.begin(T, _announcement(T, Phase.OPEN, 2).message_id)
    assert not traded.begin(T - STEP, _announcement(T - STEP, Phase.OPEN, 3).message_id)
    assert (traded.interval, traded.announced_id) == (T, first.message_id)
    assert len(traded.kept) == 2
    closing = _announcement(T + STEP, Phase.CLOSED, 4)
    assert traded.begin(T + STEP, closing.message_id)
    assert (traded.interval, traded.announced_id, traded.kept) == (T + STEP, closing.message_id, ())
