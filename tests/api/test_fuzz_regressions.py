"""Regression tests for what the schemathesis run (tests/api/test_schema_fuzz.py)
found: a 5xx, a response the OpenAPI document did not describe, or the document
and the server disagreeing on what is valid. One test per finding, against the
in-process service."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import jsonschema
import pytest

from router.api.openapi import build
from tests.support.client import ADM, GW, SUP, add_agent, create, put_config, small_config

DOC = build()
WS_PATH = "/v1/workspaces/{ws}"


def _refs(node: object) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def schema_of(name: str) -> dict[str, Any]:
    """A component schema with the document's components, for jsonschema."""
    return {**DOC["components"]["schemas"][name], "components": DOC["components"]}


def operation(method: str, path: str) -> dict[str, Any]:
    return DOC["paths"][WS_PATH + path][method]  # type: ignore[no-any-return]


def query_schema(method: str, path: str, name: str) -> dict[str, Any]:
    params = operation(method, path)["parameters"]
    return next(p["schema"] for p in params if p["name"] == name)  # type: ignore[no-any-return]


def test_every_reference_resolves() -> None:
    # Found: the bodies of resolve, rating, pause and resume named schemas the
    # document did not contain, so no client could know them.
    schemas = DOC["components"]["schemas"]
    missing = {r for r in _refs(DOC) if r.removeprefix("#/components/schemas/") not in schemas}
    assert not missing
    for action, body in (("resolve", "ReasonIn"), ("rating", "RatingIn"), ("pause", "ClockIn")):
        content = operation("post", "/contacts/{contact_id}/" + action)["requestBody"]["content"]
        assert content["application/json"]["schema"]["$ref"].endswith("/" + body)


def test_links_name_existing_operations_and_parameters() -> None:
    ops = {
        op["operationId"]: op
        for item in DOC["paths"].values()
        for op in item.values()
        if "operationId" in op
    }
    assert len(ops) == 29  # every workspace operation
    links = 0
    for op in ops.values():
        for response in op["responses"].values():
            for link in response.get("links", {}).values():
                target = ops[link["operationId"]]
                names = {p["name"] for p in target["parameters"]}
                assert set(link["parameters"]) <= names, link
                links += 1
    assert links >= 50
    created = operation("post", "/contacts")["responses"]["201"]["links"]
    assert created["GetContact"]["parameters"]["contact_id"] == "$response.body#/id"
    assert created["Accept"]["requestBody"] == {"agent_id": "$response.body#/agent"}


async def test_a_retried_create_is_a_documented_200(api: Any, ws: str) -> None:
    # Found: POST /contacts answers 200 to a retry (idempotent on id); only 201
    # was documented.
    await put_config(api, ws, small_config())
    await create(api, ws, "c1")
    body = {"id": "c1", "channel": "voice", "customer": {"id": "cu-c1"}}
    r = await api.post(f"/v1/workspaces/{ws}/contacts", json=body, headers=GW)
    assert r.status == 200 and (await r.json())["created"] is False
    assert "200" in operation("post", "/contacts")["responses"]


async def test_wrong_method_lists_the_allowed_ones(api: Any, ws: str) -> None:
    # Found: the problem+json body replaced aiohttp's 405 and dropped its Allow
    # header, which RFC 9110 requires.
    await put_config(api, ws, small_config())
    r = await api.delete(f"/v1/workspaces/{ws}/contacts/c1", headers=ADM)
    assert r.status == 405 and r.content_type == "application/problem+json"
    assert "GET" in r.headers["Allow"].split(",")


async def test_forecast_for_a_day_before_the_epoch_is_refused(api: Any, ws: str) -> None:
    # Found: day=0001-01-01 was a 500 (date arithmetic below year 1).
    await put_config(api, ws, small_config())
    for day in ("0001-01-01", "1969-12-31"):
        r = await api.get(f"/v1/workspaces/{ws}/pools/cards/forecast?day={day}", headers=SUP)
        problem = await r.json()
        assert r.status == 422 and problem["field"] == "day", problem


async def test_forecast_without_that_weekday_in_the_history_is_refused(api: Any, ws: str) -> None:
    # Found: a pool whose arrivals began today had its forecast for tomorrow
    # (the default day) answered 500: no same weekday to fall back on.
    await put_config(api, ws, small_config())
    await create(api, ws, "c1")  # today's arrivals are recorded
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/forecast", headers=SUP)
    problem = await r.json()
    assert r.status == 422 and problem["field"] == "day", problem
    tomorrow = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=1)
    assert f"{tomorrow:%A}" in problem["detail"]


async def test_zero_shrinkage_is_honoured(api: Any, ws: str) -> None:
    # Found reading the what-if inputs: shrinkage=0 fell back to the 30% default.
    await put_config(api, ws, small_config())
    r = await api.get(f"/v1/workspaces/{ws}/pools/cards/staffing?shrinkage=0", headers=SUP)
    out = await r.json()
    assert r.status == 200 and out["inputs"]["shrinkage"] == 0, out


