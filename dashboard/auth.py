"""Who is looking: household login by a signed challenge, session cookies, the operator token.

A household proves who it is with the key it trades with. It asks for a challenge
(``POST /api/login/challenge``), signs :func:`challenge_text` (the context
:data:`LOGIN_CONTEXT`, the log's origin, the household id and a fresh nonce, one per
line: never a message of the bus, whose signed bytes are a JSON object) with its
private key, and sends the signature back (``POST /api/login``). The server checks it
against the household's registered public key (read from the read model through the
lookup it is given, so this module stays pure) and answers with a single-use ticket
valid for :data:`TICKET_TTL_S`; opening ``/login?ticket=...`` in the browser turns it
into a session cookie. A nonce is consumed by its first use, right or wrong, and
expires after :data:`CHALLENGE_TTL_S`.

Session cookies are ``<payload>.<HMAC-SHA256>`` under a secret drawn at random when
the server starts (a restart logs everyone out); the payload names the role, the
household and the expiry. The operator logs in with a token read from a file,
compared in constant time, or once with a ticket the server was started with
(:meth:`Tickets.admit_operator`: ``wattmesh simulate --dashboard`` prints the link).
:func:`login_link` is the client's side, for ``wattmesh dashboard login``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import urllib.error
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urljoin

from wattmesh.broker.errors import ConfigError, DashboardError, FailureError
from wattmesh.broker.keys import SigningKey, VerifyingKey
from wattmesh.broker.topics import check_segment

__all__ = [
    "CHALLENGE_TTL_S",
    "COOKIE_NAME",
    "LOGIN_CONTEXT",
    "OPERATOR_TICKET_TTL_S",
    "SESSION_TTL_S",
    "TICKET_TTL_S",
    "Challenge",
    "Challenges",
    "KeyLookup",
    "LoginFailed",
    "LoginRefused",
    "OperatorToken",
    "Sessions",
    "Tickets",
    "TokenFileError",
    "Viewer",
    "challenge_text",
    "login_link",
]

LOGIN_CONTEXT = b"wattmesh-dashboard-login-v1"
COOKIE_NAME = "wattmesh_session"
CHALLENGE_TTL_S = 120
TICKET_TTL_S = 120
SESSION_TTL_S = 12 * 3600
OPERATOR_TICKET_TTL_S = 3600  # the operator's link printed at start: time for a human
MIN_TICKET_CHARS = 16
_MAX_PENDING = 10_000  # challenges or tickets outstanding; the oldest go first

Role = Literal["anonymous", "household", "operator"]
KeyLookup = Callable[[str], VerifyingKey | None]
"""The registered, unrevoked public key of a household, or None."""


class LoginRefused(DashboardError, PermissionError):
    """A login that does not prove who it claims to be (HTTP 401)."""


class LoginFailed(DashboardError, FailureError):
    """The client could not complete a login with the dashboard (unreachable, bad answer)."""


class TokenFileError(DashboardError, ConfigError):
    """An operator token file that is missing, unreadable or empty."""


@dataclass(frozen=True)
class Viewer:
    """Who is asking: anyone, one household, or the operator."""

    role: Role
    household: str | None = None

    def may_see(self, household: str) -> bool:
        """Whether this viewer may read ``household``'s own figures."""
        return self.role == "operator" or (self.role == "household" and self.household == household)


ANONYMOUS = Viewer("anonymous")


def _is_id(household: str) -> bool:
    try:
        check_segment(household, "household")
    except ConfigError:
        return False
    return True


def challenge_text(*, origin: str, household: str, nonce: str) -> bytes:
    """The bytes a household signs to log in."""
    return b"\n".join((LOGIN_CONTEXT, origin.encode(), household.encode(), nonce.encode()))


@dataclass(frozen=True)
class Challenge:
    """A challenge handed out: what the household must sign, and until when."""

    household: str
    nonce: str
    origin: str
    expires_s: int

    def to_json(self) -> dict[str, Any]:
        return {
            "household": self.household,
            "nonce": self.nonce,
            "origin": self.origin,
            "expires_s": self.expires_s,
        }


