"""The rule for a repeated open (docs/protocol.md, "A repeated open"), on its own.

:class:`agents.resend.TradedInterval` is pure state; over Mosquitto's real RETAIN
flag and the agent's outbox the same rule is tested in tests/test_agent_resend.py.
"""

from __future__ import annotations

from agents.resend import TradedInterval
from broker.keys import SigningKey
from broker.messages import AnnouncementBody, Phase, SignedMessage, sign_message
from broker.topics import Topics
from broker.transport import Message

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


def _live(message: SignedMessage) -> Message:
    return Message(TOPICS.announce, message.to_wire(), retain=False)


def _retained(message: SignedMessage) -> Message:
    return Message(TOPICS.announce, message.to_wire(), retain=True)


def _trading(first_open: SignedMessage) -> TradedInterval:
    traded = TradedInterval()
    assert traded.begin(first_open.header.interval, first_open.message_id)
    traded.keep(T, "reading", b"r")
    traded.keep(T, "order", b"o")
    return traded


def test_a_live_repeated_open_opens_the_interval_again_even_with_the_same_id() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    assert traded.opens_again(first, _live(first))
    other = _announcement(T, Phase.OPEN, 2)
    assert traded.opens_again(other, _live(other))


def test_a_retained_open_with_a_new_id_opens_it_again_the_same_id_not() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    assert not traded.opens_again(first, _retained(first))  # the copy a reconnect brings
    reopened = _announcement(T, Phase.OPEN, 2)  # announced again while disconnected
    assert traded.opens_again(reopened, _retained(reopened))


def test_another_interval_or_phase_or_a_cleared_interval_opens_nothing_again() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    for other in (
        _announcement(T - STEP, Phase.OPEN, 2),
        _announcement(T + STEP, Phase.OPEN, 3),
        _announcement(T, Phase.CLEARED, 4),
        _announcement(T, Phase.CLOSED, 5),
    ):
        assert not traded.opens_again(other, _live(other))
        assert not traded.opens_again(other, _retained(other))
    traded.clear(T - STEP)  # an older interval's clearing changes nothing
    assert traded.opens_again(first, _live(first))
    traded.clear(T)
    again = _announcement(T, Phase.OPEN, 6)
    assert not traded.opens_again(again, _live(again))
    assert not traded.opens_again(again, _retained(again))
    traded.clear(T - STEP)  # the latest cleared interval stays the latest
    assert traded.cleared == T
    assert not traded.opens_again(again, _live(again))


def test_nothing_is_opened_again_before_an_interval_is_traded() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    assert not TradedInterval().opens_again(first, _live(first))


def test_reopen_hands_back_the_kept_copies_and_takes_the_new_id() -> None:
    first = _announcement(T, Phase.OPEN, 1)
    traded = _trading(first)
    traded.keep(T - STEP, "order", b"late")  # another interval's: not kept
    reopened = _announcement(T, Phase.OPEN, 2)
    assert traded.reopen(reopened.message_id) == (("reading", b"r"), ("order", b"o"))
    assert traded.announced_id == reopened.message_id
    assert not traded.opens_again(reopened, _retained(reopened))  # no further resend
    assert traded.opens_again(first, _retained(first))  # the old id is not the one acted on
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
