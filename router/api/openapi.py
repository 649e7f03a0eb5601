"""The OpenAPI 3.1 document, generated from the same msgspec types that validate requests."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from router.api.events import LIMIT_MAX, CloudEvent, EventPage
from router.api.openapi_history import TYPES as HISTORY_TYPES
from router.api.openapi_history import config_history_routes
from router.api.openapi_links import add_links
from router.api.openapi_parts import NAME, PROBLEM, Route, operation, path_params, query, ref
from router.api.openapi_supervise import TYPES as SUPERVISE_TYPES
from router.api.openapi_supervise import supervise_routes
from router.api.reports import BY, MOMENT, ServiceReport, SlaReport, SurveyReport
from router.api.wallboard import Board
from router.api.wfm import ForecastOut, StaffingOut
from router.routing.config import RoutingConfig, StoredConfig
from router.routing.model import (
    AbandonIn,
    AgentIn,
    AgentOut,
    AgentRef,
    AgentStateIn,
    CallbackAttemptIn,
    CallbackIn,
    ClockIn,
    CompleteIn,
    ContactIn,
    ContactOut,
    ContactPatch,
    PositionOut,
    RatingIn,
    ReasonIn,
    TransferIn,
)
from router.routing.surveys import SCALES
from router.wfm.pools import PoolStats

_TYPES: tuple[Any, ...] = (
    RoutingConfig,
    StoredConfig,
    AgentIn,
    AgentOut,
    AgentStateIn,
    AgentRef,
    CompleteIn,
    AbandonIn,
    TransferIn,
    ReasonIn,
    RatingIn,
    ClockIn,
    CallbackIn,
    CallbackAttemptIn,
    ContactIn,
    ContactOut,
    PositionOut,
    ContactPatch,
    PoolStats,
    StaffingOut,
    ForecastOut,
    CloudEvent,
    EventPage,
    Board,
    ServiceReport,
    SlaReport,
    SurveyReport,
    *HISTORY_TYPES,
    *SUPERVISE_TYPES,
)
# What-if inputs of staffing and forecast: (minimum, maximum, description).
_WFM: dict[str, tuple[float, float, str]] = {
    "rate": (0, 10_000, "Arrivals per second"),
    "aht": (1, 86_400, "Average handle time in seconds"),
    "patience": (1, 86_400, "Average patience in seconds before abandoning"),
    "shrinkage": (0, 0.95, "Share of paid time off the phones (default 0.3)"),
    "max_occupancy": (0.05, 1, "Highest occupancy planned for (default 0.85)"),
}


def _wfm_params(*names: str) -> list[dict[str, Any]]:
    return [
        query(n, {"type": "number", "minimum": _WFM[n][0], "maximum": _WFM[n][1]}, _WFM[n][2])
        for n in names
    ]


def _event_params(page: bool = True) -> list[dict[str, Any]]:
    cursor = {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"}
    params = [
        query("after", cursor, "Event id to read after (the `next` of the previous page)"),
        query(
            "type",
            {"type": "string", "pattern": "^([A-Za-z0-9_.-]{1,100}\\*?)?$"},
            "Exact event type, or a prefix ending in . or *",
        ),
    ]
    if page:
        limit = {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 100}
        params.append(query("limit", limit, "Entries read (a filtered page may be shorter)"))
    else:
        # empty: as if not sent (browsers send it only once an event had an id)
        resume = {"type": "string", "pattern": "^([0-9]{1,20}(-[0-9]{1,20})?)?$"}
        params.append(
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": resume}
        )
    return params


def _stream_op(
    summary: str, data: Any, params: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """A server-sent event stream; the schema is one event, its `data` the JSON of `data`."""
    op = operation(summary, {}, params=params)
    event = {
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": data,
            },
        },
    }
    op["responses"]["200"]["content"] = {"text/event-stream": {"schema": event}}
    return op


_ACTIONS: tuple[tuple[str, Any], ...] = (
    ("accept", AgentRef),
    ("reject", AgentRef),
    ("complete", CompleteIn),
    ("abandon", AbandonIn),
    ("transfer", TransferIn),
    ("resolve", ReasonIn),
    ("respond", AgentRef),
    ("rating", RatingIn),
    ("pause", ClockIn),
    ("resume", ClockIn),
    ("callback", CallbackIn),
    ("callback/attempts", CallbackAttemptIn),
)


def _components() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    components["Problem"] = PROBLEM
    # Exactly one of pool or agent_id (the handler refuses both and neither);
    # a null counts as absent.
    components["TransferIn"]["oneOf"] = [
        {"required": [a], "properties": {a: {"type": "string"}, b: {"type": "null"}}}
        for a, b in (("pool", "agent_id"), ("agent_id", "pool"))
    ]
    # Each survey kind's own scale (the handler checks it too, and that the
    # workspace collects the kind).
    components["RatingIn"]["allOf"] = [
        {
            "if": {"required": ["kind"], "properties": {"kind": {"const": kind}}},
            "then": {"properties": {"score": {"minimum": low, "maximum": high}}},
        }
        for kind, (low, high) in SCALES.items()
    ]
    return components


def _config_routes(b: str) -> list[Route]:
    return [
        (
            "put",
            b,
            operation("Replace the routing config (new version)", ref(StoredConfig), RoutingConfig),
        ),
        ("get", b, operation("Current routing config", ref(StoredConfig))),
    ]


def _agent_routes(b: str) -> list[Route]:
    offers = {
        "type": "object",
        "required": ["agent_id", "offers"],
        "properties": {
            "agent_id": {"type": "string"},
            "offers": {"type": "array", "items": ref(ContactOut)},
        },
    }
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "minimum": 0, "maximum": 60},
    }
    a = b + "/agents/{agent_id}"
    return [
        ("put", a, operation("Create or update an agent", ref(AgentOut), AgentIn)),
        ("get", a, operation("An agent", ref(AgentOut))),
        ("post", a + "/state", operation("Change agent state", ref(AgentOut), AgentStateIn)),
        ("get", a + "/offers", operation("Pending offers (long-poll)", offers, params=[wait])),
        (
            "get",
            a + "/ws",
            operation("WebSocket push of offers and state", {"type": "object"}, status=101),
        ),
    ]


def _contact_routes(b: str) -> list[Route]:
    routes: list[Route] = [
        (
            "post",
            b + "/contacts",
            operation(
                "Create a contact (idempotent on id)", ref(ContactOut), ContactIn, status=201
            ),
        ),
        (
            "get",
            b + "/contacts/{contact_id}",
            operation("A contact with its timeline", ref(ContactOut)),
        ),
        (
            "get",
            b + "/contacts/{contact_id}/position",
            operation(
                "A waiting contact's place in each of its pools and its expected wait "
                "(409 when it is not waiting)",
                ref(PositionOut),
            ),
        ),
    ]
    update = operation(
        "Change a waiting or served contact's tier, intent, attributes, skills or boost "
        "(JSON Merge Patch): re-ranked from its arrival, re-routed, SLA clocks re-planned",
        ref(ContactOut),
        ContactPatch,
    )
    content = update["requestBody"]["content"]
    content["application/merge-patch+json"] = content["application/json"]
    routes.append(("patch", b + "/contacts/{contact_id}", update))
    summaries = {
        "rating": "Rate a served contact: one survey answer (csat 1..5, nps 0..10) per kind; "
        "the same score again is a retry, another 409",
        "callback": "Turn a waiting contact into a callback: it keeps its place "
        "(optionally for a window, local times in the workspace's timezone)",
        "callback/attempts": "The holding agent's outcome of one callback dial "
        "(answered, no_answer, busy)",
        "complete": "Complete a contact (or end its wrap-up), optionally with its real intent "
        "as the agent found it (for a bot hand-off: whether the bot's intent was right)",
    }
    for action, typ in _ACTIONS:
        summary = summaries.get(action, f"{action.capitalize()} a contact")
        op = operation(summary, ref(ContactOut), typ)
        routes.append(("post", b + "/contacts/{contact_id}/" + action, op))
    return routes


def _pool_routes(b: str) -> list[Route]:
    pools = {
        "type": "object",
        "required": ["pools"],
        "properties": {"pools": {"type": "array", "items": ref(PoolStats)}},
    }
    forecast = operation(
        "A day's arrivals per 15 minutes from recorded arrivals, and agents needed",
        ref(ForecastOut),
        params=[
            query("day", {"type": "string", "format": "date"}, "1970-01-01 or later"),
            query("channel", NAME, "Only arrivals of this channel (the pool serves it)"),
            *_wfm_params("patience", "shrinkage"),
        ],
    )
    staffing = operation(
        "Agents needed (Erlang C and A) from live traffic; what-if by query",
        ref(StaffingOut),
        params=_wfm_params("rate", "aht", "patience", "shrinkage", "max_occupancy"),
    )
    return [
        ("get", b + "/pools", operation("Live statistics of every pool", pools)),
        ("get", b + "/pools/{pool_id}", operation("Live statistics of one pool", ref(PoolStats))),
        ("get", b + "/pools/{pool_id}/forecast", forecast),
        ("get", b + "/pools/{pool_id}/staffing", staffing),
    ]


def _event_routes(b: str) -> list[Route]:
    page = operation("Events after a cursor (CloudEvents)", ref(EventPage), params=_event_params())
    stream = _stream_op(
        "Server-sent events (CloudEvents in data)", ref(CloudEvent), _event_params(page=False)
    )
    wallboard = operation("Wallboard page (HTML; token in the URL fragment)", {"type": "string"})
    tiles = _stream_op("Wallboard tiles as server-sent events (event: tiles)", ref(Board))
    return [
        ("get", b + "/events", page),
        ("get", b + "/events/stream", stream),
        ("get", b + "/wallboard", {**wallboard, "security": []}),
        ("get", b + "/wallboard/stream", tiles),
    ]


_REPORT_PARAMS: tuple[tuple[str, str], ...] = (
    ("from", "Start: ISO date or datetime, local to the workspace without an offset (today)"),
    ("to", "End: a date includes that whole day, a datetime is exclusive (end of from's day)"),
)
_INTERVAL = {"type": "string", "enum": ["15m", "hour", "day", "month"], "default": "day"}


def _report_op(summary: str, report: Any, grouped: bool) -> dict[str, Any]:
    moment = {"type": "string", "pattern": MOMENT}
    params = [query(name, moment, text) for name, text in _REPORT_PARAMS]
    params.append(query("interval", _INTERVAL, "Rows per interval of local time"))
    if grouped:
        by = {"type": "string", "pattern": BY}
        params.append(query("by", by, "Group by: comma list of pool, channel, tier, intent, team"))
    op = operation(summary, ref(report), params=params)
    ok = op["responses"]["200"]
    ok["content"]["text/csv"] = {"schema": {"type": "string"}}
    ok["headers"] = {"Vary": {"schema": {"type": "string"}}}
    op["responses"]["503"]["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
    return op


def _report_routes(b: str) -> list[Route]:
    r = b + "/reports"
    service = "Service level, ASA, AHT, abandons per interval (history)"
    sla = "SLA outcomes and escalations per interval, policy and clock (history)"
    return [
        ("get", r + "/service", _report_op(service, ServiceReport, True)),
        ("get", r + "/sla", _report_op(sla, SlaReport, False)),
        ("get", r + "/surveys", _report_op("CSAT and NPS per interval", SurveyReport, True)),
    ]


def _probe_paths() -> dict[str, dict[str, Any]]:
    return {
        "/healthz": {"get": {"summary": "Process up", "responses": {"200": {"description": "OK"}}}},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/readyz": {
            "get": {
                "summary": "Redis reachable and scripts loaded",
                "responses": {"200": {"description": "ready"}, "503": {"description": "not ready"}},
            }
        },
    }


def build() -> dict[str, Any]:
    b = "/v1/workspaces/{ws}"
    paths = _probe_paths()
    for routes in (
        _config_routes,
        config_history_routes,
        _agent_routes,
        _contact_routes,
        _pool_routes,
        _event_routes,
        _report_routes,
        supervise_routes,
    ):
        for method, path, op in routes(b):
            op["parameters"] = path_params(path) + op["parameters"]
            paths.setdefault(path, {})[method] = op
    # A retried create answers 200 with the contact it made the first time.
    created = paths[b + "/contacts"]["post"]["responses"]
    created["200"] = {**created["201"], "description": "The existing contact (a retry)"}
    page = paths[b + "/wallboard"]["get"]["responses"]["200"]
    page["content"] = {"text/html": {"schema": {"type": "string"}}}
    add_links(paths, b)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Contact router", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": _components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_DOC = msgspec.json.encode(build())


async def openapi(_: web.Request) -> web.Response:
    return web.Response(body=_DOC, content_type="application/json")
