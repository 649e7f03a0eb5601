"""The event stream over HTTP: CloudEvents pages, cursors, filters, roles and SSE."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any

import msgspec
import pytest

from router.api import events as ev
from router.api.events import EVENT_STREAMS, MAX_STREAMS, EventPage, cloudevent
from tests.support.client import ADM, AG, GW, SUP, act, add_agent, create, put_config, small_config

RFC3339_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
STREAM_ID = re.compile(r"^\d+-\d+$")
REQUIRED = ("specversion", "id", "source", "type")


async def page(api: Any, ws: str, query: str = "", headers: Any = SUP) -> dict[str, Any]:
    r = await api.get(f"/v1/workspaces/{ws}/events{query}", headers=headers)
    assert r.status == 200, await r.text()
    raw = await r.read()
    msgspec.json.decode(raw, type=EventPage)  # matches the documented schema
    return msgspec.json.decode(raw)  # type: ignore[no-any-return]


async def everything(api: Any, ws: str, query: str = "") -> list[dict[str, Any]]:
    return (await page(api, ws, "?limit=1000" + query))["events"]  # type: ignore[no-any-return]


def check_cloudevent(ce: dict[str, Any], ws: str) -> None:
    for name in REQUIRED:
        assert isinstance(ce[name], str) and ce[name], name
    assert ce["specversion"] == "1.0"
    assert STREAM_ID.match(ce["id"])
    assert ce["source"] == f"/v1/workspaces/{ws}"
    assert ce["datacontenttype"] == "application/json"
    assert RFC3339_MS.match(ce["time"]), ce["time"]
    at = datetime.strptime(ce["time"], "%Y-%m-%dT%H:%M:%S.%f%z")
    assert abs(at.timestamp() - time.time()) < 60
    assert isinstance(ce["data"], dict) and "type" not in ce["data"] and "at" not in ce["data"]
    assert ce["data"]["actor"] == ce["actor"]
    # extension attribute names: lowercase letters and digits only
    assert all(re.match(r"^[a-z0-9]{1,20}$", k) for k in ce if k != "data")


# --- pure rendering -----------------------------------------------------------


def test_cloudevent_renders_a_stored_event() -> None:
    stored = {
        "type": "contact.offered",
        "at": 1718000000123,
        "actor": "gateway:gw1",
        "contact": "c1",
        "agent": "a1",
        "state": "offered",
        "reason": "r",
        "explain": {"rank": 1},
    }
    assert cloudevent("demo", "1718000000123-4", stored) == {
        "specversion": "1.0",
        "id": "1718000000123-4",
        "source": "/v1/workspaces/demo",
        "type": "contact.offered",
        "time": "2024-06-10T06:13:20.123Z",
        "subject": "c1",
        "datacontenttype": "application/json",
        "actor": "gateway:gw1",
        "data": {
            "actor": "gateway:gw1",
            "contact": "c1",
            "agent": "a1",
            "state": "offered",
            "reason": "r",
            "explain": {"rank": 1},
        },
    }
    agent = cloudevent("demo", "1-0", {"type": "agent.created", "at": 5, "agent": "a9"})
    assert agent["subject"] == "a9" and agent["time"] == "1970-01-01T00:00:00.005Z"
    assert "actor" not in agent
    config = cloudevent("demo", "1-0", {"type": "config.updated", "at": 0, "version": 2})
    assert "subject" not in config and config["data"] == {"version": 2}


def test_cursor_and_type_parsing() -> None:
    assert ev.parse_cursor("17") == "17-0"
    assert ev.parse_cursor("17-3") == "17-3"
    for bad in ("", "x", "1-2-3", "-1", "1-", str(2**64), "1-" + str(2**64), "$"):
        with pytest.raises(ev.BadRequest):
            ev.parse_cursor(bad)
    assert ev.type_matcher("sla.*")("sla.breached")
    assert not ev.type_matcher("sla.*")("slax.breached")
    assert ev.type_matcher("contact.")("contact.created")
    assert ev.type_matcher("contact.created")("contact.created")
    assert not ev.type_matcher("contact.created")("contact.created2")
    assert ev.type_matcher(None)("anything")


# --- pages --------------------------------------------------------------------


async def test_contact_lifecycle_events_in_order(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    assert (await create(api, ws, "c1"))["agent"] == "a1"
    assert (await act(api, ws, "c1", "accept", agent_id="a1")).status == 200
    body = await page(api, ws, "?type=contact.")
    events = body["events"]
    assert [e["type"] for e in events] == ["contact.created", "contact.offered", "contact.assigned"]
    for ce in events:
        check_cloudevent(ce, ws)
        assert ce["subject"] == "c1" and ce["data"]["contact"] == "c1"
    assert [e["actor"].split(":")[0] for e in events] == ["gateway", "gateway", "agent"]
    assert events[1]["data"]["agent"] == "a1" and events[1]["data"]["state"] == "offered"
    assert events[2]["data"]["state"] == "assigned"
    ids = [e["id"] for e in events]
    assert ids == sorted(ids, key=lambda i: tuple(map(int, i.split("-"))))
    assert body["next"] == (await everything(api, ws))[-1]["id"]
    raw = await (await api.get(f"/v1/workspaces/{ws}/events", headers=SUP)).text()
    assert "cu-c1" not in raw  # no customer identity in events


async def test_paging_returns_each_event_once(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    for i in range(5):
        await create(api, ws, f"c{i}")
    full = await everything(api, ws)
    assert len(full) >= 8
    seen: list[str] = []
    cursor = ""
    for _ in range(50):
        body = await page(api, ws, "?limit=3" + (f"&after={cursor}" if cursor else ""))
        assert len(body["events"]) <= 3
        seen += [e["id"] for e in body["events"]]
        if not body["events"]:
            assert body["next"] == cursor  # up to date: the cursor stays
            break
        cursor = body["next"]
    assert seen == [e["id"] for e in full]
    later = await create(api, ws, "late")
    body = await page(api, ws, f"?after={cursor}")
    assert [e["subject"] for e in body["events"]] == [later["id"]]


async def test_type_filter_by_prefix_and_exact(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    await add_agent(api, ws, "a1", {"cards": 5})
    await create(api, ws, "c1")
    await create(api, ws, "c2")
    full = await everything(api, ws)
    agents = await everything(api, ws, "&type=agent.*")
    assert agents and all(e["type"].startswith("agent.") for e in agents)
    assert agents == [e for e in full if e["type"].startswith("agent.")]
    created = await everything(api, ws, "&type=contact.created")
    assert [e["subject"] for e in created] == ["c1", "c2"]
    assert await everything(api, ws, "&type=contact") == []  # exact, not a prefix
    # a filtered page is short but `next` still moves past what was read
    short = await page(api, ws, "?limit=2&type=contact.*")
    assert short["events"] == [] and short["next"] == full[1]["id"]


async def test_bad_query_values_name_the_field(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    for query, status, field in (
        ("?after=yesterday", 400, "after"),
        ("?after=1-2-3", 400, "after"),
        ("?after=" + "9" * 21, 400, "after"),
        ("?limit=0", 422, "limit"),
        ("?limit=1001", 422, "limit"),
        ("?limit=ten", 422, "limit"),
        ("?type=a*b", 422, "type"),
    ):
        r = await api.get(f"/v1/workspaces/{ws}/events{query}", headers=SUP)
        assert r.status == status, query
        assert r.content_type == "application/problem+json"
        assert (await r.json())["field"] == field, query
    r = await api.get(f"/v1/workspaces/{ws}/events/stream?after=nope", headers=SUP)
    assert r.status == 400 and (await r.json())["field"] == "after"
    r = await api.get(f"/v1/workspaces/{ws}/events/stream", headers={**SUP, "Last-Event-ID": "x"})
    assert r.status == 400 and (await r.json())["field"] == "Last-Event-ID"
    assert api.app[EVENT_STREAMS].active == 0


async def test_roles_and_unknown_workspace(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    for path in ("/events", "/events/stream"):
        url = f"/v1/workspaces/{ws}{path}"
        for headers in (AG, GW):
            assert (await api.get(url, headers=headers)).status == 403
        r = await api.get(url)
        assert r.status == 401 and r.content_type == "application/problem+json"
        r = await api.get(f"/v1/workspaces/nope{ws}{path}", headers=SUP)
        assert r.status == 404 and (await r.json())["field"] == "ws"
    assert (await page(api, ws, headers=ADM))["events"]


# --- server-sent events -------------------------------------------------------


async def read_frame(resp: Any) -> dict[str, str]:
    """The next text/event-stream frame: field -> value (comments under ':')."""
    frame: dict[str, str] = {}
    async with asyncio.timeout(5):
        while True:
            line = (await resp.content.readline()).decode()
            assert line, "stream ended"
            line = line.rstrip("\n")
            if not line:
                if frame:
                    return frame
                continue
            name, _, value = line.partition(":")
            frame[name] = value[1:] if value.startswith(" ") else value


async def next_event(resp: Any) -> dict[str, str]:
    while True:
        frame = await read_frame(resp)
        if "data" in frame:
            return frame


async def open_stream(api: Any, ws: str, query: str = "", **headers: str) -> Any:
    resp = await api.get(f"/v1/workspaces/{ws}/events/stream{query}", headers={**SUP, **headers})
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "text/event-stream"
    assert await read_frame(resp) == {"retry": "2000"}
    return resp


async def test_sse_delivers_new_events_and_resumes(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    resp = await open_stream(api, ws)  # no cursor: only events from now on
    await create(api, ws, "c1")
    frame = await next_event(resp)
    assert frame["event"] == "contact.created"
    ce = msgspec.json.decode(frame["data"])
    check_cloudevent(ce, ws)
    assert ce["id"] == frame["id"] and ce["subject"] == "c1"
    resp.close()
    await create(api, ws, "c2")
    await create(api, ws, "c3")
    resp = await open_stream(api, ws, "?after=0", **{"Last-Event-ID": frame["id"]})
    got = [msgspec.json.decode((await next_event(resp))["data"])["subject"] for _ in range(2)]
    assert got == ["c2", "c3"]
    resp.close()
    resp = await open_stream(api, ws, f"?after={frame['id']}&type=contact.created")
    assert msgspec.json.decode((await next_event(resp))["data"])["subject"] == "c2"
    resp.close()


async def test_sse_heartbeat_carries_the_cursor_past_filtered_events(
    api: Any, ws: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ev, "HEARTBEAT_SECONDS", 0.3)
    await put_config(api, ws, small_config())
    resp = await open_stream(api, ws, "?type=agent.*")
    await create(api, ws, "c1")  # filtered out
    last = (await everything(api, ws))[-1]["id"]
    frame = await read_frame(resp)
    assert frame == {"": "keep-alive", "id": last}
    assert await read_frame(resp) == {"": "keep-alive"}
    resp.close()


async def test_sse_ends_on_disconnect_and_shutdown_and_is_capped(api: Any, ws: str) -> None:
    await put_config(api, ws, small_config())
    hub = api.app[EVENT_STREAMS]
    resp = await open_stream(api, ws)
    assert hub.active == 1
    resp.close()
    for _ in range(100):  # the handler notices within one XREAD block
        if not hub.active:
            break
        await asyncio.sleep(0.05)
    assert hub.active == 0
    hub.active = MAX_STREAMS
    r = await api.get(f"/v1/workspaces/{ws}/events/stream", headers=SUP)
    assert r.status == 503 and r.headers["Retry-After"]
    hub.active = 0
    resp = await open_stream(api, ws)
    for hook in api.app.on_shutdown:
        await hook(api.app)
    async with asyncio.timeout(5):
        assert await resp.content.read() == b""  # the response ended cleanly
    assert hub.active == 0