class _Pending:
    """Single-use secrets with an expiry, bounded in number (oldest dropped first)."""

    def __init__(self, ttl_s: int, now: Callable[[], float], limit: int) -> None:
        self._ttl_s, self._now, self._limit = ttl_s, now, limit
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def add(self, household: str) -> tuple[str, int]:
        now = self._now()
        while self._items:  # insertion order is expiry order
            _key, (_who, expires) = next(iter(self._items.items()))
            if expires > now and len(self._items) < self._limit:
                break
            self._items.popitem(last=False)
        token = secrets.token_urlsafe(24)
        expires_s = now + self._ttl_s
        self._items[token] = (household, expires_s)
        return token, int(expires_s)

    def take(self, token: str) -> str | None:
        """The household of ``token`` if it is pending and fresh; it is used up either way."""
        found = self._items.pop(token, None)
        if found is None or found[1] <= self._now():
            return None
        return found[0]

    def __len__(self) -> int:
        return len(self._items)


class Challenges:
    """Issues login challenges and checks the signed answers."""

    def __init__(
        self,
        *,
        origin: str,
        lookup: KeyLookup,
        now: Callable[[], float] = time.time,
        ttl_s: int = CHALLENGE_TTL_S,
        limit: int = _MAX_PENDING,
    ) -> None:
        self.origin = origin
        self._lookup = lookup
        self._pending = _Pending(ttl_s, now, limit)

    def issue(self, household: str) -> Challenge:
        """A fresh challenge for ``household``; LoginRefused if it has no key."""
        if not _is_id(household) or self._lookup(household) is None:
            raise LoginRefused(f"household {household!r} has no registered key")
        nonce, expires_s = self._pending.add(household)
        return Challenge(household, nonce, self.origin, expires_s)

    def check(self, household: str, nonce: str, signature_der: bytes) -> None:
        """Accept a signed challenge or raise LoginRefused; the nonce is used up."""
        issued_to = self._pending.take(nonce)
        if issued_to is None:
            raise LoginRefused("unknown, used or expired challenge")
        if issued_to != household:
            raise LoginRefused("the challenge was issued to another household")
        key = self._lookup(household)
        text = challenge_text(origin=self.origin, household=household, nonce=nonce)
        if key is None or not key.verify(signature_der, text):
            raise LoginRefused(f"the signature is not {household}'s")


