"""The dashboard's HTTP handlers: one per endpoint, each with its access rule (A, H or O).

A: anyone. H: the household itself or the operator (401 when not logged in, 403 when
logged in as another household). O: the operator. Every read runs in a worker thread
(the read model is SQL); errors are raised as :class:`HttpError` or the queries'
``NotFound``/``BadRequest`` and turned into JSON by the application's middleware.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from wattmesh.broker.errors import DashboardError
from wattmesh.dashboard import queries
from wattmesh.dashboard._runtime import Runtime, public_overview
from wattmesh.dashboard.auth import COOKIE_NAME, LoginRefused, Viewer
from wattmesh.dashboard.openapi import openapi_document

__all__ = ["RUNTIME", "HttpError", "add_routes", "viewer_of"]

T = TypeVar("T")
RUNTIME = web.AppKey("runtime", Runtime)
_MAX_BODY_BYTES = 4096  # login bodies are small


class HttpError(DashboardError):
    """A request refused with an HTTP status and a reason word (JSON error body)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason = status, reason


def _rt(request: web.Request) -> Runtime:
    return request.app[RUNTIME]


def viewer_of(request: web.Request) -> Viewer:
    """Who the request's session cookie logs in (anonymous without a valid one, and for
    a household whose key was revoked since it logged in)."""
    rt = _rt(request)
    viewer = rt.sessions.viewer(request.cookies.get(COOKIE_NAME))
    if viewer.role == "household" and (viewer.household or "") not in rt.keys:
        return Viewer("anonymous")
    return viewer


def _require(request: web.Request, household: str) -> Viewer:
    """Access rule H: the household itself or the operator."""
    viewer = viewer_of(request)
    if viewer.may_see(household):
        return viewer
    if viewer.role == "anonymous":
        raise HttpError(401, "unauthorized", f"log in as {household} or as the operator")
    raise HttpError(403, "forbidden", f"{household}'s figures are not yours to see")


def _int(request: web.Request, name: str, *, path: bool = False) -> int | None:
    text = request.match_info.get(name) if path else request.query.get(name)
    if text is None or (text == "" and not path):
        return None
    try:
        value = int(text, 10)
    except ValueError:
        raise queries.BadRequest(f"{name} must be an integer, not {text[:40]!r}") from None
    if not 0 <= value < 1 << 62:
        raise queries.BadRequest(f"{name} {value} is out of range")
    return value


