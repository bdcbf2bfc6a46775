"""The dashboard's login with real P-256 keys: challenges, tickets, cookies, the operator token."""

from __future__ import annotations

from pathlib import Path

import pytest

from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.dashboard.auth import (
    Challenges,
    LoginRefused,
    OperatorToken,
    Sessions,
    Tickets,
    TokenFileError,
    Viewer,
    challenge_text,
)

ORIGIN = "wattmesh.example/m1"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now_s


@pytest.fixture
def keys() -> dict[str, SigningKey]:
    return {"h1": SigningKey.generate(), "h2": SigningKey.generate()}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def challenges(keys: dict[str, SigningKey], clock: Clock) -> Challenges:
    registry: dict[str, VerifyingKey] = {h: k.verifying for h, k in keys.items()}
    return Challenges(origin=ORIGIN, lookup=registry.get, now=clock)


def _answer(key: SigningKey, household: str, nonce: str, origin: str = ORIGIN) -> bytes:
    return key.sign(challenge_text(origin=origin, household=household, nonce=nonce))


def test_the_households_own_key_logs_it_in(
    challenges: Challenges, keys: dict[str, SigningKey]
) -> None:
    challenge = challenges.issue("h1")
    assert (challenge.household, challenge.origin) == ("h1", ORIGIN)
    challenges.check("h1", challenge.nonce, _answer(keys["h1"], "h1", challenge.nonce))


def test_a_wrong_key_is_refused(challenges: Challenges) -> None:
    challenge = challenges.issue("h1")
    stranger = SigningKey.generate()
    with pytest.raises(LoginRefused, match="not h1's"):
        challenges.check("h1", challenge.nonce, _answer(stranger, "h1", challenge.nonce))


def test_another_households_key_is_refused(
    challenges: Challenges, keys: dict[str, SigningKey]
) -> None:
    challenge = challenges.issue("h1")
    with pytest.raises(LoginRefused, match="not h1's"):
        challenges.check("h1", challenge.nonce, _answer(keys["h2"], "h1", challenge.nonce))
    # h2 signing a challenge issued to h1 does not log h2 in either.
    other = challenges.issue("h1")
    with pytest.raises(LoginRefused, match="another household"):
        challenges.check("h2", other.nonce, _answer(keys["h2"], "h2", other.nonce))


def test_a_signature_over_another_origin_is_refused(
    challenges: Challenges, keys: dict[str, SigningKey]
) -> None:
    challenge = challenges.issue("h1")
    signature = _answer(keys["h1"], "h1", challenge.nonce, origin="another.market")
    with pytest.raises(LoginRefused):
        challenges.check("h1", challenge.nonce, signature)


def test_a_nonce_is_single_use_even_after_a_wrong_answer(
    challenges: Challenges, keys: dict[str, SigningKey]
) -> None:
    challenge = challenges.issue("h1")
    good = _answer(keys["h1"], "h1", challenge.nonce)
    challenges.check("h1", challenge.nonce, good)
    with pytest.raises(LoginRefused, match="unknown, used or expired"):
        challenges.check("h1", challenge.nonce, good)  # replayed
    second = challenges.issue("h1")
    with pytest.raises(LoginRefused):
        challenges.check("h1", second.nonce, b"\x30\x00")
    with pytest.raises(LoginRefused, match="unknown, used or expired"):
        challenges.check("h1", second.nonce, _answer(keys["h1"], "h1", second.nonce))


def test_an_expired_challenge_is_refused(
    challenges: Challenges, keys: dict[str, SigningKey], clock: Clock
) -> None:
    challenge = challenges.issue("h1")
    assert challenge.expires_s == int(clock.now_s) + 120
    clock.now_s += 120
    with pytest.raises(LoginRefused, match="expired"):
        challenges.check("h1", challenge.nonce, _answer(keys["h1"], "h1", challenge.nonce))


def test_no_challenge_for_a_household_without_a_key(challenges: Challenges) -> None:
    for household in ("h9", "../h1", ""):
        with pytest.raises(LoginRefused, match="no registered key"):
            challenges.issue(household)