class Tickets:
    """Single-use login tickets: a household's (the link ``wattmesh dashboard login``
    prints) and the operator's (the link ``wattmesh simulate --dashboard`` prints)."""

    def __init__(self, *, now: Callable[[], float] = time.time, ttl_s: int = TICKET_TTL_S) -> None:
        self._now = now
        self._pending = _Pending(ttl_s, now, _MAX_PENDING)
        self._operator: dict[str, float] = {}  # ticket -> expiry

    def issue(self, household: str) -> str:
        return self._pending.add(household)[0]

    def admit_operator(self, ticket: str, *, ttl_s: int = OPERATOR_TICKET_TTL_S) -> None:
        """Accept ``ticket`` (drawn at random by whoever starts the server) once, within
        ``ttl_s``, as an operator login."""
        if len(ticket) < MIN_TICKET_CHARS:
            raise TokenFileError(f"an operator ticket needs at least {MIN_TICKET_CHARS} characters")
        self._operator[ticket] = self._now() + ttl_s

    def redeem(self, ticket: str) -> str:
        """The household the ticket logs in; LoginRefused if unknown, used or expired."""
        household = self._pending.take(ticket)
        if household is None:
            raise LoginRefused("unknown, used or expired login ticket")
        return household

    def redeem_viewer(self, ticket: str) -> Viewer:
        """Who the ticket logs in (the operator or a household); it is used up either
        way; LoginRefused if unknown, used or expired."""
        expires_s = self._operator.pop(ticket, None)
        if expires_s is not None:
            if expires_s <= self._now():
                raise LoginRefused("unknown, used or expired login ticket")
            return Viewer("operator")
        return Viewer("household", self.redeem(ticket))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Sessions:
    """Signed session cookies: ``<payload>.<HMAC-SHA256>`` under a per-start secret."""

    def __init__(
        self,
        *,
        secret: bytes | None = None,
        now: Callable[[], float] = time.time,
        ttl_s: int = SESSION_TTL_S,
    ) -> None:
        self._secret = secret if secret is not None else secrets.token_bytes(32)
        self._now, self.ttl_s = now, ttl_s

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()

    def cookie(self, viewer: Viewer) -> str:
        """The cookie value that logs ``viewer`` in until the session expires."""
        expires_s = int(self._now()) + self.ttl_s
        payload = json.dumps([viewer.role, viewer.household, expires_s]).encode()
        return f"{_b64(payload)}.{_b64(self._mac(payload))}"

    def viewer(self, cookie: str | None) -> Viewer:
        """Who the cookie logs in; anonymous for no cookie, a bad or an expired one."""
        if not cookie or cookie.count(".") != 1:
            return ANONYMOUS
        head, mac = cookie.split(".")
        try:
            payload, given = _unb64(head), _unb64(mac)
        except (binascii.Error, ValueError):
            return ANONYMOUS
        if not hmac.compare_digest(given, self._mac(payload)):
            return ANONYMOUS
        role, household, expires_s = json.loads(payload)
        if expires_s <= self._now():
            return ANONYMOUS
        return Viewer(role, household)


class OperatorToken:
    """The operator's login token, compared in constant time."""

    def __init__(self, token: str) -> None:
        if len(token) < 16:
            raise TokenFileError("the operator token must have at least 16 characters")
        self._digest = hashlib.sha256(token.encode()).digest()

    @classmethod
    def from_file(cls, path: Path) -> OperatorToken:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read the operator token file {path}: {exc}") from exc
        if not text:
            raise TokenFileError(f"the operator token file {path} is empty")
        return cls(text)

    def matches(self, token: str) -> bool:
        given = hashlib.sha256(token.encode()).digest()
        return hmac.compare_digest(given, self._digest)


# ------------------------------------------------------------------ the client's side


def _post(url: str, body: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    request = urllib.request.Request(  # noqa: S310 (the user gives the dashboard's URL)
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310
            answer = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read())["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        raise LoginFailed(f"{url}: {exc.code} {message}") from exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise LoginFailed(f"cannot reach the dashboard at {url}: {exc}") from exc
    if not isinstance(answer, dict):
        raise LoginFailed(f"{url}: the answer is not a JSON object")
    return answer


def login_link(url: str, key: SigningKey, household: str, *, timeout_s: float = 10.0) -> str:
    """Log ``household`` in at the dashboard ``url`` with its key; the one-time link.

    Blocking (urllib); raises LoginFailed when the dashboard cannot be reached or
    refuses the login.
    """
    base = url if url.endswith("/") else f"{url}/"
    challenge = _post(urljoin(base, "api/login/challenge"), {"household": household}, timeout_s)
    nonce, origin = challenge.get("nonce"), challenge.get("origin")
    if challenge.get("household") != household or not (
        isinstance(nonce, str) and isinstance(origin, str)
    ):
        raise LoginFailed(f"{url}: the challenge is not one for {household}")
    signature = key.sign(challenge_text(origin=origin, household=household, nonce=nonce))
    body = {
        "household": household,
        "nonce": nonce,
        "signature_der_b64": base64.b64encode(signature).decode(),
    }
    answer = _post(urljoin(base, "api/login"), body, timeout_s)
    link = answer.get("url")
    if not isinstance(link, str):
        raise LoginFailed(f"{url}: the login answer has no link")
    return urljoin(base, link)
