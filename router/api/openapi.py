"""The OpenAPI 3.1 document, generated from the same msgspec types that validate requests."""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from router.api.events import LIMIT_MAX, CloudEvent, EventPage
from router.api.wfm import ForecastOut, StaffingOut
from router.config import RoutingConfig, StoredConfig
from router.model import (
    AbandonIn,
    AgentIn,
    AgentOut,
    AgentRef,
    AgentStateIn,
    ClockIn,
    ContactIn,
    ContactOut,
    RatingIn,
    ReasonIn,
    TransferIn,
)
from router.pools import PoolStats

_TYPES: tuple[Any, ...] = (
    RoutingConfig,
    StoredConfig,
    AgentIn,
    AgentOut,
    AgentStateIn,
    AgentRef,
    AbandonIn,
    TransferIn,
    ContactIn,
    ContactOut,
    PoolStats,
    StaffingOut,
    ForecastOut,
    CloudEvent,
    EventPage,
)
_PROBLEM = {
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "field": {"type": "string"},
        "state": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
}


def _ref(t: Any) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{t.__name__}"}


def _op(
    summary: str,
    ok: Any,
    body: Any = None,
    status: int = 200,
    params: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    problem = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}
    responses: dict[str, Any] = {
        str(status): {"description": "OK", "content": {"application/json": {"schema": ok}}},
    }
    for code in ("400", "401", "403", "404", "409", "413", "422", "429", "503"):
        responses[code] = {"description": "Problem", "content": problem}
    op: dict[str, Any] = {
        "summary": summary,
        "responses": responses,
        "parameters": params or [],
        "security": [{"bearer": []}],
    }
    if body is not None:
        op["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": _ref(body)}},
        }
    return op


def _path_params(path: str) -> list[dict[str, Any]]:
    names = [p[1:-1] for p in path.split("/") if p.startswith("{")]
    return [
        {
            "name": n,
            "in": "path",
            "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9_.:@-]{1,128}$"},
        }
        for n in names
    ]


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
    }


def _event_params(page: bool = True) -> list[dict[str, Any]]:
    cursor = {"type": "string", "pattern": "^[0-9]{1,20}(-[0-9]{1,20})?$"}
    params = [
        _query("after", cursor, "Event id to read after (the `next` of the previous page)"),
        _query("type", {"type": "string"}, "Exact event type, or a prefix ending in . or *"),
    ]
    if page:
        limit = {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX, "default": 100}
        params.append(_query("limit", limit, "Entries read (a filtered page may be shorter)"))
    else:
        params.append(
            {"name": "Last-Event-ID", "in": "header", "required": False, "schema": cursor}
        )
    return params


def _event_stream_op() -> dict[str, Any]:
    op = _op("Server-sent events (CloudEvents in data)", {}, params=_event_params(page=False))
    op["responses"]["200"]["content"] = {"text/event-stream": {"schema": {"type": "string"}}}
    return op


def build() -> dict[str, Any]:
    _, components = msgspec.json.schema_components(
        _TYPES, ref_template="#/components/schemas/{name}"
    )
    components["Problem"] = _PROBLEM
    b = "/v1/workspaces/{ws}"
    routes: list[tuple[str, str, dict[str, Any]]] = [
        (
            "put",
            b,
            _op("Replace the routing config (new version)", _ref(StoredConfig), RoutingConfig),
        ),
        ("get", b, _op("Current routing config", _ref(StoredConfig))),
        (
            "put",
            b + "/agents/{agent_id}",
            _op("Create or update an agent", _ref(AgentOut), AgentIn),
        ),
        ("get", b + "/agents/{agent_id}", _op("An agent", _ref(AgentOut))),
        (
            "post",
            b + "/agents/{agent_id}/state",
            _op("Change agent state", _ref(AgentOut), AgentStateIn),
        ),
        (
            "get",
            b + "/agents/{agent_id}/offers",
            _op(
                "Pending offers (long-poll)",
                {"type": "object"},
                params=[
                    {
                        "name": "wait",
                        "in": "query",
                        "required": False,
                        "schema": {"type": "number", "minimum": 0, "maximum": 60},
                    }
                ],
            ),
        ),
        (
            "get",
            b + "/agents/{agent_id}/ws",
            _op("WebSocket push of offers and state", {"type": "object"}, status=101),
        ),
        (
            "post",
            b + "/contacts",
            _op("Create a contact (idempotent on id)", _ref(ContactOut), ContactIn, status=201),
        ),
        ("get", b + "/contacts/{contact_id}", _op("A contact with its timeline", _ref(ContactOut))),
        ("get", b + "/pools", _op("Live statistics of every pool", {"type": "object"})),
        ("get", b + "/pools/{pool_id}", _op("Live statistics of one pool", _ref(PoolStats))),
        (
            "get",
            b + "/pools/{pool_id}/forecast",
            _op(
                "A day's arrivals per 15 minutes from recorded arrivals, and agents needed",
                _ref(ForecastOut),
                params=[
                    {"name": n, "in": "query", "required": False, "schema": {"type": t}}
                    for n, t in (
                        ("day", "string"),
                        ("channel", "string"),
                        ("patience", "number"),
                        ("shrinkage", "number"),
                    )
                ],
            ),
        ),
        (
            "get",
            b + "/pools/{pool_id}/staffing",
            _op(
                "Agents needed (Erlang C and A) from live traffic; what-if by query",
                _ref(StaffingOut),
                params=[
                    {"name": n, "in": "query", "required": False, "schema": {"type": "number"}}
                    for n in ("rate", "aht", "patience", "shrinkage", "max_occupancy")
                ],
            ),
        ),
        (
            "get",
            b + "/events",
            _op("Events after a cursor (CloudEvents)", _ref(EventPage), params=_event_params()),
        ),
        ("get", b + "/events/stream", _event_stream_op()),
        (
            "get",
            b + "/wallboard",
            {
                **_op("Wallboard page (HTML; token in the URL fragment)", {"type": "string"}),
                "security": [],
            },
        ),
        (
            "get",
            b + "/wallboard/stream",
            _op("Wallboard tiles as server-sent events (event: tiles)", {"type": "string"}),
        ),
    ]
    for action, typ in (
        ("accept", AgentRef),
        ("reject", AgentRef),
        ("complete", AgentRef),
        ("abandon", AbandonIn),
        ("transfer", TransferIn),
        ("resolve", ReasonIn),
        ("respond", AgentRef),
        ("rating", RatingIn),
        ("pause", ClockIn),
        ("resume", ClockIn),
    ):
        routes.append(
            (
                "post",
                b + "/contacts/{contact_id}/" + action,
                _op(f"{action.capitalize()} a contact", _ref(ContactOut), typ),
            )
        )
    paths: dict[str, dict[str, Any]] = {
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
    for method, path, op in routes:
        op["parameters"] = _path_params(path) + op["parameters"]
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "Contact router", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


_DOC = msgspec.json.encode(build())


async def openapi(_: web.Request) -> web.Response:
    return web.Response(body=_DOC, content_type="application/json")