async def _read(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    return await asyncio.to_thread(fn, *args, **kwargs)


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(
        data, status=status, dumps=lambda d: json.dumps(d, separators=(",", ":"))
    )


async def _body(request: web.Request, *fields: str) -> dict[str, str]:
    if request.content_length is not None and request.content_length > _MAX_BODY_BYTES:
        raise queries.BadRequest("the request body is too large")
    try:
        data = json.loads(await request.content.read(_MAX_BODY_BYTES + 1))
    except (ValueError, UnicodeDecodeError):
        raise queries.BadRequest("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise queries.BadRequest("the request body must be a JSON object")
    out = {}
    for name in fields:
        value = data.get(name)
        if not isinstance(value, str) or not 0 < len(value) <= 512:
            raise queries.BadRequest(f"{name} must be a non-empty string")
        out[name] = value
    return out


# ------------------------------------------------------------------ public (A)


async def overview(request: web.Request) -> web.Response:
    rt = _rt(request)
    data = await _read(
        queries.overview,
        rt.rm,
        now_s=int(time.time()),
        currency=rt.config.currency,
        heard=None if rt.listener is None else rt.listener.heard,
    )
    return _json(public_overview(data, viewer_of(request)))


async def market(request: web.Request) -> web.Response:
    start, end = _int(request, "start"), _int(request, "end")
    return _json(await _read(queries.market_series, _rt(request).rm, start=start, end=end))


async def interval(request: web.Request) -> web.Response:
    value = _int(request, "interval", path=True)
    assert value is not None
    return _json(await _read(queries.interval_detail, _rt(request).rm, value))


async def checkpoints(request: web.Request) -> web.Response:
    limit = _int(request, "limit")
    kwargs = {} if limit is None else {"limit": limit}
    return _json(await _read(queries.checkpoints, _rt(request).rm, **kwargs))


async def trades(request: web.Request) -> web.Response:
    limit, at = _int(request, "limit"), _int(request, "interval")
    household = request.query.get("household") or None
    kwargs: dict[str, Any] = {"interval": at, "household": household}
    if limit is not None:
        kwargs["limit"] = limit
    return _json(await _read(queries.trades, _rt(request).rm, **kwargs))


async def proof(request: web.Request) -> web.Response:
    rt = _rt(request)
    idx = _int(request, "idx", path=True)
    assert idx is not None
    ledger = rt.ledger
    if ledger is None:
        raise HttpError(503, "unavailable", f"the ledger cannot be read: {rt.ledger_problem}")
    owner = await _read(queries.entry_owner, rt.rm, ledger, idx)
    if owner is not None:
        _require(request, owner)
    return _json(await _read(queries.entry_proof, rt.rm, ledger, idx))


async def health(request: web.Request) -> web.Response:
    rt = _rt(request)
    ok, problem = await _read(rt.ledger_check)
    data = await _read(
        queries.health, rt.rm, now_s=int(time.time()), ledger_ok=ok, ledger_problem=problem
    )
    data["broker"]["configured"] = rt.config.broker is not None
    if rt.config.broker is None:
        data["forecaster"].update(configured=False, state="not configured")
    return _json(data, status=200 if ok else 503)


async def openapi(_request: web.Request) -> web.Response:
    return _json(openapi_document())


# ------------------------------------------------------------------ a household's own (H, O)


async def households(request: web.Request) -> web.Response:
    viewer = viewer_of(request)
    if viewer.role == "anonymous":
        raise HttpError(401, "unauthorized", "log in as a household or as the operator")
    only = None if viewer.role == "operator" else viewer.household
    return _json(await _read(queries.households_table, _rt(request).rm, only=only))


async def household(request: web.Request) -> web.Response:
    who = request.match_info["household"]
    _require(request, who)
    return _json(await _read(queries.household_detail, _rt(request).rm, who))


async def statement(request: web.Request) -> web.Response:
    who = request.match_info["household"]
    _require(request, who)
    return _json((await _read(queries.statement, _rt(request).rm, who)).to_json())


async def statement_csv(request: web.Request) -> web.Response:
    who = request.match_info["household"]
    _require(request, who)
    text = (await _read(queries.statement, _rt(request).rm, who)).to_csv()
    disposition = f'attachment; filename="statement-{who}.csv"'
    return web.Response(
        text=text, content_type="text/csv", headers={"Content-Disposition": disposition}
    )


# ------------------------------------------------------------------ login


def _session(viewer: Viewer) -> dict[str, Any]:
    return {"role": viewer.role, "household": viewer.household}


def _set_cookie(response: web.StreamResponse, rt: Runtime, viewer: Viewer) -> None:
    response.set_cookie(
        COOKIE_NAME,
        rt.sessions.cookie(viewer),
        max_age=rt.sessions.ttl_s,
        path="/",
        httponly=True,
        samesite="Strict",
    )


async def login_challenge(request: web.Request) -> web.Response:
    household_id = (await _body(request, "household"))["household"]
    return _json(_rt(request).challenges.issue(household_id).to_json())


async def login(request: web.Request) -> web.Response:
    body = await _body(request, "household", "nonce", "signature_der_b64")
    try:
        signature = base64.b64decode(body["signature_der_b64"], validate=True)
    except (binascii.Error, ValueError):
        raise queries.BadRequest("signature_der_b64 is not base64") from None
    rt = _rt(request)
    rt.challenges.check(body["household"], body["nonce"], signature)
    ticket = rt.tickets.issue(body["household"])
    return _json({"ticket": ticket, "url": f"login?ticket={ticket}"})


async def login_ticket(request: web.Request) -> web.StreamResponse:
    rt = _rt(request)
    viewer = rt.tickets.redeem_viewer(request.query.get("ticket", ""))
    page = "/#/households" if viewer.household is None else f"/#/households/{viewer.household}"
    response = web.Response(status=303, headers={"Location": page})
    _set_cookie(response, rt, viewer)
    return response


async def login_operator(request: web.Request) -> web.Response:
    rt = _rt(request)
    token = (await _body(request, "token"))["token"]
    if rt.operator_token is None:
        raise LoginRefused("operator login is not configured on this dashboard")
    if not rt.operator_token.matches(token):
        raise LoginRefused("wrong operator token")
    viewer = Viewer("operator")
    response = _json(_session(viewer))
    _set_cookie(response, rt, viewer)
    return response


async def logout(_request: web.Request) -> web.Response:
    response = _json(_session(Viewer("anonymous")))
    response.del_cookie(COOKIE_NAME, path="/")
    return response


async def session(request: web.Request) -> web.Response:
    return _json({**_session(viewer_of(request)), "currency": _rt(request).config.currency})


def add_routes(app: web.Application) -> None:
    """Every ``/api/`` route and ``/login`` (``/ws``, ``/metrics`` and static files: app.py)."""
    r = app.router
    r.add_get("/api/overview", overview)
    r.add_get("/api/market", market)
    r.add_get("/api/market/intervals/{interval}", interval)
    r.add_get("/api/households", households)
    r.add_get("/api/households/{household}", household)
    r.add_get("/api/households/{household}/statement", statement)
    r.add_get("/api/households/{household}/statement.csv", statement_csv)
    r.add_get("/api/ledger/checkpoints", checkpoints)
    r.add_get("/api/ledger/trades", trades)
    r.add_get("/api/ledger/entries/{idx}/proof", proof)
    r.add_get("/api/health", health)
    r.add_get("/api/openapi.json", openapi)
    r.add_post("/api/login/challenge", login_challenge)
    r.add_post("/api/login", login)
    r.add_post("/api/login/operator", login_operator)
    r.add_post("/api/logout", logout)
    r.add_get("/api/session", session)
    r.add_get("/login", login_ticket)