def test_pending_challenges_are_bounded(keys: dict[str, SigningKey], clock: Clock) -> None:
    registry = {"h1": keys["h1"].verifying}
    small = Challenges(origin=ORIGIN, lookup=registry.get, now=clock, limit=3)
    first = small.issue("h1")
    for _ in range(3):
        small.issue("h1")
    with pytest.raises(LoginRefused):  # the oldest made room for the newest
        small.check("h1", first.nonce, _answer(keys["h1"], "h1", first.nonce))


def test_tickets_are_single_use_and_expire(clock: Clock) -> None:
    tickets = Tickets(now=clock)
    ticket = tickets.issue("h1")
    assert tickets.redeem(ticket) == "h1"
    with pytest.raises(LoginRefused):
        tickets.redeem(ticket)
    late = tickets.issue("h2")
    clock.now_s += 121
    with pytest.raises(LoginRefused):
        tickets.redeem(late)
    with pytest.raises(LoginRefused):
        tickets.redeem("made-up")


def test_the_operator_ticket_logs_in_once_within_an_hour(clock: Clock) -> None:
    tickets = Tickets(now=clock)
    tickets.admit_operator("operator-ticket-0123456789")
    tickets.admit_operator("late-operator-ticket-0123456789")
    household = tickets.issue("h1")
    clock.now_s += 3599  # long after a household's ticket would have expired
    assert tickets.redeem_viewer("operator-ticket-0123456789") == Viewer("operator")
    with pytest.raises(LoginRefused):  # used up
        tickets.redeem_viewer("operator-ticket-0123456789")
    with pytest.raises(LoginRefused):
        tickets.redeem_viewer(household)
    clock.now_s += 1
    with pytest.raises(LoginRefused):  # an hour is up
        tickets.redeem_viewer("late-operator-ticket-0123456789")
    fresh = tickets.issue("h2")
    assert tickets.redeem_viewer(fresh) == Viewer("household", "h2")
    with pytest.raises(TokenFileError):
        tickets.admit_operator("short")


def test_a_session_cookie_round_trips_and_expires(clock: Clock) -> None:
    sessions = Sessions(now=clock)
    cookie = sessions.cookie(Viewer("household", "h1"))
    assert sessions.viewer(cookie) == Viewer("household", "h1")
    clock.now_s += sessions.ttl_s
    assert sessions.viewer(cookie).role == "anonymous"


def test_a_tampered_cookie_is_anonymous(clock: Clock) -> None:
    sessions = Sessions(now=clock)
    cookie = sessions.cookie(Viewer("household", "h1"))
    head, mac = cookie.split(".")
    forged_head = Sessions(now=clock).cookie(Viewer("operator")).split(".")[0]
    flipped = mac[:-2] + ("A" if mac[-2] != "A" else "B") + mac[-1]
    for bad in (
        f"{forged_head}.{mac}",  # another payload under h1's MAC
        f"{head}.{flipped}",
        Sessions(now=clock).cookie(Viewer("operator")),  # another server's secret
        "garbage",
        "a.b.c",
        "!!.??",
        "",
        None,
    ):
        assert sessions.viewer(bad) == Viewer("anonymous"), bad


def test_who_may_see_whom() -> None:
    assert Viewer("operator").may_see("h1")
    assert Viewer("household", "h1").may_see("h1")
    assert not Viewer("household", "h1").may_see("h2")
    assert not Viewer("anonymous").may_see("h1")


def test_the_operator_token(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("s3cret-operator-token-0123\n", encoding="utf-8")
    token = OperatorToken.from_file(path)
    assert token.matches("s3cret-operator-token-0123")
    assert not token.matches("s3cret-operator-token-0124")
    assert not token.matches("")
    path.write_text("\n", encoding="utf-8")
    with pytest.raises(TokenFileError, match="empty"):
        OperatorToken.from_file(path)
    with pytest.raises(TokenFileError, match="cannot read"):
        OperatorToken.from_file(tmp_path / "missing")
    with pytest.raises(TokenFileError, match="16 characters"):
        OperatorToken("short")
