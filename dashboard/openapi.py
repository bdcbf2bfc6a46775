"""The OpenAPI 3.1 document of the dashboard's JSON API (served at ``/api/openapi.json``).

Energy is integer Wh, money integer micro-units of the market's currency, prices
micro-units per kWh, times epoch seconds; ratios are the only numbers with a fraction.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi_document"]

Schema = dict[str, Any]

_INT: Schema = {"type": "integer"}
_NINT: Schema = {"type": ["integer", "null"]}
_STR: Schema = {"type": "string"}
_NSTR: Schema = {"type": ["string", "null"]}
_NUM: Schema = {"type": "number"}
_BOOL: Schema = {"type": "boolean"}


def _obj(props: dict[str, Schema], *, required: bool = True, nullable: bool = False) -> Schema:
    schema: Schema = {"type": ["object", "null"] if nullable else "object", "properties": props}
    if required:
        schema["required"] = sorted(props)
    return schema


def _list(items: Schema) -> Schema:
    return {"type": "array", "items": items}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


_KPI = _obj(
    {
        **{k: _INT for k in ("p2p_wh", "grid_import_wh", "grid_export_wh", "import_wh")},
        **{k: _INT for k in ("export_wh", "cost_micro", "grid_only_cost_micro", "savings_micro")},
        **{k: _NUM for k in ("self_sufficiency", "p2p_share", "savings_pct")},
    }
)
_TRADE = _obj(
    {
        "idx": _INT,
        "interval": _INT,
        "buyer": _STR,
        "seller": _STR,
        "quantity_wh": _INT,
        "price_micro_per_kwh": _INT,
    }
)
_OVERVIEW = _obj(
    {
        "market_id": _NSTR,
        "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},  # ISO 4217
        "now_s": _INT,
        "interval_s": _NINT,
        "current_interval": _NINT,
        "next_close_s": _NINT,
        "market": _obj(
            {"state": {"enum": ["open", "idle"]}, "clock": {"enum": ["wall", "simulated", None]}}
        ),
        "last": _obj(
            {
                "interval": _INT,
                "price_micro_per_kwh": _NINT,
                "retail_micro_per_kwh": _INT,
                "feed_in_micro_per_kwh": _INT,
                "volume_wh": _INT,
                "grid_import_wh": _INT,
                "grid_export_wh": _INT,
                "trades": _INT,
            },
            nullable=True,
        ),
        "today": _ref("Kpi"),
        "run": _ref("Kpi"),
        "agents": _obj({"online": _INT, "known": _INT}),
        "rejections": _list(_obj({"interval": _INT, "reason": _STR, "count": _INT})),
        "anomalies": _list(
            {
                "type": "object",
                "properties": {"household": _STR, "interval": _INT, "kind": _STR},
                "required": ["interval", "kind"],
            }
        ),
        "ledger": _obj(
            {
                "tree_size": _INT,
                "root_hex": _NSTR,
                "kid": _NSTR,
                "trades": _INT,
                "last_verify": {"type": ["object", "null"]},
            }
        ),
    }
)
_COLUMNS = ("intervals", "price_micro_per_kwh", "retail_micro_per_kwh", "feed_in_micro_per_kwh")
_MARKET = _obj(
    {
        **{c: _list(_NINT if c == "price_micro_per_kwh" else _INT) for c in _COLUMNS},
        **{c: _list(_INT) for c in ("p2p_wh", "grid_import_wh", "grid_export_wh")},
        "metered_net_wh": _list(_INT),  # import - export of the interval's households
        "forecast_net_wh": _list(_NINT),  # the sum of the household forecasts heard
        "forecast_households": _list(_INT),  # how many households that sum covers
    }
)
_STEP = {"type": "array", "items": _NINT, "minItems": 2, "maxItems": 2}
_INTERVAL = _obj(
    {
        "interval": _INT,
        "price_micro_per_kwh": _NINT,
        "mechanism": _NSTR,
        "supply": _list(_STEP),
        "demand": _list(_STEP),
        "clearing": _obj({"volume_wh": _INT, "price_micro_per_kwh": _NINT}),
        "trades": _list(_ref("Trade")),
    }
)
_HOUSEHOLD_ROW = _obj(
    {
        "household": _STR,
        **{k: _INT for k in ("bill_micro", "grid_only_bill_micro", "savings_micro")},
        **{k: _INT for k in ("bought_wh", "sold_wh", "import_wh", "export_wh")},
        "self_sufficiency": _NUM,
    }
)
_SERIES = ("intervals", "import_wh", "export_wh", "bought_wh", "sold_wh", "actual_net_wh")
_FORECAST_SERIES = (
    "forecast_net_wh",  # demand - pv, the medians
    "forecast_net_p10_wh",  # demand_p10 - pv_p90
    "forecast_net_p90_wh",  # demand_p90 - pv_p10
    *(f"forecast_{t}{q}_wh" for t in ("demand", "pv") for q in ("", "_p10", "_p90")),
)
_TRAINED_ON = _obj({"tree_size": _INT, "root": _STR}, nullable=True)
_HOUSEHOLD = _obj(
    {
        "household": _STR,
        "series": {
            "type": "object",
            "description": "per interval; the forecast columns null where none was heard",
            "properties": {
                **{c: _list(_INT) for c in _SERIES},
                **{c: _list(_NINT) for c in _FORECAST_SERIES},
            },
            "required": [*_SERIES, *_FORECAST_SERIES],
        },
        "forecast": _obj(  # the latest forecast heard
            {"interval": _INT, "model": _STR, "version": _NSTR, "issued_s": _INT}
            | {"trained_on": _TRAINED_ON},
            nullable=True,
        ),
        "trades": _list(_ref("Trade")),
        "totals": {"type": "object"},
    }
)
_STATEMENT = {
    "type": "object",
    "description": "ledger.statement.Statement.to_json(): what `wattmesh ledger statement` prints",
    "properties": {
        "household": _STR,
        "rows": _list({"type": "object"}),
        "totals": {"type": "object"},
    },
}
_OPERATOR = _obj({"kid": _NSTR, "public_key_spki_b64": _NSTR, "origin": _NSTR})
_CHECKPOINTS = _obj(
    {
        "checkpoints": _list(
            _obj({"tree_size": _INT, "interval": _NINT, "root_hex": _STR, "kid": _STR})
        ),
        "operator": _OPERATOR,
    }
)
_PROOF = _obj(
    {
        "idx": _INT,
        "kind": _STR,
        "entry_b64": _STR,
        "leaf_hash_hex": _STR,
        "tree_size": _INT,
        "path_hex": _list(_STR),
        "root_hex": _STR,
        "checkpoint_text": _STR,
        "signature_der_b64": _STR,
        "operator": _obj({"kid": _NSTR, "public_key_spki_b64": _NSTR}),
    }
)
_FC_STATES = ["starting", "ok", "degraded", "stopped", "not heard", "not configured"]
_FORECASTER = _obj(
    {
        **{k: _BOOL for k in ("configured", "heard")},
        "state": {"enum": _FC_STATES},
        **{k: _NINT for k in ("started_s", "last_refit_s", "households", "heard_s", "age_s")},
        "counters": {"type": ["object", "null"], "additionalProperties": _INT},
        "trained_on": _TRAINED_ON,
    }
)
_HEALTH = _obj(
    {
        "status": {"enum": ["ok", "degraded"]},
        "ledger": _obj({"ok": _BOOL, "problem": _NSTR, "tree_size": _NINT}),
        "read_model": _obj({"applied_size": _INT, "lag_entries": _NINT, "lag_s": _NINT}),
        "broker": _obj({"configured": _BOOL, "connected": _BOOL}),
        "last_interval_closed": _NINT,
        "forecaster": _FORECASTER,
        "now_s": _INT,
    }
)
_CURRENCY: Schema = {"type": "string", "pattern": "^[A-Z]{3}$"}  # ISO 4217
_SESSION: Schema = {
    "type": "object",
    "properties": {
        "role": {"enum": ["anonymous", "household", "operator"]},
        "household": _NSTR,
        "currency": _CURRENCY,  # GET /api/session: the money's, for every page
    },
    "required": ["household", "role"],
}
_ERROR = _obj({"error": _obj({"status": _INT, "reason": _STR, "message": _STR})})

_SCHEMAS: dict[str, Schema] = {
    "Error": _ERROR,
    "Kpi": _KPI,
    "Trade": _TRADE,
    "Overview": _OVERVIEW,
    "Market": _MARKET,
    "Interval": _INTERVAL,
    "Households": _obj({"households": _list(_HOUSEHOLD_ROW)}),
    "Household": _HOUSEHOLD,
    "Statement": _STATEMENT,
    "Checkpoints": _CHECKPOINTS,
    "Trades": _obj({"trades": _list(_ref("Trade"))}),
    "Proof": _PROOF,
    "Health": _HEALTH,
    "Challenge": _obj({"household": _STR, "nonce": _STR, "origin": _STR, "expires_s": _INT}),
    "Ticket": _obj({"ticket": _STR, "url": _STR}),
    "Session": _SESSION,
}


def _error(description: str) -> Schema:
    return {"description": description, "content": {"application/json": {"schema": _ref("Error")}}}


_ERRORS = {
    "400": _error("bad parameters"),
    "401": _error("not logged in, or a login that does not prove who it claims"),
    "403": _error("logged in as another household"),
    "404": _error("unknown household, interval or entry"),
}


def _op(
    summary: str,
    schema: str,
    *,
    errors: tuple[str, ...] = (),
    params: list[Schema] | None = None,
    body: Schema | None = None,
    media: str = "application/json",
) -> Schema:
    op: Schema = {
        "summary": summary,
        "responses": {
            "200": {"description": "OK", "content": {media: {"schema": _ref(schema)}}},
            **{code: _ERRORS[code] for code in errors},
        },
    }
    if params:
        op["parameters"] = params
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _param(name: str, where: str = "query", schema: Schema = _INT) -> Schema:
    return {"name": name, "in": where, "required": where == "path", "schema": schema}


_H = ("401", "403", "404")  # a household's own figures


def openapi_document() -> dict[str, Any]:
    """The OpenAPI 3.1 document of every ``/api/`` endpoint."""
    household = _param("household", "path", _STR)
    statement_csv = _op("A household's statement as CSV (H)", "Statement", errors=_H)
    statement_csv["responses"]["200"]["content"] = {"text/csv": {"schema": _STR}}
    health = _op("Data lag, broker, database, last interval closed, forecaster (A)", "Health")
    health["responses"]["503"] = {
        "description": "the ledger database is unreachable",
        "content": {"application/json": {"schema": _ref("Health")}},
    }
    paths: dict[str, Any] = {
        "/api/overview": {"get": _op("The overview page (A)", "Overview")},
        "/api/market": {
            "get": _op(
                "Prices and volumes per interval, as columns (A)",
                "Market",
                errors=("400",),
                params=[_param("start"), _param("end")],
            )
        },
        "/api/market/intervals/{interval}": {
            "get": _op(
                "One interval's order book, clearing and trades (A)",
                "Interval",
                errors=("400", "404"),
                params=[_param("interval", "path")],
            )
        },
        "/api/households": {
            "get": _op(
                "Bills and savings per household (O; H sees its own row)",
                "Households",
                errors=("401",),
            )
        },
        "/api/households/{household}": {
            "get": _op("One household's page (H)", "Household", errors=_H, params=[household])
        },
        "/api/households/{household}/statement": {
            "get": _op("A household's statement (H)", "Statement", errors=_H, params=[household])
        },
        "/api/households/{household}/statement.csv": {
            "get": {**statement_csv, "parameters": [household]}
        },
        "/api/ledger/checkpoints": {
            "get": _op(
                "Signed checkpoints, newest first (A)",
                "Checkpoints",
                errors=("400",),
                params=[_param("limit")],
            )
        },
        "/api/ledger/trades": {
            "get": _op(
                "Logged trades, newest first (A)",
                "Trades",
                errors=("400",),
                params=[_param("interval"), _param("household", schema=_STR), _param("limit")],
            )
        },
        "/api/ledger/entries/{idx}/proof": {
            "get": _op(
                "A log entry's inclusion proof and signed checkpoint (A for public entries, "
                "H for a household's own)",
                "Proof",
                errors=("400", *_H),
                params=[_param("idx", "path")],
            )
        },
        "/api/health": {"get": health},
        "/api/login/challenge": {
            "post": _op(
                "A challenge for a household to sign (A)",
                "Challenge",
                errors=("400", "401"),
                body=_obj({"household": _STR}),
            )
        },
        "/api/login": {
            "post": _op(
                "The signed challenge; a single-use login link (A)",
                "Ticket",
                errors=("400", "401"),
                body=_obj({"household": _STR, "nonce": _STR, "signature_der_b64": _STR}),
            )
        },
        "/api/login/operator": {
            "post": _op(
                "The operator's token; sets the session cookie (A)",
                "Session",
                errors=("400", "401"),
                body=_obj({"token": _STR}),
            )
        },
        "/api/logout": {"post": _op("Ends the session (A)", "Session")},
        "/api/session": {"get": _op("Who the session cookie logs in (A)", "Session")},
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "wattmesh trade dashboard",
            "version": "1",
            "description": (
                "Energy in integer Wh, money in integer micro-units, prices in micro-units "
                "per kWh, times in epoch seconds. A: anyone; H: that household or the "
                "operator; O: the operator. Live events: the WebSocket at /ws."
            ),
        },
        "paths": paths,
        "components": {"schemas": _SCHEMAS},
    }