async def test_wallboard_page_refuses_a_malformed_workspace(api: Any, ws: str) -> None:
    # Found: the static page answered 200 for any path, e.g. /v1/workspaces/%C3%B5/wallboard.
    r = await api.get("/v1/workspaces/%C3%B5~/wallboard")
    assert r.status == 404 and (await r.json())["field"] == "ws"
    r = await api.get(f"/v1/workspaces/{ws}/wallboard")
    assert r.status == 200 and r.content_type == "text/html"
    # and the document says so (it said application/json)
    assert list(operation("get", "/wallboard")["responses"]["200"]["content"]) == ["text/html"]


async def test_event_stream_refuses_a_malformed_after_beside_last_event_id(
    api: Any, ws: str
) -> None:
    # Found: with Last-Event-ID (a reconnect) a malformed `after` was ignored.
    await put_config(api, ws, small_config())
    headers = {**SUP, "Last-Event-ID": "0"}
    r = await api.get(f"/v1/workspaces/{ws}/events/stream?after=", headers=headers)
    assert r.status == 400 and (await r.json())["field"] == "after"


async def test_an_empty_last_event_id_is_documented_as_absent(api: Any, ws: str) -> None:
    # Found: an empty Last-Event-ID (the stream starts with new events) broke
    # the documented pattern, which allowed only event ids.
    schema = next(
        p["schema"]
        for p in operation("get", "/events/stream")["parameters"]
        if p["name"] == "Last-Event-ID"
    )
    resume = jsonschema.Draft202012Validator(schema)
    assert resume.is_valid("") and resume.is_valid("1718000000123-0")
    assert not resume.is_valid("soon")
    await put_config(api, ws, small_config())
    r = await api.get(
        f"/v1/workspaces/{ws}/events/stream", headers={**SUP, "Last-Event-ID": "soon"}
    )
    assert r.status == 400 and (await r.json())["field"] == "Last-Event-ID"


def test_streams_document_their_events() -> None:
    # Found: each server-sent event (an object of event, id and data) was
    # documented as a string, and the wallboard stream as application/json.
    for path, data in (("/events/stream", "CloudEvent"), ("/wallboard/stream", "Board")):
        content = operation("get", path)["responses"]["200"]["content"]
        event = content["text/event-stream"]["schema"]
        assert event["properties"]["data"]["contentSchema"]["$ref"].endswith("/" + data)


@pytest.mark.parametrize(
    ("body", "valid"),
    [
        ({"pool": "loans"}, True),
        ({"agent_id": "a2", "pool": None, "reason": "callback"}, True),
        ({}, False),
        ({"pool": "loans", "agent_id": "a2"}, False),
        ({"pool": None, "agent_id": None}, False),
    ],
)
async def test_transfer_schema_says_exactly_one_target(
    api: Any, ws: str, body: dict[str, Any], valid: bool
) -> None:
    # Found: the schema allowed {} and both targets; the server wants exactly one.
    schema_says = jsonschema.Draft202012Validator(schema_of("TransferIn")).is_valid(body)
    assert schema_says == valid
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a2", {"loans": 3}, available=False)
    await create(api, ws, "c1")
    r = await api.post(f"/v1/workspaces/{ws}/contacts/c1/transfer", json=body, headers=GW)
    assert (r.status == 200) == valid, await r.text()


async def test_event_type_filter_is_documented_as_checked(api: Any, ws: str) -> None:
    # Found: `type` was documented as any string; the server refuses most.
    await put_config(api, ws, small_config())
    pattern = jsonschema.Draft202012Validator(query_schema("get", "/events", "type"))
    for value, status in (("", 200), ("contact.created", 200), ("sla.*", 200), ("a b", 422)):
        assert pattern.is_valid(value) == (status == 200), value
        r = await api.get(f"/v1/workspaces/{ws}/events?type={value}", headers=SUP)
        assert r.status == status, (value, await r.text())


@pytest.mark.parametrize(
    ("name", "low", "high"),
    [("rate", 0, 10_000), ("aht", 1, 86_400), ("shrinkage", 0, 0.95), ("max_occupancy", 0.05, 1)],
)
async def test_staffing_inputs_are_documented_with_their_ranges(
    api: Any, ws: str, name: str, low: float, high: float
) -> None:
    # Found: what-if inputs were documented as any number; aht=0 got a 422.
    schema = query_schema("get", "/pools/{pool_id}/staffing", name)
    assert (schema["minimum"], schema["maximum"]) == (low, high)
    await put_config(api, ws, small_config())
    base = f"/v1/workspaces/{ws}/pools/cards/staffing?{name}="
    # (a high rate may still be refused: more agents than the model sizes)
    for value, status in ((low, 200), (low - 1, 422), (high * 2 + 1, 422)):
        r = await api.get(base + json.dumps(value), headers=SUP)
        assert r.status == status, (name, value, await r.text())
